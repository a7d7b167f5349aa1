"""Step stats: per sequence step and variant, the sends and the messages that drew a human
click, a reply or a conversion (``step_stats``), each message counted once per kind. These are
the Beta posteriors the bandit samples (agents.bandit); they are bumped in the transaction that
records the sends or stores the events (sequences.signals.scores), never rescanned.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.bandit import ArmStats, Goal
from sequences.store.db import among, dialect_insert
from sequences.store.tables import MESSAGES, STEP_STATS

if TYPE_CHECKING:
    from sequences.store.events import Incoming


@dataclass(frozen=True)
class Sent:
    """A sent message, as the scores and step stats see it."""

    pk: str
    contact_id: int
    enrollment_id: str
    step_id: str
    variant: str | None
    sequence_key: str
    version_id: int


# Event type -> (the message's first-time column, the step_stats counter it feeds).
HITS = {
    "clicked": ("clicked_at", "clicks"),
    "replied": ("replied_at", "replies"),
    "converted": ("converted_at", "conversions"),
}


async def count_hits(
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
