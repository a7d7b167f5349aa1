"""Drafts ahead, on both databases: copy is written ``draft_ahead`` before the email is due, the
send renders the stored copy with no model call, new engagement redrafts it, a reviewer sees it
ahead and an approval before due sends at due, and a model outage falls back by policy.

Time is a clock the test moves (the API's and the worker's), and the worker is ``run_due``
called by the test: every step happens when the test says, never after a sleep. The model is
the local OpenAI-compatible server, reached over HTTP by the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import Stack, make_settings, running_stack
from sqlalchemy import select

from agents.devserver import HeuristicResponder, Reply, serve_openai
from sequences.deps import Deps
from sequences.engine import drafted, outbox
from sequences.mail.capture import CaptureServer
from sequences.runner import run_due
from sequences.runtime import open_deps
from sequences.store.tables import MESSAGES, RUNS

# Now (to the second), so the wake-up jobs the engine enqueues are not in the past.
START = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)

# One sequence day is one real second in tests (DRIPLINE_DAY_SECONDS=1): the wait is 10 s,
# the lead 4 s, so the tips email is drafted at START+6 s and due at START+10 s.
SEQUENCE = """
key: ahead
name: Drafted ahead
sender: {{from: "Dana at Acme <dana@acme.test>"}}
approval: {approval}
late_draft: {late}
late_draft_wait_seconds: {late_wait}
draft_ahead: 4d
steps:
  - id: pause
    wait: {{for: 10d}}
  - id: tips
    email:
      brief: Three tips for getting started with the quickstart guide.
      cta: {{text: Read the tips, url: "https://acme.test/tips"}}
      fallback:
        subject: "Three tips, {{{{ contact.first_name | default('there') }}}}"
        body: "Hi {{{{ contact.first_name | default('there') }}}},\\n\\nHere are three tips."
  - id: rest
    wait: {{for: 30d}}
"""


class Clock:
    def __init__(self) -> None:
        self.at = START

    def now(self) -> datetime:
        return self.at

    def to(self, seconds: float) -> None:
        self.at = START + timedelta(seconds=seconds)


class Model:
    """The local server's answers, or a 500 while ``down``; counts the requests."""

    def __init__(self) -> None:
        self.heuristic = HeuristicResponder()
        self.down = False
        self.failed = 0
        self.delay = 0.0  # seconds before each answer

    @property
    def answered(self) -> int:
        return self.heuristic.requests

    def __call__(self, request: dict[str, Any]) -> Reply:
        if self.down:
            self.failed += 1
            return Reply.error(500)
        return replace(self.heuristic(request), delay=self.delay)


