"""store.arrays: many-row INSERTs on PostgreSQL as one array per column. The same rows as the
ordinary INSERT would write, in order, with the columns' Python defaults, ON CONFLICT and
RETURNING; SQLite takes the ordinary statements."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import event, select

from sequences.store import migrate
from sequences.store.arrays import insert_arrays, insert_many, update_arrays
from sequences.store.db import json_text, make_engine
from sequences.store.tables import CONTACT_SCORES, CONTACTS, TIMELINE


async def test_rows_land_in_order_with_defaults(database_url: str) -> None:
    engine = make_engine(database_url)
    backend = engine.dialect.name
    try:
        await migrate.upgrade(engine)
        now = datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=UTC)
        people = [
            {
                "email": f"P{n}@Example.com",
                "email_key": f"p{n}@example.com",
                "timezone": None if n % 2 else "Europe/Paris",
                "attributes": {"n": n, "name": 'Zoë "quoted"', "tags": ["a", None]},
                "created_at": now,
                "updated_at": now,
            }
            for n in (3, 1, 2)
        ]
        async with engine.begin() as conn:
            await insert_many(conn, CONTACTS, people)
            rows = (await conn.execute(select(CONTACTS).order_by(CONTACTS.c.id))).all()
            assert [r.email_key for r in rows] == [
                "p3@example.com",
                "p1@example.com",
                "p2@example.com",
            ]
            assert [r.attributes for r in rows] == [p["attributes"] for p in people]
            assert [r.timezone for r in rows] == [None, None, "Europe/Paris"]
            assert {r.created_at for r in rows} == {now}
            ids = [r.id for r in rows]

            # Defaults the rows leave out (score, events) are applied.
            await insert_many(
                conn,
                CONTACT_SCORES,
                [{"contact_id": i, "affinities": {}, "as_of": now} for i in ids],
            )
            scores = (await conn.execute(select(CONTACT_SCORES))).all()
            assert {(s.score, s.events) for s in scores} == {(0.0, 0)}

            await insert_many(
                conn,
                TIMELINE,
                [
                    {"enrollment_id": "e", "at": now, "kind": k, "step_id": None, "detail": {}}
                    for k in "abc"
                ],
            )
            kinds = await conn.scalars(select(TIMELINE.c.kind).order_by(TIMELINE.c.id))
            assert list(kinds) == ["a", "b", "c"]

            if backend == "postgresql":
                again = [
                    {**people[1], "email": "changed@example.com"},
                    {**people[0], "email_key": "new@example.com"},
                ]
                back = await insert_arrays(
                    conn,
                    CONTACTS,
                    again,
                    conflict="ON CONFLICT (email_key) DO NOTHING",
                    returning=("email_key",),
                )
                assert [r.email_key for r in back] == ["new@example.com"]  # the other clashed
    finally:
        await engine.dispose()


async def test_rows_are_updated_by_key_where_the_condition_holds(postgres_url: str) -> None:
    """update_arrays sets each row's columns on the row with its key, JSON included, and only
    where ``where`` holds; rows not named are untouched. One statement whatever the count."""
    engine = make_engine(postgres_url)
    try:
        await migrate.upgrade(engine)
        then = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
        later = datetime(2026, 12, 7, 13, 30, 0, 250000, tzinfo=UTC)
        async with engine.begin() as conn:
            people = [
                {"email": f"p{n}@example.com", "email_key": f"p{n}@example.com"}
                | {"timezone": "UTC", "attributes": {"n": n}, "created_at": then}
                | {"updated_at": then}
                for n in range(4)
            ]
            ids = [r.id for r in await insert_arrays(conn, CONTACTS, people, returning=("id",))]
            statements: list[str] = []
            event.listen(
                conn.sync_connection, "before_cursor_execute", lambda *a: statements.append(a[2])
            )
            await update_arrays(
                conn,
                CONTACTS,
                "id",
                [
                    {"id": i, "attributes": {"n": n, "seen": "Zoë"}, "updated_at": later}
                    for n, i in enumerate(ids[:3])
                ],
                where="timezone = :zone AND id <> :spared",
                zone="UTC",
                spared=ids[1],
            )
            sent = list(statements)
            rows = (await conn.execute(select(CONTACTS).order_by(CONTACTS.c.id))).all()
        assert len(sent) == 1 and sent[0].startswith("UPDATE contacts SET")
        assert [(r.attributes, r.updated_at) for r in rows] == [
            ({"n": 0, "seen": "Zoë"}, later),
            ({"n": 1}, then),  # excluded by the condition
            ({"n": 2, "seen": "Zoë"}, later),
            ({"n": 3}, then),  # not named
        ]
    finally:
        await engine.dispose()


async def test_json_values_round_trip_through_the_engines_encoder(database_url: str) -> None:
    """JSON parameters are encoded by orjson (store.db.json_text), one at a time and as arrays:
    what is read back is what was written, integer keys coming back as strings as the stdlib's
    encoder made them, text outside ASCII and deep nesting intact."""
    engine = make_engine(database_url)
    try:
        await migrate.upgrade(engine)
        now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
        details = [
            {"n": n, "name": 'Zoë \u2603 "q" \\ \n', "deep": [[[{"x": 1.5}]]], 7: "seven"}
            for n in range(3)
        ]
        rows = [
            {"enrollment_id": "e", "at": now, "kind": "note", "step_id": None, "detail": d}
            for d in details
        ]
        async with engine.begin() as conn:
            await insert_many(conn, TIMELINE, rows)  # arrays on PostgreSQL
            await insert_many(conn, TIMELINE, rows[:1])  # one row: the ordinary INSERT
            read = (await conn.execute(select(TIMELINE.c.detail).order_by(TIMELINE.c.id))).all()
        expected = [{k if isinstance(k, str) else str(k): v for k, v in d.items()} for d in details]
        assert [r.detail for r in read] == expected + expected[:1]
    finally:
        await engine.dispose()


def test_json_text_writes_what_orjson_refuses_as_the_stdlib_would() -> None:
    deep: list[object] = []
    for _ in range(400):  # orjson's nesting limit is 254
        deep = [deep]
    assert json.loads(json_text(deep)) == deep
    assert json_text({"big": 2**70}) == '{"big": 1180591620717411303424}'
    assert json.loads(json_text({1: "a", "b": [1.5, None, True]})) == {
        "1": "a",
        "b": [1.5, None, True],
    }
