"""What the sequence pages chart: per step and variant, the funnel from sent to conversion
with unsubscribes and bounces beside it (counted by :mod:`sequences.signals.counts`), and the
bandit's current split."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents import bandit
from agents.bandit import ArmStats, Candidate, Goal
from sequences.definitions.document import ChooseStep, EmailStep, SequenceDefinition
from sequences.signals import counts
from sequences.signals.adaptive import choose_candidates
from sequences.signals.counts import StepEmails
from sequences.store.tables import DRAFTS

STAGES = ("sent", "delivered", "clicked", "replied", "converted")
LOSSES = ("unsubscribed", "bounced")
SPLIT_DRAWS = 500  # a share's standard error is at most 2.2 points: plenty for a chart


async def funnels(
    conn: AsyncConnection, defn: SequenceDefinition, sequence_id: int
) -> list[StepEmails]:
    """Every email step of the definition, in order, with its counts over all versions (a
    step a later version removed comes last)."""
    found = (await counts.emails(conn, sequence_id)).get(sequence_id, {})
    ordered = [found.pop(s.id, StepEmails(s.id)) for s in defn.steps if isinstance(s, EmailStep)]
    return ordered + list(found.values())


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
    shares = _shares(tuple(arms.items()), defn.adapt.goal, len(step))
    return Split(step, kind, dict(shares), arms)


@lru_cache(maxsize=256)
def _shares(arms: tuple[tuple[str, ArmStats], ...], goal: Goal, seed: int) -> tuple[Any, ...]:
    """The split is a pure function of the counts (seeded draws): computed once per change
    of the counts, not on every page view."""
    candidates = [Candidate(id=arm, stats=counts) for arm, counts in arms]
    return tuple(bandit.split(candidates, goal=goal, draws=SPLIT_DRAWS, seed=seed).items())


async def pending_drafts(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(
        select(DRAFTS.c.sequence_key, func.count().label("n"))
        .where(DRAFTS.c.status == "pending")
        .group_by(DRAFTS.c.sequence_key)
    )
    return {row.sequence_key: row.n for row in rows}
