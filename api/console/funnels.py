"""What the sequence pages chart: per step and variant, the funnel from sent to conversion
with unsubscribes and bounces beside it; the bandit's current split; enrollment counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents import bandit
from agents.bandit import ArmStats, Candidate
from sequences.definitions.document import ChooseStep, EmailStep, SequenceDefinition
from sequences.signals.adaptive import choose_candidates
from sequences.store.tables import DRAFTS, ENROLLMENTS, EVENTS, MESSAGES, MessageState

STAGES = ("sent", "clicked", "replied", "converted")
LOSSES = ("unsubscribed", "bounced")
SPLIT_DRAWS = 500  # a share's standard error is at most 2.2 points: plenty for a chart


@dataclass
class Funnel:
    sent: int = 0
    clicked: int = 0  # messages with a human click (bot clicks never set clicked_at)
    replied: int = 0
    converted: int = 0
    unsubscribed: int = 0
    bounced: int = 0

    def share(self, stage: str) -> float:
        return getattr(self, stage) / self.sent if self.sent else 0.0

    def add(self, other: Funnel) -> None:
        for name in (*STAGES, *LOSSES):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class StepFunnel:
    step: str
    total: Funnel = field(default_factory=Funnel)
    variants: dict[str, Funnel] = field(default_factory=dict)


async def funnels(
    conn: AsyncConnection, defn: SequenceDefinition, sequence_id: int
) -> list[StepFunnel]:
    """Every email step of the definition, in order, with its counts over all versions."""
    by_step = {s.id: StepFunnel(s.id) for s in defn.steps if isinstance(s, EmailStep)}
    for row in await _message_counts(conn, sequence_id):
        _place(
            by_step,
            row.step_id,
            row.variant,
            Funnel(
                sent=row.sent or 0,
                clicked=row.clicked or 0,
                replied=row.replied or 0,
                converted=row.converted or 0,
                bounced=row.bounced or 0,
            ),
        )
    for row in await _unsubscribes(conn, sequence_id):
        _place(by_step, row.step_id, row.variant, Funnel(unsubscribed=row.n))
    for found in by_step.values():
        found.variants = dict(sorted(found.variants.items()))
    return list(by_step.values())


def _place(by_step: dict[str, StepFunnel], step: str, variant: str | None, counts: Funnel) -> None:
    target = by_step.setdefault(step, StepFunnel(step))  # a step a later version removed
    target.total.add(counts)
    if variant:
        target.variants.setdefault(variant, Funnel()).add(counts)


async def _message_counts(conn: AsyncConnection, sequence_id: int) -> list[Any]:
    sent = MESSAGES.c.sent_at.is_not(None)
    bounced = MESSAGES.c.state == MessageState.bounced
    query = (
        select(
            MESSAGES.c.step_id,
            MESSAGES.c.variant,
            func.sum(case((sent | bounced, 1), else_=0)).label("sent"),
            func.count(MESSAGES.c.clicked_at).label("clicked"),
            func.count(MESSAGES.c.replied_at).label("replied"),
            func.count(MESSAGES.c.converted_at).label("converted"),
            func.sum(case((bounced, 1), else_=0)).label("bounced"),
        )
        .join(ENROLLMENTS, ENROLLMENTS.c.id == MESSAGES.c.enrollment_id)
        .where(ENROLLMENTS.c.sequence_id == sequence_id)
        .group_by(MESSAGES.c.step_id, MESSAGES.c.variant)
    )
    return list(await conn.execute(query))


async def _unsubscribes(conn: AsyncConnection, sequence_id: int) -> list[Any]:
    """Unsubscribes and complaints, credited to the message they came through."""
    query = (
        select(MESSAGES.c.step_id, MESSAGES.c.variant, func.count().label("n"))
        .select_from(EVENTS)
        .join(MESSAGES, MESSAGES.c.id == EVENTS.c.message_pk)
        .join(ENROLLMENTS, ENROLLMENTS.c.id == MESSAGES.c.enrollment_id)
        .where(
            ENROLLMENTS.c.sequence_id == sequence_id,
            EVENTS.c.type.in_(["unsubscribed", "complained"]),
        )
        .group_by(MESSAGES.c.step_id, MESSAGES.c.variant)
    )
    return list(await conn.execute(query))


@dataclass(frozen=True)
class Split:
    step: str
    kind: str  # "variants" of an email step, or the targets of a "choose"
    shares: dict[str, float]
    stats: dict[str, ArmStats]


def splits(defn: SequenceDefinition, stats: dict[tuple[str, str], ArmStats]) -> list[Split]:
    """Where the bandit sends the next contact (one with no topic interest), per decision."""
    found: list[Split] = []
    for step in defn.steps:
        if isinstance(step, EmailStep) and len(step.email.variants) > 1:
            ids = [v.id or "" for v in step.email.variants]
            arms = {v: stats.get((step.id, v), ArmStats()) for v in ids}
            found.append(_split(step.id, "variants", arms, defn))
        elif isinstance(step, ChooseStep):
            arms = {c.id: c.stats for c in choose_candidates(defn, step, stats)}
            found.append(_split(step.id, "choose", arms, defn))
    return found


def _split(step: str, kind: str, arms: dict[str, ArmStats], defn: SequenceDefinition) -> Split:
    candidates = [Candidate(id=arm, stats=counts) for arm, counts in arms.items()]
    shares = bandit.split(candidates, goal=defn.adapt.goal, draws=SPLIT_DRAWS, seed=len(step))
    return Split(step, kind, shares, arms)


async def enrollment_counts(
    conn: AsyncConnection, sequence_id: int | None = None
) -> dict[int, dict[str, int]]:
    """Enrollments per sequence id and status (of one sequence, or of all)."""
    query = select(
        ENROLLMENTS.c.sequence_id, ENROLLMENTS.c.status, func.count().label("n")
    ).group_by(ENROLLMENTS.c.sequence_id, ENROLLMENTS.c.status)
    if sequence_id is not None:
        query = query.where(ENROLLMENTS.c.sequence_id == sequence_id)
    rows = await conn.execute(query)
    counts: dict[int, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row.sequence_id, {})[row.status] = row.n
    return counts


async def pending_drafts(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(
        select(DRAFTS.c.sequence_key, func.count().label("n"))
        .where(DRAFTS.c.status == "pending")
        .group_by(DRAFTS.c.sequence_key)
    )
    return {row.sequence_key: row.n for row in rows}


async def sent_counts(conn: AsyncConnection) -> dict[int, int]:
    rows = await conn.execute(
        select(ENROLLMENTS.c.sequence_id, func.count().label("n"))
        .select_from(MESSAGES)
        .join(ENROLLMENTS, ENROLLMENTS.c.id == MESSAGES.c.enrollment_id)
        .where(MESSAGES.c.sent_at.is_not(None))
        .group_by(ENROLLMENTS.c.sequence_id)
    )
    return {row.sequence_id: row.n for row in rows}
