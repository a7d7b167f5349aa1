"""The feedback endpoint: a batch of events, deduplicated by id, acted on at once."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import DepsDep, Enroller
from api.schemas import EventIn, EventsIn
from sequences.deps import Deps
from sequences.intake import feedback, resolve
from sequences.intake.resolve import Reported
from sequences.store.db import transaction

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", status_code=202)
async def post_events(body: EventsIn, deps: DepsDep, _: Enroller) -> dict[str, Any]:
    """Record engagement (opened, clicked, replied, converted, ...) or custom events."""
    return await accept(deps, body.events)


async def accept(
    deps: Deps, events: list[EventIn], *, source: str = "api", where: str = "events"
) -> dict[str, Any]:
    """Resolve, store and act on a batch of events in one transaction. ``source`` namespaces
    event ids (``sendgrid:<id>``); ``where`` prefixes the paths in error messages. Any
    unresolvable event fails the whole batch."""
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
    return await store(deps, reported, source=source, where=where)


async def store(deps: Deps, reported: list[Reported], *, source: str, where: str) -> dict[str, Any]:
    """What the feedback endpoint and the ESP webhooks share: resolve, store and act in one
    transaction, then wake the worker for what fell due."""
    now = deps.clock.now()

    async def work(conn: AsyncConnection) -> feedback.Outcome:
        incoming = await resolve.resolve(
            conn,
            reported,
            now,
            source=source,
            where=where,
            bot_window_seconds=deps.settings.bot_click_window_seconds,
        )
        return await feedback.ingest(conn, deps, incoming, now)

    if deps.event_gate is None:
        deps.event_gate = asyncio.Semaphore(deps.settings.event_transactions)
    # Batches take turns (settings.event_transactions): short transactions, short lock holds.
    async with deps.event_gate:
        # Replayed whole when it loses a deadlock (an exit racing a send): never a 500.
        outcome = await transaction(deps.engine, work)
    await deps.waker.wake_at(outcome.wake)
    return {"accepted": outcome.accepted, "duplicates": outcome.duplicates}
