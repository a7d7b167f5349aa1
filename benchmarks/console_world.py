"""What the walks share and start from: the world (the engine's dependencies, the sequences,
the copy, the counts so far), each enrollment's plan, and the rows an enrollment and an event
start as."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from benchmarks.console_behaviour import Happening, Mail
from benchmarks.console_copy import Copywriter
from benchmarks.console_people import Person
from benchmarks.console_rows import Row, Tally
from sequences.definitions.registry import Pinned
from sequences.deps import Deps
from sequences.engine.enrollments import active_lock
from sequences.engine.flow import RunContext
from sequences.kit.durations import parse_duration
from sequences.signals import scores
from sequences.store.tables import EnrollmentStatus


@dataclass
class World:
    """What every walk shares: the engine's dependencies, the sequences, the copy, the counts."""

    deps: Deps
    now: datetime
    pinned: dict[str, Pinned]
    copywriter: Copywriter
    tally: Tally = field(default_factory=Tally)
    approved: set[tuple[str, str]] = field(default_factory=set)  # first_of_each_step, done
    run_ids: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**9)))

    @cached_property
    def decay(self) -> scores.Decay:
        return scores.Decay.of(self.deps)

    @cached_property
    def attribution(self) -> timedelta:
        return parse_duration(self.deps.settings.attribution_window)


@dataclass(frozen=True)
class Plan:
    """Who enrolls where and when. With ``hold_step`` the walk goes calmly to that email
    step's review, reached at ``hold_time``, and leaves its draft pending (a ``template`` leaves
    its outbox row due instead, for the engine itself to draft)."""

    enrollment_id: str
    contact_id: int
    person: Person
    sequence: str
    created_at: datetime
    seed: int
    hold_step: str | None = None
    hold_time: datetime | None = None
    template: bool = False
    cancel_after: timedelta | None = None
    source: str = "api"


@dataclass
class Sent:
    """A message the walk sent: its row (feedback sets its hit columns) and what it offered."""

    row: Row
    mail: Mail
    step_id: str
    variant: str | None


def context(pinned: Pinned, plan: Plan) -> RunContext:
    person = plan.person
    return RunContext(
        enrollment_id=plan.enrollment_id,
        status=EnrollmentStatus.active,
        sequence_key=pinned.definition.key,
        version_id=pinned.version_id,
        definition=pinned.definition,
        contact_id=plan.contact_id,
        email=person.email,
        email_key=person.email.lower(),
        timezone=person.timezone,
        attributes=person.attributes,
        started_at=plan.created_at,
    )


def enrollment_row(pinned: Pinned, plan: Plan) -> Row:
    by_api = plan.source == "api"
    body = f"{pinned.definition.key}:{plan.person.email}".encode()
    return {
        "id": plan.enrollment_id,
        "contact_id": plan.contact_id,
        "sequence_id": pinned.sequence_id,
        "version_id": pinned.version_id,
        "version": pinned.version,
        "status": EnrollmentStatus.active,
        "position": None,
        "active_lock": active_lock(pinned),
        "exit_reason": None,
        "idempotency_key": None,
        "request_hash": hashlib.sha256(body).hexdigest() if by_api else None,
        "created_at": plan.created_at,
        "updated_at": plan.created_at,
        "finished_at": None,
    }


def event_row(
    contact_id: int, key: str, enrollment_id: str | None, happening: Happening, received: datetime
) -> Row:
    return {
        "event_key": key,
        "contact_id": contact_id,
        "enrollment_id": enrollment_id,
        "message_pk": happening.message,
        "type": happening.type,
        "occurred_at": happening.at,
        "received_at": received,
        "properties": happening.properties,
        "is_bot": happening.is_bot,
        "verified": happening.type != "opened",
        "source": happening.source,
    }
