"""The engine's side of the copy agent: build each step's request, run or resume the graph,
and sort the answers into drafts to send, steps to skip and drafts to hold for review.

Nothing here writes: the caller records everything in the transaction that records the batch's
messages. A row waiting for review is ``held``; the reviewer's decision (or the deadline) makes
it due again, and the worker that claims it resumes the graph from its checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.agent import CopyAgent, Result, Review
from agents.bandit import Choice
from agents.copy import CopyRequest, Decision, Draft, EngagementSummary
from sequences.definitions.sandbox import SandboxError
from sequences.delivery.compose import copy_request, preview_renderer
from sequences.delivery.outcomes import Job
from sequences.deps import Deps
from sequences.engine.flow import Finished
from sequences.review import trail
from sequences.signals import adaptive, engagement
from sequences.store.tables import DRAFTS, DraftStatus, RunPhase

log = logging.getLogger(__name__)
DECIDED = (DraftStatus.approved, DraftStatus.rejected, DraftStatus.expired, DraftStatus.resolved)


@dataclass
class Held:
    """A draft the graph stopped on: recorded as pending, its row parked until a decision."""

    job: Job
    review: Review | None  # None: the draft already waiting stays as it is
    revision: int
    deadline: datetime | None
    due: datetime | None = None  # when the email is due (drafted ahead); None: now


@dataclass
class Prepared:
    drafted: list[tuple[Job, Draft]]
    skipped: list[Finished]
    held: list[Held]
    # Due with no draft ready, under the ``late_draft: hold`` policy: back to drafting.
    late: list[Job] = field(default_factory=list)


async def prepare(deps: Deps, jobs: list[Job], now: datetime) -> Prepared:
    async with deps.reader.connect() as conn:
        signals = await engagement.load_many(
            conn, deps, [(j.ctx.enrollment_id, j.ctx.contact_id, j.ctx.started_at) for j in jobs]
        )
        summaries = await engagement.summaries(conn, signals)
        rows = await latest_drafts(conn, [j.claim.run_id for j in jobs])
        approved = await _approved_steps(conn, jobs)
        varied = {j.ctx.sequence_key for j in jobs if j.step.email.variants}
        stats = await adaptive.load_stats(conn, varied)
        kept = await trail.load_kept(conn, jobs)
    for job in jobs:
        job.signals = signals[job.ctx.enrollment_id]
        job.draft_row = rows.get(job.claim.run_id)
    # A draft kept through a deferral, or stored ahead, goes as it is: no second model call.
    prepared = Prepared([], [], [])
    for job in jobs:
        item = kept.get(job.claim.run_id)
        if item is not None and "skip" in item:
            prepared.skipped.append(skipped(job, item["skip"]))
        elif item is not None:
            prepared.drafted.append(trail.restore(job, item))
    todo = [j for j in jobs if j.claim.run_id not in kept]
    if any(j.ctx.definition.late_draft == "hold" for j in todo):
        prepared.late = [
            j for j in todo if _late(deps, j) and j.ctx.definition.late_draft == "hold"
        ]
        todo = [j for j in todo if j not in prepared.late]
    results = await asyncio.gather(
        *(_one(deps, job, summaries[job.ctx.enrollment_id], approved, stats, now) for job in todo)
    )
    for result in results:
        if isinstance(result, Finished):
            prepared.skipped.append(result)
        elif isinstance(result, Held):
            prepared.held.append(result)
        else:
            prepared.drafted.append(result)
    return prepared


def _late(deps: Deps, job: Job) -> bool:
    """Due with no draft: the flow reached an email drafting ahead before its copy was ready
    (a model slower than the lead, or a wait an event ended early)."""
    return (
        job.claim.phase == RunPhase.due
        and job.claim.drafted_at is None
        and deps.agent.model is not None
    )


def _falls_back(deps: Deps, job: Job) -> bool:
    return deps.agent.model is not None and job.ctx.definition.late_draft == "fallback"


def _policy(job: Job) -> str:
    return job.step.email.approval or job.ctx.definition.approval


def needs_review(job: Job, approved: set[tuple[str, str]]) -> bool:
    policy = _policy(job)
    if policy == "first_of_each_step":
        return (job.ctx.sequence_key, job.step.id) not in approved
    return policy == "always"


async def _one(
    deps: Deps,
    job: Job,
    summary: EngagementSummary,
    approved: set[tuple[str, str]],
    stats: dict[str, adaptive.Stats],
    now: datetime,
) -> tuple[Job, Draft] | Finished | Held:
    row = job.draft_row
    try:
        if row is not None and row.status == DraftStatus.pending:
            decision = _deadline_decision(job, row, now)
            if decision is None:  # still waiting (or held past its deadline by policy)
                return Held(job, None, row.revision, row.deadline_at)
            job.expired = decision
        request = copy_request(
            job.ctx,
            job.step,
            summary,
            needs_review=row is not None or needs_review(job, approved),
            prompt_version=deps.settings.prompt_version,
        )
        request = adaptive.with_variant_stats(
            request,
            job.ctx.definition,
            job.step,
            stats.get(job.ctx.sequence_key, {}),
            job.signals.standing.affinities if job.signals else {},
            adaptive.seed(deps, job.ctx.enrollment_id, job.step.id),
        )
        job.request = request
        result = await _invoke(deps, job, request)
    except SandboxError as error:
        return skipped(job, f"fallback template failed: {error}")
    except Exception as error:  # one step that cannot be drafted must not hold up its batch
        log.exception("email step could not be drafted", extra={"step": job.step.id})
        return skipped(job, f"{type(error).__name__}: {error}")
    job.calls = result.calls
    if result.review is not None:
        wait = job.ctx.definition.approval_deadline_duration
        # The deadline counts from the email's due time: a draft shown ahead gets the lead too.
        base = max(now, job.claim.send_at) if job.claim.drafting and job.claim.send_at else now
        deadline = base + deps.seqtime.real_duration(wait) if wait else None
        revision = row.revision + 1 if row is not None else 1
        return Held(job, result.review, revision, deadline, base)
    assert result.outcome is not None
    if result.outcome.action == "skip" or result.outcome.draft is None:
        return skipped(job, result.outcome.reason or "skipped")
    job.outcome_reason = result.outcome.reason
    checked = _checked_variant(job, request, result.outcome.draft, result.outcome.choice)
    return skipped(job, job.outcome_reason) if checked is None else (job, checked)


def _checked_variant(
    job: Job, request: CopyRequest, draft: Draft, choice: Choice | None
) -> Draft | None:
    checked, refusal = adaptive.checked_variant(request, draft)
    if refusal is not None:
        log.warning("variant choice refused", extra={"step": job.step.id, "why": refusal})
        job.outcome_reason = refusal
    else:
        job.choice = choice.model_dump(mode="json") if choice else None
    return checked


async def _invoke(deps: Deps, job: Job, request: CopyRequest) -> Result:
    """Run or resume the graph within the draft budget; past it, the composer's copy."""
    render = preview_renderer(deps, job.ctx, job.step)
    # A sequence that holds refused copy for a reviewer needs a checkpoint to stop at.
    holds = request.needs_review or request.refused_copy == "hold"
    thread = job.thread if holds else None
    decision = job.expired or _decision(job.draft_row)
    budget = deps.settings.draft_budget_seconds
    if _late(deps, job):  # ``late_draft: fallback``: wait this long, then the fallback copy
        budget = min(budget, job.ctx.definition.late_draft_wait_seconds)
    elif job.claim.drafting and job.claim.send_at is not None and _falls_back(deps, job):
        # Drafting ahead, waiting its turn under the model budget: no later than the policy's
        # wait past the due time, so a lead too short for the budget costs that wait at most.
        left = (job.claim.send_at - deps.clock.now()).total_seconds()
        budget = min(budget, max(0.0, left) + job.ctx.definition.late_draft_wait_seconds)

    async def call(agent: CopyAgent) -> Result:
        if decision is not None and thread is not None:
            return await agent.resume(thread, decision, render)
        return await agent.run(request, render, thread)

    try:
        if budget <= 0:
            raise TimeoutError
        async with asyncio.timeout(budget):
            return await call(deps.agent)
    except TimeoutError:
        log.warning("drafting ran past its budget", extra={"step": job.step.id})
        job.timed_out = True
        why = f"the model took longer than {budget:g} s"
        due = job.claim.send_at
        if _late(deps, job) or (job.claim.drafting and due and deps.clock.now() >= due):
            why = f"no draft was ready when the email was due; {why}"
        return await call(deps.agent.offline(why))


