"""The console's data set alone: how long seeding takes, what it holds, and a read back through
the API.

Run from the repository root::

    .venv/bin/python -m benchmarks.console_seed [--keep] [--enrollments N] [--drafts N]
        [--seed N] [--database-url URL] [--redis-url URL]

It creates ``dripline_bench_<random>`` on the ``--database-url`` server (as the other
benchmarks do), seeds it (:func:`benchmarks.console_harness.seed`), prints the rows per table
and the seconds it took, then reads it back through the real API as the console will: the
review queue (whose first page must be the oldest pending drafts), the oldest and the newest
pending draft, each sequence's report, one enrollment of every status and a contact, each a 200.
The database is dropped at the end, unless ``--keep`` (then it prints the ``DATABASE_URL`` to
point ``dripline serve`` at).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from typing import Any

import httpx
from sqlalchemy import func, select

from api.app import create_app
from api.auth import Role, create_key
from benchmarks.console_harness import Seeded, add_data_set_arguments, console_settings, seed
from benchmarks.services import create_database, drop_database
from sequences.deps import Deps
from sequences.settings import Settings
from sequences.store.tables import CONTACTS, ENROLLMENTS

QUEUE_PAGE = 5


async def read_back(settings: Settings, redis_url: str, seeded: Seeded) -> list[str]:
    """One line per request: path, status, time and size."""
    app = create_app(settings, redis_url=redis_url)
    async with app.router.lifespan_context(app):
        deps: Deps = app.state.deps
        async with deps.engine.begin() as conn:
            key = await create_key(conn, "console-seed-check", Role.admin, deps.clock.now())
        paths = await _paths(deps, seeded)
        transport = httpx.ASGITransport(app=app)
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://dripline.test", headers=auth
        ) as client:
            lines = [await _queue(client, seeded)]
            return lines + [(await _read(client, path))[0] for path in paths]


async def _paths(deps: Deps, seeded: Seeded) -> list[str]:
    """The oldest and the newest pending draft, each sequence, an enrollment of every status
    and a contact."""
    async with deps.reader.connect() as conn:
        statuses = select(func.min(ENROLLMENTS.c.id)).group_by(ENROLLMENTS.c.status)
        enrollments = sorted(str(found) for (found,) in await conn.execute(statuses))
        contact = select(CONTACTS.c.email).where(CONTACTS.c.id == seeded.contact_ids[0])
        email = (await conn.execute(contact)).scalar_one()
    return [
        f"/v1/drafts/{seeded.draft_ids[0]}",
        f"/v1/drafts/{seeded.draft_ids[-1]}",
        *(f"/v1/sequences/{key}" for key in seeded.sequences),
        *(f"/v1/enrollments/{found}" for found in enrollments),
        f"/v1/contacts/{email}",
    ]


async def _queue(client: httpx.AsyncClient, seeded: Seeded) -> str:
    line, body = await _read(client, f"/v1/drafts?limit={QUEUE_PAGE}")
    listed = [draft["id"] for draft in body["drafts"]]
    if listed != seeded.draft_ids[:QUEUE_PAGE]:
        raise RuntimeError(f"the review queue starts {listed}, not {seeded.draft_ids[:QUEUE_PAGE]}")
    return line


async def _read(client: httpx.AsyncClient, path: str) -> tuple[str, Any]:
    started = time.perf_counter()
    response = await client.get(path)
    ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:500]}")
    size = len(response.content)
    return f"   GET {path:<52} 200 {ms:7.1f} ms {size:>9,} bytes", response.json()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--keep", action="store_true", help="keep the database (print its URL)")
    add_data_set_arguments(parser)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def report(seeded_set: Seeded, seconds: float) -> None:
    print(f"Seeded in {seconds:.1f} s:")
    for table, count in seeded_set.counts.items():
        print(f"   {table:<18} {count:>9,}")


async def main_async(args: argparse.Namespace) -> None:
    db = await create_database(args.database_url)
    print(
        f"Dripline console data set in {db.name}: {args.enrollments:,} enrollments, "
        f"{args.drafts:,} drafts pending review, seed {args.seed}"
    )
    try:
        started = time.perf_counter()
        found = await seed(
            db.url,
            enrollments=args.enrollments,
            drafts=args.drafts,
            seed=args.seed,
            redis_url=args.redis_url,
        )
        report(found, time.perf_counter() - started)
        print("Read back through the API:")
        with tempfile.TemporaryDirectory(prefix="dripline-console-") as data_dir:
            for line in await read_back(console_settings(db.url, data_dir), args.redis_url, found):
                print(line)
    finally:
        if args.keep:
            print(f"Kept: DATABASE_URL={db.url}")
        else:
            await drop_database(db)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(main_async(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
