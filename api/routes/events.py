"""The feedback endpoint: a batch of events, deduplicated by id, acted on at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import DepsDep, Enroller
from api.schemas import EventIn, EventsIn
from sequences.deps import Deps
from sequences.intake import feedback, resolve
from sequences.intake.resolve import Reported

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", status_code=202)
async def post_events(body: EventsIn, deps: DepsDep, _: Enroller) -> dict[str, Any]:
    """Record engagement (opened, clicked, replied, converted, ...) or custom events."""
    return await accept(deps, body.events)


async def accept(
    deps: Deps, events: list[EventIn], *, source: str = "api", where: str = "events"
) -> dict[str, Any]:
    """Resolve, store and act on a batch of events in one transaction: the feedback endpoint and
    the ESP webhooks share it. ``source`` namespaces event ids (``sendgrid:<id>``); ``where``
    prefixes the paths in error messages. Any unresolvable event fails the whole batch."""
    now = deps.clock.now()
    reported = [
        Reported(
            type=e.type,
            email=str(e.email) if e.email is not None else None,
            contact_id=e.contact_id,
            message_ref=e.message_id,
            event_id=e.id,
            occurred_at=e.occurred_at,
            properties=e.properties,
        )
        for e in events
    ]
    async with deps.engine.begin() as conn:
        incoming = await resolve.resolve(
            conn,
            reported,
            now,
            source=source,
            where=where,
            bot_window_seconds=deps.settings.bot_click_window_seconds,
        )
        outcome = await feedback.ingest(conn, deps, incoming, now)
    await deps.waker.wake_at(outcome.wake)
    return {"accepted": outcome.accepted, "duplicates": outcome.duplicates}
