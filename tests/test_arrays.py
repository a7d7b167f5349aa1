"""store.arrays: many-row INSERTs on PostgreSQL as one array per column. The same rows as the
ordinary INSERT would write, in order, with the columns' Python defaults, ON CONFLICT and
RETURNING; SQLite takes the ordinary statements."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from sequences.store import migrate
from sequences.store.arrays import insert_arrays, insert_many
from sequences.store.db import make_engine
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
