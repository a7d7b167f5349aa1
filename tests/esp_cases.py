"""ESP webhook cases: a running Dripline that has really sent mail, and each provider's
documented events as payload builders (shaped like the providers' samples, written by us)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import esp_requests as esp
from harness import Stack, eventually, make_settings, running_stack
from sqlalchemy import select

from sequences.mail.capture import CaptureServer
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
async def running(
    tmp_path: Path, capture: CaptureServer, redis_db: str, url: str = "", **overrides: object
) -> AsyncIterator[Stack]:
    url = url or f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    settings = make_settings(tmp_path, url, **esp.settings_overrides(), **overrides)
    async with running_stack(settings, redis_db, capture, worker=True) as started:
        started.deps.fetcher = esp.CertificateServer()
        for key, exit_on in (("webhook-a", "clicked"), ("webhook-b", "converted")):
            text = SEQUENCE.format(key=key, exit_on=exit_on)
            assert (await started.apply(key, text)).status_code == 201
        yield started


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


def sendgrid_bounce(kind: str) -> Payload:
    reason = "550 5.1.1 The email account that you tried to reach does not exist."
    return lambda email: esp.sendgrid_event(
        "bounce", email, reason=reason, type=kind, status="5.1.1"
    )


def mailgun_failed(severity: str, reason: str = "bounce") -> Payload:
    status = {"code": 550, "message": "5.1.1 The email account does not exist"}
    fields = {"severity": severity, "reason": reason, "delivery-status": status}
    return lambda email: esp.mailgun_event("failed", email, **fields)


def postmark_bounce(kind: str) -> Payload:
    return lambda email: esp.postmark_record("Bounce", email, Type=kind)


def resend_bounce(kind: str) -> Payload:
    bounce = {"message": "The recipient's mail server rejected it", "subType": "General"}
    return lambda email: esp.resend_payload("email.bounced", email, bounce={**bounce, "type": kind})


def ses_complaint(email: str) -> dict[str, Any]:
    complaint = {
        "complainedRecipients": [{"emailAddress": email}],
        "timestamp": "2026-11-26T10:00:00.000Z",
        "feedbackId": "0100017c-complaint",
        "complaintFeedbackType": "abuse",
    }
    return esp.ses_record("Complaint", email, complaint=complaint)


def ses_delay(email: str) -> dict[str, Any]:
    delay = {
        "delayType": "TransientCommunicationFailure",
        "delayedRecipients": [{"emailAddress": email, "status": "4.4.1"}],
        "expirationTime": "2026-11-27T10:00:00.000Z",
        "timestamp": "2026-11-26T10:00:00.000Z",
    }
    return esp.ses_record("DeliveryDelay", email, deliveryDelay=delay)


def click(provider: str) -> Payload:
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
        sendgrid_bounce("bounce"),
        lambda email: esp.sendgrid_event("spamreport", email),
        sendgrid_bounce("blocked"),
        lambda email: esp.sendgrid_event("deferred", email, response="421 try later", attempt="1"),
    ),
    "mailgun": (
        mailgun_failed("permanent"),
        lambda email: esp.mailgun_event("complained", email),
        # Mailgun has no final soft bounce: a suppressed address is refused for good.
        mailgun_failed("permanent", "suppress-bounce"),
        mailgun_failed("temporary"),
    ),
    "ses": (
        lambda email: esp.ses_bounce(email, "Permanent"),
        ses_complaint,
        lambda email: esp.ses_bounce(email, "Transient"),
        ses_delay,
    ),
    "postmark": (
        postmark_bounce("HardBounce"),
        lambda email: esp.postmark_record("SpamComplaint", email),
        postmark_bounce("SoftBounce"),
        postmark_bounce("Transient"),
    ),
    "resend": (
        resend_bounce("Permanent"),
        lambda email: esp.resend_payload("email.complained", email),
        resend_bounce("Transient"),
        lambda email: esp.resend_payload("email.delivery_delayed", email),
    ),
}
