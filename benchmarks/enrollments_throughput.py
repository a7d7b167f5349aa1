"""How fast does the API enroll? ``POST /v1/enrollments`` and ``/v1/enrollments/bulk``.

Run from the repository root::

    .venv/bin/python -m benchmarks.enrollments_throughput [--singles N] [--clients N]
        [--bulk-requests N] [--bulk-size N] [--bulk-parallel N] [--profile-requests N]
        [--profile-out FILE] [--database-url URL] [--redis-url URL]

The API runs as one uvicorn process (``benchmarks.api_app``, no worker in it) over a PostgreSQL
database of its own; ``sequences/examples/hello.yaml`` is applied, so each enrollment's first
row is an email due at once (and the API wakes a worker through Redis, as in production).

1. Single enrollments: ``--singles`` requests, each a new contact with an Idempotency-Key, from
   ``--clients`` concurrent connections (goal: 500/s with p99 at most 100 ms at 16 clients).
2. Bulk: ``--bulk-requests`` requests of ``--bulk-size`` new contacts, ``--bulk-parallel`` at a
   time (goal: 5,000 contacts/s at 500 per request, 4 at a time).
3. Checks: every answer a 201 (or 207 with every item created), a re-post of some singles with
   their keys answers 200 with the same enrollment, and the database holds one active
   enrollment, one due outbox row and one ``enrolled`` entry per contact.
4. Where a single enrollment's time goes: the server restarted with the profiling routes,
   ``--profile-requests`` posted one at a time, statements per request (and with
   ``--profile-out``, cProfile's top functions).
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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

GOAL_SINGLES = 500.0
GOAL_P99_MS = 100.0
GOAL_BULK = 5000.0
SEQUENCE_FILE = REPO_ROOT / "sequences/examples/hello.yaml"
Job = tuple[str, dict[str, Any], str | None]  # path, body, Idempotency-Key


async def set_up(db: Database, redis_url: str, data_dir: str) -> str:
    """Migrations (through open_deps), the sequence applied, an enroll key."""
    from api.auth import Role, create_key
    from sequences.definitions import registry
    from sequences.definitions.loading import parse_definition
    from sequences.runtime import open_deps
    from sequences.settings import Settings

    settings = Settings.model_validate(settings_env(db, redis_url, data_dir))
    async with open_deps(settings, redis_url=redis_url) as deps, deps.engine.begin() as conn:
        now = deps.clock.now()
        await registry.apply(conn, parse_definition(SEQUENCE_FILE.read_text()), now)
        key: str = await create_key(conn, "bench", Role.enroll, now)
    return key


@dataclass
class Timed:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # idempotency key -> enrollment id
    created: int = 0
    server_cpu: float = 0.0
    postgres_cpu: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _single(n: int) -> tuple[str, dict[str, Any]]:
    body = {
        "sequence": "hello",
        "contact": {
            "email": f"single{n}@example.com",
            "timezone": "Europe/London",
            "attributes": {"first_name": f"Lead{n}", "plan": "team"},
        },
    }
    return f"signup-{n}", body


async def _post_all(
    server: ApiServer,
    headers: dict[str, str],
    jobs: Sequence[Job],
    clients: int,
) -> Timed:
    """POST each (path, body, idempotency key) over ``clients`` connections, timed."""
    timed = Timed()
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            while not queue.empty():
                path, body, key = queue.get_nowait()
                extra = {"Idempotency-Key": key} if key else {}
                start = time.perf_counter()
                response = await client.post(path, json=body, headers=headers | extra)
                timed.latencies.append(time.perf_counter() - start)
                timed.statuses[response.status_code] = (
                    timed.statuses.get(response.status_code, 0) + 1
                )
                answer = response.json()
                if key and "id" in answer:
                    timed.ids[key] = answer["id"]
                timed.created += answer.get("created", 1 if response.status_code == 201 else 0)

        server_cpu, pg_cpu = ProcessCpu(server.pids), ProcessCpu(lambda: pids_named("postgres"))
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        timed.seconds = time.perf_counter() - start
        timed.server_cpu, timed.postgres_cpu = server_cpu.seconds(), pg_cpu.seconds()
    return timed


async def measure_singles(
    server: ApiServer, headers: dict[str, str], n: int, clients: int
) -> Timed:
    warm = [("/v1/enrollments", body, key) for key, body in map(_single, range(n, n + 50))]
    await _post_all(server, headers, warm, clients)
    jobs = [("/v1/enrollments", body, key) for key, body in map(_single, range(n))]
    return await _post_all(server, headers, jobs, clients)


async def measure_bulk(
    server: ApiServer, headers: dict[str, str], requests: int, size: int, parallel: int
) -> Timed:
    jobs: list[Job] = []
    for r in range(requests):
        people = [
            {"email": f"bulk{r}-{i}@example.com", "attributes": {"first_name": f"B{i}"}}
            for i in range(size)
        ]
        jobs.append(("/v1/enrollments/bulk", {"sequence": "hello", "contacts": people}, None))
    return await _post_all(server, headers, jobs, parallel)


async def replays(server: ApiServer, headers: dict[str, str], singles: Timed) -> list[str]:
    """Re-post ten singles with their keys: each must answer 200 with the same enrollment."""
    problems = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        for n in range(0, len(singles.ids), max(1, len(singles.ids) // 10)):
            key, body = _single(n)
            response = await client.post(
                "/v1/enrollments", json=body, headers=headers | {"Idempotency-Key": key}
            )
            if response.status_code != 200 or response.json()["id"] != singles.ids.get(key):
                problems.append(f"replay of {key}: {response.status_code}")
    return problems


async def counts(db: Database) -> tuple[int, int, int]:
    import asyncpg

    conn = await asyncpg.connect(f"{db.admin_url.rsplit('/', 1)[0]}/{db.name}")
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM enrollments WHERE status = 'active'),"
            " (SELECT count(*) FROM step_runs WHERE state = 'due'),"
            " (SELECT count(*) FROM timeline WHERE kind = 'enrolled')"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


# ------------------------------------------------------------------------------- profiling


async def profile(env: dict[str, str], key: str, n: int, log: Path, out: Path | None) -> None:
    """Singles one at a time in a measured window: statements per request, cProfile's top."""
    from benchmarks.api_app import PROFILE_ENV

    target = out or log.with_name("enroll.pstats")
    server_env = env | {PROFILE_ENV: str(target)}
    async with (
        api_server(server_env, workers=1, log=log) as server,
        httpx.AsyncClient(base_url=server.url, timeout=60) as client,
    ):

        async def one(number: int) -> None:
            idempotency, body = _single(number)
            headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency}
            await client.post("/v1/enrollments", json=body, headers=headers)

        for number in range(900_000, 900_010):  # warm-up
            await one(number)
        await client.post("/_bench/profile/start", params={"cprofile": out is not None})
        for number in range(800_000, 800_000 + n):
            await one(number)
        window = (await client.post("/_bench/profile/stop")).json()
    statements = sum(window["statements"].values())
    print(f"4. One single enrollment's cost ({n} posted one at a time, server-side window)")
    print(
        f"   per request        {window['cpu_seconds'] / n * 1000:.2f} ms server CPU, "
        f"{window['wall_seconds'] / n * 1000:.2f} ms wall, {statements / n:.1f} statements, "
        f"{window['begins'] / n:.1f} transactions, {window['checkouts'] / n:.1f} pool checkouts"
    )
    for where, count in window["statements"].items():
        seconds = window["statement_seconds"].get(where, 0.0)
        print(f"   {count / n:5.1f} x {seconds / count * 1000:6.2f} ms  {where[:110]}")
    if out is not None:
        print("   cProfile, top 15 by cumulative time (saved to", out, ")")
        stats = pstats.Stats(str(out))
        stats.sort_stats("cumulative").print_stats(15)


