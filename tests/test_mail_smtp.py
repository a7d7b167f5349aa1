from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import dkim
import pytest

from sequences.mail.capture import CaptureServer, RejectRule, SinkServer
from sequences.mail.dkim import DkimSigner, dns_txt_record, generate_private_key_pem
from sequences.mail.mime import OutgoingEmail, build_message, make_message_id
from sequences.mail.smtp import (
    Lane,
    NotStartedError,
    PermanentSendError,
    SmtpMailer,
    TemporarySendError,
)

SENDER = "team@acme.test"
RULES = (
    RejectRule(r"@bounce\.test$", 550, "5.1.1 No such user"),
    RejectRule(r"^flaky@", 451, "4.7.1 Try again later", times=1),
)


def message(to: str, subject: str = "Hello") -> tuple[str, bytes]:
    message_id = make_message_id("acme.test")
    data = build_message(
        OutgoingEmail(
            from_addr=f"Acme <{SENDER}>",
            to_addr=to,
            subject=subject,
            text="Hi.\n",
            html="<p>Hi.</p>",
            message_id=message_id,
            unsubscribe_url="https://acme.test/u/t",
        )
    )
    return message_id, data


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[CaptureServer]:
    with CaptureServer(tmp_path / "inbox", rules=RULES) as server:
        yield server


@pytest.fixture
async def mailer(capture: CaptureServer) -> AsyncIterator[SmtpMailer]:
    client = SmtpMailer(capture.host, capture.port, pool_size=4, timeout=5, local_hostname="t")
    yield client
    await client.close()


async def test_send_and_read_back(capture: CaptureServer, mailer: SmtpMailer) -> None:
    message_id, data = message("Zoë <zoe@example.test>", subject="Grüße")
    reply = await mailer.send(SENDER, "zoe@example.test", data)

    assert reply.startswith("OK queued as ")
    [captured] = capture.messages()
    assert captured.message_id == message_id
    assert captured.to == "zoe@example.test"
    assert captured.subject == "Grüße"
    assert captured.raw == data
    assert captured.path.name.endswith(".eml")
    assert capture.count_by_message_id() == {message_id: 1}


async def test_dkim_signature_survives_the_relay(
    capture: CaptureServer, mailer: SmtpMailer
) -> None:
    pem = generate_private_key_pem()
    record = dns_txt_record(pem, "dripline", "acme.test")
    txt = "".join(re.findall(r'"([^"]*)"', record)).encode()
    _, data = message("zoe@example.test")
    await mailer.send(
        SENDER, "zoe@example.test", DkimSigner(pem, "acme.test", "dripline").sign(data)
    )
    [captured] = capture.messages()
    assert dkim.verify(captured.raw, dnsfunc=lambda name, timeout=5: txt)


async def test_hard_bounce_is_permanent(capture: CaptureServer, mailer: SmtpMailer) -> None:
    _, data = message("nobody@bounce.test")
    with pytest.raises(PermanentSendError) as caught:
        await mailer.send(SENDER, "nobody@bounce.test", data)
    assert caught.value.code == 550
    assert caught.value.stage == "rcpt"
    assert "No such user" in caught.value.message
    assert capture.messages() == []
    # aiosmtplib RSETs after a refusal, so the connection stays in the pool.
    await mailer.send(SENDER, "zoe@example.test", message("zoe@example.test")[1])
    assert mailer.connections_opened == 1


async def test_tempfail_then_success(capture: CaptureServer, mailer: SmtpMailer) -> None:
    message_id, data = message("flaky@example.test")
    with pytest.raises(TemporarySendError) as caught:
        await mailer.send(SENDER, "flaky@example.test", data)
    assert caught.value.code == 451
    await mailer.send(SENDER, "flaky@example.test", data)
    assert capture.count_by_message_id() == {message_id: 1}


async def test_pool_reuses_connections(capture: CaptureServer, mailer: SmtpMailer) -> None:
    batch = [message(f"user{i}@example.test") for i in range(50)]
    await asyncio.gather(
        *(mailer.send(SENDER, f"user{i}@example.test", d) for i, (_, d) in enumerate(batch))
    )
    counts = capture.count_by_message_id()
    assert counts == {message_id: 1 for message_id, _ in batch}
    assert 1 <= mailer.connections_opened <= 4


async def test_server_down_is_temporary() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mailer = SmtpMailer("127.0.0.1", port, timeout=2)
    with pytest.raises(TemporarySendError) as caught:
        await mailer.send(SENDER, "zoe@example.test", message("zoe@example.test")[1])
    assert caught.value.stage == "connect"
    assert caught.value.code is None
    await mailer.close()


