"""Feedback: events from the API, the pixel, clicks, unsubscribes and bounces, and what they do.

An event is stored once (its id deduplicates), lands on the timeline of the enrollments it
concerns, and then acts: suppression for unsubscribes, complaints and hard bounces; exits for a
sequence's ``exit_on``; an early wake for a ``wait ... until``; an enrollment for ``entry.events``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.definitions import registry
from sequences.definitions.document import WaitStep
from sequences.deps import Deps
from sequences.engine import drafted, lifecycle, outbox
from sequences.errors import Conflict
from sequences.signals import scores
from sequences.store import timeline
from sequences.store.db import among, lock_rows
from sequences.store.events import Incoming, store_events
from sequences.store.tables import (
    ENROLLMENTS,
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


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    wake: list[datetime] = field(default_factory=list)


async def ingest(
    conn: AsyncConnection, deps: Deps, events: list[Incoming], now: datetime
) -> Outcome:
    """Store a batch (duplicates dropped), then act on its human events and fold them into the
    scores: a fixed handful of statements per batch, whatever its size."""
    stored = await store_events(conn, events, now)
    outcome = Outcome(accepted=len(stored), duplicates=len(events) - len(stored))
    human = [e for e in stored if not e.is_bot]
    if human:
        outcome.wake += await _act(conn, deps, human, now)
        # Last, after any enrollment locks: senders take enrollments before step stats too.
        await scores.update_for(conn, deps, human, now)
    return outcome


Target = tuple[str, int, str | None]  # (enrollment, version, position)


async def _act(
    conn: AsyncConnection, deps: Deps, events: list[Incoming], now: datetime
) -> list[datetime]:
    suppressing = {e.contact_id: e for e in events if _suppression_reason(e) is not None}
    acting = [e for e in events if e.contact_id not in suppressing]
    held: set[str] = set()
    if conn.dialect.name == "postgresql":
        # What this batch will end, read without locks and locked exclusively first (id
        # order); only then is everything it concerns share-locked and read again. Other
        # batches queue only behind the few enrollments it ends, and none holds a share lock
        # it must then upgrade (two batches doing that deadlock).
        unlocked = await _concerned(conn, events, lock=False)
        held = _ending(suppressing, unlocked, (await _plan(conn, acting, unlocked))[0])
        await lock_rows(conn, ENROLLMENTS, sorted(held))
    targets = await _concerned(conn, events)
    await timeline.record(
        conn,
        [
            timeline.entry(
                enrollment, now, "event", None, type=e.type, source=e.source, message=e.message_pk
            )
            for e in events
            for enrollment, _, _ in targets.get(id(e), [])
        ],
    )
    exits, waits = await _plan(conn, acting, targets)
    # Anything to end that appeared since (an enrollment made meanwhile): locked now, in id
    # order; on SQLite this is the whole set (a writer holds the database anyway).
    await lock_rows(conn, ENROLLMENTS, sorted(_ending(suppressing, targets, exits) - held))
    for contact_id, event in sorted(suppressing.items()):
        reason = _suppression_reason(event)
        assert reason is not None
        await lifecycle.suppress(conn, contact_id, event.email_key, reason=reason, now=now)
    for event_type, enrollment_ids in sorted(exits.items()):
        await lifecycle.end(
            conn,
            enrollment_ids,
            status=EnrollmentStatus.exited,
            reason=f"exit_on: {event_type}",
            now=now,
        )
    exited = {e for ids in exits.values() for e in ids}
    woken = await outbox.wake_waits(conn, {e: w for e, w in waits.items() if e not in exited}, now)
    redrafting = await _redraft(conn, acting, targets, exited, now)
    wake = [now] if woken or redrafting else []
    return wake + await _entry_triggers(conn, deps, acting, now)


# What makes copy drafted ahead stale: the contact did something the copy should know of.
FRESHENING = frozenset({"clicked", "replied", "converted"})


async def _redraft(
    conn: AsyncConnection,
    events: list[Incoming],
    targets: dict[int, list[Target]],
    exited: set[str],
    now: datetime,
) -> list[tuple[str, str]]:
    """Copy drafted ahead (sequences.review.ahead) before this engagement, not yet approved
    and not yet due, is written again; the timeline says why."""
    why: dict[str, str] = {}
    for event in events:
        if event.type in FRESHENING:
            for enrollment_id, _, _ in targets.get(id(event), []):
                if enrollment_id not in exited:
                    why.setdefault(enrollment_id, event.type)
    redrafting = await drafted.redraft(conn, sorted(why), now)
    entries = [
        timeline.entry(e, now, "redraft", step, reason=f"{why[e]} since the copy was drafted ahead")
        for e, step in redrafting
    ]
    await timeline.record(conn, entries)
    return redrafting


def _ending(
    suppressing: dict[int, Incoming], targets: dict[int, list[Target]], exits: dict[str, list[str]]
) -> set[str]:
    """The enrollments a batch ends: all of a suppressed contact's, and those ``exit_on``
    names."""
    ending = {t[0] for e in suppressing.values() for t in targets.get(id(e), [])}
    return ending | {e for ids in exits.values() for e in ids}


def _suppression_reason(event: Incoming) -> str | None:
    if event.type == "unsubscribed":
        return "unsubscribed"
    if event.type == "complained":
        return "complaint"
    if event.type == "bounced" and event.properties.get("bounce_type", "hard") == "hard":
        return "hard_bounce"
    return None


async def _concerned(
    conn: AsyncConnection, events: list[Incoming], *, lock: bool = True
) -> dict[int, list[Target]]:
    """Per event, the active enrollments it is about: the one it names, or all of its
    contact's. One query for the batch.

    On PostgreSQL (unless ``lock`` is false) they are share-locked (in id order, as
    sequences.store.db.LOCK_ORDER says) before their positions are read: a worker moving one
    of them to a ``wait ... until`` either committed first (the wait is seen and woken) or
    waits for this batch and then sees its events (sequences.engine.flow checks for them).
    Other batches are not kept out: most name some of the same contacts, and an exclusive
    lock here made them queue behind each other for their whole transaction."""
    contact_ids = sorted({e.contact_id for e in events})
    query = select(
        ENROLLMENTS.c.id,
        ENROLLMENTS.c.contact_id,
        ENROLLMENTS.c.version_id,
        ENROLLMENTS.c.position,
    ).where(
        ENROLLMENTS.c.status == EnrollmentStatus.active,
        among(conn, ENROLLMENTS.c.contact_id, contact_ids),
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.order_by(ENROLLMENTS.c.id).with_for_update(read=True)
    rows = await conn.execute(query)
    by_contact: dict[int, list[Target]] = {}
    for row in rows:
        by_contact.setdefault(row.contact_id, []).append((row.id, row.version_id, row.position))
    return {
        id(e): [
            t
            for t in by_contact.get(e.contact_id, [])
            if e.enrollment_id is None or t[0] == e.enrollment_id
        ]
        for e in events
    }


async def _plan(
    conn: AsyncConnection, events: list[Incoming], targets: dict[int, list[Target]]
) -> tuple[dict[str, list[str]], dict[str, tuple[str, str]]]:
    """Which enrollments exit (by event type) and which waits wake (step, event type)."""
    exits: dict[str, list[str]] = {}
    waits: dict[str, tuple[str, str]] = {}
    for event in events:
        for enrollment_id, version_id, position in targets.get(id(event), []):
            defn = await registry.load_version(conn, version_id)
            if event.type in defn.exit_on:
                exits.setdefault(event.type, []).append(enrollment_id)
                continue
            step = defn.step(position) if position else None
            if isinstance(step, WaitStep) and event.type in step.wait.until:
                waits.setdefault(enrollment_id, (step.id, event.type))
    return exits, waits


async def _entry_triggers(
    conn: AsyncConnection, deps: Deps, events: list[Incoming], now: datetime
) -> list[datetime]:
    from sequences.engine.enrollments import (
        enroll,  # enrollments -> flow -> ...; imported late on purpose
    )

    wake: list[datetime] = []
    triggered = [p for p in await registry.all_current(conn) if p.definition.entry is not None]
    for event in events:
        for pinned in triggered:
            assert pinned.definition.entry is not None
            if event.type not in pinned.definition.entry.events:
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
