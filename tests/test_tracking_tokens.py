"""The open pixel, each link and the unsubscribe carry tokens of their own: none leads to
another, and emails sent before the split keep working."""

from __future__ import annotations

import email
import re
from collections.abc import AsyncIterator
from email import policy
from pathlib import Path
from typing import Any

import pytest
from harness import Stack, eventually, make_settings, running_stack
from sqlalchemy import select, update

from sequences.mail.capture import CaptureServer
from sequences.store.tables import EVENTS, MESSAGES

SEQUENCE = """
key: tokens
name: Tokens
sender: {from: "Ops <ops@acme.test>"}
steps:
  - id: hello
    email:
      brief: Hello
      cta: {text: Read more, url: "https://acme.test/read"}
      fallback: {subject: "Hello", body: "Hello there."}
"""
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def stack(tmp_path: Path, capture: CaptureServer, redis_db: str) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    async with running_stack(settings, redis_db, capture) as running:
        assert (await running.apply("tokens", SEQUENCE)).status_code == 201
        yield running


async def _tokens(stack: Stack, address: str) -> dict[str, Any]:
    assert (await stack.enroll("tokens", address)).status_code == 201
    mail = await eventually(lambda: _received(stack, address))
    parsed = email.message_from_bytes(mail[0].raw, policy=policy.default)
    html = parsed.get_body(("html",))
    assert html is not None
    body = html.get_content()
    header = re.fullmatch(r"<http://dripline\.test/u/([\w-]+)>", parsed["List-Unsubscribe"])
    assert header is not None
    return {
        "unsubscribe": header.group(1),
        "unsubscribe_in_body": re.findall(r"/u/([\w-]+)", body),
        "pixel": re.findall(r"/t/o/([\w-]+)", body),
        "links": re.findall(r"/t/c/([\w-]+)", body),
    }


async def _received(stack: Stack, address: str) -> list[Any]:
    return stack.mail_to(address)


async def _events(stack: Stack) -> list[str]:
    async with stack.deps.reader.connect() as conn:
        return [row.type for row in await conn.execute(select(EVENTS.c.type))]


async def _suppressed(stack: Stack, address: str) -> Any:
    response = await stack.client.get(f"/v1/contacts/{address}", headers=stack.auth())
    assert response.status_code == 200, response.text
    return response.json()["suppressed"]


async def test_pixel_links_and_unsubscribe_tokens_are_unlinkable(stack: Stack) -> None:
    tokens = await _tokens(stack, "ida@example.com")
    [pixel] = tokens["pixel"]
    unsubscribe = tokens["unsubscribe"]
    assert set(tokens["unsubscribe_in_body"]) == {unsubscribe}
    assert tokens["links"] and len(set(tokens["links"])) == len(tokens["links"])
    assert len({pixel, unsubscribe, *tokens["links"]}) == 2 + len(tokens["links"])
    # Whoever logged the pixel's URL cannot unsubscribe the recipient with it ...
    for token in (pixel, *tokens["links"]):
        assert (await stack.client.get(f"/u/{token}")).status_code == 404
        refused = await stack.client.post(f"/u/{token}", content="List-Unsubscribe=One-Click")
        assert refused.status_code == 404
    assert await _suppressed(stack, "ida@example.com") is None
    # ... nor is the unsubscribe token (or a link's) taken for an open.
    for token in (unsubscribe, *tokens["links"]):
        gif = await stack.client.get(f"/t/o/{token}")
        assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    assert await _events(stack) == []
    assert (await stack.client.get(f"/t/c/{pixel}")).status_code == 404
    assert (await stack.client.get(f"/t/o/{pixel}")).status_code == 200
    assert await _events(stack) == ["opened"]
    done = await stack.client.post(
        f"/u/{unsubscribe}", content="List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert done.status_code == 200
    assert await _suppressed(stack, "ida@example.com") == "unsubscribed"


async def test_an_email_sent_before_the_split_keeps_working(stack: Stack) -> None:
    tokens = await _tokens(stack, "old@example.com")
    async with stack.deps.engine.begin() as conn:  # what migration 0007 leaves on old rows
        await conn.execute(update(MESSAGES).values(open_token=None))
    old = tokens["unsubscribe"]  # an old email's pixel and unsubscribe carried this one token
    assert (await stack.client.get(f"/t/o/{old}")).status_code == 200
    assert await _events(stack) == ["opened"]
    done = await stack.client.post(f"/u/{old}", content="List-Unsubscribe=One-Click")
    assert done.status_code == 200
    assert await _suppressed(stack, "old@example.com") == "unsubscribed"