# ------------------------------------------------------------------------------- reporting


def report(singles: Timed, bulk: Timed, args: argparse.Namespace) -> None:
    rate = len(singles.latencies) / singles.seconds
    p99 = singles.percentile(0.99) * 1000
    print(f"1. POST /v1/enrollments, {args.singles} new contacts, {args.clients} clients")
    print(f"   answers            {singles.statuses}")
    print(
        f"   rate               {rate:,.0f} requests/s ({rate / GOAL_SINGLES:.2f}x of the "
        f"{GOAL_SINGLES:,.0f}/s goal)"
    )
    print(
        f"   latency            p50 {singles.percentile(0.5) * 1000:.0f} ms, p99 {p99:.0f} ms "
        f"(goal <= {GOAL_P99_MS:.0f} ms)"
    )
    print(
        f"   CPU (cores busy)   server {singles.server_cpu / singles.seconds:.2f}, "
        f"PostgreSQL {singles.postgres_cpu / singles.seconds:.2f}; {load_average()}"
    )
    contacts = bulk.created / bulk.seconds
    print(
        f"2. POST /v1/enrollments/bulk, {args.bulk_requests} x {args.bulk_size} contacts, "
        f"{args.bulk_parallel} at a time"
    )
    print(f"   answers            {bulk.statuses}, {bulk.created:,} created")
    print(
        f"   rate               {contacts:,.0f} contacts/s ({contacts / GOAL_BULK:.2f}x of the "
        f"{GOAL_BULK:,.0f}/s goal); {bulk.percentile(0.5):.2f} s per request (p50)"
    )
    print(
        f"   CPU (cores busy)   server {bulk.server_cpu / bulk.seconds:.2f}, "
        f"PostgreSQL {bulk.postgres_cpu / bulk.seconds:.2f}; {load_average()}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--singles", type=int, default=2000, help="single enrollments, timed")
    parser.add_argument("--clients", type=int, default=16, help="concurrent single clients")
    parser.add_argument("--bulk-requests", type=int, default=20, help="bulk requests, timed")
    parser.add_argument("--bulk-size", type=int, default=500, help="contacts per bulk request")
    parser.add_argument("--bulk-parallel", type=int, default=4, help="bulk requests at a time")
    parser.add_argument("--profile-requests", type=int, default=200, help="0: no profile")
    parser.add_argument("--profile-out", type=Path, help="also run cProfile, saved here")
    add_service_arguments(parser, redis_use="flushed")
    return parser.parse_args(argv)


