"""Postfix's smtp-sink as the send benchmark's relay, and smtp-source's rate as its ceiling.

aiosmtpd (the tests' SMTP server) tops out near 710 messages/s on this machine, below what the
engine should reach, so a speed run sends to ``smtp-sink`` (Debian's ``postfix`` package; ``make
bench`` installs it with the "No configuration" debconf answer, so no mail daemon runs). The
ceiling is ``smtp-source``, postfix's C load generator, pushing messages of the engine's size
into the same sink in the same run: our sends/s divided by its rate says how far the engine is
from what the machine's loopback SMTP allows.

:class:`PostfixSink` answers the same questions as :class:`benchmarks.sink.SinkProcess`
(``host``, ``port``, ``count()``, ``cpu_seconds()``, ``stop()``), so the engine benchmark uses
either.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SOURCE_SESSIONS = 8  # smtp-source -s: parallel sessions, as our pool's 8 connections
_COUNTER = re.compile(rb"mesg=(\d+)")


def missing() -> str | None:
    """Why the postfix tools cannot be used here, or None when they can."""
    for tool in ("smtp-sink", "smtp-source"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} not found: 'make bench' installs Debian's postfix package"
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostfixSink:
    """``smtp-sink -c`` on a free loopback port; its running counter is read from its output."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="dripline-smtp-sink-")
        self._out = Path(self._dir.name, "counter")
        command = [_tool("smtp-sink"), "-c"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # it refuses to run as root without a user to switch to
        command += [f"{self.host}:{self.port}", "1000"]
        with self._out.open("wb") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"smtp-sink exited: {self._out.read_bytes()[-500:]!r}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as conn:
                    conn.recv(100)  # the greeting: it is accepting sessions
                    conn.sendall(b"QUIT\r\n")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not accept a connection within 30 s")

    def count(self) -> int:
        """Messages accepted so far (the counter line smtp-sink rewrites after each event)."""
        with self._out.open("rb") as out:
            out.seek(max(0, out.seek(0, os.SEEK_END) - 200))
            found = _COUNTER.findall(out.read())
        return int(found[-1]) if found else 0

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self._process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._dir.cleanup()


@dataclass
class SourceResult:
    """smtp-source's run into the sink: the machine's loopback SMTP ceiling, measured now."""

    messages: int
    size: int
    seconds: float
    source_cpu: float
    sink_cpu: float
    machine: float | None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def measure_source(sink: PostfixSink, n: int, size: int) -> SourceResult:
    """Time ``smtp-source -s 8 -m N -l SIZE`` into the sink; the sink must count all N."""
    from benchmarks.sink import MachineCpu

    command = [_tool("smtp-source"), "-s", str(SOURCE_SESSIONS), "-m", str(n), "-l", str(size)]
    command += ["-f", "dana@acme.test", "-t", "lead@example.com", f"{sink.host}:{sink.port}"]
    before, sink_cpu = sink.count(), sink.cpu_seconds()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine = MachineCpu()
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    busy = machine.cores_busy()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    counted = _settled_count(sink, before + n) - before
    if counted != n:
        raise RuntimeError(f"smtp-sink counted {counted} of smtp-source's {n} messages")
    return SourceResult(n, size, seconds, cpu, sink.cpu_seconds() - sink_cpu, busy)


def _settled_count(sink: PostfixSink, expected: int) -> int:
    """The sink's counter once it reaches ``expected`` (its output lags the last QUIT a little)."""
    deadline = time.monotonic() + 10
    count = sink.count()
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = sink.count()
    return count


def report_source(result: SourceResult) -> None:
    from benchmarks.sink import machine_note

    print("1. SMTP ceiling: postfix smtp-source into smtp-sink (loopback, measured now)")
    print(f"   messages           {result.messages} of {result.size} bytes (the engine's size)")
    print(f"   sessions           {SOURCE_SESSIONS} in parallel")
    print(f"   time               {result.seconds:.2f} s")
    print(f"   rate               {result.rate:,.0f} messages/s  <- the ceiling")
    print(
        f"   CPU                smtp-source {result.source_cpu / result.seconds:.0%} of a core, "
        f"sink {result.sink_cpu / result.seconds:.0%}{machine_note(result.machine)}"
    )
