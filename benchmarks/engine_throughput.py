"""How fast does one worker send? The SMTP sink's ceiling, then sends/s through the engine.

Run from the repository root::

    .venv/bin/python benchmarks/engine_throughput.py [--messages N] [--database-url URL]
        [--redis-url URL] [--profile] [--profile-out FILE] [--skip-sink]

Needs PostgreSQL and Redis (the same services the tests use). ``--database-url`` is a server
URL to connect to for maintenance (default: the tests' ``postgresql://postgres@127.0.0.1:5432
/test``); the benchmark creates a database of its own there and drops it at the end.
``--redis-url`` names a Redis database that is flushed before and after (default: db 3).

What it prints:

1. The SMTP sink's own ceiling: a :class:`SinkServer` in a separate process (multiprocessing,
   spawn), and this process pushing N pre-built, DKIM-signed messages through
   :class:`SmtpMailer` (pool of 8, 64 concurrent sends). Nothing but the SMTP path is timed.
2. Engine sends/s: one worker (``sequences.runner.run_due``) over PostgreSQL and Redis, the same
   sink, DKIM on, copy from the offline composer, the rate limit far above the load. N contacts
   are enrolled in a one-email sequence through the engine's own ``contacts.upsert`` and
   ``enrollments.enroll``; the time to drain every due row is measured, then the sink's count
   and the messages' states are checked.
3. With ``--profile``: a second, profiled drain of N more enrollments (cProfile, so slower than
   the timed one): statements per send with the engine function that issued each, transactions
   and pool checkouts per send, CPU self time by layer, the synchronous engine steps (copy,
   render, MIME, DKIM) and the top functions.

The machine has 2 cores shared by the worker, the sink, PostgreSQL and anything else running;
each section prints the CPU it saw, so run it a few times and compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import multiprocessing
import os
import pstats
import re
import resource
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

GOAL_SENDS_PER_SECOND = 1000.0
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/3"
SMTP_POOL = 8
CLIENT_CONCURRENCY = 64
SEED_BATCH = 250  # enrollments per seeding transaction
SEED_PARALLEL = 4  # seeding transactions at once

SENDER = "Dana at Acme <dana@acme.test>"
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


# --------------------------------------------------------------------------- the sink process


def _sink_main(conn: Connection) -> None:
    """Child process: run a SinkServer and answer "count" / "cpu" / "stop" over the pipe."""
    from sequences.mail.capture import SinkServer

    with SinkServer() as sink:
        conn.send((sink.host, sink.port))
        while True:
            command = conn.recv()
            if command == "count":
                conn.send(sink.count)
            elif command == "cpu":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                conn.send(usage.ru_utime + usage.ru_stime)
            else:
                break
    conn.close()


class SinkProcess:
    """A SinkServer in a spawned process, so its event loop does not share our GIL."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process: BaseProcess = context.Process(
            target=_sink_main, args=(child,), name="smtp-sink", daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(30):
            self._process.kill()
            raise RuntimeError("the sink process did not start within 30 s")
        self.host, self.port = self._conn.recv()

    def _ask(self, command: str) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def count(self) -> int:
        value: int = self._ask("count")
        return value

    def cpu_seconds(self) -> float:
        value: float = self._ask("cpu")
        return value

    def stop(self) -> None:
        with suppress(BrokenPipeError, OSError):
            self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()


# ------------------------------------------------------------------------- 1. sink ceiling


