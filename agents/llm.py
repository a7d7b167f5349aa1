"""The LLM seam: the one module that imports ``openai``.

``ChatModel`` is what the graph calls. ``OpenAIChatModel`` speaks to any OpenAI-compatible
endpoint with structured output by JSON schema; tests put a deterministic model behind the same
protocol. Retries live here and only here (the SDK's own are off), bounded, with backoff that
honours ``Retry-After``; a ``Throttle`` shared through Redis keeps a large batch under the
provider's request and token limits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

import openai
from openai.types.chat import ChatCompletion

from agents.config import ModelConfig

log = logging.getLogger(__name__)


class ModelError(Exception):
    """The model gave no usable answer; the graph falls back to the composer."""

    reason = "model error"


class ModelUnavailable(ModelError):
    """Raised after the last retry of a timeout, a 429, a 5xx or a lost connection."""

    reason = "model unavailable"


class ModelRefused(ModelError):
    """Raised at once for a 4xx other than 429 (a bad key, an unknown model):
    retrying would not help."""

    reason = "model refused the request"


class ModelOutputError(ModelError):
    """Raised when the response carries no message content to parse."""

    reason = "model returned no content"


@dataclass(frozen=True)
class Completion:
    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_ms: int


Message = dict[str, str]


class ChatModel(Protocol):
    name: str

    async def complete(
        self, messages: list[Message], schema: dict[str, Any], schema_name: str
    ) -> Completion: ...


class Throttle(Protocol):
    """A budget of requests and tokens per minute, shared by every worker."""

    async def acquire(self, tokens: int) -> None: ...


class OpenAIChatModel:
    def __init__(self, config: ModelConfig, throttle: Throttle | None = None) -> None:
        self.name = config.model
        self._config = config
        self._throttle = throttle
        self._client = openai.AsyncOpenAI(
            api_key=config.api_key or "not-needed",  # local servers ignore it; the SDK wants one
            base_url=config.base_url,
            timeout=config.timeout_seconds,
            max_retries=0,
        )

    async def close(self) -> None:
        await self._client.close()

    async def complete(
        self, messages: list[Message], schema: dict[str, Any], schema_name: str
    ) -> Completion:
        attempts = self._config.max_retries + 1
        for attempt in range(1, attempts + 1):
            if self._throttle is not None:
                await self._throttle.acquire(self._estimate(messages))
            try:
                return await self._once(messages, schema, schema_name)
            except openai.RateLimitError as error:
                last: ModelError = _unavailable(error)
                asked = _retry_after(error)
                wait = self._backoff(attempt) if asked is None else asked
            except (openai.APITimeoutError, openai.APIConnectionError) as error:
                last, wait = _unavailable(error), self._backoff(attempt)
            except openai.InternalServerError as error:
                last, wait = _unavailable(error), self._backoff(attempt)
            except openai.APIStatusError as error:
                raise ModelRefused(f"{error.status_code}: {_short(error)}") from error
            log.warning("model call failed", extra={"attempt": attempt, "error": str(last)})
            if attempt < attempts:
                await asyncio.sleep(min(wait, self._config.max_backoff_seconds))
        raise last

    async def _once(
        self, messages: list[Message], schema: dict[str, Any], schema_name: str
    ) -> Completion:
        started = time.perf_counter()
        response_format: Any = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": schema, "strict": True},
        }
        try:
            response = await self._client.chat.completions.create(
                model=self._config.model,
                messages=cast(Any, messages),
                temperature=self._config.temperature,
                max_tokens=self._config.max_tokens,
                response_format=response_format,
            )
        except json.JSONDecodeError as error:  # a JSON content type, a body that is not JSON
            raise ModelOutputError(f"the response body was not JSON: {error}") from error
        if not isinstance(response, ChatCompletion):  # the SDK returns any other body as text
            raise ModelOutputError("the response was not a chat completion")
        latency = int((time.perf_counter() - started) * 1000)
        choices = getattr(response, "choices", None) or []
        content = choices[0].message.content if choices and choices[0].message else None
        usage = response.usage
        if not content:
            raise ModelOutputError("the response had no message content")
        details = usage.prompt_tokens_details if usage else None
        return Completion(
            content=content,
            model=response.model or self._config.model,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cached_tokens=(details.cached_tokens or 0) if details else 0,
            latency_ms=latency,
        )

    def _backoff(self, attempt: int) -> float:
        base = self._config.backoff_seconds * 2 ** (attempt - 1)
        return float(base * (0.5 + random.random() / 2))  # jitter: workers do not retry in lockstep

    def _estimate(self, messages: list[Message]) -> int:
        """Tokens this call may use, for the per-minute budget: ~4 characters a token."""
        return sum(len(m["content"]) for m in messages) // 4 + self._config.max_tokens


def _unavailable(error: openai.APIError) -> ModelUnavailable:
    status = getattr(error, "status_code", None)
    label = f"{status}: " if status else f"{type(error).__name__}: "
    return ModelUnavailable(label + _short(error))


def _retry_after(error: openai.APIStatusError) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` wins, as OpenAI sends both)."""
    headers = error.response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value: str | None = headers.get(name)
        try:
            if value is not None:
                return max(0.0, float(value) / scale)
        except ValueError:
            continue
    return None


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__
