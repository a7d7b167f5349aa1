"""Feedback: events from the API, the pixel, clicks, unsubscribes and bounces, and what they do.

An event is stored once (its id deduplicates), lands on the timeline of the enrollments it
concerns, and then acts: suppression for unsubscribes, complaints and hard bounces; exits for a
sequence's ``exit_on``; an early wake for a ``wait ... until``; an enrollment for ``entry.events``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences import lifecycle, outbox, registry, timeline
from sequences.db import dialect_insert
from sequences.definition import WaitStep
from sequences.deps import Deps
from sequences.errors import Conflict
from sequences.models import (
    ENROLLMENTS,
    EVENTS,
    MESSAGES,
    EnrollmentStatus,
)

ENGAGEMENT_TYPES = frozenset(
    {
        "delivered",
        "opened",
        "clicked",
        "replied",
        "converted",
        "unsubscribed",
        "bounced",
        "complained",
    }
)


@dataclass(frozen=True)
class Incoming:
    """One event, its contact and message already resolved."""

    type: str
    contact_id: int
    email_key: str
    occurred_at: datetime
    event_id: str | None = None
    message_pk: str | None = None
    enrollment_id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    source: str = "api"
    is_bot: bool = False
    verified: bool = True


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    wake: list[datetime] = field(default_factory=list)


async def ingest(
    conn: AsyncConnection, deps: Deps, events: list[Incoming], now: datetime
) -> Outcome:
    outcome = Outcome()
    for event in events:
        if not await _store(conn, event, now):
            outcome.duplicates += 1
            continue
        outcome.accepted += 1
        if not event.is_bot:
            outcome.wake += await _act(conn, deps, event, now)
    return outcome


async def _store(conn: AsyncConnection, event: Incoming, now: datetime) -> bool:
    key = f"{event.source}:{event.event_id}" if event.event_id else f"auto:{secrets.token_hex(12)}"
    result = await conn.execute(
        dialect_insert(conn, EVENTS)
        .values(
            event_key=key,
            contact_id=event.contact_id,
            enrollment_id=event.enrollment_id,
            message_pk=event.message_pk,
            type=event.type,
            occurred_at=event.occurred_at,
            received_at=now,
            properties=event.properties,
            is_bot=event.is_bot,
            verified=event.verified,
            source=event.source,
        )
        .on_conflict_do_nothing(index_elements=["event_key"])
    )
    return result.rowcount == 1


async def _act(conn: AsyncConnection, deps: Deps, event: Incoming, now: datetime) -> list[datetime]:
    targets = await _concerned(conn, event)
    await timeline.record(
        conn,
        [
            timeline.entry(
                e,
                now,
                "event",
                None,
                type=event.type,
                source=event.source,
                message=event.message_pk,
            )
            for e, _, _ in targets
        ],
    )
    reason = _suppression_reason(event)
    if reason is not None:
        await lifecycle.suppress(conn, event.contact_id, event.email_key, reason=reason, now=now)
        return []
    wake = await _exit_or_wake(conn, deps, event, targets, now)
    return wake + await _entry_triggers(conn, deps, event, now)


def _suppression_reason(event: Incoming) -> str | None:
    if event.type == "unsubscribed":
        return "unsubscribed"
    if event.type == "complained":
        return "complaint"
    if event.type == "bounced" and event.properties.get("bounce_type", "hard") == "hard":
        return "hard_bounce"
    return None


async def _concerned(conn: AsyncConnection, event: Incoming) -> list[tuple[str, int, str | None]]:
    """(enrollment, version, position) of the active enrollments the event is about."""
    query = select(ENROLLMENTS.c.id, ENROLLMENTS.c.version_id, ENROLLMENTS.c.position).where(
        ENROLLMENTS.c.status == EnrollmentStatus.active
    )
    if event.enrollment_id is not None:
        query = query.where(ENROLLMENTS.c.id == event.enrollment_id)
    else:
        query = query.where(ENROLLMENTS.c.contact_id == event.contact_id)
    return [(r.id, r.version_id, r.position) for r in await conn.execute(query)]


async def _exit_or_wake(
    conn: AsyncConnection,
    deps: Deps,
    event: Incoming,
    targets: list[tuple[str, int, str | None]],
    now: datetime,
) -> list[datetime]:
    exits: list[str] = []
    waits: dict[str, str] = {}
    for enrollment_id, version_id, position in targets:
        defn = await registry.load_version(conn, version_id)
        if event.type in defn.exit_on:
            exits.append(enrollment_id)
            continue
        step = defn.step(position) if position else None
        if isinstance(step, WaitStep) and event.type in step.wait.until:
            waits[enrollment_id] = step.id
    await lifecycle.end(
        conn, exits, status=EnrollmentStatus.exited, reason=f"exit_on: {event.type}", now=now
    )
    woken = await outbox.wake_waits(conn, list(waits), waits, now, event.type)
    return [now] if woken else []


async def _entry_triggers(
    conn: AsyncConnection, deps: Deps, event: Incoming, now: datetime
) -> list[datetime]:
    from sequences.enrollments import enroll  # enrollments -> flow -> ...; imported late on purpose

    wake: list[datetime] = []
    for pinned in await registry.all_current(conn):
        entry = pinned.definition.entry
        if entry is None or event.type not in entry.events:
            continue
        try:
            enrolled = await enroll(
                conn,
                deps,
                pinned,
                event.contact_id,
                event.email_key,
                now=now,
                source=f"event:{event.type}",
            )
        except Conflict:
            continue  # already in the group, suppressed, or reenroll: never: the trigger passes
        wake += enrolled.wake
    return wake


async def record_bounce(
    conn: AsyncConnection,
    contact_id: int,
    email_key: str,
    enrollment_id: str,
    message_pk: str,
    detail: str,
    now: datetime,
) -> None:
    """A permanent SMTP failure: a bounce event, a suppression, every sequence exited."""
    event = Incoming(
        type="bounced",
        contact_id=contact_id,
        email_key=email_key,
        occurred_at=now,
        event_id=message_pk,
        message_pk=message_pk,
        enrollment_id=enrollment_id,
        properties={"bounce_type": "hard", "reply": detail},
        source="smtp",
    )
    if await _store(conn, event, now):
        await timeline.record(
            conn, [timeline.entry(enrollment_id, now, "bounced", None, reply=detail)]
        )
        await lifecycle.suppress(
            conn, contact_id, email_key, reason="hard_bounce", now=now, detail=detail
        )


async def message_by_header(conn: AsyncConnection, ref: str) -> tuple[str, str, int] | None:
    """Find a message by its Message-ID header (with or without <>) or our own id."""
    bracketed = ref if ref.startswith("<") else f"<{ref}>"
    row = (
        await conn.execute(
            select(MESSAGES.c.id, MESSAGES.c.enrollment_id, MESSAGES.c.contact_id).where(
                (MESSAGES.c.message_id == bracketed) | (MESSAGES.c.id == ref)
            )
        )
    ).first()
    return (row.id, row.enrollment_id, row.contact_id) if row else None
