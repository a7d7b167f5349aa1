"""How many feedback events per second does the API ingest? ``POST /v1/events`` on PostgreSQL.

Run from the repository root::

    .venv/bin/python -m benchmarks.events_throughput [--contacts N] [--batches N] [--clients N]
        [--workers N] [--profile-batches N] [--profile-out FILE] [--database-url URL]
        [--redis-url URL]

1. Set-up (not measured): a database of its own, ``sequences/examples/adaptive-trial.yaml``
   applied, N contacts enrolled and their first email sent by the worker (``run_due``, the SMTP
   sink, DKIM), so every enrollment waits at ``pause`` (``until: [clicked]``) as in production.
2. Throughput: the API in uvicorn with ``--workers`` processes (API only, no worker), this
   process as the client, posting batches of 100 events (see :mod:`benchmarks.feedback_load`)
   over ``--clients`` connections after a warm-up. Printed: events/s and the ratio to the
   5,000/s goal, batch latency, and the CPU the server, PostgreSQL and the client each used.
3. The database afterwards against what was posted (see :mod:`benchmarks.feedback_checks`).
4. Where a batch's time goes (see :mod:`benchmarks.events_profile`; ``--profile-batches 0``
   skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.engine_throughput import seed, warm_up
from benchmarks.events_profile import profile, report_profile
from benchmarks.feedback_checks import compare, read_counts
from benchmarks.feedback_load import (
    BATCH,
    GOAL_EVENTS_PER_SECOND,
    RETRIES,
    Load,
    Posted,
    Target,
    post,
)
from benchmarks.services import (
    REPO_ROOT,
    ApiServer,
    Database,
    ProcessCpu,
    add_service_arguments,
    api_server,
    in_own_database,
    load_average,
    pids_named,
    settings_env,
)
from benchmarks.sink import MachineCpu, machine_note, running_sink

SEQUENCE_FILE = REPO_ROOT / "sequences/examples/adaptive-trial.yaml"


# ------------------------------------------------------------------------------ 1. set-up


@dataclass
class Setup:
    targets: list[Target]
    key: str
    seconds: float
    postgres: str  # version and the settings that matter here


async def set_up(db: Database, redis_url: str, data_dir: str, n: int) -> Setup:
    """Enroll N contacts in the adaptive trial and let the worker send each its first email."""
    from sqlalchemy import text

    from api.auth import Role, create_key
    from sequences.runner import run_due
    from sequences.runtime import open_deps
    from sequences.settings import Settings

    start = time.perf_counter()
    with running_sink() as sink:
        smtp = (sink.host, sink.port)
        settings = Settings.model_validate(settings_env(db, redis_url, data_dir, smtp=smtp))
        async with open_deps(settings, redis_url=redis_url, smtp=smtp) as deps:
            await warm_up(deps)
            await seed(deps, n, 0, document=SEQUENCE_FILE.read_text())
            while await run_due(deps):
                pass  # each call stops after its time budget; go on until nothing is due
            async with deps.engine.begin() as conn:
                targets = await _targets(conn)
                key = await create_key(conn, "bench", Role.enroll, deps.clock.now())
                shown = [
                    str(await conn.scalar(text(f"SHOW {name}")))
                    for name in ("server_version", "deadlock_timeout", "synchronous_commit")
                ]
                waiting = await _waiting(conn)
    if len(targets) != n or waiting != n:
        raise RuntimeError(f"set-up: {len(targets)} emails sent, {waiting} waiting, expected {n}")
    postgres = f"{shown[0].split()[0]} (deadlock_timeout {shown[1]}, synchronous_commit {shown[2]})"
    return Setup(targets, key, time.perf_counter() - start, postgres)


async def _targets(conn: Any) -> list[Target]:
    from sqlalchemy import select

    from sequences.store.tables import CONTACTS, MESSAGES

    rows = await conn.execute(
        select(MESSAGES.c.id, MESSAGES.c.message_id, MESSAGES.c.contact_id, CONTACTS.c.email)
        .join(CONTACTS, CONTACTS.c.id == MESSAGES.c.contact_id)
        .where(MESSAGES.c.state == "sent")
        .order_by(MESSAGES.c.id)
    )
    return [Target(r.id, r.message_id, r.contact_id, r.email) for r in rows]


async def _waiting(conn: Any) -> int:
    """Active enrollments waiting at ``pause``, their wait's outbox row due later."""
    from sqlalchemy import func, select

    from sequences.store.tables import ENROLLMENTS, RUNS

    count: int = await conn.scalar(
        select(func.count())
        .select_from(ENROLLMENTS.join(RUNS, RUNS.c.enrollment_id == ENROLLMENTS.c.id))
        .where(
            ENROLLMENTS.c.status == "active",
            ENROLLMENTS.c.position == "pause",
            RUNS.c.state == "due",
        )
    )
    return count