class MachineCpu:
    """Cores busy (all processes: PostgreSQL, Redis, the sink, anyone's tests) since creation."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None  # not Linux: the figure is left out
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def cores_busy(self) -> float | None:
        end = self._read()
        if self._start is None or end is None or end[1] == self._start[1]:
            return None
        busy, total = end[0] - self._start[0], end[1] - self._start[1]
        return busy / total * (os.cpu_count() or 1)


def prebuilt_messages(n: int) -> list[tuple[str, bytes]]:
    """N distinct, DKIM-signed messages shaped like the engine's (same layout and copy)."""
    from sequences.mail.dkim import DkimSigner, generate_private_key_pem
    from sequences.mail.mime import OutgoingEmail, build_message, make_message_id
    from sequences.mail.render import EmailCopy, LayoutRenderer

    renderer = LayoutRenderer()
    signer = DkimSigner(generate_private_key_pem(), "acme.test", "dripline")
    base = "http://dripline.test"
    messages: list[tuple[str, bytes]] = []
    for i in range(n):
        token = secrets.token_urlsafe(16)
        to_addr = f"lead{i}@example.com"
        copy = EmailCopy(
            subject=f"Welcome to Acme, Lead{i}",
            preheader="Your trial is ready. The quickstart takes five minutes.",
            paragraphs=(
                f"Hi Lead{i},",
                "Your Acme trial is ready. The quickest way to see what it can do is the "
                "five-minute quickstart: it connects your first data source and builds your "
                "first dashboard.",
                "If anything is unclear, just reply to this email.",
                "Dana at Acme",
            ),
            cta_text="Open the quickstart",
            cta_url=f"{base}/t/c/{secrets.token_urlsafe(12)}",
        )
        rendered = renderer.render(
            "basic",
            copy,
            unsubscribe_url=f"{base}/u/{token}",
            pixel_url=f"{base}/t/o/{token}",
            sender_line="Dana at Acme · dana@acme.test",
        )
        data = build_message(
            OutgoingEmail(
                from_addr=SENDER,
                to_addr=to_addr,
                subject=copy.subject,
                text=rendered.text,
                html=rendered.html,
                message_id=make_message_id("acme.test"),
                unsubscribe_url=f"{base}/u/{token}",
                reply_to="help@acme.test",
            )
        )
        messages.append((to_addr, signer.sign(data)))
    return messages


@dataclass
class SinkResult:
    messages: int
    seconds: float
    client_cpu: float
    sink_cpu: float
    machine: float | None
    size: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


async def measure_sink(sink: SinkProcess, n: int) -> SinkResult:
    from sequences.mail.smtp import SmtpMailer

    messages = prebuilt_messages(n)
    mailer = SmtpMailer(sink.host, sink.port, pool_size=SMTP_POOL)
    limit = asyncio.Semaphore(CLIENT_CONCURRENCY)

    async def send(to_addr: str, data: bytes) -> None:
        async with limit:
            await mailer.send("dana@acme.test", to_addr, data)

    try:
        # Warm-up: open the pool's connections so the timed part is the steady state.
        await asyncio.gather(*(send(*messages[i % n]) for i in range(SMTP_POOL * 4)))
        before, sink_cpu = sink.count(), sink.cpu_seconds()
        machine = MachineCpu()
        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(send(to_addr, data) for to_addr, data in messages))
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        busy = machine.cores_busy()
        sink_cpu = sink.cpu_seconds() - sink_cpu
        counted = sink.count() - before
    finally:
        await mailer.close()
    if counted != n:
        raise RuntimeError(f"the sink counted {counted} messages, expected {n}")
    size = sum(len(data) for _, data in messages) // n
    return SinkResult(n, seconds, cpu, sink_cpu, busy, size)


# ----------------------------------------------------------------------- 2. engine throughput


@dataclass
class Database:
    admin_url: str  # plain postgresql:// for asyncpg
    name: str

    @property
    def url(self) -> str:
        base = self.admin_url.rsplit("/", 1)[0]
        return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+asyncpg://", f"{base}/{self.name}")


def _asyncpg_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


async def create_database(admin_url: str) -> Database:
    import asyncpg

    name = f"dripline_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(_asyncpg_url(admin_url), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return Database(_asyncpg_url(admin_url), name)


