"""How fast does the console answer with a production-sized database? Every page, timed.

Run from the repository root::

    .venv/bin/python -m benchmarks.console_pages [--enrollments N] [--drafts N]
        [--requests N] [--inbox N] [--database-url URL] [--redis-url URL]

1. Set-up (not measured): a PostgreSQL database of its own seeded by
   :mod:`benchmarks.console_seed` (10,000 enrollments and 1,000 drafts pending review by
   default), and a dev inbox directory holding ``--inbox`` captured emails.
2. The app (``api.app.create_app``, as ``dripline serve`` builds it) in uvicorn, this process
   as a signed-in reviewer's browser: for each page, warm-up requests and then ``--requests``
   sequential GETs over HTTP with the session cookie. Printed per page: the median, the 95th
   percentile and the slowest answer, and the 95th percentile against the 200 ms budget.

Client and server share this process and its event loop, so the times include the client's
own work: they are what a browser next to the server would wait, slightly pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.devserver import serving
from api.app import create_app
from api.auth import Role, create_key
from benchmarks.console_seed import Seeded, console_settings, seed
from benchmarks.services import add_service_arguments, create_database, drop_database
from sequences.runtime import open_deps
from sequences.settings import Settings
from sequences.store.tables import CONTACTS, DRAFTS, MESSAGES, TIMELINE, DraftStatus

BUDGET_MS = 200.0
WARM_UP = 3


@dataclass(frozen=True)
class Timing:
    page: str
    path: str
    status: int
    times_ms: list[float]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--enrollments", type=int, default=10_000)
    parser.add_argument("--drafts", type=int, default=1_000, help="drafts pending review")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
    parser.add_argument("--inbox", type=int, default=2_000, help="captured emails in the inbox")
    add_service_arguments(parser, redis_use="only connected to")
    return parser.parse_args(argv)


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


async def time_pages(base: str, key: str, urls: dict[str, str], requests: int) -> list[Timing]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        signed = await client.post("/console/sign-in", data={"key": key})
        if signed.status_code != 303:
            raise RuntimeError(f"sign-in failed: {signed.status_code}")
        found = []
        for page, path in urls.items():
            for _ in range(WARM_UP):
                await client.get(path)
            times, status = [], 0
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                status = response.status_code
            found.append(Timing(page, path, status, times))
    return found


def report(timings: list[Timing]) -> bool:
    print(f"{'page':<34} {'status':>6} {'median':>8} {'p95':>8} {'max':>8} {'p95/200ms':>10}")
    ok = True
    for t in timings:
        p95 = t.percentile(0.95)
        fine = t.status == 200 and p95 < BUDGET_MS
        ok &= fine
        print(
            f"{t.page:<34} {t.status:>6} {statistics.median(t.times_ms):>6.1f}ms "
            f"{p95:>6.1f}ms {max(t.times_ms):>6.1f}ms {p95 / BUDGET_MS:>9.2f}x"
            f"{'' if fine else '  OVER'}"
        )
    worst = max(timings, key=lambda t: t.percentile(0.95))
    print(
        f"\nSlowest page at p95: {worst.page}, {worst.percentile(0.95):.1f} ms "
        f"({worst.percentile(0.95) / BUDGET_MS:.2f} of the 200 ms budget). "
        f"All pages under budget: {'yes' if ok else 'NO'}"
    )
    return ok


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
    """A database of its own seeded (``args.enrollments``, ``args.drafts``) and analysed, a dev
    inbox of ``inbox`` emails, and the app ``dripline serve`` builds serving both over HTTP;
    everything is dropped again when the block ends."""
    db = await create_database(args.database_url)
    try:
        started = time.perf_counter()
        found = await seed(
            db.url, enrollments=args.enrollments, drafts=args.drafts, redis_url=args.redis_url
        )
        await analyze(db.url)
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


async def analyze(url: str) -> None:
    """Planner statistics, as autovacuum gathers them soon after a bulk load: without them
    PostgreSQL takes a freshly filled table for an empty one and picks nested loops."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


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


async def main_async(args: argparse.Namespace) -> bool:
    async with served_console(args, inbox=args.inbox, key_name="bench-reviewer") as served:
        print(
            f"Dev inbox: {served.inbox:,} captured emails. {args.requests} timed GETs per page.\n"
        )
        return report(await time_pages(served.base, served.key, served.urls, args.requests))


def main(argv: list[str] | None = None) -> int:
    return 0 if asyncio.run(main_async(parse_args(argv))) else 1


if __name__ == "__main__":
    raise SystemExit(main())
