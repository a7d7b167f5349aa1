"""How the agent reaches its model and how hard it tries. Built from settings by the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    base_url: str | None = None  # any OpenAI-compatible server: vLLM, Ollama, llama.cpp
    timeout_seconds: float = 20.0
    # Our own retries; the SDK's are switched off so the two never multiply.
    max_retries: int = 2
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    temperature: float = 0.4
    max_tokens: int = 900
    max_revisions: int = 1
    # USD per million tokens, for the cost ledger's estimate.
    price_input: float = 0.15
    price_cached: float = 0.075
    price_output: float = 0.60

    @property
    def configured(self) -> bool:
        """No key and no endpoint: the offline composer is the model."""
        return bool(self.api_key or self.base_url)

    def cost(self, prompt: int, cached: int, completion: int) -> float:
        uncached = max(prompt - cached, 0)
        total = uncached * self.price_input + cached * self.price_cached
        return (total + completion * self.price_output) / 1_000_000
