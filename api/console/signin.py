"""Signing in to the console with an API key, and out again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.auth import authenticate
from api.console import sessions
from api.console.web import PostSessionDep, local_path, page, redirect, same_origin
from api.deps import DepsDep

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def home() -> Response:
    return redirect("/console/queue")


@router.get("/sign-in")
async def sign_in_form(
    request: Request, next_: Annotated[str | None, Query(alias="next", max_length=2000)] = None
) -> HTMLResponse:
    return page(request, "sign_in.html", None, next=local_path(next_))


@router.post("/sign-in")
async def sign_in(
    request: Request,
    deps: DepsDep,
    key: Annotated[str, Form(max_length=200)] = "",
    next_: Annotated[str | None, Form(alias="next", max_length=2000)] = None,
) -> Response:
    same_origin(request)  # no signing a browser in to someone else's session from elsewhere
    target = local_path(next_)
    async with deps.engine.begin() as conn:
        principal = await authenticate(conn, key.strip()) if key.strip() else None
        if principal is None:
            error = "Paste an API key." if not key.strip() else "Unknown or revoked API key."
            return _refused(request, target, error, 401)
        if principal.role not in sessions.CONSOLE_ROLES:
            error = (
                f"This key has the '{principal.role}' role. The console needs a key with the "
                "reviewer or admin role."
            )
            return _refused(request, target, error, 403)
        secret = await sessions.start(conn, principal, deps.clock.now())
    response = redirect(target)
    response.set_cookie(
        sessions.COOKIE,
        secret,
        max_age=int(sessions.LIFETIME.total_seconds()),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _refused(request: Request, target: str, error: str, status: int) -> HTMLResponse:
    return page(request, "sign_in.html", None, status_code=status, next=target, error=error)


@router.post("/sign-out")
async def sign_out(request: Request, deps: DepsDep, _: PostSessionDep) -> Response:
    async with deps.engine.begin() as conn:
        await sessions.end(conn, request.cookies.get(sessions.COOKIE, ""))
    response = redirect("/console/sign-in")
    response.delete_cookie(sessions.COOKIE, path="/console")
    return response
