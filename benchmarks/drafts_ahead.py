"""Are emails sent on time when the model is slow? Drafts ahead against a model with a fixed
latency and a requests-per-minute budget, on a real clock.

Run from the repository root::

    .venv/bin/python -m benchmarks.drafts_ahead [--contacts N] [--latency S] [--rpm R]
        [--wait S] [--database-url URL] [--redis-url URL]

The model is the local OpenAI-compatible server (agents.devserver) answering after ``--latency``
seconds: its latency is SIMULATED, and so is every token count. The engine, the database, the
queue and the SMTP relay are real: ``dripline worker`` runs as a subprocess and reaches the
server through the real ``openai`` client under the shared RPM budget (``DRIPLINE_MODEL_RPM``).

Three runs, one after another, each N contacts enrolled at once into ``wait {for: W} -> email``
(so every email is due in the same second, W after enrolling):

- ``enough lead``: ``draft_ahead`` = W, more than N / (RPM / 60) seconds of drafting;
- ``too little lead``: ``draft_ahead`` shorter than the budget needs; the sequence's policy is
  ``late_draft: fallback`` with ``late_draft_wait_seconds: 2``;
- ``drafted when due``: ``draft_ahead: 0``, how every email was drafted before drafts ahead.

For each: p50/p99/max send lateness (the relay's acceptance, ``messages.sent_at``, minus the due
time, the wait row's ``due_at``), how many emails carry the model's copy and how many the
fallback copy, and the model requests the server answered. Checks: every contact got exactly one
email and no row is left due, claimed or ready.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import postfix
from benchmarks.engine_throughput import running_relay
from benchmarks.services import (
    Database,
    add_service_arguments,
    in_own_database,
    load_average,
    settings_env,
)

GOAL_P99_SECONDS = 1.0
SEQUENCE = """
key: {key}
name: Drafts ahead ({key})
sender: {{from: "Dana at Acme <dana@acme.test>"}}
draft_ahead: {lead}
late_draft: fallback
late_draft_wait_seconds: 2
steps:
  - id: pause
    wait: {{for: {wait}s}}
  - id: tips
    email:
      brief: Three tips for getting started with the quickstart guide.
      cta: {{text: Read the tips, url: "https://acme.test/tips"}}
      fallback:
        subject: "Three tips, {{{{ contact.first_name | default('there') }}}}"
        body: "Hi {{{{ contact.first_name | default('there') }}}},\\n\\nHere are three tips."
  - id: done
    exit: {{reason: tips sent}}
"""


class SlowModel:
    """The heuristic stand-in, answering after a fixed latency (simulated)."""

    def __init__(self, latency: float) -> None:
        from agents.devserver import HeuristicResponder

        self.inner = HeuristicResponder()
        self.latency = latency

    def __call__(self, request: dict[str, Any]) -> Any:
        from dataclasses import replace

        return replace(self.inner(request), delay=self.latency)

    @property
    def requests(self) -> int:
        return self.inner.requests


@dataclass
class Outcome:
    name: str
    lead: str
    sent: int
    p50: float
    p99: float
    worst: float
    model_copy: int
    fallback_copy: int
    requests: int
    leftover: int


async def enroll(deps: Any, key: str, lead: str, wait: int, n: int) -> None:
    from sequences.definitions import registry
    from sequences.definitions.loading import parse_definition
    from sequences.engine.bulk import enroll_many
    from sequences.store import contacts

    now = deps.clock.now()
    text = SEQUENCE.format(key=key, lead=lead, wait=wait)
    async with deps.engine.begin() as conn:
        await registry.apply(conn, parse_definition(text), now)
        pinned = await registry.current(conn, key)
    assert pinned is not None
    items = [
        contacts.ContactFields(f"{key}{i}@example.com", attributes={"first_name": f"P{i}"})
        for i in range(n)
    ]
    async with deps.engine.begin() as conn:
        people = await contacts.upsert_many(conn, items, now=now)
        batch = await enroll_many(conn, deps, pinned, people, now=now)
        if any(not isinstance(o, str) for o in batch.outcomes):
            raise RuntimeError("set-up: an enrollment was refused")
    await deps.waker.wake_at(batch.wake)  # what the API does after enrolling


async def measure(url: str, key: str) -> tuple[int, float, float, float, int, int, int]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY late),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY late), max(late),"
            " count(*) FILTER (WHERE NOT fallback), count(*) FILTER (WHERE fallback)"
            " FROM (SELECT extract(epoch FROM m.sent_at - w.due_at) AS late,"
            "  t.detail->>'model' = 'offline-composer' AS fallback"
            "  FROM messages m JOIN step_runs w ON w.enrollment_id = m.enrollment_id"
            "  AND w.step_id = 'pause'"
            "  JOIN enrollments e ON e.id = m.enrollment_id"
            "  JOIN sequences s ON s.id = e.sequence_id AND s.key = $1"
            "  JOIN timeline t ON t.enrollment_id = m.enrollment_id AND t.kind = 'drafted'"
            "  WHERE m.state = 'sent') AS x",
            key,
        )
        leftover = await conn.fetchval(
            "SELECT count(*) FROM step_runs WHERE state IN ('due', 'claimed', 'ready', 'held')"
        )
    finally:
        await conn.close()
    assert row is not None
    return (
        int(row[0]),
        float(row[1] or 0),
        float(row[2] or 0),
        float(row[3] or 0),
        int(row[4]),
        int(row[5]),
        int(leftover),
    )


async def wait_for(url: str, key: str, n: int, deadline: float) -> None:
    """Poll the database until the run's N emails are recorded sent (another process sends
    them: there is no event to wait on), or the deadline passes."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        while time.monotonic() < deadline:
            sent = await conn.fetchval(
                "SELECT count(*) FROM messages m JOIN enrollments e ON e.id = m.enrollment_id"
                " JOIN sequences s ON s.id = e.sequence_id AND s.key = $1"
                " WHERE m.state = 'sent'",
                key,
            )
            if sent >= n:
                return
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def run_one(
    deps: Any, url: str, model: SlowModel, name: str, key: str, lead: str, args: Any
) -> Outcome:
    before = model.requests
    await enroll(deps, key, lead, args.wait, args.contacts)
    await wait_for(url, key, args.contacts, time.monotonic() + args.wait + 180)
    await asyncio.sleep(1.0)  # let the last batch's bookkeeping commit before counting
    sent, p50, p99, worst, ours, fallback, leftover = await measure(url, key)
    return Outcome(
        name, lead, sent, p50, p99, worst, ours, fallback, model.requests - before, leftover
    )


