"""Open pixel, click redirects (to stored links only), unsubscribe page and RFC 8058 one-click."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import DepsDep
from sequences import feedback
from sequences.feedback import Incoming
from sequences.models import CONTACTS, EVENTS, LINKS, MESSAGES

router = APIRouter(tags=["tracking"], include_in_schema=True)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
SCANNERS = re.compile(
    r"(bot|crawler|spider|scanner|preview|proofpoint|mimecast|barracuda|safelinks|urldefense|"
    r"symantec|trendmicro|fireeye|python-requests|curl|wget|go-http-client|headless)",
    re.IGNORECASE,
)
NO_STORE = {"Cache-Control": "no-store, private"}
BURST_WINDOW = timedelta(seconds=2)


async def _message(
    conn: AsyncConnection, token: str
) -> tuple[str, str, int, str, datetime | None] | None:
    row = (
        await conn.execute(
            select(
                MESSAGES.c.id,
                MESSAGES.c.enrollment_id,
                MESSAGES.c.contact_id,
                CONTACTS.c.email_key,
                MESSAGES.c.sent_at,
            )
            .join(CONTACTS, CONTACTS.c.id == MESSAGES.c.contact_id)
            .where(MESSAGES.c.token == token)
        )
    ).first()
    return (row.id, row.enrollment_id, row.contact_id, row.email_key, row.sent_at) if row else None


@router.get("/t/o/{token}", include_in_schema=False)
async def open_pixel(token: str, deps: DepsDep) -> Response:
    """A 1x1 GIF; the open is stored unverified (privacy proxies fetch every image)."""
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        found = await _message(conn, token)
        if found is not None:
            event = Incoming(
                type="opened",
                contact_id=found[2],
                email_key=found[3],
                occurred_at=now,
                message_pk=found[0],
                enrollment_id=found[1],
                source="pixel",
                verified=False,
            )
            outcome = await feedback.ingest(conn, deps, [event], now)
    if found is not None:
        await deps.waker.wake_at(outcome.wake)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.api_route("/t/c/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def click(token: str, request: Request, deps: DepsDep) -> Response:
    """Redirect to the stored link; HEAD requests, scanners and instant clicks count as bots."""
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        row = (
            await conn.execute(
                select(LINKS.c.url, LINKS.c.message_pk).where(LINKS.c.token == token)
            )
        ).first()
        if row is None:
            return HTMLResponse(
                _page("Link not found", "This link is not valid any more."), status_code=404
            )
        found = await _message_by_pk(conn, row.message_pk)
        reason = _bot_reason(request, found[4], now, deps.settings.bot_click_window_seconds)
        if reason is None and await _link_burst(conn, found[0], row.url, now):
            reason = "every-link burst"
        event = Incoming(
            type="clicked",
            contact_id=found[2],
            email_key=found[3],
            occurred_at=now,
            message_pk=found[0],
            enrollment_id=found[1],
            source="click",
            properties={"url": row.url, **({"bot": reason} if reason else {})},
            is_bot=reason is not None,
        )
        outcome = await feedback.ingest(conn, deps, [event], now)
    await deps.waker.wake_at(outcome.wake)
    return RedirectResponse(row.url, status_code=302, headers=NO_STORE)


async def _message_by_pk(
    conn: AsyncConnection, message_pk: str
) -> tuple[str, str, int, str, datetime | None]:
    row = (await conn.execute(select(MESSAGES.c.token).where(MESSAGES.c.id == message_pk))).one()
    found = await _message(conn, row.token)
    assert found is not None
    return found


async def _link_burst(conn: AsyncConnection, message_pk: str, url: str, now: datetime) -> bool:
    """Scanners open every link of a message at once; people click one, then maybe another."""
    recent = await conn.execute(
        select(EVENTS.c.properties).where(
            EVENTS.c.message_pk == message_pk,
            EVENTS.c.type == "clicked",
            EVENTS.c.occurred_at >= now - BURST_WINDOW,
        )
    )
    return any((props or {}).get("url") != url for (props,) in recent)


def _bot_reason(
    request: Request, sent_at: datetime | None, now: datetime, window: float
) -> str | None:
    if request.method == "HEAD":
        return "HEAD request"
    agent = request.headers.get("user-agent", "")
    if not agent or SCANNERS.search(agent):
        return "scanner user agent"
    if sent_at is not None and (now - sent_at).total_seconds() < window:
        return "clicked within seconds of delivery"
    return None


@router.get("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_page(token: str, deps: DepsDep) -> HTMLResponse:
    """A confirmation page; fetching it changes nothing (link scanners fetch it too)."""
    async with deps.reader.connect() as conn:
        found = await _message(conn, token)
    if found is None:
        return HTMLResponse(
            _page("Link not found", "This unsubscribe link is not valid."), status_code=404
        )
    form = (
        f'<form method="post" action="/u/{token}"><input type="hidden" name="List-Unsubscribe" '
        'value="One-Click"><button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(
        _page("Unsubscribe?", "You will get no more emails from these sequences." + form)
    )


@router.post("/u/{token}", include_in_schema=False)
async def unsubscribe(token: str, deps: DepsDep) -> HTMLResponse:
    """RFC 8058 one-click: no login, no redirect; the address is suppressed at once."""
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        found = await _message(conn, token)
        if found is None:
            return HTMLResponse(
                _page("Link not found", "This unsubscribe link is not valid."), status_code=404
            )
        event = Incoming(
            type="unsubscribed",
            contact_id=found[2],
            email_key=found[3],
            occurred_at=now,
            event_id=found[0],
            message_pk=found[0],
            enrollment_id=found[1],
            source="unsubscribe",
        )
        await feedback.ingest(conn, deps, [event], now)
    return HTMLResponse(_page("Unsubscribed", "You are unsubscribed. No more emails will be sent."))


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{title}</title><body style='font-family:system-ui,sans-serif;max-width:32rem;"
        "margin:4rem auto;padding:0 1rem;color:#1f2937'>"
        f"<h1>{title}</h1><p>{body}</p></body></html>"
    )
