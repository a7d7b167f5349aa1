"""Section 4: where a batch's time goes, measured from inside the server.

The server is started again as a single uvicorn process with ``DRIPLINE_BENCH_PROFILE`` set (see
:mod:`benchmarks.api_app`), and batches are posted one at a time, so every figure belongs to one
batch: the wall time at the client, the server's CPU, each statement counted and timed with the
engine function that issued it, the commit, and PostgreSQL's CPU. Then as many batches again
under cProfile: self time by layer, the synchronous steps below, the top functions.
"""

from __future__ import annotations

import os
import pstats
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.api_app import PROFILE_ENV
from benchmarks.feedback_load import BATCH, GOAL_EVENTS_PER_SECOND, Load, Posted, post
from benchmarks.profiling import COMMIT, report_cpu, report_statements
from benchmarks.services import ProcessCpu, api_server, pids_named

# Synchronous work worth timing in a batch (cumulative under cProfile; "path:function").
EVENT_PHASES = (
    ("sqlalchemy/sql/dml.py:values", "Insert.values(rows): a bind parameter built per value"),
    ("sqlalchemy/sql/elements.py:_compile_w_cache", "statement compilation (cached or not)"),
    ("sqlalchemy/engine/default.py:_init_compiled", "parameter processing per execution"),
    ("sequences/intake/resolve.py:_incoming", "intake._incoming (per event, bot check included)"),
    ("sequences/signals/bots.py:bot_reason", "  bots.bot_reason"),
    ("sequences/signals/scores.py:add", "ContactScore.add (decay, affinities)"),
    ("sqlalchemy/engine/url.py:render_as_string", "URL.render_as_string (load_version key)"),
    ("json/__init__.py:dumps", "json.dumps (JSONB parameters, responses)"),
    ("json/__init__.py:loads", "json.loads (JSONB results)"),
)


# ------------------------------------------------------------------------------ 4. profile


@dataclass
class Profiled:
    timed: Posted
    window: dict[str, Any]
    postgres_cpu: float
    profiled: Posted
    stats: pstats.Stats
    failures: Counter[str]  # exceptions the server logged


async def profile(
    env: dict[str, str], key: str, load: Load, n: int, log: Path, out: Path
) -> Profiled:
    """One server process, one batch at a time: a timed window, then a cProfiled one; the
    server's log goes to ``log``, the cProfile stats to ``out``."""
    async with api_server(env | {PROFILE_ENV: str(out)}, workers=1, log=log) as server:
        await post(server.url, key, load.batches(5), 1)  # this process's first requests
        async with httpx.AsyncClient(base_url=server.url) as control:
            pg_cpu = ProcessCpu(lambda: pids_named("postgres"))
            await control.post("/_bench/profile/start")
            timed = await post(server.url, key, load.batches(n), 1)
            window = (await control.post("/_bench/profile/stop")).json()
            postgres_cpu = pg_cpu.seconds()
            await control.post("/_bench/profile/start", params={"cprofile": "true"})
            profiled = await post(server.url, key, load.batches(n), 1)
            await control.post("/_bench/profile/stop")
    failures = server.failures()
    return Profiled(timed, window, postgres_cpu, profiled, pstats.Stats(str(out)), failures)


def report_profile(p: Profiled, n: int) -> None:
    w, t = p.window, p.timed
    print(f"4. Where a batch's time goes: one server process, one batch at a time, {n} batches")
    wall = t.seconds / n * 1000
    statements = sum(w["statements"].values())
    db_ms = sum(w["statement_seconds"].values()) / n * 1000
    print(
        f"   wall per batch     {wall:.1f} ms at the client ({n * BATCH / t.seconds:,.0f} events/s "
        f"sequential); p50 {t.percentile(0.5) * 1000:.1f} ms"
    )
    server_ms, pg_ms = w["cpu_seconds"] / n * 1000, p.postgres_cpu / n * 1000
    print(f"   server CPU         {server_ms:.1f} ms per batch (user + system, all of its work)")
    print(
        f"   database           {statements / n:.1f} statements per batch (1 on the API key's "
        f"connection) and 1 commit: {db_ms:.1f} ms"
    )
    print(
        "                      from each statement's start to its result, driver included "
        f"(commit {w['statement_seconds'].get(COMMIT, 0.0) / n * 1000:.1f} ms); PostgreSQL CPU "
        f"{pg_ms:.1f} ms per batch"
    )
    cores = os.cpu_count() or 1
    ceiling = cores / ((server_ms + pg_ms) / 1000) * BATCH
    budget = cores / (GOAL_EVENTS_PER_SECOND / BATCH) * 1000
    print(
        f"   CPU ceiling        {cores} cores / {server_ms + pg_ms:.0f} ms per batch = "
        f"{ceiling:,.0f} events/s if nothing waited; the goal leaves {budget:.0f} ms per batch"
    )
    print(
        f"   per batch          {w['begins'] / n:.2f} transactions, {w['checkouts'] / n:.2f} "
        f"pool checkouts, {w['connects']} new connections"
    )
    for failure, count in p.failures.items():
        print(f"   ! the server logged {count} x {failure}")
    report_statements(w["statements"], n, "batch", w["statement_seconds"])
    rate = n * BATCH / p.profiled.seconds
    print(f"   Under cProfile ({rate:,.0f} events/s; read the shares, not the milliseconds)")
    report_cpu(p.stats, n, "batch", EVENT_PHASES, "Synchronous work")
