"""Who enrolls in which sequence, and when: the plans the walks follow.

Enrollments start over the last ``DAYS`` days. One contact per enrollment. The reviewed
sequence gets the requested number of drafts pending review (placed at times spread over the
last ``REVIEW_WINDOW``, each at one of its email steps, most at the first) plus a tenth of the
enrollments that went through it earlier; the rest go to the example sequences, 60/40. The
newest pending draft of each email step is left to the engine itself to draft (a template).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from benchmarks.console_people import Person, people
from benchmarks.console_world import Plan
from sequences.definitions.document import EmailStep, SequenceDefinition, WaitStep

DAYS = 60
REVIEW_WINDOW = timedelta(days=4)
CANCELLED_SHARE = 0.02


def plans(
    reviewed: SequenceDefinition,
    examples: tuple[SequenceDefinition, SequenceDefinition],
    now: datetime,
    counts: tuple[int, int],
    rng: random.Random,
) -> list[Plan]:
    """``counts``: (enrollments, drafts pending review). Sorted by start."""
    enrollments, drafts = counts
    if not 0 < drafts <= enrollments:
        raise ValueError(f"drafts must be between 1 and enrollments ({enrollments}): {drafts}")
    numbered = iter(enumerate(people(enrollments, rng), 1))
    held = [
        _held(reviewed, next(numbered), hold, rng) for hold in holds(reviewed, drafts, now, rng)
    ]
    others = [
        _free(defn, next(numbered), now, rng)
        for defn in mix(reviewed, examples, enrollments - drafts, rng)
    ]
    return sorted(held + others, key=lambda plan: plan.created_at)


def holds(
    defn: SequenceDefinition, drafts: int, now: datetime, rng: random.Random
) -> list[tuple[str, datetime, bool]]:
    """(step, when the draft was made, left to the engine) for each pending draft."""
    steps = [s.id for s in defn.steps if isinstance(s, EmailStep)]
    made = [(step, now - timedelta(seconds=60 + 7 * n), True) for n, step in enumerate(steps)]
    weights = [0.5**n for n in range(len(steps))]
    for _ in range(drafts - len(made)):
        step = rng.choices(steps, weights)[0]
        when = now - timedelta(seconds=rng.uniform(180, REVIEW_WINDOW.total_seconds()))
        made.append((step, when, False))
    return made[:drafts]


def mix(
    reviewed: SequenceDefinition,
    examples: tuple[SequenceDefinition, SequenceDefinition],
    count: int,
    rng: random.Random,
) -> list[SequenceDefinition]:
    """The reviewed sequence's earlier enrollments (a tenth); the examples share the rest."""
    earlier = count // 10
    first = round((count - earlier) * 0.6)
    chosen = [reviewed] * earlier + [examples[0]] * first
    chosen += [examples[1]] * (count - earlier - first)
    rng.shuffle(chosen)
    return chosen


def _held(
    defn: SequenceDefinition,
    numbered: tuple[int, Person],
    hold: tuple[str, datetime, bool],
    rng: random.Random,
) -> Plan:
    number, person = numbered
    step, when, template = hold
    return Plan(
        enrollment_id=enrollment_id(rng),
        contact_id=number,
        person=person,
        sequence=defn.key,
        created_at=when - time_to(defn, step),
        seed=rng.getrandbits(32),
        hold_step=step,
        hold_time=when,
        template=template,
    )


def _free(
    defn: SequenceDefinition, numbered: tuple[int, Person], now: datetime, rng: random.Random
) -> Plan:
    number, person = numbered
    cancel = rng.random() < CANCELLED_SHARE
    by_event = defn.entry is not None and defn.entry.events and rng.random() < 0.5
    return Plan(
        enrollment_id=enrollment_id(rng),
        contact_id=number,
        person=person,
        sequence=defn.key,
        created_at=now - timedelta(seconds=rng.uniform(600, DAYS * 86400)),
        seed=rng.getrandbits(32),
        cancel_after=timedelta(hours=rng.uniform(4, 300)) if cancel else None,
        source=f"event:{defn.entry.events[0]}" if by_event and defn.entry else "api",
    )


def enrollment_id(rng: random.Random) -> str:
    """``models.new_id``'s shape, from the seed: the same seed gives the same plans."""
    return f"enr_{rng.randbytes(10).hex()}"


def time_to(defn: SequenceDefinition, step_id: str) -> timedelta:
    """A first guess at how long an enrollment takes to reach ``step_id`` (the walk corrects
    it): the waits before it, and a couple of hours per email for its review."""
    total = timedelta()
    for step in defn.steps[: defn.index(step_id)]:
        if isinstance(step, WaitStep):
            total += step.wait.duration
        elif isinstance(step, EmailStep):
            total += timedelta(hours=2)
    return total
