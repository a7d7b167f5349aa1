"""SMTP PIPELINING (RFC 2920) for one transaction: MAIL, RCPT and DATA written together and
their replies read by a small protocol that queues them, where the relay offers it."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass
from typing import cast

import aiosmtplib
from aiosmtplib.email import quote_address

START_INPUT = 354
COMPLETED = 250
_RCPT_OK = (250, 251)
_MAX_REPLY_LINE = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Step:
    """Where a transaction is: "mail", "rcpt" or "data" (from the DATA command on)."""

    stage: str = "mail"


def pipelines(client: aiosmtplib.SMTP, sender: str, recipient: str) -> bool:
    """Whether this transaction goes pipelined: the relay offers PIPELINING (RFC 2920) and
    both addresses are ASCII (others take aiosmtplib's path, as before)."""
    return client.supports_extension("pipelining") and (sender + recipient).isascii()


class _Replies(asyncio.Protocol):
    """Reads the replies of one pipelined transaction, in place of aiosmtplib's protocol on
    the connection. aiosmtplib reads one reply per command it sends and drops a reply that
    arrives while the one before waits to be picked up, so commands written together need
    a reader that queues what comes."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._replies: deque[aiosmtplib.SMTPResponse] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            while (reply := self._parse()) is not None:
                self._replies.append(reply)
        except aiosmtplib.SMTPResponseException as error:
            self._error = error
        self._wake()

    def eof_received(self) -> bool:
        self._lost("Unexpected EOF received")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost("Connection lost")

    def _lost(self, why: str) -> None:
        self._error = self._error or aiosmtplib.SMTPServerDisconnected(why)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _parse(self) -> aiosmtplib.SMTPResponse | None:
        """One complete reply off the buffer (its lines "250-..." then "250 ..."), or None."""
        lines, offset = [], 0
        while (end := self._buffer.find(b"\n", offset)) >= 0:
            line = bytes(self._buffer[offset : end + 1])
            offset = end + 1
            if len(line) > _MAX_REPLY_LINE or not line[:3].isdigit():
                raise aiosmtplib.SMTPResponseException(-1, f"Malformed reply: {line[:80]!r}")
            lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":
                del self._buffer[:offset]
                return aiosmtplib.SMTPResponse(int(line[:3]), "\n".join(lines))
        if len(self._buffer) > _MAX_REPLY_LINE * 10:
            raise aiosmtplib.SMTPResponseException(-1, "Reply too long")
        return None

    async def next(self, limit: float) -> aiosmtplib.SMTPResponse:
        while not self._replies:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, limit)
            except TimeoutError:
                raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for the relay") from None
        return self._replies.popleft()


async def pipelined(
    client: aiosmtplib.SMTP, sender: str, recipient: str, wire: bytes, limit: float, step: Step
) -> aiosmtplib.SMTPResponse:
    """MAIL, RCPT and DATA in one write, then their three replies, then the message: two
    round trips instead of four, which on a relay 20 ms away halves each connection's time per
    message. Refusals raise as aiosmtplib's commands do, with ``step`` at the refused one."""
    own = client.protocol
    if client.transport is None or own is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    transport = cast(asyncio.Transport, client.transport)
    envelope = f"MAIL FROM:{quote_address(sender)}\r\nRCPT TO:{quote_address(recipient)}\r\n"
    if _CONTROL.search(envelope[:-2].replace("\r\n", " ")):
        raise ValueError("an address contains a control character")
    replies = _Replies()
    transport.set_protocol(replies)
    try:
        transport.write(envelope.encode("ascii") + b"DATA\r\n")
        mail = await replies.next(limit)
        step.stage = "rcpt"
        rcpt = await replies.next(limit)
        step.stage = "data"
        start = await replies.next(limit)
        accepted = mail.code == COMPLETED and rcpt.code in _RCPT_OK
        if start.code == START_INPUT and not accepted:
            # A relay that refused the envelope should refuse DATA too; one that did not gets
            # an empty message, which it cannot deliver to nobody.
            transport.write(b".\r\n")
            await replies.next(limit)
        for stage, reply, good in (("mail", mail, (COMPLETED,)), ("rcpt", rcpt, _RCPT_OK)):
            if reply.code not in good:
                step.stage = stage
                raise aiosmtplib.SMTPResponseException(reply.code, reply.message)
        if start.code != START_INPUT:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        transport.write(wire)
        done = await replies.next(limit)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()  # the session's state is unknown: never reused
        raise
    finally:
        if not transport.is_closing():
            transport.set_protocol(own)
    if done.code != COMPLETED:
        raise aiosmtplib.SMTPDataError(done.code, done.message)
    return done
