"""What a step's timeline keeps of its drafting: each model attempt, and a draft that waits.

Attempts: every HTTP request behind the step's model calls (status, error, wait) goes on its
``drafted`` entry, so a retried or failed model is visible where the email is.

Kept drafts: the frequency cap is decided before drafting, but a batch elsewhere can take the
contact's slot while this one drafts. The draft then waits on the ``deferred`` entry and is sent
as it is when the row runs again, with no second model call. A reviewed draft needs no such
keeping: its graph's checkpoint holds it, and resuming returns it.

Drafts ahead (sequences.review.ahead) are kept the same way, on their ``drafted_ahead`` entry,
reviewed ones too (so sending one runs no graph), and so is a decision to skip the step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.copy import Draft, ModelCall
from sequences.delivery.outcomes import Job
from sequences.store.tables import TIMELINE

KEPT = "kept"
AHEAD = "drafted_ahead"


def attempts(calls: Iterable[ModelCall]) -> dict[str, Any]:
    """The ``attempts`` of a ``drafted`` entry (nothing when no model was asked)."""
    tries = [
        {
            "call": call.purpose,
            "attempt": tried.number,
            "status": tried.status,
            "error": tried.error,
            "wait": round(tried.wait, 3) if tried.wait is not None else None,
        }
        for call in calls
        for tried in call.attempts
    ]
    return {"attempts": tries} if tries else {}


def kept(job: Job, draft: Draft) -> dict[str, Any]:
    """What a ``deferred`` entry keeps of a draft made before the deferral."""
    if job.draft_row is not None:  # through review: the checkpoint keeps it
        return {}
    detail = {
        "run": job.claim.run_id,
        "draft": draft.model_dump(mode="json"),
        "reason": job.outcome_reason,
        "choice": job.choice,
    }
    return {KEPT: detail}


def ahead(job: Job, draft: Draft | None, skip: str | None = None) -> dict[str, Any]:
    """What a ``drafted_ahead`` entry keeps: the copy to send, or the reason to skip."""
    detail: dict[str, Any] = {"run": job.claim.run_id}
    if draft is None:
        detail["skip"] = skip or "skipped"
    else:
        detail.update(
            draft=draft.model_dump(mode="json"),
            reason=job.outcome_reason,
            choice=job.choice,
            reviewed=job.draft_row is not None,
        )
    return {KEPT: detail}


async def load_kept(conn: AsyncConnection, jobs: list[Job]) -> dict[int, dict[str, Any]]:
    """The drafts kept for these outbox rows, by row id: a capped step's deferred draft, or a
    draft stored ahead (the newest, when the row was redrafted)."""
    wanted = [
        j
        for j in jobs
        if not j.claim.drafting
        and (j.ctx.definition.frequency_cap is not None or j.claim.drafted_at is not None)
    ]
    if not wanted:
        return {}
    rows = await conn.execute(
        select(TIMELINE.c.detail)
        .where(
            TIMELINE.c.enrollment_id.in_({j.ctx.enrollment_id for j in wanted}),
            TIMELINE.c.kind.in_(["deferred", AHEAD]),
            TIMELINE.c.step_id.in_({j.step.id for j in wanted}),
        )
        .order_by(TIMELINE.c.id)
    )
    runs = {j.claim.run_id for j in wanted}
    found: dict[int, dict[str, Any]] = {}
    for (detail,) in rows:
        item = (detail or {}).get(KEPT)
        if item and item.get("run") in runs:
            found[item["run"]] = item
    return found


def restore(job: Job, item: dict[str, Any]) -> tuple[Job, Draft]:
    """The kept draft, ready to send, with what the timeline said of it."""
    job.outcome_reason = item.get("reason") or ""
    job.choice = item.get("choice")
    return job, Draft.model_validate(item["draft"])
