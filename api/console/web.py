"""What every console page shares: templates, the signed-in session, CSRF, security headers,
and errors rendered as pages (the JSON API keeps its JSON errors)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException

from api import errors
from api.console import sessions
from api.console.sessions import Session
from sequences.errors import DriplineError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

# Pages load their own stylesheet and script only; emails are framed from our own origin.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """No live console session: the browser is sent to the sign-in page."""


async def signed_in(request: Request) -> Session | None:
    secret = request.cookies.get(sessions.COOKIE)
    if not secret:
        return None
    deps = request.app.state.deps
    async with deps.reader.connect() as conn:
        found: Session | None = await sessions.find(conn, secret, deps.clock.now())
        return found


async def current(request: Request) -> Session:
    session = await signed_in(request)
    if session is None:
        raise SignInRequired
    return session


SessionDep = Annotated[Session, Depends(current)]


def same_origin(request: Request) -> None:
    """A browser names the page a form was posted from; it must be one of ours. (Clients that
    send no Origin, like curl, still need the CSRF token.)"""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HTTPException(403, f"a form posted from {origin} is not accepted here")


async def checked(
    request: Request, session: SessionDep, csrf: Annotated[str, Form(max_length=100)] = ""
) -> Session:
    """For every form post: the session, and the form's CSRF token must be the session's."""
    same_origin(request)
    if not session.csrf_ok(csrf):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page")
    return session


PostSessionDep = Annotated[Session, Depends(checked)]


def page(
    request: Request,
    template: str,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {"session": session, "nav": template.split(".")[0], "now": now(request), **context},
        status_code=status_code,
        headers=PAGE_HEADERS,
    )


def now(request: Request) -> datetime:
    """The app's clock (the tests' and the simulator's may run fast): what "ago" counts from."""
    moment: datetime = request.app.state.deps.clock.now()
    return moment


def redirect(path: str, **params: str | None) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


def local_path(value: str | None, default: str = "/console/queue") -> str:
    """A redirect target from a form: only paths inside the console (no open redirects)."""
    if value and value.startswith("/console") and "//" not in value and "\\" not in value:
        return value
    return default


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = int((now - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            amount = f"{seconds // size} {unit}"
            break
    else:
        amount = f"{seconds} s"
    return f"in {amount}" if future else f"{amount} ago"


def _moment(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def stamp(value: datetime | str | None) -> str:
    """A full timestamp with its zone: ``2026-11-13 08:44 UTC``."""
    moment = _moment(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def local(value: datetime | str | None, zone: str | None) -> str:
    """The same moment on the recipient's clock, ``09:44 Europe/Paris`` (with the date when it
    differs from UTC's); empty when the zone is unknown or is UTC."""
    moment = _moment(value)
    if moment is None or not zone or zone in ("UTC", "Etc/UTC"):
        return ""
    try:
        there = moment.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        return ""
    shown = "%H:%M" if there.date() == moment.astimezone(UTC).date() else "%Y-%m-%d %H:%M"
    return f"{there.strftime(shown)} {zone}"


def relative(value: datetime | str | None, now: datetime) -> Markup:
    """A relative time ("3 h ago") with the absolute time on hover and for machines."""
    moment = _moment(value)
    if moment is None:
        return Markup("-")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment.isoformat(), stamp(moment), ago(moment, now)
    )


templates.env.filters["ago"] = ago
templates.env.filters["stamp"] = stamp
templates.env.filters["local"] = local
templates.env.filters["relative"] = relative
templates.env.globals["quote"] = quote


def install(app: FastAPI, routers: list[Any]) -> None:
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    for router in routers:
        app.include_router(router)
    app.add_exception_handler(SignInRequired, _sign_in)
    for kind in (DriplineError, RequestValidationError, HTTPException):
        app.add_exception_handler(kind, _as_page(errors.HANDLERS[kind]))


async def _sign_in(request: Request, _: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/console/queue"
    return redirect("/console/sign-in", next=target)


def _as_page(json_handler: errors.Handler) -> errors.Handler:
    """On console paths an error is a page saying what went wrong; elsewhere it is JSON."""

    async def handle(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith("/console"):
            return await json_handler(request, exc)
        status, message = _describe(exc)
        session = await signed_in(request)  # the page keeps its navigation when signed in
        return page(
            request, "error.html", session, status_code=status, status=status, message=message
        )

    return handle


def _describe(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, DriplineError):
        return exc.status, exc.message
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return 422, f"{errors.field_path(tuple(first['loc']))}: {first['msg']}"
    assert isinstance(exc, HTTPException)
    return exc.status_code, str(exc.detail)
