"""Scores: what feedback teaches, kept up to date event by event.

Per contact, a decayed engagement score and topic affinities (``contact_scores``). Per sequence
step and variant, sends and the messages that drew a human click, a reply or a conversion
(``step_stats``): the Beta posteriors the bandit samples. Both are updated incrementally in the
transaction that stores the events; no history is rescanned.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, case, desc, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.bandit import ArmStats, Goal
from sequences.definitions import registry
from sequences.deps import Deps
from sequences.kit.durations import parse_duration
from sequences.store.arrays import insert_arrays
from sequences.store.db import among, dialect_insert
from sequences.store.tables import (
    CONTACT_SCORES,
    ENROLLMENTS,
    MESSAGES,
    SEQUENCES,
    STEP_STATS,
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
# Event type -> (the message's first-time column, the step_stats counter it feeds).
HITS = {
    "clicked": ("clicked_at", "clicks"),
    "replied": ("replied_at", "replies"),
    "converted": ("converted_at", "conversions"),
}
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


@dataclass(frozen=True)
class Sent:
    """A sent message, as the scores see it."""

    pk: str
    contact_id: int
    enrollment_id: str
    step_id: str
    variant: str | None
    sequence_key: str
    version_id: int


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
    await _count_hits(conn, events, credited, sent, now)


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
    await conn.execute(
        update(CONTACT_SCORES)
        .where(CONTACT_SCORES.c.contact_id == bindparam("cid"))
        .values(
            score=bindparam("score"),
            affinities=bindparam("affinities"),
            events=bindparam("events"),
            as_of=bindparam("as_of"),
        ),
        [
            {"cid": i, "score": s.score, "affinities": s.affinities, "events": s.events}
            | {"as_of": s.as_of}
            for i, s in sorted(current.items())
        ],
    )


async def _count_hits(
    conn: AsyncConnection,
    events: list[Incoming],
    credited: dict[int, str],
    sent: dict[str, Sent],
    now: datetime,
) -> None:
    """A message counts once per kind: the first click, reply or conversion flips its column.

    Two statements whatever the kinds: the messages read (locked in id order on PostgreSQL,
    so batches never deadlock and the columns read stay true), then one UPDATE that sets the
    columns still empty."""
    wanted = {
        column: {credited[id(e)] for e in events if e.type == kind and id(e) in credited}
        for kind, (column, _) in HITS.items()
    }
    pks = sorted(set().union(*wanted.values()))
    if not pks:
        return
    columns = [MESSAGES.c[column] for column, _ in HITS.values()]
    query = (
        select(MESSAGES.c.id, *columns)
        .where(among(conn, MESSAGES.c.id, pks))
        .order_by(MESSAGES.c.id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    stored = {row.id: row for row in await conn.execute(query)}
    flips = {
        column: sorted(
            pk for pk in wanted[column] if pk in stored and stored[pk]._mapping[column] is None
        )
        for column, _ in HITS.values()
    }
    await _flip(conn, flips, now)
    bumps: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    for column, counter in HITS.values():
        for pk in flips[column]:
            if pk in sent:
                key = (sent[pk].sequence_key, sent[pk].step_id, sent[pk].variant or "")
                bumps[key][counter] = bumps[key].get(counter, 0) + 1
    await bump(conn, bumps)


async def _flip(conn: AsyncConnection, flips: dict[str, list[str]], now: datetime) -> None:
    """Set each column to ``now`` on its messages, in one UPDATE (CASE per column)."""
    pks = sorted({pk for ids in flips.values() for pk in ids})
    if not pks:
        return
    values = {
        # Typed as the column, so the value is bound as the column's UTC datetime.
        column: case(
            (among(conn, MESSAGES.c.id, ids), literal(now, MESSAGES.c[column].type)),
            else_=MESSAGES.c[column],
        )
        for column, ids in flips.items()
        if ids
    }
    await conn.execute(update(MESSAGES).where(among(conn, MESSAGES.c.id, pks)).values(values))


async def count_sends(conn: AsyncConnection, sends: list[tuple[str, str, str | None]]) -> None:
    """(sequence, step, variant) of each message just sent."""
    bumps: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    for sequence_key, step_id, variant in sends:
        key = (sequence_key, step_id, variant or "")
        bumps[key]["sends"] = bumps[key].get("sends", 0) + 1
    await bump(conn, bumps)


async def bump(conn: AsyncConnection, bumps: dict[tuple[str, str, str], dict[str, int]]) -> None:
    """Add to step_stats counters, creating rows as needed; keys in order against deadlocks."""
    if not bumps:
        return
    counters = ("sends", "clicks", "replies", "conversions")
    insert = dialect_insert(conn, STEP_STATS)
    statement = insert.on_conflict_do_update(
        index_elements=["sequence_key", "step_id", "variant"],
        set_={c: STEP_STATS.c[c] + insert.excluded[c] for c in counters},
    )
    rows = [
        {"sequence_key": s, "step_id": step, "variant": v} | {c: add.get(c, 0) for c in counters}
        for (s, step, v), add in sorted(bumps.items())
    ]
    await conn.execute(statement, rows)


async def arm_stats(conn: AsyncConnection, sequence_key: str) -> dict[tuple[str, str], ArmStats]:
    """(step, variant or '') -> counts for one sequence."""
    rows = await conn.execute(select(STEP_STATS).where(STEP_STATS.c.sequence_key == sequence_key))
    return {
        (r.step_id, r.variant): ArmStats(
            sends=r.sends, clicks=r.clicks, replies=r.replies, conversions=r.conversions
        )
        for r in rows
    }


def performance(stats: dict[tuple[str, str], ArmStats], goal: Goal) -> dict[str, Any]:
    """Per step, per variant ('-' for none): the counts and the posterior means of each rate
    and of the goal's value, as the bandit sees them."""
    view: dict[str, Any] = {}
    for (step_id, variant), s in sorted(stats.items()):
        rates = {
            f"{metric}_rate": round(a / (a + b), 4)
            for metric in ("clicks", "replies", "conversions")
            for a, b in [s.posterior(metric)]
        }
        view.setdefault(step_id, {})[variant or "-"] = {
            **s.model_dump(),
            **rates,
            "value": round(s.mean(goal), 4),
        }
    return view


def step_total(stats: dict[tuple[str, str], ArmStats], step_id: str) -> ArmStats:
    """A step's counts over all its variants."""
    parts = [s for (step, _), s in stats.items() if step == step_id]
    return ArmStats(
        sends=sum(p.sends for p in parts),
        clicks=sum(p.clicks for p in parts),
        replies=sum(p.replies for p in parts),
        conversions=sum(p.conversions for p in parts),
    )
