"""What the database holds after the feedback load, against what the load posted.

Every posted event with a new id must be stored once, none judged a bot; every contact named
must have a ``contact_scores`` row whose ``events`` add up to the events stored; each message
clicked (and each contact who replied or converted, whose only email gets the credit) must be
counted once in ``step_stats``; each contact who converted must have left the sequence
(``exit_on: [converted]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from benchmarks.feedback_load import Expected
from sequences.store.db import make_engine
from sequences.store.tables import (
    CONTACT_SCORES,
    ENROLLMENTS,
    EVENTS,
    MESSAGES,
    RUNS,
    STEP_STATS,
    TIMELINE,
)


@dataclass
class Counts:
    """The database side, read after the run."""

    events: int = 0
    bots: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    score_rows: int = 0
    score_events: int = 0
    stats: dict[str, int] = field(default_factory=dict)  # sends, clicks, replies, conversions
    first: dict[str, int] = field(default_factory=dict)  # messages with clicked_at etc. set
    enrollments: dict[str, int] = field(default_factory=dict)
    timeline_events: int = 0
    woken: dict[str, int] = field(default_factory=dict)


async def read_counts(database_url: str) -> Counts:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await _read(conn)
    finally:
        await engine.dispose()


async def _read(conn: Any) -> Counts:
    counts = Counts()
    counts.events, counts.bots = (
        await conn.execute(select(func.count(), func.count().filter(EVENTS.c.is_bot)))
    ).one()
    by_type = select(EVENTS.c.type, func.count()).group_by(EVENTS.c.type)
    counts.by_type = {t: n for t, n in await conn.execute(by_type)}
    counts.score_rows, score_events = (
        await conn.execute(select(func.count(), func.sum(CONTACT_SCORES.c.events)))
    ).one()
    counts.score_events = int(score_events or 0)
    kinds = ("sends", "clicks", "replies", "conversions")
    sums = (await conn.execute(select(*(func.sum(STEP_STATS.c[k]) for k in kinds)))).one()
    counts.stats = {k: int(v or 0) for k, v in zip(kinds, sums, strict=True)}
    columns = ("clicked_at", "replied_at", "converted_at")
    firsts = (await conn.execute(select(*(func.count(MESSAGES.c[c]) for c in columns)))).one()
    counts.first = dict(zip(columns, firsts, strict=True))
    status = select(ENROLLMENTS.c.status, func.count()).group_by(ENROLLMENTS.c.status)
    counts.enrollments = {s: n for s, n in await conn.execute(status)}
    counts.timeline_events = await conn.scalar(
        select(func.count()).where(TIMELINE.c.kind == "event")
    )
    woken = (
        select(RUNS.c.woken_by, func.count())
        .where(RUNS.c.woken_by.is_not(None))
        .group_by(RUNS.c.woken_by)
    )
    counts.woken = {w: n for w, n in await conn.execute(woken)}
    return counts


def compare(counts: Counts, expected: Expected) -> list[tuple[str, int, int]]:
    """(what, found in the database, expected from what was posted), one row per check."""
    return [
        ("events stored", counts.events, expected.events),
        ("events judged bots", counts.bots, 0),
        *(
            (f"  {kind} events", counts.by_type.get(kind, 0), n)
            for kind, n in sorted(expected.by_type.items())
        ),
        ("contact_scores rows", counts.score_rows, len(expected.contacts)),
        ("contact_scores events (sum)", counts.score_events, expected.events),
        ("step_stats clicks (sum)", counts.stats["clicks"], len(expected.clicked)),
        ("messages with clicked_at", counts.first["clicked_at"], len(expected.clicked)),
        ("step_stats replies (sum)", counts.stats["replies"], len(expected.replied)),
        ("step_stats conversions (sum)", counts.stats["conversions"], len(expected.converted)),
        ("enrollments exited", counts.enrollments.get("exited", 0), len(expected.converted)),
    ]
