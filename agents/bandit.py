"""Choosing among candidates from feedback: Thompson sampling over Beta posteriors.

Each candidate (a variant of an email step, or a step a ``choose`` may jump to) carries counts:
sends and, among them, the messages with a human click, a reply or a conversion. Each rate gets
a Beta posterior: a weak prior centred on the candidates' pooled rate, plus the candidate's hits
and misses. One draw per rate, weighted by the sequence's goal, is the candidate's sampled
value. A contact's topic affinities scale that value for the candidates about those topics. The
draws come from a seeded generator, and the seed, the counts, the affinities and the draws are
all kept on the choice, so a logged decision can be recomputed exactly.
"""

from __future__ import annotations

import hashlib
import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Goal = Literal["engagement", "clicks", "replies", "conversions"]

# What a hit of each kind is worth under each goal. Engagement values a reply over a click and a
# conversion over both, as the contact score does.
GOAL_WEIGHTS: dict[str, dict[str, float]] = {
    "engagement": {"clicks": 1.0, "replies": 2.0, "conversions": 4.0},
    "clicks": {"clicks": 1.0},
    "replies": {"replies": 1.0},
    "conversions": {"conversions": 1.0},
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArmStats(_Frozen):
    """Counts for one candidate; each hit count is unique messages, so never above ``sends``."""

    sends: int = Field(0, ge=0)
    clicks: int = Field(0, ge=0)
    replies: int = Field(0, ge=0)
    conversions: int = Field(0, ge=0)

    def hits(self, metric: str) -> int:
        return min(int(getattr(self, metric)), self.sends)

    def posterior(
        self, metric: str, prior: tuple[float, float] = (1.0, 1.0)
    ) -> tuple[float, float]:
        """Beta(alpha, beta) for one rate: the prior plus hits and misses."""
        hits = self.hits(metric)
        return prior[0] + hits, prior[1] + self.sends - hits

    def mean(self, goal: Goal = "engagement") -> float:
        """The goal's value at the posterior means: what the prompt and the console show."""
        value = 0.0
        for metric, weight in GOAL_WEIGHTS[goal].items():
            alpha, beta = self.posterior(metric)
            value += weight * alpha / (alpha + beta)
        return value


class Candidate(_Frozen):
    id: str
    topics: tuple[str, ...] = ()
    stats: ArmStats = ArmStats()


class Choice(_Frozen):
    """One decision and everything needed to replay it."""

    id: str
    reason: str
    method: Literal["thompson", "only"] = "thompson"
    seed: int = 0
    goal: Goal = "engagement"
    affinity_weight: float = 1.0
    affinities: dict[str, float] = Field(default_factory=dict)  # the contact's, as used
    samples: dict[str, float] = Field(default_factory=dict)
    boosts: dict[str, float] = Field(default_factory=dict)
    stats: dict[str, ArmStats] = Field(default_factory=dict)


def affinity_boost(topics: tuple[str, ...], affinities: dict[str, float], weight: float) -> float:
    """1 + weight x the contact's share of interest in the candidate's best topic.

    The share is a / (total + 1): one click on a topic gives it half, many clicks approach all
    of it, and a contact with no clicks boosts nothing.
    """
    if not topics or not affinities or weight <= 0:
        return 1.0
    total = sum(v for v in affinities.values() if v > 0)
    best = max((affinities.get(topic, 0.0) for topic in topics), default=0.0)
    return 1.0 + weight * max(best, 0.0) / (total + 1.0)


PRIOR_STRENGTH = 2.0  # pseudo-sends behind each prior: weak, so data takes over fast


def pooled_prior(candidates: list[Candidate], metric: str) -> tuple[float, float]:
    """A prior centred on the rate of all candidates together (a little shrinkage): an arm
    with no sends explores around what the step achieves, not around a 50% conversion rate,
    which would let every new arm win for its first dozens of sends."""
    hits = sum(c.stats.hits(metric) for c in candidates)
    sends = sum(c.stats.sends for c in candidates)
    mean = (hits + 1.0) / (sends + 2.0)
    return PRIOR_STRENGTH * mean, PRIOR_STRENGTH * (1.0 - mean)


def thompson(
    candidates: list[Candidate],
    affinities: dict[str, float],
    *,
    seed: int,
    goal: Goal = "engagement",
    affinity_weight: float = 1.0,
) -> Choice:
    """Sample each candidate's value and take the highest; ties go to the earlier candidate."""
    if not candidates:
        raise ValueError("thompson sampling needs at least one candidate")
    rng = random.Random(seed)
    priors = {metric: pooled_prior(candidates, metric) for metric in GOAL_WEIGHTS[goal]}
    samples: dict[str, float] = {}
    boosts: dict[str, float] = {}
    for candidate in candidates:
        value = 0.0
        for metric, weight in GOAL_WEIGHTS[goal].items():
            value += weight * rng.betavariate(*candidate.stats.posterior(metric, priors[metric]))
        boosts[candidate.id] = affinity_boost(candidate.topics, affinities, affinity_weight)
        samples[candidate.id] = value * boosts[candidate.id]
    best = max(candidates, key=lambda c: samples[c.id])
    return Choice(
        id=best.id,
        reason=_reason(best, candidates, samples, boosts, goal),
        seed=seed,
        goal=goal,
        affinity_weight=affinity_weight,
        affinities=dict(affinities),
        samples={k: round(v, 6) for k, v in samples.items()},
        boosts={k: round(v, 6) for k, v in boosts.items()},
        stats={c.id: c.stats for c in candidates},
    )


def split(
    candidates: list[Candidate], *, goal: Goal = "engagement", draws: int = 1000, seed: int = 0
) -> dict[str, float]:
    """The share of contacts each candidate goes to at these counts: how often its sampled
    value is the highest over ``draws`` Thompson draws (for a contact with no topic interest,
    so no affinity boost). What the console shows as the bandit's current split."""
    if not candidates:
        return {}
    rng = random.Random(seed)
    priors = {metric: pooled_prior(candidates, metric) for metric in GOAL_WEIGHTS[goal]}
    params = [
        [
            (weight, c.stats.posterior(metric, priors[metric]))
            for metric, weight in GOAL_WEIGHTS[goal].items()
        ]
        for c in candidates
    ]
    wins = [0] * len(candidates)
    for _ in range(draws):
        values = [sum(w * rng.betavariate(a, b) for w, (a, b) in arm) for arm in params]
        wins[values.index(max(values))] += 1
    return {c.id: wins[i] / draws for i, c in enumerate(candidates)}


def _reason(
    best: Candidate,
    candidates: list[Candidate],
    samples: dict[str, float],
    boosts: dict[str, float],
    goal: Goal,
) -> str:
    def describe(c: Candidate) -> str:
        s = c.stats
        boost = f" x{boosts[c.id]:.2f} affinity" if boosts[c.id] != 1.0 else ""
        return (
            f"{c.id} {samples[c.id]:.3f}{boost} ({s.sends} sent, {s.clicks} clicked, "
            f"{s.replies} replied, {s.conversions} converted)"
        )

    others = "; ".join(describe(c) for c in candidates if c.id != best.id)
    return f"thompson sampling on {goal}: {describe(best)} beat {others}"


def replay(choice: Choice, candidates: list[Candidate]) -> Choice:
    """Recompute a logged choice from its seed, counts and affinities (audits and tests)."""
    pinned = [c.model_copy(update={"stats": choice.stats.get(c.id, c.stats)}) for c in candidates]
    return thompson(
        pinned,
        choice.affinities,
        seed=choice.seed,
        goal=choice.goal,
        affinity_weight=choice.affinity_weight,
    )


def seed_for(base: int, *parts: str) -> int:
    """A per-decision seed: stable for the same enrollment and step, different across them."""
    digest = hashlib.sha256(":".join([str(base), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big")
