"""Enrollments: enroll (idempotent, exclusive), bulk, read with the timeline, cancel."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import DepsDep, Enroller, ReadConnDep, Reader
from api.schemas import BulkEnrollmentIn, ContactIn, EnrollmentIn
from sequences.definitions import registry
from sequences.definitions.registry import Pinned
from sequences.deps import Deps
from sequences.engine import lifecycle, outbox
from sequences.engine.bulk import Batch, enroll_many
from sequences.engine.enrollments import Enrolled, enroll
from sequences.errors import Conflict, DriplineError, NotFound
from sequences.signals import scores
from sequences.signals.engagement import Engagement
from sequences.signals.engagement import load as load_engagement
from sequences.store import contacts
from sequences.store.db import transaction
from sequences.store.tables import (
    CONTACTS,
    ENROLLMENTS,
    RUNS,
    SEQUENCES,
    TIMELINE,
    EnrollmentStatus,
    RunState,
)

router = APIRouter(prefix="/v1/enrollments", tags=["enrollments"])


async def _pinned(conn: AsyncConnection, key: str) -> Pinned:
    pinned = await registry.current(conn, key)
    if pinned is None:
        raise NotFound(
            "unknown_sequence",
            f"sequence: no sequence '{key}'",
            [{"path": "sequence", "message": "unknown"}],
        )
    return pinned


async def _enroll_one(
    conn: AsyncConnection,
    deps: Deps,
    pinned: Pinned,
    contact: ContactIn,
    key: str | None,
    request_hash: str | None,
) -> Enrolled:
    now = deps.clock.now()
    fields = contacts.ContactFields(str(contact.email), contact.timezone, contact.attributes)
    (person,) = await contacts.upsert_many(conn, [fields], now=now)
    return await enroll(
        conn,
        deps,
        pinned,
        person.id,
        person.email_key,
        now=now,
        idempotency_key=key,
        request_hash=request_hash,
        contact=person,
    )


@router.post("", status_code=201)
async def create_enrollment(
    body: EnrollmentIn,
    response: Response,
    deps: DepsDep,
    principal: Enroller,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Enroll a contact; the same Idempotency-Key returns the same enrollment; a clash is 409."""
    scoped = f"{principal.key_id}:{idempotency_key}" if idempotency_key else None
    request_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()

    async def work(conn: AsyncConnection) -> tuple[Pinned, Enrolled]:
        pinned = await _pinned(conn, body.sequence)
        return pinned, await _enroll_one(conn, deps, pinned, body.contact, scoped, request_hash)

    pinned, enrolled = await transaction(deps.engine, work)  # replayed when it loses a deadlock
    await deps.waker.wake_at(enrolled.wake)
    if enrolled.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    answer = await written(deps, pinned, enrolled)
    if answer is not None:
        return answer
    async with deps.reader.connect() as conn:
        return await describe(conn, deps, enrolled.id)


@router.post("/bulk", status_code=207)
async def bulk_enroll(body: BulkEnrollmentIn, deps: DepsDep, _: Enroller) -> dict[str, Any]:
    """Enroll many contacts; each result says created or why not, and one failure spoils none."""
    items = [contacts.ContactFields(str(c.email), c.timezone, c.attributes) for c in body.contacts]

    async def work(conn: AsyncConnection) -> Batch:
        pinned = await _pinned(conn, body.sequence)
        now = deps.clock.now()
        people = await contacts.upsert_many(conn, items, now=now)
        return await enroll_many(conn, deps, pinned, people, now=now)

    batch = await transaction(deps.engine, work)
    await deps.waker.wake_at(batch.wake)
    results = [
        _bulk_result(index, str(contact.email), outcome)
        for index, (contact, outcome) in enumerate(zip(body.contacts, batch.outcomes, strict=True))
    ]
    created = sum(1 for r in results if r["status"] == 201)
    return {"created": created, "failed": len(results) - created, "results": results}


def _bulk_result(index: int, email: str, outcome: str | DriplineError) -> dict[str, Any]:
    if isinstance(outcome, str):
        return {"index": index, "email": email, "status": 201, "id": outcome}
    error = {"code": outcome.code, "message": outcome.message, "details": outcome.details}
    return {"index": index, "email": email, "status": outcome.status, "error": error}


@router.get("/{enrollment_id}")
async def get_enrollment(
    enrollment_id: str, conn: ReadConnDep, deps: DepsDep, _: Reader
) -> dict[str, Any]:
    """Status, pinned version, current step, next run, timeline and engagement."""
    return await describe(conn, deps, enrollment_id)


