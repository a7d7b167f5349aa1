"""Email steps, a claimed batch at a time: compose, record, send, then advance.

The batch's messages are committed ``queued``; each becomes ``sending`` on its own, right before
its MAIL FROM (sequences.delivery.transmit). Finding a row still ``sending`` later means a process
died between the relay and the record: the message may or may not have left, so it becomes
``unknown`` and is never resent blindly. A ``queued`` one never reached the relay: it is sent.

The common path is set-based: one statement loads what the batch needs, one records its
messages, and a few mark them sent and move the enrollments on. Rare outcomes (a crash to
recover from, a bounce, a retry) are handled one row at a time, in sequences.delivery.outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.copy import Draft
from sequences.delivery.compose import (
    Outgoing,
    message_bytes,
    message_row,
    outgoing_from_row,
    render_message,
    unsigned_message,
)
from sequences.delivery.outcomes import Job, after_crash
from sequences.delivery.transmit import deliver
from sequences.deps import Deps
from sequences.engine import lifecycle, outbox
from sequences.engine.flow import Finished, advance_many
from sequences.engine.pacing import CAP, cap_releases, hold_backs
from sequences.mail.dkim import Unsigned, sign_all
from sequences.review import drafting, reviews, trail
from sequences.review.ahead import hold_late
from sequences.review.drafting import Held
from sequences.store import timeline
from sequences.store.arrays import insert_many
from sequences.store.db import lock_rows, transaction
from sequences.store.tables import (
    ENROLLMENTS,
    LINKS,
    MESSAGES,
    EnrollmentStatus,
    MessageState,
    RunState,
)

log = logging.getLogger(__name__)


async def send_batch(deps: Deps, jobs: list[Job]) -> None:
    now = deps.clock.now()
    fresh, resend, recover = await _triage(deps, jobs, now)
    for job, state in recover:
        await after_crash(deps, job, state)
    if deps.limiter is not None and fresh + resend:
        # Wait for the relay's budget before any message is recorded as being sent: a long wait
        # then costs at most the claims (which lapse and are re-run), never an unknown outcome.
        await deps.limiter.acquire(len(fresh) + len(resend))
    drafted, skipped, held, late = await _draft(deps, fresh, now) if fresh else ([], [], [], [])
    if late:  # ``late_draft: hold``: no copy ready yet, the email waits for it
        await deps.waker.wake_at(
            await transaction(deps.engine, partial(hold_late, jobs=late, now=now))
        )
    resend = [job for job in await asyncio.gather(*(_rebuild(deps, j) for j in resend)) if job]
    await deliver(deps, await _record(deps, drafted, skipped, resend, held, fresh))


async def _rebuild(deps: Deps, job: Job) -> Job | None:
    """The exact bytes of a message that got a 4xx, to try again."""
    assert job.message is not None
    try:
        job.data = await asyncio.to_thread(message_bytes, deps, job.ctx, job.message)
    except Exception:  # a signing setup broken since: the claim lapses and the row runs again
        log.exception("could not rebuild a message to retry", extra={"message_pk": job.message.id})
        return None
    return job


async def _triage(
    deps: Deps, jobs: list[Job], now: datetime
) -> tuple[list[Job], list[Job], list[tuple[Job, str]]]:
    """Split the batch: new sends, 4xx retries, crash leftovers; hold back the rest."""
    fresh: list[Job] = []
    resend: list[Job] = []
    recover: list[tuple[Job, str]] = []
    later: list[datetime] = []
    async with deps.engine.begin() as conn:
        existing = await _existing(conn, [j.claim.run_id for j in jobs])
        suppressed = await lifecycle.suppressed(conn, {j.ctx.email_key for j in jobs})
        holds = await _holds(conn, deps, jobs, existing, suppressed, now)
        for job in jobs:
            found = existing.get(job.claim.run_id)
            if found is not None:
                job.message, state = found
                if state in (MessageState.retrying, MessageState.queued):  # never left: send
                    resend.append(job)
                else:
                    recover.append((job, state))
            elif job.ctx.email_key in suppressed:
                await _exit_suppressed(conn, job, suppressed[job.ctx.email_key], now)
            elif (hold := holds.get(id(job))) is not None:
                await _postpone(conn, job, *hold, now)
                later.append(hold[0])
            else:
                fresh.append(job)
    await deps.waker.wake_at(later)
    return fresh, resend, recover


async def _existing(conn: AsyncConnection, run_ids: list[int]) -> dict[int, tuple[Outgoing, str]]:
    rows = await conn.execute(select(MESSAGES).where(MESSAGES.c.step_run_id.in_(run_ids)))
    return {row.step_run_id: (outgoing_from_row(row), row.state) for row in rows}


async def _exit_suppressed(conn: AsyncConnection, job: Job, reason: str, now: datetime) -> None:
    await outbox.finish(conn, job.claim, RunState.cancelled)
    await lifecycle.end(
        conn,
        [job.ctx.enrollment_id],
        status=EnrollmentStatus.exited,
        reason=f"suppressed ({reason})",
        now=now,
        step_id=job.step.id,
    )


async def _holds(
    conn: AsyncConnection,
    deps: Deps,
    jobs: list[Job],
    existing: dict[int, tuple[Outgoing, str]],
    suppressed: dict[str, str],
    now: datetime,
) -> dict[int, tuple[datetime, str]]:
    """New sends held back by the send window or the frequency cap, decided before drafting
    (a deferred step costs no model call) and before any write (the contacts lock first)."""
    new = [j for j in jobs if j.claim.run_id not in existing and j.ctx.email_key not in suppressed]
    holds = await hold_backs(conn, deps, [j.ctx for j in new], now)
    return {id(job): hold for job, hold in zip(new, holds, strict=True) if hold is not None}


async def _postpone(
    conn: AsyncConnection,
    job: Job,
    until: datetime,
    why: str,
    now: datetime,
    draft: Draft | None = None,
) -> None:
    """The row waits until ``until``; a ``draft`` already made waits with it (on its timeline
    entry) and is sent as it is then, instead of being drafted again."""
    if await outbox.release(conn, job.claim, until):
        kept = trail.kept(job, draft) if draft is not None else {}
        entry = timeline.entry(
            job.ctx.enrollment_id,
            now,
            "deferred",
            job.step.id,
            until=until.isoformat(),
            reason=why,
            **kept,
        )
        await timeline.record(conn, [entry])


async def _draft(
    deps: Deps, jobs: list[Job], now: datetime
) -> tuple[list[tuple[Job, Draft]], list[Finished], list[Held], list[Job]]:
    """Draft (through the agent), render and sign the batch's messages before any is recorded
    as sending; a step whose message cannot be made is skipped, and the timeline says why."""
    prepared = await drafting.prepare(deps, jobs, now)
    built: list[Built | Finished] = []
    turn = time.monotonic() + BUILD_SLICE_SECONDS
    for job, draft in prepared.drafted:
        built.append(_build(deps, job, draft, now))
        if time.monotonic() >= turn:
            await asyncio.sleep(0)
            turn = time.monotonic() + BUILD_SLICE_SECONDS
    results = await _signed(built)
    drafted = [r for r in results if not isinstance(r, Finished)]
    skipped = prepared.skipped + [r for r in results if isinstance(r, Finished)]
    return drafted, skipped, prepared.held, prepared.late


Built = tuple[Job, Draft, bytes | Unsigned]
# Messages are rendered and built on the event loop a few milliseconds at a time, then the loop
# polls its sockets. A task per message, each yielding once, did not interleave: all of a
# batch's tasks became ready in one loop iteration, which then ran every build (~0.7 ms each,
# 350 ms for 500) before any database or SMTP reply was read, and the other batches' group
# commits and relay connections waited that long.
BUILD_SLICE_SECONDS = 0.005


def _build(deps: Deps, job: Job, draft: Draft, now: datetime) -> Built | Finished:
    try:
        job.message = render_message(deps, job.ctx, job.step, draft, now)
        data = unsigned_message(deps, job.ctx, job.message)
    except Exception as error:  # one unsendable message must not hold up its batch
        log.exception("email step could not be composed", extra={"step": job.step.id})
        return drafting.skipped(job, f"{type(error).__name__}: {error}")
    return job, draft, data


async def _signed(built: list[Built | Finished]) -> list[tuple[Job, Draft] | Finished]:
    """The batch's DKIM signatures, made in a thread in one hand-off. OpenSSL releases the GIL
    while it signs, so the signatures (~0.7 ms each, a third of a send's CPU) run on the other
    core while the event loop serves the worker's other batches; a hand-off per message cost
    more in thread switches than it overlapped."""
    pending = [b[2] for b in built if not isinstance(b, Finished) and isinstance(b[2], Unsigned)]
    signatures = iter(await asyncio.to_thread(sign_all, pending) if pending else ())
    out: list[tuple[Job, Draft] | Finished] = []
    for item in built:
        if isinstance(item, Finished):
            out.append(item)
            continue
        job, draft, data = item
        signed = next(signatures) if isinstance(data, Unsigned) else data
        if isinstance(signed, Exception):
            log.error("email could not be signed: %r", signed, extra={"step": job.step.id})
            out.append(drafting.skipped(job, f"{type(signed).__name__}: {signed}"))
            continue
        job.data = signed
        out.append((job, draft))
    return out


async def _record(
    deps: Deps,
    drafted: list[tuple[Job, Draft]],
    skipped: list[Finished],
    resend: list[Job],
    held: list[Held],
    jobs: list[Job],
) -> list[Job]:
    """Commit every message as ``queued``; returns the jobs to send."""
    now = deps.clock.now()  # drafting may have taken a while: the new lease starts now
    lease = now + timedelta(seconds=deps.settings.claim_lease_seconds)
    later: list[datetime] = []
    async with deps.engine.begin() as conn:
        # Checked before drafting (in _triage) and again here, contacts locked, in the
        # transaction that records the messages: two workers cannot both take a contact's
        # last slot under the frequency cap.
        releases = await cap_releases(conn, deps, [job.ctx for job, _ in drafted], now)
        for (job, draft), until in zip(drafted, releases, strict=True):
            if until is not None:  # another batch took the slot since ours was checked
                await _postpone(conn, job, until, CAP, now, draft)
                later.append(until)
        drafted = [d for d, until in zip(drafted, releases, strict=True) if until is None]
        # The lock order (sequences.store.db.LOCK_ORDER): enrollments before their outbox rows.
        touched = [j.ctx.enrollment_id for j in jobs + resend] + [
            f.ctx.enrollment_id for f in skipped
        ]
        await lock_rows(conn, ENROLLMENTS, sorted(set(touched)))
        claims = [job.claim for job, _ in drafted] + [job.claim for job in resend]
        # A claim that lapsed meanwhile belongs to another worker now: leave it alone.
        ours = await outbox.extend_many(conn, claims, lease)
        kept = [(job, d) for job, d in drafted if job.claim.run_id in ours]
        # A retry keeps its ``retrying`` (or ``queued``) state until its own send starts.
        retried = [job for job in resend if job.claim.run_id in ours and job.message]
        messages = [
            {**message_row(j.message, j.claim, j.ctx, j.step, d), "state": MessageState.queued}
            for j, d in kept
            if j.message
        ]
        await insert_many(conn, MESSAGES, messages)
        await insert_many(
            conn, LINKS, [link for j, _ in kept if j.message for link in j.message.links]
        )
        await timeline.record(conn, [_drafted_entry(job, d, now) for job, d in kept])
        await reviews.record(conn, jobs, held, now)
        due = await advance_many(conn, deps, skipped, {}) if skipped else []
    await deps.waker.wake_at([d for d in due if d > now] + later)
    return [job for job, _ in kept] + retried


def _drafted_entry(job: Job, draft: Draft, now: datetime) -> dict[str, object]:
    assert job.message is not None
    return timeline.entry(
        job.ctx.enrollment_id,
        now,
        "drafted",
        job.step.id,
        message=job.message.id,
        variant=draft.variant,
        model=draft.model,
        rationale=draft.rationale,
        **trail.attempts(job.calls),
        **({"reason": job.outcome_reason} if job.outcome_reason else {}),
        **({"choice": job.choice} if job.choice else {}),
    )
