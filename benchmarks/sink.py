"""The SMTP sink: a SinkServer in its own process, and the sink-only ceiling.

The ceiling (section 1 of the report): a :class:`SinkServer` in a separate process
(multiprocessing, spawn), and this process pushing N pre-built, DKIM-signed messages through
:class:`SmtpMailer` (pool of 8, 64 concurrent sends). Nothing but the SMTP path is timed.

The spawned child imports :func:`_sink_main` from this module by name, so the module must stay
importable without side effects.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

SMTP_POOL = 8
CLIENT_CONCURRENCY = 64
SENDER = "Dana at Acme <dana@acme.test>"


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


@contextmanager
def running_sink() -> Iterator[SinkProcess]:
    sink = SinkProcess()
    try:
        yield sink
    finally:
        sink.stop()


# ------------------------------------------------------------------------------- reporting


def machine_note(cores: float | None) -> str:
    """The machine-wide CPU figure appended to a report's CPU line ("" if unknown)."""
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
        f"sink {result.sink_cpu / result.seconds:.0%}{machine_note(result.machine)}"
    )
