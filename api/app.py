"""The FastAPI application: built per process, its dependencies opened in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from api import errors
from api.console import inbox as console_inbox
from api.console import insight, review, signin, web
from api.routes import contacts, drafts, enrollments, events, ops, sequences, tracking, webhooks
from sequences.kit.clock import Clock
from sequences.kit.fetcher import HttpFetcher
from sequences.runtime import open_deps
from sequences.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def create_app(
    settings: Settings, *, redis_url: str, clock: Clock | None = None, inbox: Path | None = None
) -> FastAPI:
    """The API and the console; ``inbox`` is the SMTP capture's directory, when it is the relay
    (the console's dev inbox shows it)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_deps(settings, redis_url=redis_url, clock=clock) as deps:
            deps.fetcher = fetcher = HttpFetcher()
            app.state.deps = deps
            try:
                yield
            finally:
                await fetcher.aclose()

    app = FastAPI(
        title="Dripline",
        version="0.1.0",
        summary="AI-agent email sequences: enroll leads, post feedback, review drafts.",
        lifespan=lifespan,
    )
    app.state.inbox = inbox
    errors.install(app)
    for module in (sequences, contacts, enrollments, events, drafts, tracking, webhooks, ops):
        app.include_router(module.router)
    web.install(app, [signin.router, review.router, insight.router, console_inbox.router])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


class BodyLimit:
    """Refuses bodies over the limit with 413 before a handler reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        response = errors.error_response(
            413, "body_too_large", f"the body is larger than {self.max_bytes} bytes"
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


class _TooLarge(Exception):
    pass
