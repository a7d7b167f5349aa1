"""The SMTP side of a batch: each message is started, sent and recorded on its own.

A batch's messages are recorded ``queued``. Each becomes ``sending`` in a short transaction
committed once an SMTP connection is ready for it and right before its MAIL FROM (starts that
come up while one commits share the next transaction: a group commit). The same
transaction checks again that the claim is still ours, the enrollment still active and the
address not suppressed (an exit answered 2xx before it is final), and records as ``sent`` the
message that connection carried before, with ``sent_at`` = the relay's 250 after DATA.

So a crash leaves at most one message per open connection whose outcome nobody recorded (it
becomes ``unknown``); every message not yet started is still ``queued`` and goes out when its
row runs again. The enrollments move on, for the whole batch at once, when it is done.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.delivery.outcomes import Job, failed
from sequences.deps import Deps
from sequences.engine import lifecycle, outbox
from sequences.engine.flow import Finished, advance_many
from sequences.mail.mime import split_address
from sequences.mail.smtp import Lane, NotStartedError, SendError, UnknownOutcomeError
from sequences.signals import stepstats
from sequences.store.arrays import update_arrays
from sequences.store.db import lock_rows, transaction
from sequences.store.tables import ENROLLMENTS, MESSAGES, EnrollmentStatus, MessageState

log = logging.getLogger(__name__)
STARTABLE = (MessageState.queued, MessageState.retrying)


@dataclass(frozen=True)
class Accepted:
    """A message the relay accepted (its 250 after DATA)."""

    message_pk: str
    enrollment_id: str
    reply: str
    attempts: int
    at: datetime


async def deliver(deps: Deps, jobs: list[Job]) -> None:
    """Send every job's message, then record the batch's sends and move its enrollments on."""
    if not jobs:
        return
    assert deps.mailer is not None, "a worker that sends needs a mailer"
    starts = _Starts(deps)
    try:
        outcomes = await asyncio.gather(*(_Send(deps, job, starts).run() for job in jobs))
    finally:
        await starts.close()
    sent = [(job, a) for job, a in zip(jobs, outcomes, strict=True) if a is not None]
    await _mark_sent(deps, sent, starts.recorded)


class _Send:
    """One message through the pool: started by the hook, then sent, then noted on its lane."""

    def __init__(self, deps: Deps, job: Job, starts: _Starts) -> None:
        self.deps = deps
        self.job = job
        self.starts = starts
        self.lane: Lane | None = None

    async def run(self) -> Accepted | None:
        deps, job = self.deps, self.job
        assert deps.mailer is not None and job.message is not None and job.data is not None
        _, from_addr = split_address(job.ctx.definition.sender.from_)
        try:
            reply = await deps.mailer.send(
                from_addr, job.message.to_addr, job.data, start=self.start
            )
        except NotStartedError:
            return None
        except SendError as error:
            await failed(deps, job, error)
            return None
        except Exception as error:
            if self.lane is None:  # the start hook failed: nothing was said to the relay
                log.exception("could not start a send", extra={"message_pk": job.message.id})
                return None
            # We cannot tell whether it left: never resend it blindly.
            log.exception("unexpected error while sending", extra={"message_pk": job.message.id})
            await failed(deps, job, UnknownOutcomeError(None, f"{type(error).__name__}: {error}"))
            return None
        accepted = Accepted(
            job.message.id,
            job.ctx.enrollment_id,
            reply[:1000],
            job.message.attempts + 1,
            deps.clock.now(),
        )
        assert self.lane is not None
        self.lane.unsettled.append(accepted)
        return accepted

    async def start(self, lane: Lane) -> bool:
        """Right before MAIL FROM: record what this connection sent before, then this message
        as ``sending``, if it may still go."""
        settle: list[Accepted] = list(lane.unsettled)
        go = await self.starts.start(self.job, settle)
        lane.unsettled.clear()  # the connection is ours alone until this send gives it back
        if go:
            self.lane = lane
        else:
            await transaction(self.deps.engine, self._decline)
        return go

    async def _decline(self, conn: AsyncConnection) -> None:
        """A message that may no longer go (the enrollment ended, the address is suppressed)
        is cancelled; one whose claim lapsed is left to the worker that holds the row now."""
        job = self.job
        assert job.message is not None
        await lock_rows(conn, ENROLLMENTS, [job.ctx.enrollment_id], share=True)
        await conn.execute(
            update(MESSAGES)
            .where(
                MESSAGES.c.id == job.message.id,
                MESSAGES.c.state.in_(STARTABLE),
                ~lifecycle.may_send(MESSAGES.c.enrollment_id, MESSAGES.c.contact_id),
            )
            .values(state=MessageState.cancelled)
        )


class _Starts:
    """Group commit for one batch's starts: those asked for while a group is being committed
    (each with its connection in hand, its MAIL FROM waiting) go together in the next
    transaction. Every message is still ``sending`` before its own MAIL FROM, and no message
    is marked before its connection is ready, so a crash still leaves at most one per
    connection; a busy relay pool just costs fewer transactions."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.waiting: list[tuple[Job, list[Accepted], asyncio.Future[bool]]] = []
        self.committer: asyncio.Task[None] | None = None
        self.recorded: set[str] = set()  # accepted messages already recorded as sent
        # One connection for the batch's starts: a pool checkout (and its ping and reset)
        # per start would sit between every message and its MAIL FROM.
        self.conn: AsyncConnection | None = None

    async def start(self, job: Job, settle: list[Accepted]) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting.append((job, settle, future))
        if self.committer is None or self.committer.done():
            self.committer = asyncio.create_task(self._commit_all())
        return await future

    async def _commit_all(self) -> None:
        while self.waiting:
            group, self.waiting = self.waiting, []
            await self._commit(group)

    async def close(self) -> None:
        if self.committer is not None:
            await asyncio.gather(self.committer, return_exceptions=True)
        if self.conn is not None:
            await self.conn.close()

    async def _commit(self, group: list[tuple[Job, list[Accepted], asyncio.Future[bool]]]) -> None:
        jobs = [job for job, _, _ in group]
        settle = [a for _, accepted, _ in group for a in accepted]
        try:
            if self.conn is None or self.conn.closed:
                self.conn = await self.deps.engine.connect()
            started = await transaction(self.conn, lambda c: _begin(c, jobs, settle))
        except Exception as error:  # each send sees it and gives its message up for this run
            for _, _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        self.recorded.update(a.message_pk for a in settle)
        for job, _, future in group:
            if not future.done():  # a send cancelled meanwhile (a stopping worker)
                future.set_result(job.message is not None and job.message.id in started)


