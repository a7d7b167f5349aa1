"""The whole path, on SQLite and PostgreSQL, with real Redis/Valkey and a real SMTP server."""

from __future__ import annotations

import asyncio
import email
import re
from email import policy
from pathlib import Path

import dkim
import pytest
from harness import BROWSER_UA, Stack, eventually, make_settings, running_stack

from sequences.mail.capture import CaptureServer
from sequences.mail.dkim import dns_txt_record

SEQUENCE = """
key: e2e-onboarding
name: E2E onboarding
sender: {from: "Dana at Acme <dana@acme.test>", reply_to: "help@acme.test"}
exit_on: [converted]
steps:
  - id: welcome
    email:
      brief: Welcome them and point to the quickstart.
      cta: {text: Open the quickstart, url: "https://acme.test/quickstart"}
      fallback:
        subject: "Welcome, {{ contact.first_name | default('there') }}"
        body: "Hi {{ contact.first_name | default('there') }},\\n\\nThe quickstart takes 5 min."
  - id: pause
    wait: {for: 30d, until: [clicked]}
  - id: route
    branch:
      - {if: "clicked('welcome')", goto: power-tips}
      - {else: nudge}
  - id: nudge
    email:
      brief: Nudge them to try the quickstart.
      fallback: {subject: "Still there?", body: "The quickstart is waiting."}
  - id: stop
    exit: {reason: nudged}
  - id: power-tips
    email:
      brief: Power tips for people who started.
      cta: {text: See pricing, url: "https://acme.test/pricing"}
      fallback: {subject: "Three power tips", body: "You started: here is what to try next."}
  - id: wait-convert
    wait: {for: 2d, until: [converted]}
  - id: last-call
    email:
      brief: Last call before the trial ends.
      fallback: {subject: "Last call", body: "Your trial ends soon."}
"""


def dns_for(pem: bytes) -> object:
    record = dns_txt_record(pem, "dripline", "acme.test")
    value = "".join(re.findall(r'"([^"]*)"', record)).encode()

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"dripline._domainkey.acme.test."
        return value

    return lookup


@pytest.mark.parametrize("broker", ["redis", "valkey"])
async def test_enroll_click_branch_convert(
    broker: str,
    database_url: str,
    capture: CaptureServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    redis_url = request.getfixturevalue("redis_db" if broker == "redis" else "valkey_url")
    settings = make_settings(tmp_path, database_url)
    async with running_stack(settings, redis_url, capture) as stack:
        assert (await stack.apply("e2e-onboarding", SEQUENCE)).status_code == 201
        enrolled = await stack.enroll(
            "e2e-onboarding", "Ada@Example.com", attributes={"first_name": "Ada"}
        )
        assert enrolled.status_code == 201, enrolled.text
        enrollment_id = enrolled.json()["id"]

        welcome = (await eventually(lambda: _mail(stack, "Welcome, Ada")))[0]
        raw = welcome.raw
        pem = settings.dkim_key_path.read_bytes()
        assert dkim.verify(raw, dnsfunc=dns_for(pem))
        parsed = email.message_from_bytes(raw, policy=policy.default)
        assert parsed["List-Unsubscribe"].startswith("<http://dripline.test/u/")
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        signed = re.search(rb"h=([^;]+);", raw.replace(b"\r\n\t", b"").replace(b"\r\n ", b""))
        assert signed is not None
        assert b"list-unsubscribe-post" in signed.group(1).lower()
        assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]

        click_url = re.search(
            r"http://dripline\.test(/t/c/[\w-]+)", str(parsed.get_body(("plain",)))
        )
        assert click_url is not None
        # A person clicks once the send is recorded (the capture server has the message a
        # moment before the worker commits it) and the enrollment waits at the next step.
        await eventually(lambda: _waiting(stack, enrollment_id))
        clicked = await stack.client.get(click_url.group(1), headers={"User-Agent": BROWSER_UA})
        assert clicked.status_code == 302
        assert clicked.headers["location"] == "https://acme.test/quickstart"

        await eventually(lambda: _mail(stack, "Three power tips"))
        assert not await _mail(stack, "Still there?")  # the branch took the clicked way

        converted = await stack.client.post(
            "/v1/events",
            json={"events": [{"id": "crm-1", "type": "converted", "email": "ada@example.com"}]},
            headers=stack.auth(),
        )
        assert converted.status_code == 202, converted.text
        state = await eventually(lambda: _status(stack, enrollment_id, "exited"))
        assert state["exit_reason"] == "exit_on: converted"
        await asyncio.sleep(2.5)  # longer than the 2d wait at one second per day
        subjects = [m.subject for m in capture.messages()]
        assert subjects == ["Welcome, Ada", "Three power tips"]
        assert all(n == 1 for n in capture.count_by_message_id().values())
        timeline = [entry["kind"] for entry in (await stack.enrollment(enrollment_id))["timeline"]]
        assert "decision" in timeline and "event" in timeline


async def _mail(stack: Stack, subject: str) -> list[object]:
    return [m for m in stack.capture.messages() if m.subject == subject]


async def _waiting(stack: Stack, enrollment_id: str) -> bool:
    body = await stack.enrollment(enrollment_id)
    return bool(body["current_step"] == "pause")


async def _status(stack: Stack, enrollment_id: str, status: str) -> dict[str, object] | None:
    body = await stack.enrollment(enrollment_id)
    return body if body["status"] == status else None
