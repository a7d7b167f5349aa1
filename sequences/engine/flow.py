"""How an enrollment moves: from one waiting point (an email or a wait) to the next.

Control steps (branch, goto, choose) have no side effects, so they are resolved inline when an
enrollment advances; only emails and waits become outbox rows of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.definitions import ahead, registry
from sequences.definitions.document import (
    BranchStep,
    ChooseStep,
    EmailStep,
    ExitStep,
    GotoStep,
    SequenceDefinition,
    Step,
    WaitStep,
)
from sequences.definitions.sandbox import SandboxError, evaluate_condition
from sequences.deps import Deps
from sequences.engine import drafted, lifecycle, outbox
from sequences.signals import adaptive, engagement
from sequences.store import timeline
from sequences.store.arrays import update_arrays
from sequences.store.db import among, lock_rows
from sequences.store.tables import CONTACTS, ENROLLMENTS, EVENTS, EnrollmentStatus

MAX_HOPS = 100  # a goto loop with no email or wait in it must not spin forever


@dataclass(frozen=True)
class RunContext:
    enrollment_id: str
    status: str
    sequence_key: str
    version_id: int
    definition: SequenceDefinition
    contact_id: int
    email: str
    email_key: str
    timezone: str | None
    attributes: dict[str, Any]
    started_at: datetime

    def contact_view(self) -> dict[str, Any]:
        """What templates and conditions see as ``contact``: attributes plus the basics."""
        return {**self.attributes, "email": self.email, "timezone": self.timezone}


async def load_context(conn: AsyncConnection, enrollment_id: str) -> RunContext | None:
    return (await load_contexts(conn, [enrollment_id])).get(enrollment_id)


async def load_contexts(conn: AsyncConnection, enrollment_ids: list[str]) -> dict[str, RunContext]:
    """Enrollments with their contact and pinned definition, for a whole batch in one query."""
    rows = await conn.execute(
        select(
            ENROLLMENTS.c.id,
            ENROLLMENTS.c.status,
            ENROLLMENTS.c.version_id,
            ENROLLMENTS.c.created_at,
            CONTACTS.c.id.label("contact_id"),
            CONTACTS.c.email,
            CONTACTS.c.email_key,
            CONTACTS.c.timezone,
            CONTACTS.c.attributes,
        )
        .join(CONTACTS, CONTACTS.c.id == ENROLLMENTS.c.contact_id)
        .where(among(conn, ENROLLMENTS.c.id, enrollment_ids))
    )
    contexts: dict[str, RunContext] = {}
    for row in rows.all():
        defn = await registry.load_version(conn, row.version_id)
        contexts[row.id] = RunContext(
            enrollment_id=row.id,
            status=row.status,
            sequence_key=defn.key,
            version_id=row.version_id,
            definition=defn,
            contact_id=row.contact_id,
            email=row.email,
            email_key=row.email_key,
            timezone=row.timezone,
            attributes=dict(row.attributes or {}),
            started_at=row.created_at,
        )
    return contexts


async def advance(
    conn: AsyncConnection,
    deps: Deps,
    claim: outbox.Claim,
    ctx: RunContext,
    from_step: str,
    *,
    entered: bool = False,
    **detail: Any,
) -> list[datetime]:
    """Close the claimed row and move the enrollment to its next waiting point.

    ``entered`` means ``from_step`` itself is still to be run (a control step reached by the
    claim); otherwise the walk starts after it. Returns the due times of rows to wake.
    """
    finished = Finished(claim, ctx, from_step, detail, entered)
    return await advance_many(conn, deps, [finished], {})


@dataclass(frozen=True)
class Finished:
    """One finished outbox row, and what to say about it on the timeline."""

    claim: outbox.Claim
    ctx: RunContext
    step_id: str
    detail: dict[str, Any]
    entered: bool = False
    # When the relay accepted the email this row sent: a wait right after it starts then, and
    # a wait ``until`` counts the matching events that came in since.
    sent_at: datetime | None = None


async def advance_many(
    conn: AsyncConnection,
    deps: Deps,
    finished: list[Finished],
    signals: dict[str, engagement.Engagement],
) -> list[datetime]:
    """Close many claimed rows at once and move each enrollment on, in a few statements.

    ``signals`` holds engagement already loaded for some enrollments (branches read it).
    """
    # Enrollments before outbox rows, as everywhere (see sequences.store.db.lock_rows).
    await lock_rows(conn, ENROLLMENTS, sorted({f.ctx.enrollment_id for f in finished}))
    held = await outbox.finish_many(conn, [f.claim for f in finished])
    now = deps.clock.now()
    moves: list[Move] = []
    kept: list[Finished] = []
    for item in finished:
        if item.claim.run_id not in held:
            continue  # the claim lapsed: whoever holds the row now moves the enrollment
        kept.append(item)
        entry = timeline.entry(
            item.ctx.enrollment_id, now, "step_done", item.step_id, **item.detail
        )
        target = item.step_id if item.entered else item.ctx.definition.next_step_id(item.step_id)
        loaded = signals.get(item.ctx.enrollment_id)
        move = await plan_move(conn, deps, item.ctx, target, now, [entry], loaded, item.sent_at)
        move.reach = move.schedule is not None and _drafted_after(item, move.schedule[0])
        moves.append(move)
    await _woken_already(conn, [(m, f) for m, f in zip(moves, kept, strict=True)], now)
    return await apply_moves(conn, moves, now)


async def _woken_already(
    conn: AsyncConnection, pairs: list[tuple[Move, Finished]], now: datetime
) -> None:
    """A wait ``until`` scheduled right after an email ends at once when a matching human
    event came in since the relay accepted it (a click can beat the worker's commit). The
    enrollments are locked, and event intake locks them too before it looks for waits to
    wake, so each event is seen by one side or the other. One query for the batch."""
    waiting = [
        (move, item.ctx, item.sent_at, until)
        for move, item in pairs
        if item.sent_at is not None
        and move.schedule is not None
        and (until := _until(item.ctx, move.schedule[0]))
    ]
    if not waiting:
        return
    since = min(sent_at for _, _, sent_at, _ in waiting)
    rows = await conn.execute(
        select(EVENTS.c.enrollment_id, EVENTS.c.contact_id, EVENTS.c.type, EVENTS.c.occurred_at)
        .where(
            EVENTS.c.is_bot.is_(False),
            EVENTS.c.occurred_at >= since,
            EVENTS.c.type.in_(sorted({t for *_, until in waiting for t in until})),
            or_(
                among(
                    conn, EVENTS.c.enrollment_id, [ctx.enrollment_id for _, ctx, _, _ in waiting]
                ),
                and_(
                    EVENTS.c.enrollment_id.is_(None),
                    among(conn, EVENTS.c.contact_id, [ctx.contact_id for _, ctx, _, _ in waiting]),
                ),
            ),
        )
        .order_by(EVENTS.c.occurred_at)
    )
    found = rows.all()
    for move, ctx, sent_at, until in waiting:
        hit = next(
            (
                r
                for r in found
                if _concerns(r, ctx) and r.occurred_at >= sent_at and r.type in until
            ),
            None,
        )
        if hit is not None and move.schedule is not None:
            move.schedule = (move.schedule[0], now)
            move.woken_by = hit.type


def _drafted_after(item: Finished, step_id: str) -> bool:
    """Whether the email ``step_id``, reached from the finished ``item``, may have a row that
    drafted ahead while ``item`` (a wait) ran: plan_move scheduled one when the wait began if
    the lead was above zero then (whatever the setting says now)."""
    defn = item.ctx.definition
    if item.entered or not isinstance(defn.step(item.step_id), WaitStep):
        return False
    email = ahead.email_after_wait(defn, item.step_id)
    return email is not None and email.id == step_id


def _lead(deps: Deps, defn: SequenceDefinition, email: EmailStep) -> timedelta:
    return deps.seqtime.real_duration(ahead.lead(defn, email, deps.settings.draft_ahead))


def _until(ctx: RunContext, step_id: str) -> list[str]:
    step = ctx.definition.step(step_id)
    return list(step.wait.until) if isinstance(step, WaitStep) else []


def _concerns(row: Any, ctx: RunContext) -> bool:
    if row.enrollment_id is not None:
        return bool(row.enrollment_id == ctx.enrollment_id)
    return bool(row.contact_id == ctx.contact_id)


def plans_alone(step: Step) -> bool:
    """An email or a wait: a move onto it reads nothing from the database, so an enrollment's
    first move can be planned before its row exists and the row written at its step. Control
    steps read engagement and may record a choice against the enrollment."""
    return isinstance(step, EmailStep | WaitStep)


@dataclass
class Move:
    """Where one enrollment goes next: a row to schedule, or an end."""

    enrollment_id: str
    entries: list[dict[str, Any]]
    schedule: tuple[str, datetime] | None = None  # (step, due)
    end: tuple[EnrollmentStatus, str, str | None] | None = None  # (status, reason, step)
    woken_by: str | None = None  # a wait ``until`` whose event came in already
    # Drafts ahead (sequences.review.ahead): the email after the wait scheduled here, drafted
    # from ``draft at`` on, as (email step, draft at, send at); and whether the email scheduled
    # here had a row drafting ahead, which becomes its own (``reach``).
    ahead: tuple[str, datetime, datetime] | None = None
    reach: bool = False


async def plan_move(
    conn: AsyncConnection,
    deps: Deps,
    ctx: RunContext,
    target: str | None,
    now: datetime,
    entries: list[dict[str, Any]],
    signals: engagement.Engagement | None = None,
    sent_at: datetime | None = None,
) -> Move:
    """Where ``target`` leads. ``sent_at``: the email just sent was accepted then, and a wait
    reached straight after it counts from that moment."""
    defn = ctx.definition
    move = Move(ctx.enrollment_id, entries)
    for _ in range(MAX_HOPS):
        if target is None:
            move.end = (EnrollmentStatus.completed, "end of sequence", None)
            return move
        step = defn.step(target)
        if isinstance(step, ExitStep):
            # Reaching an exit step is the planned end (counted as completed everywhere, see
            # sequences.signals.counts); exited is for leaving early (exit_on, suppression).
            move.end = (
                EnrollmentStatus.completed,
                step.exit.reason or f"exit step {step.id}",
                step.id,
            )
            return move
        if isinstance(step, EmailStep | WaitStep):
            move.schedule = (step.id, _due(deps, ctx, step, now, entries, sent_at))
            email = ahead.email_after_wait(defn, step.id) if isinstance(step, WaitStep) else None
            if email is not None and (lead := _lead(deps, defn, email)) > timedelta(0):
                due = move.schedule[1]
                move.ahead = (email.id, max(now, due - lead), due)
            return move
        if signals is None:
            signals = await engagement.load(
                conn, deps, ctx.enrollment_id, ctx.contact_id, ctx.started_at
            )
        detail: dict[str, Any] = {}
        if isinstance(step, ChooseStep):
            target, why, detail = await adaptive.choose_next(
                conn, deps, defn, step, ctx.enrollment_id, signals.standing.affinities
            )
        else:
            target, why = _decide(step, ctx, signals)
        entries.append(
            timeline.entry(
                ctx.enrollment_id, now, "decision", step.id, goto=target, reason=why, **detail
            )
        )
    move.end = (EnrollmentStatus.exited, "goto loop without a wait", None)
    return move


def _due(
    deps: Deps,
    ctx: RunContext,
    step: EmailStep | WaitStep,
    now: datetime,
    entries: list[dict[str, Any]],
    sent_at: datetime | None = None,
) -> datetime:
    if isinstance(step, EmailStep):
        return now
    due = (sent_at or now) + deps.seqtime.real_duration(step.wait.duration)
    entries.append(
        timeline.entry(
            ctx.enrollment_id,
            now,
            "waiting",
            step.id,
            until=step.wait.until,
            wake_at=due.isoformat(),
        )
    )
    return due


async def apply_moves(
    conn: AsyncConnection, moves: list[Move], now: datetime, *, placed: bool = False
) -> list[datetime]:
    """Write many moves with a handful of statements; returns the new rows' due times.
    ``placed``: the enrollments were inserted at the step scheduled here (nothing to update)."""
    await timeline.record(conn, [e for m in moves for e in m.entries])
    scheduled = [m for m in moves if m.schedule is not None]
    if scheduled:
        rows = [(m.enrollment_id, *m.schedule) for m in scheduled if m.schedule]
        reach = [(e, s) for (e, s, _), m in zip(rows, scheduled, strict=True) if m.reach]
        reached = await drafted.reach_drafted(conn, reach, now) if reach else set()
        new = [(row, m) for row, m in zip(rows, scheduled, strict=True) if row[:2] not in reached]
        await outbox.schedule_many(conn, [r for r, _ in new], now, [m.woken_by for _, m in new])
        # A wait already ended by an event leads straight on: nothing to draft ahead of it.
        drafting = [(m.enrollment_id, *m.ahead) for m in scheduled if m.ahead and not m.woken_by]
        await drafted.schedule_ahead(conn, drafting, now)
        if not placed:
            await _move_positions(conn, [(e, s) for e, s, _ in rows], now)
    ends: dict[tuple[EnrollmentStatus, str, str | None], list[str]] = {}
    for move in moves:
        if move.end is not None:
            ends.setdefault(move.end, []).append(move.enrollment_id)
    for (status, reason, step_id), ids in ends.items():
        await lifecycle.end(conn, ids, status=status, reason=reason, now=now, step_id=step_id)
    ahead_due = [m.ahead[1] for m in scheduled if m.ahead and not m.woken_by]
    return [m.schedule[1] for m in scheduled if m.schedule] + ahead_due


_POSITION = (
    update(ENROLLMENTS)
    .where(
        ENROLLMENTS.c.id == bindparam("enrollment"),
        ENROLLMENTS.c.status == EnrollmentStatus.active,
    )
    .values(position=bindparam("step"), updated_at=bindparam("now"))
)


async def _move_positions(
    conn: AsyncConnection, moved: list[tuple[str, str]], now: datetime
) -> None:
    """Each active enrollment to its step: one statement over arrays on PostgreSQL."""
    if len(moved) > 1 and conn.dialect.name == "postgresql":
        rows = [{"id": e, "position": s, "updated_at": now} for e, s in moved]
        where = "status = :active"
        await update_arrays(conn, ENROLLMENTS, "id", rows, where=where, active=_ACTIVE)
    elif moved:
        await conn.execute(_POSITION, [{"enrollment": e, "step": s, "now": now} for e, s in moved])


_ACTIVE = EnrollmentStatus.active.value


def _decide(
    step: BranchStep | GotoStep, ctx: RunContext, signals: engagement.Engagement
) -> tuple[str, str]:
    if isinstance(step, GotoStep):
        return step.goto, "goto"
    context = {"contact": ctx.contact_view(), "event": signals.last_event, **signals.helpers()}
    failed: list[str] = []
    for number, rule in enumerate(step.branch):
        if rule.else_ is not None:
            return rule.else_, "; ".join([*failed, "else"])
        assert rule.if_ is not None and rule.goto is not None
        try:
            matched = evaluate_condition(rule.if_, context)
        except SandboxError as error:  # a runaway or broken condition counts as false, loudly
            failed.append(f"rule {number} failed ({error}), taken as false")
            continue
        if matched:
            return rule.goto, f"rule {number}: {rule.if_}"
    raise ValueError(f"branch {step.id} has no else")  # the definition validator forbids this
