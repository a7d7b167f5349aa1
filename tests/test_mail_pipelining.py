"""SMTP PIPELINING (RFC 2920): with a relay that offers it, MAIL, RCPT and DATA go in one write
and their replies are read together; refusals still name their stage and leave the connection
usable, and a connection lost after the message went out is an unknown outcome.

The relay here is a small asyncio server written for these tests (aiosmtpd does not offer
PIPELINING): it answers MAIL, RCPT and DATA only once it has read all three, so a client that
waited for each reply would never get one."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from certificates import self_signed

from sequences.mail.smtp import (
    PermanentSendError,
    SmtpMailer,
    TemporarySendError,
    UnknownOutcomeError,
)

SENDER = "team@acme.test"
MESSAGE = b"Subject: hi\r\n\r\n.a line with a dot\r\nbody\r\n"


@dataclass
class Relay:
    """``refuse``: recipient -> reply to its RCPT; ``start_anyway``: answer DATA with 354 even
    when every recipient was refused; ``drop_after_content``: close the connection instead of
    answering the message."""

    pipelining: bool = True
    refuse: dict[str, str] = field(default_factory=dict)
    start_anyway: bool = False
    drop_after_content: bool = False
    received: list[bytes] = field(default_factory=list)  # each message as the relay stored it
    batches: list[list[str]] = field(default_factory=list)  # commands answered together
    commands: list[str] = field(default_factory=list)
    port: int = 0

    starttls: ssl.SSLContext | None = None  # offered, and taken up when asked

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 relay.test ESMTP\r\n")
        pending: list[tuple[str, bytes]] = []
        recipients = 0
        try:
            while line := await reader.readline():
                command = line.decode().strip()
                verb = command.split(" ", 1)[0].upper()
                self.commands.append(verb)
                if verb == "EHLO":
                    offers = b"250-PIPELINING\r\n" if self.pipelining else b""
                    offers += b"250-STARTTLS\r\n" if self.starttls else b""
                    writer.write(b"250-relay.test\r\n" + offers + b"250 8BITMIME\r\n")
                elif verb == "STARTTLS" and self.starttls is not None:
                    writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                    await writer.drain()
                    await writer.start_tls(self.starttls)
                elif verb in ("RSET", "NOOP"):
                    writer.write(b"250 2.0.0 OK\r\n")
                    recipients = 0
                elif verb == "QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    break
                elif verb == "MAIL":
                    pending.append((verb, b"250 2.1.0 Sender OK\r\n"))
                elif verb == "RCPT":
                    to = command.split(":", 1)[1].strip("<> ")
                    refusal = self.refuse.get(to)
                    recipients += refusal is None
                    said = refusal or "250 2.1.5 Recipient OK"
                    pending.append((verb, said.encode() + b"\r\n"))
                elif verb == "DATA":
                    go = recipients > 0 or self.start_anyway
                    reply = b"354 Go ahead\r\n" if go else b"554 5.5.1 No valid recipients\r\n"
                    pending.append((verb, reply))
                    # The group's replies, each written on its own.
                    self.batches.append([v for v, _ in pending])
                    for _, answer in pending:
                        writer.write(answer)
                        await writer.drain()
                    pending = []
                    if go:
                        lines = []
                        while (text := await reader.readline()) != b".\r\n":
                            lines.append(text[1:] if text.startswith(b".") else text)
                        if self.drop_after_content:
                            writer.transport.abort()
                            return
                        self.received.append(b"".join(lines))
                        writer.write(b"250 2.0.0 Queued as 1\r\n")
                if not self.pipelining and pending:  # one reply per command, at once
                    self.batches.append([v for v, _ in pending])
                    for _, answer in pending:
                        writer.write(answer)
                    pending = []
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    state = Relay()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state
        server.close()


def mailer(relay: Relay) -> SmtpMailer:
    return SmtpMailer("127.0.0.1", relay.port, pool_size=1, timeout=5, local_hostname="t")


async def test_the_envelope_and_data_go_together_and_the_message_arrives_whole(
    relay: Relay,
) -> None:
    client = mailer(relay)
    try:
        for _ in range(2):
            reply = await client.send(SENDER, "zoe@example.test", MESSAGE)
            assert reply == "2.0.0 Queued as 1"
    finally:
        await client.close()
    assert relay.batches == [["MAIL", "RCPT", "DATA"]] * 2  # answered only once all three came
    assert relay.received == [MESSAGE] * 2
    assert client.connections_opened == 1


async def test_without_pipelining_on_offer_each_command_waits_for_its_reply(
    relay: Relay,
) -> None:
    relay.pipelining = False
    client = mailer(relay)
    try:
        await client.send(SENDER, "zoe@example.test", MESSAGE)
    finally:
        await client.close()
    assert relay.batches == [["MAIL"], ["RCPT"], ["DATA"]]
    assert relay.received == [MESSAGE]


@pytest.mark.parametrize("start_anyway", [False, True])
async def test_a_refused_recipient_names_its_stage_and_the_connection_carries_on(
    relay: Relay, start_anyway: bool
) -> None:
    """The relay refuses the recipient and then DATA (554), or, wrongly, starts DATA anyway:
    the client ends that empty message, reports the refusal at RCPT, resets, and the next
    message goes on the same connection."""
    relay.refuse = {"nobody@bounce.test": "550 5.1.1 No such user"}
    relay.start_anyway = start_anyway
    client = mailer(relay)
    try:
        with pytest.raises(PermanentSendError) as caught:
            await client.send(SENDER, "nobody@bounce.test", MESSAGE)
        assert (caught.value.code, caught.value.stage) == (550, "rcpt")
        assert "No such user" in caught.value.message
        await client.send(SENDER, "zoe@example.test", MESSAGE)
    finally:
        await client.close()
    assert client.connections_opened == 1
    assert "RSET" in relay.commands
    assert relay.received == ([b""] if start_anyway else []) + [MESSAGE]


async def test_a_temporary_refusal_is_temporary(relay: Relay) -> None:
    relay.refuse = {"flaky@example.test": "451 4.7.1 Try again later"}
    client = mailer(relay)
    try:
        with pytest.raises(TemporarySendError) as caught:
            await client.send(SENDER, "flaky@example.test", MESSAGE)
    finally:
        await client.close()
    assert (caught.value.code, caught.value.stage) == (451, "rcpt")


async def test_a_connection_lost_after_the_message_went_out_is_an_unknown_outcome(
    relay: Relay,
) -> None:
    relay.drop_after_content = True
    client = mailer(relay)
    try:
        with pytest.raises(UnknownOutcomeError) as caught:
            await client.send(SENDER, "zoe@example.test", MESSAGE)
        assert caught.value.stage == "data"
        relay.drop_after_content = False
        await client.send(SENDER, "zoe@example.test", MESSAGE)  # on a new connection
    finally:
        await client.close()
    assert client.connections_opened == 2
    assert relay.received == [MESSAGE]


async def test_an_address_cannot_add_a_command(relay: Relay) -> None:
    """A line break in an address is cut away with what follows it (the address is parsed),
    and a control character left in one refuses the message before anything is written."""
    client = mailer(relay)
    try:
        await client.send(SENDER, "zoe@example.test>\r\nRCPT TO:<eve@evil.test", MESSAGE)
        assert relay.commands.count("RCPT") == 1 and relay.batches == [["MAIL", "RCPT", "DATA"]]
        with pytest.raises(ValueError, match="control character"):
            await client.send(SENDER, "zo\x00e@example.test", MESSAGE)
    finally:
        await client.close()
    assert relay.commands.count("MAIL") == 1


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key, "relay.test", ip="127.0.0.1")
    cert_path, key_path = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("how", ["implicit TLS", "STARTTLS"])
async def test_pipelining_over_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The pipelined transaction's reader takes the place of aiosmtplib's on a TLS connection
    too (port 465, or 587 after STARTTLS), and gives it back for the next message."""
    cert, key = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this relay's certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    state = Relay(starttls=context if how == "STARTTLS" else None)
    implicit = context if how == "implicit TLS" else None
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=implicit)
    port = server.sockets[0].getsockname()[1]
    async with server:
        client = SmtpMailer(
            "127.0.0.1",
            port,
            pool_size=1,
            timeout=5,
            local_hostname="t",
            use_tls=implicit is not None,
            starttls=implicit is None,
        )
        try:
            for _ in range(2):
                await client.send(SENDER, "zoe@example.test", MESSAGE)
        finally:
            await client.close()
    assert state.batches == [["MAIL", "RCPT", "DATA"]] * 2
    assert state.received == [MESSAGE] * 2
    assert client.connections_opened == 1
    assert ("STARTTLS" in state.commands) is (how == "STARTTLS")
