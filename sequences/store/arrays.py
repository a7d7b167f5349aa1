"""Many-row INSERTs and UPDATEs on PostgreSQL as one array per column, unnested in the rows'
order.

SQLAlchemy sends a many-row INSERT as multi-row VALUES with a bind parameter per value, and
builds and processes those parameters in Python on every execution: for 500 enrollments, their
outbox rows and their contacts that was the largest share of a bulk request's CPU. With arrays
the driver sends one parameter per column (encoded by asyncpg in C) and the statement text is
the same whatever the number of rows, so PostgreSQL caches its plan too. SQLite (and a single
row) keep the ordinary statements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Table, TextClause, insert, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeDecorator

from sequences.store.db import json_text

_STATEMENTS: dict[tuple[str, tuple[str, ...], str, tuple[str, ...]], TextClause] = {}
_UPDATES: dict[tuple[str, str, tuple[str, ...], str], TextClause] = {}


def _sql_type(column: Any, dialect: Dialect) -> str:
    kind = column.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl
    return str(kind.compile(dialect=dialect))


def _is_json(column: Any) -> bool:
    kind = column.type.impl if isinstance(column.type, TypeDecorator) else column.type
    return isinstance(kind, JSON)


def _unnest(picked: list[Any], dialect: Dialect) -> tuple[str, list[str]]:
    """``unnest(...)`` of one array parameter per column (``:a0``, ``:a1``...), and the values
    it yields, cast back to the columns' types (JSON travels as text: asyncpg has no array
    codec for jsonb)."""
    arrays = ", ".join(
        f"CAST(:a{i} AS text[])" if _is_json(c) else f"CAST(:a{i} AS {_sql_type(c, dialect)}[])"
        for i, c in enumerate(picked)
    )
    values = [
        f"CAST(v{i} AS {_sql_type(c, dialect)})" if _is_json(c) else f"v{i}"
        for i, c in enumerate(picked)
    ]
    return f"unnest({arrays})", values


def _params(
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
    defaults: Mapping[str, Any],
) -> dict[str, Any]:
    params = {}
    for i, name in enumerate(columns):
        values = [defaults[name]] * len(rows) if name in defaults else [row[name] for row in rows]
        params[f"a{i}"] = (
            [None if v is None else json_text(v) for v in values]
            if _is_json(table.c[name])
            else values
        )
    return params


def _statement(
    table: Table,
    columns: tuple[str, ...],
    dialect: Dialect,
    conflict: str,
    returning: tuple[str, ...],
) -> TextClause:
    key = (table.name, columns, conflict, returning)
    found = _STATEMENTS.get(key)
    if found is not None:
        return found
    picked = [table.c[name] for name in columns]
    unnest, values = _unnest(picked, dialect)
    names = ", ".join(f"v{i}" for i in range(len(picked)))
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {', '.join(values)}"
        f" FROM {unnest} WITH ORDINALITY AS u({names}, n) ORDER BY n"
        + (f" {conflict}" if conflict else "")
        + (f" RETURNING {', '.join(returning)}" if returning else "")
    )
    found = _STATEMENTS[key] = text(sql)
    return found


def _defaults(table: Table, given: tuple[str, ...]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if column.name in given or default is None:
            continue
        assert default.is_scalar, f"{table.name}.{column.name}: only scalar defaults are applied"
        if default.arg is not None:  # type: ignore[attr-defined]
            found[column.name] = default.arg  # type: ignore[attr-defined]
    return found


async def insert_arrays(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: str = "",
    returning: tuple[str, ...] = (),
) -> list[Any]:
    """Insert ``rows`` (each with the same keys) on PostgreSQL, in their order; ``conflict``
    is an ``ON CONFLICT ...`` clause. Returns the ``returning`` columns of the rows inserted.
    Values go in as they are: timestamps must be timezone-aware, JSON columns take any
    JSON-serialisable value."""
    assert conn.dialect.name == "postgresql", "arrays are for PostgreSQL; SQLite inserts rows"
    if not rows:
        return []
    given = tuple(rows[0])
    # Python-side column defaults are SQLAlchemy's to apply, and this statement is raw SQL.
    defaults = _defaults(table, given)
    columns = given + tuple(defaults)
    statement = _statement(table, columns, conn.dialect, conflict, returning)
    result = await conn.execute(statement, _params(table, columns, rows, defaults))
    return list(result) if returning else []


async def update_arrays(
    conn: AsyncConnection,
    table: Table,
    key: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    where: str = "",
    **bound: Any,
) -> None:
    """Set, on PostgreSQL, each row's other columns where ``key`` equals the row's; ``where``
    (SQL naming the table's columns, with ``:name`` parameters given in ``bound``) narrows it
    further. Rows each have the same keys. An UPDATE per row (what an executemany sends) is as
    many executions for the server to run and for the driver to encode."""
    assert conn.dialect.name == "postgresql", "arrays are for PostgreSQL; SQLite updates rows"
    if not rows:
        return
    columns = tuple(rows[0])
    assert key in columns, f"each row needs its {key}"
    found = _UPDATES.get(cache := (table.name, key, columns, where))
    if found is None:
        unnest, values = _unnest([table.c[name] for name in columns], conn.dialect)
        names = ", ".join(f"v{i}" for i in range(len(columns)))
        value = dict(zip(columns, values, strict=True))
        sets = ", ".join(f"{name} = {value[name]}" for name in columns if name != key)
        sql = (
            f"UPDATE {table.name} SET {sets} FROM {unnest} AS u({names})"
            f" WHERE {table.name}.{key} = {value[key]}" + (f" AND ({where})" if where else "")
        )
        found = _UPDATES[cache] = text(sql)
    await conn.execute(found, _params(table, columns, rows, {}) | bound)


async def insert_many(
    conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert rows (each with the same keys): arrays on PostgreSQL, an ordinary INSERT for one
    row or on SQLite."""
    if len(rows) > 1 and conn.dialect.name == "postgresql":
        await insert_arrays(conn, table, rows)
    elif rows:
        await conn.execute(insert(table), list(rows))
