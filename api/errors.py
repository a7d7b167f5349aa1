"""One JSON error shape for every failure: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from sequences.definitions.refusals import DefinitionError
from sequences.errors import DriplineError
from sequences.store.db import retryable

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error's shape."""

    error: ErrorDetail


DESCRIPTIONS = {
    400: "The request cannot be done as asked",
    401: "Missing, unknown or revoked API key",
    403: "The key's role may not do this",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "The body is larger than the limit",
    422: "Invalid request: `details` lists each field at fault",
    503: "Not configured here, or a dependency is unreachable",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route answers with."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS[s]} for s in statuses}


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "contact", "email")`` -> ``contact.email``; the transport part is dropped."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:] or parts
    return ".".join(parts)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [_detail(e) for e in exc.errors()]
    first = details[0] if details else {"path": "body", "message": "invalid request"}
    return error_response(422, "invalid_request", f"{first['path']}: {first['message']}", details)


def _detail(error: Any) -> dict[str, str]:
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "malformed JSON")
        return {
            "path": "body",
            "message": f"invalid JSON at character {error['loc'][-1]}: {reason}",
        }
    path = field_path(error["loc"])
    subpath = (error.get("ctx") or {}).get("subpath")  # a limit inside free-form JSON (api.limits)
    if subpath:
        path = f"{path}.{subpath}"
    return {"path": path, "message": error["msg"].removeprefix("Value error, ")}


async def _definition(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DefinitionError)
    details = [{"path": e.path, "message": e.message} for e in exc.errors]
    first = details[0] if details else {"path": "body", "message": str(exc)}
    return error_response(422, "invalid_sequence", f"{first['path']}: {first['message']}", details)


async def _dripline(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DriplineError)
    return error_response(exc.status, exc.code, exc.message, exc.details)


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, RecursionError):
        # FastAPI's JSON parser gave up on a body nested hundreds of levels deep: say so, as
        # the limits at the door do for shallower bodies (see api.limits.MAX_DEPTH).
        return error_response(
            422,
            "invalid_request",
            "the JSON body is nested too deeply to read",
            [{"path": "body", "message": "nested deeper than 32 levels"}],
        )
    response = error_response(
        exc.status_code, _CODES.get(exc.status_code, "http_error"), str(exc.detail)
    )
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """The methods of every route at the refused route's path (Starlette names the first
    route's alone, though GET and PUT of one path are two routes)."""
    path = getattr(request.scope.get("route"), "path", None)
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if path is not None and route.path == path:
            methods |= route.methods or set()
    return sorted(methods)


async def _database(request: Request, exc: Exception) -> JSONResponse:
    """A deadlock or serialization failure that outlasted its retries is a busy moment, not a
    server error: the client may simply try again (nothing of the request was kept)."""
    if retryable(exc):
        response = error_response(503, "busy", "the database is busy; retry the request")
        response.headers["Retry-After"] = "1"
        return response
    log.error("database error", exc_info=exc)
    return error_response(500, "internal_error", "internal error")


Handler = Callable[[Request, Exception], Awaitable[Response]]
HANDLERS: dict[type[Exception], Handler] = {
    DBAPIError: _database,
    RequestValidationError: _validation,
    DefinitionError: _definition,
    DriplineError: _dripline,
    HTTPException: _http,
}


def install(app: FastAPI) -> None:
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)
