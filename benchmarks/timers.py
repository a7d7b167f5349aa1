"""How late do waits end? 100,000 wait steps due within one minute, one worker, PostgreSQL.

Run from the repository root::

    .venv/bin/python -m benchmarks.timers [--waits N] [--spread SECONDS] [--lead SECONDS]
        [--settle SECONDS] [--py-spy FILE] [--database-url URL] [--redis-url URL]

1. Set-up (not measured): a database of its own; a sequence whose first step is ``wait: {for:
   1h}`` and whose second is ``exit``; N contacts enrolled through the engine's set-based path
   (``contacts.upsert_many`` + ``engine.bulk.enroll_many``, 1,000 per transaction) with the
   clock set so that their waits fall due evenly over ``--spread`` seconds a day from now. Then
   one UPDATE shifts every due time by the same amount, so the first falls due ``--lead``
   seconds after the shift, and the engine's waker enqueues the wake-up jobs for the new times
   (what enrolling enqueues, had it happened an hour before).
2. The run: ``dripline worker`` as a subprocess (arq wake jobs, the sweeper every second), no
   email (the SMTP relay it is given is never used). This process only watches the database.
3. Lateness of each wait: its ``step_done`` timeline entry (written when the worker moved the
   enrollment on) minus its row's due time; p50, p99 and the maximum against the goal (p99 at
   most 1 s), and the rate the worker ended waits at. Checks: every wait ended once, every
   enrollment completed at the exit step, no row left due or claimed.
4. With ``--py-spy FILE``: where the worker spent its samples (see :mod:`benchmarks.spy`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import postfix
from benchmarks.engine_throughput import running_relay
from benchmarks.services import (
    Database,
    ProcessCpu,
    add_service_arguments,
    flush_redis,
    in_own_database,
    load_average,
    settings_env,
)
from benchmarks.spy import report as spy_report
from benchmarks.spy import start as spy_on
from benchmarks.spy import stop as spy_stop

GOAL_P99_SECONDS = 1.0
SEED_BATCH = 1000
WAIT = timedelta(hours=1)
SEQUENCE = """
key: timers
name: Timers
sender: {from: "Ops <ops@acme.test>"}
steps:
  - id: hold
    wait: {for: 1h}
  - id: done
    exit: {reason: waited}
"""


class SetClock:
    """A clock the seeding moves by hand, so each batch's waits fall due where it says."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def now(self) -> datetime:
        return self.at


async def seed(deps: Any, clock: SetClock, n: int, spread: float) -> None:
    from sequences.definitions import registry
    from sequences.definitions.loading import parse_definition
    from sequences.engine.bulk import enroll_many
    from sequences.store import contacts

    first_due = datetime.now(UTC) + timedelta(days=1)
    async with deps.engine.begin() as conn:
        await registry.apply(conn, parse_definition(SEQUENCE), clock.now())
        pinned = await registry.current(conn, "timers")
    assert pinned is not None
    for start in range(0, n, SEED_BATCH):
        # Each batch enrolls at one instant; the batches' dues step evenly across the spread.
        clock.at = first_due + timedelta(seconds=spread * start / n) - WAIT
        items = [
            contacts.ContactFields(f"t{i}@example.com")
            for i in range(start, min(n, start + SEED_BATCH))
        ]
        async with deps.engine.begin() as conn:
            people = await contacts.upsert_many(conn, items, now=clock.at)
            batch = await enroll_many(conn, deps, pinned, people, now=clock.at)
        if any(not isinstance(o, str) for o in batch.outcomes):
            raise RuntimeError("set-up: an enrollment was refused")


async def shift(deps: Any, lead: float) -> tuple[datetime, datetime]:
    """Move every wait's due time so the first is ``lead`` seconds away; wake-ups enqueued."""
    from sqlalchemy import Interval, bindparam, func, select, update

    from sequences.store.tables import RUNS

    async with deps.engine.begin() as conn:
        first = await conn.scalar(select(func.min(RUNS.c.due_at)))
        delta = first - (datetime.now(UTC) + timedelta(seconds=lead))
        by = bindparam("delta", delta, type_=Interval())
        await conn.execute(update(RUNS).values(due_at=RUNS.c.due_at - by))
        dues = list((await conn.execute(select(RUNS.c.due_at))).scalars())
    await deps.waker.wake_at(dues)
    return min(dues), max(dues)


@dataclass
class Lateness:
    ended: int
    p50: float
    p99: float
    worst: float
    first_end: datetime
    last_end: datetime


async def lateness(db_url: str) -> tuple[Lateness, dict[str, int]]:
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY late),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY late), max(late), min(at), max(at)"
            " FROM (SELECT extract(epoch FROM t.at - r.due_at) AS late, t.at"
            "  FROM step_runs r JOIN timeline t ON t.enrollment_id = r.enrollment_id"
            "  AND t.kind = 'step_done' AND t.step_id = 'hold' WHERE r.step_id = 'hold') AS x"
        )
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM step_runs WHERE state IN ('due', 'claimed')) AS pending,"
            " (SELECT count(*) FROM step_runs WHERE state = 'done') AS done,"
            " (SELECT count(*) FROM enrollments WHERE status = 'completed'"
            "   AND exit_reason = 'waited') AS completed"
        )
    finally:
        await conn.close()
    assert row is not None and counts is not None
    p50, p99, worst = (float(v or 0) for v in row[1:4])
    late = Lateness(int(row[0]), p50, p99, worst, row[4], row[5])
    return late, dict(counts)


