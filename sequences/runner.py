"""Running claimed outbox rows: claim a batch, run it, repeat until nothing is due."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.definitions.document import EmailStep, WaitStep
from sequences.delivery.outcomes import Job
from sequences.delivery.sending import send_batch
from sequences.deps import Deps
from sequences.engine import lifecycle, outbox
from sequences.engine.flow import Finished, RunContext, advance_many, load_contexts
from sequences.review.ahead import draft_batch
from sequences.signals import engagement
from sequences.store.db import lock_rows, transaction
from sequences.store.tables import ENROLLMENTS, EnrollmentStatus, RunState

log = logging.getLogger(__name__)
DRAFT_BATCH_SECONDS = 5.0  # the drafting lane claims this long's worth of the model budget


async def run_due(deps: Deps, *, budget_seconds: float = 30.0) -> int:
    """Claim and run due rows until none is left, several batches at once (one sends while
    the next is recorded); returns how many ran.

    No new batch starts after ``budget_seconds`` or once the worker is stopping, so a job never
    runs into arq's timeout mid-send; what is left is found by the next wake-up or the sweeper.
    """
    deadline = time.monotonic() + budget_seconds
    lanes = [_drain(deps, deadline) for _ in range(deps.settings.parallel_batches)]
    # Drafting ahead has a lane of its own: a slow model never takes a send's place.
    lanes.append(_drain(deps, deadline, drafting=True))
    return sum(await asyncio.gather(*lanes))


def _batch(deps: Deps, drafting: bool) -> int:
    """Rows per claim. The drafting lane claims what the model budget drafts in a few seconds:
    a row it holds cannot be sent, so one claimed long before its turn under the budget would
    wait for the whole batch even after its email fell due (an unclaimed one gets the
    ``late_draft`` policy at once)."""
    settings = deps.settings
    if not drafting or deps.agent.model is None:
        return settings.claim_batch
    per_batch = settings.model_requests_per_minute / 60 * DRAFT_BATCH_SECONDS
    return max(1, min(settings.claim_batch, math.ceil(per_batch)))


async def _drain(deps: Deps, deadline: float, *, drafting: bool = False) -> int:
    settings = deps.settings
    lease = timedelta(seconds=settings.claim_lease_seconds)
    limit = _batch(deps, drafting)
    total = 0
    while not deps.stopping.is_set() and time.monotonic() < deadline:
        async with deps.engine.begin() as conn:
            claims = await outbox.claim_due(
                conn,
                now=deps.clock.now(),
                lease=lease,
                limit=limit,
                drafting=drafting,
            )
        if not claims:
            return total
        await _guarded(run_batch(deps, claims))
        total += len(claims)
    return total


async def run_batch(deps: Deps, claims: list[outbox.Claim]) -> None:
    heartbeat = asyncio.create_task(_heartbeat(deps, claims))
    try:
        await _run_batch(deps, claims)
    finally:
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)


async def _heartbeat(deps: Deps, claims: list[outbox.Claim]) -> None:
    """Renew the batch's leases every third of a lease while it runs: a slow relay or model
    never lets a live worker's claims lapse, and a dead worker's lapse within one lease."""
    lease = deps.settings.claim_lease_seconds
    while True:
        await asyncio.sleep(lease / 3)
        until = deps.clock.now() + timedelta(seconds=lease)
        try:
            await transaction(
                deps.engine, functools.partial(outbox.renew, claims=claims, until=until)
            )
        except Exception:  # the next beat tries again; a lapse costs a re-run, never a resend
            log.exception("lease heartbeat failed")


async def _run_batch(deps: Deps, claims: list[outbox.Claim]) -> None:
    async with deps.reader.connect() as conn:
        contexts = await load_contexts(conn, [c.enrollment_id for c in claims])
    gone: list[outbox.Claim] = []
    poisoned: list[outbox.Claim] = []
    emails: list[Job] = []
    ahead: list[Job] = []
    others: list[tuple[outbox.Claim, RunContext]] = []
    for claim in claims:
        ctx = contexts.get(claim.enrollment_id)
        if ctx is None or ctx.status != EnrollmentStatus.active:
            gone.append(claim)  # ended meanwhile (an exit, a cancel): nothing left to run
            continue
        if claim.attempts > deps.settings.max_run_attempts:
            poisoned.append(claim)  # it failed every time: stop it holding its batch back
            continue
        step = ctx.definition.step(claim.step_id)
        if isinstance(step, EmailStep):
            (ahead if claim.drafting else emails).append(Job(claim, ctx, step))
        else:
            others.append((claim, ctx))
    if gone or poisoned:

        async def close(conn: AsyncConnection) -> None:
            ids = sorted({c.enrollment_id for c in gone + poisoned})
            await lock_rows(conn, ENROLLMENTS, ids)  # the lock order: before their rows
            await outbox.finish_many(conn, gone, RunState.cancelled)
            await _give_up(conn, deps, poisoned)

        await transaction(deps.engine, close)
    await asyncio.gather(
        _guarded(send_batch(deps, emails)),
        _guarded(draft_batch(deps, ahead)),
        _guarded(_continue(deps, others)),
    )


async def _guarded(job: Awaitable[None]) -> None:
    """One failing batch must not stop the other; its claims expire and run again."""
    try:
        await job
    except Exception:
        log.exception("step run failed")


async def _continue(deps: Deps, rows: list[tuple[outbox.Claim, RunContext]]) -> None:
    """Waits that ended (by timeout or an event), and control steps scheduled directly."""
    if not rows:
        return
    finished = []
    for claim, ctx in rows:
        if isinstance(ctx.definition.step(claim.step_id), WaitStep):
            detail = {"ended_by": claim.woken_by or "timeout"}
            finished.append(Finished(claim, ctx, claim.step_id, detail))
        else:
            finished.append(Finished(claim, ctx, claim.step_id, {}, entered=True))
    now = deps.clock.now()

    async def move(conn: AsyncConnection) -> list[datetime]:
        signals = await engagement.load_many(
            conn, deps, [(ctx.enrollment_id, ctx.contact_id, ctx.started_at) for _, ctx in rows]
        )
        return await advance_many(conn, deps, finished, signals)

    due = await transaction(deps.engine, move)
    # Rows due now are claimed by run_due's next round; only later ones need a wake-up job.
    await deps.waker.wake_at([d for d in due if d > now])


async def _give_up(conn: AsyncConnection, deps: Deps, poisoned: list[outbox.Claim]) -> None:
    held = await outbox.finish_many(conn, poisoned, RunState.done)
    for claim in poisoned:
        if claim.run_id in held:
            log.error("step failed on every attempt", extra={"step": claim.step_id})
            reason = f"step {claim.step_id} failed {claim.attempts - 1} times"
            await lifecycle.end(
                conn,
                [claim.enrollment_id],
                status=EnrollmentStatus.exited,
                reason=reason,
                now=deps.clock.now(),
                step_id=claim.step_id,
            )