# --------------------------------------------------------------------------- 2. throughput


@dataclass
class Measured:
    posted: Posted
    events: int  # events posted in the timed batches, duplicates included
    new: int  # of which new ids
    warmup_events: int
    server_cpu: float
    postgres_cpu: float
    client_cpu: float
    machine: float | None

    @property
    def rate(self) -> float:
        return self.events / self.posted.seconds


async def measure(server: ApiServer, key: str, load: Load, args: argparse.Namespace) -> Measured:
    warm = load.batches(args.warmup)
    await post(server.url, key, warm, args.clients)
    warmup_events, before = args.warmup * BATCH, load.expected.events
    bodies = load.batches(args.batches)
    new = load.expected.events - before
    server_cpu, pg_cpu = ProcessCpu(server.pids), ProcessCpu(lambda: pids_named("postgres"))
    machine, client_cpu = MachineCpu(), time.process_time()
    posted = await post(server.url, key, bodies, args.clients)
    return Measured(
        posted,
        args.batches * BATCH,
        new,
        warmup_events,
        server_cpu.seconds(),
        pg_cpu.seconds(),
        time.process_time() - client_cpu,
        machine.cores_busy(),
    )


# ------------------------------------------------------------------------------- reporting


def report_setup(setup: Setup, db: Database, n: int) -> None:
    print("1. Set-up (not measured)")
    print(f"   database           {db.name}, dropped after the run")
    print(f"   PostgreSQL         {setup.postgres}")
    print(f"   sequence           adaptive-trial ({SEQUENCE_FILE.relative_to(REPO_ROOT)})")
    print(
        f"   first emails       {n:,} contacts enrolled (contacts.upsert + enroll), each sent "
        "the opener by the worker"
    )
    print(
        f"                      (run_due, SMTP sink, DKIM) in {setup.seconds:.1f} s; "
        f"all {n:,} now wait at 'pause' (2d until clicked)"
    )


def report_throughput(m: Measured, args: argparse.Namespace) -> None:
    p = m.posted
    print(f"2. Throughput: POST /v1/events, {BATCH} events per batch")
    print(
        f"   server             uvicorn --workers {args.workers} (uvloop, httptools; access log "
        "off), API only: no worker in it"
    )
    print(
        f"   client             this process, one httpx.AsyncClient, {args.clients} connections;"
        " bodies JSON-encoded before the clock starts"
    )
    print(f"   warm-up            {args.warmup} batches ({m.warmup_events:,} events), not timed")
    print(
        f"   measured           {args.batches} batches = {m.events:,} events ({m.new:,} new ids, "
        f"{m.events - m.new:,} re-posted duplicates) in {p.seconds:.2f} s"
    )
    print(
        f"   events/s: {m.rate:,.0f} ({m.rate / GOAL_EVENTS_PER_SECOND:.2f}x of the "
        f"{GOAL_EVENTS_PER_SECOND:,.0f}/s goal); new events stored/s: {m.new / p.seconds:,.0f}"
    )
    print(
        f"   batch latency      p50 {p.percentile(0.5) * 1000:.0f} ms, "
        f"p95 {p.percentile(0.95) * 1000:.0f} ms, max {max(p.latencies) * 1000:.0f} ms"
    )
    report_answers(p)
    cores = [
        ("server", m.server_cpu),
        ("PostgreSQL", m.postgres_cpu),
        ("client", m.client_cpu),
    ]
    shares = ", ".join(f"{name} {cpu / p.seconds:.2f}" for name, cpu in cores)
    print(f"   CPU (cores busy)   {shares}{machine_note(m.machine)}")


