"""Scores: what feedback teaches, kept up to date event by event.

Per contact, a decayed engagement score and topic affinities (``contact_scores``); per sequence
step and variant, the counts the bandit samples (``step_stats``, kept by
sequences.signals.stepstats). Both are updated incrementally in the transaction that stores the
events; no history is rescanned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, desc, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.definitions import registry
from sequences.deps import Deps
from sequences.kit.durations import parse_duration
from sequences.signals import stepstats
from sequences.signals.stepstats import Sent
from sequences.store.arrays import insert_arrays
from sequences.store.db import among, dialect_insert
from sequences.store.tables import (
    CONTACT_SCORES,
    ENROLLMENTS,
    MESSAGES,
    SEQUENCES,
    MessageState,
)

if TYPE_CHECKING:
    from sequences.store.events import Incoming

# What one event adds to a contact's score. Opens are fetched by privacy proxies, so they barely
# count; bot events never reach here. Bounces and complaints count against the contact.
EVENT_WEIGHTS = {
    "clicked": 3.0,
    "replied": 5.0,
    "converted": 8.0,
    "opened": 0.25,
    "complained": -10.0,
    "unsubscribed": -6.0,
}
SOFT_BOUNCE, HARD_BOUNCE = -1.0, -5.0
MAX_TOPICS = 20  # a contact's strongest topics kept; the faintest are dropped first
FAINT = 0.01


def weight(event: Incoming) -> float:
    if event.type == "bounced":
        hard = event.properties.get("bounce_type", "hard") == "hard"
        return HARD_BOUNCE if hard else SOFT_BOUNCE
    return EVENT_WEIGHTS.get(event.type, 0.0)


@dataclass(frozen=True)
class Decay:
    """Exponential decay with a half-life in sequence time (the accelerated clock shortens it)."""

    half_life: timedelta
    speed: float = 1.0

    @classmethod
    def of(cls, deps: Deps) -> Decay:
        return cls(parse_duration(deps.settings.score_half_life), deps.seqtime.speed)

    def factor(self, since: datetime, until: datetime) -> float:
        elapsed = max((until - since).total_seconds(), 0.0) * self.speed
        return float(0.5 ** (elapsed / self.half_life.total_seconds()))


@dataclass
class ContactScore:
    score: float = 0.0
    affinities: dict[str, float] = field(default_factory=dict)
    events: int = 0
    as_of: datetime | None = None

    def at(self, when: datetime, decay: Decay) -> ContactScore:
        """The same score seen at ``when``."""
        if self.as_of is None or when <= self.as_of:
            return self
        f = decay.factor(self.as_of, when)
        faded = {t: v * f for t, v in self.affinities.items()}
        return ContactScore(self.score * f, faded, self.events, when)

    def add(self, when: datetime, points: float, topics: Iterable[str], decay: Decay) -> None:
        """Fold one event in; a late event counts as decayed as it would have been by now."""
        latest = max(when, self.as_of) if self.as_of else when
        moved = self.at(latest, decay)
        late = decay.factor(when, latest)
        self.score = moved.score + points * late
        self.affinities = dict(moved.affinities)
        for topic in topics:
            self.affinities[topic] = self.affinities.get(topic, 0.0) + late
        self.affinities = _strongest(self.affinities)
        self.events += 1
        self.as_of = latest

    def view(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 3),
            "affinities": {t: round(v, 3) for t, v in self.affinities.items()},
            "events": self.events,
        }


def _strongest(affinities: dict[str, float]) -> dict[str, float]:
    ranked = sorted(affinities.items(), key=lambda kv: -kv[1])[:MAX_TOPICS]
    return {t: v for t, v in ranked if v >= FAINT}


async def contact_scores(
    conn: AsyncConnection, contact_ids: Iterable[int], now: datetime, decay: Decay
) -> dict[int, ContactScore]:
    """Each contact's score and affinities decayed to ``now``; absent contacts score 0."""
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    rows = await conn.execute(
        select(CONTACT_SCORES).where(among(conn, CONTACT_SCORES.c.contact_id, ids))
    )
    found = {r.contact_id: _from_row(r).at(now, decay) for r in rows}
    return {i: found.get(i, ContactScore()) for i in ids}


def _from_row(row: Any) -> ContactScore:
    return ContactScore(row.score, dict(row.affinities or {}), row.events, row.as_of)


async def update_for(
    conn: AsyncConnection, deps: Deps, events: list[Incoming], now: datetime
) -> None:
    """Fold a batch of stored human events into contact scores and step stats."""
    events = [e for e in events if not e.is_bot]
    if not events:
        return
    credited = await _credited(conn, deps, events, now)
    sent = await _sent(conn, {pk for pk in credited.values()})
    topics = {id(e): await _topics(conn, e, sent.get(credited.get(id(e), ""))) for e in events}
    await _update_contacts(conn, Decay.of(deps), events, topics, now)
    await stepstats.count_hits(conn, events, credited, sent, now)


