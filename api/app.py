"""The FastAPI application: built per process, its dependencies opened in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from api import errors, openapi
from api.bodylimit import BodyLimit
from api.console import inbox as console_inbox
from api.console import insight, review, signin, web
from api.routes import (
    contacts,
    drafts,
    enrollments,
    events,
    keys,
    ops,
    sequences,
    tracking,
    webhooks,
)
from sequences.kit.clock import Clock
from sequences.kit.fetcher import HttpFetcher
from sequences.runtime import open_deps
from sequences.settings import Settings


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
    for module in (sequences, contacts, enrollments, events, drafts, tracking, webhooks, keys, ops):
        app.include_router(module.router)
    web.install(app, [signin.router, review.router, insight.router, console_inbox.router])
    # ESP webhooks carry whole bounced messages (Postmark's Content): a bounce refused for its
    # size would never suppress the address, so their route takes larger bodies.
    larger = {"/v1/webhooks/": settings.webhook_max_body_bytes}
    openapi.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, larger=larger)
    return app
