"""SMTP submission through a small pool of persistent aiosmtplib connections."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiosmtplib

from sequences.mail.pipelining import COMPLETED, START_INPUT, Step, pipelined, pipelines

__all__ = [
    "Lane",
    "Mailer",
    "NotStartedError",
    "PermanentSendError",
    "SendError",
    "SmtpMailer",
    "TemporarySendError",
    "UnknownOutcomeError",
]

logger = logging.getLogger(__name__)

# Replies that mean the server is closing the session: the connection is useless afterwards.
_CLOSING_CODES = frozenset({421})
_LINE_END = re.compile(rb"\r\n|\r|\n")


class SendError(Exception):
    """A message was not accepted.

    ``stage`` says where: "connect" (connect/EHLO/STARTTLS/AUTH), "mail" (sender refused),
    "rcpt" (recipient refused) or "data" (message refused). Only "rcpt" and "data" say anything
    about the recipient; a "connect" failure is always temporary so that a broken relay
    configuration can never be mistaken for a hard bounce.
    """

    def __init__(self, code: int | None, message: str, *, stage: str = "unknown") -> None:
        super().__init__(f"{code} {message}" if code is not None else message)
        self.code = code
        self.message = message
        self.stage = stage


class TemporarySendError(SendError):
    """4xx reply, connection failure or timeout: try again later."""


class UnknownOutcomeError(SendError):
    """The connection failed during DATA: the message may or may not have been delivered."""


class PermanentSendError(SendError):
    """5xx reply: retrying the same message will not help."""


class NotStartedError(SendError):
    """The caller's start hook declined the message: nothing was said to the relay about it."""


@dataclass
class Lane:
    """One pooled connection as a caller sees it. ``unsettled`` holds the caller's notes about
    messages this connection carried that the caller has not recorded yet; its start hook
    records them before the connection begins another message, so a crash leaves at most one
    message per connection whose outcome nobody wrote down."""

    unsettled: list[Any] = field(default_factory=list)


# Awaited once a connection is ours and before MAIL FROM: True sends, False declines.
StartHook = Callable[[Lane], Awaitable[bool]]


class Mailer(Protocol):
    async def send(
        self, sender: str, recipient: str, data: bytes, *, start: StartHook | None = None
    ) -> str: ...

    async def close(self) -> None: ...


@dataclass
class _Connection:
    client: aiosmtplib.SMTP
    last_used: float
    sent: int = 0
    lane: Lane = field(default_factory=Lane)


