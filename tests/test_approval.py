"""Approval end to end: the real app, worker, SMTP capture and the real openai client against a
local OpenAI-compatible server. Nothing is sent before a reviewer decides; then exactly once."""

from __future__ import annotations

import asyncio
import email
import re
from collections.abc import AsyncIterator
from email import policy
from pathlib import Path
from typing import Any

import pytest
from harness import Stack, eventually
from review_cases import model_stack, pending, sequence

from agents.devserver import HEURISTIC_MODEL
from api.auth import Role
from api.demo_report import print_agent_summary
from sequences.mail.capture import CaptureServer


@pytest.fixture
async def stack(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with model_stack(database_url, redis_db, capture, tmp_path) as running:
        yield running


async def test_nothing_is_sent_until_approved_then_exactly_once(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await stack.apply("reviewed", sequence())).status_code == 201
    enrolled = await stack.enroll("reviewed", "ana@example.com", attributes={"first_name": "Ana"})
    assert enrolled.status_code == 201
    [draft] = await pending(stack)
    assert draft["model"] == HEURISTIC_MODEL and draft["rationale"]
    detail = (await stack.client.get(f"/v1/drafts/{draft['id']}", headers=stack.auth())).json()
    assert "/u/preview" in detail["preview"]["html"]  # rendered in the real layout
    assert detail["fallback"]["model"] == "offline-composer"
    assert detail["contact"]["first_name"] == "Ana"
    await asyncio.sleep(1.5)  # a worker that ignored the hold would have sent by now
    assert stack.mail_to("ana@example.com") == []
    enrollment = await stack.enrollment(enrolled.json()["id"])
    assert enrollment["status"] == "active"

    approved = await stack.client.post(f"/v1/drafts/{draft['id']}/approve", headers=stack.auth())
    assert approved.status_code == 200, approved.text
    again = await stack.client.post(f"/v1/drafts/{draft['id']}/approve", headers=stack.auth())
    assert again.status_code == 409  # decided once: a second reviewer cannot decide again

    await eventually(lambda: _async(stack.mail_to("ana@example.com")))
    await asyncio.sleep(1.0)
    [message] = stack.mail_to("ana@example.com")
    assert message.subject == draft["subject"]
    timeline = (await stack.enrollment(enrolled.json()["id"]))["timeline"]
    kinds = [e["kind"] for e in timeline]
    assert kinds.index("review_requested") < kinds.index("draft_approved")
    assert kinds.index("draft_approved") < kinds.index("drafted") < kinds.index("step_done")
    sent = next(e for e in timeline if e["kind"] == "drafted")
    assert sent["model"] == HEURISTIC_MODEL
    report = (await stack.client.get("/v1/sequences/reviewed", headers=stack.auth())).json()
    welcome = report["costs"]["steps"]["welcome"]
    assert welcome["emails"] == 1 and welcome["model_calls"] >= 1
    assert welcome["tokens_per_email"] > 0 and welcome["cost_per_email_usd"] > 0
    # The local server is a stand-in: its token counts are a formula, and the report says so.
    assert welcome["simulated"] is True and report["costs"]["simulated"] is True
    # So does the demo's closing summary, which reads the same ledger.
    await print_agent_summary(stack.deps.settings, "reviewed")
    summary = capsys.readouterr().out
    assert "simulated: a stand-in model wrote this copy" in summary
    assert re.search(r"welcome +1 emails .*/email  \(simulated\)", summary), summary


async def _async(value: Any) -> Any:
    return value


async def test_edits_are_checked_and_sent_as_edited(stack: Stack) -> None:
    await stack.apply("reviewed", sequence())
    await stack.enroll("reviewed", "bo@example.com", attributes={"first_name": "Bo"})
    [draft] = await pending(stack)
    url = f"/v1/drafts/{draft['id']}/approve"
    bad = {"body": "Hi {{ first_name }}, our plan costs $49 a month. Act now!"}
    refused = await stack.client.post(url, json=bad, headers=stack.auth())
    assert refused.status_code == 422
    error = refused.json()["error"]
    rules = " ".join(d["message"] for d in error["details"])
    assert "no_placeholders" in rules and "no_invented_facts" in rules
    assert "spam_phrases" in rules
    still = (await stack.client.get(f"/v1/drafts/{draft['id']}", headers=stack.auth())).json()
    assert still["status"] == "pending" and still["decision"] is None  # nothing changed

    good = {
        "subject": "Your quickstart, Bo",
        "body": "Hi Bo,\n\nThe quickstart guide is "
        "ready for you whenever you have a quiet moment this week to try it.",
    }
    assert (await stack.client.post(url, json=good, headers=stack.auth())).status_code == 200
    [message] = await eventually(lambda: _async(stack.mail_to("bo@example.com")))
    assert message.subject == "Your quickstart, Bo"
    parsed = email.message_from_bytes(message.raw, policy=policy.default)
    text = parsed.get_body(preferencelist=("plain",))
    assert text is not None and "quiet moment this week" in text.get_content()


async def test_reject_regenerate_then_skip(stack: Stack) -> None:
    await stack.apply("reviewed", sequence())
    enrolled = await stack.enroll("reviewed", "cy@example.com")
    [first] = await pending(stack)
    regenerate = {"action": "regenerate", "note": "Shorter, please."}
    response = await stack.client.post(
        f"/v1/drafts/{first['id']}/reject", json=regenerate, headers=stack.auth()
    )
    assert response.status_code == 200, response.text

    async def second() -> list[dict[str, Any]]:
        drafts = await pending(stack)
        return [d for d in drafts if d["id"] != first["id"]]

    [redraft] = await eventually(second)
    assert redraft["revision"] == 2
    resolved = await stack.client.get(f"/v1/drafts/{first['id']}", headers=stack.auth())
    assert resolved.json()["status"] == "resolved"
    skip = await stack.client.post(
        f"/v1/drafts/{redraft['id']}/reject", json={"action": "skip"}, headers=stack.auth()
    )
    assert skip.status_code == 200

    async def moved_on() -> bool:
        body = await stack.enrollment(enrolled.json()["id"])
        return bool(body["current_step"] == "later")

    await eventually(moved_on)
    assert stack.mail_to("cy@example.com") == []


async def test_first_of_each_step_reviews_once(stack: Stack) -> None:
    await stack.apply("reviewed", sequence("first_of_each_step"))
    await stack.enroll("reviewed", "di@example.com")
    [draft] = await pending(stack)
    await stack.client.post(f"/v1/drafts/{draft['id']}/approve", headers=stack.auth())
    await eventually(lambda: _async(stack.mail_to("di@example.com")))
    await stack.enroll("reviewed", "ed@example.com")
    await eventually(lambda: _async(stack.mail_to("ed@example.com")))  # no review this time
    response = await stack.client.get("/v1/drafts", headers=stack.auth())
    assert response.json()["drafts"] == []


@pytest.mark.parametrize("policy", ["fallback", "skip", "hold"])
async def test_unreviewed_draft_follows_the_deadline_policy(policy: str, stack: Stack) -> None:
    extra = f"approval_deadline: 2d\napproval_timeout_policy: {policy}"
    await stack.apply("reviewed", sequence("always", extra))
    enrolled = await stack.enroll("reviewed", "fa@example.com")
    [draft] = await pending(stack)
    assert draft["deadline_at"] is not None
    eid = enrolled.json()["id"]

    async def expired() -> list[dict[str, Any]]:
        timeline = (await stack.enrollment(eid))["timeline"]
        kind = "approval_overdue" if policy == "hold" else "approval_expired"
        return [e for e in timeline if e["kind"] == kind]

    await eventually(expired, within=20)  # 2 sequence days are 2 s here
    if policy == "fallback":
        [message] = await eventually(lambda: _async(stack.mail_to("fa@example.com")))
        assert message.subject == "Welcome, there"  # the composer's copy
    elif policy == "skip":
        body = await eventually(lambda: _later(stack, eid))
        assert body["current_step"] == "later" and stack.mail_to("fa@example.com") == []
    else:
        await asyncio.sleep(1.5)
        assert stack.mail_to("fa@example.com") == []
        still = await pending(stack)
        assert [d["id"] for d in still] == [draft["id"]]
        assert still[0]["deadline_at"] is None  # noted once; it now waits for a reviewer


async def _later(stack: Stack, eid: str) -> dict[str, Any] | None:
    body = await stack.enrollment(eid)
    return body if body["current_step"] == "later" else None


async def test_roles_and_bad_input(stack: Stack) -> None:
    await stack.apply("reviewed", sequence())
    await stack.enroll("reviewed", "gu@example.com")
    [draft] = await pending(stack)
    enroller = await stack.key(Role.enroll)
    reviewer = await stack.key(Role.reviewer)
    forbidden = await stack.client.get("/v1/drafts", headers=stack.auth(enroller))
    assert forbidden.status_code == 403
    url = f"/v1/drafts/{draft['id']}"
    assert (
        await stack.client.post(f"{url}/approve", headers=stack.auth(enroller))
    ).status_code == 403
    bad_action = await stack.client.post(
        f"{url}/reject", json={"action": "delete"}, headers=stack.auth(reviewer)
    )
    assert bad_action.status_code == 422
    assert bad_action.json()["error"]["details"][0]["path"] == "action"
    unknown = await stack.client.post(
        f"{url}/approve", json={"subjct": "typo"}, headers=stack.auth(reviewer)
    )
    assert unknown.status_code == 422
    missing = await stack.client.get("/v1/drafts/drf_nope", headers=stack.auth(reviewer))
    assert missing.status_code == 404
    status = await stack.client.get(
        "/v1/drafts", params={"status": "weird"}, headers=stack.auth(reviewer)
    )
    assert status.status_code == 422
    still = (await stack.client.get(url, headers=stack.auth(reviewer))).json()
    assert still["status"] == "pending"
    ok = await stack.client.post(f"{url}/approve", headers=stack.auth(reviewer))
    assert ok.status_code == 200 and ok.json()["decision"]["by"] == "test-reviewer"
