"""ESP webhooks: each provider's own signature check, then the same events as /v1/events.

Once the signature holds, the request is answered 2xx item by item: events about mail Dripline
sent are stored and acted on, foreign and untracked ones counted, unmappable ones rejected with
the reason (in the answer, the log and /metrics), so one bad item never makes the provider
retry, and lose, the good ones. The README's webhook tables say why each status is what it is.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry, Counter

from api.deps import DepsDep
from api.routes import events
from sequences.deps import Deps
from sequences.intake import ours, tally
from sequences.intake.esp import providers
from sequences.intake.esp.common import Headers, Item, Malformed, Rejected, WebhookRejected
from sequences.intake.esp.providers import Provider
from sequences.kit.fetcher import Fetcher, FetchFailed

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)
LOGGED = 20  # items named in the log per request: a batch of 1,000 bad items is one problem


@router.post("/{provider}")
async def receive(provider: str, request: Request, deps: DepsDep) -> dict[str, Any]:
    """Events from SendGrid, Mailgun, Amazon SES (SNS), Postmark or Resend, signature checked."""
    esp = providers.lookup(provider)
    body, headers = await request.body(), dict(request.headers)
    await _authenticate(deps, esp, headers, body)
    async with _once(deps, esp, body) as first:
        if not first:
            await tally.add(deps.redis, esp.name, {"duplicate": 1}, [])
            return _answer(duplicates=1)
        items = await _parse(deps, esp, body, headers)
        return await _handle(deps, esp, items)


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


async def _parse(deps: Deps, esp: Provider, body: bytes, headers: Headers) -> list[Item]:
    """The request's items; a body that is not the provider's format at all is refused whole
    (and counted as rejected, like an item)."""
    try:
        return esp.parse(body, headers)
    except Malformed as malformed:
        whole = [Rejected(malformed.path, malformed.reason)]
        _log_rejected(esp, whole)
        await tally.add(deps.redis, esp.name, {}, whole)
        raise


async def _handle(deps: Deps, esp: Provider, items: list[Item]) -> dict[str, Any]:
    async with deps.reader.connect() as conn:
        found = await ours.sort(
            conn, items, group_is_global=deps.settings.group_unsubscribe_suppresses
        )
    accepted, duplicates = 0, 0
    if found.ours:  # resolved, stored and acted on as POST /v1/events does
        stored = await events.store(deps, found.ours, source=esp.name, where=esp.name)
        accepted, duplicates = stored["accepted"], stored["duplicates"]
    counts = {
        "accepted": accepted,
        "duplicate": duplicates,
        "foreign": len(found.foreign),
        "ignored": len(found.ignored),
    }
    await tally.add(deps.redis, esp.name, counts, found.rejected)
    _log_rejected(esp, found.rejected)
    if found.foreign:  # another system's mail on the same account, or our id for someone else
        refs = [e.message_ref for e in found.foreign[:LOGGED]]
        log.info("webhook events not about our mail", extra={"provider": esp.name, "refs": refs})
    log.info("webhook handled", extra={"provider": esp.name, **counts})
    return _answer(accepted, duplicates, len(found.ignored), len(found.foreign), found.rejected)


def _answer(
    accepted: int = 0,
    duplicates: int = 0,
    ignored: int = 0,
    foreign: int = 0,
    rejected: list[Rejected] | None = None,
) -> dict[str, Any]:
    errors = [{"path": r.path, "message": r.message} for r in rejected or []]
    return {
        "accepted": accepted,
        "duplicates": duplicates,
        "ignored": ignored,
        "foreign": foreign,
        "rejected": errors,
    }


def _log_rejected(esp: Provider, rejected: list[Rejected]) -> None:
    """One line per rejected item, up to LOGGED of them; /metrics counts them all."""
    for item in rejected[:LOGGED]:
        extra = {"provider": esp.name, "path": item.path, "reason": item.message}
        log.warning("webhook item rejected", extra=extra)


@asynccontextmanager
async def _once(deps: Deps, esp: Provider, body: bytes) -> AsyncIterator[bool]:
    """Accept a replay key once (Mailgun's token), with the body it came with: the same request
    again is a duplicate delivery (yields False), another body under it a forgery. Released
    again if handling fails, so the ESP's retry of the same request is not refused."""
    token = esp.replay_key(body)
    if token is None:
        yield True
        return
    key = f"dripline:webhook-seen:{esp.name}:{hashlib.sha256(token.encode()).hexdigest()}"
    digest = hashlib.sha256(body).hexdigest()
    ttl = int(2 * deps.settings.webhook_tolerance_seconds) + 1
    if not await deps.redis.set(key, digest, nx=True, ex=ttl):
        seen = await deps.redis.get(key)
        if (seen.decode() if isinstance(seen, bytes) else seen) != digest:
            raise WebhookRejected("this signature was already used for another body")
        yield False
        return
    try:
        yield True
    except Exception:
        await deps.redis.delete(key)
        raise


async def metrics(deps: Deps, registry: CollectorRegistry) -> None:
    """Adds the webhook counts to /metrics: items by provider and outcome, rejected by field."""
    items = Counter(
        "dripline_webhook_items",
        "ESP webhook items by outcome: accepted, duplicate, foreign, ignored, rejected",
        ["provider", "outcome"],
        registry=registry,
    )
    rejected = Counter(
        "dripline_webhook_rejected",
        "ESP webhook items that could not be mapped, by the field at fault",
        ["provider", "field"],
        registry=registry,
    )
    for provider, outcome, field, n in await tally.read(deps.redis):
        items.labels(provider, outcome).inc(n)
        if outcome == "rejected":
            rejected.labels(provider, field).inc(n)
