"""Enrolling contacts: idempotent, one active enrollment per exclusive group, at once scheduled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.definitions.registry import Pinned
from sequences.deps import Deps
from sequences.engine.flow import (
    Move,
    RunContext,
    apply_moves,
    load_context,
    plan_move,
    plans_alone,
)
from sequences.errors import Conflict
from sequences.store import timeline
from sequences.store.contacts import ContactState
from sequences.store.db import dialect_insert
from sequences.store.tables import ENROLLMENTS, SUPPRESSIONS, EnrollmentStatus, new_id


@dataclass(frozen=True)
class Enrolled:
    id: str
    replayed: bool  # the same Idempotency-Key and request as before: the earlier enrollment
    wake: list[datetime]
    # A new enrollment: where its first move put it and the contact as upserted, which is all
    # an answer describing it needs (api.routes.enrollments.written) without reading it back.
    move: Move | None = None
    contact: ContactState | None = None
    at: datetime | None = None


def active_lock(pinned: Pinned) -> str:
    return pinned.definition.exclusive_group or f"sequence:{pinned.definition.key}"


async def enroll(
    conn: AsyncConnection,
    deps: Deps,
    pinned: Pinned,
    contact_id: int,
    email_key: str,
    *,
    now: datetime,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    source: str = "api",
    contact: ContactState | None = None,
) -> Enrolled:
    """``contact``: the contact as the caller just upserted it, which saves reading it back."""
    replay, reason = await _gate(conn, idempotency_key, email_key)
    if replay is not None:
        return _replayed(replay, request_hash)
    if reason is not None:
        raise Conflict("contact_suppressed", f"the address is suppressed ({reason})")
    await _check_reenroll(conn, pinned, contact_id)
    enrollment_id = new_id("enr")
    lock = active_lock(pinned)
    entries = [
        timeline.entry(enrollment_id, now, "enrolled", None, version=pinned.version, source=source)
    ]
    first = pinned.definition.steps[0]
    early: Move | None = None  # planned before the insert, so the row is written at its step
    if contact is not None and plans_alone(first):
        ctx = fresh_context(pinned, contact, enrollment_id, now)
        early = await plan_move(conn, deps, ctx, first.id, now, entries)
    # No row back: the exclusive group's active index or the Idempotency-Key's unique one
    # already holds a row, committed (a concurrent writer's is waited for, not skipped).
    # ON CONFLICT instead of a savepoint around an IntegrityError: two round trips fewer.
    inserted = await conn.scalar(
        dialect_insert(conn, ENROLLMENTS)
        .values(
            id=enrollment_id,
            contact_id=contact_id,
            sequence_id=pinned.sequence_id,
            version_id=pinned.version_id,
            version=pinned.version,
            status=EnrollmentStatus.active,
            position=early.schedule[0] if early and early.schedule else None,
            active_lock=lock,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(ENROLLMENTS.c.id)
    )
    if inserted is None:
        return await _clash(conn, contact_id, lock, idempotency_key, request_hash)
    move = early
    if move is None:
        loaded = (
            fresh_context(pinned, contact, enrollment_id, now)
            if contact is not None
            else await load_context(conn, enrollment_id)
        )
        assert loaded is not None
        move = await plan_move(conn, deps, loaded, first.id, now, entries)
    wake = await apply_moves(conn, [move], now, placed=early is not None)
    return Enrolled(enrollment_id, False, wake, move, contact, now)


def fresh_context(
    pinned: Pinned, person: ContactState, enrollment_id: str, now: datetime
) -> RunContext:
    """A just-inserted enrollment's context, from what the transaction wrote."""
    return RunContext(
        enrollment_id=enrollment_id,
        status=EnrollmentStatus.active,
        sequence_key=pinned.definition.key,
        version_id=pinned.version_id,
        definition=pinned.definition,
        contact_id=person.id,
        email=person.email,
        email_key=person.email_key,
        timezone=person.timezone,
        attributes=person.attributes,
        started_at=now,
    )


# Built once, as every single enrollment runs them: the suppression reason of an address, and
# with it the enrollment an Idempotency-Key made before (id and request hash), if any.
_SUPPRESSION = (
    select(SUPPRESSIONS.c.reason)
    .where(SUPPRESSIONS.c.email_key == bindparam("email_key"))
    .scalar_subquery()
    .label("reason")
)
_EARLIER = select(ENROLLMENTS.c.id, ENROLLMENTS.c.request_hash).where(
    ENROLLMENTS.c.idempotency_key == bindparam("key")
)
_GATE = select(
    _EARLIER.with_only_columns(ENROLLMENTS.c.id).scalar_subquery().label("id"),
    _EARLIER.with_only_columns(ENROLLMENTS.c.request_hash).scalar_subquery().label("request_hash"),
    _SUPPRESSION,
)
_SUPPRESSED = select(_SUPPRESSION)


async def _gate(conn: AsyncConnection, key: str | None, email_key: str) -> tuple[Any, str | None]:
    """In one round trip: the enrollment this Idempotency-Key made before (id, request hash),
    if any, and the address's suppression reason, if any."""
    if key is None:
        return None, await conn.scalar(_SUPPRESSED, {"email_key": email_key})
    row = (await conn.execute(_GATE, {"key": key, "email_key": email_key})).one()
    return (row if row.id is not None else None), row.reason


def _replayed(row: Any, request_hash: str | None) -> Enrolled:
    if row.request_hash != request_hash:
        raise Conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
            {"enrollment": row.id},
            status=422,
        )
    return Enrolled(row.id, True, [])


async def _replay(conn: AsyncConnection, key: str, request_hash: str | None) -> Enrolled | None:
    row = (await conn.execute(_EARLIER, {"key": key})).first()
    return None if row is None else _replayed(row, request_hash)


async def _clash(
    conn: AsyncConnection, contact_id: int, lock: str, key: str | None, request_hash: str | None
) -> Enrolled:
    if key is not None:
        replay = await _replay(conn, key, request_hash)
        if replay is not None:
            return replay
    row = (
        await conn.execute(
            select(ENROLLMENTS.c.id).where(
                and_(
                    ENROLLMENTS.c.contact_id == contact_id,
                    ENROLLMENTS.c.active_lock == lock,
                    ENROLLMENTS.c.status == EnrollmentStatus.active,
                )
            )
        )
    ).first()
    active = row.id if row else None
    raise Conflict(
        "already_enrolled",
        f"the contact already has an active enrollment in '{lock}'",
        {"active_enrollment": active, "exclusive_group": lock},
    )


async def _check_reenroll(conn: AsyncConnection, pinned: Pinned, contact_id: int) -> None:
    entry = pinned.definition.entry
    if entry is None or entry.reenroll != "never":
        return
    row = (
        await conn.execute(
            select(ENROLLMENTS.c.id)
            .where(
                ENROLLMENTS.c.contact_id == contact_id,
                ENROLLMENTS.c.sequence_id == pinned.sequence_id,
                ENROLLMENTS.c.status != EnrollmentStatus.active,
            )
            .limit(1)
        )
    ).first()
    if row is not None:
        raise Conflict(
            "reenroll_not_allowed",
            "the contact went through this sequence before and its entry says reenroll: never",
            {"previous_enrollment": row.id},
        )
