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
    Item,
    WebhookRejected,
    as_object,
    item,
    load_json,
    maybe,
    need,
    optional_instant,
    outcome,
    properties,
    same,
    stable_id,
)
from sequences.mail.tags import MESSAGE_TAG
from sequences.settings import Settings

# Postmark's record (``RecordType/detail``: the bounce Type, or why sending was suppressed) ->
# ours; see the README's table.
EVENTS: dict[str, str | None] = {
    "Delivery": "delivered",
    "Open": "opened",
    "Click": "clicked",
    "SpamComplaint": "complained",
    "Bounce/HardBounce": "bounced:hard",
    "Bounce/BadEmailAddress": "bounced:hard",
    "Bounce/ManuallyDeactivated": "bounced:hard",  # deactivated in Postmark: it sends no more
    "Bounce/SoftBounce": "bounced:soft",
    "Bounce/DnsError": "bounced:soft",  # a lookup failure: the mailbox may be fine
    "Bounce/Blocked": "bounced:soft",  # an ISP refusing for now
    "Bounce/DMARCPolicy": "bounced:soft",  # our domain's alignment, not the recipient's address
    "Bounce/SpamNotification": "bounced:soft",  # a filter's verdict, not a person's complaint
    "Bounce/Transient": "delayed",  # Postmark is still trying
    "Bounce/SpamComplaint": "complained",
    "Bounce/Unsubscribe": "unsubscribed",  # the recipient replied asking to be removed
    "Bounce": None,  # auto-replies, challenges, address changes, virus notices, ...
    "SubscriptionChange/ManualSuppression": "unsubscribed",  # the person's own opt-out
    # Bounces and complaints arrive on their own webhooks; a reactivation lifts nothing of ours.
    "SubscriptionChange": None,
}
# Where each record names its recipient and its time.
FIELDS = {
    "Delivery": ("Recipient", "DeliveredAt"),
    "Bounce": ("Email", "BouncedAt"),
    "SpamComplaint": ("Email", "BouncedAt"),
    "Open": ("Recipient", "ReceivedAt"),
    "Click": ("Recipient", "ReceivedAt"),
    "SubscriptionChange": ("Recipient", "ChangedAt"),
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


def parse(raw_body: bytes, headers: Headers) -> list[Item]:
    """One record per request. A bounce may carry the whole message as ``Content``: only the
    fields below are kept."""
    return [item(_record, as_object(load_json(raw_body), "body"))]


def _record(record: dict[str, Any]) -> EspEvent:
    kind = need(record, "RecordType", str)
    if kind not in FIELDS:  # inbound mail and anything newer: not an event about our sends
        return EspEvent(stable_id(kind, record.get("MessageID")), kind, None)
    recipient_field, time_field = FIELDS[kind]
    email = need(record, recipient_field, str)
    ours, bounce = outcome(EVENTS, f"{kind}/{_detail(kind, record)}", kind)
    return EspEvent(
        id=stable_id(kind, record.get("MessageID"), email, record.get(time_field)),
        provider_event=kind,
        type=ours,
        recipients=(email,),
        occurred_at=optional_instant(record, time_field),
        message_ref=maybe(maybe(record, "Metadata", dict) or {}, MESSAGE_TAG, str),
        properties=_properties(kind, record, bounce),
    )


def _detail(kind: str, record: dict[str, Any]) -> str:
    if kind == "Bounce":
        return str(record.get("Type"))
    if kind == "SubscriptionChange" and record.get("SuppressSending") is True:
        return str(record.get("SuppressionReason"))
    return ""


def _properties(kind: str, record: dict[str, Any], bounce: str | None) -> dict[str, Any]:
    agent = maybe(record, "UserAgent", str)
    if kind == "Bounce":
        reply = maybe(record, "Details", str) or maybe(record, "Description", str)
        return properties(kind, bounce_type=bounce, reply=reply, bounce_kind=record.get("Type"))
    if kind == "Click":
        return properties(kind, url=maybe(record, "OriginalLink", str), user_agent=agent)
    if kind == "Open":
        return properties(kind, user_agent=agent)
    return properties(kind)