def _decision(row: Any) -> Decision | None:
    if row is None or row.status not in DECIDED or not row.decision:
        return None
    return Decision.model_validate(row.decision)


def _deadline_decision(job: Job, row: Any, now: datetime) -> Decision | None:
    """A pending draft past its deadline follows the sequence's stated policy."""
    if row.deadline_at is None or row.deadline_at > now:
        return None
    policy = job.ctx.definition.approval_timeout_policy
    if policy == "hold":
        job.overdue = True
        return None
    note = "no reviewer decided before the deadline"
    return Decision(action="fallback" if policy == "fallback" else "skip", note=note, by="deadline")


def skipped(job: Job, reason: str) -> Finished:
    return Finished(job.claim, job.ctx, job.step.id, {"outcome": "skipped", "reason": reason})


async def latest_drafts(conn: AsyncConnection, run_ids: list[int]) -> dict[int, Any]:
    """The newest draft row per outbox row, for rows that have been through review."""
    if not run_ids:
        return {}
    rows = await conn.execute(
        select(DRAFTS).where(DRAFTS.c.step_run_id.in_(run_ids)).order_by(DRAFTS.c.revision)
    )
    return {row.step_run_id: row for row in rows}


async def _approved_steps(conn: AsyncConnection, jobs: list[Job]) -> set[tuple[str, str]]:
    """(sequence, step) pairs a reviewer has approved a draft of: first_of_each_step is done."""
    wanted = [j for j in jobs if _policy(j) == "first_of_each_step"]
    if not wanted:
        return set()
    rows = await conn.execute(
        select(DRAFTS.c.sequence_key, DRAFTS.c.step_id, DRAFTS.c.decision).where(
            DRAFTS.c.sequence_key.in_({j.ctx.sequence_key for j in wanted}),
            DRAFTS.c.step_id.in_({j.step.id for j in wanted}),
            DRAFTS.c.status.in_([DraftStatus.approved, DraftStatus.resolved]),
        )
    )
    return {
        (r.sequence_key, r.step_id) for r in rows if (r.decision or {}).get("action") == "approve"
    }