async def pending(db_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM step_runs WHERE state IN ('due', 'claimed')"
        )
    finally:
        await conn.close()
    return int(value)


async def run_worker(
    env: dict[str, str], log: Path, last_due: datetime, settle: float, spy: Path | None
) -> float:
    """``dripline worker`` until no row is left (or ``settle`` s after the last due time);
    with ``spy``, py-spy records it meanwhile."""
    dripline = str(Path(sys.executable).parent / "dripline")
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            dripline, "worker", env={**os.environ, **env}, stdout=out, stderr=out
        )
    cpu = ProcessCpu(lambda: [process.pid])
    spying = await spy_on(process.pid, spy) if spy is not None else None
    deadline = last_due + timedelta(seconds=settle)
    try:
        url = env["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
        # Polling another process's progress in the database: there is no event to wait on.
        while datetime.now(UTC) < deadline:
            if datetime.now(UTC) > last_due and not await pending(url):
                break
            await asyncio.sleep(1.0)
        return cpu.seconds()
    finally:
        if spying is not None:
            await spy_stop(spying)
        process.terminate()
        await process.wait()


def report(late: Lateness, counts: dict[str, int], n: int, cpu: float) -> bool:
    span = (late.last_end - late.first_end).total_seconds() or 1.0
    print(f"2. Lateness of {late.ended:,} waits (step_done entry minus the row's due time)")
    print(
        f"   p50 {late.p50 * 1000:.0f} ms, p99 {late.p99 * 1000:.0f} ms, max {late.worst:.2f} s"
        f"  (goal: p99 <= {GOAL_P99_SECONDS:.0f} s; {late.p99 / GOAL_P99_SECONDS:.2f}x of it)"
    )
    print(
        f"   waits ended over {span:.1f} s ({late.ended / span:,.0f}/s); worker CPU "
        f"{cpu / span:.2f} cores ({cpu / late.ended * 1000:.2f} ms per wait); {load_average()}"
    )
    expected = {"pending": 0, "done": n, "completed": n}
    ok = counts == expected and late.ended == n
    print(
        f"3. Checks: {counts} (expected {expected}), {late.ended:,} ended: "
        + ("ok" if ok else "MISMATCH")
    )
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--waits", type=int, default=100_000, help="wait steps scheduled")
    parser.add_argument("--spread", type=float, default=60.0, help="seconds the dues span")
    parser.add_argument("--lead", type=float, default=15.0, help="seconds before the first due")
    parser.add_argument("--settle", type=float, default=180.0, help="seconds allowed after")
    parser.add_argument("--py-spy", type=Path, help="record the worker with py-spy into FILE")
    add_service_arguments(parser, redis_use="flushed")
    return parser.parse_args(argv)


async def run(db: Database, args: argparse.Namespace, data_dir: str) -> bool:
    from sequences.runtime import open_deps
    from sequences.settings import Settings

    relay = "aiosmtpd" if postfix.missing() else "postfix"
    with running_relay(relay) as sink:
        env = settings_env(db, args.redis_url, data_dir, smtp=(sink.host, sink.port))
        settings = Settings.model_validate(env)
        clock = SetClock()
        started = time.perf_counter()
        async with open_deps(settings, redis_url=args.redis_url, clock=clock) as deps:
            await seed(deps, clock, args.waits, args.spread)
            flush_redis(args.redis_url)  # the seeding's wake-ups were for tomorrow
            first, last = await shift(deps, args.lead)
        print(
            f"1. Set-up: {args.waits:,} waits enrolled in {time.perf_counter() - started:.0f} s, "
            f"due from {first:%H:%M:%S.%f}"[:-3]
            + f" to {last:%H:%M:%S} UTC; {load_average()}"
        )
        log = Path(data_dir) / "worker.log"
        cpu = await run_worker(env, log, last, args.settle, args.py_spy)
    late, counts = await lateness(db.url.replace("postgresql+asyncpg://", "postgresql://"))
    ok = report(late, counts, args.waits, cpu)
    if args.py_spy is not None:
        print(f"4. Where the worker's time went (py-spy, saved to {args.py_spy})")
        spy_report(args.py_spy)
    return ok


async def main_async(args: argparse.Namespace) -> bool:
    return await in_own_database(
        f"Dripline timers: {args.waits:,} waits due within {args.spread:.0f} s", args, run
    )


def main(argv: list[str] | None = None) -> int:
    return 0 if asyncio.run(main_async(parse_args(argv))) else 1


if __name__ == "__main__":
    raise SystemExit(main())
