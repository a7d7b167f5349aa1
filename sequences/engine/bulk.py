"""Enrolling many contacts into one sequence with a few statements, whatever their number.

The same rules as :func:`sequences.engine.enrollments.enroll`, per contact: a suppressed
address or a refused re-enrollment is a 409, and so is a contact that already has an active
enrollment in the sequence's exclusive group (naming it). The group's partial unique index is
the judge: enrollments are inserted with ``ON CONFLICT DO NOTHING`` on it, and a contact whose
row was not inserted has an active one already (committed, or made by an earlier mention of
the same contact in the same request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.definitions.registry import Pinned
from sequences.deps import Deps
from sequences.engine import lifecycle
from sequences.engine.enrollments import active_lock, fresh_context
from sequences.engine.flow import Move, apply_moves, plan_move, plans_alone
from sequences.errors import Conflict
from sequences.store import timeline
from sequences.store.arrays import insert_arrays
from sequences.store.contacts import ContactState
from sequences.store.db import among, dialect_insert
from sequences.store.tables import ENROLLMENTS, EnrollmentStatus, new_id

# Rows per INSERT on SQLite: 12 parameters each stays under its 32,766 (PostgreSQL takes one
# array per column, whatever the number of rows).
INSERT_CHUNK = 1000


@dataclass
class Batch:
    """Per contact, in the request's order: the new enrollment's id or why there is none."""

    outcomes: list[str | Conflict]
    wake: list[datetime] = field(default_factory=list)


async def enroll_many(
    conn: AsyncConnection,
    deps: Deps,
    pinned: Pinned,
    people: list[ContactState],
    *,
    now: datetime,
    source: str = "api",
) -> Batch:
    """Enroll each contact (upserted, so locked, by the caller) unless a rule refuses it."""
    outcomes: list[str | Conflict | None] = await _refusals(conn, pinned, people)
    chosen: dict[int, int] = {}  # contact id -> the index of its first mention still in play
    for index, person in enumerate(people):
        if outcomes[index] is None and person.id not in chosen:
            chosen[person.id] = index
    ids = {index: new_id("enr") for index in chosen.values()}
    lock = active_lock(pinned)
    # Planned before the insert where the first step allows, so each row is written at its step.
    placed = plans_alone(pinned.definition.steps[0])
    planned = {
        index: await _first_move(conn, deps, pinned, people[index], eid, now, source)
        for index, eid in sorted(ids.items())
        if placed
    }
    positions = {m.enrollment_id: m.schedule[0] for m in planned.values() if m.schedule}
    inserted = await _insert(conn, pinned, lock, people, ids, positions, now)
    shut_out = [
        p.id for i, p in enumerate(people) if outcomes[i] is None and ids.get(i) not in inserted
    ]
    active = await _active(conn, lock, shut_out)
    for index, person in enumerate(people):
        if outcomes[index] is not None:
            continue
        mine = ids.get(index)
        if mine is not None and mine in inserted:
            outcomes[index] = mine
        else:
            first = ids.get(chosen.get(person.id, -1))
            holder = first if first in inserted else active.get(person.id)
            outcomes[index] = _clash(lock, holder)
    moves = [
        planned[index]
        if placed
        else await _first_move(conn, deps, pinned, people[index], eid, now, source)
        for index, eid in sorted(ids.items())
        if eid in inserted
    ]
    wake = await apply_moves(conn, moves, now, placed=placed)
    return Batch([o for o in outcomes if o is not None], wake)


async def _refusals(
    conn: AsyncConnection, pinned: Pinned, people: list[ContactState]
) -> list[str | Conflict | None]:
    """Suppressed addresses and refused re-enrollments, found with two queries."""
    blocked = await lifecycle.suppressed(conn, {p.email_key for p in people})
    before = await _finished_before(conn, pinned, {p.id for p in people})
    refusals: list[str | Conflict | None] = []
    for person in people:
        reason = blocked.get(person.email_key)
        previous = before.get(person.id)
        if reason is not None:
            refusals.append(Conflict("contact_suppressed", f"the address is suppressed ({reason})"))
        elif previous is not None:
            refusals.append(
                Conflict(
                    "reenroll_not_allowed",
                    "the contact went through this sequence before and its entry says "
                    "reenroll: never",
                    {"previous_enrollment": previous},
                )
            )
        else:
            refusals.append(None)
    return refusals


async def _finished_before(
    conn: AsyncConnection, pinned: Pinned, contact_ids: set[int]
) -> dict[int, str]:
    entry = pinned.definition.entry
    if entry is None or entry.reenroll != "never" or not contact_ids:
        return {}
    rows = await conn.execute(
        select(ENROLLMENTS.c.contact_id, ENROLLMENTS.c.id).where(
            among(conn, ENROLLMENTS.c.contact_id, sorted(contact_ids)),
            ENROLLMENTS.c.sequence_id == pinned.sequence_id,
            ENROLLMENTS.c.status != EnrollmentStatus.active,
        )
    )
    return {row.contact_id: row.id for row in rows}


async def _insert(
    conn: AsyncConnection,
    pinned: Pinned,
    lock: str,
    people: list[ContactState],
    ids: dict[int, str],
    positions: dict[str, str],
    now: datetime,
) -> set[str]:
    """Insert the enrollments (at ``positions`` where planned); the ids of those the exclusive
    group let in."""
    if not ids:
        return set()
    rows = [
        _row(pinned, lock, people[index].id, eid, positions.get(eid), now)
        for index, eid in ids.items()
    ]
    if conn.dialect.name == "postgresql":
        # A literal, not a parameter: the planner must see it implies the index's own.
        conflict = "ON CONFLICT (contact_id, active_lock) WHERE status = 'active' DO NOTHING"
        return {
            r.id
            for r in await insert_arrays(
                conn, ENROLLMENTS, rows, conflict=conflict, returning=("id",)
            )
        }
    inserted: set[str] = set()
    for start in range(0, len(rows), INSERT_CHUNK):
        statement = (
            dialect_insert(conn, ENROLLMENTS)
            .values(rows[start : start + INSERT_CHUNK])
            .on_conflict_do_nothing(
                index_elements=["contact_id", "active_lock"],
                # A literal, not a parameter: the planner must see it implies the index's own.
                index_where=text("status = 'active'"),
            )
            .returning(ENROLLMENTS.c.id)
        )
        inserted.update((await conn.execute(statement)).scalars())
    return inserted


def _row(
    pinned: Pinned, lock: str, contact_id: int, eid: str, position: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "id": eid,
        "contact_id": contact_id,
        "sequence_id": pinned.sequence_id,
        "version_id": pinned.version_id,
        "version": pinned.version,
        "status": EnrollmentStatus.active,
        "position": position,
        "active_lock": lock,
        "idempotency_key": None,
        "request_hash": None,
        "created_at": now,
        "updated_at": now,
    }


async def _active(conn: AsyncConnection, lock: str, contact_ids: list[int]) -> dict[int, str]:
    """The active enrollment in ``lock`` of each of these contacts that has one."""
    if not contact_ids:
        return {}
    rows = await conn.execute(
        select(ENROLLMENTS.c.contact_id, ENROLLMENTS.c.id).where(
            among(conn, ENROLLMENTS.c.contact_id, sorted(set(contact_ids))),
            ENROLLMENTS.c.active_lock == lock,
            ENROLLMENTS.c.status == EnrollmentStatus.active,
        )
    )
    return {row.contact_id: row.id for row in rows}


def _clash(lock: str, holder: str | None) -> Conflict:
    return Conflict(
        "already_enrolled",
        f"the contact already has an active enrollment in '{lock}'",
        {"active_enrollment": holder, "exclusive_group": lock},
    )


async def _first_move(
    conn: AsyncConnection,
    deps: Deps,
    pinned: Pinned,
    person: ContactState,
    enrollment_id: str,
    now: datetime,
    source: str,
) -> Move:
    ctx = fresh_context(pinned, person, enrollment_id, now)
    entries = [
        timeline.entry(enrollment_id, now, "enrolled", None, version=pinned.version, source=source)
    ]
    first = pinned.definition.steps[0].id
    return await plan_move(conn, deps, ctx, first, now, entries)
