"""Postmark webhooks: HTTP basic auth (Postmark signs nothing), one JSON record per request.

Basic auth carries no timestamp, so there is no staleness check: replays are absorbed by the
event id, which Postmark does not send either, so it is derived from what names the record.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sequences.intake.esp.common import (
    EspEvent,
    Headers,
    WebhookRejected,
    as_object,
    load_json,
    maybe,
    need,
    optional_instant,
    properties,
    same,
    stable_id,
)
from sequences.mail.tags import MESSAGE_TAG
from sequences.settings import Settings

HARD = {"HardBounce", "BadEmailAddress"}
# Blocked is an ISP refusing for now and DnsError a lookup failure: the mailbox may be fine.
SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked"}
RECORDS = {
    "Delivery": ("delivered", "Recipient", "DeliveredAt"),
    "Bounce": ("bounced", "Email", "BouncedAt"),
    "SpamComplaint": ("complained", "Email", "BouncedAt"),
    "Open": ("opened", "Recipient", "ReceivedAt"),
    "Click": ("clicked", "Recipient", "ReceivedAt"),
    "SubscriptionChange": ("unsubscribed", "Recipient", "ChangedAt"),
}


@dataclass(frozen=True)
class Config:
    credentials: str  # "user:password"


def configure(settings: Settings) -> Config | None:
    user, password = settings.postmark_webhook_user, settings.postmark_webhook_password
    return Config(f"{user}:{password}") if user and password else None


def verify(headers: Headers, raw_body: bytes, config: Config, now: datetime) -> None:
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise WebhookRejected("missing basic auth credentials")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise WebhookRejected("basic auth credentials are not base64") from None
    if not same(given, config.credentials):
        raise WebhookRejected("wrong basic auth credentials")


def parse(raw_body: bytes, headers: Headers) -> list[EspEvent]:
    record = as_object(load_json(raw_body), "body")
    kind = need(record, "RecordType", str)
    if kind not in RECORDS:  # inbound mail and anything newer: not an event about our sends
        return [EspEvent(stable_id(kind, record.get("MessageID")), kind, None, email="")]
    ours, recipient_field, time_field = RECORDS[kind]
    email = need(record, recipient_field, str)
    return [
        EspEvent(
            id=stable_id(kind, record.get("MessageID"), email, record.get(time_field)),
            provider_event=kind,
            type=_type(kind, ours, record),
            email=email,
            occurred_at=optional_instant(record, time_field),
            message_ref=maybe(maybe(record, "Metadata", dict) or {}, MESSAGE_TAG, str),
            properties=_properties(kind, record),
        )
    ]


def _type(kind: str, ours: str, record: dict[str, Any]) -> str | None:
    bounce = record.get("Type")
    if kind == "Bounce":
        if bounce == "SpamComplaint":
            return "complained"
        return ours if bounce in HARD | SOFT else None  # auto-replies, challenges, ...
    if kind == "SubscriptionChange":
        # Bounces and complaints arrive on their own webhooks; only a person's own opt-out here.
        manual = record.get("SuppressionReason") == "ManualSuppression"
        return ours if record.get("SuppressSending") is True and manual else None
    return ours


def _properties(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    agent = maybe(record, "UserAgent", str)
    if kind == "Bounce" and record.get("Type") != "SpamComplaint":
        hard = record.get("Type") in HARD
        reply = maybe(record, "Details", str) or maybe(record, "Description", str)
        return properties(kind, bounce_type="hard" if hard else "soft", reply=reply)
    if kind == "Click":
        return properties(kind, url=maybe(record, "OriginalLink", str), user_agent=agent)
    if kind == "Open":
        return properties(kind, user_agent=agent)
    return properties(kind)