async def drop_database(db: Database) -> None:
    import asyncpg

    conn = await asyncpg.connect(db.admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    finally:
        await conn.close()


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


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


async def seed(deps: Any, n: int, offset: int) -> None:
    """Apply the sequence (a no-op after the first time) and enroll N new contacts."""
    from sequences import contacts, registry
    from sequences.enrollments import enroll
    from sequences.loading import parse_definition

    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        await registry.apply(conn, parse_definition(SEQUENCE), now)
        pinned = await registry.current(conn, SEQUENCE_KEY)
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


async def verify(deps: Any, sink: SinkProcess, sink_before: int, n: int, total: int) -> None:
    from sqlalchemy import func, select

    from sequences.models import ENROLLMENTS, MESSAGES, RUNS

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


async def drain(
    deps: Any, sink: SinkProcess, n: int, offset: int, *, profile: bool
) -> EngineResult:
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
    sink: SinkProcess, n: int, admin_url: str, redis_url: str, *, profile: bool
) -> list[EngineResult]:
    from sequences.runtime import open_deps
    from sequences.settings import Settings

    db = await create_database(admin_url)
    flush_redis(redis_url)
    try:
        with tempfile.TemporaryDirectory(prefix="dripline-bench-") as data_dir:
            settings = Settings.model_validate(
                {
                    "DRIPLINE_DATA_DIR": data_dir,
                    "DATABASE_URL": db.url,
                    "REDIS_URL": redis_url,
                    "SMTP_HOST": sink.host,
                    "SMTP_PORT": sink.port,
                    "DKIM_DOMAIN": "acme.test",
                    "SMTP_RATE_PER_SECOND": 1_000_000.0,  # a budget this load never reaches
                    "DRIPLINE_PUBLIC_URL": "http://dripline.test",
                }
            )
            async with open_deps(
                settings, redis_url=redis_url, smtp=(sink.host, sink.port)
            ) as deps:
                if deps.signers is None or deps.limiter is None:
                    raise RuntimeError("open_deps built no DKIM signers or rate limiter")
                await warm_up(deps)
                results = [await drain(deps, sink, n, 0, profile=False)]
                if profile:
                    results.append(await drain(deps, sink, n, n, profile=True))
                return results
    finally:
        await drop_database(db)
        flush_redis(redis_url)


# ------------------------------------------------------------------------------ 3. profile


