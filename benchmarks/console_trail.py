"""One enrollment's life while it is walked: its clock, its state, the rows it leaves, and the
feedback that reaches it; and the ``World`` every walk shares (the engine's dependencies, the
sequences, the copy, the counts so far).

Feedback is handled as ``feedback.ingest`` handles it: every event is stored; a human one is
folded into the contact's score (``scores.ContactScore``, the engine's decay and weights) and
credits its message's first click, reply or conversion; while the enrollment is active it lands
on the timeline and acts: an unsubscribe or complaint suppresses the address, an ``exit_on``
type ends the enrollment, and a ``wait ... until`` type wakes the wait.
"""

from __future__ import annotations

import bisect
import random
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from agents.copy import EngagementSummary, PastStep
from benchmarks.console_copy import Copywriter
from benchmarks.console_people import Happening, Mail, Plan
from benchmarks.console_rows import (
    Row,
    Rows,
    Tally,
    contact_row,
    enrollment_row,
    event_row,
    score_row,
)
from sequences.definitions.document import WaitStep
from sequences.definitions.registry import Pinned
from sequences.deps import Deps
from sequences.engine.flow import RunContext
from sequences.engine.lifecycle import SUPPRESSING_EVENTS
from sequences.kit.durations import parse_duration
from sequences.signals import scores, stepstats
from sequences.signals.engagement import Engagement
from sequences.store import timeline
from sequences.store.events import Incoming
from sequences.store.tables import (
    CONTACT_SCORES,
    CONTACTS,
    ENROLLMENTS,
    EVENTS,
    RUNS,
    SUPPRESSIONS,
    TIMELINE,
    DraftStatus,
    EnrollmentStatus,
    RunState,
)

FAR = datetime.max.replace(tzinfo=UTC)
INSTANT_SOURCES = frozenset({"pixel", "click", "unsubscribe"})  # received as they happen


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