@router.post("/{enrollment_id}/cancel")
async def cancel_enrollment(enrollment_id: str, deps: DepsDep, _: Enroller) -> dict[str, Any]:
    """Cancel an active enrollment; its pending steps are cancelled at once."""

    async def work(conn: AsyncConnection) -> None:
        status = (
            await conn.execute(
                select(ENROLLMENTS.c.status).where(ENROLLMENTS.c.id == enrollment_id)
            )
        ).scalar_one_or_none()
        if status is None:
            raise NotFound("unknown_enrollment", f"no enrollment '{enrollment_id}'")
        if status != EnrollmentStatus.active:
            raise Conflict("not_active", f"the enrollment is already {status}")
        await lifecycle.end(
            conn,
            [enrollment_id],
            status=EnrollmentStatus.cancelled,
            reason="cancelled by API",
            now=deps.clock.now(),
        )

    # Replayed when it loses a deadlock to a send or an event on the same enrollment.
    await transaction(deps.engine, work)
    async with deps.reader.connect() as conn:
        return await describe(conn, deps, enrollment_id)


async def describe(conn: AsyncConnection, deps: Deps, enrollment_id: str) -> dict[str, Any]:
    row = (
        await conn.execute(
            select(ENROLLMENTS, SEQUENCES.c.key.label("sequence"), CONTACTS.c.email)
            .join(SEQUENCES, SEQUENCES.c.id == ENROLLMENTS.c.sequence_id)
            .join(CONTACTS, CONTACTS.c.id == ENROLLMENTS.c.contact_id)
            .where(ENROLLMENTS.c.id == enrollment_id)
        )
    ).first()
    if row is None:
        raise NotFound("unknown_enrollment", f"no enrollment '{enrollment_id}'")
    next_run = (
        await conn.execute(
            select(RUNS.c.step_id, RUNS.c.due_at)
            .where(
                RUNS.c.enrollment_id == enrollment_id,
                RUNS.c.state.in_([RunState.due, RunState.claimed]),
                # An email drafting ahead is not the enrollment's next step: the wait before it is.
                or_(RUNS.c.phase.is_(None), RUNS.c.phase.notin_(outbox.DRAFTING)),
            )
            .order_by(RUNS.c.due_at)
            .limit(1)
        )
    ).first()
    entries = await conn.execute(
        select(TIMELINE.c.at, TIMELINE.c.kind, TIMELINE.c.step_id, TIMELINE.c.detail)
        .where(TIMELINE.c.enrollment_id == enrollment_id)
        .order_by(TIMELINE.c.id)
    )
    signals = await load_engagement(conn, deps, enrollment_id, row.contact_id, row.created_at)
    return _shape(
        row,
        row.sequence,
        {"step": next_run.step_id, "due_at": next_run.due_at.isoformat()} if next_run else None,
        signals,
        [
            {"at": e.at.isoformat(), "kind": e.kind, "step": e.step_id, **(e.detail or {})}
            for e in entries
        ],
    )


async def written(deps: Deps, pinned: Pinned, enrolled: Enrolled) -> dict[str, Any] | None:
    """A new enrollment described from what its transaction wrote, as ``describe`` would read
    it back: the row, its first move's timeline entries and scheduled step, and the contact's
    standing (read only for a contact that existed before). None when the first move ended
    the enrollment or met a row drafted ahead: those are read back."""
    move, person, at = enrolled.move, enrolled.contact, enrolled.at
    if move is None or person is None or at is None or move.schedule is None:
        return None
    if move.end is not None or move.reach or enrolled.replayed:
        return None
    signals = Engagement()
    if not person.created:
        async with deps.reader.connect() as conn:
            standings = await scores.contact_scores(
                conn, [person.id], deps.clock.now(), scores.Decay.of(deps)
            )
        signals.standing = standings[person.id]
    step, due = move.schedule
    row = SimpleNamespace(
        id=enrolled.id,
        version=pinned.version,
        email=person.email,
        status=EnrollmentStatus.active,
        exit_reason=None,
        position=step,
        created_at=at,
        finished_at=None,
    )
    return _shape(
        row,
        pinned.definition.key,
        {"step": step, "due_at": due.isoformat()},
        signals,
        [  # the details as the database hands them back: JSON
            {
                "at": e["at"].isoformat(),
                "kind": e["kind"],
                "step": e["step_id"],
                **json.loads(json.dumps(e["detail"] or {})),
            }
            for e in move.entries
        ],
    )


def _shape(
    row: Any,
    sequence: str,
    next_run: dict[str, Any] | None,
    signals: Engagement,
    entries: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "id": row.id,
        "sequence": sequence,
        "version": row.version,
        "email": row.email,
        "status": row.status,
        "exit_reason": row.exit_reason,
        "current_step": row.position,
        "next_run": next_run,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "engagement": {
            "score": signals.score,
            "affinities": signals.affinities,
            "by_step": signals.summary(),
        },
        "timeline": entries,
    }
