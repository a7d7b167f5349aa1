"""ESP webhooks: each provider's own signature check, then the same events as /v1/events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import DepsDep
from api.routes.events import accept
from api.schemas import EventIn
from sequences.deps import Deps
from sequences.intake import resolve
from sequences.intake.esp import providers
from sequences.intake.esp.common import EspEvent, Headers, WebhookRejected, stable_id
from sequences.intake.esp.providers import Provider
from sequences.kit.fetcher import Fetcher, FetchFailed
from sequences.store import contacts
from sequences.store.contacts import email_key

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)


@router.post("/{provider}")
async def receive(provider: str, request: Request, deps: DepsDep) -> dict[str, int]:
    """Events from SendGrid, Mailgun, Amazon SES (SNS), Postmark or Resend, signature checked."""
    esp = providers.lookup(provider)
    body, headers = await request.body(), dict(request.headers)
    await _authenticate(deps, esp, headers, body)
    found = esp.parse(body, headers)
    async with _once(deps, esp, body):
        events = await _ours(deps, found)
        counts = {"accepted": 0, "duplicates": 0}
        if events:
            counts = await accept(deps, events, source=esp.name, where=esp.name)
    ignored = len(found) - len(events)
    log.info("webhook handled", extra={"provider": esp.name, **counts, "ignored": ignored})
    return {**counts, "ignored": ignored}


async def _authenticate(deps: Deps, esp: Provider, headers: Headers, body: bytes) -> None:
    try:
        await esp.authenticate(headers, body, deps.settings, deps.clock.now(), _fetcher(deps))
    except WebhookRejected as rejected:  # forgeries and misconfigured keys look alike from here
        log.warning("webhook rejected", extra={"provider": esp.name, "reason": rejected.reason})
        raise


def _fetcher(deps: Deps) -> Fetcher:
    if deps.fetcher is None:
        raise FetchFailed("aws_unreachable", "this process has no HTTPS client")
    return deps.fetcher


async def _ours(deps: Deps, found: list[EspEvent]) -> list[EventIn]:
    """The events we track, naming our message only when it went to that recipient."""
    tracked = [(f, f.type) for f in found if f.type is not None]
    async with deps.reader.connect() as conn:
        known = await _sent(conn, {f.message_ref for f, _ in tracked if f.message_ref})
    events = [
        _event(f, kind, known.get((f.message_ref or "", email_key(f.email)))) for f, kind in tracked
    ]
    return [e for e in events if e is not None]


async def _sent(conn: AsyncConnection, refs: set[str]) -> dict[tuple[str, str], str]:
    """(reference, recipient key) -> our message id. ESPs also report mail that other systems
    sent through the account: those must fall back to the address, never fail the batch."""
    found = await resolve.find_messages(conn, refs)
    owners = await contacts.find_many(conn, {m.contact_id for m in found.values()})
    return {(ref, owners[m.contact_id].email_key): m.pk for ref, m in found.items()}


def _event(found: EspEvent, kind: str, message_pk: str | None) -> EventIn | None:
    try:
        return EventIn(
            id=found.id,
            type=kind,
            email=found.email,
            message_id=message_pk,
            occurred_at=found.occurred_at,
            properties=found.properties,
        )
    except ValidationError as error:  # an address we could never mail: nothing to act on
        reason = error.errors()[0]["msg"]
        log.warning("webhook event skipped", extra={"event_id": found.id, "reason": reason})
        return None


@asynccontextmanager
async def _once(deps: Deps, esp: Provider, body: bytes) -> AsyncIterator[None]:
    """Accept a replay key once (Mailgun's token); released again if handling fails, so the
    ESP's retry of the same request is not refused."""
    token = esp.replay_key(body)
    if token is None:
        yield
        return
    key = f"dripline:webhook-seen:{esp.name}:{stable_id(token)}"
    ttl = int(2 * deps.settings.webhook_tolerance_seconds) + 1
    if not await deps.redis.set(key, "1", nx=True, ex=ttl):
        raise WebhookRejected("this signature was already used")
    try:
        yield
    except Exception:
        await deps.redis.delete(key)
        raise
