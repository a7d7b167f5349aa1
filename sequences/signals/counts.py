"""One definition of each count people read: the console's pages, ``GET /v1/sequences/{key}``
and the bandit's split all take their figures from here, so the same emails are never counted
three ways.

Emails (per sequence, step and variant, over every version):

- **sent**: accepted by our relay (``sent_at`` is set). This is what a person could open and
  exactly what the bandit counts as a send: its counter (``step_stats``) moves in the same
  transaction, so the figures are read from there.
- **bounced**: refused for good, either by the receiving server while we sent (the message's
  state is ``bounced``; it was never sent) or reported afterwards by the ESP: each message
  with a hard bounce event, once.
- **delivered**: sent and not reported bounced afterwards.
- **clicked / replied / converted**: messages with a human click, a reply, a conversion
  (each message once; bot clicks never count).
- **unsubscribed**: unsubscribes and complaints that came through the message.

Enrollments (per sequence):

- **completed**: ran to the planned end, by falling off the last step or reaching an ``exit``
  step (the engine stores the latter as ``exited`` at that step; it is still a completion).
- **exited**: left early: an ``exit_on`` event, an unsubscribe, a bounce or complaint, a step
  that kept failing.
- **cancelled**: stopped through the API. **active**: still running.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.definitions import registry
from sequences.definitions.document import ExitStep
from sequences.store.tables import (
    ENROLLMENTS,
    EVENTS,
    MESSAGES,
    SEQUENCES,
    STEP_STATS,
    EnrollmentStatus,
)

EMAIL_COUNTS = ("sent", "delivered", "bounced", "clicked", "replied", "converted", "unsubscribed")
ENROLLMENT_COUNTS = ("active", "completed", "exited", "cancelled")


@dataclass
class Emails:
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    clicked: int = 0
    replied: int = 0
    converted: int = 0
    unsubscribed: int = 0
    attempted: int = 0  # sent, plus those the receiving server refused while we sent

    def share(self, name: str) -> float:
        """A count as a share of what it can be out of: bounces of the attempts, the rest of
        the emails sent."""
        whole = self.attempted if name == "bounced" else self.sent
        return getattr(self, name) / whole if whole else 0.0

    def add(self, other: Emails) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def view(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in EMAIL_COUNTS}


@dataclass
class StepEmails:
    step: str
    total: Emails = field(default_factory=Emails)
    variants: dict[str, Emails] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        shown: dict[str, Any] = self.total.view()
        if self.variants:
            shown["variants"] = {v: counts.view() for v, counts in self.variants.items()}
        return shown


@dataclass
class Enrollments:
    active: int = 0
    completed: int = 0
    exited: int = 0
    cancelled: int = 0

    def view(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in ENROLLMENT_COUNTS}


async def emails(
    conn: AsyncConnection, sequence_id: int | None = None
) -> dict[int, dict[str, StepEmails]]:
    """Sequence id -> step -> its counts, total and per variant (of one sequence, or all)."""
    keys = select(SEQUENCES.c.id, SEQUENCES.c.key)
    if sequence_id is not None:
        keys = keys.where(SEQUENCES.c.id == sequence_id)
    ids = {row.key: row.id for row in await conn.execute(keys)}
    found: dict[int, dict[str, StepEmails]] = {}
    # Sends and first hits are counted by the engine as it marks each message (same
    # transaction): reading its counters is reading the messages, without scanning them.
    stats = await conn.execute(select(STEP_STATS).where(STEP_STATS.c.sequence_key.in_(ids)))
    for row in stats:
        counts = Emails(
            sent=row.sends,
            delivered=row.sends,
            clicked=row.clicks,
            replied=row.replies,
            converted=row.conversions,
            attempted=row.sends,
        )
        _place(found, ids[row.sequence_key], row.step_id, row.variant or None, counts)
    for row in await _event_rows(conn, sequence_id):
        refused, later = int(row.refused or 0), int(row.bounced_later or 0)
        counts = Emails(
            delivered=-later,  # counted as sent and delivered above
            bounced=refused + later,
            unsubscribed=int(row.unsubscribed or 0),
            attempted=refused,
        )
        _place(found, row.sequence_id, row.step_id, row.variant, counts)
    for steps in found.values():
        for step in steps.values():
            step.variants = dict(sorted(step.variants.items()))
    return found


def sequence_total(steps: dict[str, StepEmails]) -> Emails:
    total = Emails()
    for step in steps.values():
        total.add(step.total)
    return total


def _place(
    found: dict[int, dict[str, StepEmails]],
    sequence_id: int,
    step: str,
    variant: str | None,
    counts: Emails,
) -> None:
    target = found.setdefault(sequence_id, {}).setdefault(step, StepEmails(step))
    target.total.add(counts)
    if variant:
        target.variants.setdefault(variant, Emails()).add(counts)


async def _event_rows(conn: AsyncConnection, sequence_id: int | None) -> list[Any]:
    """Per step and variant: unsubscribes and complaints that came through a message, and the
    messages with a hard bounce (each once): refused while we sent, or reported afterwards.
    Our relay's refusals are recorded as bounce events too, so no message is scanned."""
    hard = (EVENTS.c.type == "bounced") & (
        func.coalesce(EVENTS.c.properties["bounce_type"].as_string(), "hard") != "soft"
    )
    accepted = MESSAGES.c.sent_at.is_not(None)
    query = (
        select(
            ENROLLMENTS.c.sequence_id,
            MESSAGES.c.step_id,
            MESSAGES.c.variant,
            func.sum(case((EVENTS.c.type != "bounced", 1), else_=0)).label("unsubscribed"),
            func.count(distinct(case((hard & ~accepted, MESSAGES.c.id)))).label("refused"),
            func.count(distinct(case((hard & accepted, MESSAGES.c.id)))).label("bounced_later"),
        )
        .select_from(EVENTS)
        .join(MESSAGES, MESSAGES.c.id == EVENTS.c.message_pk)
        .join(ENROLLMENTS, ENROLLMENTS.c.id == MESSAGES.c.enrollment_id)
        .where(EVENTS.c.type.in_(["unsubscribed", "complained", "bounced"]))
        .group_by(ENROLLMENTS.c.sequence_id, MESSAGES.c.step_id, MESSAGES.c.variant)
    )
    if sequence_id is not None:
        query = query.where(ENROLLMENTS.c.sequence_id == sequence_id)
    return list(await conn.execute(query))


