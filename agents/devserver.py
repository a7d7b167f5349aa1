"""A small OpenAI-compatible server for local development, the demo and tests.

``openai_app(responder)`` answers ``POST /v1/chat/completions`` with whatever the responder
decides for each request: a completion, an HTTP error, a slow answer or a malformed body, so the
real ``openai`` client in agents.llm can be driven through every path it must survive.
``serve_openai`` runs it on loopback in the current event loop and yields the base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from agents.fake import heuristic_answer
from agents.standin import HEURISTIC_MODEL as HEURISTIC_MODEL
from agents.standin import LOCAL_MODEL as LOCAL_MODEL


@dataclass(frozen=True)
class Reply:
    """What the server does with one request. Build one with ``ok``, ``error`` or ``raw_body``."""

    status: int = 200
    content: str | None = None  # the assistant message's content (None: a null content)
    model: str = LOCAL_MODEL
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    finish_reason: str = "stop"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # for an error: the JSON body
    raw: str | None = None  # sent as is instead of a JSON body
    content_type: str = "application/json"
    delay: float = 0.0  # seconds to wait before answering, to provoke a client timeout

    @classmethod
    def ok(cls, content: str | None, **usage: Any) -> Reply:
        return cls(content=content, **usage)

    @classmethod
    def error(
        cls, status: int, message: str = "", headers: Mapping[str, str] | None = None, **kw: Any
    ) -> Reply:
        text = message or f"simulated error {status}"
        kind = _ERROR_TYPES.get(status, "server_error")
        body = {"error": {"message": text, "type": kind, "param": None, "code": None}}
        return cls(status=status, body=body, headers=dict(headers or {}), **kw)

    @classmethod
    def raw_body(
        cls, text: str, status: int = 200, content_type: str = "application/json"
    ) -> Reply:
        return cls(status=status, raw=text, content_type=content_type)


_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests"}
Responder = Callable[[dict[str, Any]], Reply]


class ScriptedResponder:
    """Plays ``replies`` in order, then ``then`` for every later request; records each request."""

    def __init__(self, replies: list[Reply], then: Reply | Responder | None = None) -> None:
        self._replies = list(replies)
        self._then = then if then is not None else Reply.error(500, "the script ran out")
        self.requests: list[dict[str, Any]] = []
        self.received_at: list[float] = []  # time.monotonic() per request

    def __call__(self, request: dict[str, Any]) -> Reply:
        self.requests.append(request)
        self.received_at.append(time.monotonic())
        if self._replies:
            return self._replies.pop(0)
        return self._then if isinstance(self._then, Reply) else self._then(request)


class HeuristicResponder:
    """Answers like a model would, from the prompt alone (agents.fake.heuristic_answer)."""

    def __init__(self, model: str = HEURISTIC_MODEL) -> None:
        self.model = model
        self.requests = 0

    def __call__(self, request: dict[str, Any]) -> Reply:
        self.requests += 1
        messages = [
            {"role": str(m.get("role", "")), "content": str(m.get("content") or "")}
            for m in request.get("messages", [])
        ]
        content = heuristic_answer(messages)
        prompt = sum(len(m["content"]) for m in messages) // 4
        system = len(messages[0]["content"]) // 4 if messages else 0
        # From the second request on, a provider would serve the static system prompt from cache.
        cached = (system // 128) * 128 if self.requests > 1 else 0
        return Reply.ok(
            content,
            model=self.model,
            prompt_tokens=prompt,
            completion_tokens=len(content) // 4,
            cached_tokens=cached,
        )


def openai_app(responder: Responder, models: tuple[str, ...] = (LOCAL_MODEL,)) -> FastAPI:
    app = FastAPI(title="Dripline local OpenAI-compatible server", openapi_url=None)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "dripline"} for m in models]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return _send(Reply.error(400, "the request body is not a JSON object"))
        reply = responder(payload)
        waited, step = 0.0, 0.02
        while waited < reply.delay:  # stop waiting once the client has gone
            if await request.is_disconnected():
                return Response(status_code=499)
            await asyncio.sleep(min(step, reply.delay - waited))
            waited += step
        return _send(reply)

    return app


def _send(reply: Reply) -> Response:
    headers = dict(reply.headers)
    if reply.raw is not None:
        return Response(reply.raw, reply.status, headers, media_type=reply.content_type)
    if reply.status != 200:
        return JSONResponse(reply.body, reply.status, headers)
    return JSONResponse(_completion(reply), 200, headers)


def _completion(reply: Reply) -> dict[str, Any]:
    message = {"role": "assistant", "content": reply.content, "refusal": None}
    usage = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
    }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}
        ],
        "usage": usage,
    }


class QuietServer(uvicorn.Server):
    """uvicorn, leaving the process's signal handlers to the caller. (Left alone, it re-raises
    SIGTERM once it has stopped, which would kill a process before it stops what it started.)"""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, started: bool = False
) -> AsyncIterator[str]:
    """``app`` on ``host`` (a free port by default) until the block ends; yields its base URL.
    ``started``: its lifespan already ran (a second one would replace what it set up)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,
        lifespan="off" if started else "on",
    )
    server = QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # it failed to start: say why
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def serve_openai(
    responder: Responder, models: tuple[str, ...] = (LOCAL_MODEL,)
) -> AsyncIterator[str]:
    """The app on 127.0.0.1 on a free port until the block ends; yields its base URL."""
    async with serving(openai_app(responder, models)) as base:
        yield f"{base}/v1"