async def test_reconnects_after_server_restart(tmp_path: Path) -> None:
    server = CaptureServer(tmp_path / "inbox")
    server.start()
    mailer = SmtpMailer(server.host, server.port, pool_size=1, idle_check_seconds=0)
    try:
        await mailer.send(SENDER, "a@example.test", message("a@example.test")[1])
        server.stop()
        restarted = CaptureServer(tmp_path / "inbox", port=server.port)
        restarted.start()
        try:
            # The pooled connection is dead; the NOOP probe notices and a new one is opened.
            await mailer.send(SENDER, "b@example.test", message("b@example.test")[1])
        finally:
            restarted.stop()
        assert mailer.connections_opened == 2
        assert [m.to for m in restarted.messages()] == ["a@example.test", "b@example.test"]
    finally:
        await mailer.close()


async def test_closed_mailer_refuses_to_send(mailer: SmtpMailer) -> None:
    await mailer.close()
    with pytest.raises(RuntimeError):
        await mailer.send(SENDER, "zoe@example.test", b"x")


async def test_sink_counts_without_storing() -> None:
    with SinkServer() as sink:
        mailer = SmtpMailer(sink.host, sink.port, pool_size=2)
        _, data = message("zoe@example.test")
        await asyncio.gather(*(mailer.send(SENDER, "zoe@example.test", data) for _ in range(10)))
        await mailer.close()
        assert sink.count == 10


async def test_start_hook_runs_before_mail_from_on_its_connection(
    capture: CaptureServer, mailer: SmtpMailer
) -> None:
    """The hook sees the connection's lane before MAIL FROM; a note left on the lane by one
    send is there for the next send on that connection; declining sends nothing."""
    seen: list[list[object]] = []

    async def start(lane: Lane) -> bool:
        seen.append(list(lane.unsettled))
        assert capture.transactions() == [] or len(capture.transactions()) == len(seen) - 1
        lane.unsettled[:] = [f"after {len(seen)}"]
        return len(seen) < 3

    await mailer.send(SENDER, "a@example.test", message("a@example.test")[1], start=start)
    await mailer.send(SENDER, "b@example.test", message("b@example.test")[1], start=start)
    with pytest.raises(NotStartedError):
        await mailer.send(SENDER, "c@example.test", message("c@example.test")[1], start=start)
    assert seen == [[], ["after 1"], ["after 2"]]  # one connection, reused: its notes carry
    assert [m.to for m in capture.messages()] == ["a@example.test", "b@example.test"]
    await mailer.send(SENDER, "d@example.test", message("d@example.test")[1])
    assert mailer.connections_opened == 1  # a declined send leaves the connection usable


async def test_capture_records_mail_from_and_acceptance_times(tmp_path: Path) -> None:
    with CaptureServer(tmp_path / "slow", rcpt_delay=0.2) as slow:
        client = SmtpMailer(slow.host, slow.port, pool_size=1, timeout=5, local_hostname="t")
        try:
            await client.send(SENDER, "z@example.test", message("z@example.test")[1])
        finally:
            await client.close()
        [transaction] = slow.transactions()
    assert transaction.accepted_at - transaction.mail_at >= 0.2  # RCPT waited in between


async def test_dot_lines_and_stray_line_ends_arrive_as_written(
    capture: CaptureServer, mailer: SmtpMailer
) -> None:
    """The mailer prepares DATA itself: a line starting with "." goes doubled and comes out
    single at the relay, a lone "." line does not end the message early, and lone LF or CR
    line ends travel as CRLF."""
    _, data = message("zoe@example.test")
    head, _, body = data.partition(b"\r\n\r\n")
    odd = b".starts with a dot\r\n.\r\n..two\r\nlone lf\nlone cr\rlast, no line end"
    await mailer.send(SENDER, "zoe@example.test", head + b"\r\n\r\n" + odd + b"\r\n" + body)
    await mailer.send(SENDER, "zoe@example.test", b".")  # a message of a single dot
    first, second = capture.messages()
    wanted = odd.replace(b"lone lf\n", b"lone lf\r\n").replace(b"lone cr\r", b"lone cr\r\n")
    assert first.raw == head + b"\r\n\r\n" + wanted + b"\r\n" + body
    assert second.raw == b".\r\n"


class _RefusingData:
    """An aiosmtpd handler that takes MAIL and RCPT, then refuses every message's content."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.seen = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.seen += 1
        return self.code


@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        ("554 5.6.0 Message refused", PermanentSendError, 554),
        ("451 4.3.0 Queue full", TemporarySendError, 451),
    ],
)
async def test_a_refused_message_raises_at_the_data_stage(
    reply: str, error: type[Exception], code: int
) -> None:
    from aiosmtpd.controller import Controller

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    handler = _RefusingData(reply)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        client = SmtpMailer("127.0.0.1", port, pool_size=1, timeout=5, local_hostname="t")
        try:
            for attempt in (1, 2):
                with pytest.raises(error) as caught:
                    await client.send(SENDER, "zoe@example.test", message("zoe@example.test")[1])
                assert isinstance(caught.value, PermanentSendError | TemporarySendError)
                assert (caught.value.code, caught.value.stage) == (code, "data")
                assert handler.seen == attempt
            assert client.connections_opened == 1  # RSET after the refusal kept it usable
        finally:
            await client.close()
    finally:
        controller.stop()
