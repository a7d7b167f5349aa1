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
    Item,
    Malformed,
    WebhookRejected,
    as_object,
    check_instant,
    instant,
    item,
    maybe,
    need,
    outcome,
    properties,
)
from sequences.kit.fetcher import Fetcher
from sequences.mail.tags import MESSAGE_TAG
from sequences.settings import Settings

# The SES record (``eventType`` or ``notificationType``, ``/detail`` where it decides) -> ours;
# see the README's table.
EVENTS: dict[str, str | None] = {
    "Send": None,  # accepted by SES: the outcome follows
    "Reject": None,  # refused by SES (a virus): about the message, not the address
    "Delivery": "delivered",
    "DeliveryDelay": "delayed",  # SES is still retrying
    "Open": "opened",
    "Click": "clicked",
    "Bounce/Permanent": "bounced:hard",
    "Bounce/Transient": "bounced:soft",
    "Bounce/Undetermined": "bounced:soft",  # SES does not know why: never suppress on a guess
    "Complaint": "complained",
    "Complaint/not-spam": None,  # the recipient told their provider this is *not* spam
    "Subscription/unsubscribeAll": "unsubscribed",
    "Subscription/topic": "group_unsubscribed",  # one contact-list topic only, unless configured
    "Subscription": None,  # a resubscription
    "Rendering Failure": None,  # a template error: SES sent nothing
    "AmazonSnsSubscriptionSucceeded": None,  # SES saying the topic is set up
}
# Where each record lists the addresses it concerns, and the key of each address in an entry.
RECIPIENTS = {
    "Bounce": ("bouncedRecipients", "emailAddress"),
    "Complaint": ("complainedRecipients", "emailAddress"),
    "DeliveryDelay": ("delayedRecipients", "emailAddress"),
    "Delivery": ("recipients", None),
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


def parse(raw_body: bytes, headers: Headers) -> list[Item]:
    env = sns.envelope(raw_body)
    if env["Type"] != "Notification":
        return []  # the handshake carries no events
    return [item(_event, need(env, "MessageId", str), need(env, "Message", str))]


def _event(message_id: str, message: str) -> EspEvent:
    record = _record(message)
    kind = _kind(record)
    detail = maybe(record, _detail_key(kind), dict) or {}
    ours, bounce = outcome(EVENTS, f"{kind}/{_detail(kind, detail)}", kind)
    if ours is None:
        return EspEvent(message_id, kind, None)
    mail = need(record, "mail", dict, "Message.")
    listed = _recipients(kind, detail, mail)
    at = detail.get("timestamp") or mail.get("timestamp")
    return EspEvent(
        id=message_id,
        provider_event=kind,
        type=ours,
        recipients=tuple(listed),
        occurred_at=instant(at, "Message.mail.timestamp") if at else None,
        message_ref=_message_ref(mail),
        properties=_properties(kind, detail, bounce),
        per_recipient={email: _reply(extra) for email, extra in listed.items() if extra},
    )


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


def _detail(kind: str, detail: dict[str, Any]) -> str:
    if kind == "Bounce":
        return str(detail.get("bounceType"))
    if kind == "Complaint":
        return str(detail.get("complaintFeedbackType"))
    if kind == "Subscription":
        preferences = maybe(detail, "newTopicPreferences", dict) or {}
        if preferences.get("unsubscribeAll") is True:
            return "unsubscribeAll"
        topics = maybe(preferences, "topicSubscriptionStatus", list) or []
        if any(isinstance(t, dict) and t.get("subscriptionStatus") == "OptOut" for t in topics):
            return "topic"
    return ""


def _recipients(
    kind: str, detail: dict[str, Any], mail: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each address the record names -> what it says about that address alone."""
    where, key = RECIPIENTS.get(kind, (None, None))
    entries = detail.get(where) if where else mail.get("destination")
    found: dict[str, dict[str, Any]] = {}
    for entry in entries if isinstance(entries, list) else []:
        email = entry.get(key) if key and isinstance(entry, dict) else entry
        if isinstance(email, str):
            found[email] = entry if isinstance(entry, dict) else {}
    if not found:
        path = f"Message.{_detail_key(kind)}.{where}" if where else "Message.mail.destination"
        raise Malformed(path, "names no recipient address")
    return found


def _reply(extra: dict[str, Any]) -> dict[str, Any]:
    reply = maybe(extra, "diagnosticCode", str) or maybe(extra, "status", str)
    return {"reply": reply} if reply else {}


def _message_ref(mail: dict[str, Any]) -> str | None:
    """Our tag (event publishing only), else the Message-ID, which SES replaces with its own."""
    tags = maybe(mail, "tags", dict) or {}
    tagged = tags.get(MESSAGE_TAG)
    if isinstance(tagged, list) and tagged and isinstance(tagged[0], str):
        return tagged[0]
    return maybe(maybe(mail, "commonHeaders", dict) or {}, "messageId", str)


def _properties(kind: str, detail: dict[str, Any], bounce: str | None) -> dict[str, Any]:
    agent = maybe(detail, "userAgent", str)
    if kind == "Bounce":
        subtype = maybe(detail, "bounceSubType", str)
        return properties(kind, bounce_type=bounce, bounce_subtype=subtype)
    if kind == "DeliveryDelay":
        return properties(kind, delay_type=maybe(detail, "delayType", str))
    if kind == "Click":
        return properties(kind, url=maybe(detail, "link", str), user_agent=agent)
    if kind == "Open":
        return properties(kind, user_agent=agent)
    return properties(kind)