@dataclass
class World:
    stack: Stack
    worker: Deps
    clock: Clock
    model: Model
    capture: CaptureServer

    async def at(self, seconds: float) -> None:
        """Move time on and let the worker run whatever is due by then, until nothing is: one
        lane hands a row to the other (drafting to sending) through a wake-up job, which is
        this loop here."""
        self.clock.to(seconds)
        for _ in range(10):
            if not await run_due(self.worker):
                return
        raise AssertionError("the worker never ran out of due rows")

    async def timeline(self, enrollment_id: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = (await self.stack.enrollment(enrollment_id))["timeline"]
        return entries

    async def kinds(self, enrollment_id: str) -> list[str]:
        return [e["kind"] for e in await self.timeline(enrollment_id)]

    async def sent_at(self) -> list[datetime]:
        async with self.worker.reader.connect() as conn:
            rows = await conn.execute(select(MESSAGES.c.sent_at).order_by(MESSAGES.c.sent_at))
            return [r.sent_at for r in rows]

    async def drafting(self) -> dict[str, Any]:
        response = await self.stack.client.get("/v1/sequences/ahead", headers=self.stack.auth())
        assert response.status_code == 200, response.text
        report: dict[str, Any] = response.json()["drafting"]
        return report

    async def enroll(self, email: str) -> str:
        response = await self.stack.enroll("ahead", email, attributes={"first_name": "Ana"})
        assert response.status_code == 201, response.text
        enrollment_id: str = response.json()["id"]
        return enrollment_id


@asynccontextmanager
async def world(
    database_url: str,
    redis_url: str,
    capture: CaptureServer,
    tmp_path: Path,
    *,
    approval: str = "never",
    late: str = "fallback",
    late_wait: float = 30,
    **overrides: object,
) -> AsyncIterator[World]:
    model = Model()
    clock = Clock()
    async with serve_openai(model) as model_url:
        settings = make_settings(
            tmp_path,
            database_url,
            OPENAI_BASE_URL=model_url,
            DRIPLINE_MODEL_RETRIES=0,
            DRIPLINE_DRAFT_AHEAD="15m",  # the sequence's own 4d is what counts
            **overrides,
        )
        async with running_stack(settings, redis_url, capture, worker=False, clock=clock) as stack:
            smtp = (capture.host, capture.port)
            async with open_deps(
                settings, redis_url=redis_url, smtp=smtp, clock=clock, run_migrations=False
            ) as worker:
                text = SEQUENCE.format(approval=approval, late=late, late_wait=late_wait)
                assert (await stack.apply("ahead", text)).status_code == 201
                yield World(stack, worker, clock, model, capture)


async def _next_run(w: World, enrollment_id: str) -> tuple[str, datetime]:
    found = (await w.stack.enrollment(enrollment_id))["next_run"]
    return found["step"], datetime.fromisoformat(found["due_at"])


async def _drafted(w: World, enrollment_id: str) -> list[dict[str, Any]]:
    return [e for e in await w.timeline(enrollment_id) if e["kind"] == "drafted_ahead"]


async def test_copy_is_drafted_lead_before_due_and_sent_at_due_without_the_model(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> None:
    async with world(database_url, redis_db, capture, tmp_path) as w:
        enrollment = await w.enroll("ana@example.com")
        await w.at(0)
        # Its next step is the wait's end, not the row drafting the email ahead (due at 6 s).
        assert await _next_run(w, enrollment) == ("pause", START + timedelta(seconds=10))
        await w.at(5.9)  # the lead starts at 6 s: nothing drafted yet
        assert await _drafted(w, enrollment) == [] and w.model.answered == 0
        await w.at(6.0)
        [ahead] = await _drafted(w, enrollment)
        assert await _next_run(w, enrollment) == ("pause", START + timedelta(seconds=10))
        assert ahead["due"] == (START + timedelta(seconds=10)).isoformat()
        asked = w.model.answered
        assert asked >= 1 and w.capture.messages() == []  # drafted, not sent
        await w.at(9.9)
        assert w.capture.messages() == []
        await w.at(10.0)
        [message] = w.capture.messages()
        kept = ahead["kept"]["draft"]
        assert message.subject == kept["subject"]
        assert w.model.answered == asked  # the send asked the model nothing
        assert await w.sent_at() == [START + timedelta(seconds=10)]
        kinds = await w.kinds(enrollment)
        assert kinds.index("drafted_ahead") < kinds.index("drafted")
        async with w.worker.reader.connect() as conn:
            runs = (await conn.execute(select(RUNS).where(RUNS.c.step_id == "tips"))).all()
        assert len(runs) == 1 and runs[0].state == "done"  # one row: drafted, then sent


async def test_a_click_after_drafting_makes_a_redraft(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> None:
    async with world(database_url, redis_db, capture, tmp_path) as w:
        enrollment = await w.enroll("bo@example.com")
        await w.at(0)
        await w.at(6)
        assert len(await _drafted(w, enrollment)) == 1
        asked = w.model.answered
        w.clock.to(7)
        click = {"type": "clicked", "email": "bo@example.com"}
        body = {"events": [{**click, "properties": {"url": "https://acme.test/pricing"}}]}
        response = await w.stack.client.post("/v1/events", json=body, headers=w.stack.auth())
        assert response.status_code in (200, 202), response.text
        assert "redraft" in await w.kinds(enrollment)
        await w.at(7)
        second = (await _drafted(w, enrollment))[-1]
        assert len(await _drafted(w, enrollment)) == 2 and w.model.answered > asked
        await w.at(10)
        [message] = w.capture.messages()
        assert message.subject == second["kept"]["draft"]["subject"]
        kinds = await w.kinds(enrollment)
        assert kinds.index("redraft") < len(kinds) - 1 - kinds[::-1].index("drafted_ahead")
        report = await w.drafting()
        assert report["tips"]["drafted_ahead"] == 2 and report["tips"]["redraft"] == 1
        assert report["tips"]["draft_ahead"] == "4d" and report["tips"]["late_draft"] == "fallback"
        assert report["tips"]["sent_with_fallback_copy"] == 0


async def test_approval_before_due_sends_at_due(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> None:
    async with world(database_url, redis_db, capture, tmp_path, approval="always") as w:
        first = await w.enroll("cy@example.com")
        w.clock.to(1)
        second = await w.enroll("di@example.com")  # due one second later
        await w.at(1)
        await w.at(7)  # both drafted ahead and held for review, 3 s and 4 s before due
        response = await w.stack.client.get(
            "/v1/drafts", params={"order": "due"}, headers=w.stack.auth()
        )
        assert response.status_code == 200, response.text
        drafts = response.json()["drafts"]
        assert [d["enrollment_id"] for d in drafts] == [first, second]  # soonest first
        bad = await w.stack.client.get(
            "/v1/drafts", params={"order": "due", "after": "drf_x"}, headers=w.stack.auth()
        )
        assert bad.status_code == 422 and "after" in bad.text
        paged = await w.stack.client.get(
            "/v1/drafts", params={"order": "due", "limit": 1}, headers=w.stack.auth()
        )
        assert [d["enrollment_id"] for d in paged.json()["drafts"]] == [first]
        rest = await w.stack.client.get(
            "/v1/drafts",
            params={"order": "due", "after": paged.json()["next"]},
            headers=w.stack.auth(),
        )
        assert [d["enrollment_id"] for d in rest.json()["drafts"]] == [second]
        assert drafts[0]["due_at"] == (START + timedelta(seconds=10)).isoformat()
        url = f"/v1/drafts/{drafts[0]['id']}/approve"
        approved = await w.stack.client.post(url, headers=w.stack.auth())
        assert approved.status_code == 200, approved.text
        await w.at(8)  # the approval is acted on now; the email waits for its due time
        assert w.capture.messages() == []
        await w.at(10)
        [message] = w.capture.messages()
        assert message.subject == drafts[0]["subject"]
        assert await w.sent_at() == [START + timedelta(seconds=10)]
        assert "draft_approved" in await w.kinds(first)
        await w.at(11)  # the second was not approved: nothing goes without a reviewer
        assert len(w.capture.messages()) == 1


@pytest.mark.parametrize("late", ["fallback", "hold"])
async def test_a_model_outage_during_the_lead_follows_the_policy(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path, late: str
) -> None:
    async with world(database_url, redis_db, capture, tmp_path, late=late) as w:
        enrollment = await w.enroll("ed@example.com")
        await w.at(0)
        w.model.down = True
        await w.at(6)  # the model fails; with 4 s left it is tried again later
        kinds = await w.kinds(enrollment)
        assert "draft_retry" in kinds and "drafted_ahead" not in kinds
        assert w.model.failed >= 1
        await w.at(9.95)  # still down, and too little time left for another try
        await w.at(10)
        if late == "fallback":
            [message] = w.capture.messages()
            [ahead] = await _drafted(w, enrollment)
            assert ahead["model"] == "offline-composer"
            assert message.subject == "Three tips, Ana"  # the sequence's fallback copy
            return
        assert w.capture.messages() == []  # hold: the email waits for a real draft
        assert "drafted_ahead" not in await w.kinds(enrollment)
        w.model.down = False
        await w.at(10.5)
        [message] = w.capture.messages()
        [ahead] = await _drafted(w, enrollment)
        assert ahead["model"] != "offline-composer"
        assert message.subject == ahead["kept"]["draft"]["subject"]


async def test_a_lead_too_short_for_the_model_falls_back_within_the_policy_wait(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> None:
    """The drafting lane reaches the row 0.1 s before it is due and the model takes 30 s: with
    ``late_draft_wait_seconds: 0`` the draft may take until the due time, then the fallback
    copy is stored, and the email goes at its due time."""
    async with world(database_url, redis_db, capture, tmp_path, late_wait=0) as w:
        enrollment = await w.enroll("fay@example.com")
        await w.at(0)
        w.model.delay = 30.0
        await w.at(9.9)
        [ahead] = await _drafted(w, enrollment)
        assert ahead["model"] == "offline-composer"
        assert "the model took longer than" in ahead["kept"]["draft"]["rationale"]
        await w.at(10)
        [message] = w.capture.messages()
        assert message.subject == "Three tips, Ana"
        assert await w.sent_at() == [START + timedelta(seconds=10)]
        report = (await w.drafting())["tips"]
        assert report["sent_with_fallback_copy"] == 1 and report["late_draft_wait_seconds"] == 0


async def test_an_unsubscribe_during_the_lead_cancels_the_drafted_email(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> None:
    async with world(database_url, redis_db, capture, tmp_path) as w:
        enrollment = await w.enroll("gus@example.com")
        await w.at(0)
        await w.at(6)
        assert len(await _drafted(w, enrollment)) == 1
        w.clock.to(7)
        body = {"events": [{"type": "unsubscribed", "email": "gus@example.com"}]}
        response = await w.stack.client.post("/v1/events", json=body, headers=w.stack.auth())
        assert response.status_code in (200, 202), response.text
        await w.at(10)
        await w.at(11)
        assert w.capture.messages() == []
        async with w.worker.reader.connect() as conn:
            states = (await conn.execute(select(RUNS.c.step_id, RUNS.c.state))).all()
        assert ("tips", "cancelled") in [tuple(r) for r in states]
        assert (await w.stack.enrollment(enrollment))["status"] == "exited"


async def test_a_drafting_claim_that_lapses_is_drafted_again_once_and_sent_once(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> None:
    """A worker claims the row to draft it and dies: the claim lapses, another worker drafts
    and stores the copy; the dead worker's claim can no longer store anything."""
    async with world(
        database_url, redis_db, capture, tmp_path, DRIPLINE_CLAIM_LEASE_SECONDS=1
    ) as w:
        enrollment = await w.enroll("hal@example.com")
        await w.at(0)
        w.clock.to(6)
        lease = timedelta(seconds=1)
        async with w.worker.engine.begin() as conn:
            [dead] = await outbox.claim_due(
                conn, now=w.clock.now(), lease=lease, limit=10, drafting=True
            )
        assert dead.drafting and dead.step_id == "tips"
        await w.at(6.5)  # still claimed by the dead worker: nothing drafts it
        assert await _drafted(w, enrollment) == []
        w.clock.to(7.1)
        async with w.worker.engine.begin() as conn:
            assert await outbox.expire_claims(conn, w.clock.now()) == 1  # the sweeper's job
        await w.at(7.1)
        assert len(await _drafted(w, enrollment)) == 1
        async with w.worker.engine.begin() as conn:
            assert await drafted.park_drafted(conn, [dead], w.clock.now()) == set()
        await w.at(10)
        await w.at(11)
        assert len(w.capture.messages()) == 1
        assert len(await _drafted(w, enrollment)) == 1
