"""What the console benchmarks share: a production-sized data set in a PostgreSQL database of
its own, and the console serving it over HTTP.

``seed(database_url)`` fills an empty database. It runs the project's migrations (through
``open_deps``, as a worker would), applies three sequences through the registry (the two
examples and ``console_outreach.yaml``, whose every draft waits for a reviewer), then walks
10,000 contacts through them as the engine would have run them over the last 60 days
(``console_walk``): outbox rows, messages with their tracked links, events, timelines,
suppressions, drafts (decided ones, and 1,000 pending review), the cost ledger, step stats and
contact scores, written with COPY while the walk goes on (``console_rows``). Last, the engine
itself (``runner.run_due``, the heuristic model at the copy seam) drafts the newest pending
email of each reviewed step, so the queue holds real drafts with their checkpoints; the other
pending drafts must have their shape, key for key; then ``ANALYZE``, as autovacuum would soon
after. Redis is only connected to: nothing is enqueued, since no worker runs the database.

``served_console`` seeds a database so, fills a dev inbox, and serves the app
``dripline serve`` builds over HTTP, with a reviewer's key and the URL of each console page
(``console_pages`` times them, ``console_screens`` photographs them).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from importlib.resources import files
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.devserver import serving
from api.app import create_app
from api.auth import Role, create_key
from benchmarks.console_copy import Copywriter, draft_templates, heuristic_agent
from benchmarks.console_people import DAYS, Plan, plans
from benchmarks.console_rows import ORDER, Rows, Writer
from benchmarks.console_trail import World
from benchmarks.console_walk import placed
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
from sequences.runtime import open_deps
from sequences.settings import Settings
from sequences.store.tables import (
    CONTACTS,
    DRAFTS,
    MESSAGES,
    SEQUENCES,
    STEP_STATS,
    TIMELINE,
    VERSIONS,
    DraftStatus,
)

BATCH = 500  # enrollments walked per COPY
EXAMPLES = ("trial-onboarding.yaml", "adaptive-trial.yaml")
OUTREACH = Path(__file__).with_name("console_outreach.yaml")
# The printout's order: the COPY order, with the registry's tables after the contacts.
TABLES = (CONTACTS, SEQUENCES, VERSIONS, *ORDER[1:])


@dataclass
class Seeded:
    sequences: list[str]  # sequence keys
    contact_ids: list[int]
    draft_ids: list[str]  # the pending ones, oldest first
    counts: dict[str, int]  # rows per table, for the printout


class Asleep:
    """The seeded database has no worker: its wake-ups would only pile up in Redis."""

    async def wake_at(self, due: Iterable[datetime]) -> None:
        return None


def add_data_set_arguments(parser: argparse.ArgumentParser) -> None:
    """The data set's size and the services, as each console benchmark takes them."""
    parser.add_argument("--enrollments", type=int, default=10_000)
    parser.add_argument("--drafts", type=int, default=1_000, help="drafts pending review")
    add_service_arguments(parser, redis_use="only connected to")


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
                    await walk_all(world, chosen, writer)
            await draft_templates(deps, chosen)
            await analyze(deps)
            return await seeded(deps, world, chosen)


async def analyze(deps: Deps) -> None:
    """Planner statistics, as autovacuum gathers them soon after a bulk load: without them
    PostgreSQL takes a freshly filled table for an empty one and picks nested loops."""
    async with deps.engine.begin() as conn:
        await conn.execute(text("ANALYZE"))


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


async def walk_all(world: World, chosen: list[Plan], writer: Writer) -> None:
    """Walk every plan, a batch at a time, each batch written while the next is walked."""
    for start in range(0, len(chosen), BATCH):
        rows = Rows()
        for plan in chosen[start : start + BATCH]:
            (await placed(world, plan)).commit(rows)
            await asyncio.sleep(0)  # the writer's COPY moves on
        writer.put(rows)
    last = Rows()
    last.add(STEP_STATS, *world.tally.rows())
    writer.put(last)


async def seeded(deps: Deps, world: World, chosen: list[Plan]) -> Seeded:
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
        contact_ids=[plan.contact_id for plan in chosen],
        draft_ids=draft_ids,
        counts=counts,
    )


# ----------------------------------------------------------------------- the served console


@dataclass(frozen=True)
class Served:
    base: str  # the console's server
    key: str  # a reviewer's API key to sign in with
    urls: dict[str, str]  # see pages()
    inbox: int  # captured emails in its dev inbox


