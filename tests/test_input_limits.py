"""Limits at the door: free-form JSON the system cannot carry is a 422 naming the field path,
with nothing written; templates that would fail at render for every contact are refused at
apply; rows stored before the limits still read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import Stack, make_settings, running_stack
from sqlalchemy import func, insert, select

from api import limits
from api.limits import MAX_DEPTH, MAX_STRING_CHARS
from sequences.mail.capture import CaptureServer
from sequences.store.tables import CONTACTS, ENROLLMENTS, EVENTS

SEQUENCE = """
key: limits
name: Limits
sender: {from: "Ops <ops@acme.test>"}
steps:
  - id: hello
    email:
      brief: Hello
      fallback: {subject: "Hello", body: "Hello {{ contact.first_name | default('there', true) }}."}
"""


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.fixture
async def stack(tmp_path: Path, capture: CaptureServer, redis_db: str) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    async with running_stack(settings, redis_db, capture, worker=False) as running:
        assert (await running.apply("limits", SEQUENCE)).status_code == 201
        yield running


async def _rows(stack: Stack) -> tuple[int, ...]:
    async with stack.deps.reader.connect() as conn:
        tables = [CONTACTS, ENROLLMENTS, EVENTS]
        return tuple([await conn.scalar(select(func.count()).select_from(t)) or 0 for t in tables])


DEEP_PATH = "deep." + ".".join(["0"] * (MAX_DEPTH - 1))  # the first list past the limit
ATTRIBUTE_CASES: dict[str, tuple[str, str, str]] = {
    # label: (attributes as raw JSON, the path named, words in the message)
    "depth": ('{"deep": ' + "[" * 40 + "1" + "]" * 40 + "}", DEEP_PATH, "nested deeper than 32"),
    "depth-300": ('{"deep": ' + "[" * 300 + "]" * 300 + "}", DEEP_PATH, "nested deeper"),
    "int": ('{"seats": 18446744073709551616}', "seats", "64-bit"),
    "nan": ('{"score": NaN}', "score", "NaN"),
    "infinity": ('{"x": {"y": -Infinity}}', "x.y", "NaN and Infinity"),
    "nul": ('{"first_name": "Bob\\u0000"}', "first_name", "U+0000"),
    "esc": ('{"tags": ["ok", "\\u001b[31m"]}', "tags.1", "U+001B"),
    "key": ('{"bad\\u0007key": 1}', "bad\u0007key", "U+0007"),
    "string": ('{"bio": "%s"}' % ("x" * (MAX_STRING_CHARS + 1)), "bio", "longer than"),
    "total": (
        "{" + ",".join(f'"k{i}": "{"y" * 4000}"' for i in range(20)) + "}",
        "",
        "at most 64000",
    ),
}


@pytest.mark.parametrize("label", list(ATTRIBUTE_CASES))
async def test_each_attribute_limit_is_a_422_naming_the_path(stack: Stack, label: str) -> None:
    raw, path, words = ATTRIBUTE_CASES[label]
    body = '{"sequence": "limits", "contact": {"email": "x@example.com", "attributes": %s}}'
    before = await _rows(stack)
    response = await stack.client.post(
        "/v1/enrollments",
        content=(body % raw).encode(),
        headers={**stack.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text[:300]
    [detail] = response.json()["error"]["details"]
    expected = "contact.attributes" + (f".{path}" if path else "")
    assert detail["path"] == expected, detail
    assert words in detail["message"], detail
    assert await _rows(stack) == before

    bulk = '{"sequence": "limits", "contacts": [{"email": "ok@example.com"}, ' + (
        '{"email": "x@example.com", "attributes": ' + raw + "}]}"
    )
    response = await stack.client.post(
        "/v1/enrollments/bulk",
        content=bulk.encode(),
        headers={**stack.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text[:300]
    assert response.json()["error"]["details"][0]["path"].startswith("contacts.1.attributes")
    assert await _rows(stack) == before

    put = '{"attributes": ' + raw + "}"
    response = await stack.client.put(
        "/v1/contacts/x@example.com",
        content=put.encode(),
        headers={**stack.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["path"] == expected.removeprefix("contact.")
    assert await _rows(stack) == before


async def test_event_properties_are_bounded(stack: Stack) -> None:
    before = await _rows(stack)
    for properties, path in (
        ({"blob": "z" * 4000, "more": ["z" * 4000] * 4}, "events.0.properties"),
        ({"v": 2**64}, "events.0.properties.v"),
        ({"n": {"m": "a\x00"}}, "events.0.properties.n.m"),
    ):
        batch = {
            "events": [{"type": "converted", "email": "a@example.com", "properties": properties}]
        }
        response = await stack.client.post("/v1/events", json=batch, headers=stack.auth())
        assert response.status_code == 422, response.text[:300]
        assert response.json()["error"]["details"][0]["path"] == path
    assert await _rows(stack) == before


async def test_tab_newline_and_plain_values_pass(stack: Stack) -> None:
    attributes = {
        "note": "line one\n\tline two",
        "seats": 2**63 - 1,
        "deep": _nested(MAX_DEPTH - 1),
    }
    response = await stack.enroll("limits", "fine@example.com", attributes=attributes)
    assert response.status_code == 201, response.text[:300]
    read = await stack.client.get("/v1/contacts/fine@example.com", headers=stack.auth())
    assert read.status_code == 200 and read.json()["attributes"] == attributes


async def test_rows_stored_before_the_limits_still_read(stack: Stack) -> None:
    old = {"deep": _nested(300), "big": 2**70, "nul": "a\x00b"}
    async with stack.deps.engine.begin() as conn:
        await conn.execute(
            insert(CONTACTS).values(
                email="old@example.com",
                email_key="old@example.com",
                attributes=old,
                created_at=stack.deps.clock.now(),
                updated_at=stack.deps.clock.now(),
            )
        )
    read = await stack.client.get("/v1/contacts/old@example.com", headers=stack.auth())
    assert read.status_code == 200, read.text[:300]
    attributes = read.json()["attributes"]
    assert attributes["big"] == str(2**70) and attributes["nul"] == "a\x00b"
    assert "…" in str(attributes["deep"])


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("Hi {{ '{}'.format(contact.first_name) }}", "'format'"),
        ("Hi {{ 'Dear %s' % contact.first_name }}", "formatting with %"),
        ("Hi {{ contact.first_name | shout }}", "filter 'shout'"),
    ],
)
async def test_templates_that_fail_for_everyone_are_refused_at_apply(
    stack: Stack, template: str, words: str
) -> None:
    written = "body: \"Hello {{ contact.first_name | default('there', true) }}.\""
    document = SEQUENCE.replace(written, f'body: "{template}"')
    assert template in document
    response = await stack.apply("limits", document)
    assert response.status_code == 422, response.text[:300]
    [detail] = response.json()["error"]["details"]
    assert detail["path"] == "steps.0.email.fallback.body"
    assert words in detail["message"]


async def test_a_body_too_deep_for_the_json_parser_is_a_422_too(stack: Stack) -> None:
    deep = "[" * 5_000 + "]" * 5_000  # past Python's recursion limit: FastAPI cannot parse it
    body = '{"sequence": "limits", "contact": {"email": "x@example.com", "attributes": {"d": %s}}}'
    before = await _rows(stack)
    response = await stack.client.post(
        "/v1/enrollments",
        content=(body % deep).encode(),
        headers={**stack.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text[:300]
    [detail] = response.json()["error"]["details"]
    assert detail == {"path": "body", "message": "nested deeper than 32 levels"}
    assert await _rows(stack) == before


@pytest.mark.parametrize("route", ["/v1/enrollments", "/v1/enrollments/bulk"])
async def test_attributes_that_outgrow_the_limit_when_merged_are_a_422(
    stack: Stack, route: str
) -> None:
    half = "y" * 4_000
    first = {f"a{i}": half for i in range(9)}  # ~37 KB: fits alone
    second = {f"b{i}": half for i in range(9)}  # fits alone too, not on top of the first
    assert (await stack.enroll("limits", "grow@example.com", attributes=first)).status_code == 201
    before = await _rows(stack)
    contact = {"email": "grow@example.com", "attributes": second}
    body: dict[str, Any] = {"sequence": "limits", "contact": contact}
    if route.endswith("bulk"):
        body = {"sequence": "limits", "contacts": [contact]}
    response = await stack.client.post(route, json=body, headers=stack.auth())
    assert response.status_code == 422, response.text[:300]
    assert "merged over the stored ones" in response.json()["error"]["message"]
    assert await _rows(stack) == before
    stored = (await stack.client.get("/v1/contacts/grow@example.com", headers=stack.auth())).json()
    assert set(stored["attributes"]) == set(first)


def test_the_control_character_scan_refuses_exactly_unicode_controls_less_tab_and_newline() -> None:
    """The fast scan (one regular expression) against the rule (Unicode category Cc, tab and
    newline allowed), over every code point."""
    everything = "".join(map(chr, range(0x110000)))
    refused = {found.start() for found in limits._CONTROL.finditer(everything)}
    ruled = {code for code in range(0x110000) if limits.is_control(chr(code))}
    assert refused == ruled and len(ruled) == 63  # 65 controls less tab and newline
    assert limits._control_problem("fine\tand\nfine") is None
    assert limits._control_problem("ok\x1b[31m") == (
        "control character U+001B (only tab and newline are allowed)"
    )
