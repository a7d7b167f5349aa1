"""Fifty simultaneous enrollments of one contact into one exclusive group: exactly one wins."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness import make_settings, running_stack
from sqlalchemy import func, select

from sequences.mail.capture import CaptureServer
from sequences.store.tables import ENROLLMENTS

SEQUENCE = """
key: {key}
name: Group member {key}
sender: {{from: "Ops <ops@acme.test>"}}
exclusive_group: onboarding
steps:
  - id: hello
    email: {{brief: Hello, fallback: {{subject: Hello, body: Hello.}}}}
"""


async def test_fifty_concurrent_enrollments(
    database_url: str, capture: CaptureServer, tmp_path: Path, redis_db: str
) -> None:
    settings = make_settings(tmp_path, database_url)
    async with running_stack(settings, redis_db, capture, worker=False) as stack:
        for key in ("group-a", "group-b"):
            assert (await stack.apply(key, SEQUENCE.format(key=key))).status_code == 201

        async def attempt(n: int) -> tuple[int, str | None]:
            headers = {**stack.auth(), "Idempotency-Key": f"k{n % 40}"}  # ten keys are sent twice
            body = {
                "sequence": "group-a" if n % 2 else "group-b",
                "contact": {"email": "Sam@Example.com"},
            }
            response = await stack.client.post("/v1/enrollments", json=body, headers=headers)
            return response.status_code, response.json().get("id")

        results = await asyncio.gather(*(attempt(n) for n in range(50)))
        statuses = sorted(status for status, _ in results)
        assert statuses.count(201) == 1, statuses
        assert set(statuses) <= {200, 201, 409}
        winner = next(eid for status, eid in results if status == 201)
        assert all(eid == winner for status, eid in results if status == 200)
        async with stack.deps.reader.connect() as conn:
            active = await conn.scalar(select(func.count()).where(ENROLLMENTS.c.status == "active"))
        assert active == 1
        clash = next(r for r in results if r[0] == 409)
        assert clash[1] is None


async def test_concurrent_applies_make_consecutive_versions(
    database_url: str, capture: CaptureServer, tmp_path: Path, redis_db: str
) -> None:
    settings = make_settings(tmp_path, database_url)
    async with running_stack(settings, redis_db, capture, worker=False) as stack:
        documents = [SEQUENCE.format(key="racy").replace("Hello.", f"Hello {n}.") for n in range(8)]
        responses = await asyncio.gather(*(stack.apply("racy", d) for d in documents))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {201, 409}, [r.text for r in responses]
        created = sorted(r.json()["version"] for r in responses if r.status_code == 201)
        assert created == list(range(1, len(created) + 1))  # no gaps, no duplicates
        refused = [r.json()["error"]["code"] for r in responses if r.status_code == 409]
        assert set(refused) <= {"concurrent_apply"}