@asynccontextmanager
async def served_console(
    args: argparse.Namespace, *, inbox: int, key_name: str
) -> AsyncIterator[Served]:
    """A database of its own seeded (``args.enrollments``, ``args.drafts``), a dev
    inbox of ``inbox`` emails, and the app ``dripline serve`` builds serving both over HTTP;
    everything is dropped again when the block ends."""
    db = await create_database(args.database_url)
    try:
        started = time.perf_counter()
        found = await seed(
            db.url, enrollments=args.enrollments, drafts=args.drafts, redis_url=args.redis_url
        )
        print(
            f"Seeded {db.name} in {time.perf_counter() - started:.1f} s: "
            + ", ".join(f"{n:,} {t}" for t, n in found.counts.items() if n)
        )
        with tempfile.TemporaryDirectory(prefix="dripline-console-") as data_dir:
            settings = console_settings(db.url, data_dir)
            key, urls = await _prepare(settings, args.redis_url, found, inbox, key_name)
            directory = Path(data_dir) / "inbox"
            app = create_app(settings, redis_url=args.redis_url, inbox=directory)
            async with serving(app) as base:
                yield Served(base, key, urls, inbox)
    finally:
        await drop_database(db)


async def _prepare(
    settings: Settings, redis_url: str, found: Seeded, inbox: int, key_name: str
) -> tuple[str, dict[str, str]]:
    """A reviewer's key, the dev inbox filled with copies of a seeded email, the pages' URLs."""
    async with open_deps(settings, redis_url=redis_url) as deps:
        async with deps.engine.begin() as conn:
            key = await create_key(conn, key_name, Role.reviewer, datetime.now(UTC))
            row = (
                await conn.execute(select(MESSAGES.c.html_body, MESSAGES.c.text_body).limit(1))
            ).one()
        names = fill_inbox(settings.data_dir / "inbox", inbox, row.html_body, row.text_body)
        async with deps.reader.connect() as conn:
            return key, await pages(conn, found, names)


def fill_inbox(directory: Path, count: int, html: str, text: str) -> list[str]:
    """``count`` captured emails, named as the capture server names them; newest last."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for n in range(count):
        message = EmailMessage()
        message["From"] = "Dana at Acme <dana@acme.test>"
        message["To"] = f"reader{n}@example.com"
        message["Subject"] = f"A quick next step, reader {n}"
        message["Date"] = "Wed, 02 Dec 2026 09:00:00 +0000"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        name = f"20261202T0900{n:06d}Z-{n}"
        (directory / f"{name}.eml").write_bytes(message.as_bytes())
        names.append(name)
    return names


async def pages(conn: AsyncConnection, found: Seeded, inbox: list[str]) -> dict[str, str]:
    """The console's pages, each at a URL that makes it work hardest on this data set."""
    busiest = (
        await conn.execute(
            select(TIMELINE.c.enrollment_id, func.count().label("n"))
            .group_by(TIMELINE.c.enrollment_id)
            .order_by(func.count().desc())
            .limit(1)
        )
    ).one()
    step = (
        await conn.execute(
            select(DRAFTS.c.sequence_key, DRAFTS.c.step_id, func.count().label("n"))
            .where(DRAFTS.c.status == DraftStatus.pending)
            .group_by(DRAFTS.c.sequence_key, DRAFTS.c.step_id)
            .order_by(func.count().desc())
            .limit(1)
        )
    ).one()
    message = (await conn.execute(select(MESSAGES.c.id).limit(1))).scalar_one()
    contact = (await conn.execute(select(CONTACTS.c.id, CONTACTS.c.email).limit(1))).one()
    middle = found.draft_ids[len(found.draft_ids) // 2]
    urls = {
        "sign-in form": "/console/sign-in",
        "queue": "/console/queue",
        "queue, one step": f"/console/queue?sequence={step.sequence_key}&step={step.step_id}",
        "queue, page 11": f"/console/queue?after={middle}",
        "draft (oldest)": f"/console/drafts/{found.draft_ids[0]}",
        "draft (newest)": f"/console/drafts/{found.draft_ids[-1]}",
        "draft preview": f"/console/drafts/{found.draft_ids[0]}/preview",
        "sequences": "/console/sequences",
    }
    for key in found.sequences:
        urls[f"sequence {key}"] = f"/console/sequences/{key}"
    urls |= {
        "contacts": "/console/contacts",
        "contacts, search": f"/console/contacts?q={contact.email.split('@')[0][:6]}",
        "contact": f"/console/contacts/{contact.id}",
        f"enrollment ({busiest.n} entries)": f"/console/enrollments/{busiest.enrollment_id}",
        "email as sent": f"/console/messages/{message}/html",
        "dev inbox": "/console/inbox",
        "dev inbox email": f"/console/inbox/{inbox[-1]}",
        "dev inbox html": f"/console/inbox/{inbox[-1]}/html",
    }
    return urls
