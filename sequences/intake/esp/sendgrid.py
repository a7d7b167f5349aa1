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
    Item,
    Malformed,
    NotConfigured,
    WebhookRejected,
    as_object,
    check_timestamp,
    header,
    item,
    load_json,
    maybe,
    need,
    optional_instant,
    outcome,
    properties,
)
from sequences.mail.tags import MESSAGE_TAG
from sequences.settings import Settings

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
# SendGrid's event (``event/detail`` where the detail decides) -> ours; see the README's table.
EVENTS: dict[str, str | None] = {
    "processed": None,  # accepted by SendGrid: the outcome follows
    "deferred": "delayed",  # the receiving server said "later"; SendGrid retries up to 72 h
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce/bounce": "bounced:hard",
    # The receiving server refusing for now (reputation, content), not the mailbox being gone.
    "bounce/blocked": "bounced:soft",
    # Never attempted: the address is on SendGrid's own suppression lists.
    "dropped/Bounced Address": "bounced:hard",
    "dropped/Invalid": "bounced:hard",
    "dropped/Spam Reporting Address": "complained",
    "dropped/Unsubscribed Address": "unsubscribed",
    "dropped": "dropped",  # spam content, quota, a bad X-SMTPAPI: recorded, the address is fine
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "group_unsubscribed",  # one ASM group only, unless configured
    "group_resubscribe": "group_resubscribed",
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


def parse(raw_body: bytes, headers: Headers) -> list[Item]:
    batch = load_json(raw_body)
    if not isinstance(batch, list):
        raise Malformed("body", "expected a JSON array of events")
    return [item(_event, entry, i) for i, entry in enumerate(batch)]


def _event(entry: Any, number: int) -> EspEvent:
    data, where = as_object(entry, str(number)), f"{number}."
    kind = need(data, "event", str, where)
    detail = str(data.get("type") or "bounce") if kind == "bounce" else str(data.get("reason"))
    ours, bounce = outcome(EVENTS, f"{kind}/{detail}", kind)
    return EspEvent(
        id=need(data, "sg_event_id", str, where),
        provider_event=kind,
        type=ours,
        recipients=(need(data, "email", str, where),),
        occurred_at=optional_instant(data, "timestamp", where),
        message_ref=maybe(data, MESSAGE_TAG, str) or maybe(data, "smtp-id", str),
        properties=_properties(kind, data, bounce),
    )


def _properties(kind: str, data: dict[str, Any], bounce: str | None) -> dict[str, Any]:
    agent = maybe(data, "useragent", str)
    reply = maybe(data, "reason", str) or maybe(data, "response", str)
    if kind in ("bounce", "dropped", "deferred"):
        return properties(kind, bounce_type=bounce, reply=reply)
    if kind == "click":
        return properties(kind, url=maybe(data, "url", str), user_agent=agent)
    if kind == "open":
        return properties(kind, user_agent=agent, machine_open=maybe(data, "sg_machine_open", bool))
    if kind.startswith("group_"):
        return properties(kind, group=maybe(data, "asm_group_id", int))
    return properties(kind)
