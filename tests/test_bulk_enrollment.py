"""Enrollment rules, bulk (set-based) and single: idempotency keys, exclusive groups.

Duplicates inside one request, contacts already enrolled (in the sequence or its exclusive
group), suppressed addresses, re-enrollment refused, overlapping requests at once; on SQLite and
PostgreSQL. No worker runs: what is checked is what the request wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import Stack, make_settings, running_stack
from sqlalchemy import func, select

from sequences.mail.capture import CaptureServer
from sequences.store.tables import ENROLLMENTS, RUNS, TIMELINE

GROUPED = """
key: {key}
name: Group member {key}
sender: {{from: "Ops <ops@acme.test>"}}
exclusive_group: onboarding
{extra}
steps:
  - id: pause
    wait: {{for: 3d}}
  - id: hello
    email: {{brief: Hello, fallback: {{subject: Hello, body: Hello.}}}}
"""


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, capture: CaptureServer, redis_db: str
) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, database_url)
    async with running_stack(settings, redis_db, capture, worker=False) as running:
        for key, extra in (("group-a", ""), ("group-b", ""), ("once", "entry: {reenroll: never}")):
            document = GROUPED.format(key=key, extra=extra)
            assert (await running.apply(key, document)).status_code == 201
        yield running


async def bulk(stack: Stack, sequence: str, contacts: list[dict[str, Any]]) -> dict[str, Any]:
    response = await stack.client.post(
        "/v1/enrollments/bulk",
        json={"sequence": sequence, "contacts": contacts},
        headers=stack.auth(),
    )
    assert response.status_code == 207, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_each_new_enrollment_waits_at_its_first_step(stack: Stack) -> None:
    people = [{"email": f"p{n}@example.com", "attributes": {"n": n}} for n in range(30)]
    body = await bulk(stack, "group-a", people)
    assert (body["created"], body["failed"]) == (30, 0)
    assert [r["index"] for r in body["results"]] == list(range(30))
    one = await stack.enrollment(body["results"][7]["id"])
    assert (one["email"], one["status"], one["current_step"]) == (
        "p7@example.com",
        "active",
        "pause",
    )
    assert [e["kind"] for e in one["timeline"]] == ["enrolled", "waiting"]
    assert one["next_run"]["step"] == "pause"
    async with stack.deps.reader.connect() as conn:
        runs = await conn.scalar(select(func.count()).where(RUNS.c.state == "due"))
        entries = await conn.scalar(select(func.count()).select_from(TIMELINE))
    assert (runs, entries) == (30, 60)


async def test_a_contact_twice_in_one_request_is_enrolled_once(stack: Stack) -> None:
    people: list[dict[str, Any]] = [
        {"email": "Sam@Example.com", "attributes": {"plan": "trial", "seats": 1}},
        {"email": "b@example.com"},
        {"email": "sam@example.com", "timezone": "Europe/Paris", "attributes": {"seats": 5}},
    ]
    body = await bulk(stack, "group-a", people)
    first, _, again = body["results"]
    assert (first["status"], again["status"]) == (201, 409)
    assert again["error"]["code"] == "already_enrolled"
    assert again["error"]["details"]["active_enrollment"] == first["id"]
    contact = (await stack.client.get("/v1/contacts/sam@example.com", headers=stack.auth())).json()
    assert contact["attributes"] == {"plan": "trial", "seats": 5}  # merged in the request's order
    assert contact["timezone"] == "Europe/Paris"
    assert contact["email"] == "Sam@example.com"  # as first written (the domain lowercased)


async def test_a_contact_already_enrolled_is_a_409_naming_its_enrollment(stack: Stack) -> None:
    single = (await stack.enroll("group-a", "ada@example.com")).json()["id"]
    same = await bulk(stack, "group-a", [{"email": "ada@example.com"}, {"email": "c@example.com"}])
    other = await bulk(stack, "group-b", [{"email": "ADA@example.com"}])
    for body in (same, other):
        clash = body["results"][0]
        assert clash["status"] == 409
        details = clash["error"]["details"]
        assert details == {"active_enrollment": single, "exclusive_group": "onboarding"}
    assert same["results"][1]["status"] == 201
    async with stack.deps.reader.connect() as conn:
        active = await conn.scalar(select(func.count()).where(ENROLLMENTS.c.status == "active"))
    assert active == 2


async def test_suppressed_and_finished_contacts_are_refused(stack: Stack) -> None:
    done = (await stack.enroll("once", "old@example.com")).json()["id"]
    cancel = await stack.client.post(f"/v1/enrollments/{done}/cancel", headers=stack.auth())
    assert cancel.status_code == 200
    event = {"type": "unsubscribed", "email": "gone@example.com"}
    posted = await stack.client.post("/v1/events", json={"events": [event]}, headers=stack.auth())
    assert posted.status_code < 300, posted.text
    people = [{"email": "gone@example.com"}, {"email": "old@example.com"}, {"email": "n@x.test"}]
    body = await bulk(stack, "once", people)
    codes = [r.get("error", {}).get("code") for r in body["results"]]
    assert codes == ["contact_suppressed", "reenroll_not_allowed", None]
    assert body["results"][1]["error"]["details"] == {"previous_enrollment": done}


async def test_overlapping_requests_enroll_each_contact_once(stack: Stack) -> None:
    emails = [f"o{n}@example.com" for n in range(40)]
    requests = [
        bulk(stack, key, [{"email": e} for e in emails[start : start + 25]])
        for key, start in (("group-a", 0), ("group-b", 10), ("group-a", 15), ("group-b", 5))
    ]
    bodies = await asyncio.gather(*requests)
    winners: dict[str, str] = {}
    for body in bodies:
        for r in body["results"]:
            if r["status"] == 201:
                assert r["email"] not in winners
                winners[r["email"]] = r["id"]
    assert sorted(winners) == sorted(emails)
    for body in bodies:
        for r in body["results"]:
            if r["status"] != 201:
                assert r["error"]["details"]["active_enrollment"] == winners[r["email"]]
    async with stack.deps.reader.connect() as conn:
        active = await conn.scalar(select(func.count()).where(ENROLLMENTS.c.status == "active"))
        runs = await conn.scalar(select(func.count()).select_from(RUNS))
    assert (active, runs) == (40, 40)


async def test_one_enrollment_keeps_its_idempotency_key_and_group(stack: Stack) -> None:
    body = {"sequence": "group-a", "contact": {"email": "kim@example.com"}}
    headers = {**stack.auth(), "Idempotency-Key": "signup-1"}
    first = await stack.client.post("/v1/enrollments", json=body, headers=headers)
    again = await stack.client.post("/v1/enrollments", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    changed = {"sequence": "group-b", "contact": {"email": "kim@example.com"}}
    reused = await stack.client.post("/v1/enrollments", json=changed, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["details"] == {"enrollment": first.json()["id"]}
    other_key = {**stack.auth(), "Idempotency-Key": "signup-2"}
    clash = await stack.client.post("/v1/enrollments", json=changed, headers=other_key)
    assert clash.status_code == 409
    details = clash.json()["error"]["details"]
    assert details == {"active_enrollment": first.json()["id"], "exclusive_group": "onboarding"}
