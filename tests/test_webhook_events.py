"""What ESP webhook events do once signed: only events about mail Dripline sent act, on the one
recipient it went to; suppression across sequences, delays, group unsubscribes, batches, bots."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import esp_requests as esp
import pytest
from harness import Stack, eventually, make_settings, running_stack
from sqlalchemy import select

from sequences.intake.esp import mailgun, postmark, sendgrid, ses
from sequences.intake.esp.common import EspEvent
from sequences.mail.capture import CaptureServer
from sequences.mail.tags import tag_headers
from sequences.store.tables import CONTACTS, EVENTS, MESSAGES, SUPPRESSIONS, MessageState

SEQUENCE = """
key: {key}
name: Webhook {key}
sender: {{from: "Ops <ops@acme.test>"}}
exit_on: [{exit_on}]
steps:
  - id: hello
    email: {{brief: Hello, fallback: {{subject: "Hello from {key}", body: "Hello."}}}}
  - id: hold
    wait: {{for: 60d}}
"""
PROVIDERS = ["mailgun", "postmark", "resend", "sendgrid", "ses"]
Payload = Callable[[str], dict[str, Any]]  # recipient -> the provider's payload


@dataclass(frozen=True)
class Sent:
    """A message Dripline sent: its id (what our tag carries) and its Message-ID header."""

    email: str
    pk: str
    header: str
    enrollment: str
    subject: str


@asynccontextmanager
async def _running(
    tmp_path: Path, capture: CaptureServer, redis_db: str, url: str = "", **overrides: object
) -> AsyncIterator[Stack]:
    url = url or f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    settings = make_settings(tmp_path, url, **esp.settings_overrides(), **overrides)
    async with running_stack(settings, redis_db, capture, worker=True) as running:
        running.deps.fetcher = esp.CertificateServer()
        for key, exit_on in (("webhook-a", "clicked"), ("webhook-b", "converted")):
            text = SEQUENCE.format(key=key, exit_on=exit_on)
            assert (await running.apply(key, text)).status_code == 201
        yield running


@pytest.fixture
async def stack(tmp_path: Path, capture: CaptureServer, redis_db: str) -> AsyncIterator[Stack]:
    async with _running(tmp_path, capture, redis_db) as running:
        yield running


async def send_to(stack: Stack, *emails: str, sequence: str = "webhook-a") -> dict[str, Sent]:
    """Enroll each address and wait until the worker has sent it the first email."""
    enrollments = {}
    for email in emails:
        response = await stack.enroll(sequence, email)
        assert response.status_code == 201, response.text
        enrollments[response.json()["id"]] = email
    columns = (MESSAGES.c.id, MESSAGES.c.message_id, MESSAGES.c.enrollment_id, MESSAGES.c.subject)
    query = select(*columns).where(
        MESSAGES.c.enrollment_id.in_(list(enrollments)), MESSAGES.c.state == MessageState.sent
    )

    async def sent() -> dict[str, Sent] | None:
        async with stack.deps.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = {
            enrollments[r.enrollment_id]: Sent(
                enrollments[r.enrollment_id], r.id, r.message_id, r.enrollment_id, r.subject
            )
            for r in rows
        }
        return found if len(found) == len(emails) else None

    result: dict[str, Sent] = await eventually(sent)
    return result


async def post(stack: Stack, signed: esp.Signed) -> dict[str, Any]:
    response = await stack.client.post(
        f"/v1/webhooks/{signed.provider}", content=signed.body, headers=signed.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ours(provider: str, payload: dict[str, Any], message: Sent) -> esp.Signed:
    return esp.signed(provider, esp.tagged(provider, payload, message.pk))


async def stored(stack: Stack) -> list[dict[str, Any]]:
    query = select(EVENTS, CONTACTS.c.email_key).join(CONTACTS).order_by(EVENTS.c.id)
    async with stack.deps.reader.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def status(stack: Stack, message: Sent) -> tuple[str, str | None]:
    body = await stack.enrollment(message.enrollment)
    return body["status"], body["exit_reason"]


async def suppressed(stack: Stack, email: str) -> str | None:
    query = select(SUPPRESSIONS.c.reason).where(SUPPRESSIONS.c.email_key == email)
    async with stack.deps.reader.connect() as conn:
        reason: str | None = await conn.scalar(query)
    return reason


async def score(stack: Stack, email: str) -> float:
    response = await stack.client.get(f"/v1/contacts/{email}", headers=stack.auth())
    value: float = response.json()["score"]
    return value


# Each provider's documented events, shaped as in its samples, about ``email``.


def _sendgrid_bounce(kind: str) -> Payload:
    reason = "550 5.1.1 The email account that you tried to reach does not exist."
    return lambda email: esp.sendgrid_event(
        "bounce", email, reason=reason, type=kind, status="5.1.1"
    )


def _mailgun_failed(severity: str, reason: str = "bounce") -> Payload:
    status = {"code": 550, "message": "5.1.1 The email account does not exist"}
    fields = {"severity": severity, "reason": reason, "delivery-status": status}
    return lambda email: esp.mailgun_event("failed", email, **fields)


def _postmark_bounce(kind: str) -> Payload:
    return lambda email: esp.postmark_record("Bounce", email, Type=kind)


def _resend_bounce(kind: str) -> Payload:
    bounce = {"message": "The recipient's mail server rejected it", "subType": "General"}
    return lambda email: esp.resend_payload("email.bounced", email, bounce={**bounce, "type": kind})


def _ses_complaint(email: str) -> dict[str, Any]:
    complaint = {
        "complainedRecipients": [{"emailAddress": email}],
        "timestamp": "2026-11-26T10:00:00.000Z",
        "feedbackId": "0100017c-complaint",
        "complaintFeedbackType": "abuse",
    }
    return esp.ses_record("Complaint", email, complaint=complaint)


def _ses_delay(email: str) -> dict[str, Any]:
    delay = {
        "delayType": "TransientCommunicationFailure",
        "delayedRecipients": [{"emailAddress": email, "status": "4.4.1"}],
        "expirationTime": "2026-11-27T10:00:00.000Z",
        "timestamp": "2026-11-26T10:00:00.000Z",
    }
    return esp.ses_record("DeliveryDelay", email, deliveryDelay=delay)


def _click(provider: str) -> Payload:
    link = "https://acme.test/quickstart"
    return {
        "sendgrid": lambda e: esp.sendgrid_event("click", e, url=link, useragent=esp.BROWSER_UA),
        "mailgun": lambda e: esp.mailgun_event("clicked", e, url=link),
        "ses": lambda e: esp.ses_record("Click", e, click={"link": link}),
        "postmark": lambda e: esp.postmark_record("Click", e, OriginalLink=link),
        "resend": lambda e: esp.resend_payload("email.clicked", e, click={"link": link}),
    }[provider]


# provider: (hard bounce, complaint, soft bounce, delayed)
OUTCOMES: dict[str, tuple[Payload, Payload, Payload, Payload]] = {
    "sendgrid": (
        _sendgrid_bounce("bounce"),
        lambda email: esp.sendgrid_event("spamreport", email),
        _sendgrid_bounce("blocked"),
        lambda email: esp.sendgrid_event("deferred", email, response="421 try later", attempt="1"),
    ),
    "mailgun": (
        _mailgun_failed("permanent"),
        lambda email: esp.mailgun_event("complained", email),
        # Mailgun has no final soft bounce: a suppressed address is refused for good.
        _mailgun_failed("permanent", "suppress-bounce"),
        _mailgun_failed("temporary"),
    ),
    "ses": (
        lambda email: esp.ses_bounce(email, "Permanent"),
        _ses_complaint,
        lambda email: esp.ses_bounce(email, "Transient"),
        _ses_delay,
    ),
    "postmark": (
        _postmark_bounce("HardBounce"),
        lambda email: esp.postmark_record("SpamComplaint", email),
        _postmark_bounce("SoftBounce"),
        _postmark_bounce("Transient"),
    ),
    "resend": (
        _resend_bounce("Permanent"),
        lambda email: esp.resend_payload("email.complained", email),
        _resend_bounce("Transient"),
        lambda email: esp.resend_payload("email.delivery_delayed", email),
    ),
}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_outcomes_about_our_mail(stack: Stack, provider: str) -> None:
    hard, complaint, soft, delayed = OUTCOMES[provider]
    people = [f"{kind}-{provider}@example.com" for kind in ("hard", "complaint", "soft", "late")]
    sent = await send_to(stack, *people)
    also = await send_to(stack, *people, sequence="webhook-b")  # suppression ends every sequence
    for build, email in zip((hard, complaint, soft, delayed), people, strict=True):
        answer = await post(stack, ours(provider, build(email), sent[email]))
        assert (answer["accepted"], answer["foreign"]) == (1, 0), (email, answer)
    hard_at, complaint_at, soft_at, late_at = people
    soft_suppressed = "hard_bounce" if provider == "mailgun" else None
    assert [await suppressed(stack, e) for e in people] == [
        "hard_bounce",
        "complaint",
        soft_suppressed,
        None,
    ]
    assert await status(stack, also[hard_at]) == ("exited", "hard_bounce")
    assert await status(stack, also[complaint_at]) == ("exited", "complaint")
    assert await status(stack, sent[late_at]) == ("active", None)
    events = {e["email_key"]: e for e in await stored(stack)}
    assert events[hard_at]["properties"]["bounce_type"] == "hard"
    assert events[hard_at]["message_pk"] == sent[hard_at].pk
    assert events[soft_at]["type"] == "bounced"
    # A delay is recorded, the same kind from every provider, and never scored as a bounce.
    assert events[late_at]["type"] == "delayed"
    assert await score(stack, late_at) == 0.0


async def test_events_about_mail_we_never_sent_change_nothing(stack: Stack) -> None:
    """Another system's mail on the same ESP account: a click that would exit the enrollment
    (exit_on: clicked) and score +3, a bounce that would suppress, all answered 2xx and counted."""
    sent = (await send_to(stack, "ada@example.com"))["ada@example.com"]
    hard = {provider: OUTCOMES[provider][0] for provider in PROVIDERS}
    for provider in PROVIDERS:
        for build in (_click(provider), hard[provider]):
            answer = await post(stack, esp.signed(provider, build(sent.email)))
            assert (answer["accepted"], answer["foreign"]) == (0, 1), (provider, answer)
    # Our Message-ID, reported for someone else (a forward): not about that person either.
    forwarded = esp.sendgrid_event("click", "bob@example.com", **{"smtp-id": sent.header})
    assert (await post(stack, esp.sendgrid([forwarded])))["foreign"] == 1
    assert await stored(stack) == []
    assert await suppressed(stack, sent.email) is None
    assert await status(stack, sent) == ("active", None)
    assert await score(stack, sent.email) == 0.0
    # The same click naming our message does act: the test above could have failed.
    assert (await post(stack, ours("postmark", _click("postmark")(sent.email), sent)))["accepted"]
    assert await status(stack, sent) == ("exited", "exit_on: clicked")
    assert await score(stack, sent.email) > 2.0  # +3, decaying (half-life: 14 s in this test)


async def test_a_multi_recipient_event_concerns_only_our_recipient(stack: Stack) -> None:
    sent = await send_to(stack, "ada@example.com", "bob@example.com", "cy@example.com")
    ada, bob, cy = sent.values()
    two = esp.resend_payload("email.bounced", [bob.email, ada.email], bounce={"type": "Permanent"})
    assert (await post(stack, ours("resend", two, ada)))["accepted"] == 1
    bounce = esp.ses_bounce(cy.email, "Permanent", notification=True)
    other = {"emailAddress": bob.email, "diagnosticCode": "smtp; 550 5.2.2 mailbox full"}
    bounce["bounce"]["bouncedRecipients"].insert(0, other)
    bounce["mail"]["commonHeaders"]["messageId"] = cy.header  # SES echoes the Message-ID
    assert (await post(stack, esp.sns(bounce)))["accepted"] == 1
    opened = esp.ses_record("Open", ada.email, open={"userAgent": esp.BROWSER_UA})
    opened["mail"]["destination"] = [bob.email, ada.email, cy.email]
    assert (await post(stack, ours("ses", opened, ada)))["accepted"] == 1
    assert [await suppressed(stack, p.email) for p in (ada, bob, cy)] == [
        "hard_bounce",
        None,
        "hard_bounce",
    ]
    events = await stored(stack)
    assert [(e["type"], e["email_key"]) for e in events] == [
        ("bounced", ada.email),
        ("bounced", cy.email),
        ("opened", ada.email),
    ]
    assert events[1]["properties"]["reply"] == "smtp; 550 5.1.1 user unknown"  # cy's, not bob's


async def test_a_batch_with_a_bad_item_stores_the_good_ones(
    tmp_path: Path, capture: CaptureServer, redis_db: str, database_url: str
) -> None:
    async with _running(tmp_path, capture, redis_db, url=database_url) as stack:
        sent = (await send_to(stack, "ada@example.com"))["ada@example.com"]
        good = esp.tagged("sendgrid", esp.sendgrid_event("open", sent.email), sent.pk)
        later = esp.tagged("sendgrid", esp.sendgrid_event("click", sent.email), sent.pk)
        bad = esp.without(esp.sendgrid_event("open", sent.email), "sg_event_id")
        answer = await post(stack, esp.sendgrid([good, bad, later]))
        assert answer["accepted"] == 2
        assert answer["rejected"] == [
            {"path": "1.sg_event_id", "message": "expected a string, got nothing"}
        ]
        assert [e["type"] for e in await stored(stack)] == ["opened", "clicked"]
        metrics = (await stack.client.get("/metrics", headers=stack.auth())).text
        assert 'dripline_webhook_rejected_total{field="sg_event_id",provider="sendgrid"} 1.0' in (
            metrics
        )
        assert 'dripline_webhook_items_total{outcome="accepted",provider="sendgrid"} 2.0' in metrics


def _again(provider: str, payload: dict[str, Any]) -> Callable[[], esp.Signed]:
    """The ESP delivering one event again: SendGrid, Mailgun and Svix sign each attempt afresh
    (Mailgun with a new token; a repeated token is tested at the door); SNS repeats itself."""
    if provider == "resend":
        first = esp.signed(provider, payload)
        return lambda: esp.svix(first.body, msg_id=first.headers["svix-id"])
    if provider == "ses":
        once = esp.signed(provider, payload)
        return lambda: once
    return lambda: esp.signed(provider, payload)


async def test_duplicate_deliveries_are_answered_2xx_and_stored_once(stack: Stack) -> None:
    sent = await send_to(stack, *(f"{p}@example.com" for p in PROVIDERS))
    for provider in PROVIDERS:
        message = sent[f"{provider}@example.com"]
        again = _again(provider, esp.tagged(provider, _click(provider)(message.email), message.pk))
        assert (await post(stack, again()))["accepted"] == 1, provider
        second = await post(stack, again())
        assert (second["accepted"], second["duplicates"]) == (0, 1), (provider, second)
    assert len(await stored(stack)) == len(PROVIDERS)


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
        ("postmark", _postmark_bounce("ManuallyDeactivated"), "bounced", "hard_bounce"),
        ("postmark", _postmark_bounce("DMARCPolicy"), "bounced", None),
        ("postmark", _postmark_bounce("SpamNotification"), "bounced", None),
        (
            "postmark",
            lambda e: _subscription_change(e, "ManualSuppression"),
            "unsubscribed",
            "unsubscribed",
        ),
        ("mailgun", lambda e: esp.mailgun_event("unsubscribed", e), "unsubscribed", "unsubscribed"),
        ("mailgun", _mailgun_failed("permanent", "suppress-complaint"), "complained", "complaint"),
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
    async with _running(tmp_path, capture, redis_db, **settings) as stack:
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
        ("ses", {**_ses_complaint(sent.email), "complaint": {"complaintFeedbackType": "not-spam"}}),
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
