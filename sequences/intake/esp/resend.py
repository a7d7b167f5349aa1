"""Resend webhooks, delivered by Svix: HMAC-SHA256 over ``id.timestamp.body``, secret ``whsec_``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    same,
)
from sequences.mail.tags import MESSAGE_TAG
from sequences.settings import Settings

# Resend's event (``email.bounced/<bounce.type>``) -> ours; see the README's table.
EVENTS: dict[str, str | None] = {
    "email.sent": None,  # accepted by Resend: the outcome follows
    "email.delivered": "delivered",
    "email.delivery_delayed": "delayed",  # a temporary failure; Resend keeps trying
    "email.opened": "opened",
    "email.clicked": "clicked",
    "email.bounced": "bounced:hard",  # Resend: "permanently rejected"
    "email.bounced/Transient": "bounced:soft",
    "email.bounced/Undetermined": "bounced:soft",  # never suppress an address on a guess
    "email.complained": "complained",
    "email.failed": None,  # never sent (a bad request, a quota): about us, not the address
}


@dataclass(frozen=True)
class Config:
    secret: bytes
    tolerance: float


def configure(settings: Settings) -> Config | None:
    if not settings.resend_webhook_secret:
        return None
    try:
        secret = base64.b64decode(settings.resend_webhook_secret.removeprefix("whsec_"))
    except binascii.Error:
        raise NotConfigured("resend", "has a secret that is not whsec_<base64>") from None
    return Config(secret, settings.webhook_tolerance_seconds)


def verify(headers: Headers, raw_body: bytes, config: Config, now: datetime) -> None:
    msg_id, timestamp = header(headers, "svix-id"), header(headers, "svix-timestamp")
    signed = f"{msg_id}.{timestamp}.".encode() + raw_body
    expected = base64.b64encode(hmac.new(config.secret, signed, hashlib.sha256).digest())
    # Space-separated "v1,<base64>" entries: several while a secret is being rotated.
    offered = [s.partition(",") for s in header(headers, "svix-signature").split()]
    if not any(v == "v1" and same(sig, expected) for v, _, sig in offered):
        raise WebhookRejected("no svix-signature matches the body")
    check_timestamp(timestamp, now, config.tolerance)


def parse(raw_body: bytes, headers: Headers) -> list[Item]:
    body = as_object(load_json(raw_body), "body")
    return [item(_event, body, header(headers, "svix-id"))]


def _event(body: dict[str, Any], msg_id: str) -> EspEvent:
    kind = need(body, "type", str)
    data = need(body, "data", dict)
    bounce = maybe(data, "bounce", dict) or {}
    ours, bounce_type = outcome(EVENTS, f"{kind}/{bounce.get('type')}", kind)
    return EspEvent(
        id=msg_id,  # the same on every retry of one message
        provider_event=kind,
        type=ours,
        recipients=_recipients(ours, data),
        occurred_at=optional_instant(body, "created_at"),
        message_ref=_tag(data),
        properties=_properties(kind, data, bounce_type),
        sent_as=_sent_as(data),
    )


def _sent_as(data: dict[str, Any]) -> tuple[str, datetime] | None:
    """Resend echoes no header of ours over SMTP (tags need its API): the subject and the time
    it took the email are what name our message then."""
    subject, created = maybe(data, "subject", str), optional_instant(data, "created_at", "data.")
    return (subject, created) if subject and created else None


def _recipients(ours: str | None, data: dict[str, Any]) -> tuple[str, ...]:
    to = tuple(a for a in maybe(data, "to", list) or [] if isinstance(a, str))
    if ours is not None and not to:
        raise Malformed("data.to", "expected a list of at least one address")
    return to


def _tag(data: dict[str, Any]) -> str | None:
    """Tags come as ``{"name": value}`` or as ``[{"name": ..., "value": ...}]``."""
    tags = data.get("tags")
    if isinstance(tags, dict):
        return maybe(tags, MESSAGE_TAG, str)
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict) and tag.get("name") == MESSAGE_TAG:
            return maybe(tag, "value", str)
    return None


def _properties(kind: str, data: dict[str, Any], bounce_type: str | None) -> dict[str, Any]:
    if kind == "email.bounced":
        reply = maybe(maybe(data, "bounce", dict) or {}, "message", str)
        return properties(kind, bounce_type=bounce_type, reply=reply)
    if kind == "email.clicked":
        click = maybe(data, "click", dict) or {}
        url, agent = maybe(click, "link", str), maybe(click, "userAgent", str)
        return properties(kind, url=url, user_agent=agent)
    if kind == "email.opened":
        opened = maybe(data, "open", dict) or {}
        return properties(kind, user_agent=maybe(opened, "userAgent", str))
    return properties(kind)
