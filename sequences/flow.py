"""How an enrollment moves: from one waiting point (an email or a wait) to the next.

Control steps (branch, goto, choose) have no side effects, so they are resolved inline when an
enrollment advances; only emails and waits become outbox rows of their own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences import engagement, lifecycle, outbox, registry, timeline
from sequences.definition import (
    BranchStep,
    ChooseStep,
    EmailStep,
    ExitStep,
    GotoStep,
    SequenceDefinition,
    WaitStep,
)
from sequences.deps import Deps
from sequences.models import CONTACTS, ENROLLMENTS, EnrollmentStatus
from sequences.sandbox import SandboxError, evaluate_condition

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
    row = (
        await conn.execute(
            select(
                ENROLLMENTS.c.status,
                ENROLLMENTS.c.version_id,
                CONTACTS.c.id.label("contact_id"),
                CONTACTS.c.email,
                CONTACTS.c.email_key,
                CONTACTS.c.timezone,
                CONTACTS.c.attributes,
                ENROLLMENTS.c.created_at,
            )
            .join(CONTACTS, CONTACTS.c.id == ENROLLMENTS.c.contact_id)
            .where(ENROLLMENTS.c.id == enrollment_id)
        )
    ).first()
    if row is None:
        return None
    defn = await registry.load_version(conn, row.version_id)
    return RunContext(
        enrollment_id=enrollment_id,
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
    if not await outbox.finish(conn, claim):
        return []
    now = deps.clock.now()
    entries = [timeline.entry(ctx.enrollment_id, now, "step_done", from_step, **detail)]
    target = from_step if entered else ctx.definition.next_step_id(from_step)
    return await move_to(conn, deps, ctx, target, now, entries)


async def move_to(
    conn: AsyncConnection,
    deps: Deps,
    ctx: RunContext,
    target: str | None,
    now: datetime,
    entries: list[dict[str, Any]],
) -> list[datetime]:
    """Resolve control steps from ``target`` on, then schedule the email or wait it lands on."""
    defn = ctx.definition
    signals: engagement.Engagement | None = None
    for _ in range(MAX_HOPS):
        if target is None:
            await timeline.record(conn, entries)
            await lifecycle.end(
                conn,
                [ctx.enrollment_id],
                status=EnrollmentStatus.completed,
                reason="end of sequence",
                now=now,
            )
            return []
        step = defn.step(target)
        if isinstance(step, ExitStep):
            await timeline.record(conn, entries)
            reason = step.exit.reason or f"exit step {step.id}"
            await lifecycle.end(
                conn,
                [ctx.enrollment_id],
                status=EnrollmentStatus.exited,
                reason=reason,
                now=now,
                step_id=step.id,
            )
            return []
        if isinstance(step, EmailStep | WaitStep):
            return await _schedule(conn, deps, ctx, step, now, entries)
        if signals is None:
            signals = await engagement.load(conn, ctx.enrollment_id, ctx.contact_id, ctx.started_at)
        target, why = _decide(step, ctx, signals)
        entries.append(
            timeline.entry(ctx.enrollment_id, now, "decision", step.id, goto=target, reason=why)
        )
    await timeline.record(conn, entries)
    await lifecycle.end(
        conn,
        [ctx.enrollment_id],
        status=EnrollmentStatus.exited,
        reason="goto loop without a wait",
        now=now,
    )
    return []


def _decide(
    step: BranchStep | GotoStep | ChooseStep, ctx: RunContext, signals: engagement.Engagement
) -> tuple[str, str]:
    if isinstance(step, GotoStep):
        return step.goto, "goto"
    if isinstance(step, ChooseStep):
        pick = stable_pick(ctx.enrollment_id, step.id, step.choose)
        return pick, "static split by enrollment (no scores yet)"
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


def stable_pick(enrollment_id: str, step_id: str, options: list[str]) -> str:
    digest = hashlib.sha256(f"{enrollment_id}:{step_id}".encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


async def _schedule(
    conn: AsyncConnection,
    deps: Deps,
    ctx: RunContext,
    step: EmailStep | WaitStep,
    now: datetime,
    entries: list[dict[str, Any]],
) -> list[datetime]:
    due = now
    if isinstance(step, WaitStep):
        due = now + deps.seqtime.real_duration(step.wait.duration)
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
    await outbox.schedule(conn, ctx.enrollment_id, step.id, due, now)
    await conn.execute(
        update(ENROLLMENTS)
        .where(
            ENROLLMENTS.c.id == ctx.enrollment_id, ENROLLMENTS.c.status == EnrollmentStatus.active
        )
        .values(position=step.id, updated_at=now)
    )
    await timeline.record(conn, entries)
    return [due]
