"""What a contact did so far in one enrollment: the helpers branch conditions call."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.copy import EngagementSummary, PastStep
from sequences.deps import Deps
from sequences.signals import scores
from sequences.signals.scores import ContactScore
from sequences.store.db import among
from sequences.store.tables import EVENTS, LINKS, MESSAGES, MessageState


@dataclass
class Engagement:
    """Human engagement per step (bot clicks are already filtered out), and the contact's
    decayed score and topic affinities across all sequences."""

    by_step: dict[str, set[str]] = field(default_factory=dict)
    types: list[str] = field(default_factory=list)
    last_event: dict[str, Any] = field(default_factory=dict)
    # (type, properties) of the events about each message, for the agent's summary.
    by_message: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    standing: ContactScore = field(default_factory=ContactScore)

    def did(self, event_type: str, step: str | None = None) -> bool:
        if step is None:
            return event_type in self.types
        return event_type in self.by_step.get(step, set())

    @property
    def score(self) -> float:
        return round(self.standing.score, 3)

    @property
    def affinities(self) -> dict[str, float]:
        return {t: round(v, 3) for t, v in self.standing.affinities.items()}

    def helpers(self) -> dict[str, Any]:
        return {
            "opened": lambda step=None: self.did("opened", step),
            "clicked": lambda step=None: self.did("clicked", step),
            "replied": lambda step=None: self.did("replied", step),
            "converted": lambda: self.did("converted"),
            "score": self.score,
            "affinity": lambda topic: self.affinities.get(topic, 0.0),
            "affinities": self.affinities,
            "events": list(self.types),
        }

    def summary(self) -> dict[str, Any]:
        return {step: sorted(kinds) for step, kinds in self.by_step.items()}


async def load(
    conn: AsyncConnection, deps: Deps, enrollment_id: str, contact_id: int, since: datetime
) -> Engagement:
    return (await load_many(conn, deps, [(enrollment_id, contact_id, since)]))[enrollment_id]


async def load_many(
    conn: AsyncConnection, deps: Deps, enrollments: list[tuple[str, int, datetime]]
) -> dict[str, Engagement]:
    """Each enrollment's human events, plus its contact's events that name no enrollment (a
    conversion posted by a CRM) since it started, and each contact's standing: two queries for
    the whole batch."""
    found = {enrollment_id: Engagement() for enrollment_id, _, _ in enrollments}
    if not enrollments:
        return found
    standings = await scores.contact_scores(
        conn, [c for _, c, _ in enrollments], deps.clock.now(), scores.Decay.of(deps)
    )
    for enrollment_id, contact_id, _ in enrollments:
        found[enrollment_id].standing = standings[contact_id]
    by_contact: dict[int, list[tuple[str, datetime]]] = {}
    for enrollment_id, contact_id, since in enrollments:
        by_contact.setdefault(contact_id, []).append((enrollment_id, since))
    contact_level = and_(
        EVENTS.c.enrollment_id.is_(None), among(conn, EVENTS.c.contact_id, by_contact)
    )
    rows = await conn.execute(
        select(
            EVENTS.c.type,
            EVENTS.c.properties,
            EVENTS.c.enrollment_id,
            EVENTS.c.contact_id,
            EVENTS.c.received_at,
            EVENTS.c.message_pk,
            MESSAGES.c.step_id,
        )
        .outerjoin(MESSAGES, MESSAGES.c.id == EVENTS.c.message_pk)
        .where(or_(among(conn, EVENTS.c.enrollment_id, found), contact_level))
        .where(EVENTS.c.is_bot.is_(False))
        .order_by(EVENTS.c.occurred_at, EVENTS.c.id)
    )
    for row in rows:
        if row.enrollment_id is not None:
            _add(found[row.enrollment_id], row)
            continue
        for enrollment_id, since in by_contact[row.contact_id]:
            if row.received_at >= since:
                _add(found[enrollment_id], row)
    return found


def _add(engagement: Engagement, row: Any) -> None:
    engagement.types.append(row.type)
    if row.step_id is not None:
        engagement.by_step.setdefault(row.step_id, set()).add(row.type)
    engagement.last_event = {"type": row.type, "properties": row.properties or {}}
    if row.message_pk is not None:
        engagement.by_message.setdefault(row.message_pk, []).append(
            (row.type, row.properties or {})
        )


async def summaries(
    conn: AsyncConnection, engagements: dict[str, Engagement]
) -> dict[str, EngagementSummary]:
    """What the agent reads per enrollment: each email sent so far, what it offered and what
    the contact did with it. The events come from ``load_many``; two more queries for the
    batch read the emails and their links."""
    if not engagements:
        return {}
    sent = (
        await conn.execute(
            select(
                MESSAGES.c.id,
                MESSAGES.c.enrollment_id,
                MESSAGES.c.step_id,
                MESSAGES.c.subject,
                MESSAGES.c.sent_at,
            )
            .where(
                among(conn, MESSAGES.c.enrollment_id, engagements),
                MESSAGES.c.state.in_([MessageState.sent, MessageState.unknown]),
            )
            .order_by(MESSAGES.c.created_at)
        )
    ).all()
    ids = [m.id for m in sent]
    offered: dict[str, list[str]] = {}
    if ids:
        for link in await conn.execute(
            select(LINKS.c.message_pk, LINKS.c.url).where(among(conn, LINKS.c.message_pk, ids))
        ):
            offered.setdefault(link.message_pk, []).append(link.url)
    history: dict[str, list[PastStep]] = {e: [] for e in engagements}
    for message in sent:
        events = engagements[message.enrollment_id].by_message.get(message.id, [])
        clicks = [p.get("url") for t, p in events if t == "clicked" and p.get("url")]
        history[message.enrollment_id].append(
            PastStep(
                step_id=message.step_id,
                subject=message.subject,
                sent_at=message.sent_at.isoformat() if message.sent_at else "",
                opened=any(t == "opened" for t, _ in events),
                clicked=tuple(dict.fromkeys(str(u) for u in clicks)),
                offered=tuple(dict.fromkeys(offered.get(message.id, []))),
                replied=any(t == "replied" for t, _ in events),
            )
        )
    return {
        e: EngagementSummary(
            history=tuple(history[e]), events=tuple(found.types), score=found.score
        )
        for e, found in engagements.items()
    }
