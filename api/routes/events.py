"""The feedback endpoint: a batch of events, deduplicated by id, acted on at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import DepsDep, Enroller
from api.schemas import EventIn, EventsIn
from sequences import contacts, feedback
from sequences.errors import Invalid
from sequences.feedback import Incoming

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", status_code=202)
async def post_events(body: EventsIn, deps: DepsDep, _: Enroller) -> dict[str, Any]:
    """Record engagement (opened, clicked, replied, converted, ...) or custom events."""
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        incoming = [await _resolve(conn, i, e, now) for i, e in enumerate(body.events)]
        outcome = await feedback.ingest(conn, deps, incoming, now)
    await deps.waker.wake_at(outcome.wake)
    return {"accepted": outcome.accepted, "duplicates": outcome.duplicates}


async def _resolve(conn: AsyncConnection, index: int, event: EventIn, now: Any) -> Incoming:
    """Find the contact and message an event names; any miss fails the whole batch."""
    where = f"events.{index}"
    message = await feedback.message_by_header(conn, event.message_id) if event.message_id else None
    if event.message_id and message is None:
        raise _invalid(f"{where}.message_id", f"no message '{event.message_id}'")
    if event.email is not None:
        ref = await contacts.upsert(conn, str(event.email), now=now)
    elif event.contact_id is not None:
        ref = await contacts.find(conn, contact_id=event.contact_id)  # type: ignore[assignment]
        if ref is None:
            raise _invalid(f"{where}.contact_id", f"no contact {event.contact_id}")
    elif message is not None:
        ref = await contacts.find(conn, contact_id=message[2])  # type: ignore[assignment]
    else:
        raise _invalid(where, "an event needs email, contact_id or message_id")
    if message is not None and message[2] != ref.id:
        raise _invalid(f"{where}.message_id", "the message was sent to another contact")
    return Incoming(
        type=event.type,
        contact_id=ref.id,
        email_key=ref.email_key,
        occurred_at=event.occurred_at or now,
        event_id=event.id,
        message_pk=message[0] if message else None,
        enrollment_id=message[1] if message else None,
        properties=event.properties,
    )


def _invalid(path: str, message: str) -> Invalid:
    return Invalid("invalid_event", f"{path}: {message}", [{"path": path, "message": message}])