@dataclass
class QueryCounter:
    """Counts pool checkouts and new connections on an engine; with ``statements``, also
    statements (by kind, table and the engine function that issued them) and transactions."""

    engine: Any
    count_statements: bool = True
    statements: Counter[str] = field(default_factory=Counter)
    begins: int = 0
    checkouts: int = 0
    connects: int = 0
    _listeners: list[tuple[Any, str, Callable[..., None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from sqlalchemy import event

        sync_engine = self.engine.sync_engine

        def on_execute(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> None:
            self.statements[f"{_statement_kind(statement):32} {_engine_caller()}"] += 1

        def on_begin(conn: Any) -> None:
            self.begins += 1

        def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
            self.checkouts += 1

        def on_connect(dbapi_conn: Any, record: Any) -> None:
            self.connects += 1

        listeners: list[tuple[Any, str, Callable[..., None]]] = [
            (sync_engine.pool, "checkout", on_checkout),
            (sync_engine.pool, "connect", on_connect),
        ]
        if self.count_statements:
            listeners.append((sync_engine, "before_cursor_execute", on_execute))
            listeners.append((sync_engine, "begin", on_begin))
        for target, name, listener in listeners:
            event.listen(target, name, listener)
            self._listeners.append((target, name, listener))

    def close(self) -> None:
        from sqlalchemy import event

        for target, name, listener in self._listeners:
            event.remove(target, name, listener)
        self._listeners.clear()


_ROOT = str(Path(__file__).resolve().parent.parent)
_ENGINE_DIRS = (f"{_ROOT}/sequences/", f"{_ROOT}/agents/")
# Frames that every row passes through: left out of the caller chain.
_PLUMBING = {"run_due", "run_one", "_bounded", "send_step", "run_batch", "_guarded", "send_batch"}
_LABELS: dict[Any, str | None] = {}  # code object -> "module.function", None if not engine code


def _label(code: Any) -> str | None:
    if code not in _LABELS:
        filename: str = code.co_filename
        engine = filename.startswith(_ENGINE_DIRS) and code.co_name not in _PLUMBING
        module = filename.rsplit("/", 1)[-1].removesuffix(".py")
        _LABELS[code] = f"{module}.{code.co_name}" if engine else None
    return _LABELS[code]


def _engine_caller() -> str:
    """Which engine functions issued the statement being executed, outermost first.

    The statement runs in a SQLAlchemy greenlet; its parent greenlet is suspended inside
    ``greenlet_spawn``, whose frame chain leads back through the engine's coroutines.
    """
    greenlet = importlib.import_module("greenlet")  # untyped; SQLAlchemy's asyncio needs it
    parent = getattr(greenlet.getcurrent(), "parent", None)
    frame = getattr(parent, "gr_frame", None) if parent is not None else None
    chain: list[str] = []
    while frame is not None:
        code = frame.f_code
        # A dict lookup is no function call: cProfile does not charge the counter for it.
        label = _LABELS[code] if code in _LABELS else _label(code)
        if label is not None:
            chain.append(label)
        frame = frame.f_back
    chain.reverse()
    if len(chain) > 3:
        chain = [chain[0], "…", *chain[-2:]]
    return " > ".join(chain) or "?"


_TABLE_RE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", re.IGNORECASE)


def _statement_kind(statement: str) -> str:
    words = statement.split(None, 1)
    verb = words[0].upper() if words else "?"
    match = _TABLE_RE.search(statement)
    table = match.group(1) if match else "-"
    if verb == "UPDATE" and "RETURNING" in statement.upper():
        verb = "UPDATE..RETURNING"
    return f"{verb} {table}"


_OWN_LAYER = "the benchmark's own statement counter"
_IDLE_LAYER = "idle: waiting in epoll for I/O"  # wall time, not CPU: kept out of the total
# Self time grouped by where the code lives; C functions ("~") by what they are.
_LAYERS: tuple[tuple[str, str], ...] = (
    ("/sqlalchemy/", "SQLAlchemy (compile, execute, results, pool)"),
    ("/asyncpg/", "asyncpg driver (Python part)"),
    ("asyncpg.protocol", "asyncpg driver (C part)"),
    ("/aiosmtplib/", "aiosmtplib client"),
    ("/redis/", "redis-py client"),
    ("/arq/", "arq"),
    ("sequences/mail/dkim.py", "DKIM (canonicalise, hash)"),
    ("rsa.RSAPrivateKey", "DKIM (RSA sign, OpenSSL)"),
    ("sequences/mail/render.py", "render (layout)"),
    ("/jinja2/", "render (Jinja2)"),
    ("/markupsafe/", "render (Jinja2)"),
    ("sequences/mail/mime.py", "MIME build"),
    ("/email/", "stdlib email (parseaddr...)"),
    ("quopri", "MIME build"),
    ("sequences/sandbox.py", "fallback templates (sandbox)"),
    ("/pydantic", "pydantic"),
    ("/sequences/", "engine code (sequences/)"),
    ("/agents/", "engine code (agents/)"),
    ("/asyncio/", "asyncio event loop"),
    ("select.epoll", _IDLE_LAYER),
    ("_socket", "socket I/O (syscalls)"),
    ("/selectors.py", "asyncio event loop"),
    ("/_lsprof", "profiler"),
    ("of 're.Pattern'", "regex (DKIM canonicalisation, SMTP line endings and dot-stuffing)"),
    ("b2a_qp", "MIME build"),
    ("greenlet", "SQLAlchemy (compile, execute, results, pool)"),
    ("benchmarks/engine_throughput.py", _OWN_LAYER),
)


def _layer(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for needle, layer in _LAYERS:
        if needle in where:
            return layer
    if filename == "~":
        return "other C built-ins"
    return "other Python"


FuncKey = tuple[str, int, str]
FuncStats = tuple[int, int, float, float, Any]  # primitive calls, calls, self, cumulative, callers


def _raw(stats: pstats.Stats) -> dict[FuncKey, FuncStats]:
    table: dict[FuncKey, FuncStats] = stats.stats  # type: ignore[attr-defined]
    return table


# Synchronous engine work: cProfile's cumulative time is exact for these (no awaits inside).
# Coroutines are left out: SQLAlchemy's greenlets scramble cProfile's call stack, so their
# cumulative times are meaningless; the database part shows up in the layers instead.
# "path:function", alternatives separated by "|" (the engine moves code between modules).
_SYNC_PHASES: tuple[tuple[str, str], ...] = (
    (
        "sequences/sending.py:copy_request|sequences/compose.py:copy_request",
        "copy_request (fallback templates, sandboxed Jinja)",
    ),
    ("agents/composer.py:compose", "offline composer"),
    (
        "sequences/sending.py:_render|sequences/compose.py:render_message",
        "render the message (layout, tracked links)",
    ),
    ("sequences/mail/render.py:_compiled", "  LayoutRenderer._compiled (reads + hashes the file)"),
    (
        "sequences/sending.py:message_bytes|sequences/compose.py:message_bytes",
        "message_bytes (MIME + DKIM)",
    ),
    ("sequences/mail/mime.py:build_message", "  build_message"),
    ("sequences/mail/dkim.py:sign", "  DkimSigner.sign"),
    ("email/utils.py:parseaddr", "email.utils.parseaddr (all callers)"),
    ("sqlalchemy/engine/url.py:render_as_string", "URL.render_as_string (load_version cache key)"),
    ("sequences/models.py:new_id", "new_id"),
)


def _phase_times(stats: pstats.Stats) -> list[tuple[str, float, int]]:
    table = _raw(stats)
    found: list[tuple[str, float, int]] = []
    for needles, label in _SYNC_PHASES:
        wanted = [needle.partition(":")[::2] for needle in needles.split("|")]
        cum, calls = 0.0, 0
        for (filename, _line, name), (_cc, nc, _tt, ct, _callers) in table.items():
            if any(name == func and filename.endswith(path) for path, func in wanted):
                cum, calls = cum + ct, calls + nc
        found.append((label, cum, calls))
    return found


def _layer_times(stats: pstats.Stats) -> tuple[list[tuple[str, float]], float]:
    table = _raw(stats)
    layers: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tt, _ct, _callers) in table.items():
        layer = _layer(filename, name)
        if layer in (_OWN_LAYER, _IDLE_LAYER):
            continue
        layers[layer] = layers.get(layer, 0.0) + tt
    ranked = sorted(layers.items(), key=lambda item: item[1], reverse=True)
    return ranked, sum(layers.values())


def _top_functions(stats: pstats.Stats, limit: int) -> list[tuple[str, float, int]]:
    table = _raw(stats)
    skip = (_OWN_LAYER, _IDLE_LAYER)
    own = [item for item in table.items() if _layer(item[0][0], item[0][2]) not in skip]
    rows = sorted(own, key=lambda item: item[1][2], reverse=True)[:limit]
    return [(_short(key), values[2], values[1]) for key, values in rows]


def _short(key: FuncKey) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{filename}:{line}({name})"


# ------------------------------------------------------------------------------- reporting


def _machine(cores: float | None) -> str:
    if cores is None:
        return ""
    return f"; machine {cores:.2f} of {os.cpu_count()} cores busy (PostgreSQL, Redis, all)"


def report_sink(result: SinkResult) -> None:
    print("1. SMTP sink ceiling (SinkServer in its own process, SmtpMailer client here)")
    print(f"   messages           {result.messages} pre-built, ~{result.size} bytes, DKIM-signed")
    print(f"   pool / concurrency {SMTP_POOL} connections / {CLIENT_CONCURRENCY} sends")
    print(f"   time               {result.seconds:.2f} s")
    print(f"   rate               {result.rate:,.0f} messages/s")
    print(
        f"   CPU                client {result.client_cpu / result.seconds:.0%} of a core, "
        f"sink {result.sink_cpu / result.seconds:.0%}{_machine(result.machine)}"
    )


def report_engine(result: EngineResult, sink: SinkResult | None) -> None:
    print("2. Engine throughput (one worker: run_due over PostgreSQL + Redis, DKIM on)")
    print(f"   seeded             {result.messages} enrollments in {result.seed_seconds:.1f} s")
    print(f"   drain              {result.seconds:.2f} s, all {result.messages} sent and counted")
    print(f"   rate               {result.rate:,.0f} sends/s")
    print(f"   vs goal            {result.rate / GOAL_SENDS_PER_SECOND:.2f}x of 1,000 sends/s")
    if sink is not None:
        print(f"   vs sink ceiling    {result.rate / sink.rate:.2f}x of {sink.rate:,.0f} msgs/s")
    print(
        f"   CPU                worker {result.cpu / result.seconds:.0%} of a core, "
        f"sink {result.sink_cpu / result.seconds:.0%}{_machine(result.machine)}"
    )
    print(f"   worker CPU         {result.cpu / result.messages * 1000:.2f} ms per send")
    q = result.queries
    print(
        f"   database pool      {q.checkouts / result.messages:.1f} checkouts per send, "
        f"{q.connects} new connections opened during the drain"
    )


def report_profile(result: EngineResult) -> None:
    assert result.profile is not None
    n = result.messages
    q = result.queries
    print(f"3. Profile (a second drain of {n} under cProfile: {result.rate:,.0f} sends/s)")
    total_statements = sum(q.statements.values())
    print(
        f"   per send: {total_statements / n:.2f} statements, {q.begins / n:.2f} transactions, "
        f"{q.checkouts / n:.2f} pool checkouts (each with a pre-ping); "
        f"{q.connects} new database connections during the drain"
    )
    print("   statements: total, per send, kind, issued by")
    for kind, count in sorted(q.statements.items(), key=lambda item: (-item[1], item[0])):
        print(f"     {count:6d} {count / n:6.3f}  {kind}")
    layers, total = _layer_times(result.profile)
    idle = sum(
        values[2]
        for key, values in _raw(result.profile).items()
        if _layer(key[0], key[2]) == _IDLE_LAYER
    )
    print(
        f"   CPU by layer (self time, {total:.2f} s profiled, {total / n * 1000:.2f} ms/send; "
        f"plus {idle:.2f} s idle in epoll)"
    )
    for layer, seconds in layers[:14]:
        print(f"     {seconds / total:6.1%}  {seconds / n * 1000:6.3f} ms/send  {layer}")
    print("   Synchronous engine work (cumulative, ms per send)")
    for label, seconds, calls in _phase_times(result.profile):
        if calls:
            print(f"     {seconds / n * 1000:7.3f}  {label}  ({calls / n:.1f} calls/send)")
    print("   Top functions by self time")
    for name, seconds, calls in _top_functions(result.profile, 20):
        print(f"     {seconds / n * 1000:7.3f} ms/send  {calls / n:6.1f}/send  {name}")


# ------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--messages", type=int, default=2000, help="messages per phase")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TEST_PG_ADMIN_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL server to create the benchmark's own database on (dropped afterwards)",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help="Redis database to use (flushed)"
    )
    parser.add_argument("--profile", action="store_true", help="add a profiled drain")
    parser.add_argument(
        "--profile-out", type=Path, help="also save the profile (pstats format) to this file"
    )
    parser.add_argument("--skip-sink", action="store_true", help="skip the sink-only ceiling")
    args = parser.parse_args(argv)
    args.profile = args.profile or args.profile_out is not None
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    return args


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min)"


@contextmanager
def running_sink() -> Iterator[SinkProcess]:
    sink = SinkProcess()
    try:
        yield sink
    finally:
        sink.stop()


async def main_async(args: argparse.Namespace) -> None:
    n = args.messages
    started = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"Dripline engine throughput, N={n}, {os.cpu_count()} CPUs, {started}, {_load()}")
    with running_sink() as sink:
        ceiling = None
        if not args.skip_sink:
            ceiling = await measure_sink(sink, n)
            report_sink(ceiling)
        results = await measure_engine(
            sink, n, args.database_url, args.redis_url, profile=args.profile
        )
        report_engine(results[0], ceiling)
        print(f"   {_load()} (other work on the machine lowers every figure)")
        if args.profile:
            report_profile(results[1])
            profile = results[1].profile
            if args.profile_out is not None and profile is not None:
                profile.dump_stats(args.profile_out)
                print(f"   profile saved to {args.profile_out} (python -m pstats)")


def main(argv: list[str] | None = None) -> int:
    # Run as a script from the repository root: make the project importable without installing.
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    asyncio.run(main_async(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
