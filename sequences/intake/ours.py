"""Which ESP webhook events are about mail Dripline sent, and which recipient they concern.

An ESP reports on everything sent through the account: Dripline's mail and other systems' alike.
An event acts on a contact only when it names a message Dripline sent (our tag, or the
Message-ID we stored; for Resend over SMTP, which echoes neither, the subject and the time it
took the message) and lists the address that message went to; it then concerns that
recipient alone, however many addresses the provider listed. Every other tracked event is
foreign: counted and logged, never stored or acted on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr

from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.intake.esp.common import EspEvent, Item, Rejected
from sequences.intake.resolve import Found, Reported, find_messages, find_sent_as
from sequences.store.contacts import email_key

# How far the ESP's "created" time may be from our sent_at: the relay's answer and our commit
# come seconds apart; another system sending the same subject to the same person within it is
# not plausible, and two of ours within it name no message surely (foreign).
SENT_AS_WINDOW = timedelta(minutes=10)


@dataclass
class Sorted:
    """A request's items by what becomes of them."""

    ours: list[Reported] = field(default_factory=list)
    foreign: list[EspEvent] = field(default_factory=list)
    ignored: list[EspEvent] = field(default_factory=list)  # kinds we do not track
    rejected: list[Rejected] = field(default_factory=list)


async def sort(conn: AsyncConnection, items: list[Item], *, group_is_global: bool) -> Sorted:
    """One query for the request's message references, whatever its size."""
    result = Sorted(rejected=[i for i in items if isinstance(i, Rejected)])
    tracked = [i for i in items if isinstance(i, EspEvent) and i.type is not None]
    result.ignored = [i for i in items if isinstance(i, EspEvent) and i.type is None]
    sent = await find_messages(conn, {e.message_ref for e in tracked if e.message_ref})
    for event in tracked:
        message = sent.get(event.message_ref) if event.message_ref else None
        if message is None and event.message_ref is None and event.sent_as is not None:
            message = await _sent_as(conn, event, event.sent_as)
        recipient = _our_recipient(event, message)
        if message is None or recipient is None:
            result.foreign.append(event)
            continue
        result.ours.append(_reported(event, message, recipient, group_is_global))
    return result


async def _sent_as(
    conn: AsyncConnection, event: EspEvent, sent_as: tuple[str, datetime]
) -> Found | None:
    """For an ESP that echoes no header of ours: our one message with that subject, to a listed
    address, sent when the ESP says it took it."""
    subject, around = sent_as
    keys = {email_key(parseaddr(r)[1] or r) for r in event.recipients}
    return await find_sent_as(conn, keys, subject, around, SENT_AS_WINDOW)


def _our_recipient(event: EspEvent, message: Found | None) -> str | None:
    """The listed address our message went to; None when it went to none of them (our
    Message-ID reported for someone else: a forward, or a forgery)."""
    if message is None:
        return None
    ours = email_key(parseaddr(message.to_addr)[1] or message.to_addr)
    listed = {email_key(parseaddr(r)[1] or r): r for r in event.recipients}
    return listed.get(ours)


def _reported(event: EspEvent, message: Found, recipient: str, group_is_global: bool) -> Reported:
    assert event.type is not None
    kind = event.type
    if kind == "group_unsubscribed" and group_is_global:
        kind = "unsubscribed"
    return Reported(
        type=kind,
        contact_id=message.contact_id,
        message_ref=message.pk,
        event_id=event.id,
        occurred_at=event.occurred_at,
        properties={**event.properties, **event.per_recipient.get(recipient, {})},
    )
