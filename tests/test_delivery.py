"""What the SMTP server answers, and what recipients' clients do with the email."""

from __future__ import annotations

import email
import re
from collections.abc import AsyncIterator, Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest
from harness import BROWSER_UA, Stack, eventually, make_settings, running_stack
from sqlalchemy import insert, select

from sequences.mail.capture import CaptureServer, RejectRule
from sequences.store.tables import EVENTS, LINKS, MESSAGES

SEQUENCE = """
key: delivery
name: Delivery
sender: {from: "Ops <ops@acme.test>"}
steps:
  - id: hello
    email:
      brief: Hello
      cta: {text: Read more, url: "https://acme.test/read"}
      fallback: {subject: "Hello", body: "Hello there."}
  - id: hold
    wait: {for: 60d, until: [clicked]}
  - id: after
    email: {brief: After, fallback: {subject: "After the click", body: "Thanks."}}
"""


@pytest.fixture
def rules_capture(tmp_path: Path) -> Iterator[CaptureServer]:
    rules = [
        RejectRule(r"gone@", 550, "5.1.1 No such user"),
        RejectRule(r"busy@", 451, "4.3.0 Try again later", times=1),
    ]
    server = CaptureServer(tmp_path / "inbox", rules=rules)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def stack(
    tmp_path: Path, rules_capture: CaptureServer, redis_db: str
) -> AsyncIterator[Stack]:
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", DRIPLINE_BOT_CLICK_SECONDS=60
    )
    async with running_stack(settings, redis_db, rules_capture) as running:
        assert (await running.apply("delivery", SEQUENCE)).status_code == 201
        yield running


async def _enrollment(stack: Stack, enrollment_id: str, status: str) -> dict[str, Any] | None:
    body = await stack.enrollment(enrollment_id)
    return body if body["status"] == status else None


async def test_hard_bounce_suppresses_and_exits(stack: Stack) -> None:
    enrollment = (await stack.enroll("delivery", "gone@example.com")).json()["id"]
    ended = await eventually(lambda: _enrollment(stack, enrollment, "exited"))
    assert ended["exit_reason"] == "hard_bounce"
    assert "bounced" in [e["kind"] for e in ended["timeline"]]
    contact = (await stack.client.get("/v1/contacts/gone@example.com", headers=stack.auth())).json()
    assert contact["suppressed"] == "hard_bounce"
    async with stack.deps.reader.connect() as conn:
        state = await conn.scalar(select(MESSAGES.c.state))
    assert state == "bounced"
    assert stack.capture.messages() == []


async def test_temporary_failure_is_retried_and_sent_once(stack: Stack) -> None:
    enrollment = (await stack.enroll("delivery", "busy@example.com")).json()["id"]
    await eventually(lambda: _mail(stack, "busy@example.com"))
    body = await stack.enrollment(enrollment)
    retries = [e for e in body["timeline"] if e["kind"] == "send_retry"]
    assert len(retries) == 1 and "451" in retries[0]["reply"]
    assert len(stack.mail_to("busy@example.com")) == 1


async def test_bot_clicks_are_flagged_and_do_not_act(stack: Stack) -> None:
    enrollment = (await stack.enroll("delivery", "ann@example.com")).json()["id"]
    mail = await eventually(lambda: _mail(stack, "ann@example.com"))
    link = re.search(rb"/t/c/[\w-]+", mail[0].raw)
    assert link is not None
    path = link.group(0).decode()
    head = await stack.client.head(path, headers={"User-Agent": BROWSER_UA})
    scanner = await stack.client.get(path, headers={"User-Agent": "Mimecast URL Protect"})
    too_fast = await stack.client.get(path, headers={"User-Agent": BROWSER_UA})
    assert [r.status_code for r in (head, scanner, too_fast)] == [302, 302, 302]
    async with stack.deps.reader.connect() as conn:
        clicks = (await conn.execute(select(EVENTS.c.is_bot, EVENTS.c.properties))).all()
    reasons = sorted(props["bot"] for is_bot, props in clicks if is_bot)
    assert reasons == ["HEAD request", "clicked within seconds of delivery", "scanner user agent"]
    body = await stack.enrollment(enrollment)
    assert body["current_step"] == "hold"  # no human click: the wait was not woken
    assert body["engagement"]["by_step"] == {}


async def test_open_pixel_and_foreign_links(stack: Stack) -> None:
    await stack.enroll("delivery", "olga@example.com")
    mail = await eventually(lambda: _mail(stack, "olga@example.com"))
    html = email.message_from_bytes(mail[0].raw, policy=policy.default).get_body(("html",))
    assert html is not None
    pixel = re.search(r"/t/o/[\w-]+", html.get_content())
    assert pixel is not None
    response = await stack.client.get(pixel.group(0))
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    async with stack.deps.reader.connect() as conn:
        opened = (await conn.execute(select(EVENTS.c.type, EVENTS.c.verified))).all()
    assert [(row.type, row.verified) for row in opened] == [("opened", False)]
    forged = await stack.client.get("/t/c/not-a-token?url=https://evil.example")
    assert forged.status_code == 404 and "location" not in forged.headers


async def _mail(stack: Stack, address: str) -> list[Any]:
    return stack.mail_to(address)


async def test_every_link_burst_is_a_scanner(
    tmp_path: Path, rules_capture: CaptureServer, redis_db: str
) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'burst.sqlite'}")
    async with running_stack(settings, redis_db, rules_capture) as stack:
        assert (await stack.apply("delivery", SEQUENCE)).status_code == 201
        await stack.enroll("delivery", "bea@example.com")
        await eventually(lambda: _mail(stack, "bea@example.com"))
        async with stack.deps.engine.begin() as conn:
            message_pk = await conn.scalar(select(MESSAGES.c.id))
            # A second tracked link, as copy with an inline link would have.
            await conn.execute(
                insert(LINKS).values(
                    message_pk=message_pk, token="second", url="https://acme.test/b"
                )
            )
            first = await conn.scalar(select(LINKS.c.token).where(LINKS.c.token != "second"))
        headers = {"User-Agent": BROWSER_UA}
        assert (await stack.client.get(f"/t/c/{first}", headers=headers)).status_code == 302
        assert (await stack.client.get("/t/c/second", headers=headers)).status_code == 302
        async with stack.deps.reader.connect() as conn:
            clicks = (await conn.execute(select(EVENTS.c.is_bot, EVENTS.c.properties))).all()
        assert [(bot, props.get("bot")) for bot, props in clicks] == [
            (False, None),
            (True, "every-link burst"),
        ]
