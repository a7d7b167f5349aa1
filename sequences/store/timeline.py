"""The enrollment's timeline: every step, send, event and decision, with its reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
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


async def record(conn: AsyncConnection, entries: Sequence[Mapping[str, Any]]) -> None:
    if entries:
        await conn.execute(insert(TIMELINE), list(entries))
