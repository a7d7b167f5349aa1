"""Ending enrollments and suppressing addresses: at once, pending rows and drafts included."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.engine import outbox
from sequences.store import timeline
from sequences.store.db import among, dialect_insert, lock_rows
from sequences.store.events import Incoming, store_events
from sequences.store.tables import (
    CONTACTS,
    DRAFTS,
    ENROLLMENTS,
    SUPPRESSIONS,
    DraftStatus,
    EnrollmentStatus,
)

# These always end every sequence for the address, whatever exit_on says.
SUPPRESSING_EVENTS = {"unsubscribed": "unsubscribed", "complained": "complaint"}


async def end(
    conn: AsyncConnection,
    enrollment_ids: list[str],
    *,
    status: EnrollmentStatus,
    reason: str | None,
    now: datetime,
    step_id: str | None = None,
) -> list[str]:
    """Move active enrollments to a final status; returns those that were still active."""
    if not enrollment_ids:
        return []
    await lock_rows(conn, ENROLLMENTS, sorted(enrollment_ids))
    values: dict[str, object] = {
        "status": status,
        "exit_reason": reason,
        "finished_at": now,
        "updated_at": now,
    }
    if step_id is not None:
        values["position"] = step_id  # where the contact left: an exit step, a failed send
    rows = await conn.execute(
        update(ENROLLMENTS)
        .where(
            among(conn, ENROLLMENTS.c.id, enrollment_ids),
            ENROLLMENTS.c.status == EnrollmentStatus.active,
        )
        .values(**values)
        .returning(ENROLLMENTS.c.id)
    )
    ended = [r.id for r in rows]
    await outbox.cancel_pending(conn, ended)
    await _cancel_drafts(conn, ended)
    kind = "completed" if status == EnrollmentStatus.completed else str(status)
    await timeline.record(
        conn, [timeline.entry(e, now, kind, step_id, reason=reason) for e in ended]
    )
    return ended


async def active_for_contact(conn: AsyncConnection, contact_id: int) -> list[str]:
    rows = await conn.execute(
        select(ENROLLMENTS.c.id).where(
            ENROLLMENTS.c.contact_id == contact_id, ENROLLMENTS.c.status == EnrollmentStatus.active
        )
    )
    return [r.id for r in rows]


async def suppress(
    conn: AsyncConnection,
    contact_id: int,
    email_key: str,
    *,
    reason: str,
    now: datetime,
    detail: str | None = None,
) -> list[str]:
    """Stop every sequence for this address, now and for future enrollments."""
    values = {"email_key": email_key, "reason": reason, "detail": detail, "created_at": now}
    await conn.execute(dialect_insert(conn, SUPPRESSIONS).values(**values).on_conflict_do_nothing())
    active = await active_for_contact(conn, contact_id)
    return await end(conn, active, status=EnrollmentStatus.exited, reason=reason, now=now)


def may_send(
    enrollment_id: ColumnElement[str], contact_id: ColumnElement[int]
) -> ColumnElement[bool]:
    """True inside a statement while the enrollment is active and the contact's address not
    suppressed (both columns of the statement's table): what a sender checks again right
    before each message's MAIL FROM."""
    active = select(ENROLLMENTS.c.id).where(
        ENROLLMENTS.c.id == enrollment_id, ENROLLMENTS.c.status == EnrollmentStatus.active
    )
    barred = (
        select(SUPPRESSIONS.c.id)
        .join(CONTACTS, CONTACTS.c.email_key == SUPPRESSIONS.c.email_key)
        .where(CONTACTS.c.id == contact_id)
    )
    return and_(exists(active), ~exists(barred))


async def suppressed(conn: AsyncConnection, email_keys: set[str]) -> dict[str, str]:
    """The suppression reason of each of these addresses that has one."""
    rows = await conn.execute(
        select(SUPPRESSIONS.c.email_key, SUPPRESSIONS.c.reason).where(
            among(conn, SUPPRESSIONS.c.email_key, email_keys)
        )
    )
    return {row.email_key: row.reason for row in rows}


async def _cancel_drafts(conn: AsyncConnection, enrollment_ids: list[str]) -> None:
    """Enrollments that ended: their pending drafts will never be sent."""
    if enrollment_ids:
        await conn.execute(
            update(DRAFTS)
            .where(
                among(conn, DRAFTS.c.enrollment_id, enrollment_ids),
                DRAFTS.c.status == DraftStatus.pending,
            )
            .values(status=DraftStatus.cancelled)
        )


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
    if await store_events(conn, [event], now):
        await timeline.record(
            conn, [timeline.entry(enrollment_id, now, "bounced", None, reply=detail)]
        )
        await suppress(conn, contact_id, email_key, reason="hard_bounce", now=now, detail=detail)
