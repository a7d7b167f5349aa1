"""Bad input gets a 4xx naming the field, and writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness import Stack, make_settings, running_stack
from sqlalchemy import func, select

from sequences.mail.capture import CaptureServer
from sequences.store.tables import CONTACTS, ENROLLMENTS, SEQUENCES, VERSIONS

GOOD = """
key: bad-input
name: Bad input
sender: {from: "Ops <ops@acme.test>"}
steps:
  - id: hello
    email: {brief: Hello, fallback: {subject: "Hello", body: "Hello."}}
  - id: pause
    wait: {for: 2d}
"""


@pytest.fixture
async def stack(tmp_path: Path, capture: CaptureServer, redis_db: str) -> AsyncIterator[Stack]:
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", DRIPLINE_MAX_BODY_BYTES=200_000
    )
    async with running_stack(settings, redis_db, capture, worker=False) as running:
        yield running


async def _rows(stack: Stack) -> tuple[int, ...]:
    tables = [SEQUENCES, VERSIONS, CONTACTS, ENROLLMENTS]
    async with stack.deps.reader.connect() as conn:
        return tuple([await conn.scalar(select(func.count()).select_from(t)) or 0 for t in tables])


def _paths(body: dict[str, object]) -> list[str]:
    error = body["error"]
    assert isinstance(error, dict)
    return [d["path"] for d in error["details"]]


@pytest.mark.parametrize(
    ("document", "path", "words"),
    [
        ("key: bad-input\nsteps: [\n  - id: x", "body", "line"),
        (GOOD.replace("wait: {for: 2d}", "goto: nowhere"), "steps.1.goto", "nowhere"),
        (GOOD.replace("for: 2d", "for: 2x"), "steps.1.wait.for", "duration"),
        (GOOD.replace("ops@acme.test", "ops@@acme"), "sender.from", "address"),
        (
            GOOD.replace('subject: "Hello"', "subject: \"{{ ''.__class__.__mro__ }}\""),
            "steps.0.email.fallback.subject",
            "unsafe",
        ),
    ],
)
async def test_bad_sequence_is_refused(stack: Stack, document: str, path: str, words: str) -> None:
    before = await _rows(stack)
    response = await stack.apply("bad-input", document)
    assert response.status_code == 422, response.text
    body = response.json()
    assert path in _paths(body), body
    assert words in response.text.lower()
    assert await _rows(stack) == before


async def test_malformed_email_is_refused(stack: Stack) -> None:
    assert (await stack.apply("bad-input", GOOD)).status_code == 201
    before = await _rows(stack)
    response = await stack.enroll("bad-input", "not-an-address")
    assert response.status_code == 422
    assert "contact.email" in _paths(response.json())
    assert await _rows(stack) == before


async def test_unknown_sequence_is_refused(stack: Stack) -> None:
    before = await _rows(stack)
    response = await stack.enroll("no-such-sequence", "ada@example.com")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_sequence"
    assert await _rows(stack) == before


async def test_oversized_body_is_refused(stack: Stack) -> None:
    before = await _rows(stack)
    huge = GOOD + "\n# " + "x" * 300_000
    response = await stack.apply("bad-input", huge)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert await _rows(stack) == before


async def test_key_mismatch_and_missing_auth(stack: Stack) -> None:
    response = await stack.apply("other-key", GOOD)
    assert response.status_code == 422
    assert _paths(response.json()) == ["key"]
    anonymous = await stack.client.put("/v1/sequences/bad-input", content=GOOD)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"


async def test_bad_events_write_nothing(stack: Stack) -> None:
    before = await _rows(stack)
    batch = {
        "events": [
            {"type": "converted", "email": "ok@example.com"},
            {"type": "clicked", "contact_id": 999},
        ]
    }
    response = await stack.client.post("/v1/events", json=batch, headers=stack.auth())
    assert response.status_code == 422
    assert _paths(response.json()) == ["events.1.contact_id"]
    assert await _rows(stack) == before  # the first event's contact was not created either


async def test_malformed_json_names_the_body(stack: Stack) -> None:
    response = await stack.client.post(
        "/v1/enrollments",
        content=b'{"sequence": "x", "contact": {',
        headers={**stack.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert detail["path"] == "body" and "invalid JSON at character 30" in detail["message"]


async def test_bad_timezone_is_refused(stack: Stack) -> None:
    assert (await stack.apply("bad-input", GOOD)).status_code == 201
    before = await _rows(stack)
    response = await stack.enroll("bad-input", "tz@example.com", timezone="Mars/Base")
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {
            "path": "contact.timezone",
            "message": "'Mars/Base' is not an IANA timezone such as Europe/Paris",
        }
    ]
    assert await _rows(stack) == before


async def test_unknown_layout_is_refused_at_apply(stack: Stack) -> None:
    before = await _rows(stack)
    response = await stack.apply("bad-input", GOOD.replace("steps:", "layout: nosuch\nsteps:"))
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"path": "layout", "message": "no layout 'nosuch'"}
    ]
    assert await _rows(stack) == before


async def test_addresses_must_be_deliverable(stack: Stack) -> None:
    assert (await stack.apply("bad-input", GOOD)).status_code == 201
    before = await _rows(stack)
    refused = await stack.enroll("bad-input", "jörg@example.com")
    assert refused.status_code == 422
    assert "must be ASCII" in refused.json()["error"]["details"][0]["message"]
    assert await _rows(stack) == before
    accepted = await stack.enroll("bad-input", "anna@bücher.example")
    assert accepted.status_code == 201
    assert accepted.json()["email"] == "anna@xn--bcher-kva.example"


async def test_out_of_range_contact_id(stack: Stack) -> None:
    batch = {"events": [{"type": "clicked", "contact_id": 10**20}]}
    response = await stack.client.post("/v1/events", json=batch, headers=stack.auth())
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["path"] == "events.0.contact_id"