def report(outcome: Outcome, n: int) -> bool:
    ok = outcome.sent == n and outcome.leftover == 0
    print(
        f"   {outcome.name:<17} draft_ahead {outcome.lead:>4}: lateness p50 "
        f"{outcome.p50 * 1000:,.0f} ms, p99 {outcome.p99 * 1000:,.0f} ms, max "
        f"{outcome.worst:.2f} s (goal p99 <= {GOAL_P99_SECONDS:.0f} s: "
        f"{'met' if outcome.p99 <= GOAL_P99_SECONDS else 'not met'}); "
        f"model copy {outcome.model_copy}, fallback copy {outcome.fallback_copy}; "
        f"{outcome.requests} model requests; checks "
        + ("ok" if ok else f"MISMATCH (sent {outcome.sent}, rows left {outcome.leftover})")
    )
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--contacts", type=int, default=100, help="emails due together")
    parser.add_argument("--latency", type=float, default=0.8, help="model latency, seconds")
    parser.add_argument("--rpm", type=float, default=300.0, help="model requests per minute")
    parser.add_argument("--wait", type=int, default=45, help="seconds until the emails are due")
    add_service_arguments(parser, redis_use="flushed")
    return parser.parse_args(argv)


async def run(db: Database, args: argparse.Namespace, data_dir: str) -> bool:
    from agents.devserver import serve_openai
    from sequences.runtime import open_deps
    from sequences.settings import Settings

    per_second = args.rpm / 60
    needed = args.contacts / per_second
    short = max(1, int(needed / 3))
    runs = [
        ("enough lead", "enough", f"{args.wait}s"),
        ("too little lead", "short", f"{short}s"),
        ("drafted when due", "atdue", "0"),
    ]
    print(
        f"   model: local stand-in, latency {args.latency:g} s (simulated), budget "
        f"{args.rpm:g} requests/min = {needed:.0f} s for {args.contacts} drafts; "
        f"emails due {args.wait} s after enrolling"
    )
    model = SlowModel(args.latency)
    relay = "aiosmtpd" if postfix.missing() else "postfix"
    ok = True
    async with serve_openai(model) as model_url:
        with running_relay(relay) as sink:
            env = settings_env(db, args.redis_url, data_dir, smtp=(sink.host, sink.port))
            env |= {
                "OPENAI_BASE_URL": model_url,
                "OPENAI_API_KEY": "local",
                "DRIPLINE_MODEL_RPM": str(args.rpm),
                "DRIPLINE_MODEL_RETRIES": "0",
            }
            settings = Settings.model_validate(env)
            log = Path(data_dir) / "worker.log"
            dripline = str(Path(sys.executable).parent / "dripline")
            with log.open("wb") as out:
                worker = await asyncio.create_subprocess_exec(
                    dripline, "worker", env={**os.environ, **env}, stdout=out, stderr=out
                )
            url = db.url.replace("postgresql+asyncpg://", "postgresql://")
            try:
                async with open_deps(settings, redis_url=args.redis_url) as deps:
                    for name, key, lead in runs:
                        outcome = await run_one(deps, url, model, name, key, lead, args)
                        ok = report(outcome, args.contacts) and ok
            finally:
                worker.terminate()
                await worker.wait()
    print(f"   {load_average()}")
    return ok


async def main_async(args: argparse.Namespace) -> bool:
    heading = f"Dripline drafts ahead: {args.contacts} emails due together, relay + PostgreSQL"
    return await in_own_database(heading, args, run)


def main(argv: list[str] | None = None) -> int:
    return 0 if asyncio.run(main_async(parse_args(argv))) else 1


if __name__ == "__main__":
    raise SystemExit(main())
