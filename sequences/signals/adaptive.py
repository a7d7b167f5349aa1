"""Where feedback changes what a contact gets next: variants and ``choose`` steps.

The choosing itself is the agent's (``agents.bandit``: Thompson sampling over the step stats,
blended with the contact's topic affinities). The engine loads the counts, hands them over with
a per-decision seed, logs the choice with everything needed to replay it, and refuses any choice
that is not one of the candidates the definition allows.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from agents import bandit, guardrails
from agents.bandit import ArmStats, Candidate, Choice, Goal
from agents.composer import compose
from agents.copy import CopyRequest, Draft, VariantOption
from sequences.definitions.document import ChooseStep, EmailStep, SequenceDefinition
from sequences.deps import Deps
from sequences.signals import stepstats

log = logging.getLogger(__name__)

Stats = dict[tuple[str, str], ArmStats]


class Chooser(Protocol):
    def __call__(
        self,
        candidates: list[Candidate],
        affinities: dict[str, float],
        *,
        seed: int,
        goal: Goal = "engagement",
        affinity_weight: float = 1.0,
    ) -> Choice: ...


class RefusedChoice(ValueError):
    """Raised when a choice names something the definition does not offer at that point."""


def accept(choice: str | None, allowed: list[str]) -> str:
    """The engine's check on every adaptive choice."""
    if choice not in allowed:
        raise RefusedChoice(f"{choice!r} is not one of the candidates {allowed}")
    return choice


def checked_variant(request: CopyRequest, draft: Draft) -> tuple[Draft | None, str | None]:
    """The engine's check on the agent's variant: one the step does not offer is refused, and
    the composer writes the engine's own pick instead. That copy was written after the graph's
    gate, so it passes the same gate here; refused, there is nothing to send (``None``).
    Returns the draft to send and, when refused, why."""
    allowed = [v.id for v in request.variants]
    if not allowed:
        return draft, None
    try:
        accept(draft.variant, allowed)
    except RefusedChoice as refusal:
        reason = f"refused variant choice: {refusal}"
        pick = compose(request, request.preferred_variant, why=reason)
        refused = guardrails.failed(guardrails.check_gate(pick, request))
        if refused:
            named = "; ".join(f"{f.rule} ({f.message})" for f in refused)
            return None, f"{reason}; guardrails refused the copy: {named}; not sent"
        return pick, reason
    return draft, None


async def load_stats(conn: AsyncConnection, sequence_keys: set[str]) -> dict[str, Stats]:
    return {key: await stepstats.arm_stats(conn, key) for key in sorted(sequence_keys)}


def seed(deps: Deps, enrollment_id: str, step_id: str) -> int:
    return bandit.seed_for(deps.settings.bandit_seed, enrollment_id, step_id)


def with_variant_stats(
    request: CopyRequest,
    defn: SequenceDefinition,
    step: EmailStep,
    stats: Stats,
    affinities: dict[str, float],
    choice_seed: int,
) -> CopyRequest:
    """The request with each variant's counts and topics, and what the choose node needs to
    sample them; unchanged for a step without variants."""
    if not request.variants:
        return request
    options = tuple(
        VariantOption(
            id=v.id,
            angle=v.angle,
            topics=defn.topics(step.id, v.id),
            stats=stats.get((step.id, v.id), ArmStats()),
            score=round(stats.get((step.id, v.id), ArmStats()).mean(defn.adapt.goal), 4),
        )
        for v in request.variants
    )
    return request.model_copy(
        update={
            "variants": options,
            "choice_seed": choice_seed,
            "goal": defn.adapt.goal,
            "affinity_weight": defn.adapt.affinity_weight,
            "affinities": affinities,
        }
    )


async def choose_next(
    conn: AsyncConnection,
    deps: Deps,
    defn: SequenceDefinition,
    step: ChooseStep,
    enrollment_id: str,
    affinities: dict[str, float],
    chooser: Chooser = bandit.thompson,
) -> tuple[str, str, dict[str, Any]]:
    """(target, reason, logged detail) for a ``choose`` step. Each candidate stands for the
    email it leads to, so its counts are that step's over all of its variants."""
    candidates = choose_candidates(defn, step, await stepstats.arm_stats(conn, defn.key))
    choice = chooser(
        candidates,
        affinities,
        seed=seed(deps, enrollment_id, step.id),
        goal=defn.adapt.goal,
        affinity_weight=defn.adapt.affinity_weight,
    )
    detail = {"choice": choice.model_dump(mode="json")}
    try:
        return accept(choice.id, step.choose), choice.reason, detail
    except RefusedChoice as refusal:
        log.warning("choice refused", extra={"step": step.id, "why": str(refusal)})
        target = stable_pick(enrollment_id, step.id, step.choose)
        return target, f"refused choice: {refusal}; took the stable split instead", detail


def choose_candidates(defn: SequenceDefinition, step: ChooseStep, stats: Stats) -> list[Candidate]:
    """A ``choose`` step's candidates, each with the counts of the email it leads to."""
    return [
        Candidate(
            id=target,
            topics=defn.topics(defn.arm_step(target)),
            stats=stepstats.step_total(stats, defn.arm_step(target)),
        )
        for target in step.choose
    ]


def stable_pick(enrollment_id: str, step_id: str, options: list[str]) -> str:
    """A fixed split by enrollment: the fallback when no adaptive choice can stand."""
    digest = hashlib.sha256(f"{enrollment_id}:{step_id}".encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]