# Built once: a statement built per start would cost more CPU than sending the message. The
# enrollments come first (the lock order), locked in share mode in the CTE until the commit:
# an exit for one of them either committed before (the lock re-reads the row, and an ended
# enrollment drops out of ``live``) or waits for these starts. SQLite ignores the lock; its
# writers are serialized anyway.
_LIVE = (
    select(ENROLLMENTS.c.id)
    .where(
        ENROLLMENTS.c.id.in_(bindparam("enrollments", expanding=True)),
        ENROLLMENTS.c.status == EnrollmentStatus.active,
    )
    .order_by(ENROLLMENTS.c.id)
    .with_for_update(read=True)
    .cte("live")
)
_START = (
    update(MESSAGES)
    .where(
        MESSAGES.c.id.in_(bindparam("messages", expanding=True)),
        MESSAGES.c.state.in_(STARTABLE),
        MESSAGES.c.enrollment_id.in_(select(_LIVE.c.id)),
        outbox.still_held(MESSAGES.c.step_run_id, bindparam("tokens", expanding=True)),
        lifecycle.may_send(MESSAGES.c.enrollment_id, MESSAGES.c.contact_id),
    )
    .values(state=MessageState.sending)
    .returning(MESSAGES.c.id)
)
_SENT = (
    update(MESSAGES)
    # An ``unknown`` set by a worker that took over a lapsed claim is corrected here.
    .where(
        MESSAGES.c.id == bindparam("pk"),
        # or_, not in_: an IN list cannot be bound per row of an executemany.
        or_(MESSAGES.c.state == MessageState.sending, MESSAGES.c.state == MessageState.unknown),
    )
    .values(
        state=MessageState.sent,
        sent_at=bindparam("at"),
        last_reply=bindparam("reply"),
        attempts=bindparam("tries"),
    )
)


async def _begin(conn: AsyncConnection, jobs: list[Job], settle: list[Accepted]) -> set[str]:
    """Mark these jobs' messages ``sending``, each if its claim is still ours, its enrollment
    active and its address not suppressed; record the accepted ones as sent."""
    ids = {job.ctx.enrollment_id for job in jobs} | {a.enrollment_id for a in settle}
    started = await conn.execute(
        _START,
        {
            "enrollments": sorted(ids),
            "messages": sorted(job.message.id for job in jobs if job.message),
            "tokens": sorted({job.claim.token for job in jobs}),
        },
    )
    await record_sent(conn, settle)
    return {row.id for row in started}


_SENDING = {"sending": MessageState.sending.value, "unknown": MessageState.unknown.value}


async def record_sent(conn: AsyncConnection, accepted: list[Accepted]) -> None:
    """Mark messages sent at their relay's acceptance (their enrollments locked before)."""
    ordered = sorted(accepted, key=lambda a: a.message_pk)
    if len(ordered) > 1 and conn.dialect.name == "postgresql":
        rows = [
            {"id": a.message_pk, "state": MessageState.sent.value, "sent_at": a.at}
            | {"last_reply": a.reply, "attempts": a.attempts}
            for a in ordered
        ]
        await update_arrays(
            conn, MESSAGES, "id", rows, where="state IN (:sending, :unknown)", **_SENDING
        )
    elif ordered:
        rows = [
            {"pk": a.message_pk, "reply": a.reply, "tries": a.attempts, "at": a.at} for a in ordered
        ]
        await conn.execute(_SENT, rows)


async def _mark_sent(deps: Deps, sent: list[tuple[Job, Accepted]], recorded: set[str]) -> None:
    if not sent:
        return
    now = deps.clock.now()
    finished = [
        Finished(
            job.claim,
            job.ctx,
            job.step.id,
            {"message": a.message_pk, "outcome": "sent"},
            sent_at=a.at,
        )
        for job, a in sent
    ]
    signals = {job.ctx.enrollment_id: job.signals for job, _ in sent if job.signals}

    async def work(conn: AsyncConnection) -> list[datetime]:
        # advance_many locks the enrollments, then the outbox rows; the messages come after.
        due = await advance_many(conn, deps, finished, signals)
        await record_sent(conn, [a for _, a in sent if a.message_pk not in recorded])
        # Last: step stats rows are hot, so their locks are held for the shortest time.
        await stepstats.count_sends(
            conn,
            [(j.ctx.sequence_key, j.step.id, j.message.variant) for j, _ in sent if j.message],
        )
        return due

    due = await transaction(deps.engine, work)
    await deps.waker.wake_at([d for d in due if d > now])