async def _credited(
    conn: AsyncConnection, deps: Deps, events: list[Incoming], now: datetime
) -> dict[int, str]:
    """The message each event is about: its own, or for a reply or conversion that names none,
    the contact's latest email within the attribution window (last touch)."""
    credited = {id(e): e.message_pk for e in events if e.message_pk}
    loose = [e for e in events if not e.message_pk and e.type in ("replied", "converted")]
    if not loose:
        return credited
    since = now - deps.seqtime.real_duration(parse_duration(deps.settings.attribution_window))
    rows = await conn.execute(
        select(MESSAGES.c.id, MESSAGES.c.contact_id, MESSAGES.c.enrollment_id)
        .where(
            among(conn, MESSAGES.c.contact_id, {e.contact_id for e in loose}),
            MESSAGES.c.state == MessageState.sent,
            MESSAGES.c.sent_at >= since,
        )
        .order_by(desc(MESSAGES.c.sent_at))
    )
    latest: dict[tuple[int, str | None], str] = {}
    for row in rows:
        latest.setdefault((row.contact_id, row.enrollment_id), row.id)
        latest.setdefault((row.contact_id, None), row.id)
    for event in loose:
        pk = latest.get((event.contact_id, event.enrollment_id))
        if pk is not None:
            credited[id(event)] = pk
    return credited


async def _sent(conn: AsyncConnection, pks: set[str]) -> dict[str, Sent]:
    if not pks:
        return {}
    rows = await conn.execute(
        select(
            MESSAGES.c.id,
            MESSAGES.c.contact_id,
            MESSAGES.c.enrollment_id,
            MESSAGES.c.step_id,
            MESSAGES.c.variant,
            ENROLLMENTS.c.version_id,
            SEQUENCES.c.key,
        )
        .join(ENROLLMENTS, ENROLLMENTS.c.id == MESSAGES.c.enrollment_id)
        .join(SEQUENCES, SEQUENCES.c.id == ENROLLMENTS.c.sequence_id)
        .where(among(conn, MESSAGES.c.id, sorted(pks)))
    )
    return {
        r.id: Sent(r.id, r.contact_id, r.enrollment_id, r.step_id, r.variant, r.key, r.version_id)
        for r in rows
    }


async def _topics(conn: AsyncConnection, event: Incoming, sent: Sent | None) -> tuple[str, ...]:
    """What a click was about: the step's (and variant's) declared topics, or else the first
    path segment of the link (``/pricing/plans`` -> ``pricing``)."""
    if event.type != "clicked":
        return ()
    if sent is not None:
        defn = await registry.load_version(conn, sent.version_id)
        if sent.step_id in {s.id for s in defn.steps}:
            declared = defn.topics(sent.step_id, sent.variant)
            if declared:
                return declared
    return link_topic(str(event.properties.get("url") or ""))


def link_topic(url: str) -> tuple[str, ...]:
    segment = next((p for p in urlsplit(url).path.split("/") if p), "")
    slug = "".join(c if c.isalnum() else "-" for c in segment.lower()).strip("-")[:63]
    return (slug,) if slug else ()


async def _update_contacts(
    conn: AsyncConnection,
    decay: Decay,
    events: list[Incoming],
    topics: dict[int, tuple[str, ...]],
    now: datetime,
) -> None:
    """Read-modify-write under row locks, taken in contact order so batches never deadlock."""
    counted = [e for e in events if weight(e) or topics[id(e)]]
    ids = sorted({e.contact_id for e in counted})
    if not ids:
        return
    fresh = [{"contact_id": i, "score": 0.0, "affinities": {}, "as_of": now} for i in ids]
    if len(fresh) > 1 and conn.dialect.name == "postgresql":
        conflict = "ON CONFLICT (contact_id) DO NOTHING"
        await insert_arrays(conn, CONTACT_SCORES, fresh, conflict=conflict)
    else:
        await conn.execute(
            dialect_insert(conn, CONTACT_SCORES).on_conflict_do_nothing(
                index_elements=["contact_id"]
            ),
            fresh,
        )
    query = select(CONTACT_SCORES).where(among(conn, CONTACT_SCORES.c.contact_id, ids))
    query = query.order_by(CONTACT_SCORES.c.contact_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    current = {r.contact_id: _from_row(r) for r in await conn.execute(query)}
    for event in sorted(counted, key=lambda e: e.occurred_at):
        when = min(event.occurred_at, now)
        current[event.contact_id].add(when, weight(event), topics[id(event)], decay)
    rows = [
        {"cid": i, "score": s.score, "affinities": s.affinities, "events": s.events}
        | {"as_of": s.as_of}
        for i, s in sorted(current.items())
    ]
    if len(rows) > 1 and conn.dialect.name == "postgresql":
        # One statement for the batch (the rows exist and are locked, so each "conflicts"):
        # an UPDATE per row is as many executions for PostgreSQL to plan and run.
        await insert_arrays(
            conn,
            CONTACT_SCORES,
            [{"contact_id": r.pop("cid")} | r for r in rows],
            conflict=_WRITE_BACK,
        )
        return
    await conn.execute(_UPDATE_SCORE, rows)


_UPDATE_SCORE = (
    update(CONTACT_SCORES)
    .where(CONTACT_SCORES.c.contact_id == bindparam("cid"))
    .values(
        score=bindparam("score"),
        affinities=bindparam("affinities"),
        events=bindparam("events"),
        as_of=bindparam("as_of"),
    )
)
_WRITE_BACK = (
    "ON CONFLICT (contact_id) DO UPDATE SET score = EXCLUDED.score, affinities = "
    "EXCLUDED.affinities, events = EXCLUDED.events, as_of = EXCLUDED.as_of"
)
