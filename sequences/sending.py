"""The email step: compose, render, record, then send exactly once (or mark it unknown).

The message row is committed in state ``sending`` before the SMTP call. Finding a row still in
that state later means a process died between the relay and the record: the message may or may
not have left, so it becomes ``unknown`` and is never resent blindly.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.utils import parseaddr

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences import engagement, lifecycle, outbox, timeline
from sequences.compose import (
    Outgoing,
    copy_request,
    message_bytes,
    message_row,
    render_message,
)
from sequences.definition import EmailStep
from sequences.deps import Deps
from sequences.flow import RunContext, advance
from sequences.mail.smtp import (
    PermanentSendError,
    SendError,
    TemporarySendError,
    UnknownOutcomeError,
)
from sequences.models import (
    LINKS,
    MESSAGES,
    EnrollmentStatus,
    MessageState,
    RunState,
)
from sequences.pacing import deferral
from sequences.sandbox import SandboxError

log = logging.getLogger(__name__)


async def send_step(deps: Deps, claim: outbox.Claim, ctx: RunContext, step: EmailStep) -> None:
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        existing = await _existing(conn, claim.run_id)
        if existing is None and await _held_back(conn, deps, claim, ctx, step, now):
            return
    if existing is not None and existing[1] != MessageState.retrying:
        await _after_crash(deps, claim, ctx, step, existing)
        return
    message = existing[0] if existing else await _create(deps, claim, ctx, step, now)
    if message is not None:
        await _deliver(deps, claim, ctx, step, message)


async def _existing(conn: AsyncConnection, run_id: int) -> tuple[Outgoing, str] | None:
    row = (await conn.execute(select(MESSAGES).where(MESSAGES.c.step_run_id == run_id))).first()
    if row is None:
        return None
    message = Outgoing(
        id=row.id,
        message_id=row.message_id,
        token=row.token,
        to_addr=row.to_addr,
        subject=row.subject,
        text_body=row.text_body,
        html_body=row.html_body,
        created_at=row.created_at,
        attempts=row.attempts,
    )
    return message, row.state


async def _held_back(
    conn: AsyncConnection,
    deps: Deps,
    claim: outbox.Claim,
    ctx: RunContext,
    step: EmailStep,
    now: datetime,
) -> bool:
    """Suppressed addresses exit; sends outside the window or over the cap wait for later."""
    reason = await lifecycle.is_suppressed(conn, ctx.email_key)
    if reason is not None:
        await outbox.finish(conn, claim, RunState.cancelled)
        await lifecycle.end(
            conn,
            [ctx.enrollment_id],
            status=EnrollmentStatus.exited,
            reason=f"suppressed ({reason})",
            now=now,
            step_id=step.id,
        )
        return True
    later, why = await deferral(conn, deps, ctx, now)
    if later is None:
        return False
    if await outbox.release(conn, claim, later):
        entry = timeline.entry(
            ctx.enrollment_id, now, "deferred", step.id, until=later.isoformat(), reason=why
        )
        await timeline.record(conn, [entry])
    await deps.waker.wake_at([later])
    return True


async def _after_crash(
    deps: Deps,
    claim: outbox.Claim,
    ctx: RunContext,
    step: EmailStep,
    existing: tuple[Outgoing, str],
) -> None:
    message, state = existing
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        if state == MessageState.sending:
            await _set_state(conn, message.id, MessageState.unknown, "process died during the send")
            log.warning("message outcome unknown; not resending", extra={"message_pk": message.id})
        due = await advance(
            conn, deps, claim, ctx, step.id, message=message.id, outcome=_outcome(state)
        )
    await deps.waker.wake_at([d for d in due if d > now])


def _outcome(state: str) -> str:
    return MessageState.unknown if state == MessageState.sending else state


async def _create(
    deps: Deps, claim: outbox.Claim, ctx: RunContext, step: EmailStep, now: datetime
) -> Outgoing | None:
    async with deps.reader.connect() as conn:
        signals = await engagement.load(conn, ctx.enrollment_id, ctx.contact_id, ctx.started_at)
    try:
        variant, request = copy_request(ctx, step, signals.summary())
    except SandboxError as error:
        await _skip(deps, claim, ctx, step, f"fallback template failed: {error}")
        return None
    draft = await deps.writer.write(request)
    message = render_message(deps, ctx, step, draft, now)
    async with deps.engine.begin() as conn:
        if not await outbox.extend(
            conn, claim, now + timedelta(seconds=deps.settings.claim_lease_seconds)
        ):
            return None  # the claim lapsed while drafting: another worker owns the row now
        await conn.execute(
            insert(MESSAGES).values(**message_row(message, claim, ctx, step, variant, draft))
        )
        if message.links:
            await conn.execute(insert(LINKS), message.links)
        entry = timeline.entry(
            ctx.enrollment_id,
            now,
            "drafted",
            step.id,
            message=message.id,
            variant=variant,
            model=draft.model,
            rationale=draft.rationale,
        )
        await timeline.record(conn, [entry])
    return message


async def _deliver(
    deps: Deps, claim: outbox.Claim, ctx: RunContext, step: EmailStep, message: Outgoing
) -> None:
    assert deps.mailer is not None, "a worker that sends needs a mailer"
    data = message_bytes(deps, ctx, message)
    if deps.limiter is not None:
        await deps.limiter.acquire()
    _, from_addr = parseaddr(ctx.definition.sender.from_)
    try:
        reply = await deps.mailer.send(from_addr, message.to_addr, data)
    except UnknownOutcomeError as error:
        await _unknown(deps, claim, ctx, step, message, error)
        return
    except PermanentSendError as error:
        if error.stage in ("rcpt", "data"):
            await _bounced(deps, claim, ctx, step, message, error)
        else:  # our sender or relay was refused: not the recipient's fault, so no suppression
            await _retry_later(deps, claim, ctx, step, message, error)
        return
    except TemporarySendError as error:
        await _retry_later(deps, claim, ctx, step, message, error)
        return
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        await conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == message.id)
            .values(
                state=MessageState.sent,
                sent_at=now,
                last_reply=reply[:1000],
                attempts=message.attempts + 1,
            )
        )
        due = await advance(conn, deps, claim, ctx, step.id, message=message.id, outcome="sent")
    await deps.waker.wake_at([d for d in due if d > now])


async def _skip(
    deps: Deps, claim: outbox.Claim, ctx: RunContext, step: EmailStep, reason: str
) -> None:
    """Never send a broken email: the step is skipped, and the timeline says why."""
    log.warning("email step skipped", extra={"step": step.id, "reason": reason})
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        due = await advance(conn, deps, claim, ctx, step.id, outcome="skipped", reason=reason)
    await deps.waker.wake_at([d for d in due if d > now])


async def _unknown(
    deps: Deps,
    claim: outbox.Claim,
    ctx: RunContext,
    step: EmailStep,
    message: Outgoing,
    error: UnknownOutcomeError,
) -> None:
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        await _set_state(conn, message.id, MessageState.unknown, str(error))
        due = await advance(conn, deps, claim, ctx, step.id, message=message.id, outcome="unknown")
    await deps.waker.wake_at([d for d in due if d > now])


async def _retry_later(
    deps: Deps,
    claim: outbox.Claim,
    ctx: RunContext,
    step: EmailStep,
    message: Outgoing,
    error: SendError,
) -> None:
    now = deps.clock.now()
    attempts = message.attempts + 1
    give_up = attempts >= deps.settings.max_send_attempts
    state = MessageState.failed if give_up else MessageState.retrying
    delay = timedelta(seconds=min(deps.settings.retry_base_seconds * 2 ** (attempts - 1), 3600))
    async with deps.engine.begin() as conn:
        await conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == message.id)
            .values(state=state, attempts=attempts, last_reply=str(error)[:1000])
        )
        kind = "send_failed" if give_up else "send_retry"
        entry = timeline.entry(
            ctx.enrollment_id,
            now,
            kind,
            step.id,
            message=message.id,
            reply=str(error),
            attempt=attempts,
        )
        await timeline.record(conn, [entry])
        if give_up:
            await outbox.finish(conn, claim, RunState.done)
            await lifecycle.end(
                conn,
                [ctx.enrollment_id],
                status=EnrollmentStatus.exited,
                reason="send failed",
                now=now,
                step_id=step.id,
            )
        else:
            await outbox.release(conn, claim, now + delay)
    if not give_up:
        await deps.waker.wake_at([now + delay])


async def _bounced(
    deps: Deps,
    claim: outbox.Claim,
    ctx: RunContext,
    step: EmailStep,
    message: Outgoing,
    error: PermanentSendError,
) -> None:
    from sequences.feedback import record_bounce  # feedback imports flow; keep the graph acyclic

    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        await _set_state(conn, message.id, MessageState.bounced, str(error))
        await outbox.finish(conn, claim, RunState.done)
        await record_bounce(
            conn, ctx.contact_id, ctx.email_key, ctx.enrollment_id, message.id, str(error), now
        )


async def _set_state(conn: AsyncConnection, message_pk: str, state: str, reply: str) -> None:
    await conn.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id == message_pk)
        .values(state=state, last_reply=reply[:1000])
    )
