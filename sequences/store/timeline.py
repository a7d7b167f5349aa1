"""The enrollment's timeline: every step, send, event and decision, with its reason."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.store.tables import TIMELINE


def entry(
    enrollment_id: str,
    at: datetime,
    kind: str,
    step_id: str | None = None,
    **detail: Any,
) -> dict[str, Any]:
    return {
        "enrollment_id": enrollment_id,
        "at": at,
        "kind": kind,
        "step_id": step_id,
        "detail": detail,
    }


# PostgreSQL: one array per column, unnested in the entries' order (so ids follow it), as the
# events insert does (sequences.store.events): the driver sends five parameters instead of five
# per entry, and building those per-row parameters was a large share of a batch's CPU.
_ARRAYS_INSERT = text(
    "INSERT INTO timeline (enrollment_id, at, kind, step_id, detail)"
    " SELECT e, a, k, s, CAST(d AS jsonb)"
    " FROM unnest(CAST(:enrollments AS varchar[]), CAST(:ats AS timestamptz[]),"
    " CAST(:kinds AS varchar[]), CAST(:steps AS varchar[]), CAST(:details AS text[]))"
    " WITH ORDINALITY AS u(e, a, k, s, d, n) ORDER BY n"
)


async def record(conn: AsyncConnection, entries: Sequence[Mapping[str, Any]]) -> None:
    if len(entries) > 1 and conn.dialect.name == "postgresql":
        await conn.execute(
            _ARRAYS_INSERT,
            {
                "enrollments": [e["enrollment_id"] for e in entries],
                "ats": [e["at"] for e in entries],
                "kinds": [e["kind"] for e in entries],
                "steps": [e.get("step_id") for e in entries],
                "details": [json.dumps(e.get("detail") or {}) for e in entries],
            },
        )
    elif entries:
        await conn.execute(insert(TIMELINE), list(entries))
