"""Drafts held for review, as the approval and console tests both need them: a stack whose
copy comes from the local OpenAI-compatible server, a sequence whose email waits for a
reviewer, and the queue read through the API until drafts are in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from harness import Stack, eventually, make_settings, running_stack

from agents.devserver import HeuristicResponder, serve_openai
from sequences.mail.capture import CaptureServer

SEQUENCE = """
key: reviewed
name: Reviewed onboarding
sender: {{from: "Dana at Acme <dana@acme.test>"}}
approval: {approval}
{extra}
steps:
  - id: welcome
    email:
      brief: Welcome them and point to the quickstart guide.
      cta: {{text: Open the quickstart, url: "https://acme.test/quickstart"}}
      fallback:
        subject: "Welcome, {{{{ contact.first_name | default('there') }}}}"
        body: "Hi {{{{ contact.first_name | default('there') }}}},\\n\\nThe quickstart is ready."
  - id: later
    wait: {{for: 30d}}
"""


def sequence(approval: str = "always", extra: str = "") -> str:
    """The ``reviewed`` sequence: one email under ``approval``, then a long wait."""
    return SEQUENCE.format(approval=approval, extra=extra)


@asynccontextmanager
async def model_stack(
    database_url: str, redis_url: str, capture: CaptureServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The app, a worker and SMTP capture, with copy from a local OpenAI-compatible server."""
    async with serve_openai(HeuristicResponder()) as model_url:
        settings = make_settings(tmp_path, database_url, OPENAI_BASE_URL=model_url)
        async with running_stack(settings, redis_url, capture) as stack:
            yield stack


async def pending(stack: Stack, count: int = 1, **params: str) -> list[dict[str, Any]]:
    """The pending drafts (filtered by ``params``), once there are at least ``count``."""

    async def found() -> list[dict[str, Any]]:
        response = await stack.client.get("/v1/drafts", params=params, headers=stack.auth())
        assert response.status_code == 200, response.text
        drafts: list[dict[str, Any]] = response.json()["drafts"]
        return drafts if len(drafts) >= count else []

    result: list[dict[str, Any]] = await eventually(found)
    return result
