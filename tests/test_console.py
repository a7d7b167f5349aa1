"""The console over HTTP: sign-in and roles, CSRF, escaping, sandboxed email previews, and
decisions made through its forms, on the real app, worker and SMTP capture."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from console_cases import (
    BAD_BODY,
    HOSTILE,
    REVIEWED,
    sign_in,
)
from harness import Stack, eventually, make_settings
from review_cases import model_stack, pending
from sqlalchemy import update

from api.app import create_app
from api.auth import Role, create_key
from sequences.mail.capture import CaptureServer
from sequences.store.tables import API_KEYS, DRAFTS


@pytest.fixture
async def stack(
    database_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with model_stack(database_url, redis_db, capture, tmp_path) as running:
        yield running


@pytest.fixture
async def sqlite_stack(
    redis_db: str, capture: CaptureServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"
    async with model_stack(url, redis_db, capture, tmp_path) as running:
        yield running


async def test_pages_need_a_session_and_sign_in_returns_to_the_page(sqlite_stack: Stack) -> None:
    client = sqlite_stack.client
    response = await client.get("/console/sequences?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fsequences%3Fx%3D1"
    form = await client.get("/console/sign-in?next=/console/sequences")
    assert 'value="/console/sequences"' in form.text
    key = await sqlite_stack.key(Role.reviewer)
    signed = await client.post("/console/sign-in", data={"key": key, "next": "/console/sequences"})
    assert signed.status_code == 303 and signed.headers["location"] == "/console/sequences"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert key not in signed.headers["set-cookie"]  # the cookie is a session, never the key
    page = await client.get("/console/sequences")
    assert page.status_code == 200 and "test-reviewer" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_sign_in_refuses_unknown_enroll_and_revoked_keys(sqlite_stack: Stack) -> None:
    client = sqlite_stack.client
    unknown = await client.post("/console/sign-in", data={"key": "dl_not-a-key"})
    assert unknown.status_code == 401 and "Unknown or revoked API key" in unknown.text
    enroll = await client.post(
        "/console/sign-in", data={"key": await sqlite_stack.key(Role.enroll)}
    )
    assert enroll.status_code == 403 and "&#39;enroll&#39; role" in enroll.text
    assert "set-cookie" not in enroll.headers
    assert (await client.get("/console/queue")).status_code == 303  # still signed out

    await sign_in(sqlite_stack)
    assert (await client.get("/console/queue")).status_code == 200
    async with sqlite_stack.deps.engine.begin() as conn:
        await conn.execute(update(API_KEYS).values(revoked_at=datetime.now(UTC)))
    assert (await client.get("/console/queue")).status_code == 303  # revoked: signed out


async def test_open_redirects_are_refused(sqlite_stack: Stack) -> None:
    key = await sqlite_stack.key(Role.reviewer)
    for target in ("https://evil.example.net/", "//evil.example.net", "/v1/enrollments"):
        response = await sqlite_stack.client.post(
            "/console/sign-in", data={"key": key, "next": target}
        )
        assert response.headers["location"] == "/console/queue", target


async def test_review_pages_escape_contact_data_and_sandbox_the_email(
    sqlite_stack: Stack,
) -> None:
    stack = sqlite_stack
    await stack.apply("reviewed", REVIEWED)
    attributes = {"first_name": HOSTILE, "company": "Acme & <Sons>"}
    enrolled = await stack.enroll("reviewed", "ana@example.com", attributes=attributes)
    [draft] = await pending(stack)
    await sign_in(stack)
    pages = [
        f"/console/drafts/{draft['id']}",
        f"/console/enrollments/{enrolled.json()['id']}",
        "/console/contacts",
        "/console/contacts?q=ana",
    ]
    contact_page = await stack.client.get(pages[1])
    contact_id = contact_page.text.split('href="/console/contacts/', 1)[1].split('"', 1)[0]
    for path in [*pages, f"/console/contacts/{contact_id}"]:
        page = await stack.client.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text and "onerror=alert" not in page.text.replace(
            "&lt;img src=x onerror=alert(1)&gt;", ""
        ), path
    review = await stack.client.get(pages[0])
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in review.text
    assert "Acme &amp; &lt;Sons&gt;" in review.text
    assert f'<iframe class="email-frame" sandbox src="/console/drafts/{draft["id"]}/preview"' in (
        review.text
    )
    preview = await stack.client.get(f"/console/drafts/{draft['id']}/preview")
    csp = preview.headers["content-security-policy"]
    assert csp.startswith("sandbox;") and "script-src" not in csp and "default-src 'none'" in csp
    assert '<base target="_blank">' in preview.text and "/t/o/" not in preview.text
    assert draft["subject"] in preview.text  # the email as it will be sent


async def test_forms_without_the_session_csrf_token_change_nothing(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    await stack.apply("reviewed", REVIEWED)
    await stack.enroll("reviewed", "bo@example.com")
    [draft] = await pending(stack)
    token = await sign_in(stack)
    url = f"/console/drafts/{draft['id']}/approve"
    for form in ({}, {"csrf": "forged"}, {"csrf": token[:-1]}):
        refused = await stack.client.post(url, data=form)
        assert refused.status_code == 403 and "CSRF" in refused.text
    reject = await stack.client.post(
        f"/console/drafts/{draft['id']}/reject", data={"action": "skip"}
    )
    assert reject.status_code == 403
    [still] = await pending(stack)
    assert still["id"] == draft["id"] and still["status"] == "pending"
    out = await stack.client.post("/console/sign-out", data={})
    assert out.status_code == 403  # signing out takes the token too
    elsewhere = {"Origin": "https://evil.example.net"}
    forged = await stack.client.post(url, data={"csrf": token}, headers=elsewhere)
    assert forged.status_code == 403 and "evil.example.net" in forged.text
    key = await stack.key(Role.reviewer)
    planted = await stack.client.post("/console/sign-in", data={"key": key}, headers=elsewhere)
    assert planted.status_code == 403 and "set-cookie" not in planted.headers
    [still] = await pending(stack)
    assert still["status"] == "pending"
    own = {"Origin": "http://dripline.test"}
    approved = await stack.client.post(url, data={"csrf": token}, headers=own)
    assert approved.status_code == 303


async def test_approve_through_the_form_sends_once_and_moves_on(stack: Stack) -> None:
    await stack.apply("reviewed", REVIEWED)
    for name in ("ana", "bo"):
        await stack.enroll("reviewed", f"{name}@example.com", attributes={"first_name": name})
    first, second = await pending(stack, 2)
    token = await sign_in(stack)
    approved = await stack.client.post(
        f"/console/drafts/{first['id']}/approve", data={"csrf": token}
    )
    assert approved.status_code == 303
    assert approved.headers["location"] == f"/console/drafts/{second['id']}?notice=approved"
    again = await stack.client.post(f"/console/drafts/{first['id']}/approve", data={"csrf": token})
    # Deciding it twice is no dead end: the draft's page says who decided, and what is next.
    assert again.status_code == 303
    assert again.headers["location"] == f"/console/drafts/{first['id']}?notice=lost"
    told = await stack.client.get(again.headers["location"])
    assert "Someone else decided this draft first" in told.text
    assert "was <strong>approved</strong> by <strong>test-reviewer</strong>" in told.text
    assert f'href="/console/drafts/{second["id"]}?">Next draft in this queue' in told.text
    [message] = await eventually(lambda: _ready(stack.mail_to(first["email"])))
    assert message.subject == first["subject"]
    inbox = await stack.client.get("/console/inbox")
    assert first["subject"] in inbox.text and first["email"] in inbox.text
    name = inbox.text.split('href="/console/inbox/', 1)[1].split('"', 1)[0]
    shown = await stack.client.get(f"/console/inbox/{name}")
    assert "signed d=acme.test" in shown.text and "List-Unsubscribe" in shown.text
    assert f'href="/console/enrollments/{first["enrollment_id"]}">its enrollment' in shown.text
    framed = await stack.client.get(f"/console/inbox/{name}/html")
    assert framed.headers["content-security-policy"].startswith("sandbox;")
    assert "/t/o/" not in framed.text  # viewing it in the console is not an open


async def test_a_refused_edit_keeps_the_draft_pending_and_the_reviewers_text(
    stack: Stack,
) -> None:
    await stack.apply("reviewed", REVIEWED)
    await stack.enroll("reviewed", "cy@example.com", attributes={"first_name": "Cy"})
    [draft] = await pending(stack)
    token = await sign_in(stack)
    form = {"csrf": token, "subject": "A prize for you", "preheader": "", "body": BAD_BODY}
    refused = await stack.client.post(f"/console/drafts/{draft['id']}/approve", data=form)
    assert refused.status_code == 422
    assert "Refused: the edit fails the guardrails" in refused.text
    assert "allowed_links" in refused.text and "evil.example.net" in refused.text
    assert "See https://evil.example.net/win for a prize.</textarea>" in refused.text
    [still] = await pending(stack)
    assert still["id"] == draft["id"] and still["status"] == "pending"

    form["body"] = (
        "Hi Cy,\n\nThe quickstart guide is ready for you whenever you have a quiet moment "
        "this week to try it."
    )
    accepted = await stack.client.post(f"/console/drafts/{draft['id']}/approve", data=form)
    assert accepted.status_code == 303, accepted.text.split('role="alert"')[-1][:600]
    [message] = await eventually(lambda: _ready(stack.mail_to("cy@example.com")))
    assert message.subject == "A prize for you"


async def test_reject_regenerate_queues_a_new_revision(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    await stack.apply("reviewed", REVIEWED)
    await stack.enroll("reviewed", "di@example.com")
    [draft] = await pending(stack)
    token = await sign_in(stack)
    rejected = await stack.client.post(
        f"/console/drafts/{draft['id']}/reject",
        data={"csrf": token, "action": "regenerate", "note": "Shorter."},
    )
    assert rejected.status_code == 303
    assert rejected.headers["location"] == "/console/queue?notice=regenerate"

    async def redrafted() -> str:
        queue = await stack.client.get("/console/queue")
        return queue.text if "rev 2" in queue.text else ""

    queue = await eventually(redrafted)
    assert draft["id"] not in queue  # the rejected revision left the queue
    bad = await stack.client.post(
        f"/console/drafts/{draft['id']}/reject", data={"csrf": token, "action": "burn"}
    )
    assert bad.status_code == 422 and "action" in bad.text


async def test_bulk_approval_takes_only_drafts_that_pass_every_check(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    await stack.apply("reviewed", REVIEWED)
    for name in ("ea", "fi", "gu"):
        await stack.enroll("reviewed", f"{name}@example.com")
    drafts = await pending(stack, 3)
    async with stack.deps.engine.begin() as conn:  # one draft that a guardrail flagged
        flagged = {"findings": [{"rule": "spam_phrases", "ok": False, "message": "act now"}]}
        await conn.execute(
            update(DRAFTS).where(DRAFTS.c.id == drafts[0]["id"]).values(review=flagged)
        )
    token = await sign_in(stack)
    flagged_page = await stack.client.get(f"/console/drafts/{drafts[0]['id']}")
    assert "1 guardrail failed (spam_phrases)" in flagged_page.text
    assert 'data-confirm="This draft fails spam_phrases' in flagged_page.text
    queue = await stack.client.get("/console/queue?sequence=reviewed&step=welcome")
    assert "Approve all passing in this step" in queue.text and "1 failed" in queue.text
    response = await stack.client.post(
        "/console/queue/approve-step",
        data={"csrf": token, "sequence": "reviewed", "step": "welcome"},
    )
    assert response.status_code == 303
    done = await stack.client.get(response.headers["location"])
    assert "Approved 2 drafts. 1 with failing checks stay in the queue." in done.text
    [left] = await pending(stack)
    assert left["id"] == drafts[0]["id"]
    await eventually(lambda: _ready(len(stack.capture.messages()) == 2))


async def test_ticked_rows_are_approved_as_they_are_and_a_flagged_one_stays(
    sqlite_stack: Stack,
) -> None:
    stack = sqlite_stack
    await stack.apply("reviewed", REVIEWED)
    for name in ("ha", "io", "ju"):
        await stack.enroll("reviewed", f"{name}@example.com")
    drafts = await pending(stack, 3)
    async with stack.deps.engine.begin() as conn:
        flagged = {"findings": [{"rule": "spam_phrases", "ok": False, "message": "act now"}]}
        await conn.execute(
            update(DRAFTS).where(DRAFTS.c.id == drafts[0]["id"]).values(review=flagged)
        )
    token = await sign_in(stack)
    nothing = await stack.client.post("/console/queue/approve-selected", data={"csrf": token})
    assert nothing.status_code == 422 and "tick at least one draft" in nothing.text
    ticked = [drafts[0]["id"], drafts[1]["id"]]
    response = await stack.client.post(
        "/console/queue/approve-selected", data={"csrf": token, "draft": ticked}
    )
    assert response.status_code == 303
    done = await stack.client.get(response.headers["location"])
    assert "Approved 1 draft. 1 with failing checks stay in the queue." in done.text
    left = {d["id"] for d in await pending(stack, 2)}
    assert left == {drafts[0]["id"], drafts[2]["id"]}  # the flagged one and the unticked one


async def test_errors_are_pages_in_the_console_and_json_in_the_api(sqlite_stack: Stack) -> None:
    await sign_in(sqlite_stack)
    client = sqlite_stack.client
    missing = await client.get("/console/drafts/drf_nope")
    assert missing.status_code == 404 and "no draft &#39;drf_nope&#39;" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    assert "Sign out" in missing.text  # a signed-in reviewer keeps the navigation
    bad = await client.get("/console/inbox?page=0")
    assert bad.status_code == 422 and "page" in bad.text
    for name in ("..%2F..%2Fetc%2Fpasswd", "nope-1"):
        assert (await client.get(f"/console/inbox/{name}")).status_code == 404
    api = await client.get("/v1/drafts/drf_nope", headers=sqlite_stack.auth())
    assert api.status_code == 404 and api.json()["error"]["code"] == "unknown_draft"


async def test_sequence_page_counts_the_funnel_from_sends_and_events(stack: Stack) -> None:
    await stack.apply("reviewed", REVIEWED)
    await stack.enroll("reviewed", "ha@example.com")
    [draft] = await pending(stack)
    await stack.client.post(f"/v1/drafts/{draft['id']}/approve", headers=stack.auth())
    [message] = await eventually(lambda: _ready(stack.mail_to("ha@example.com")))

    async def sent() -> bool:
        body = await stack.enrollment(draft["enrollment_id"])
        return any(e["kind"] == "step_done" for e in body["timeline"])

    await eventually(sent)
    event = {"type": "clicked", "email": "ha@example.com", "message_id": message.message_id}
    posted = await stack.client.post("/v1/events", json={"events": [event]}, headers=stack.auth())
    assert posted.status_code in (200, 202), posted.text
    await sign_in(stack)

    async def clicked() -> str:
        page = await stack.client.get("/console/sequences/reviewed")
        return page.text if "100.0%" in page.text else ""

    text = await eventually(clicked)
    assert 'welcome <span class="muted small">1 sent</span>' in text
    assert "<title>welcome → later</title>" in text  # the graph's edge
    assert 'id="costs-simulated">Simulated: a stand-in model' in text  # not a provider's meter
    listing = await stack.client.get("/console/sequences")
    assert "Reviewed onboarding" in listing.text


async def test_dev_inbox_says_when_mail_goes_to_a_relay(
    redis_db: str, capture: CaptureServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    app = create_app(settings, redis_url=redis_db)  # no capture directory: a relay is in use
    async with app.router.lifespan_context(app):
        async with app.state.deps.engine.begin() as conn:
            key = await create_key(conn, "r", Role.reviewer, datetime.now(UTC))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x.test") as client:
            await client.post("/console/sign-in", data={"key": key})
            page = await client.get("/console/inbox")
    assert page.status_code == 200 and "No dev inbox" in page.text


async def _ready(value: object) -> object:
    await asyncio.sleep(0)
    return value
