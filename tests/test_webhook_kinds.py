"""How each provider's kinds of event are mapped: the ESPs' own suppressions, group
unsubscribes, big bounces, bot clicks, untracked kinds, and the ways our message is named."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import esp_requests as esp
import pytest
from esp_cases import (
    Payload,
    mailgun_failed,
    ours,
    post,
    postmark_bounce,
    running,
    send_to,
    ses_complaint,
    status,
    stored,
    suppressed,
)
from harness import Stack

from sequences.intake.esp import mailgun, postmark, sendgrid, ses
from sequences.intake.esp.common import EspEvent
from sequences.mail.capture import CaptureServer
from sequences.mail.tags import tag_headers


@pytest.fixture
async def stack(tmp_path: Path, capture: CaptureServer, redis_db: str) -> AsyncIterator[Stack]:
    async with running(tmp_path, capture, redis_db) as started:
        yield started


def _subscription_change(email: str, reason: str) -> dict[str, Any]:
    fields = {"SuppressSending": True, "Origin": "Recipient", "SuppressionReason": reason}
    return esp.postmark_record("SubscriptionChange", email, **fields)


async def test_what_each_provider_reports_of_its_own_suppressions(stack: Stack) -> None:
    """SendGrid's dropped, Postmark's deactivations and policy bounces, unsubscribes."""
    cases: list[tuple[str, Payload, str, str | None]] = [
        (
            "sendgrid",
            lambda e: esp.sendgrid_event("dropped", e, reason="Bounced Address"),
            "bounced",
            "hard_bounce",
        ),
        (
            "sendgrid",
            lambda e: esp.sendgrid_event("dropped", e, reason="Spam Content"),
            "dropped",
            None,
        ),
        (
            "sendgrid",
            lambda e: esp.sendgrid_event("unsubscribe", e),
            "unsubscribed",
            "unsubscribed",
        ),
        ("postmark", postmark_bounce("ManuallyDeactivated"), "bounced", "hard_bounce"),
        ("postmark", postmark_bounce("DMARCPolicy"), "bounced", None),
        ("postmark", postmark_bounce("SpamNotification"), "bounced", None),
        (
            "postmark",
            lambda e: _subscription_change(e, "ManualSuppression"),
            "unsubscribed",
            "unsubscribed",
        ),
        ("mailgun", lambda e: esp.mailgun_event("unsubscribed", e), "unsubscribed", "unsubscribed"),
        ("mailgun", mailgun_failed("permanent", "suppress-complaint"), "complained", "complaint"),
    ]
    people = [f"p{n}@example.com" for n in range(len(cases))]
    sent = await send_to(stack, *people)
    for (provider, build, _, _), email in zip(cases, people, strict=True):
        assert (await post(stack, ours(provider, build(email), sent[email])))["accepted"] == 1
    kinds = {e["email_key"]: e["type"] for e in await stored(stack)}
    assert [kinds[p] for p in people] == [c[2] for c in cases]
    assert [await suppressed(stack, p) for p in people] == [c[3] for c in cases]


def _group_unsubscribe(email: str) -> dict[str, Any]:
    return esp.sendgrid_event("group_unsubscribe", email, asm_group_id=42, useragent=esp.BROWSER_UA)


async def test_a_group_unsubscribe_is_not_a_global_one(stack: Stack) -> None:
    sent = (await send_to(stack, "ada@example.com"))["ada@example.com"]
    assert (await post(stack, ours("sendgrid", _group_unsubscribe(sent.email), sent)))["accepted"]
    [event] = await stored(stack)
    assert (event["type"], event["properties"]["group"]) == ("group_unsubscribed", 42)
    assert await suppressed(stack, sent.email) is None
    assert await status(stack, sent) == ("active", None)


async def test_a_group_unsubscribe_can_be_made_global(
    tmp_path: Path, capture: CaptureServer, redis_db: str
) -> None:
    settings = {"DRIPLINE_GROUP_UNSUBSCRIBE_SUPPRESSES": "true"}
    async with running(tmp_path, capture, redis_db, **settings) as stack:
        sent = (await send_to(stack, "ada@example.com"))["ada@example.com"]
        assert (await post(stack, ours("sendgrid", _group_unsubscribe(sent.email), sent)))[
            "accepted"
        ]
        assert await suppressed(stack, sent.email) == "unsubscribed"


async def test_a_big_bounce_still_suppresses(stack: Stack) -> None:
    """Postmark can include the whole bounced message; its size must not lose the bounce."""
    sent = (await send_to(stack, "ada@example.com"))["ada@example.com"]
    content = "Received: by mx.example.com\r\n" + "x" * 1_500_000
    bounce = esp.postmark_record("Bounce", sent.email, Type="HardBounce", Content=content)
    assert (await post(stack, ours("postmark", bounce, sent)))["accepted"] == 1
    assert await suppressed(stack, sent.email) == "hard_bounce"
    [event] = await stored(stack)
    assert "Content" not in json.dumps(event["properties"])  # the message itself is not kept


async def test_bot_clicks_do_not_count(stack: Stack) -> None:
    sent = await send_to(stack, "bot@example.com", "human@example.com")
    bot, human = sent["bot@example.com"], sent["human@example.com"]
    link = "https://acme.test/quickstart"
    # SendGrid's times are whole seconds; a person clicks after the send, not in its second.
    person = {"useragent": esp.BROWSER_UA, "timestamp": int(time.time()) + 2}
    clicks = [
        (
            "sendgrid",
            esp.sendgrid_event("click", bot.email, useragent=esp.SCANNER_UA, url=link),
            bot,
        ),
        ("postmark", esp.postmark_record("Click", bot.email, UserAgent=esp.SCANNER_UA), bot),
        ("sendgrid", esp.sendgrid_event("click", human.email, **person), human),
    ]
    for provider, payload, message in clicks:
        assert (await post(stack, ours(provider, payload, message)))["accepted"] == 1
    events = await stored(stack)
    assert [(e["email_key"], e["is_bot"]) for e in events] == [
        (bot.email, True),
        (bot.email, True),
        (human.email, False),
    ]
    assert events[0]["properties"]["url"] == link
    assert await status(stack, bot) == ("active", None)  # exit_on: clicked; a bot is no one
    assert await status(stack, human) == ("exited", "exit_on: clicked")


async def test_kinds_we_do_not_track_are_counted_not_stored(stack: Stack) -> None:
    sent = (await send_to(stack, "x@example.com"))["x@example.com"]
    untracked = [
        ("sendgrid", esp.sendgrid_event("processed", sent.email)),
        ("mailgun", esp.mailgun_event("accepted", sent.email)),
        ("ses", esp.ses_record("Send", sent.email)),
        ("postmark", esp.postmark_record("Bounce", sent.email, Type="AutoResponder")),
        ("resend", esp.resend_payload("email.sent", sent.email)),
        ("ses", {**ses_complaint(sent.email), "complaint": {"complaintFeedbackType": "not-spam"}}),
        # Postmark reports a hard bounce twice: as a Bounce, then as a SubscriptionChange.
        ("postmark", _subscription_change(sent.email, "HardBounce")),
    ]
    for provider, payload in untracked:
        answer = await post(stack, ours(provider, payload, sent))
        assert (answer["accepted"], answer["ignored"]) == (0, 1), (provider, answer)
    assert await stored(stack) == []
    assert await suppressed(stack, sent.email) is None


async def test_events_land_on_our_message_named_either_way(stack: Stack) -> None:
    """By our tag, or by the Message-ID we stored, with or without its angle brackets."""
    sent = (await send_to(stack, "ada@example.com"))["ada@example.com"]
    mailgun_message = {"headers": {"message-id": sent.header.strip("<>")}}
    ses_open = esp.ses_record("Open", sent.email, open={"userAgent": esp.BROWSER_UA})
    ses_open["mail"]["commonHeaders"]["messageId"] = sent.header
    for signed in [
        esp.sendgrid([esp.sendgrid_event("open", sent.email, **{"smtp-id": sent.header})]),
        esp.mailgun(esp.mailgun_event("opened", sent.email, message=mailgun_message)),
        esp.sns(ses_open),
        ours("postmark", esp.postmark_record("Open", sent.email), sent),
        ours("resend", esp.resend_payload("email.opened", sent.email), sent),
    ]:
        assert (await post(stack, signed))["accepted"] == 1, signed.provider
    events = await stored(stack)
    assert [(e["message_pk"], e["enrollment_id"]) for e in events] == [
        (sent.pk, sent.enrollment)
    ] * 5
    assert {e["verified"] for e in events} == {False}  # an open is never proof of reading


async def test_resend_over_smtp_names_our_message_by_subject_and_time(stack: Stack) -> None:
    """Resend echoes no header of ours over SMTP: the subject, the address and the time it took
    the email name our message; the same subject to someone else, or days later, does not."""
    sent = await send_to(stack, "ada@example.com", "bob@example.com")
    ada, bob = sent["ada@example.com"], sent["bob@example.com"]
    now = datetime.now(UTC)
    bounce = {"type": "Permanent", "message": "550 5.1.1 no such user"}

    def resend_bounce(to: list[str], subject: str, created: datetime) -> esp.Signed:
        payload = esp.resend_payload("email.bounced", to, subject=subject, bounce=bounce)
        payload["data"]["created_at"] = created.isoformat()
        return esp.signed("resend", payload)

    for foreign in [
        resend_bounce([ada.email], "Another system's newsletter", now),
        resend_bounce([ada.email], ada.subject, now - timedelta(days=3)),
        resend_bounce(["cy@example.com"], ada.subject, now),
    ]:
        assert (await post(stack, foreign))["foreign"] == 1
    assert await suppressed(stack, ada.email) is None
    answer = await post(stack, resend_bounce(["cy@example.com", bob.email], bob.subject, now))
    assert answer["accepted"] == 1, answer
    assert await suppressed(stack, bob.email) == "hard_bounce"
    [event] = await stored(stack)
    assert (event["message_pk"], event["email_key"]) == (bob.pk, bob.email)


def _one(events: list[Any]) -> EspEvent:
    [event] = events
    assert isinstance(event, EspEvent), event
    return event


def test_tag_headers_come_back_in_each_providers_events() -> None:
    pk = "msg_0123456789abcdef0123"
    smtpapi = json.loads(tag_headers("sendgrid", pk)["X-SMTPAPI"])["unique_args"]
    event = {**esp.sendgrid_event("open", "a@example.com"), **smtpapi}
    assert _one(sendgrid.parse(json.dumps([event]).encode(), {})).message_ref == pk
    variables = json.loads(tag_headers("mailgun", pk)["X-Mailgun-Variables"])
    data = esp.mailgun_event("opened", "a@example.com", **{"user-variables": variables})
    assert _one(mailgun.parse(json.dumps({"event-data": data}).encode(), {})).message_ref == pk
    [(name, value)] = tag_headers("postmark", pk).items()
    metadata = {name.removeprefix("X-PM-Metadata-"): value}
    record = esp.postmark_record("Open", "a@example.com", Metadata=metadata)
    assert _one(postmark.parse(json.dumps(record).encode(), {})).message_ref == pk
    tag, _, value = tag_headers("ses", pk)["X-SES-MESSAGE-TAGS"].partition("=")
    ses_event = esp.ses_record("Open", "a@example.com")
    ses_event["mail"]["tags"][tag] = [value]
    assert _one(ses.parse(esp.sns(ses_event).body, {})).message_ref == pk
    assert tag_headers("resend", pk) == {}
    with pytest.raises(ValueError, match="unknown ESP"):
        tag_headers("sparkpost", pk)


def sendgrid_sample(email: str) -> list[dict[str, Any]]:
    """One of each event SendGrid documents, about one message, as one batch."""
    browser = {"useragent": esp.BROWSER_UA, "ip": "255.255.255.255"}
    fields: list[tuple[str, dict[str, Any]]] = [
        ("processed", {}),
        ("deferred", {"response": "400 try again later", "attempt": "5"}),
        ("delivered", {"response": "250 OK"}),
        ("open", {**browser, "sg_machine_open": False}),
        ("click", {**browser, "url": "https://acme.test/quickstart", "url_offset": {"index": 0}}),
        ("bounce", {"reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce"}),
        ("dropped", {"reason": "Bounced Address", "status": "5.0.0"}),
        ("spamreport", {}),
        ("unsubscribe", {}),
        ("group_unsubscribe", {**browser, "asm_group_id": 10}),
        ("group_resubscribe", {**browser, "asm_group_id": 10}),
    ]
    later = int(time.time()) + 5  # after the send, as a person's open and click are
    return [esp.sendgrid_event(kind, email, timestamp=later, **extra) for kind, extra in fields]


async def test_sendgrids_documented_batch(stack: Stack) -> None:
    sent = (await send_to(stack, "ada@example.com"))["ada@example.com"]
    batch = [esp.tagged("sendgrid", event, sent.pk) for event in sendgrid_sample(sent.email)]
    answer = await post(stack, esp.sendgrid(batch))
    assert (answer["accepted"], answer["ignored"], answer["rejected"]) == (10, 1, []), answer
    assert [e["type"] for e in await stored(stack)] == [
        "delayed",
        "delivered",
        "opened",
        "clicked",
        "bounced",
        "bounced",
        "complained",
        "unsubscribed",
        "group_unsubscribed",
        "group_resubscribed",
    ]
    assert await suppressed(stack, sent.email) is not None
