"""What happens to a message that did not simply go out: a crash left it behind, the relay
said 4xx or 5xx, or the connection died mid-send. Each is rare, so each is handled one row at a
time, and every state write is conditional on the message still being ``sending``.

Each transaction follows the lock order (sequences.store.db.LOCK_ORDER): the enrollment first,
then its outbox row, then the message; one that loses a deadlock is run again."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
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
from sequences.store.db import lock_rows, transaction
from sequences.store.tables import (
    CONTACTS,
    ENROLLMENTS,
    MESSAGES,
    RUNS,
    EnrollmentStatus,
    MessageState,
    RunState,
)

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
    timed_out: bool = False  # the model ran past the draft's budget: the composer wrote it

    @property
    def thread(self) -> str:
        """The copy graph's checkpoint thread for this outbox row."""
        return f"{self.ctx.enrollment_id}:{self.step.id}:{self.claim.run_id}"


async def after_crash(deps: Deps, job: Job, state: str) -> None:
    """A row run before whose message went to the relay, or may have: never send it again,
    just move on."""
    assert job.message is not None
    now = deps.clock.now()
    message_pk = job.message.id
    outcome = MessageState.unknown if state == MessageState.sending else state
    if state == MessageState.sending:
        log.warning("message outcome unknown; not resending", extra={"message_pk": message_pk})

    async def work(conn: AsyncConnection) -> list[datetime]:
        await lock_rows(conn, ENROLLMENTS, [job.ctx.enrollment_id])
        due = await advance(
            conn, deps, job.claim, job.ctx, job.step.id, message=message_pk, outcome=outcome
        )
        if state == MessageState.sending:
            await _set_state(conn, message_pk, MessageState.unknown, "process died mid-send")
        return due

    due = await transaction(deps.engine, work)
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
    message_pk = job.message.id

    async def work(conn: AsyncConnection) -> list[datetime]:
        await lock_rows(conn, ENROLLMENTS, [job.ctx.enrollment_id])
        due = await advance(
            conn, deps, job.claim, job.ctx, job.step.id, message=message_pk, outcome="unknown"
        )
        await _set_state(conn, message_pk, MessageState.unknown, str(error))
        return due

    due = await transaction(deps.engine, work)
    await deps.waker.wake_at([d for d in due if d > now])


async def _retry_later(deps: Deps, job: Job, error: SendError) -> None:
    assert job.message is not None
    now = deps.clock.now()
    attempts = job.message.attempts + 1
    give_up = attempts >= deps.settings.max_send_attempts
    delay = timedelta(seconds=min(deps.settings.retry_base_seconds * 2 ** (attempts - 1), 3600))

    async def work(conn: AsyncConnection) -> None:
        assert job.message is not None
        await lock_rows(conn, ENROLLMENTS, [job.ctx.enrollment_id])
        if give_up:
            await outbox.finish(conn, job.claim, RunState.done)
        else:
            await outbox.release(conn, job.claim, now + delay)
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
            await lifecycle.end(
                conn,
                [job.ctx.enrollment_id],
                status=EnrollmentStatus.exited,
                reason="send failed",
                now=now,
                step_id=job.step.id,
            )

    await transaction(deps.engine, work)
    if not give_up:
        await deps.waker.wake_at([now + delay])


async def _bounced(deps: Deps, job: Job, error: PermanentSendError) -> None:
    assert job.message is not None
    now = deps.clock.now()
    ctx = job.ctx
    message_pk = job.message.id

    async def work(conn: AsyncConnection) -> None:
        # The suppression ends every active enrollment of the contact: contact, then those.
        await lock_rows(conn, CONTACTS, [ctx.contact_id])
        active = await lifecycle.active_for_contact(conn, ctx.contact_id)
        await lock_rows(conn, ENROLLMENTS, sorted({*active, ctx.enrollment_id}))
        await outbox.finish(conn, job.claim, RunState.done)
        await _set_state(conn, message_pk, MessageState.bounced, str(error))
        await lifecycle.record_bounce(
            conn, ctx.contact_id, ctx.email_key, ctx.enrollment_id, message_pk, str(error), now
        )

    await transaction(deps.engine, work)


async def settle_orphans(conn: AsyncConnection) -> int:
    """The sweeper's part: a ``sending`` message whose claim is gone (its row was cancelled,
    finished or made due again while a dead worker held it) becomes ``unknown``. A worker that
    is still sending it corrects that when the relay answers. Locked rows are skipped."""
    orphans = (
        select(MESSAGES.c.id)
        .join(RUNS, RUNS.c.id == MESSAGES.c.step_run_id)
        .where(MESSAGES.c.state == MessageState.sending, RUNS.c.state != RunState.claimed)
    )
    if conn.dialect.name == "postgresql":
        orphans = orphans.order_by(MESSAGES.c.id).with_for_update(of=MESSAGES, skip_locked=True)
    ids = [r.id for r in await conn.execute(orphans)]
    for message_pk in ids:
        await _set_state(conn, message_pk, MessageState.unknown, "claim gone while sending")
    if ids:
        log.warning("sending messages without a claim are unknown", extra={"count": len(ids)})
    return len(ids)


async def _set_state(conn: AsyncConnection, message_pk: str, state: str, reply: str) -> None:
    """Only a message still ``sending`` changes: another worker may have settled it already."""
    await conn.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id == message_pk, MESSAGES.c.state == MessageState.sending)
        .values(state=state, last_reply=reply[:1000])
    )