def report_answers(p: Posted) -> None:
    statuses = ", ".join(
        f"{n} x {status or 'no answer'}" for status, n in sorted(p.statuses.items())
    )
    print(f"   responses          {statuses}; accepted {p.accepted:,}, duplicates {p.duplicates:,}")
    if p.retried:
        print(f"     ! {p.retried} batches needed more than one attempt; failed attempts:")
    for failure, n in p.failures.most_common():
        print(f"     ! {n:5} x {failure}")
    if p.statuses[0]:
        print(
            "       (no answer: uvicorn closes a connection after a 500 it logged, so the next "
            "request sent on it is never read)"
        )
    if p.given_up:
        print(f"     ! {p.given_up} batches given up after {RETRIES} retries or a 4xx")


def report_counts(rows: list[tuple[str, int, int]], m: Measured, extra: str) -> bool:
    print("3. The database after warm-up + measured batches, against what was posted")
    ok = True
    for what, found, expected in rows:
        mark = "ok" if found == expected else "MISMATCH"
        ok = ok and found == expected
        print(f"   {what:30} {found:8,}  expected {expected:8,}  {mark}")
    answered = (m.posted.accepted, m.posted.duplicates)
    if answered != (m.new, m.events - m.new):
        ok = False
        print(f"   MISMATCH: the measured batches were answered accepted/duplicates {answered}")
    print(f"   {extra}")
    return ok


# ------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--contacts", type=int, default=2000, help="contacts sent a first email")
    parser.add_argument("--batches", type=int, default=200, help="timed batches of 100 events")
    parser.add_argument("--warmup", type=int, default=20, help="untimed batches first")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument(
        "--profile-batches", type=int, default=50, help="batches per profiling pass (0: none)"
    )
    parser.add_argument("--profile-out", type=Path, help="save the cProfile stats to this file")
    add_service_arguments(parser, redis_use="flushed")
    args = parser.parse_args(argv)
    for name in ("contacts", "batches", "clients", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


async def run(db: Database, args: argparse.Namespace, data_dir: str) -> bool:
    setup = await set_up(db, args.redis_url, data_dir, args.contacts)
    report_setup(setup, db, args.contacts)
    env = settings_env(db, args.redis_url, data_dir)
    load = Load(setup.targets)
    log = Path(data_dir) / "uvicorn.log"
    async with api_server(env, workers=args.workers, log=log) as server:
        measured = await measure(server, setup.key, load, args)
    report_throughput(measured, args)
    failures = server.failures()
    for failure, count in failures.items():
        print(f"   ! the server logged {count} x {failure} (warm-up included)")
    counts = await read_counts(db.url)
    woken = ", ".join(f"{n:,} by {kind}" for kind, n in sorted(counts.woken.items()))
    extra = f"also: {counts.timeline_events:,} timeline event entries; waits woken: {woken}"
    ok = report_counts(compare(counts, load.expected), measured, extra) and not failures
    print(f"   {load_average()} (other work on the machine lowers every figure)")
    if args.profile_batches:
        out = args.profile_out or Path(data_dir) / "profile.pstats"
        log = log.with_name("profiled.log")
        profiled = await profile(env, setup.key, load, args.profile_batches, log, out)
        report_profile(profiled, args.profile_batches)
        if args.profile_out is not None:
            print(f"   profile saved to {args.profile_out} (python -m pstats)")
    return ok


async def main_async(args: argparse.Namespace) -> bool:
    return await in_own_database(
        f"Dripline events throughput, {args.contacts:,} contacts", args, run
    )


def main(argv: list[str] | None = None) -> int:
    return 0 if asyncio.run(main_async(parse_args(argv))) else 1


if __name__ == "__main__":
    raise SystemExit(main())
