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
    # ESP webhooks carry whole bounced messages (Postmark's Content): a bounce refused for its
    # size would never suppress the address, so their route takes larger bodies.
    larger = {"/v1/webhooks/": settings.webhook_max_body_bytes}
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, larger=larger)
    return app


class BodyLimit:
    """Refuses bodies over the limit with 413 before a handler reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}  # path prefix -> its own limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = next((n for p, n in self.larger.items() if path.startswith(p)), self.max_bytes)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(send, limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(send, limit)

    async def _too_large(self, send: Send, limit: int) -> None:
        response = errors.error_response(
            413, "body_too_large", f"the body is larger than {limit} bytes"
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


class _TooLarge(Exception):
    pass
