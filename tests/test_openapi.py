"""The HTTP contract as documented: the bearer scheme, every status each route answers with,
413 for any body over its route's limit, the right ``Allow`` on 405; and schemathesis, with a
fixed seed and a bounded number of examples, finds no failure against the served app."""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
from harness import Stack, make_settings, running_stack
from hypothesis import HealthCheck, Phase, seed, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from agents.devserver import serving
from api.app import create_app
from api.auth import Role, create_key
from sequences.mail.capture import CaptureServer

LIMIT = 4_000
SEQUENCE = """
key: contract
name: Contract
sender: {from: "Ops <ops@acme.test>"}
steps:
  - id: hello
    email: {brief: Hello, fallback: {subject: "Hello", body: "Hello there."}}
"""


@pytest.fixture
async def stack(tmp_path: Path, capture: CaptureServer, redis_db: str) -> AsyncIterator[Stack]:
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", DRIPLINE_MAX_BODY_BYTES=LIMIT
    )
    async with running_stack(settings, redis_db, capture, worker=False) as running:
        yield running


async def test_the_document_declares_bearer_keys_and_each_error(stack: Stack) -> None:
    document = (await stack.client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert list(schemes.values()) == [
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer dl_...`",
        }
    ]
    paths = document["paths"]
    cancel = paths["/v1/enrollments/{enrollment_id}/cancel"]["post"]
    assert {"401", "403", "404", "409", "422"} <= set(cancel["responses"])
    assert cancel["security"] == [{next(iter(schemes)): []}]
    enroll = paths["/v1/enrollments"]["post"]["responses"]
    assert {"200", "201", "404", "409", "413", "422"} <= set(enroll)
    error = {"$ref": "#/components/schemas/ErrorBody"}
    assert enroll["422"]["content"]["application/json"]["schema"] == error
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert "security" not in paths["/t/o/{token}"]["get"]  # the pixel needs no key
    assert set(paths["/t/o/{token}"]["get"]["responses"]["200"]["content"]) == {"image/gif"}


async def test_allow_names_every_method_of_the_path(stack: Stack) -> None:
    response = await stack.client.delete("/v1/sequences/contract", headers=stack.auth())
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, PUT"  # two routes, one path
    tracked = await stack.client.put("/u/some-token")
    assert tracked.status_code == 405 and tracked.headers["allow"] == "GET, POST"


async def _chunks(total: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * 500
        sent += 500


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/events"), ("PUT", "/v1/sequences/contract"), ("POST", "/v1/enrollments")],
)
async def test_any_body_over_the_limit_is_413(stack: Stack, method: str, path: str) -> None:
    headers = {**stack.auth(), "Content-Type": "application/json"}
    # Chunked (no Content-Length): cut off as it is read, parsed by FastAPI or read raw.
    chunked = await stack.client.request(method, path, content=_chunks(LIMIT + 1), headers=headers)
    assert chunked.status_code == 413, chunked.text
    assert chunked.json()["error"] == {
        "code": "body_too_large",
        "message": f"the body is larger than {LIMIT} bytes",
        "details": None,
    }
    declared = await stack.client.request(method, path, content=b" " * (LIMIT + 1), headers=headers)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "body_too_large"
    small = await stack.client.request(method, path, content=_chunks(LIMIT), headers=headers)
    assert small.status_code == 422  # at the limit: read, and refused for what it says


# -- schemathesis against the app served over HTTP --------------------------------------------


@dataclass(frozen=True)
class Served:
    base_url: str
    headers: dict[str, str]


class _Background(threading.Thread):
    """The app served by uvicorn on its own event loop (schemathesis calls it synchronously)."""

    def __init__(self, tmp: Path, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.settings = make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}")
        self.redis_url = redis_url
        self.ready: queue.Queue[Served | BaseException] = queue.Queue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # the test waiting for readiness reports it
            self.ready.put(error)

    async def _serve(self) -> None:
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        app = create_app(self.settings, redis_url=self.redis_url)
        async with app.router.lifespan_context(app):
            async with app.state.deps.engine.begin() as conn:
                # A name no generated path would hit: revoking it would end the run.
                name = "schemathesis-admin-key-not-to-revoke"
                key = await create_key(conn, name, Role.admin, datetime.now(UTC))
            async with serving(app, started=True) as base_url:
                self.ready.put(Served(base_url, {"Authorization": f"Bearer {key}"}))
                await self.stop.wait()

    def close(self) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.join(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_server_url: str) -> Iterator[Served]:
    redis_url = f"{redis_server_url}/{7 + (os.getpid() % 8)}"
    redis.Redis.from_url(redis_url).flushdb()
    background = _Background(tmp_path_factory.mktemp("openapi"), redis_url)
    background.start()
    ready = background.ready.get(timeout=60)
    if isinstance(ready, BaseException):
        raise ready
    try:
        yield ready
    finally:
        background.close()
        redis.Redis.from_url(redis_url).flushdb()


# The document as the app generates it, read at collection (schemathesis parametrizes from it);
# the first test checks the served one.
_unstarted = create_app(make_settings(Path("unused"), "sqlite+aiosqlite://"), redis_url="redis://")
schema = schemathesis.openapi.from_dict(_unstarted.openapi())


def _negates_headers(case: schemathesis.Case[Any]) -> bool:
    """A case about the headers themselves (a missing or bad Authorization) goes as generated;
    every other one with the admin key, so it reaches the route."""
    components = case.meta.components if case.meta else {}
    header = components.get(ParameterLocation.HEADER)
    return header is not None and header.mode.is_negative


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
@seed(15)
def test_schemathesis_finds_no_failure(case: schemathesis.Case[Any], served: Served) -> None:
    # Every check but positive_data_acceptance: a schema-valid sequence can still be refused for
    # what it means (an unknown step in a goto), and a made-up enrollment id is rightly a 404.
    case.call_and_validate(
        base_url=served.base_url,
        headers=None if _negates_headers(case) else served.headers,
        timeout=30,
        excluded_checks=[positive_data_acceptance],
    )
