"""What the console tests share: a stack whose copy comes from the local OpenAI-compatible
server, a sequence that holds every email for review, and signing in as a browser would."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from harness import Stack, eventually, make_settings, running_stack

from agents.devserver import HeuristicResponder, serve_openai
from api.auth import Role
from sequences.mail.capture import CaptureServer

REVIEWED = """
key: reviewed
name: Reviewed onboarding
sender: {from: "Dana at Acme <dana@acme.test>"}
approval: always
steps:
  - id: welcome
    email:
      brief: Welcome them and point to the quickstart guide.
      cta: {text: Open the quickstart, url: "https://acme.test/quickstart"}
      fallback:
        subject: "Welcome, {{ contact.first_name | default('there') }}"
        body: "Hi {{ contact.first_name | default('there') }},\\n\\nThe quickstart is ready."
  - id: later
    wait: {for: 30d}
"""
# An edit a reviewer might make that the guardrails refuse: a link the step does not allow.
BAD_BODY = "Hi,\n\nSee https://evil.example.net/win for a prize."
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@asynccontextmanager
async def console_stack(
    database_url: str, redis_url: str, capture: CaptureServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with serve_openai(HeuristicResponder()) as model_url:
        settings = make_settings(tmp_path, database_url, OPENAI_BASE_URL=model_url)
        async with running_stack(settings, redis_url, capture) as stack:
            yield stack


async def pending(stack: Stack, count: int = 1) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]]:
        response = await stack.client.get("/v1/drafts", headers=stack.auth())
        drafts: list[dict[str, Any]] = response.json()["drafts"]
        return drafts if len(drafts) >= count else []

    result: list[dict[str, Any]] = await eventually(found)
    return result


async def sign_in(stack: Stack, role: Role = Role.reviewer) -> str:
    """Sign the stack's client in (the cookie stays in its jar); returns the CSRF token."""
    response = await stack.client.post("/console/sign-in", data={"key": await stack.key(role)})
    assert response.status_code == 303, response.text
    return csrf_of((await stack.client.get("/console/queue")).text)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)
