"""Running claimed outbox rows: claim a batch, run each row, repeat until nothing is due."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import timedelta

from sequences import outbox
from sequences.definition import EmailStep, WaitStep
from sequences.deps import Deps
from sequences.flow import advance, load_context
from sequences.models import EnrollmentStatus, RunState
from sequences.sending import send_step

log = logging.getLogger(__name__)


async def run_due(deps: Deps) -> int:
    """Claim and run due rows in batches until none is left; returns how many ran."""
    settings = deps.settings
    lease = timedelta(seconds=settings.claim_lease_seconds)
    limit = asyncio.Semaphore(settings.run_concurrency)
    total = 0
    while True:
        async with deps.engine.begin() as conn:
            claims = await outbox.claim_due(
                conn, now=deps.clock.now(), lease=lease, limit=settings.claim_batch
            )
        if not claims:
            return total
        await asyncio.gather(*(_bounded(limit, run_one(deps, c)) for c in claims))
        total += len(claims)


async def _bounded(limit: asyncio.Semaphore, job: Awaitable[None]) -> None:
    async with limit:
        try:
            await job
        except Exception:  # one bad row must not stop the batch; its claim expires and retries
            log.exception("step run failed")


async def run_one(deps: Deps, claim: outbox.Claim) -> None:
    async with deps.engine.begin() as conn:
        ctx = await load_context(conn, claim.enrollment_id)
        if ctx is None or ctx.status != EnrollmentStatus.active:
            await outbox.finish(conn, claim, RunState.cancelled)
            return
    step = ctx.definition.step(claim.step_id)
    if isinstance(step, EmailStep):
        await send_step(deps, claim, ctx, step)
        return
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        if isinstance(step, WaitStep):
            ended_by = claim.woken_by or "timeout"
            due = await advance(conn, deps, claim, ctx, step.id, ended_by=ended_by)
        else:  # a control step that was scheduled directly (the first step of a sequence)
            due = await advance(conn, deps, claim, ctx, step.id, entered=True)
    # Rows due now are claimed by run_due's next round; only later ones need a wake-up job.
    await deps.waker.wake_at([d for d in due if d > now])
