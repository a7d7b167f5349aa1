"""Open pixel, click redirects (to stored links only), unsubscribe page and RFC 8058 one-click."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import DepsDep
from sequences.deps import Deps
from sequences.intake import feedback
from sequences.signals.bots import bot_reason
from sequences.store.db import transaction
from sequences.store.events import Incoming
from sequences.store.tables import CONTACTS, EVENTS, LINKS, MESSAGES

router = APIRouter(tags=["tracking"])
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private"}
BURST_WINDOW = timedelta(seconds=2)
HTML_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such token", "content": {"text/html": {"schema": {"type": "string"}}}}
}


@dataclass(frozen=True)
class Tracked:
    """The message a tracking token or link points at, and whom it went to."""

    message_pk: str
    enrollment_id: str
    contact_id: int
    email_key: str
    sent_at: datetime | None

    def event(self, kind: str, now: datetime, source: str, **fields: Any) -> Incoming:
        return Incoming(
            type=kind,
            contact_id=self.contact_id,
            email_key=self.email_key,
            occurred_at=now,
            message_pk=self.message_pk,
            enrollment_id=self.enrollment_id,
            source=source,
            **fields,
        )


async def _tracked(conn: AsyncConnection, where: ColumnElement[bool]) -> Tracked | None:
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
            .where(where)
        )
    ).first()
    return Tracked(*row) if row else None


async def _record(
    deps: Deps, conn: AsyncConnection, event: Incoming, now: datetime
) -> list[datetime]:
    """Store the event and act on it; returns the wake-ups to send once it is committed."""
    return (await feedback.ingest(conn, deps, [event], now)).wake


@router.get(
    "/t/o/{token}",
    response_class=Response,
    responses={200: {"description": "A 1x1 GIF", "content": {"image/gif": {}}}},
)
async def open_pixel(token: str, deps: DepsDep) -> Response:
    """A 1x1 GIF; the open is stored unverified (privacy proxies fetch every image)."""
    now = deps.clock.now()

    async def work(conn: AsyncConnection) -> list[datetime]:
        found = await _tracked(conn, _pixel(token))
        if found is None:
            return []
        return await _record(deps, conn, found.event("opened", now, "pixel", verified=False), now)

    await deps.waker.wake_at(await transaction(deps.engine, work))
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


def _pixel(token: str) -> ColumnElement[bool]:
    """The message whose pixel carries ``token``: its open token, or for a message sent before
    the pixel had its own, its one token (old emails keep counting opens)."""
    return or_(
        MESSAGES.c.open_token == token,
        and_(MESSAGES.c.open_token.is_(None), MESSAGES.c.token == token),
    )


@router.get(
    "/t/c/{token}",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "To the link's stored URL"}, **HTML_404},
)
@router.head("/t/c/{token}", include_in_schema=False)  # link scanners probe with HEAD
async def click(token: str, request: Request, deps: DepsDep) -> Response:
    """Redirect to the stored link; HEAD requests, scanners and instant clicks count as bots."""
    now = deps.clock.now()

    async def work(conn: AsyncConnection) -> tuple[str, list[datetime]] | None:
        link = (
            await conn.execute(
                select(LINKS.c.url, LINKS.c.message_pk).where(LINKS.c.token == token)
            )
        ).first()
        found = await _tracked(conn, MESSAGES.c.id == link.message_pk) if link else None
        if link is None or found is None:
            return None
        reason = bot_reason(
            user_agent=request.headers.get("user-agent"),
            sent_at=found.sent_at,
            at=now,
            window_seconds=deps.settings.bot_click_window_seconds,
            head=request.method == "HEAD",
        )
        if reason is None and await _link_burst(conn, found.message_pk, link.url, now):
            reason = "every-link burst"
        properties = {"url": link.url, **({"bot": reason} if reason else {})}
        event = found.event("clicked", now, "click", properties=properties, is_bot=bool(reason))
        return link.url, await _record(deps, conn, event, now)

    done = await transaction(deps.engine, work)
    if done is None:
        return _not_found("This link is not valid any more.")
    await deps.waker.wake_at(done[1])
    return RedirectResponse(done[0], status_code=302, headers=NO_STORE)


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


@router.get("/u/{token}", response_class=HTMLResponse, responses=HTML_404)
async def unsubscribe_page(token: str, deps: DepsDep) -> HTMLResponse:
    """A confirmation page; fetching it changes nothing (link scanners fetch it too)."""
    async with deps.reader.connect() as conn:
        found = await _tracked(conn, MESSAGES.c.token == token)
    if found is None:
        return _not_found("This unsubscribe link is not valid.")
    form = (
        f'</p><form method="post" action="/u/{token}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit" style="font:inherit;font-weight:600;color:#fff;background:#2563eb;'
        'border:0;border-radius:6px;padding:.7rem 1.4rem;cursor:pointer">Unsubscribe</button>'
        "</form><p>"
    )
    return HTMLResponse(
        _page("Unsubscribe?", "You will get no more emails from these sequences." + form)
    )


@router.post("/u/{token}", response_class=HTMLResponse, responses=HTML_404)
async def unsubscribe(token: str, deps: DepsDep) -> HTMLResponse:
    """RFC 8058 one-click: no login, no redirect; the address is suppressed at once."""
    now = deps.clock.now()

    async def work(conn: AsyncConnection) -> Tracked | None:
        found = await _tracked(conn, MESSAGES.c.token == token)
        if found is not None:
            # The message id as event id: a second click on the same link is accepted once.
            event = found.event("unsubscribed", now, "unsubscribe", event_id=found.message_pk)
            await _record(deps, conn, event, now)  # suppression ends everything: nothing to wake
        return found

    # A deadlock with a worker recording this person's next email is retried, never a 500.
    if await transaction(deps.engine, work) is None:
        return _not_found("This unsubscribe link is not valid.")
    return HTMLResponse(_page("Unsubscribed", "You are unsubscribed. No more emails will be sent."))


def _not_found(text: str) -> HTMLResponse:
    return HTMLResponse(_page("Link not found", text), status_code=404)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{title}</title><body style='font-family:system-ui,sans-serif;max-width:32rem;"
        "margin:4rem auto;padding:0 1rem;color:#1f2937'>"
        f"<h1>{title}</h1><p>{body}</p></body></html>"
    )
