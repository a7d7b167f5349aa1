"""The rows a seeded data set is made of: kept per table, written with COPY as they come.

Rows are dicts keyed by column name, the shape the engine's own row builders return
(``compose.message_row``, ``timeline.entry``). A ``Writer`` takes batches of them and, in a
task of its own, COPYs each table of a batch (asyncpg's binary COPY, tables in foreign-key
order) on one transaction's connection, while the caller makes the next batch: PostgreSQL's
share of the work (checks, indexes, compressing the HTML) runs on the other core meanwhile.
Large values are compressed with lz4, not pglz (several times faster; read back the same).
JSON columns are encoded here (SQLAlchemy's asyncpg codecs take JSON as text). Contacts and
outbox rows carry ids chosen by the seeder (messages and drafts point at them), so their
sequences are moved past them at the end.

Also the rows a contact, its score, an enrollment and an event start as (the walks fill in the
rest), and the step counters the walks feed: the bandit samples them while the data set is
walked, and they become the ``step_stats`` rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Table, text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.bandit import ArmStats
from benchmarks.console_people import Happening, Plan
from sequences.definitions.registry import Pinned
from sequences.engine.enrollments import active_lock
from sequences.signals.scores import ContactScore
from sequences.store.tables import (
    CONTACT_SCORES,
    CONTACTS,
    DRAFTS,
    ENROLLMENTS,
    EVENTS,
    LINKS,
    MESSAGES,
    MODEL_CALLS,
    RUNS,
    STEP_STATS,
    SUPPRESSIONS,
    TIMELINE,
    EnrollmentStatus,
)

Row = dict[str, Any]
# Parents before children: each COPY is checked against the rows already there.
ORDER = (
    CONTACTS,
    ENROLLMENTS,
    RUNS,
    MESSAGES,
    LINKS,
    EVENTS,
    TIMELINE,
    SUPPRESSIONS,
    DRAFTS,
    MODEL_CALLS,
    STEP_STATS,
    CONTACT_SCORES,
)
CHOSEN_IDS = (CONTACTS, RUNS)
COUNTERS = ("sends", "clicks", "replies", "conversions")


@dataclass
class Rows:
    """Rows per table name, in the order they were added (the timeline's order is its ids')."""

    tables: defaultdict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))

    def add(self, table: Table, *rows: Row) -> None:
        self.tables[table.name].extend(rows)

    def of(self, table: Table) -> list[Row]:
        return self.tables.get(table.name, [])

    def extend(self, other: Rows) -> None:
        for name, rows in other.tables.items():
            self.tables[name].extend(rows)


class Writer:
    """COPYs batches of rows in the background, in the transaction of ``conn``, until the
    ``async with`` block ends (and waits for the last); stops at once if the block fails."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._batches: asyncio.Queue[Rows | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Writer:
        self._task = asyncio.create_task(self._write(self._conn))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        assert self._task is not None
        if kind is None:
            self._batches.put_nowait(None)
            await self._task
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def put(self, rows: Rows) -> None:
        if self._task is not None and self._task.done():
            self._task.result()  # it failed: say why now, not after the whole walk
        self._batches.put_nowait(rows)

    async def _write(self, conn: AsyncConnection) -> None:
        await conn.execute(text("SET LOCAL default_toast_compression = lz4"))
        while (rows := await self._batches.get()) is not None:
            await copy_rows(conn, rows)
        await restart_ids(conn)


async def copy_rows(conn: AsyncConnection, rows: Rows) -> None:
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    for table in ORDER:
        found = rows.of(table)
        if found:
            columns = list(found[0])
            await driver.copy_records_to_table(
                table.name, records=_records(table, columns, found), columns=columns
            )


async def restart_ids(conn: AsyncConnection) -> None:
    for table in CHOSEN_IDS:
        await conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false)"
            )
        )


def _records(table: Table, columns: list[str], rows: Iterable[Row]) -> list[tuple[Any, ...]]:
    encoded = {c.name for c in table.columns if isinstance(c.type, JSON)}
    return [
        tuple(
            json.dumps(row[c]) if c in encoded and row[c] is not None else row[c] for c in columns
        )
        for row in rows
    ]


@dataclass
class Tally:
    """Per (sequence, step, variant or ''): sends and messages with a click, reply, conversion."""

    counts: defaultdict[tuple[str, str, str], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    )

    def add(self, sequence: str, step: str, variant: str | None, counter: str) -> None:
        self.counts[(sequence, step, variant or "")][counter] += 1

    def arms(self, sequence: str) -> dict[tuple[str, str], ArmStats]:
        """The counts as ``stepstats.arm_stats`` reads them from the table."""
        return {
            (step, variant): ArmStats(**counts)
            for (key, step, variant), counts in self.counts.items()
            if key == sequence
        }

    def rows(self) -> list[Row]:
        return [
            {"sequence_key": s, "step_id": step, "variant": v, **counts}
            for (s, step, v), counts in sorted(self.counts.items())
        ]


# -------------------------------------------------------------------- rows to start from


def enrollment_row(pinned: Pinned, plan: Plan) -> Row:
    by_api = plan.source == "api"
    body = f"{pinned.definition.key}:{plan.person.email}".encode()
    return {
        "id": plan.enrollment_id,
        "contact_id": plan.contact_id,
        "sequence_id": pinned.sequence_id,
        "version_id": pinned.version_id,
        "version": pinned.version,
        "status": EnrollmentStatus.active,
        "position": None,
        "active_lock": active_lock(pinned),
        "exit_reason": None,
        "idempotency_key": None,
        "request_hash": hashlib.sha256(body).hexdigest() if by_api else None,
        "created_at": plan.created_at,
        "updated_at": plan.created_at,
        "finished_at": None,
    }


def event_row(
    contact_id: int, key: str, enrollment_id: str | None, happening: Happening, received: datetime
) -> Row:
    return {
        "event_key": key,
        "contact_id": contact_id,
        "enrollment_id": enrollment_id,
        "message_pk": happening.message,
        "type": happening.type,
        "occurred_at": happening.at,
        "received_at": received,
        "properties": happening.properties,
        "is_bot": happening.is_bot,
        "verified": happening.type != "opened",
        "source": happening.source,
    }


def contact_row(plan: Plan) -> Row:
    person = plan.person
    return {
        "id": plan.contact_id,
        "email": person.email,
        "email_key": person.email.lower(),
        "timezone": person.timezone,
        "attributes": person.attributes,
        "created_at": plan.created_at,
        "updated_at": plan.created_at,
    }


def score_row(contact_id: int, standing: ContactScore) -> Row:
    return {
        "contact_id": contact_id,
        "score": standing.score,
        "affinities": standing.affinities,
        "events": standing.events,
        "as_of": standing.as_of,
    }
