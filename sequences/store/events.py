"""The events table: one stored event per id, whoever reported it (the API, the pixel, a click,
an ESP webhook, the relay's 5xx). What an event then does is ``sequences.intake.feedback``'s job."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

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
        new = await _insert_arrays(conn, rows, now)
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


# PostgreSQL: one array per column, unnested in batch order, so the driver sends eleven
# parameters instead of eleven per event; building and processing the per-row parameters of a
# multi-row INSERT was a large share of an event batch's CPU (benchmarks/events_throughput.py).
_ARRAYS_INSERT = text(
    "INSERT INTO events (event_key, contact_id, enrollment_id, message_pk, type, occurred_at,"
    " received_at, properties, is_bot, verified, source)"
    " SELECT k, c, e, m, t, o, CAST(:received AS timestamptz), CAST(p AS jsonb), b, v, s"
    " FROM unnest(CAST(:keys AS varchar[]), CAST(:contacts AS integer[]),"
    " CAST(:enrollments AS varchar[]), CAST(:messages AS varchar[]), CAST(:types AS varchar[]),"
    " CAST(:occurred AS timestamptz[]), CAST(:properties AS text[]), CAST(:bots AS boolean[]),"
    " CAST(:verified AS boolean[]), CAST(:sources AS varchar[]))"
    " WITH ORDINALITY AS u(k, c, e, m, t, o, p, b, v, s, n) ORDER BY n"
    " ON CONFLICT (event_key) DO NOTHING RETURNING event_key"
)


async def _insert_arrays(
    conn: AsyncConnection, rows: list[dict[str, Any]], now: datetime
) -> set[str]:
    def column(name: str) -> list[Any]:
        return [row[name] for row in rows]

    result = await conn.execute(
        _ARRAYS_INSERT,
        {
            "received": now,
            "keys": column("event_key"),
            "contacts": column("contact_id"),
            "enrollments": column("enrollment_id"),
            "messages": column("message_pk"),
            "types": column("type"),
            "occurred": column("occurred_at"),
            "properties": [json.dumps(p) for p in column("properties")],
            "bots": column("is_bot"),
            "verified": column("verified"),
            "sources": column("source"),
        },
    )
    return {key for (key,) in result}
