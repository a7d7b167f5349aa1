"""What happens to a message that did not simply go out: a crash left it behind, the relay
said 4xx or 5xx, or the connection died mid-send. Each is rare, so each is handled one row at a
time, and every state write is conditional on the message still being ``sending``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.copy import CopyRequest, Decision, ModelCall
from sequences.definitions.document import EmailStep
from sequences.delivery.compose import Outgoing
from sequences.deps import Deps
from sequences.engine import lifecycle, outbox
from sequences.engine.flow import RunContext, advance
from sequences.mail.smtp import PermanentSendError, SendError, UnknownOutcomeError
from sequences.signals import engagement
from sequences.store import timeline
from sequences.store.tables import MESSAGES, EnrollmentStatus, MessageState, RunState

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One claimed email row on its way out."""

    claim: outbox.Claim
    ctx: RunContext
    step: EmailStep
    message: Outgoing | None = None
    data: bytes | None = None  # the signed message, built before it is recorded as sending
    signals: engagement.Engagement | None = None
    # The copy agent's side (see sequences.review.drafting): the newest draft row for this outbox
    # row, a decision the deadline made, the model calls made, and the outcome's reason.
    draft_row: Any = None
    request: CopyRequest | None = None
    expired: Decision | None = None
    overdue: bool = False
    calls: list[ModelCall] = field(default_factory=list)
    outcome_reason: str = ""
    choice: dict[str, Any] | None = None  # the variant's sampled choice, logged for replays

    @property
    def thread(self) -> str:
        """The copy graph's checkpoint thread for this outbox row."""
        return f"{self.ctx.enrollment_id}:{self.step.id}:{self.claim.run_id}"


async def after_crash(deps: Deps, job: Job, state: str) -> None:
    """A row run before whose message exists: never send it again, just move on."""
    assert job.message is not None
    now = deps.clock.now()
    outcome = MessageState.unknown if state == MessageState.sending else state
    async with deps.engine.begin() as conn:
        if state == MessageState.sending:
            await _set_state(conn, job.message.id, MessageState.unknown, "process died mid-send")
            log.warning(
                "message outcome unknown; not resending", extra={"message_pk": job.message.id}
            )
        due = await advance(
            conn, deps, job.claim, job.ctx, job.step.id, message=job.message.id, outcome=outcome
        )
    await deps.waker.wake_at([d for d in due if d > now])


async def failed(deps: Deps, job: Job, error: SendError) -> None:
    if isinstance(error, UnknownOutcomeError):
        await _unknown(deps, job, error)
    elif isinstance(error, PermanentSendError) and error.stage in ("rcpt", "data"):
        await _bounced(deps, job, error)
    else:  # a 4xx, or our sender or relay refused: not the recipient's fault, so no suppression
        await _retry_later(deps, job, error)


async def _unknown(deps: Deps, job: Job, error: UnknownOutcomeError) -> None:
    assert job.message is not None
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        await _set_state(conn, job.message.id, MessageState.unknown, str(error))
        due = await advance(
            conn, deps, job.claim, job.ctx, job.step.id, message=job.message.id, outcome="unknown"
        )
    await deps.waker.wake_at([d for d in due if d > now])


async def _retry_later(deps: Deps, job: Job, error: SendError) -> None:
    assert job.message is not None
    now = deps.clock.now()
    attempts = job.message.attempts + 1
    give_up = attempts >= deps.settings.max_send_attempts
    delay = timedelta(seconds=min(deps.settings.retry_base_seconds * 2 ** (attempts - 1), 3600))
    async with deps.engine.begin() as conn:
        await conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == job.message.id, MESSAGES.c.state == MessageState.sending)
            .values(
                state=MessageState.failed if give_up else MessageState.retrying,
                attempts=attempts,
                last_reply=str(error)[:1000],
            )
        )
        entry = timeline.entry(
            job.ctx.enrollment_id,
            now,
            "send_failed" if give_up else "send_retry",
            job.step.id,
            message=job.message.id,
            reply=str(error),
            attempt=attempts,
        )
        await timeline.record(conn, [entry])
        if give_up:
            await outbox.finish(conn, job.claim, RunState.done)
            await lifecycle.end(
                conn,
                [job.ctx.enrollment_id],
                status=EnrollmentStatus.exited,
                reason="send failed",
                now=now,
                step_id=job.step.id,
            )
        else:
            await outbox.release(conn, job.claim, now + delay)
    if not give_up:
        await deps.waker.wake_at([now + delay])


async def _bounced(deps: Deps, job: Job, error: PermanentSendError) -> None:
    assert job.message is not None
    now = deps.clock.now()
    ctx = job.ctx
    async with deps.engine.begin() as conn:
        await _set_state(conn, job.message.id, MessageState.bounced, str(error))
        await outbox.finish(conn, job.claim, RunState.done)
        await lifecycle.record_bounce(
            conn, ctx.contact_id, ctx.email_key, ctx.enrollment_id, job.message.id, str(error), now
        )


async def _set_state(conn: AsyncConnection, message_pk: str, state: str, reply: str) -> None:
    """Only a message still ``sending`` changes: another worker may have settled it already."""
    await conn.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id == message_pk, MESSAGES.c.state == MessageState.sending)
        .values(state=state, last_reply=reply[:1000])
    )
