"""The LLM seam: the one module that imports ``openai``.

``ChatModel`` is what the graph calls. ``OpenAIChatModel`` speaks to any OpenAI-compatible
endpoint with structured output by JSON schema; tests put a deterministic model behind the same
protocol. Retries live here and only here (the SDK's own are off), bounded, with backoff that
honours ``Retry-After``; a ``Throttle`` shared through Redis keeps a large batch under the
provider's request and token limits. A malformed answer (a body that is not a chat completion, a
completion with no content) is retried like a 5xx. Every attempt is logged and returned with the
call (``Attempt``), so the timeline can show what each try got and how long we waited.
"""

from __future__ import annotations

import asyncio
import dataclasses
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


@dataclass(frozen=True)
class Attempt:
    """One HTTP request of a model call: what came back and how long we waited after it."""

    number: int
    status: int | None  # the HTTP status; None when no answer came (a timeout, a lost connection)
    error: str | None = None  # None: the answer was used
    wait: float | None = None  # seconds slept before the next attempt


class ModelError(Exception):
    """The model gave no usable answer; the graph falls back to the composer."""

    reason = "model error"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, when an answer came
        self.retry_after = retry_after  # seconds the server asked us to wait
        self.attempts: tuple[Attempt, ...] = ()  # every try, set once the call gives up


class ModelUnavailable(ModelError):
    """Raised after the last retry of a timeout, a 429, a 5xx or a lost connection."""

    reason = "model unavailable"


class ModelRefused(ModelError):
    """Raised at once for a 4xx other than 429 (a bad key, an unknown model):
    retrying would not help."""

    reason = "model refused the request"


class ModelOutputError(ModelError):
    """Raised after the last retry of an answer that carries no message content."""

    reason = "model returned no content"


class ModelMalformed(ModelOutputError):
    """Raised after the last retry of a body that is not a chat completion (not JSON, say)."""

    reason = "model returned a malformed response"


@dataclass(frozen=True)
class Completion:
    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_ms: int
    attempts: tuple[Attempt, ...] = ()


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
        tries: list[Attempt] = []
        last = self._config.max_retries + 1
        for number in range(1, last + 1):
            if self._throttle is not None:
                await self._throttle.acquire(self._estimate(messages))
            try:
                completion = await self._once(messages, schema, schema_name)
            except ModelRefused as error:
                error.attempts = (*tries, self._attempt(number, last, error, None))
                raise
            except ModelError as error:
                wait = self._wait(error, number) if number < last else None
                tries.append(self._attempt(number, last, error, wait))
                if wait is None:
                    error.attempts = tuple(tries)
                    raise
                await asyncio.sleep(wait)
                continue
            tries.append(self._attempt(number, last, None, None))
            return dataclasses.replace(completion, attempts=tuple(tries))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait(self, error: ModelError, number: int) -> float:
        wait = self._backoff(number) if error.retry_after is None else error.retry_after
        return min(wait, self._config.max_backoff_seconds)

    def _attempt(
        self, number: int, last: int, error: ModelError | None, wait: float | None
    ) -> Attempt:
        """The attempt as the timeline shows it, logged as one line: its fields in ``extra``
        for a structured handler, and in the text for a plain one."""
        status = error.status if error is not None else 200
        attempt = Attempt(number, status, str(error) if error is not None else None, wait)
        extra = {"model": self.name, "attempt": number, "of": last, "status": status}
        extra |= {"error": attempt.error, "wait": wait}
        if error is None:
            log.info("model attempt %d of %d: status 200", number, last, extra=extra)
        else:
            then = "gave up" if wait is None else f"retrying in {wait:.2f} s"
            text = "model attempt %d of %d failed: status %s, %s; %s"
            log.warning(text, number, last, status, attempt.error, then, extra=extra)
        return attempt

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
        except openai.RateLimitError as error:
            raise _unavailable(error, _retry_after(error)) from error
        except (openai.APIConnectionError, openai.InternalServerError) as error:
            raise _unavailable(error) from error
        except openai.APIStatusError as error:
            message = f"{error.status_code}: {_short(error)}"
            raise ModelRefused(message, status=error.status_code) from error
        except json.JSONDecodeError as error:  # a JSON content type, a body that is not JSON
            raise ModelMalformed(f"the response body was not JSON: {error}", status=200) from error
        if not isinstance(response, ChatCompletion):  # the SDK returns any other body as text
            raise ModelMalformed("the response was not a chat completion", status=200)
        latency = int((time.perf_counter() - started) * 1000)
        choices = getattr(response, "choices", None) or []
        content = choices[0].message.content if choices and choices[0].message else None
        usage = response.usage
        if not content:
            raise ModelOutputError("the response had no message content", status=200)
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


def _unavailable(error: openai.APIError, retry_after: float | None = None) -> ModelUnavailable:
    status = getattr(error, "status_code", None)
    label = f"{status}: " if status else f"{type(error).__name__}: "
    return ModelUnavailable(label + _short(error), status=status, retry_after=retry_after)


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
