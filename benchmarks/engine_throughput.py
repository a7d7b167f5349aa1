"""How fast does one worker send? The SMTP sink's ceiling, then sends/s through the engine.

Run from the repository root::

    .venv/bin/python -m benchmarks.engine_throughput [--messages N] [--database-url URL]
        [--redis-url URL] [--profile] [--profile-out FILE] [--skip-sink]
        [--sink postfix|aiosmtpd]

Needs PostgreSQL and Redis (the same services the tests use). ``--database-url`` is a server
URL to connect to for maintenance (default: the tests' ``postgresql://postgres@127.0.0.1:5432
/test``); the benchmark creates a database of its own there and drops it at the end.
``--redis-url`` names a Redis database that is flushed before and after (default: db 3).

What it prints:

1. The SMTP ceiling: postfix's ``smtp-source`` into ``smtp-sink``, the relay of the run (see
   :mod:`benchmarks.postfix`); with ``--sink aiosmtpd``, the old SinkServer and our own client
   (see :mod:`benchmarks.sink`).
2. Engine sends/s (this module): one worker (``sequences.runner.run_due``) over PostgreSQL and
   Redis, the same sink, DKIM on, copy from the offline composer, the rate limit far above the
   load. N contacts are enrolled in a one-email sequence through the engine's own
   ``contacts.upsert`` and ``enrollments.enroll``; the time to drain every due row is
   measured, then the sink's count and the messages' states are checked.
3. With ``--profile``: a second, profiled drain (see :mod:`benchmarks.profiling`).

The machine has 2 cores shared by the worker, the sink, PostgreSQL and anything else running;
each section prints the CPU it saw, so run it a few times and compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from benchmarks import postfix, scale_out
from benchmarks.postfix import PostfixSink, SourceResult, measure_source, report_source
from benchmarks.profiling import QueryCounter, report_profile
from benchmarks.services import (
    add_service_arguments,
    create_database,
    drop_database,
    flush_redis,
    load_average,
    settings_env,
)
from benchmarks.sink import (
    SENDER,
    MachineCpu,
    SinkProcess,
    SinkResult,
    machine_note,
    measure_sink,
    prebuilt_messages,
    report_sink,
    running_sink,
)

GOAL_SENDS_PER_SECOND = 1000.0
Sink = SinkProcess | PostfixSink
Ceiling = SinkResult | SourceResult
SEED_BATCH = 250  # enrollments per seeding transaction
SEED_PARALLEL = 4  # seeding transactions at once

SEQUENCE_KEY = "bench-welcome"
SEQUENCE = f"""
key: {SEQUENCE_KEY}
name: Benchmark welcome
sender: {{from: "{SENDER}", reply_to: "help@acme.test"}}
approval: never
layout: basic
steps:
  - id: welcome
    email:
      brief: Welcome them to their trial and point them to the quickstart.
      cta: {{text: Open the quickstart, url: "https://acme.test/quickstart"}}
      fallback:
        subject: "Welcome to Acme, {{{{ contact.first_name | default('there') }}}}"
        preheader: Your trial is ready. The quickstart takes five minutes.
        body: |
          Hi {{{{ contact.first_name | default('there') }}}},

          Your Acme trial is ready. The quickest way to see what it can do is the
          five-minute quickstart: it connects your first data source and builds
          your first dashboard.

          If anything is unclear, just reply to this email.

          {{{{ sender.name | default('The Acme team') }}}}