async def enrollments(
    conn: AsyncConnection, sequence_id: int | None = None
) -> dict[int, Enrollments]:
    """Sequence id -> its enrollments by outcome (of one sequence, or all)."""
    query = select(
        ENROLLMENTS.c.sequence_id,
        ENROLLMENTS.c.version_id,
        ENROLLMENTS.c.status,
        ENROLLMENTS.c.position,
        func.count().label("n"),
    ).group_by(
        ENROLLMENTS.c.sequence_id,
        ENROLLMENTS.c.version_id,
        ENROLLMENTS.c.status,
        ENROLLMENTS.c.position,
    )
    if sequence_id is not None:
        query = query.where(ENROLLMENTS.c.sequence_id == sequence_id)
    found: dict[int, Enrollments] = {}
    for row in await conn.execute(query):
        outcome = await outcome_of(conn, row.status, row.version_id, row.position)
        counts = found.setdefault(row.sequence_id, Enrollments())
        setattr(counts, outcome, getattr(counts, outcome) + row.n)
    return found


async def outcome_of(
    conn: AsyncConnection, status: str, version_id: int, position: str | None
) -> str:
    """An enrollment's outcome as counted above: ``exited`` at an exit step is ``completed``."""
    if status == EnrollmentStatus.exited and position:
        defn = await registry.load_version(conn, version_id)
        if any(isinstance(s, ExitStep) and s.id == position for s in defn.steps):
            return EnrollmentStatus.completed
    return str(status)
