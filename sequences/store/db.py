"""Database engines, the column types both SQLite and PostgreSQL agree on, the one lock order
and the retry of transactions that lost a deadlock."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import JSON, ColumnElement, DateTime, Table, any_, bindparam, event, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)
READ_ONLY_OPTION = "dripline_read_only"
JsonType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite drops the zone, so it is put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_text(value: Any) -> str:
    """A JSON/JSONB parameter as text. orjson encodes in C what the stdlib's encoder does in
    Python: an event batch writes several hundred JSON values (event properties, timeline
    details, score affinities): 463 encodings, ~4% of the batch's server CPU under cProfile.
    Non-string keys become strings, as with the stdlib's encoder."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        # orjson refuses integers past 64 bits and nesting past 254 levels; rows stored before
        # the input limits may hold either, and the stdlib's encoder writes both.
        return json.dumps(value)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so API and worker can share the file."""
    if is_sqlite(url):
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            json_serializer=json_text,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        return engine
    # No pre-ping: it costs a round trip on every checkout (a third of a single enrollment's
    # statements went to it). A connection PostgreSQL dropped fails its first statement instead;
    # SQLAlchemy then invalidates it and every older pooled connection, and ``transaction``
    # runs the work again on a fresh one when nothing can have been committed.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=RECYCLE_SECONDS,
        json_serializer=json_text,
    )


# Connections older than this are replaced at checkout (before a firewall or a proxy drops
# them for being idle).
RECYCLE_SECONDS = 1800


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling starts DEFERRED transactions, which deadlock when two
    # writers upgrade their read locks; we take over and begin IMMEDIATE instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    deferred = connection.get_execution_options().get(READ_ONLY_OPTION)
    connection.exec_driver_sql("BEGIN DEFERRED" if deferred else "BEGIN IMMEDIATE")


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The same pool for reads only: on SQLite they begin DEFERRED and never wait for writers."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def lookups(engine: AsyncEngine) -> AsyncEngine:
    """The same pool for work of one read statement (the API key of every request): on
    PostgreSQL in autocommit, so no BEGIN and ROLLBACK travel around it (two of a single
    enrollment's eleven round trips); on SQLite as ``read_only``."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return read_only(engine)


# The one lock order. Every transaction that touches a contact, its enrollments, outbox rows,
# drafts or messages takes its row locks in this order, each level's rows in id order, and may
# skip levels but never go back up one: API routes, the worker and the sweeper alike. A write
# locks what it changes, so a transaction locks the enrollments it will touch (lock_rows) before
# it updates their outbox rows, drafts or messages; those are written only by a holder of their
# enrollment's lock, except by statements that skip locked rows and so never wait (claiming due
# rows, the lease heartbeat, the sweeper). Score and step-stats rows come last of all
# (sequences.signals.scores takes them in key order). A transaction that still loses a deadlock
# is run again by ``transaction`` below.
LOCK_ORDER = ("contacts", "enrollments", "step_runs", "drafts", "messages")

# PostgreSQL's codes for a transaction that lost a deadlock or a serialization race: nothing it
# did was kept, so running it again from the start is safe.
RETRYABLE_CODES = frozenset({"40P01", "40001"})
T = TypeVar("T")


async def lock_rows(
    conn: AsyncConnection, table: Table, ids: Sequence[object], *, share: bool = False
) -> None:
    """Lock rows in id order (PostgreSQL), following ``LOCK_ORDER``.

    The exclusive mode is FOR NO KEY UPDATE: it does not block the key-share locks that foreign
    keys take, so inserting a message for a locked enrollment never waits. ``share`` (FOR SHARE)
    is for a reader that needs a row to stay as it is until it commits: it blocks writers, not
    other readers. SQLite needs nothing: a writer holds the whole database from BEGIN IMMEDIATE.
    """
    assert table.name in LOCK_ORDER, f"{table.name} has no place in the lock order"
    if ids and conn.dialect.name == "postgresql":
        query = select(table.c.id).where(among(conn, table.c.id, ids)).order_by(table.c.id)
        await conn.execute(query.with_for_update(read=share, key_share=not share))


def among(conn: AsyncConnection, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(array)``, one parameter. SQLAlchemy
    renders an IN list afresh at every execution, one bind per value: 1.27 ms of CPU for 100
    values against 0.46 ms for the array, and an event batch or a bulk enrollment runs a dozen
    such statements."""
    listed = list(values)
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, listed, type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(listed)  # type: ignore[no-any-return]


def retryable(error: BaseException) -> bool:
    """A deadlock or serialization failure: the transaction was rolled back whole."""
    code = getattr(getattr(error, "orig", None), "pgcode", None)
    return isinstance(error, DBAPIError) and code in RETRYABLE_CODES


async def transaction(
    engine: AsyncEngine | AsyncConnection,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    attempts: int = 6,
    base_delay: float = 0.02,
) -> T:
    """Run ``work`` in a transaction, again (up to ``attempts`` times, after a jittered,
    growing pause) when PostgreSQL picks it as a deadlock victim or a serialization failure.
    Given a connection the caller holds, each attempt is a transaction on it (no pool
    checkout per transaction, for callers that run many small ones).

    A connection found dead before the commit (PostgreSQL restarted, the pooled connection is
    stale) is also run again, on a new connection; one lost during the commit is not, since
    its outcome is unknown.

    ``work`` must be replayable: everything it decides is read again inside the transaction,
    and side effects outside the database happen only after this returns.
    """
    for attempt in range(1, attempts + 1):
        committing = False
        try:
            if isinstance(engine, AsyncConnection):
                async with engine.begin():
                    result = await work(engine)
                    committing = True
                return result
            async with engine.begin() as conn:
                result = await work(conn)
                committing = True
            return result
        except DBAPIError as error:
            held = isinstance(engine, AsyncConnection)  # no other connection to run it on
            lost = error.connection_invalidated and not committing and not held
            if attempt == attempts or not (retryable(error) or lost):
                raise
            log.info("transaction retried", extra={"attempt": attempt, "code": error.orig})
            await asyncio.sleep(random.uniform(0, base_delay * 2**attempt))
    raise AssertionError("unreachable")


def dialect_insert(conn: AsyncConnection, table: Table) -> PgInsert | SqliteInsert:
    """An INSERT with ``on_conflict_do_nothing/do_update`` for whichever database this is."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)
