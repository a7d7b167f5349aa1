"""What a sequence document says about drafting ahead (sequences.review.ahead): which email a
wait leads to for certain, and how long before its due time that email is drafted."""

from __future__ import annotations

from datetime import timedelta

from sequences.definitions.document import MAX_STEPS, EmailStep, GotoStep, SequenceDefinition
from sequences.kit.durations import parse_lead


def lead(defn: SequenceDefinition, step: EmailStep, default: str) -> timedelta:
    """How far ahead of its due time ``step`` is drafted; ``default`` is the deployment's."""
    return parse_lead(step.email.draft_ahead or defn.draft_ahead or default)


def email_after_wait(defn: SequenceDefinition, wait_id: str) -> EmailStep | None:
    """The email a wait leads to whatever happens (through gotos only), or None when a branch,
    a choice, an exit or the end comes first: only then is it known ahead."""
    current = defn.next_step_id(wait_id)
    for _ in range(MAX_STEPS):
        if current is None:
            return None
        step = defn.step(current)
        if isinstance(step, EmailStep):
            return step
        if not isinstance(step, GotoStep):
            return None
        current = step.goto
    return None
