"""Turning reported events (from API clients or ESP webhooks) into resolved ones, per batch.

Every message, contact and address a batch names is looked up in a few statements; any event
that cannot be resolved fails the whole batch with the path of each bad event, so a batch is
stored whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.errors import Invalid
from sequences.signals.bots import bot_reason
from sequences.store import contacts
from sequences.store.contacts import ContactRef
from sequences.store.db import among
from sequences.store.events import Incoming
from sequences.store.tables import CONTACTS, MESSAGES


@dataclass(frozen=True)
class Reported:
    """One event as its sender described it."""

    type: str
    email: str | None = None
    contact_id: int | None = None
    message_ref: str | None = None  # our message id or its Message-ID header
    event_id: str | None = None
    occurred_at: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Found:
    pk: str
    enrollment_id: str
    contact_id: int
    sent_at: datetime | None
    to_addr: str = ""  # the address the message went to
    contact: ContactRef | None = None  # its contact, where the lookup read it too


async def resolve(
    conn: AsyncConnection,
    reported: list[Reported],
    now: datetime,
    *,
    source: str,
    where: str,
    bot_window_seconds: float,
) -> list[Incoming]:
    messages = await find_messages(conn, {r.message_ref for r in reported if r.message_ref})
    emails = await contacts.ensure_many(
        conn, [r.email for r in reported if r.email is not None], now=now
    )
    ids = {r.contact_id for r in reported if r.contact_id is not None}
    # The messages' contacts came with them; only the others are read.
    by_id = {m.contact.id: m.contact for m in messages.values() if m.contact is not None}
    by_id |= await contacts.find_many(
        conn, (ids | {m.contact_id for m in messages.values()}) - by_id.keys()
    )
    resolved: list[Incoming] = []
    errors: list[dict[str, str]] = []
    for number, event in enumerate(reported):
        path = f"{where}.{number}"
        try:
            message = _message(event, messages, path)
            contact = _contact(event, message, emails, by_id, path)
        except _Miss as miss:
            errors.append({"path": miss.path, "message": miss.message})
            continue
        resolved.append(_incoming(event, contact, message, now, source, bot_window_seconds))
    if errors:
        summary = "; ".join(f"{e['path']}: {e['message']}" for e in errors[:5])
        raise Invalid("invalid_event", summary, errors)
    return resolved


class _Miss(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


async def find_messages(conn: AsyncConnection, refs: set[str]) -> dict[str, Found]:
    """Each reference (our id, or a Message-ID with or without <>) -> its message."""
    if not refs:
        return {}
    bracketed = {r if r.startswith("<") else f"<{r}>": r for r in refs}
    rows = await conn.execute(
        select(
            MESSAGES.c.id,
            MESSAGES.c.message_id,
            MESSAGES.c.enrollment_id,
            MESSAGES.c.contact_id,
            MESSAGES.c.sent_at,
            MESSAGES.c.to_addr,
            CONTACTS.c.email,
            CONTACTS.c.email_key,
        )
        .outerjoin(CONTACTS, CONTACTS.c.id == MESSAGES.c.contact_id)
        .where(
            or_(
                among(conn, MESSAGES.c.message_id, list(bracketed)),
                among(conn, MESSAGES.c.id, list(refs)),
            )
        )
    )
    found: dict[str, Found] = {}
    for row in rows:
        contact = (
            None if row.email_key is None else ContactRef(row.contact_id, row.email, row.email_key)
        )
        hit = Found(row.id, row.enrollment_id, row.contact_id, row.sent_at, row.to_addr, contact)
        for ref in (row.id, bracketed.get(row.message_id)):
            if ref in refs:
                found[ref] = hit
    return found


async def find_sent_as(
    conn: AsyncConnection, recipients: set[str], subject: str, around: datetime, window: timedelta
) -> Found | None:
    """The one message with this subject sent to one of ``recipients`` within ``window`` of
    ``around``; None when there is none, or more than one (then it names no message surely)."""
    rows = (
        await conn.execute(
            select(
                MESSAGES.c.id,
                MESSAGES.c.enrollment_id,
                MESSAGES.c.contact_id,
                MESSAGES.c.sent_at,
                MESSAGES.c.to_addr,
            )
            .where(
                func.lower(MESSAGES.c.to_addr).in_(sorted(recipients)),
                MESSAGES.c.subject == subject,
                MESSAGES.c.sent_at.between(around - window, around + window),
            )
            .limit(2)
        )
    ).all()
    if len(rows) != 1:
        return None
    row = rows[0]
    return Found(row.id, row.enrollment_id, row.contact_id, row.sent_at, row.to_addr)


def _message(event: Reported, messages: dict[str, Found], path: str) -> Found | None:
    if event.message_ref is None:
        return None
    found = messages.get(event.message_ref)
    if found is None:
        raise _Miss(f"{path}.message_id", f"no message '{event.message_ref}'")
    return found


def _contact(
    event: Reported,
    message: Found | None,
    emails: dict[str, ContactRef],
    by_id: dict[int, ContactRef],
    path: str,
) -> ContactRef:
    if event.email is not None:
        ref = emails[contacts.email_key(event.email)]
    elif event.contact_id is not None:
        if event.contact_id not in by_id:
            raise _Miss(f"{path}.contact_id", f"no contact {event.contact_id}")
        ref = by_id[event.contact_id]
    elif message is not None:
        ref = by_id[message.contact_id]
    else:
        raise _Miss(path, "an event needs email, contact_id or message_id")
    if message is not None and message.contact_id != ref.id:
        raise _Miss(f"{path}.message_id", "the message was sent to another contact")
    return ref


def _incoming(
    event: Reported,
    contact: ContactRef,
    message: Found | None,
    now: datetime,
    source: str,
    window: float,
) -> Incoming:
    occurred = event.occurred_at or now
    properties = dict(event.properties)
    is_bot = False
    # A click reported with its user agent (every ESP sends one) is judged like our redirect's;
    # an API client posting a click without one vouches for it.
    if event.type == "clicked" and "user_agent" in properties:
        reason = bot_reason(
            user_agent=str(properties.get("user_agent") or ""),
            sent_at=message.sent_at if message else None,
            at=occurred,
            window_seconds=window,
        )
        if reason is not None:
            properties["bot"] = reason
            is_bot = True
    return Incoming(
        type=event.type,
        contact_id=contact.id,
        email_key=contact.email_key,
        occurred_at=occurred,
        event_id=event.event_id,
        message_pk=message.pk if message else None,
        enrollment_id=message.enrollment_id if message else None,
        properties=properties,
        source=source,
        is_bot=is_bot,
        verified=event.type != "opened",
    )
