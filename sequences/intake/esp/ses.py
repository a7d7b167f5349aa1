"""Amazon SES through SNS: the topic allow-list, and SES records (event publishing or the older
identity notifications) carried as a JSON string in the SNS ``Message``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sequences.intake.esp import sns
from sequences.intake.esp.common import (
    EspEvent,
    Headers,
    Malformed,
    WebhookRejected,
    as_object,
    check_instant,
    instant,
    maybe,
    need,
    properties,
    recipient_id,
)
from sequences.kit.fetcher import Fetcher
from sequences.mail.tags import MESSAGE_TAG
from sequences.settings import Settings

# Send, Reject, DeliveryDelay (a retry in progress) and Rendering Failure are not ours.
TYPES = {
    "Delivery": "delivered",
    "Bounce": "bounced",
    "Complaint": "complained",
    "Open": "opened",
    "Click": "clicked",
    "Subscription": "unsubscribed",
}


@dataclass(frozen=True)
class Config:
    topics: frozenset[str]
    tolerance: float


def configure(settings: Settings) -> Config | None:
    topics = frozenset(t.strip() for t in (settings.ses_topic_arns or "").split(",") if t.strip())
    return Config(topics, settings.sns_tolerance_seconds) if topics else None


async def verify(
    headers: Headers, raw_body: bytes, config: Config, now: datetime, fetcher: Fetcher
) -> None:
    env = sns.envelope(raw_body)
    topic = need(env, "TopicArn", str)
    if topic not in config.topics:
        raise WebhookRejected(f"topic {topic} is not allowed", code="topic_not_allowed", status=403)
    sns.algorithm(env)  # an unsupported version is refused before any fetch
    pem = await fetcher.certificate(sns.certificate_url(env))
    sns.check_signature(env, pem, now)
    check_instant(instant(env.get("Timestamp"), "Timestamp"), now, config.tolerance)


def parse(raw_body: bytes, headers: Headers) -> list[EspEvent]:
    env = sns.envelope(raw_body)
    if env["Type"] != "Notification":
        return []  # the handshake carries no events
    record = _record(need(env, "Message", str))
    kind = _kind(record)
    mail = need(record, "mail", dict, "Message.")
    detail = maybe(record, _detail_key(kind), dict) or {}
    targets = _targets(kind, detail, mail)
    at = detail.get("timestamp") or mail.get("timestamp")
    return [
        EspEvent(
            id=recipient_id(need(env, "MessageId", str), email, len(targets)),
            provider_event=kind,
            type=_type(kind, detail),
            email=email,
            occurred_at=instant(at, "Message.mail.timestamp") if at else None,
            message_ref=_message_ref(mail),
            properties=_properties(kind, detail, extra),
        )
        for email, extra in targets
    ]


def _record(message: str) -> dict[str, Any]:
    try:
        return as_object(json.loads(message), "Message")
    except json.JSONDecodeError as error:
        raise Malformed("Message", f"not a JSON SES record: {error.msg}") from None


def _kind(record: dict[str, Any]) -> str:
    """``eventType`` in event publishing, ``notificationType`` in identity notifications."""
    kind = record.get("eventType") or record.get("notificationType")
    if not isinstance(kind, str):
        raise Malformed("Message.eventType", "expected eventType or notificationType")
    return kind


def _detail_key(kind: str) -> str:
    """Each record nests its details under the type's name: Bounce -> bounce."""
    return {"DeliveryDelay": "deliveryDelay", "Rendering Failure": "failure"}.get(
        kind, kind.lower()
    )


def _targets(
    kind: str, detail: dict[str, Any], mail: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(recipient, what is known about that recipient) for each address the record names."""
    if kind == "Bounce":
        listed = [(r.get("emailAddress"), r) for r in detail.get("bouncedRecipients") or []]
    elif kind == "Complaint":
        listed = [(r.get("emailAddress"), r) for r in detail.get("complainedRecipients") or []]
    elif kind == "Delivery":
        listed = [(r, {}) for r in detail.get("recipients") or []]
    else:
        listed = [(r, {}) for r in mail.get("destination") or []]
    found = [(email, extra) for email, extra in listed if isinstance(email, str)]
    if TYPES.get(kind) and not found:
        raise Malformed(f"Message.{_detail_key(kind)}", "names no recipient address")
    return found or [("", {})]


def _type(kind: str, detail: dict[str, Any]) -> str | None:
    if kind == "Complaint" and detail.get("complaintFeedbackType") == "not-spam":
        return None  # the recipient told their provider this is *not* spam
    if kind == "Subscription":
        preferences = maybe(detail, "newTopicPreferences", dict) or {}
        return TYPES[kind] if preferences.get("unsubscribeAll") is True else None
    return TYPES.get(kind)


def _message_ref(mail: dict[str, Any]) -> str | None:
    """Our tag (event publishing only), else the Message-ID, which SES replaces with its own."""
    tags = maybe(mail, "tags", dict) or {}
    tagged = tags.get(MESSAGE_TAG)
    if isinstance(tagged, list) and tagged and isinstance(tagged[0], str):
        return tagged[0]
    return maybe(maybe(mail, "commonHeaders", dict) or {}, "messageId", str)


def _properties(kind: str, detail: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    agent = maybe(detail, "userAgent", str)
    if kind == "Bounce":
        # Undetermined is SES not knowing why: never suppress an address on a guess.
        hard = detail.get("bounceType") == "Permanent"
        reply = maybe(extra, "diagnosticCode", str) or maybe(extra, "status", str)
        subtype = maybe(detail, "bounceSubType", str)
        return properties(
            kind, bounce_type="hard" if hard else "soft", reply=reply, bounce_subtype=subtype
        )
    if kind == "Click":
        return properties(kind, url=maybe(detail, "link", str), user_agent=agent)
    if kind == "Open":
        return properties(kind, user_agent=agent)
    return properties(kind)
