"""SendGrid's Event Webhook: ECDSA P-256 over timestamp + raw body, a JSON array of events."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sequences.intake.esp.common import (
    EspEvent,
    Headers,
    Malformed,
    NotConfigured,
    WebhookRejected,
    as_object,
    check_timestamp,
    header,
    load_json,
    maybe,
    need,
    optional_instant,
    properties,
)
from sequences.mail.tags import MESSAGE_TAG
from sequences.settings import Settings

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
# processed, dropped (never attempted: SendGrid's own suppression list), deferred (a retry in
# progress; the outcome follows as delivered or bounce) and group_resubscribe are not ours.
TYPES = {
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}


@dataclass(frozen=True)
class Config:
    public_key: ec.EllipticCurvePublicKey
    tolerance: float


def configure(settings: Settings) -> Config | None:
    if not settings.sendgrid_webhook_key:
        return None
    return Config(_public_key(settings.sendgrid_webhook_key), settings.webhook_tolerance_seconds)


def _public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The dashboard shows base64 DER without PEM armour; accept either."""
    try:
        if "BEGIN PUBLIC KEY" in text:
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text))
    except (ValueError, binascii.Error):
        raise NotConfigured("sendgrid", "has a key that is not a public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise NotConfigured("sendgrid", "has a key that is not an ECDSA key")
    return key


def verify(headers: Headers, raw_body: bytes, config: Config, now: datetime) -> None:
    timestamp = header(headers, TIMESTAMP)
    try:
        signature = base64.b64decode(header(headers, SIGNATURE), validate=True)
        signed = timestamp.encode() + raw_body
        config.public_key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error):
        raise WebhookRejected("the SendGrid signature does not match the body") from None
    check_timestamp(timestamp, now, config.tolerance)


def parse(raw_body: bytes, headers: Headers) -> list[EspEvent]:
    batch = load_json(raw_body)
    if not isinstance(batch, list):
        raise Malformed("body", "expected a JSON array of events")
    return [_event(as_object(item, str(i)), f"{i}.") for i, item in enumerate(batch)]


def _event(item: dict[str, Any], where: str) -> EspEvent:
    kind = need(item, "event", str, where)
    return EspEvent(
        id=need(item, "sg_event_id", str, where),
        provider_event=kind,
        type=TYPES.get(kind),
        email=need(item, "email", str, where),
        occurred_at=optional_instant(item, "timestamp", where),
        message_ref=maybe(item, MESSAGE_TAG, str) or maybe(item, "smtp-id", str),
        properties=_properties(kind, item),
    )


def _properties(kind: str, item: dict[str, Any]) -> dict[str, Any]:
    agent = maybe(item, "useragent", str)
    if kind == "bounce":
        # "blocked" is the receiving server refusing for now (reputation, content), not the
        # mailbox being gone: a soft bounce. Only "bounce" proper is hard.
        hard = item.get("type", "bounce") == "bounce"
        reply = maybe(item, "reason", str)
        return properties(kind, bounce_type="hard" if hard else "soft", reply=reply)
    if kind == "click":
        return properties(kind, url=maybe(item, "url", str), user_agent=agent)
    if kind == "open":
        return properties(kind, user_agent=agent, machine_open=maybe(item, "sg_machine_open", bool))
    return properties(kind)