class Trail:
    """One enrollment walked through its sequence: the clock, the rows, the events to come."""

    def __init__(self, world: World, plan: Plan) -> None:
        self.world, self.plan = world, plan
        self.pinned = world.pinned[plan.sequence]
        self.defn = self.pinned.definition
        self.rng = random.Random(plan.seed)
        self.ctx = context(self.pinned, plan)
        self.t = plan.created_at
        self.horizon = FAR if plan.hold_step else world.now  # a hold is placed, not cut off
        self.rows = Rows()
        self.enrollment = enrollment_row(self.pinned, plan)
        self.open_run: Row | None = None
        self.waiting: WaitStep | None = None
        self.open_draft: Row | None = None
        self.pending: list[Happening] = []
        self.sent: dict[str, Sent] = {}
        self.human: list[tuple[Happening, datetime]] = []
        self.standing = scores.ContactScore()
        self.counted: list[tuple[str, str | None, str]] = []  # (step, variant, counter)
        self.held_at: datetime | None = None
        self.suppressed = False

    @property
    def active(self) -> bool:
        return bool(self.enrollment["status"] == EnrollmentStatus.active)

    @property
    def calm(self) -> bool:
        """A walk placed at a review must get there, and its draft must stay pending."""
        return self.plan.hold_step is not None

    def latency(self) -> timedelta:
        """Between a row falling due and a worker running it."""
        return timedelta(seconds=self.rng.uniform(0.05, 1.5))

    def entry(self, kind: str, step_id: str | None = None, **detail: Any) -> None:
        self.rows.add(
            TIMELINE, timeline.entry(self.plan.enrollment_id, self.t, kind, step_id, **detail)
        )

    def schedule(self, step_id: str, due: datetime) -> Row:
        run: Row = {
            "id": next(self.world.run_ids),
            "enrollment_id": self.plan.enrollment_id,
            "step_id": step_id,
            "due_at": due,
            "state": RunState.due,
            "attempts": 0,
            "claim_token": None,
            "claimed_until": None,
            "woken_by": None,
            "created_at": self.t,
        }
        self.rows.add(RUNS, run)
        self.open_run = run
        step = self.defn.step(step_id)
        self.waiting = step if isinstance(step, WaitStep) else None
        self.enrollment.update(position=step_id, updated_at=self.t)
        return run

    def close_run(self, run: Row, state: RunState = RunState.done, attempts: int = 1) -> None:
        run.update(state=state, attempts=attempts)
        if run is self.open_run:
            self.open_run = self.waiting = None

    def end(self, status: EnrollmentStatus, reason: str, step_id: str | None = None) -> None:
        """``lifecycle.end``: the final status, pending rows and drafts cancelled, noted."""
        self.enrollment.update(status=status, exit_reason=reason, finished_at=self.t)
        self.enrollment.update(updated_at=self.t, **({"position": step_id} if step_id else {}))
        if self.open_run is not None and self.open_run["state"] != RunState.done:
            self.close_run(self.open_run, RunState.cancelled, self.open_run["attempts"])
        if self.open_draft is not None and self.open_draft["status"] == DraftStatus.pending:
            self.open_draft["status"] = DraftStatus.cancelled
        kind = "completed" if status == EnrollmentStatus.completed else str(status)
        self.entry(kind, step_id, reason=reason)

    def suppress(self, reason: str, at: datetime, detail: str | None = None) -> bool:
        """``lifecycle.suppress``: the address first (once), then the enrollment if active."""
        if not self.suppressed:
            row = {"email_key": self.ctx.email_key, "reason": reason, "detail": detail}
            self.rows.add(SUPPRESSIONS, {**row, "created_at": at})
            self.suppressed = True
        if not self.active:
            return False
        self.end(EnrollmentStatus.exited, reason)
        return True

    def expect(self, happenings: Iterable[Happening]) -> None:
        for happening in happenings:
            bisect.insort(self.pending, happening, key=lambda h: h.at)

    def commit(self, rows: Rows) -> None:
        """Hand the walk's rows to the batch, the contact's and its score's with them, and count
        its sends and hits in the world's tally."""
        plan = self.plan
        rows.add(CONTACTS, contact_row(plan))
        rows.add(ENROLLMENTS, self.enrollment)
        rows.extend(self.rows)
        if self.standing.events:
            rows.add(CONTACT_SCORES, score_row(plan.contact_id, self.standing))
        for step, variant, counter in self.counted:
            self.world.tally.add(plan.sequence, step, variant, counter)

    # ------------------------------------------------------------------------- time passing

    def reach(self, when: datetime) -> bool:
        """Live until ``when``. False when the walk stops first: the enrollment ended, a wait
        woke up, or ``when`` lies past now (the enrollment stays where it is)."""
        if self._feed(min(when, self.horizon)) or when > self.horizon or not self.active:
            return False
        self.t = max(self.t, when)
        return True

    def drain(self) -> None:
        """After the walk: what recipients did up to now still arrives."""
        self.horizon = self.world.now
        while self._feed(self.horizon):
            pass

    def _feed(self, limit: datetime) -> bool:
        """Events up to ``limit``, in order; True when one ended the enrollment or woke it."""
        while self.pending and self.pending[0].at <= limit:
            if self._arrive(self.pending.pop(0)):
                return True
        return False

    def _arrive(self, happening: Happening) -> bool:
        if happening.type == "cancel":
            return self._cancel(happening.at)
        received = happening.at
        if happening.source not in INSTANT_SOURCES:
            received += timedelta(seconds=self.rng.uniform(1, 60))
        self._store(happening, received)
        if happening.is_bot:
            return False
        self.human.append((happening, received))
        self._score(happening)
        self._credit(happening, received)
        return self._act(happening, received)

    def _cancel(self, at: datetime) -> bool:
        if not self.active:
            return False
        self.t = max(self.t, at)
        self.end(EnrollmentStatus.cancelled, "cancelled by API")
        return True

    def _store(self, happening: Happening, received: datetime) -> None:
        named = happening.event_id
        key = f"{happening.source}:{named}" if named else f"auto:{secrets.token_hex(12)}"
        about = self.plan.enrollment_id if happening.message else None
        self.rows.add(EVENTS, event_row(self.plan.contact_id, key, about, happening, received))

    def _score(self, happening: Happening) -> None:
        incoming = Incoming(
            type=happening.type,
            contact_id=self.plan.contact_id,
            email_key=self.ctx.email_key,
            occurred_at=happening.at,
            properties=happening.properties,
        )
        points, topics = scores.weight(incoming), self._topics(happening)
        if points or topics:
            self.standing.add(happening.at, points, topics, self.world.decay)

    def _topics(self, happening: Happening) -> tuple[str, ...]:
        """A click is about its step's (and variant's) topics, else its link's first segment."""
        sent = self.sent.get(happening.message or "")
        if happening.type != "clicked" or sent is None:
            return ()
        declared = self.defn.topics(sent.step_id, sent.variant)
        return declared or scores.link_topic(str(happening.properties.get("url", "")))

    def _credit(self, happening: Happening, received: datetime) -> None:
        if happening.type not in stepstats.HITS:
            return
        sent = self.sent.get(happening.message or "") or self._latest(received)
        column, counter = stepstats.HITS[happening.type]
        if sent is not None and sent.row[column] is None:
            sent.row[column] = received
            self.counted.append((sent.step_id, sent.variant, counter))

    def _latest(self, received: datetime) -> Sent | None:
        """A reply or conversion naming no message: the latest email within the window."""
        since = received - self.world.attribution
        recent = [s for s in self.sent.values() if since <= s.mail.sent_at <= received]
        return max(recent, key=lambda s: s.mail.sent_at, default=None)

    def _act(self, happening: Happening, received: datetime) -> bool:
        """On the timeline while active; a suppressing type acts either way."""
        if self.active:
            self.t = max(self.t, received)
            kind, source, message = happening.type, happening.source, happening.message
            self.entry("event", type=kind, source=source, message=message)
        reason = SUPPRESSING_EVENTS.get(happening.type)
        if reason is not None:
            return self.suppress(reason, received)
        if not self.active:
            return False
        if happening.type in self.defn.exit_on:
            self.end(EnrollmentStatus.exited, f"exit_on: {happening.type}")
            return True
        return self._wake(happening.type, received)

    def _wake(self, event_type: str, received: datetime) -> bool:
        run, wait = self.open_run, self.waiting
        if run is None or wait is None or event_type not in wait.wait.until or run["woken_by"]:
            return False
        run.update(due_at=received, woken_by=event_type)
        return True

    # -------------------------------------------------------------- what the contact did so far

    def summary(self) -> EngagementSummary:
        """What the copy agent reads now: each email sent so far and what came of it."""
        history = tuple(self._past(s) for s in self.sent.values() if s.mail.sent_at <= self.t)
        types = tuple(h.type for h, received in self.human if received <= self.t)
        score = round(self.standing.at(self.t, self.world.decay).score, 3)
        return EngagementSummary(history=history, events=types, score=score)

    def _past(self, sent: Sent) -> PastStep:
        seen = [(h.type, h.properties) for h, r in self.human if h.message == sent.row["id"]]
        clicked = [str(p["url"]) for kind, p in seen if kind == "clicked" and p.get("url")]
        return PastStep(
            step_id=sent.step_id,
            subject=sent.row["subject"],
            sent_at=sent.mail.sent_at.isoformat(),
            opened=any(kind == "opened" for kind, _ in seen),
            clicked=tuple(dict.fromkeys(clicked)),
            offered=sent.mail.urls,
            replied=any(kind == "replied" for kind, _ in seen),
        )

    def engagement(self) -> Engagement:
        """What branch conditions read: the engine's helpers over this walk's events."""
        found = Engagement(standing=self.standing.at(self.t, self.world.decay))
        for happening, _ in self.human:
            found.types.append(happening.type)
            sent = self.sent.get(happening.message or "")
            if sent is not None:
                found.by_step.setdefault(sent.step_id, set()).add(happening.type)
            found.last_event = {"type": happening.type, "properties": happening.properties}
        return found

    def affinities(self) -> dict[str, float]:
        return self.standing.at(self.t, self.world.decay).affinities
