"""Where a drain's time goes: statement counts and cProfile breakdowns (``--profile``).

Section 3 of the report: a second, profiled drain of N more enrollments (cProfile, so slower
than the timed one): statements per send with the engine function that issued each,
transactions and pool checkouts per send, CPU self time by layer, the synchronous engine steps
(copy, render, MIME, DKIM) and the top functions. :class:`QueryCounter` also counts pool
checkouts and new connections during the timed drain.
"""

from __future__ import annotations

import importlib
import pstats
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMMIT = "COMMIT"


@dataclass
class QueryCounter:
    """Counts pool checkouts and new connections on an engine; with ``statements``, also
    statements (by kind, table and the engine function that issued them) and transactions;
    with ``time_statements`` too, the wall time of each kind and of the commits (``COMMIT``:
    from the commit to the connection's return to the pool)."""

    engine: Any
    count_statements: bool = True
    time_statements: bool = False
    statements: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    begins: int = 0
    checkouts: int = 0
    connects: int = 0
    _listeners: list[tuple[Any, str, Callable[..., None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from sqlalchemy import event

        sync_engine = self.engine.sync_engine
        started: dict[int, tuple[str, float]] = {}  # connection -> (kind, when)

        def on_execute(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> None:
            kind = f"{_statement_kind(statement):32} {_engine_caller()}"
            self.statements[kind] += 1
            if self.time_statements:
                started[id(conn)] = (kind, time.perf_counter())

        def on_executed(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> None:
            kind, at = started.pop(id(conn))
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - at

        def on_commit(conn: Any) -> None:
            started[id(conn.connection.dbapi_connection)] = (COMMIT, time.perf_counter())

        def on_checkin(dbapi_conn: Any, record: Any) -> None:
            kind, at = started.pop(id(dbapi_conn), ("", 0.0))
            if kind == COMMIT:
                self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - at

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
        if self.count_statements or self.time_statements:
            listeners.append((sync_engine, "before_cursor_execute", on_execute))
            listeners.append((sync_engine, "begin", on_begin))
        if self.time_statements:
            listeners.append((sync_engine, "after_cursor_execute", on_executed))
            listeners.append((sync_engine, "commit", on_commit))
            listeners.append((sync_engine.pool, "checkin", on_checkin))
        for target, name, listener in listeners:
            event.listen(target, name, listener)
            self._listeners.append((target, name, listener))

    def close(self) -> None:
        from sqlalchemy import event

        for target, name, listener in self._listeners:
            event.remove(target, name, listener)
        self._listeners.clear()


_ROOT = str(Path(__file__).resolve().parent.parent)
_ENGINE_DIRS = (f"{_ROOT}/sequences/", f"{_ROOT}/agents/", f"{_ROOT}/api/")
# Frames that every row passes through: left out of the caller chain.
_PLUMBING = {"run_due", "run_one", "_bounded", "send_step", "run_batch", "_guarded", "send_batch"}
_PLUMBING |= {"__call__"}  # the API's ASGI middleware
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
    ("sequences/definitions/sandbox.py", "fallback templates (sandbox)"),
    ("/pydantic", "pydantic"),
    ("pydantic_core", "pydantic"),
    ("/sequences/", "engine code (sequences/)"),
    ("/agents/", "engine code (agents/)"),
    (f"{_ROOT}/api/", "API code (api/)"),
    ("/fastapi/", "FastAPI + Starlette (routing, dependencies)"),
    ("/starlette/", "FastAPI + Starlette (routing, dependencies)"),
    ("/uvicorn/", "uvicorn + h11 (HTTP)"),
    ("/h11/", "uvicorn + h11 (HTTP)"),
    ("/json/", "stdlib json (JSONB parameters, responses)"),
    ("_json.", "stdlib json (JSONB parameters, responses)"),
    ("/asyncio/", "asyncio event loop"),
    ("select.epoll", _IDLE_LAYER),
    ("_socket", "socket I/O (syscalls)"),
    ("/selectors.py", "asyncio event loop"),
    ("/_lsprof", "profiler"),
    ("of 're.Pattern'", "regex (DKIM, SMTP dot-stuffing; SQL bind names, the bot check)"),
    ("b2a_qp", "MIME build"),
    ("greenlet", "SQLAlchemy (compile, execute, results, pool)"),
    ("/benchmarks/", _OWN_LAYER),  # QueryCounter and its helpers (this package)
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
        "sequences/delivery/sending.py:copy_request|sequences/delivery/compose.py:copy_request",
        "copy_request (fallback templates, sandboxed Jinja)",
    ),
    ("agents/composer.py:compose", "offline composer"),
    (
        "sequences/delivery/sending.py:_render|sequences/delivery/compose.py:render_message",
        "render the message (layout, tracked links)",
    ),
    ("sequences/mail/render.py:_compiled", "  LayoutRenderer._compiled (reads + hashes the file)"),
    (
        "sequences/delivery/compose.py:unsigned_message",
        "unsigned_message (MIME + DKIM but the RSA signature)",
    ),
    ("sequences/mail/mime.py:build_message", "  build_message"),
    ("sequences/mail/dkim.py:prepare", "  DkimSigner.prepare (canonicalise, hash)"),
    ("email/utils.py:parseaddr", "email.utils.parseaddr (all callers)"),
    ("sqlalchemy/engine/url.py:render_as_string", "URL.render_as_string (load_version cache key)"),
    ("sequences/store/tables.py:new_id", "new_id"),
)


Phases = tuple[tuple[str, str], ...]


def _phase_times(stats: pstats.Stats, phases: Phases) -> list[tuple[str, float, int]]:
    table = _raw(stats)
    found: list[tuple[str, float, int]] = []
    for needles, label in phases:
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


def report_profile(profile: pstats.Stats, q: QueryCounter, n: int, rate: float) -> None:
    """Section 3: ``profile`` and ``q`` from a drain of ``n`` sends at ``rate`` sends/s."""
    print(f"3. Profile (a second drain of {n} under cProfile: {rate:,.0f} sends/s)")
    total_statements = sum(q.statements.values())
    print(
        f"   per send: {total_statements / n:.2f} statements, {q.begins / n:.2f} transactions, "
        f"{q.checkouts / n:.2f} pool checkouts; "
        f"{q.connects} new database connections during the drain"
    )
    report_statements(q.statements, n, "send")
    report_cpu(profile, n, "send")


def report_statements(
    statements: Mapping[str, int],
    n: int,
    unit: str,
    seconds: Mapping[str, float] | None = None,
) -> None:
    """Each kind of statement: how many in all and per ``unit``; with ``seconds``, the wall
    time each kind took per ``unit`` (and the commits, which are no statements)."""
    timed = seconds is not None
    print(
        f"   statements: total, per {unit}, "
        + (f"ms per {unit}, " if timed else "")
        + "kind, issued by"
    )
    for kind, count in sorted(statements.items(), key=lambda item: (-item[1], item[0])):
        ms = f"{(seconds or {}).get(kind, 0.0) / n * 1000:7.3f}  " if timed else ""
        print(f"     {count:6d} {count / n:6.3f}  {ms}{kind}")
    if seconds is not None and COMMIT in seconds:
        print(f"     {'':6} {'':6}  {seconds[COMMIT] / n * 1000:7.3f}  {COMMIT} (to pool check-in)")


def report_cpu(
    profile: pstats.Stats, n: int, unit: str, phases: Phases = _SYNC_PHASES, title: str = ""
) -> None:
    """Self time by layer, the synchronous engine steps and the top functions, per ``unit``."""
    layers, total = _layer_times(profile)
    idle = sum(
        values[2] for key, values in _raw(profile).items() if _layer(key[0], key[2]) == _IDLE_LAYER
    )
    print(
        f"   CPU by layer (self time, {total:.2f} s profiled, {total / n * 1000:.2f} ms/{unit}; "
        f"plus {idle:.2f} s idle in epoll)"
    )
    for layer, seconds in layers[:14]:
        print(f"     {seconds / total:6.1%}  {seconds / n * 1000:6.3f} ms/{unit}  {layer}")
    found = [(label, secs, calls) for label, secs, calls in _phase_times(profile, phases) if calls]
    if found:
        print(f"   {title or 'Synchronous engine work'} (cumulative, ms per {unit})")
    for label, seconds, calls in found:
        print(f"     {seconds / n * 1000:7.3f}  {label}  ({calls / n:.1f} calls/{unit})")
    print("   Top functions by self time")
    for name, seconds, calls in _top_functions(profile, 20):
        print(f"     {seconds / n * 1000:7.3f} ms/{unit}  {calls / n:6.1f}/{unit}  {name}")
