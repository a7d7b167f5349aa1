"""Drafts ahead: an email reached through a wait is drafted ``draft_ahead`` before it is due.

When an enrollment enters a wait that leads straight to an email (sequences.engine.flow), the
email gets its outbox row at once, in the ``ahead`` phase, due at ``send at - lead``. The
runner's drafting lane claims such rows in due order (so drafting is a queue ordered by due
time, paced by the shared model budget) and runs the copy agent here:

- the checked copy is stored on a ``drafted_ahead`` timeline entry and the row waits ``ready``;
  when the wait ends and the flow reaches the email, the row becomes due and the send path only
  renders the stored copy: no model call, no graph run, sent on time;
- a draft that needs approval is held for review now, so a reviewer sees it ``lead`` before
  it is due, and its deadline counts from the due time;
- a model outage is retried while there is time; when there is none, ``late_draft`` decides:
  ``fallback`` stores the fallback copy, ``hold`` keeps trying and the email waits for it.

New human engagement before the email is reached makes the drafted copy stale: event intake
makes the row draft again (sequences.intake.feedback), unless a reviewer approved it.
A crash is safe as anywhere else: every write is conditional on the row's claim.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.composer import COMPOSER_MODEL
from agents.copy import Draft
from sequences.definitions.ahead import email_after_wait
from sequences.definitions.ahead import lead as drafting_lead
from sequences.definitions.document import EmailStep, SequenceDefinition, WaitStep
from sequences.delivery.outcomes import Job
from sequences.deps import Deps
from sequences.engine import drafted, outbox
from sequences.review import drafting, reviews, trail
from sequences.store import timeline
from sequences.store.db import lock_rows, transaction
from sequences.store.tables import ENROLLMENTS, TIMELINE, RunPhase

log = logging.getLogger(__name__)


async def draft_batch(deps: Deps, jobs: list[Job]) -> None:
    """Draft a claimed batch of rows ahead of their emails and store what came of it."""
    if not jobs:
        return
    now = deps.clock.now()
    prepared = await drafting.prepare(deps, jobs, now)
    done = deps.clock.now()
    stored: list[tuple[Job, Draft | None, str | None]] = []
    retry: list[Job] = []
    for job, draft in prepared.drafted:
        if _outage(deps, job, draft) and _may_retry(deps, job, done):
            retry.append(job)
        else:
            stored.append((job, draft, None))
    by_run = {job.claim.run_id: job for job in jobs}
    stored += [(by_run[f.claim.run_id], None, f.detail["reason"]) for f in prepared.skipped]
    record = functools.partial(
        _record, deps=deps, jobs=jobs, stored=stored, retry=retry, held=prepared.held, now=done
    )
    later = await transaction(deps.engine, record)
    await deps.waker.wake_at(later)


def _outage(deps: Deps, job: Job, draft: Draft) -> bool:
    """The composer wrote this because the model failed or ran past its budget (not because
    the guardrails refused the model's copy, which a retry would not change)."""
    if deps.agent.model is None or draft.model != COMPOSER_MODEL:
        return False
    return job.timed_out or any(call.outcome != "ok" for call in job.calls)


def _may_retry(deps: Deps, job: Job, now: datetime) -> bool:
    """Try the model again later: while the email is not due, or, past that, when the
    sequence's policy is to hold the email for a real draft."""
    if job.ctx.definition.late_draft == "hold":
        return True
    send_at = job.claim.send_at
    step = timedelta(seconds=deps.settings.retry_base_seconds)
    return job.claim.phase == RunPhase.ahead and send_at is not None and send_at - now > step


async def _record(
    conn: AsyncConnection,
    *,
    deps: Deps,
    jobs: list[Job],
    stored: list[tuple[Job, Draft | None, str | None]],
    retry: list[Job],
    held: list[drafting.Held],
    now: datetime,
) -> list[datetime]:
    # The lock order (sequences.store.db.LOCK_ORDER): enrollments before their outbox rows.
    await lock_rows(conn, ENROLLMENTS, sorted({j.ctx.enrollment_id for j in jobs}))
    later: list[datetime] = []
    step = timedelta(seconds=deps.settings.retry_base_seconds)
    entries = []
    for job in retry:
        until = now + step
        if job.claim.phase == RunPhase.ahead and job.claim.send_at is not None:
            until = min(until, max(now, job.claim.send_at))
        if await outbox.release(conn, job.claim, until):
            later.append(until)
            reason = "; ".join(sorted({c.outcome for c in job.calls if c.outcome != "ok"}))
            entries.append(
                timeline.entry(
                    job.ctx.enrollment_id,
                    now,
                    "draft_retry",
                    job.step.id,
                    next_try=until.isoformat(),
                    reason=reason or "the model ran past the draft budget",
                    policy=job.ctx.definition.late_draft,
                    **trail.attempts(job.calls),
                )
            )
    parked = await drafted.park_drafted(conn, [job.claim for job, _, _ in stored], now)
    for job, draft, skip in stored:
        if job.claim.run_id not in parked:
            continue  # the claim lapsed: whoever holds the row now drafts it
        entries.append(_entry(job, draft, skip, now))
    await timeline.record(conn, entries)
    await reviews.record(conn, jobs, held, now)
    # A row the flow reached while it drafted is due now; the others wait for their step.
    return later + ([now] if parked else [])


def _entry(job: Job, draft: Draft | None, skip: str | None, now: datetime) -> dict[str, object]:
    send_at = job.claim.send_at.isoformat() if job.claim.send_at else None
    common = {"due": send_at, **trail.ahead(job, draft, skip)}
    if draft is None:
        return timeline.entry(job.ctx.enrollment_id, now, "drafted_ahead", job.step.id, **common)
    return timeline.entry(
        job.ctx.enrollment_id,
        now,
        "drafted_ahead",
        job.step.id,
        variant=draft.variant,
        model=draft.model,
        rationale=draft.rationale,
        **trail.attempts(job.calls),
        **({"reason": job.outcome_reason} if job.outcome_reason else {}),
        **common,
    )


async def hold_late(conn: AsyncConnection, jobs: list[Job], now: datetime) -> list[datetime]:
    """``late_draft: hold``: emails due with no draft go back to the drafting lane and are sent
    as soon as their copy is ready."""
    await lock_rows(conn, ENROLLMENTS, sorted({j.ctx.enrollment_id for j in jobs}))
    entries = []
    for job in jobs:
        if await outbox.release(conn, job.claim, now, phase=RunPhase.late):
            entries.append(
                timeline.entry(
                    job.ctx.enrollment_id,
                    now,
                    "draft_late",
                    job.step.id,
                    policy="hold",
                    reason="no draft was ready when the email was due; it waits for one",
                )
            )
    await timeline.record(conn, entries)
    return [now] if entries else []


SHOWN = ("drafted_ahead", "redraft", "draft_retry", "draft_late")


async def step_report(
    conn: AsyncConnection, sequence_id: int, definition: SequenceDefinition, default_lead: str
) -> dict[str, dict[str, object]]:
    """Per email step: when it is drafted, the policy for a draft not ready when due, and what
    drafting ahead did so far (timeline entries by kind; emails sent with the fallback copy)."""
    counted = await conn.execute(
        select(TIMELINE.c.step_id, TIMELINE.c.kind, func.count())
        .join(ENROLLMENTS, ENROLLMENTS.c.id == TIMELINE.c.enrollment_id)
        .where(ENROLLMENTS.c.sequence_id == sequence_id, TIMELINE.c.kind.in_(SHOWN))
        .group_by(TIMELINE.c.step_id, TIMELINE.c.kind)
    )
    found: dict[tuple[str | None, str], int] = {(s, k): n for s, k, n in counted}
    fallback = await conn.execute(
        select(TIMELINE.c.step_id, func.count())
        .join(ENROLLMENTS, ENROLLMENTS.c.id == TIMELINE.c.enrollment_id)
        .where(
            ENROLLMENTS.c.sequence_id == sequence_id,
            TIMELINE.c.kind == "drafted",
            TIMELINE.c.detail["model"].as_string() == COMPOSER_MODEL,
        )
        .group_by(TIMELINE.c.step_id)
    )
    fallbacks: dict[str | None, int] = {s: n for s, n in fallback}
    # Only an email a wait leads to (through gotos) has a due time known ahead.
    after_waits = {
        email.id
        for step in definition.steps
        if isinstance(step, WaitStep) and (email := email_after_wait(definition, step.id))
    }
    report: dict[str, dict[str, object]] = {}
    for step in definition.steps:
        if not isinstance(step, EmailStep):
            continue
        lead = (
            drafting_lead(definition, step, default_lead)
            if step.id in after_waits
            else timedelta(0)
        )
        report[step.id] = {
            "draft_ahead": step.email.draft_ahead or definition.draft_ahead or default_lead,
            "known_ahead": step.id in after_waits,
            "draft_ahead_seconds": lead.total_seconds(),
            "late_draft": definition.late_draft,
            "late_draft_wait_seconds": definition.late_draft_wait_seconds,
            **{kind: found.get((step.id, kind), 0) for kind in SHOWN},
            "sent_with_fallback_copy": fallbacks.get(step.id, 0),
        }
    return report
