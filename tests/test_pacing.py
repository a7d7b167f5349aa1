"""Pacing with a model behind the copy: the frequency cap decides before drafting, so a deferred
step costs no model call; spacing is measured where it matters, at the relay; and each attempt
of a model call is on the step's ``drafted`` timeline entry.

The real app, worker and SMTP capture, and the real ``openai`` client against the local
OpenAI-compatible server (agents.devserver), which counts the requests it gets.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from harness import Stack, eventually, make_settings, running_stack
from sqlalchemy import func, select

from agents.devserver import HEURISTIC_MODEL, HeuristicResponder, Reply, ScriptedResponder, serving
from agents.devserver import serve_openai as serve_model
from sequences.mail.capture import CapturedMessage, CaptureServer
from sequences.store.tables import MODEL_CALLS

ADDRESS = "ada@example.com"


def email_step(step_id: str) -> str:
    return (
        f"  - id: {step_id}\n"
        "    email:\n"
        "      brief: Welcome them and point to the quickstart guide.\n"
        '      cta: {text: Open the quickstart, url: "https://acme.test/quickstart"}\n'
        f'      fallback: {{subject: "Fallback {step_id}", body: "The quickstart is ready."}}\n'
    )


def sequence(key: str, steps: list[str], cap: str = "") -> str:
    head = f'key: {key}\nname: {key}\nsender: {{from: "Dana at Acme <dana@acme.test>"}}\n'
    return head + cap + "steps:\n" + "".join(email_step(s) for s in steps)


@asynccontextmanager
async def model_stack(
    responder: Any, database_url: str, redis_url: str, capture: CaptureServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with serve_model(responder) as model_url:
        settings = make_settings(tmp_path, database_url, OPENAI_BASE_URL=model_url)
        async with running_stack(settings, redis_url, capture) as stack:
            yield stack


def accepted_at(message: CapturedMessage) -> datetime:
    """When the relay accepted the message: the capture names each file by that moment."""
    stamp = message.path.stem.split("-")[0]
    return datetime.strptime(stamp + "+0000", "%Y%m%dT%H%M%S%fZ%z")


async def _completed(stack: Stack, enrollment: str) -> dict[str, Any] | None:
    body = await stack.enrollment(enrollment)
    return body if body["status"] == "completed" else None


async def test_a_capped_step_costs_one_model_call_per_email_and_is_spaced_at_the_relay(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> None:
    model = HeuristicResponder()
    async with model_stack(model, database_url, redis_db, capture, tmp_path) as stack:
        document = sequence("capped", ["one", "two", "three"], "frequency_cap: {max: 1, per: 1d}\n")
        assert (await stack.apply("capped", document)).status_code == 201
        enrollment = (await stack.enroll("capped", ADDRESS)).json()["id"]
        done = await eventually(lambda: _completed(stack, enrollment), within=40)
        async with stack.deps.reader.connect() as conn:
            ledger = await conn.scalar(select(func.count()).select_from(MODEL_CALLS))

    mail = sorted(stack.mail_to(ADDRESS), key=accepted_at)
    assert len(mail) == 3
    assert model.requests == 3 and ledger == 3  # one model call per email sent, none wasted
    deferred = [e for e in done["timeline"] if e["kind"] == "deferred"]
    assert len(deferred) >= 2 and {e["reason"] for e in deferred} == {"frequency cap"}
    drafted = [e for e in done["timeline"] if e["kind"] == "drafted"]
    assert [e["model"] for e in drafted] == [HEURISTIC_MODEL] * 3
    day = stack.deps.seqtime.real_duration(timedelta(days=1))  # the cap's window
    times = [accepted_at(m) for m in mail]
    assert all(later - earlier >= day for earlier, later in itertools.pairwise(times))


async def test_a_malformed_body_then_an_answer_sends_the_models_copy_with_both_attempts(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> None:
    model = ScriptedResponder([Reply.raw_body("{not json")], then=HeuristicResponder())
    async with model_stack(model, database_url, redis_db, capture, tmp_path) as stack:
        assert (await stack.apply("retried", sequence("retried", ["hello"]))).status_code == 201
        enrollment = (await stack.enroll("retried", ADDRESS)).json()["id"]
        done = await eventually(lambda: _completed(stack, enrollment), within=30)

    [drafted] = [e for e in done["timeline"] if e["kind"] == "drafted"]
    assert drafted["model"] == HEURISTIC_MODEL  # the model's copy, not the fallback
    first, second = drafted["attempts"]
    assert (first["call"], first["attempt"], first["status"]) == ("draft", 1, 200)
    assert "not JSON" in first["error"] and first["wait"] > 0
    assert (second["attempt"], second["status"], second["error"]) == (2, 200, None)
    assert second["wait"] is None
    [email] = stack.mail_to(ADDRESS)
    assert not email.subject.startswith("Fallback")
    assert len(model.requests) == 2


class GatedModel:
    """The local model, except that its first answer waits for ``gate``: a draft in flight
    while another batch takes the contact's slot under the cap."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.requests = 0
        self.answer = HeuristicResponder()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> JSONResponse:
            self.requests += 1
            if self.requests == 1:
                await self.gate.wait()
            reply = self.answer(await request.json())
            message = {"role": "assistant", "content": reply.content}
            usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": 1}
            return JSONResponse(
                {
                    "id": f"chatcmpl-{self.requests}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": reply.model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {**usage, "total_tokens": reply.prompt_tokens + 1},
                }
            )

        return app


async def test_a_draft_whose_slot_was_taken_meanwhile_waits_and_is_sent_as_it_is(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> None:
    model = GatedModel()
    async with serving(model.app()) as base:
        settings = make_settings(tmp_path, database_url, OPENAI_BASE_URL=f"{base}/v1")
        async with running_stack(settings, redis_db, capture) as stack:
            cap = "frequency_cap: {max: 1, per: 2d}\n"
            for key in ("first", "second"):
                assert (await stack.apply(key, sequence(key, [key], cap))).status_code == 201
            slow = (await stack.enroll("first", ADDRESS)).json()["id"]
            await eventually(lambda: _at_least(model.requests, 1))
            # While the first draft is in flight, the second sequence's email takes the slot.
            await stack.enroll("second", ADDRESS)
            await eventually(lambda: _at_least(len(stack.mail_to(ADDRESS)), 1))
            model.gate.set()
            done = await eventually(lambda: _completed(stack, slow), within=30)

    # The other email counts from when it was recorded until the relay accepts it, so on a
    # slow machine the slot can still be taken when the first wait ends and the draft waits
    # again (sequences.engine.pacing); the draft kept by the first wait is the one sent.
    deferrals = [e for e in done["timeline"] if e["kind"] == "deferred"]
    assert deferrals and {e["reason"] for e in deferrals} == {"frequency cap"}
    deferred = deferrals[0]
    assert deferred["kept"]["draft"]["subject"]
    [drafted] = [e for e in done["timeline"] if e["kind"] == "drafted"]
    assert drafted["model"] == HEURISTIC_MODEL
    mail = sorted(stack.mail_to(ADDRESS), key=accepted_at)
    assert [m.subject for m in mail][1] == deferred["kept"]["draft"]["subject"]
    assert model.requests == 2  # the kept draft went as it was: no second call for it
    assert accepted_at(mail[1]) - accepted_at(mail[0]) >= timedelta(seconds=2)


async def _at_least(value: int, count: int) -> bool:
    return value >= count
