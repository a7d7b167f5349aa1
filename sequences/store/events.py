"""The events table: one stored event per id, whoever reported it (the API, the pixel, a click,
an ESP webhook, the relay's 5xx). What an event then does is ``sequences.intake.feedback``'s job."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.store.arrays import insert_arrays
from sequences.store.db import dialect_insert
from sequences.store.tables import EVENTS


@dataclass(frozen=True)
class Incoming:
    """One event, its contact and message already resolved."""

    type: str
    contact_id: int
    email_key: str
    occurred_at: datetime
    event_id: str | None = None
    message_pk: str | None = None
    enrollment_id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    source: str = "api"
    is_bot: bool = False
    verified: bool = True


def _key(event: Incoming) -> str:
    if event.event_id:
        return f"{event.source}:{event.event_id}"
    return f"auto:{secrets.token_hex(12)}"


async def store_events(
    conn: AsyncConnection, events: list[Incoming], now: datetime
) -> list[Incoming]:
    """Insert the batch in one statement; returns the events that were new, in batch order."""
    if not events:
        return []
    keyed = [(_key(e), e) for e in events]
    rows = [
        {
            "event_key": key,
            "contact_id": e.contact_id,
            "enrollment_id": e.enrollment_id,
            "message_pk": e.message_pk,
            "type": e.type,
            "occurred_at": e.occurred_at,
            "received_at": now,
            "properties": e.properties,
            "is_bot": e.is_bot,
            "verified": e.verified,
            "source": e.source,
        }
        for key, e in keyed
    ]
    # Batch order is kept: it orders events that share a time, and a retried batch repeats it.
    if conn.dialect.name == "postgresql":
        new = await _insert_arrays(conn, rows)
    else:
        # One cached statement over the rows (SQLAlchemy sends them as multi-row INSERTs).
        inserted = await conn.execute(
            dialect_insert(conn, EVENTS)
            .on_conflict_do_nothing(index_elements=["event_key"])
            .returning(EVENTS.c.event_key, sort_by_parameter_order=True),
            rows,
        )
        new = {key for (key,) in inserted}
    kept: list[Incoming] = []
    for key, event in keyed:
        if key in new:
            new.discard(key)  # the same id twice in one batch counts once
            kept.append(event)
    return kept


async def _insert_arrays(conn: AsyncConnection, rows: list[dict[str, Any]]) -> set[str]:
    """PostgreSQL: one array per column, unnested in batch order (see store.arrays): building
    and processing per-row parameters was a large share of an event batch's CPU
    (benchmarks/events_throughput.py)."""
    inserted = await insert_arrays(
        conn,
        EVENTS,
        rows,
        conflict="ON CONFLICT (event_key) DO NOTHING",
        returning=("event_key",),
    )
    return {key for (key,) in inserted}
