"""One signed "delivered" request per provider (SendGrid, Mailgun, SES over SNS v1 and v2,
Postmark, Resend over Svix), built from the payload builders in esp_requests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from esp_requests import (
    Signed,
    mailgun,
    mailgun_event,
    postmark,
    postmark_record,
    resend,
    sendgrid,
    sendgrid_event,
    ses_record,
    sns,
    svix,
)

# One "delivered" event per provider. Each factory returns a sender: calling it again is the
# ESP delivering the same event again (SendGrid, Mailgun and Svix sign every attempt afresh;
# SNS resends the identical message).

Sender = Callable[[], Signed]


def _sendgrid_delivered(email: str) -> Sender:
    events = [sendgrid_event("delivered", email, response="250 OK", ip="168.1.1.1")]
    return lambda: sendgrid(events)


def _mailgun_delivered(email: str) -> Sender:
    data = mailgun_event("delivered", email, **{"delivery-status": {"code": 250}})
    return lambda: mailgun(data)


def _ses_delivered(version: str) -> Callable[[str], Sender]:
    def make(email: str) -> Sender:
        delivery = {"timestamp": datetime.now(UTC).isoformat(), "recipients": [email]}
        signed = sns(ses_record("Delivery", email, delivery=delivery), version=version)
        return lambda: signed

    return make


def _postmark_delivered(email: str) -> Sender:
    record = postmark_record("Delivery", email, Details="Test delivery webhook details")
    return lambda: postmark(record)


def _resend_delivered(email: str) -> Sender:
    first = resend("email.delivered", email)
    return lambda: svix(first.body, msg_id=first.headers["svix-id"])


DELIVERED: dict[str, Callable[[str], Sender]] = {
    "sendgrid": _sendgrid_delivered,
    "mailgun": _mailgun_delivered,
    "ses-v1": _ses_delivered("1"),
    "ses-v2": _ses_delivered("2"),
    "postmark": _postmark_delivered,
    "resend": _resend_delivered,
}
