"""The answer to POST /v1/enrollments is built from what the request wrote, not read back:
it must be exactly what GET /v1/enrollments/{id} then reads, whatever the first step is and
whether the contact is new or already has a score. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import Stack, make_settings, running_stack

from sequences.mail.capture import CaptureServer

SENDER = 'sender: {from: "Ops <ops@acme.test>"}'
SEQUENCES = {
    "email-first": f"""
key: email-first
name: Email first
{SENDER}
steps:
  - id: hello
    email: {{brief: Hello, fallback: {{subject: Hello, body: Hello.}}}}
""",
    # The email after the wait is drafted ahead: its row is not the enrollment's next run.
    "wait-first": f"""
key: wait-first
name: Wait first
{SENDER}
draft_ahead: 1h
steps:
  - id: pause
    wait: {{for: 2d, until: [clicked]}}
  - id: later
    email: {{brief: Later, fallback: {{subject: Later, body: Later.}}}}
""",
    "branch-first": f"""
key: branch-first
name: Branch first
{SENDER}
steps:
  - id: route
    branch:
      - {{if: "contact.plan == 'enterprise'", goto: big}}
      - {{else: small}}
  - id: big
    wait: {{for: 1d}}
  - id: small
    email: {{brief: Small, fallback: {{subject: Small, body: Small.}}}}
""",
    "exit-first": f"""
key: exit-first
name: Exit first
{SENDER}
steps:
  - id: done
    exit: {{reason: nothing to do}}
  - id: never
    email: {{brief: Never, fallback: {{subject: Never, body: Never.}}}}
""",
}


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, capture: CaptureServer, redis_db: str
) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, database_url)
    async with running_stack(settings, redis_db, capture, worker=False) as running:
        for key, document in SEQUENCES.items():
            assert (await running.apply(key, document)).status_code == 201, key
        yield running


async def enroll_and_read(stack: Stack, sequence: str, email: str, **contact: Any) -> Any:
    posted = await stack.enroll(sequence, email, **contact)
    assert posted.status_code == 201, posted.text
    answer = posted.json()
    read = await stack.enrollment(answer["id"])
    # The score decays between the two answers (the tests' days are seconds long), so the
    # read may be lower, never higher; zero stays zero.
    score, later = answer["engagement"].pop("score"), read["engagement"].pop("score")
    assert answer == read
    assert score >= later and (later > 0) == (score > 0)
    answer["engagement"]["score"] = score
    return answer


@pytest.mark.parametrize("sequence", sorted(SEQUENCES))
async def test_the_answer_is_what_a_read_returns(stack: Stack, sequence: str) -> None:
    new = await enroll_and_read(stack, sequence, f"new-{sequence}@example.com", attributes={})
    assert new["engagement"]["score"] == 0
    assert new["timeline"][0]["kind"] == "enrolled"


async def test_a_known_contact_brings_its_score_and_merged_attributes(stack: Stack) -> None:
    posted = await stack.client.post(
        "/v1/events",
        json={"events": [{"id": "c-1", "type": "converted", "email": "known@example.com"}]},
        headers=stack.auth(),
    )
    assert posted.status_code == 202, posted.text
    answer = await enroll_and_read(
        stack, "branch-first", "Known@Example.com", attributes={"plan": "enterprise"}
    )
    assert answer["engagement"]["score"] > 0
    assert answer["email"] == "known@example.com"  # as stored first, not as typed now
    assert (answer["current_step"], answer["next_run"]["step"]) == ("big", "big")
    waits = await enroll_and_read(stack, "wait-first", "known@example.com")
    assert 0 < waits["engagement"]["score"] <= answer["engagement"]["score"]
    assert (waits["current_step"], waits["next_run"]["step"]) == ("pause", "pause")
    assert [e["kind"] for e in waits["timeline"]] == ["enrolled", "waiting"]


async def test_an_exit_first_and_a_replay_are_read_back(stack: Stack) -> None:
    ended = await enroll_and_read(stack, "exit-first", "gone@example.com")
    assert (ended["status"], ended["exit_reason"]) == ("completed", "nothing to do")
    body = {"sequence": "email-first", "contact": {"email": "twice@example.com"}}
    headers = {**stack.auth(), "Idempotency-Key": "k-1"}
    first = await stack.client.post("/v1/enrollments", json=body, headers=headers)
    again = await stack.client.post("/v1/enrollments", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json() == await stack.enrollment(first.json()["id"])