class SmtpMailer:
    """A Mailer over up to ``pool_size`` persistent SMTP connections, opened lazily.

    Idle connections are reused most-recently-used first. One that has been idle longer
    than ``idle_check_seconds`` is probed with NOOP before use, because retrying a send on a
    connection the server silently dropped could deliver the message twice.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        timeout: float = 30.0,
        pool_size: int = 8,
        local_hostname: str | None = None,
        idle_check_seconds: float = 10.0,
        max_messages_per_connection: int = 500,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._starttls = starttls
        self._use_tls = use_tls
        self._timeout = timeout
        self._local_hostname = local_hostname
        self._idle_check_seconds = idle_check_seconds
        self._max_messages = max_messages_per_connection
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: deque[_Connection] = deque()
        self._closed = False
        self._retiring: set[asyncio.Task[None]] = set()
        # Connections opened so far; lets tests and metrics see that the pool is reused.
        self.connections_opened = 0

    async def send(
        self, sender: str, recipient: str, data: bytes, *, start: StartHook | None = None
    ) -> str:
        """Submit ``data`` for one recipient; returns the server's reply to DATA.

        ``start`` runs when a connection is ready, right before MAIL FROM (the caller records
        that the message is now in flight); when it declines, NotStartedError is raised.
        """
        if self._closed:
            raise RuntimeError("SmtpMailer is closed")
        wire = _wire(data)
        async with self._slots:
            conn = await self._checkout()
            if start is not None:
                await self._start(conn, start)
            keep = False
            step = Step()  # the transaction is driven step by step to know where it failed
            try:
                if pipelines(conn.client, sender, recipient):
                    reply = await pipelined(
                        conn.client, sender, recipient, wire, self._timeout, step
                    )
                else:
                    await conn.client.mail(sender)
                    step.stage = "rcpt"
                    await conn.client.rcpt(recipient)
                    step.stage = "data"
                    reply = await _data(conn.client, wire, self._timeout)
                keep = True
                return reply.message
            except aiosmtplib.SMTPResponseException as exc:
                keep = conn.client.is_connected and exc.code not in _CLOSING_CODES
                keep = keep and await _reset(conn.client)
                raise _classify(exc.code, exc.message, step.stage) from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                message = str(exc) or type(exc).__name__
                stage = step.stage
                if stage == "data":
                    # The connection died after the message went out, possibly after the
                    # server accepted it: resending could deliver it twice.
                    raise UnknownOutcomeError(None, message, stage=stage) from exc
                raise TemporarySendError(None, message, stage=stage) from exc
            finally:
                # Synchronous on purpose: an await here could be cancelled after a successful
                # send and turn a delivered message into an unknown outcome.
                self._checkin(conn, keep)

    async def close(self) -> None:
        """Quit every idle connection; connections in use are closed when they come back."""
        self._closed = True
        while self._idle:
            await _quit_quietly(self._idle.pop().client)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _start(self, conn: _Connection, start: StartHook) -> None:
        """Run the caller's hook; the connection, still clean, goes back to the pool when it
        declines or fails."""
        try:
            go = await start(conn.lane)
        except BaseException:
            self._checkin(conn, keep=True)
            raise
        if not go:
            self._checkin(conn, keep=True)
            raise NotStartedError(None, "declined before MAIL FROM", stage="start")

    async def _checkout(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if time.monotonic() - conn.last_used < self._idle_check_seconds:
                return conn
            if await _still_alive(conn.client):
                return conn
            logger.info("discarding stale SMTP connection to %s:%s", self._host, self._port)
            await _quit_quietly(conn.client)
        return await self._connect()

    def _checkin(self, conn: _Connection, keep: bool) -> None:
        conn.sent += 1
        conn.last_used = time.monotonic()
        if not keep:
            # After an error the session state is unknown; drop it without a QUIT.
            conn.client.close()
        elif not self._closed and conn.sent < self._max_messages:
            self._idle.append(conn)
        else:
            task = asyncio.create_task(_quit_quietly(conn.client))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _connect(self) -> _Connection:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            use_tls=self._use_tls,
            start_tls=self._starttls,
            timeout=self._timeout,
            local_hostname=self._local_hostname,
        )
        try:
            await client.connect()
            # Greeted now, not at the first MAIL: what the relay offers (PIPELINING) decides
            # how the first message goes.
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
        except aiosmtplib.SMTPResponseException as exc:
            # Even a 5xx greeting or AUTH failure is our relay's problem, not the recipient's.
            raise TemporarySendError(exc.code, exc.message, stage="connect") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            message = str(exc) or type(exc).__name__
            raise TemporarySendError(None, message, stage="connect") from exc
        self.connections_opened += 1
        logger.debug("opened SMTP connection to %s:%s", self._host, self._port)
        return _Connection(client=client, last_used=time.monotonic())


def _wire(data: bytes) -> bytes:
    """The DATA payload as SMTP carries it (RFC 5321 4.5.2): CRLF line ends, a "." that starts
    a line doubled, the "." line that ends the message. aiosmtplib's ``data()`` runs two regex
    substitutions over every line for this (~10% of a send's CPU); a message we built already
    has CRLF line ends, which three counts confirm at C speed, and stuffing is one replace."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = _LINE_END.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


async def _data(client: aiosmtplib.SMTP, wire: bytes, limit: float) -> aiosmtplib.SMTPResponse:
    """DATA, then the prepared payload (``_wire``), then the relay's verdict on it; each reply
    within ``limit`` seconds, as aiosmtplib's own commands."""
    start = await client.execute_command(b"DATA", timeout=limit)
    if start.code != START_INPUT:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        # No await between the write and read_response: the reply cannot arrive unexpected.
        protocol.write(wire)
        reply = await protocol.read_response(timeout=limit)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()  # half a message may be on the wire: the session is unusable
        raise
    if reply.code != COMPLETED:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply


def _classify(code: int | None, message: str, stage: str) -> SendError:
    if code is not None and 500 <= code < 600:
        return PermanentSendError(code, message, stage=stage)
    return TemporarySendError(code, message, stage=stage)


async def _reset(client: aiosmtplib.SMTP) -> bool:
    """RSET after a refused step, so the connection can carry the next message."""
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


async def _still_alive(client: aiosmtplib.SMTP) -> bool:
    if not client.is_connected:
        return False
    try:
        await client.noop()
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


async def _quit_quietly(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await asyncio.wait_for(client.quit(), timeout=2.0)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
