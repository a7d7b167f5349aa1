"""What the console tests share: the sequence that holds every email for review, hostile and
refused input, and signing in as a browser would."""

from __future__ import annotations

import re

from harness import Stack
from review_cases import sequence

from api.auth import Role

REVIEWED = sequence()
# An edit a reviewer might make that the guardrails refuse: a link the step does not allow.
BAD_BODY = "Hi,\n\nSee https://evil.example.net/win for a prize."
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def sign_in(stack: Stack, role: Role = Role.reviewer) -> str:
    """Sign the stack's client in (the cookie stays in its jar); returns the CSRF token."""
    response = await stack.client.post("/console/sign-in", data={"key": await stack.key(role)})
    assert response.status_code == 303, response.text
    return csrf_of((await stack.client.get("/console/queue")).text)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)