async def run(db: Database, args: argparse.Namespace, data_dir: str) -> bool:
    key = await set_up(db, args.redis_url, data_dir)
    env = settings_env(db, args.redis_url, data_dir)
    headers = {"Authorization": f"Bearer {key}"}
    async with api_server(env, workers=1, log=Path(data_dir) / "uvicorn.log") as server:
        singles = await measure_singles(server, headers, args.singles, args.clients)
        bulk = await measure_bulk(
            server, headers, args.bulk_requests, args.bulk_size, args.bulk_parallel
        )
        problems = await replays(server, headers, singles)
        failures = server.failures()
    report(singles, bulk, args)
    expected = args.singles + 50 + args.bulk_requests * args.bulk_size
    found = await counts(db)
    print("3. Checks")
    print(f"   active, due rows, 'enrolled' entries: {found}, expected {expected} each")
    if found != (expected,) * 3:
        problems.append("MISMATCH in the counts")
    if set(singles.statuses) != {201} or set(bulk.statuses) != {207}:
        problems.append("an answer other than 201 / 207")
    if bulk.created != args.bulk_requests * args.bulk_size:
        problems.append(f"bulk created {bulk.created}")
    problems += [f"the server logged {n} x {what}" for what, n in failures.items()]
    print(
        "   " + ("; ".join(problems) if problems else "ok: replays answered 200 with the same ids")
    )
    if args.profile_requests:
        log = Path(data_dir) / "profiled.log"
        await profile(env, key, args.profile_requests, log, args.profile_out)
    return not problems


async def main_async(args: argparse.Namespace) -> bool:
    return await in_own_database("Dripline enrollment throughput", args, run)


def main(argv: list[str] | None = None) -> int:
    return 0 if asyncio.run(main_async(parse_args(argv))) else 1


if __name__ == "__main__":
    raise SystemExit(main())
