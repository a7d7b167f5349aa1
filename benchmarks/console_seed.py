"""A production-sized data set for the browser console, in a PostgreSQL database of its own.

``seed(database_url)`` fills an empty database. It runs the project's migrations (through
``open_deps``, as a worker would), applies three sequences through the registry (the two
examples and ``console_outreach.yaml``, whose every draft waits for a reviewer), then walks
10,000 contacts through them as the engine would have run them over the last 60 days
(``console_walk``): outbox rows, messages with their tracked links, events, timelines,
suppressions, drafts (decided ones, and 1,000 pending review), the cost ledger, step stats and
contact scores, written with COPY while the walk goes on (``console_rows``). Last, the engine
itself (``runner.run_due``, the heuristic model at the copy seam) drafts the newest pending
email of each reviewed step, so the queue holds real drafts with their checkpoints; the other
pending drafts must have their shape, key for key.

Run from the repository root::

    .venv/bin/python -m benchmarks.console_seed [--keep] [--enrollments N] [--drafts N]
        [--seed N] [--database-url URL] [--redis-url URL]

It creates ``dripline_bench_<random>`` on the ``--database-url`` server (as the other
benchmarks do), seeds it, prints the rows per table and the seconds it took, reads it back
through the API (``console_checks``) and drops it, unless ``--keep``. Redis (``--redis-url``)
is only connected to: nothing is enqueued, since no worker runs the seeded database.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from benchmarks.console_checks import read_back
from benchmarks.console_copy import Copywriter, heuristic_agent
from benchmarks.console_plans import DAYS, plans
from benchmarks.console_rows import Row, Rows, Writer
from benchmarks.console_trail import Trail
from benchmarks.console_walk import walk
from benchmarks.console_world import Plan, World
from benchmarks.services import (
    DEFAULT_REDIS_URL,
    add_service_arguments,
    create_database,
    drop_database,
)
from sequences.definitions import registry
from sequences.definitions.loading import parse_definition
from sequences.definitions.registry import Pinned
from sequences.deps import Deps
from sequences.runner import run_due
from sequences.runtime import open_deps
from sequences.settings import Settings
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
    SEQUENCES,
    STEP_STATS,
    SUPPRESSIONS,
    TIMELINE,
    VERSIONS,
    DraftStatus,
)

# Keyed by data, not by schema: a contact's attributes, the topics they clicked.
FREE_FORM = frozenset({"request.contact", "request.affinities"})
BATCH = 500  # enrollments walked per COPY
EXAMPLES = ("trial-onboarding.yaml", "adaptive-trial.yaml")
OUTREACH = Path(__file__).with_name("console_outreach.yaml")
TABLES = (
    *(CONTACTS, SEQUENCES, VERSIONS, ENROLLMENTS, RUNS, MESSAGES, LINKS, EVENTS, TIMELINE),
    *(SUPPRESSIONS, DRAFTS, MODEL_CALLS, STEP_STATS, CONTACT_SCORES),
)


@dataclass
class Seeded:
    sequences: list[str]  # sequence keys
    enrollment_ids: list[str]
    contact_ids: list[int]
    draft_ids: list[str]  # the pending ones, oldest first
    message_ids: list[str]  # messages.id values
    counts: dict[str, int]  # rows per table, for the printout


class Asleep:
    """The seeded database has no worker: its wake-ups would only pile up in Redis."""

    async def wake_at(self, due: Iterable[datetime]) -> None:
        return None


def console_settings(database_url: str, data_dir: str) -> Settings:
    values = {"DATABASE_URL": database_url, "DRIPLINE_DATA_DIR": data_dir}
    return Settings.model_validate({**values, "DKIM_DOMAIN": "acme.test"})


async def seed(
    database_url: str,
    *,
    enrollments: int = 10_000,
    drafts: int = 1_000,
    seed: int = 7,
    redis_url: str = DEFAULT_REDIS_URL,
) -> Seeded:
    """Fill the empty database at ``database_url`` (``postgresql+asyncpg://``). ``drafts`` of
    the ``enrollments`` wait for review at the end; ``redis_url`` is only connected to."""
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="dripline-console-") as data_dir:
        settings = console_settings(database_url, data_dir)
        async with open_deps(settings, redis_url=redis_url) as deps:
            deps.waker = Asleep()
            deps.agent = heuristic_agent(deps.agent)
            world = World(deps, now, await apply_sequences(deps, now), Copywriter(deps))
            chosen = _plans(world, enrollments, drafts, random.Random(seed))
            with collector_paused():
                async with deps.engine.begin() as conn, Writer(conn) as writer:
                    message_ids = await walk_all(world, chosen, writer)
            await draft_templates(deps, chosen)
            return await seeded(deps, world, chosen, message_ids)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The walk allocates millions of short-lived rows and no cycles worth collecting: the
    cyclic collector's passes over them would take a fifth of the seeding time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def apply_sequences(deps: Deps, now: datetime) -> dict[str, Pinned]:
    """The examples and the reviewed sequence, applied before the first enrollment."""
    examples = files("sequences").joinpath("examples")
    documents = [examples.joinpath(name).read_text() for name in EXAMPLES]
    pinned: dict[str, Pinned] = {}
    async with deps.engine.begin() as conn:
        for document in [*documents, OUTREACH.read_text()]:
            defn = parse_definition(document)
            registry.check_layouts(defn, deps.renderer.exists)
            await registry.apply(conn, defn, now - timedelta(days=DAYS + 1))
            found = await registry.current(conn, defn.key)
            assert found is not None
            pinned[defn.key] = found
    return pinned


def _plans(world: World, enrollments: int, drafts: int, rng: random.Random) -> list[Plan]:
    # In the order apply_sequences applied them: the two examples, then the reviewed one.
    first, second, reviewed = (p.definition for p in world.pinned.values())
    return plans(reviewed, (first, second), world.now, (enrollments, drafts), rng)


async def walk_all(world: World, chosen: list[Plan], writer: Writer) -> list[str]:
    """Walk every plan, a batch at a time, each batch written while the next is walked;
    returns the messages' ids."""
    message_ids: list[str] = []
    for start in range(0, len(chosen), BATCH):
        rows = Rows()
        for plan in chosen[start : start + BATCH]:
            commit(world, rows, await placed(world, plan))
            await asyncio.sleep(0)  # the writer's COPY moves on
        message_ids += [row["id"] for row in rows.of(MESSAGES)]
        writer.put(rows)
    last = Rows()
    last.add(STEP_STATS, *world.tally.rows())
    writer.put(last)
    return message_ids


async def placed(world: World, plan: Plan) -> Trail:
    """A held plan is walked once to see when it reaches its review, then again started that
    much earlier or later, so its draft is made at the planned time (the walk is the same:
    same seed, same counts, and no cut-off at now before the review)."""
    trail = await walk(world, plan)
    if plan.hold_time is None or trail.held_at == plan.hold_time:
        return trail
    if trail.held_at is not None:
        shift = plan.hold_time - trail.held_at
        trail = await walk(world, replace(plan, created_at=plan.created_at + shift))
    if trail.held_at != plan.hold_time:
        raise RuntimeError(f"{plan.enrollment_id} did not reach {plan.hold_step} as planned")
    return trail


def commit(world: World, rows: Rows, trail: Trail) -> None:
    plan = trail.plan
    rows.add(CONTACTS, contact_row(plan))
    rows.add(ENROLLMENTS, trail.enrollment)
    rows.extend(trail.rows)
    if trail.standing.events:
        rows.add(CONTACT_SCORES, score_row(plan.contact_id, trail.standing))
    for step, variant, counter in trail.counted:
        world.tally.add(plan.sequence, step, variant, counter)


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


# ------------------------------------------------------------------- the engine's own drafts


async def draft_templates(deps: Deps, chosen: list[Plan]) -> None:
    """The engine drafts the rows the templates left due; the seeded drafts must match them."""
    expected = sum(plan.template for plan in chosen)
    ran = await run_due(deps)
    if ran != expected:
        raise RuntimeError(f"the engine ran {ran} outbox rows; the templates left {expected}")
    real = {plan.enrollment_id for plan in chosen if plan.template}
    async with deps.reader.connect() as conn:
        rows = (await conn.execute(select(DRAFTS).where(DRAFTS.c.status == "pending"))).all()
    by_step = {r.step_id: r for r in rows if r.enrollment_id not in real}
    for made in (r for r in rows if r.enrollment_id in real and r.step_id in by_step):
        problems = [
            problem
            for column in ("copy", "review", "request")
            for problem in same_shape(
                made._mapping[column], by_step[made.step_id]._mapping[column], column
            )
        ]
        if problems:
            raise RuntimeError(f"seeded drafts differ from the engine's: {problems[:5]}")


def same_shape(real: Any, seeded_value: Any, path: str) -> list[str]:
    """Where two JSON values differ in keys or types (values may differ; nulls match all)."""
    if real is None or seeded_value is None or path in FREE_FORM:
        return []
    if isinstance(real, dict) and isinstance(seeded_value, dict):
        if set(real) != set(seeded_value):
            return [f"{path}: keys {sorted(set(real) ^ set(seeded_value))}"]
        return [
            p for key in real for p in same_shape(real[key], seeded_value[key], f"{path}.{key}")
        ]
    if isinstance(real, list) and isinstance(seeded_value, list):
        pairs = zip(real[:1], seeded_value[:1], strict=False)
        return [p for a, b in pairs for p in same_shape(a, b, f"{path}[0]")]
    numbers = (int, float)
    if isinstance(real, numbers) and isinstance(seeded_value, numbers):
        return []
    return [] if type(real) is type(seeded_value) else [f"{path}: {type(real).__name__}"]


async def seeded(deps: Deps, world: World, chosen: list[Plan], message_ids: list[str]) -> Seeded:
    async with deps.reader.connect() as conn:
        pending = await conn.execute(
            select(DRAFTS.c.id)
            .where(DRAFTS.c.status == DraftStatus.pending)
            .order_by(DRAFTS.c.created_at, DRAFTS.c.id)
        )
        draft_ids = list(pending.scalars())
        counts = {
            table.name: int(
                (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            )
            for table in TABLES
        }
    return Seeded(
        sequences=list(world.pinned),
        enrollment_ids=[plan.enrollment_id for plan in chosen],
        contact_ids=[plan.contact_id for plan in chosen],
        draft_ids=draft_ids,
        message_ids=message_ids,
        counts=counts,
    )


# ------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--keep", action="store_true", help="keep the database (print its URL)")
    parser.add_argument("--enrollments", type=int, default=10_000)
    parser.add_argument("--drafts", type=int, default=1_000, help="drafts pending review")
    parser.add_argument("--seed", type=int, default=7)
    add_service_arguments(parser, redis_use="only connected to")
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
