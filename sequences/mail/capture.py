"""Embedded SMTP servers: a capture server (the dev inbox and test relay) and a benchmark sink.

Each runs aiosmtpd's Controller in its own thread with its own event loop, so it can serve a
client that lives on the caller's loop (or in another process).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import socket
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller

__all__ = [
    "CaptureServer",
    "CapturedMessage",
    "RejectRule",
    "SinkServer",
    "Transaction",
    "read_captured",
]

logger = logging.getLogger(__name__)

_OK = "250 OK"
_HEADER_PARSER = BytesParser(policy=policy.default)


@dataclass(frozen=True)
class RejectRule:
    """Answer RCPT for recipients matching ``pattern`` (regex search) with ``code message``.

    ``times`` limits the rejection to the first N attempts per recipient (a 451 with
    ``times=1`` is a one-off tempfail); None rejects forever.
    """

    pattern: str
    code: int
    message: str
    times: int | None = None


@dataclass(frozen=True)
class Transaction:
    """One message this server accepted: when its MAIL FROM arrived and when DATA was answered
    250 (POSIX seconds), and where it was stored. Kept in memory, for the process serving."""

    mail_at: float
    accepted_at: float
    path: Path


@dataclass(frozen=True)
class CapturedMessage:
    path: Path
    message_id: str
    to: str
    subject: str
    raw: bytes


class _ThreadedServer:
    """Start/stop and address bookkeeping shared by both servers."""

    def __init__(self, handler: object, host: str, port: int) -> None:
        self._handler = handler
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._controller: Controller | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server is not started")
        return self._port

    def start(self) -> None:
        if self._controller is not None:
            return
        port = self._requested_port or _free_port(self._host)
        # A fixed server_hostname avoids socket.getfqdn(), which can stall on DNS.
        controller = Controller(
            self._handler, hostname=self._host, port=port, server_hostname="localhost"
        )
        controller.start()
        self._controller, self._port = controller, port
        logger.info("%s listening on %s:%s", type(self).__name__, self._host, port)

    def stop(self) -> None:
        if self._controller is None:
            return
        self._controller.stop()
        self._controller = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class CaptureServer(_ThreadedServer):
    """Accepts mail and stores each message as ``<timestamp>-<n>.eml`` in ``directory``."""

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        rules: Sequence[RejectRule] = (),
        rcpt_delay: float = 0.0,
    ) -> None:
        """``rcpt_delay`` seconds before each RCPT is answered: a slow relay, as real ones are."""
        self._directory = directory
        self._capture = _CaptureHandler(directory, rules, rcpt_delay)
        super().__init__(self._capture, host, port)

    @property
    def directory(self) -> Path:
        return self._directory

    def messages(self) -> list[CapturedMessage]:
        """Every stored message, oldest first, read from disk (other processes' included)."""
        if not self._directory.is_dir():
            return []
        return [read_captured(path) for path in sorted(self._directory.glob("*.eml"))]

    def count_by_message_id(self) -> Counter[str]:
        return Counter(message.message_id for message in self.messages())

    def transactions(self) -> list[Transaction]:
        """Every message accepted since this server started, in the order DATA was accepted."""
        return list(self._capture.transactions)


class SinkServer(_ThreadedServer):
    """Accepts and discards mail, only counting it: measures the SMTP path without disk I/O."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sink = _SinkHandler()
        super().__init__(self._sink, host, port)

    @property
    def count(self) -> int:
        return self._sink.count


class _CaptureHandler:
    # Runs on the controller's single loop thread: the counters need no lock.

    def __init__(
        self, directory: Path, rules: Sequence[RejectRule], rcpt_delay: float = 0.0
    ) -> None:
        self._directory = directory
        self._rules = [(re.compile(rule.pattern), rule) for rule in rules]
        self._attempts: Counter[tuple[int, str]] = Counter()
        self._sequence = itertools.count()
        self._rcpt_delay = rcpt_delay
        self.transactions: list[Transaction] = []

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.mail_at = time.time()
        return _OK

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._rcpt_delay:
            await asyncio.sleep(self._rcpt_delay)
        for index, (pattern, rule) in enumerate(self._rules):
            if not pattern.search(address):
                continue
            key = (index, address.lower())
            self._attempts[key] += 1
            if rule.times is None or self._attempts[key] <= rule.times:
                return f"{rule.code} {rule.message}"
        envelope.rcpt_tos.append(address)
        return _OK

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        path = self._store(content)
        mail_at = getattr(envelope, "mail_at", None) or time.time()
        self.transactions.append(Transaction(mail_at, time.time(), path))
        return f"250 OK queued as {path.stem}"

    def _store(self, content: bytes) -> Path:
        self._directory.mkdir(parents=True, exist_ok=True)
        # Hidden, non-.eml temp name: readers never see a half-written message.
        tmp = self._directory / f".{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(content)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        while True:
            path = self._directory / f"{stamp}-{next(self._sequence)}.eml"
            try:
                # link() refuses to overwrite, unlike rename(): safe if two processes share a dir.
                os.link(tmp, path)
            except FileExistsError:
                continue
            tmp.unlink()
            return path


class _SinkHandler:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # Runs on the controller's single loop thread, so += needs no lock.
        self.count += 1
        return _OK


def read_captured(path: Path) -> CapturedMessage:
    """One stored message, its headers parsed."""
    raw = path.read_bytes()
    headers = _HEADER_PARSER.parsebytes(raw, headersonly=True)
    to_header = headers["to"]
    addresses = getattr(to_header, "addresses", ())
    to = addresses[0].addr_spec if addresses else str(to_header or "")
    return CapturedMessage(
        path=path,
        message_id=str(headers["message-id"] or "").strip(),
        to=to,
        subject=str(headers["subject"] or ""),
        raw=raw,
    )


def _free_port(host: str) -> int:
    # Controller needs a concrete port; ask the OS for one that is free right now.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
