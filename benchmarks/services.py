"""The services a run uses: a PostgreSQL database of its own, a Redis database, the settings
that point Dripline at them, and the API server (uvicorn in a child process).

The PostgreSQL URL is only used to create ``dripline_bench_<random>``, which is dropped at the
end; the Redis database is flushed before and after. :class:`ProcessCpu` reads the CPU each
process used from /proc, so a report can say how the machine's cores were shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/3"


def add_service_arguments(parser: argparse.ArgumentParser, *, redis_use: str) -> None:
    """``--database-url`` (the PostgreSQL server a run creates its own database on, dropped
    afterwards) and ``--redis-url``, which every benchmark takes."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TEST_PG_ADMIN_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL server to create the benchmark's own database on (dropped afterwards)",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help=f"Redis database ({redis_use})"
    )


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


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min)"


async def in_own_database(
    heading: str,
    args: argparse.Namespace,
    run: Callable[[Database, argparse.Namespace, str], Awaitable[bool]],
) -> bool:
    """Print the run's heading (with the CPUs, the time and the load), then ``run`` on a database
    of its own and a flushed Redis, with a scratch directory; the database is dropped after."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"{heading}, {os.cpu_count()} CPUs, {started}, {load_average()}")
    db = await create_database(args.database_url)
    flush_redis(args.redis_url)
    try:
        with tempfile.TemporaryDirectory(prefix="dripline-bench-") as data_dir:
            return await run(db, args, data_dir)
    finally:
        await drop_database(db)
        flush_redis(args.redis_url)


# Settings a benchmark run takes from its own environment, to compare one value against another.
TUNABLE = frozenset(
    {
        "SMTP_POOL_SIZE",
        "DRIPLINE_CLAIM_BATCH",
        "DRIPLINE_PARALLEL_BATCHES",
        "DRIPLINE_EVENT_TRANSACTIONS",
        "DRIPLINE_DB_POOL_SIZE",
    }
)


def settings_env(
    db: Database, redis_url: str, data_dir: str, *, smtp: tuple[str, int] | None = None
) -> dict[str, str]:
    """A benchmark's settings, as the environment variables ``Settings`` reads: the API
    server's subprocess gets them in its environment, in-process code validates them."""
    env = {
        "DRIPLINE_DATA_DIR": data_dir,
        "DATABASE_URL": db.url,
        "REDIS_URL": redis_url,
        "DKIM_DOMAIN": "acme.test",
        "SMTP_RATE_PER_SECOND": "1000000",  # a budget this load never reaches
        "DRIPLINE_PUBLIC_URL": "http://dripline.test",
    }
    if smtp is not None:
        env |= {"SMTP_HOST": smtp[0], "SMTP_PORT": str(smtp[1])}
    return env | {k: v for k, v in os.environ.items() if k in TUNABLE}


# --------------------------------------------------------------------------- the API server

REPO_ROOT = Path(__file__).resolve().parent.parent
_STARTED = "Application startup complete."
_FAILED = "Exception in ASGI application"
_EXCEPTION = re.compile(r"^([\w.]+(?:Error|Exception)): ?(.*)$", re.MULTILINE)
_SQL = re.compile(r"\[SQL: (.{1,48})")
START_SECONDS = 90.0  # migrations are done by then; this is imports and the lifespan


@dataclass
class ApiServer:
    """uvicorn serving ``benchmarks.api_app:create`` in a child process (and its workers)."""

    process: asyncio.subprocess.Process
    url: str
    workers: int
    log: Path

    def pids(self) -> list[int]:
        """The uvicorn process and its worker processes (with ``--workers`` above 1)."""
        return [self.process.pid, *_children(self.process.pid)]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def failures(self) -> Counter[str]:
        """Unhandled exceptions the server logged (500s), by the exception's last line."""
        found: Counter[str] = Counter()
        for block in self.log_text().split(_FAILED)[1:]:
            error = _EXCEPTION.search(block)  # the first one in the chain: the cause
            sql = _SQL.search(block)
            what = f"{error.group(1)}: {error.group(2)[:100]}" if error else "?"
            found[what + (f" in {sql.group(1)}..." if sql else "")] += 1
        return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def api_server(
    env: Mapping[str, str], *, workers: int, log: Path
) -> AsyncIterator[ApiServer]:
    """The API up (every worker past its lifespan start-up) until the block ends, then stopped
    with SIGTERM as a process manager would. The log is written to ``log``."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "benchmarks.api_app:create", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        *("--log-level", "info", "--no-access-log"),
    ]
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=out, stderr=out
        )
    server = ApiServer(process, f"http://127.0.0.1:{port}", workers, log)
    try:
        await _until_started(server)
        yield server
    finally:
        await _stop(process)


async def _until_started(server: ApiServer) -> None:
    deadline = time.monotonic() + START_SECONDS
    while server.log_text().count(_STARTED) < server.workers:
        if server.process.returncode is not None or time.monotonic() > deadline:
            tail = "\n".join(server.log_text().splitlines()[-20:])
            raise RuntimeError(f"the API server did not start; its log ends:\n{tail}")
        await asyncio.sleep(0.1)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


# ------------------------------------------------------------------------ CPU by process

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and (fields := _stat(int(entry))) and fields[1] == str(pid):
            found.append(int(entry))
    return found


def pids_named(name: str) -> list[int]:
    """Processes whose command name is ``name`` (e.g. every PostgreSQL backend)."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry}/comm", encoding="ascii", errors="replace") as comm:
                if entry.isdigit() and comm.read().strip() == name:
                    found.append(int(entry))
        except OSError:
            continue
    return found


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process (Linux; empty elsewhere)."""
    seconds = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            seconds[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return seconds


@dataclass
class ProcessCpu:
    """CPU used by a changing set of processes since creation: processes that appear later
    count from zero, those that exit in between are lost (PostgreSQL keeps its backends)."""

    find: Callable[[], Iterable[int]]
    _start: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._start = cpu_seconds(self.find())

    def seconds(self) -> float:
        now = cpu_seconds(self.find())
        return sum(value - self._start.get(pid, 0.0) for pid, value in now.items())