"""


# ----------------------------------------------------------------------- 2. engine throughput


@dataclass
class EngineResult:
    messages: int
    seconds: float
    cpu: float
    sink_cpu: float
    machine: float | None
    seed_seconds: float
    queries: QueryCounter
    profile: pstats.Stats | None = None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


async def seed(deps: Any, n: int, offset: int, document: str = SEQUENCE) -> None:
    """Apply the sequence (a no-op after the first time) and enroll N new contacts."""
    from sequences.definitions import registry
    from sequences.definitions.loading import parse_definition
    from sequences.engine.enrollments import enroll
    from sequences.store import contacts

    now = deps.clock.now()
    definition = parse_definition(document)
    async with deps.engine.begin() as conn:
        await registry.apply(conn, definition, now)
        pinned = await registry.current(conn, definition.key)
    assert pinned is not None

    async def batch(start: int, stop: int) -> None:
        async with deps.engine.begin() as conn:
            for i in range(start, stop):
                ref = await contacts.upsert(
                    conn,
                    f"lead{i}@example.com",
                    now=now,
                    attributes={"first_name": f"Lead{i}", "plan": "trial"},
                )
                await enroll(conn, deps, pinned, ref.id, ref.email_key, now=now)

    limit = asyncio.Semaphore(SEED_PARALLEL)

    async def bounded(start: int, stop: int) -> None:
        async with limit:
            await batch(start, stop)

    await asyncio.gather(
        *(
            bounded(start, min(start + SEED_BATCH, offset + n))
            for start in range(offset, offset + n, SEED_BATCH)
        )
    )


async def warm_up(deps: Any) -> None:
    """Compile the MJML layout once, as a long-running worker has long done."""
    from sequences.mail.render import EmailCopy

    deps.renderer.render(
        "basic",
        EmailCopy("warm-up", "", ("warm-up",), None, None),
        unsubscribe_url="http://dripline.test/u/x",
        pixel_url=None,
        sender_line="warm-up",
    )


async def verify(deps: Any, sink: Sink, sink_before: int, n: int, total: int) -> None:
    from sqlalchemy import func, select

    from sequences.store.tables import ENROLLMENTS, MESSAGES, RUNS

    counted = sink.count() - sink_before
    async with deps.reader.connect() as conn:
        grouped = select(MESSAGES.c.state, func.count()).group_by(MESSAGES.c.state)
        states: dict[str, int] = {state: count for state, count in await conn.execute(grouped)}
        pending = await conn.scalar(
            select(func.count()).where(RUNS.c.state.in_(["due", "claimed"]))
        )
        active = await conn.scalar(select(func.count()).where(ENROLLMENTS.c.status == "active"))
    problems = []
    if counted != n:
        problems.append(f"the sink counted {counted} messages, expected {n}")
    if states != {"sent": total}:
        problems.append(f"message states {states}, expected {{'sent': {total}}}")
    if pending or active:
        problems.append(f"{pending} runs still due or claimed, {active} enrollments active")
    if problems:
        raise RuntimeError("; ".join(problems))


async def drain(deps: Any, sink: Sink, n: int, offset: int, *, profile: bool) -> EngineResult:
    from sequences.runner import run_due

    start = time.perf_counter()
    await seed(deps, n, offset)
    seed_seconds = time.perf_counter() - start
    sink_before, sink_cpu = sink.count(), sink.cpu_seconds()
    queries = QueryCounter(deps.engine, count_statements=profile)
    profiler = cProfile.Profile() if profile else None
    machine = MachineCpu()
    cpu, start = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    try:
        ran = await run_due(deps)
    finally:
        if profiler is not None:
            profiler.disable()
        queries.close()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    busy = machine.cores_busy()
    sink_cpu = sink.cpu_seconds() - sink_cpu
    if ran != n:
        raise RuntimeError(f"run_due ran {ran} rows, expected {n}")
    await verify(deps, sink, sink_before, n, offset + n)
    stats = pstats.Stats(profiler) if profiler is not None else None
    return EngineResult(n, seconds, cpu, sink_cpu, busy, seed_seconds, queries, stats)


async def measure_engine(
    sink: Sink,
    n: int,
    admin_url: str,
    redis_url: str,
    *,
    profile: bool,
    workers: int = 1,
    relay_delay_ms: float = 0.0,
) -> tuple[list[EngineResult], list[scale_out.Phase], list[scale_out.Phase]]:
    from sequences.runtime import open_deps, settle_heap
    from sequences.settings import Settings

    db = await create_database(admin_url)
    flush_redis(redis_url)
    try:
        with tempfile.TemporaryDirectory(prefix="dripline-bench-") as data_dir:
            env = settings_env(db, redis_url, data_dir, smtp=(sink.host, sink.port))
            settings = Settings.model_validate(env)
            async with open_deps(
                settings, redis_url=redis_url, smtp=(sink.host, sink.port)
            ) as deps:
                if deps.signers is None or deps.limiter is None:
                    raise RuntimeError("open_deps built no DKIM signers or rate limiter")
                await warm_up(deps)
                settle_heap()  # as `dripline worker` does
                results = [await drain(deps, sink, n, 0, profile=False)]
                if profile:
                    results.append(await drain(deps, sink, n, n, profile=True))
                phases: list[scale_out.Phase] = []
                for processes in sorted({1, workers}) if workers > 1 else []:
                    offset = n * (len(results) + len(phases))
                    await seed(deps, n, offset)
                    before = sink.count()
                    seconds, cpu, ran = await scale_out.run_phase(
                        env | {"REDIS_URL": redis_url}, processes
                    )
                    await verify(deps, sink, before, n, offset + n)
                    phases.append(scale_out.Phase(processes, n, seconds, cpu, ran))
                remote: list[scale_out.Phase] = []
                for hide in (False, True) if relay_delay_ms > 0 else ():
                    offset = n * (len(results) + len(phases) + len(remote))
                    await seed(deps, n, offset)
                    before = sink.count()
                    async with slow_relay_process(sink, relay_delay_ms, hide) as port:
                        far = env | {"REDIS_URL": redis_url, "SMTP_PORT": str(port)}
                        seconds, cpu, ran = await scale_out.run_phase(far, 1)
                    await verify(deps, sink, before, n, offset + n)
                    remote.append(scale_out.Phase(1, n, seconds, cpu, ran))
                return results, phases, remote
    finally:
        await drop_database(db)
        flush_redis(redis_url)


@asynccontextmanager
async def slow_relay_process(sink: Sink, delay_ms: float, hide: bool) -> AsyncIterator[int]:
    """benchmarks.slow_relay in front of the sink; yields the port it listens on."""
    args = [sink.host, str(sink.port), str(delay_ms)] + (["--hide-pipelining"] if hide else [])
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.slow_relay", *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = (await child.stdout.readline()).decode()
        if not line.startswith("port "):
            raise RuntimeError(f"the slow relay did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        child.terminate()
        await child.wait()


def report_remote(phases: list[scale_out.Phase], delay_ms: float) -> None:
    print(
        f"4. A relay {delay_ms:g} ms away (benchmarks.slow_relay holds each chunk {delay_ms / 2:g}"
        " ms each way: simulated latency; the sends, the relay and the checks are real)"
    )
    for phase, how in zip(phases, ("PIPELINING offered", "PIPELINING hidden"), strict=True):
        print(
            f"   {how:<18} {phase.rate:,.0f} sends/s ({phase.messages} in {phase.seconds:.2f} s,"
            f" one worker process); worker CPU {phase.cpu / phase.messages * 1000:.2f} ms per send"
        )
    print(f"   pipelined / not    {phases[0].rate / phases[1].rate:.2f}x")


# ------------------------------------------------------------------------------- reporting


def report_engine(result: EngineResult, sink: Ceiling | None) -> None:
    print("2. Engine throughput (one worker: run_due over PostgreSQL + Redis, DKIM on)")
    print(f"   seeded             {result.messages} enrollments in {result.seed_seconds:.1f} s")
    print(f"   drain              {result.seconds:.2f} s, all {result.messages} sent and counted")
    print(f"   rate               {result.rate:,.0f} sends/s")
    print(f"   vs goal            {result.rate / GOAL_SENDS_PER_SECOND:.2f}x of 1,000 sends/s")
    if sink is not None:
        source = "smtp-source" if isinstance(sink, SourceResult) else "our client into the sink"
        print(
            f"   vs SMTP ceiling    {result.rate / sink.rate:.2f}x of {sink.rate:,.0f} msgs/s "
            f"({source})"
        )
    print(
        f"   CPU                worker {result.cpu / result.seconds:.0%} of a core, "
        f"sink {result.sink_cpu / result.seconds:.0%}{machine_note(result.machine)}"
    )
    print(f"   worker CPU         {result.cpu / result.messages * 1000:.2f} ms per send")
    q = result.queries
    print(
        f"   database pool      {q.checkouts / result.messages:.1f} checkouts per send, "
        f"{q.connects} new connections opened during the drain"
    )


# ------------------------------------------------------------------------------------ main


@contextmanager
def running_relay(kind: str) -> Iterator[Sink]:
    if kind == "aiosmtpd":
        with running_sink() as sink:
            yield sink
        return
    relay = PostfixSink()
    try:
        yield relay
    finally:
        relay.stop()


async def measure_ceiling(sink: Sink, n: int) -> Ceiling:
    """smtp-source into smtp-sink, with messages of the engine's size; or, on aiosmtpd, our
    own client into it (that sink is slower than our client, so it is the ceiling there)."""
    if isinstance(sink, SinkProcess):
        result = await measure_sink(sink, n)
        report_sink(result)
        return result
    sample = prebuilt_messages(20)
    size = sum(len(data) for _, data in sample) // len(sample)
    source = measure_source(sink, n, size)
    report_source(source)
    return source


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--messages", type=int, default=2000, help="messages per phase")
    add_service_arguments(parser, redis_use="flushed")
    parser.add_argument("--profile", action="store_true", help="add a profiled drain")
    parser.add_argument(
        "--profile-out", type=Path, help="also save the profile (pstats format) to this file"
    )
    parser.add_argument("--skip-sink", action="store_true", help="skip the SMTP ceiling")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="then drain N more in 1 and in this many worker processes (1: skip)",
    )
    parser.add_argument(
        "--relay-delay-ms",
        type=float,
        default=0.0,
        help="then drain N more through a relay this far away, with and without PIPELINING",
    )
    parser.add_argument(
        "--sink",
        choices=["postfix", "aiosmtpd"],
        default="postfix",
        help="the relay: postfix's smtp-sink (default) or the tests' aiosmtpd SinkServer",
    )
    args = parser.parse_args(argv)
    args.profile = args.profile or args.profile_out is not None
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    if args.sink == "postfix" and (why := postfix.missing()):
        parser.error(f"{why} (or pass --sink aiosmtpd)")
    return args


async def main_async(args: argparse.Namespace) -> None:
    n = args.messages
    started = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"Dripline engine throughput, N={n}, {os.cpu_count()} CPUs, {started}, {load_average()}")
    with running_relay(args.sink) as sink:
        ceiling: Ceiling | None = None
        if not args.skip_sink:
            ceiling = await measure_ceiling(sink, n)
        results, phases, remote = await measure_engine(
            sink,
            n,
            args.database_url,
            args.redis_url,
            profile=args.profile,
            workers=args.workers,
            relay_delay_ms=args.relay_delay_ms,
        )
        report_engine(results[0], ceiling)
        print(f"   {load_average()} (other work on the machine lowers every figure)")
        if phases:
            scale_out.report(phases, ceiling)
            print(f"   {load_average()}")
        if remote:
            report_remote(remote, args.relay_delay_ms)
        if args.profile:
            profile = results[1].profile
            assert profile is not None
            report_profile(profile, results[1].queries, results[1].messages, results[1].rate)
            if args.profile_out is not None:
                profile.dump_stats(args.profile_out)
                print(f"   profile saved to {args.profile_out} (python -m pstats)")


def main(argv: list[str] | None = None) -> int:
    uvloop.run(main_async(parse_args(argv)))  # the loop `dripline worker` runs on
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
