"""What ESP webhook events do: suppression across sequences, our messages, bots, ignored kinds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import esp_requests as esp
import pytest
from harness import Stack, eventually, make_settings, running_stack
from sqlalchemy import select

from sequences.intake.esp import mailgun, postmark, sendgrid, ses
from sequences.mail.capture import CaptureServer
from sequences.mail.tags import tag_headers
from sequences.store.tables import CONTACTS, EVENTS, MESSAGES, SUPPRESSIONS

SEQUENCE = """
key: {key}
name: Webhook {key}
sender: {{from: "Ops <ops@acme.test>"}}
steps:
  - id: hello
    email: {{brief: Hello, fallback: {{subject: "Hello from {key}", body: "Hello."}}}}
  - id: hold
    wait: {{for: 60d}}
"""
Build = Callable[[str], esp.Signed]


@asynccontextmanager
async def _running(
    tmp_path: Path, capture: CaptureServer, redis_db: str, *, worker: bool, url: str = ""
) -> AsyncIterator[Stack]:
    url = url or f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    settings = make_settings(tmp_path, url, **esp.settings_overrides())
    async with running_stack(settings, redis_db, capture, worker=worker) as running:
        running.deps.fetcher = esp.CertificateServer()
        for key in ("webhook-a", "webhook-b"):
            assert (await running.apply(key, SEQUENCE.format(key=key))).status_code == 201
        yield running


@pytest.fixture
async def stack(tmp_path: Path, capture: CaptureServer, redis_db: str) -> AsyncIterator[Stack]:
    async with _running(tmp_path, capture, redis_db, worker=False) as running:
        yield running


@pytest.fixture
async def sending(
    tmp_path: Path, capture: CaptureServer, redis_db: str, database_url: str
) -> AsyncIterator[Stack]:
    """With a worker, on SQLite and PostgreSQL, for the test that needs a message really sent."""
    async with _running(tmp_path, capture, redis_db, worker=True, url=database_url) as running:
        yield running


async def post(stack: Stack, signed: esp.Signed) -> dict[str, int]:
    response = await stack.client.post(
        f"/v1/webhooks/{signed.provider}", content=signed.body, headers=signed.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, int] = response.json()
    return body


async def stored(stack: Stack) -> list[dict[str, Any]]:
    query = select(EVENTS, CONTACTS.c.email_key).join(CONTACTS).order_by(EVENTS.c.id)
    async with stack.deps.reader.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def enroll_in_both(stack: Stack, email: str) -> list[str]:
    ids = []
    for key in ("webhook-a", "webhook-b"):
        response = await stack.enroll(key, email)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def ended(stack: Stack, enrollment_ids: list[str]) -> list[tuple[str, str | None]]:
    bodies = [await stack.enrollment(e) for e in enrollment_ids]
    return [(b["status"], b["exit_reason"]) for b in bodies]


async def suppressed(stack: Stack, email: str) -> str | None:
    query = select(SUPPRESSIONS.c.reason).where(SUPPRESSIONS.c.email_key == email)
    async with stack.deps.reader.connect() as conn:
        reason: str | None = await conn.scalar(query)
    return reason


def _sendgrid_bounce(kind: str) -> Build:
    return lambda email: esp.sendgrid(
        [esp.sendgrid_event("bounce", email, reason="550 5.1.1 unknown user", type=kind)]
    )


def _mailgun_failed(severity: str) -> Build:
    status = {"code": 550, "message": "5.1.1 The email account does not exist"}
    fields = {"severity": severity, "reason": "bounce", "delivery-status": status}
    return lambda email: esp.mailgun(esp.mailgun_event("failed", email, **fields))


def _postmark_bounce(kind: str) -> Build:
    return lambda email: esp.postmark(esp.postmark_record("Bounce", email, Type=kind))


def _resend_bounce(kind: str) -> Build:
    bounce = {"message": "The recipient's mail server rejected it", "subType": "General"}
    return lambda email: esp.resend("email.bounced", email, bounce={**bounce, "type": kind})


def _ses_complaint(email: str, feedback: str = "abuse") -> esp.Signed:
    complaint = {
        "complainedRecipients": [{"emailAddress": email}],
        "timestamp": "2026-11-26T10:00:00.000Z",
        "feedbackId": "0100017c-complaint",
        "complaintFeedbackType": feedback,
    }
    return esp.sns(esp.ses_record("Complaint", email, complaint=complaint))


# provider: (hard bounce, complaint, soft bounce)
OUTCOMES: dict[str, tuple[Build, Build, Build]] = {
    "sendgrid": (
        _sendgrid_bounce("bounce"),
        lambda email: esp.sendgrid([esp.sendgrid_event("spamreport", email)]),
        _sendgrid_bounce("blocked"),
    ),
    "mailgun": (
        _mailgun_failed("permanent"),
        lambda email: esp.mailgun(esp.mailgun_event("complained", email)),
        _mailgun_failed("temporary"),
    ),
    "ses": (
        lambda email: esp.sns(esp.ses_bounce(email, "Permanent")),
        _ses_complaint,
        lambda email: esp.sns(esp.ses_bounce(email, "Transient"), version="1"),
    ),
    "postmark": (
        _postmark_bounce("HardBounce"),
        lambda email: esp.postmark(esp.postmark_record("SpamComplaint", email)),
        _postmark_bounce("SoftBounce"),
    ),
    "resend": (
        _resend_bounce("Permanent"),
        lambda email: esp.resend("email.complained", email),
        _resend_bounce("Transient"),
    ),
}


@pytest.mark.parametrize("provider", sorted(OUTCOMES))
async def test_hard_bounce_and_complaint_end_every_sequence(stack: Stack, provider: str) -> None:
    hard, complaint, soft = OUTCOMES[provider]
    people = {kind: f"{kind}-{provider}@example.com" for kind in ("hard", "complaint", "soft")}
    enrolled = {kind: await enroll_in_both(stack, email) for kind, email in people.items()}
    for build, kind in ((hard, "hard"), (complaint, "complaint"), (soft, "soft")):
        assert await post(stack, build(people[kind])) == {
            "accepted": 1,
            "duplicates": 0,
            "ignored": 0,
        }, kind
    assert await ended(stack, enrolled["hard"]) == [("exited", "hard_bounce")] * 2
    assert await ended(stack, enrolled["complaint"]) == [("exited", "complaint")] * 2
    assert await ended(stack, enrolled["soft"]) == [("active", None)] * 2
    assert await suppressed(stack, people["hard"]) == "hard_bounce"
    assert await suppressed(stack, people["soft"]) is None
    events = await stored(stack)
    bounces = {e["email_key"]: e["properties"] for e in events if e["type"] == "bounced"}
    assert bounces[people["hard"]]["bounce_type"] == "hard"
    assert bounces[people["soft"]]["bounce_type"] == "soft"
    assert bounces[people["hard"]]["reply"]


def _click(provider: str, email: str, agent: str) -> esp.Signed:
    link = "https://acme.test/quickstart"
    if provider == "postmark":
        record = esp.postmark_record("Click", email, UserAgent=agent, OriginalLink=link)
        return esp.postmark(record)
    return esp.sendgrid([esp.sendgrid_event("click", email, useragent=agent, url=link)])


async def test_bot_clicks_do_not_count(stack: Stack) -> None:
    clicks = [
        _click("sendgrid", "bot@example.com", esp.SCANNER_UA),
        _click("postmark", "bot@example.com", esp.SCANNER_UA),
        _click("sendgrid", "human@example.com", esp.BROWSER_UA),
    ]
    for signed in clicks:
        assert (await post(stack, signed))["accepted"] == 1
    events = await stored(stack)
    assert [(e["email_key"], e["is_bot"]) for e in events] == [
        ("bot@example.com", True),
        ("bot@example.com", True),
        ("human@example.com", False),
    ]
    assert events[0]["properties"]["user_agent"] == esp.SCANNER_UA
    assert events[0]["properties"]["url"] == "https://acme.test/quickstart"


async def test_kinds_we_do_not_track_are_counted_not_stored(stack: Stack) -> None:
    untracked = ("processed", "deferred", "dropped")
    ignored = [
        esp.sendgrid([esp.sendgrid_event(k, "x@example.com") for k in untracked]),
        esp.mailgun(esp.mailgun_event("accepted", "x@example.com")),
        esp.sns(esp.ses_record("Send", "x@example.com")),
        esp.postmark(esp.postmark_record("Bounce", "x@example.com", Type="AutoResponder")),
        esp.resend("email.delivery_delayed", "x@example.com"),
        _ses_complaint("x@example.com", feedback="not-spam"),  # "this is *not* spam"
        # Postmark reports a hard bounce twice: as a Bounce, then as a SubscriptionChange.
        _subscription_change("x@example.com", "HardBounce"),
        # An address we could never have mailed: skipped, not a 4xx the ESP would retry.
        esp.sendgrid([esp.sendgrid_event("delivered", "jörg@example.com")]),
    ]
    for signed in ignored:
        result = await post(stack, signed)
        assert result["accepted"] == 0 and result["ignored"] >= 1, (signed.provider, result)
    assert await stored(stack) == []
    assert await suppressed(stack, "x@example.com") is None


def _subscription_change(email: str, reason: str) -> esp.Signed:
    fields = {"SuppressSending": True, "Origin": "Recipient", "SuppressionReason": reason}
    return esp.postmark(esp.postmark_record("SubscriptionChange", email, **fields))


async def test_unsubscribes_and_multi_recipient_notifications(stack: Stack) -> None:
    two = esp.ses_bounce("one@example.com", "Permanent", notification=True)
    two["bounce"]["bouncedRecipients"].append({"emailAddress": "two@example.com"})
    for signed in [
        esp.sendgrid([esp.sendgrid_event("unsubscribe", "u1@example.com")]),
        esp.mailgun(esp.mailgun_event("unsubscribed", "u2@example.com")),
        _subscription_change("u3@example.com", "ManualSuppression"),
        esp.sns(two),  # the older identity notification, naming two recipients
    ]:
        assert (await post(stack, signed))["ignored"] == 0, signed.provider
    by_email = {e["email_key"]: e for e in await stored(stack)}
    for email in ("u1@example.com", "u2@example.com", "u3@example.com"):
        assert by_email[email]["type"] == "unsubscribed"
        assert await suppressed(stack, email) == "unsubscribed"
    assert by_email["one@example.com"]["event_key"] != by_email["two@example.com"]["event_key"]
    assert await suppressed(stack, "two@example.com") == "hard_bounce"


async def test_events_land_on_our_message(sending: Stack) -> None:
    enrollment = (await sending.enroll("webhook-a", "ada@example.com")).json()["id"]

    async def sent() -> list[Any]:
        return sending.mail_to("ada@example.com")

    await eventually(sent)
    async with sending.deps.reader.connect() as conn:
        pk, header = (await conn.execute(select(MESSAGES.c.id, MESSAGES.c.message_id))).one()
    for signed in _opens_naming(pk, header, "ada@example.com"):
        assert (await post(sending, signed))["accepted"] == 1, signed.provider
    # Mail another system sent through the same account, and our Message-ID reported for
    # someone else: both fall back to the address instead of failing the batch.
    foreign = esp.sendgrid_event("open", "ada@example.com", **{"smtp-id": "<x@crm.test>"})
    forwarded = esp.sendgrid_event("open", "bob@example.com", **{"smtp-id": header})
    assert (await post(sending, esp.sendgrid([foreign, forwarded])))["accepted"] == 2
    events = await stored(sending)
    assert [(e["message_pk"], e["enrollment_id"]) for e in events[:5]] == [(pk, enrollment)] * 5
    assert [(e["email_key"], e["message_pk"]) for e in events[5:]] == [
        ("ada@example.com", None),
        ("bob@example.com", None),
    ]
    assert {e["verified"] for e in events} == {False}  # an open is never proof of reading


def _opens_naming(pk: str, header: str, email: str) -> list[esp.Signed]:
    """Each provider's open, naming our message the way that provider echoes it."""
    tag = {"dripline_message": pk}
    mailgun_message = {"headers": {"message-id": header.strip("<>")}}
    ses_open = esp.ses_record("Open", email, open={"userAgent": esp.BROWSER_UA})
    ses_open["mail"]["tags"]["dripline_message"] = [pk]
    return [
        esp.sendgrid([esp.sendgrid_event("open", email, **{"smtp-id": header})]),
        esp.mailgun(esp.mailgun_event("opened", email, message=mailgun_message)),
        esp.sns(ses_open),
        esp.postmark(esp.postmark_record("Open", email, Metadata=tag)),
        esp.resend("email.opened", email, tags=[{"name": "dripline_message", "value": pk}]),
    ]


