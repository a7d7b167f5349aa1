"""The two sides of a comparison, each a prompt version and a model, and the judge's model.

Model names with a meaning of their own: ``offline-composer`` (the step's fallback copy, no
model) and ``fake-heuristic`` (agents.fake's deterministic model, in process). Any other name
is sent to the configured OpenAI-compatible endpoint, or read from recordings in replay mode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agents.composer import COMPOSER_MODEL
from agents.config import ModelConfig
from agents.fake import FunctionModel, heuristic_answer
from agents.llm import ChatModel, OpenAIChatModel
from agents.prompting import PromptError, Prompts
from agents.standin import FAKE_MODEL
from evals.cache import Mode

JUDGE_TEMPERATURE = 0.0


class UsageError(ValueError):
    """A run that cannot start as asked: an unknown prompt version, no endpoint for a model."""


@dataclass(frozen=True)
class Side:
    label: str  # "candidate" or "baseline"
    prompt: str
    model: str
    chat: ChatModel | None  # what answers a cache miss; None for the composer and in replay
    config: ModelConfig  # temperature, revisions and prices

    @property
    def offline(self) -> bool:
        return self.model == COMPOSER_MODEL


def make_side(label: str, prompt: str, base: ModelConfig, mode: Mode, prompts: Prompts) -> Side:
    try:
        prompts.check_version(prompt)
    except PromptError as error:
        raise UsageError(f"--{'prompt' if label == 'candidate' else label}: {error}") from None
    return Side(label, prompt, base.model, _chat(base, mode), base)


def make_judge(model: str, base: ModelConfig, mode: Mode) -> tuple[ModelConfig, ChatModel | None]:
    """The judge's configuration (always temperature 0) and what answers it on a cache miss."""
    config = replace(base, model=model, temperature=JUDGE_TEMPERATURE, max_tokens=300)
    return config, _chat(config, mode)


def _chat(config: ModelConfig, mode: Mode) -> ChatModel | None:
    if config.model == COMPOSER_MODEL:
        return None
    if config.model == FAKE_MODEL:
        return FunctionModel(heuristic_answer, name=FAKE_MODEL)
    if mode is Mode.replay:
        return None
    if not config.configured:
        raise UsageError(
            f"model {config.model!r} needs an endpoint: set OPENAI_BASE_URL and/or "
            f"OPENAI_API_KEY, use --replay, or --model {COMPOSER_MODEL} / {FAKE_MODEL}"
        )
    return OpenAIChatModel(config)


async def close(chat: ChatModel | None) -> None:
    if isinstance(chat, OpenAIChatModel):
        await chat.close()
