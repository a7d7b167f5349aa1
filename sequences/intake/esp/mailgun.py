"""Mailgun webhooks: HMAC-SHA256 of timestamp + token, sent in the body beside ``event-data``.

The signature does not cover ``event-data``: a captured signature could carry forged events. The
route therefore accepts each token once (``replay_key``), as Mailgun's documentation advises.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sequences.intake.esp.common import (
    EspEvent,
    Headers,
    WebhookRejected,
    as_object,
    check_timestamp,
    load_json,
    maybe,
    need,
    optional_instant,
    properties,
    same,
)
from sequences.mail.tags import MESSAGE_TAG
from sequences.settings import Settings

# accepted, rejected (never attempted), stored and list events are not ours.
TYPES = {
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "failed": "bounced",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
}


@dataclass(frozen=True)
class Config:
    signing_key: bytes
    tolerance: float


def configure(settings: Settings) -> Config | None:
    if not settings.mailgun_signing_key:
        return None
    return Config(settings.mailgun_signing_key.encode(), settings.webhook_tolerance_seconds)


def verify(headers: Headers, raw_body: bytes, config: Config, now: datetime) -> None:
    timestamp, token, signatures = _signature(raw_body)
    expected = hmac.new(config.signing_key, f"{timestamp}{token}".encode(), hashlib.sha256)
    # A subaccount's events carry its own signature and the primary account's beside it.
    if not any(same(s.lower(), expected.hexdigest()) for s in signatures):
        raise WebhookRejected("the Mailgun signature does not match timestamp and token")
    check_timestamp(timestamp, now, config.tolerance)


def replay_key(raw_body: bytes) -> str:
    """The token: Mailgun makes a new one for every request it signs."""
    return _signature(raw_body)[1]


def _signature(raw_body: bytes) -> tuple[str, str, list[str]]:
    """(timestamp, token, [signature, parent-signature if any])."""
    block = as_object(load_json(raw_body), "body").get("signature")
    if not isinstance(block, dict):
        raise WebhookRejected("missing the signature object")
    values = [block.get(k) for k in ("timestamp", "token", "signature")]
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
        raise WebhookRejected("the signature needs timestamp, token and signature")
    parent = block.get("parent-signature")
    signatures = [str(values[2])] + ([parent] if isinstance(parent, str) else [])
    return str(values[0]), str(values[1]), signatures


def parse(raw_body: bytes, headers: Headers) -> list[EspEvent]:
    data = need(as_object(load_json(raw_body), "body"), "event-data", dict)
    where = "event-data."
    kind = need(data, "event", str, where)
    return [
        EspEvent(
            id=need(data, "id", str, where),
            provider_event=kind,
            type=TYPES.get(kind),
            email=need(data, "recipient", str, where),
            occurred_at=optional_instant(data, "timestamp", where),
            message_ref=_message_ref(data),
            properties=_properties(kind, data),
        )
    ]


def _message_ref(data: dict[str, Any]) -> str | None:
    variables = maybe(data, "user-variables", dict) or {}
    message = maybe(data, "message", dict) or {}
    headers = maybe(message, "headers", dict) or {}
    return maybe(variables, MESSAGE_TAG, str) or maybe(headers, "message-id", str)


def _properties(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    agent = maybe(maybe(data, "client-info", dict) or {}, "user-agent", str)
    if kind == "failed":
        status = maybe(data, "delivery-status", dict) or {}
        reply = maybe(status, "message", str) or maybe(status, "description", str)
        hard = data.get("severity") == "permanent"  # temporary: Mailgun is still retrying
        return properties(kind, bounce_type="hard" if hard else "soft", reply=reply)
    if kind == "clicked":
        return properties(kind, url=maybe(data, "url", str), user_agent=agent)
    if kind == "opened":
        return properties(kind, user_agent=agent)
    return properties(kind)
