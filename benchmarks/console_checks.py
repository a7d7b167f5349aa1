"""Reading a seeded data set back through the real API, as the console will: the review queue
(oldest first), the oldest and the newest pending draft, each sequence's report, one enrollment
of every status with its timeline, and a contact. Every answer must be a 200, and the queue's
first page must be the oldest pending drafts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select

from api.app import create_app
from api.auth import Role, create_key
from sequences.deps import Deps
from sequences.settings import Settings
from sequences.store.tables import CONTACTS, ENROLLMENTS

if TYPE_CHECKING:
    from benchmarks.console_seed import Seeded

QUEUE_PAGE = 5


async def read_back(settings: Settings, redis_url: str, seeded: Seeded) -> list[str]:
    """One line per request: path, status, time and size."""
    app = create_app(settings, redis_url=redis_url)
    async with app.router.lifespan_context(app):
        deps: Deps = app.state.deps
        async with deps.engine.begin() as conn:
            key = await create_key(conn, "console-seed-check", Role.admin, deps.clock.now())
        paths = _paths(seeded, await _one_per_status(deps), await _email(deps, seeded))
        transport = httpx.ASGITransport(app=app)
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://dripline.test", headers=auth
        ) as client:
            lines = [await _queue(client, seeded)]
            return lines + [(await _read(client, path))[0] for path in paths]


async def _one_per_status(deps: Deps) -> list[str]:
    async with deps.reader.connect() as conn:
        rows = await conn.execute(select(func.min(ENROLLMENTS.c.id)).group_by(ENROLLMENTS.c.status))
        return sorted(str(found) for (found,) in rows)


async def _email(deps: Deps, seeded: Seeded) -> str:
    async with deps.reader.connect() as conn:
        query = select(CONTACTS.c.email).where(CONTACTS.c.id == seeded.contact_ids[0])
        return str((await conn.execute(query)).scalar_one())


def _paths(seeded: Seeded, enrollments: list[str], email: str) -> list[str]:
    drafts = [f"/v1/drafts/{seeded.draft_ids[0]}", f"/v1/drafts/{seeded.draft_ids[-1]}"]
    sequences = [f"/v1/sequences/{key}" for key in seeded.sequences]
    return (
        drafts
        + sequences
        + [f"/v1/enrollments/{e}" for e in enrollments]
        + [f"/v1/contacts/{email}"]
    )


async def _queue(client: httpx.AsyncClient, seeded: Seeded) -> str:
    line, body = await _read(client, f"/v1/drafts?limit={QUEUE_PAGE}")
    listed = [draft["id"] for draft in body["drafts"]]
    if listed != seeded.draft_ids[:QUEUE_PAGE]:
        raise RuntimeError(f"the review queue starts {listed}, not {seeded.draft_ids[:5]}")
    return line


async def _read(client: httpx.AsyncClient, path: str) -> tuple[str, Any]:
    started = time.perf_counter()
    response = await client.get(path)
    ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:500]}")
    size = len(response.content)
    return f"   GET {path:<52} 200 {ms:7.1f} ms {size:>9,} bytes", response.json()
