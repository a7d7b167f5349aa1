"""Model responses on disk, keyed by what was asked, so a re-run costs nothing.

The key is the SHA-256 of the canonical request: model, messages, output schema, temperature
and prompt version. Three modes:

- ``live``: the cache (``.dripline/eval-cache``) first, then the model; answers are cached.
- ``record``: as live, and every answer is also written to the suite's recordings folder
  (``evals/recordings/<suite>/``), which is committed with the suites.
- ``replay``: recordings only. A request with no recording raises RecordingMissing; the model
  is never called, so CI runs the suites deterministically and offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from agents.llm import ChatModel, Completion, Message
from agents.standin import SIMULATED, is_stand_in

USAGE_NOTE = "its token counts, cached tokens and latency come from its own formula, not a provider"


class Mode(StrEnum):
    live = "live"
    record = "record"
    replay = "replay"


class RecordingMissing(LookupError):
    """Replay mode met a request that was never recorded."""


@dataclass(frozen=True)
class Call:
    """One answer a case used: its usage as the model reported it, and whether this run paid."""

    purpose: str  # "draft" or "judge"
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_ms: int
    reused: bool  # served from the cache or a recording: no model call, no cost this run
    simulated: bool = False  # a stand-in model answered: its usage is a formula, not a meter


def request_key(
    model: str,
    messages: list[Message],
    schema: dict[str, Any],
    temperature: float,
    prompt_version: str,
) -> str:
    canonical = {
        "model": model,
        "messages": messages,
        "schema": schema,
        "temperature": temperature,
        "prompt_version": prompt_version,
    }
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Store:
    mode: Mode = Mode.live
    cache_dir: Path | None = None  # None: no cache (live and record still call the model)
    recordings: Path = Path("evals/recordings")

    def lookup(self, key: str, suite: str) -> Completion | None:
        cached, recorded = self._cached(key), self._recording(key, suite)
        places: dict[Mode, list[Path | None]] = {
            Mode.live: [cached],
            Mode.record: [cached, recorded],
            Mode.replay: [recorded],
        }
        for place in places[self.mode]:  # a None place: there is no cache
            if place is not None and place.is_file():
                return _completion(json.loads(place.read_text(encoding="utf-8")))
        return None

    def save(
        self, key: str, suite: str, request: dict[str, Any], answer: Completion, *, fresh: bool
    ) -> None:
        """Cache a fresh answer; in record mode also record any answer not recorded yet."""
        entry: dict[str, Any] = {"key": key, "request": request, "completion": asdict(answer)}
        if is_stand_in(answer.model):  # say so where a reader of the recording looks
            entry["usage"] = f"{SIMULATED}: {answer.model} is a stand-in model; {USAGE_NOTE}"
        cached = self._cached(key)
        if fresh and cached is not None:
            _write(cached, entry)
        recording = self._recording(key, suite)
        if self.recording and not recording.is_file():
            _write(recording, entry)

    @property
    def recording(self) -> bool:
        return self.mode is Mode.record

    def _cached(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir else None

    def _recording(self, key: str, suite: str) -> Path:
        return self.recordings / suite / f"{key}.json"


@dataclass
class CachingModel:
    """A ChatModel in front of another, answering from the Store where it can.

    One is made per case and purpose, so ``calls`` is that case's own ledger.
    """

    name: str
    inner: ChatModel | None  # None in replay mode: nothing to call
    store: Store
    suite: str
    prompt_version: str
    temperature: float
    purpose: str = "draft"
    calls: list[Call] = field(default_factory=list)

    async def complete(
        self, messages: list[Message], schema: dict[str, Any], schema_name: str
    ) -> Completion:
        key = request_key(self.name, messages, schema, self.temperature, self.prompt_version)
        found = self.store.lookup(key, self.suite)
        fresh = found is None
        if found is None:
            found = await self._ask(messages, schema, schema_name)
        # A cached answer is as good a recording as a new one: record mode keeps either.
        self.store.save(key, self.suite, self._request(messages, schema_name), found, fresh=fresh)
        self._note(found, reused=not fresh)
        return found

    async def _ask(
        self, messages: list[Message], schema: dict[str, Any], schema_name: str
    ) -> Completion:
        if self.store.mode is Mode.replay or self.inner is None:
            raise RecordingMissing(
                f"no recording of this {self.purpose} request ({self.name}, prompt "
                f"{self.prompt_version}) in {self.store.recordings / self.suite}; "
                "make one with --record"
            )
        return await self.inner.complete(messages, schema, schema_name)

    def _request(self, messages: list[Message], schema_name: str) -> dict[str, Any]:
        """What a reviewer of a recording wants to see (the schema is in the key, not here)."""
        return {
            "model": self.name,
            "prompt_version": self.prompt_version,
            "temperature": self.temperature,
            "schema_name": schema_name,
            "messages": messages,
        }

    def _note(self, answer: Completion, *, reused: bool) -> None:
        self.calls.append(
            Call(
                purpose=self.purpose,
                model=answer.model,
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                cached_tokens=answer.cached_tokens,
                latency_ms=answer.latency_ms,
                reused=reused,
                simulated=is_stand_in(answer.model),
            )
        )


def _completion(entry: dict[str, Any]) -> Completion:
    return Completion(**entry["completion"])


def _write(path: Path, entry: dict[str, Any]) -> None:
    """Whole files only: concurrent cases may write the same key, readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(entry, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)