def test_tag_headers_come_back_in_each_providers_events() -> None:
    pk = "msg_0123456789abcdef0123"
    smtpapi = json.loads(tag_headers("sendgrid", pk)["X-SMTPAPI"])["unique_args"]
    event = {**esp.sendgrid_event("open", "a@example.com"), **smtpapi}
    assert sendgrid.parse(json.dumps([event]).encode(), {})[0].message_ref == pk
    variables = json.loads(tag_headers("mailgun", pk)["X-Mailgun-Variables"])
    data = esp.mailgun_event("opened", "a@example.com", **{"user-variables": variables})
    assert mailgun.parse(json.dumps({"event-data": data}).encode(), {})[0].message_ref == pk
    [(name, value)] = tag_headers("postmark", pk).items()
    metadata = {name.removeprefix("X-PM-Metadata-"): value}
    record = esp.postmark_record("Open", "a@example.com", Metadata=metadata)
    assert postmark.parse(json.dumps(record).encode(), {})[0].message_ref == pk
    tag, _, value = tag_headers("ses", pk)["X-SES-MESSAGE-TAGS"].partition("=")
    ses_event = esp.ses_record("Open", "a@example.com")
    ses_event["mail"]["tags"][tag] = [value]
    assert ses.parse(esp.sns(ses_event).body, {})[0].message_ref == pk
    assert tag_headers("resend", pk) == {}
    with pytest.raises(ValueError, match="unknown ESP"):
        tag_headers("sparkpost", pk)
