"""Mailgun webhooks: HMAC-SHA256 of timestamp + token, sent in the body beside ``event-data``.

The signature does not cover ``event-data``: a captured signature could carry forged events. The
route therefore accepts each token once with one body (``replay_key``), as Mailgun's
documentation advises; the same request again is a duplicate. A payload that is not Mailgun's
documented shape gets 406, the one status after which Mailgun does not retry.
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
    Item,
    Malformed,
    WebhookRejected,
    as_object,
    check_timestamp,
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

MALFORMED = 406  # Mailgun: "406 Not Acceptable" means do not retry; any other failure is retried
# Mailgun's event (``failed/severity/reason`` where they decide) -> ours; see the README's table.
EVENTS: dict[str, str | None] = {
    "accepted": None,  # queued by Mailgun: the outcome follows
    "rejected": None,  # refused by Mailgun before any attempt: about the request, not the address
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "failed/temporary": "delayed",  # Mailgun is still retrying: the outcome follows
    "failed/permanent": "bounced:hard",
    # Never attempted: the address is on Mailgun's own suppression lists.
    "failed/permanent/suppress-bounce": "bounced:hard",
    "failed/permanent/suppress-complaint": "complained",
    "failed/permanent/suppress-unsubscribe": "unsubscribed",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
    "stored": None,  # inbound routes, not our sends
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


def _body(raw_body: bytes) -> dict[str, Any]:
    try:
        return as_object(load_json(raw_body), "body")
    except Malformed as malformed:
        raise Malformed(malformed.path, malformed.reason, status=MALFORMED) from None


def _signature(raw_body: bytes) -> tuple[str, str, list[str]]:
    """(timestamp, token, [signature, parent-signature if any])."""
    block = _body(raw_body).get("signature")
    if not isinstance(block, dict):
        raise WebhookRejected("missing the signature object")
    values = [block.get(k) for k in ("timestamp", "token", "signature")]
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
        raise WebhookRejected("the signature needs timestamp, token and signature")
    parent = block.get("parent-signature")
    signatures = [str(values[2])] + ([parent] if isinstance(parent, str) else [])
    return str(values[0]), str(values[1]), signatures


def parse(raw_body: bytes, headers: Headers) -> list[Item]:
    """One event per request: when it cannot be mapped, the whole request is refused with 406."""
    try:
        return [_event(need(_body(raw_body), "event-data", dict))]
    except Malformed as malformed:
        raise Malformed(malformed.path, malformed.reason, status=MALFORMED) from None


def _event(data: dict[str, Any]) -> EspEvent:
    where = "event-data."
    kind = need(data, "event", str, where)
    severity, reason = str(data.get("severity")), str(data.get("reason"))
    keys = (f"{kind}/{severity}/{reason}", f"{kind}/{severity}", kind)
    ours, bounce = outcome(EVENTS, *keys)
    return EspEvent(
        id=need(data, "id", str, where),
        provider_event=kind,
        type=ours,
        recipients=(need(data, "recipient", str, where),),
        occurred_at=optional_instant(data, "timestamp", where),
        message_ref=_message_ref(data),
        properties=_properties(kind, data, bounce),
    )


def _message_ref(data: dict[str, Any]) -> str | None:
    variables = maybe(data, "user-variables", dict) or {}
    message = maybe(data, "message", dict) or {}
    headers = maybe(message, "headers", dict) or {}
    return maybe(variables, MESSAGE_TAG, str) or maybe(headers, "message-id", str)


def _properties(kind: str, data: dict[str, Any], bounce: str | None) -> dict[str, Any]:
    agent = maybe(maybe(data, "client-info", dict) or {}, "user-agent", str)
    if kind == "failed":
        status = maybe(data, "delivery-status", dict) or {}
        reply = maybe(status, "message", str) or maybe(status, "description", str)
        return properties(kind, bounce_type=bounce, reply=reply, reason=maybe(data, "reason", str))
    if kind == "clicked":
        return properties(kind, url=maybe(data, "url", str), user_agent=agent)
    if kind == "opened":
        return properties(kind, user_agent=agent)
    return properties(kind)
