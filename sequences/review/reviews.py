"""Drafts waiting for a reviewer: recorded by the worker, decided through the API, released
again by the decision or by the deadline. Also the cost ledger's writes.

Every decision is a conditional UPDATE on a pending draft, so two reviewers racing get one
winner and one 409; the held outbox row is made due in the same transaction, and the worker
that claims it resumes the graph with the decision.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.copy import Decision
from sequences.engine import outbox
from sequences.store import timeline
from sequences.store.tables import DRAFTS, MODEL_CALLS, RUNS, DraftStatus, RunState, new_id

if TYPE_CHECKING:
    from sequences.delivery.outcomes import Job
    from sequences.review.drafting import Held


async def record(conn: AsyncConnection, jobs: list[Job], held: list[Held], now: datetime) -> None:
    """In the batch's transaction: park drafts for review, note what deadlines decided, close
    the drafts acted on, and write every model call to the cost ledger."""
    for item in held:
        await _hold(conn, item, now)
    parked = {id(item.job) for item in held}
    for job in jobs:
        if job.expired is not None and job.draft_row is not None:
            await _expired(conn, job, job.expired, now)
    acted = [
        j.draft_row.id
        for j in jobs
        if j.draft_row is not None
        and id(j) not in parked
        and j.draft_row.status != DraftStatus.pending
    ]
    await resolve(conn, acted, now)
    await _ledger(conn, jobs, now)


async def _expired(conn: AsyncConnection, job: Job, decision: Decision, now: datetime) -> None:
    row = job.draft_row
    await conn.execute(
        update(DRAFTS)
        .where(DRAFTS.c.id == row.id, DRAFTS.c.status == DraftStatus.pending)
        .values(
            status=DraftStatus.resolved,
            decision=decision.model_dump(mode="json"),
            decided_by=decision.by,
            decided_at=now,
        )
    )
    entry = timeline.entry(
        job.ctx.enrollment_id,
        now,
        "approval_expired",
        job.step.id,
        draft=row.id,
        policy=decision.action,
        reason=decision.note,
    )
    await timeline.record(conn, [entry])


async def _hold(conn: AsyncConnection, item: Held, now: datetime) -> None:
    job, review, previous = item.job, item.review, item.job.draft_row
    deadline = item.deadline
    if job.overdue:
        deadline = None  # the policy is to hold: noted once, then it waits for a reviewer
    if not await outbox.hold(conn, job.claim, deadline or now):
        return  # the claim lapsed: whoever holds it now finds the same pending review
    if previous is not None and previous.status == DraftStatus.pending:
        if job.overdue:
            await conn.execute(
                update(DRAFTS).where(DRAFTS.c.id == previous.id).values(deadline_at=None)
            )
            await timeline.record(conn, [_overdue_entry(job, previous.id, now)])
        return  # still the same draft waiting: nothing new to record
    assert review is not None, "a new review comes with the draft to review"
    draft_id = new_id("drf")
    await conn.execute(
        insert(DRAFTS).values(
            {
                "id": draft_id,
                "step_run_id": job.claim.run_id,
                "revision": item.revision,
                "thread_id": job.thread,
                "enrollment_id": job.ctx.enrollment_id,
                "contact_id": job.ctx.contact_id,
                "sequence_key": job.ctx.sequence_key,
                "step_id": job.step.id,
                "variant": review.variant,
                "status": DraftStatus.pending,
                "model": review.draft.model,
                "subject": review.draft.subject,
                "copy": review.draft.model_dump(mode="json"),
                "preview_html": review.preview.html,
                "preview_text": review.preview.text,
                "review": _review_detail(review),
                "request": job.request.model_dump(mode="json") if job.request else {},
                "created_at": now,
                "deadline_at": deadline,
                "due_at": item.due or now,
            }
        )
    )
    if previous is not None:
        await resolve(conn, [previous.id], now)
    entry = timeline.entry(
        job.ctx.enrollment_id,
        now,
        "review_requested",
        job.step.id,
        draft=draft_id,
        model=review.draft.model,
        rationale=review.draft.rationale,
        revision=item.revision,
        deadline=deadline.isoformat() if deadline else None,
    )
    await timeline.record(conn, [entry])


def _review_detail(review: Any) -> dict[str, Any]:
    return {
        "findings": [f.model_dump() for f in review.findings],
        "fallback": review.fallback.model_dump(mode="json"),
        "choice_reason": review.choice_reason,
        "fallback_reason": review.fallback_reason,
        "signals": review.signals,
        "unsubscribe_url": review.preview.unsubscribe_url,
    }


def _overdue_entry(job: Job, draft_id: str, now: datetime) -> dict[str, Any]:
    return timeline.entry(
        job.ctx.enrollment_id,
        now,
        "approval_overdue",
        job.step.id,
        draft=draft_id,
        policy="hold",
        reason="the review deadline passed; the sequence's policy is to hold for a reviewer",
    )


async def _ledger(conn: AsyncConnection, jobs: list[Job], now: datetime) -> None:
    rows = [
        {
            "step_run_id": job.claim.run_id,
            "sequence_key": job.ctx.sequence_key,
            "step_id": job.step.id,
            **call.model_dump(),
            "created_at": now,
        }
        for job in jobs
        for call in job.calls
    ]
    if rows:
        await conn.execute(insert(MODEL_CALLS), rows)


async def resolve(conn: AsyncConnection, draft_ids: list[str], now: datetime) -> None:
    """The worker acted on these drafts' decisions (or superseded them with a new draft)."""
    if draft_ids:
        await conn.execute(
            update(DRAFTS)
            .where(DRAFTS.c.id.in_(draft_ids), DRAFTS.c.status != DraftStatus.pending)
            .values(status=DraftStatus.resolved)
        )


async def decide(
    conn: AsyncConnection, draft_id: str, decision: Decision, now: datetime
) -> Any | None:
    """Record a reviewer's decision on a pending draft and make its row due; None when the
    draft is no longer pending (decided by someone else, expired or cancelled)."""
    status = DraftStatus.approved if decision.action == "approve" else DraftStatus.rejected
    row = (
        await conn.execute(
            update(DRAFTS)
            .where(DRAFTS.c.id == draft_id, DRAFTS.c.status == DraftStatus.pending)
            .values(
                status=status,
                decision=decision.model_dump(mode="json"),
                decided_by=decision.by,
                decided_at=now,
            )
            .returning(DRAFTS)
        )
    ).first()
    if row is None:
        return None
    await outbox.unhold(conn, [row.step_run_id], now)
    kind = "draft_approved" if decision.action == "approve" else "draft_rejected"
    detail: dict[str, Any] = {"draft": draft_id, "by": decision.by, "action": decision.action}
    if decision.note:
        detail["note"] = decision.note
    if decision.action == "approve":
        detail["edited"] = any(
            v is not None for v in (decision.subject, decision.preheader, decision.body)
        )
    await timeline.record(
        conn, [timeline.entry(row.enrollment_id, now, kind, row.step_id, **detail)]
    )
    return row


async def release_overdue(conn: AsyncConnection, now: datetime) -> int:
    """Held rows whose draft's deadline passed become due; the worker applies the policy."""
    overdue = select(DRAFTS.c.step_run_id).where(
        DRAFTS.c.status == DraftStatus.pending, DRAFTS.c.deadline_at <= now
    )
    result = await conn.execute(
        update(RUNS)
        .where(RUNS.c.state == RunState.held, RUNS.c.id.in_(overdue.scalar_subquery()))
        .values(state=RunState.due, due_at=now)
    )
    return result.rowcount
