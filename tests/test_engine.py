"""Engine behaviour through the public API: versions, waits, entry events, pacing, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from harness import Stack, eventually, make_settings, running_stack
from sqlalchemy import select, update

from sequences.mail.capture import CaptureServer
from sequences.store.tables import MESSAGES, RUNS

SENDER = 'sender: {from: "Ops <ops@acme.test>"}'


def email_step(step_id: str, subject: str) -> str:
    return (
        f"  - id: {step_id}\n"
        f'    email: {{brief: {step_id}, fallback: {{subject: "{subject}", body: "Body."}}}}\n'
    )


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, capture: CaptureServer, redis_db: str
) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, database_url)
    async with running_stack(settings, redis_db, capture) as running:
        yield running


async def subjects(stack: Stack, address: str) -> list[str]:
    return [m.subject for m in stack.mail_to(address)]


async def test_enrollments_keep_their_version(stack: Stack) -> None:
    v1 = f"key: versions\nname: V\n{SENDER}\nsteps:\n" + email_step("hello", "Hello v1")
    v2 = v1.replace("Hello v1", "Hello v2")
    assert (await stack.apply("versions", v1)).json()["version"] == 1
    first = (await stack.enroll("versions", "one@example.com")).json()
    applied = await stack.apply("versions", v2)
    assert applied.status_code == 201 and applied.json()["version"] == 2
    again = await stack.apply("versions", v2)
    assert again.status_code == 200 and again.json() == {
        "key": "versions",
        "version": 2,
        "created": False,
    }
    second = (await stack.enroll("versions", "two@example.com")).json()
    assert (first["version"], second["version"]) == (1, 2)
    await eventually(lambda: subjects(stack, "two@example.com"))
    await eventually(lambda: subjects(stack, "one@example.com"))
    assert await subjects(stack, "one@example.com") == ["Hello v1"]
    assert await subjects(stack, "two@example.com") == ["Hello v2"]
    listing = (await stack.client.get("/v1/sequences/versions", headers=stack.auth())).json()
    assert [v["version"] for v in listing["versions"]] == [1, 2]


async def test_contact_level_event_wakes_a_wait(stack: Stack) -> None:
    document = (
        f"key: waits\nname: W\n{SENDER}\nsteps:\n"
        + email_step("ask", "Question")
        + "  - id: hold\n    wait: {for: 60d, until: [replied]}\n"
        + email_step("thanks", "Thanks for replying")
    )
    assert (await stack.apply("waits", document)).status_code == 201
    enrollment = (await stack.enroll("waits", "rita@example.com")).json()["id"]
    await eventually(lambda: subjects(stack, "rita@example.com"))

    async def holding() -> dict[str, Any] | None:
        # The message reaches the capture server a moment before the worker records it as sent.
        status = await stack.enrollment(enrollment)
        return status if status["current_step"] == "hold" else None

    status = await eventually(holding)
    assert status["next_run"]["step"] == "hold"
    reply = {"events": [{"id": "r1", "type": "replied", "email": "rita@example.com"}]}
    assert (
        await stack.client.post("/v1/events", json=reply, headers=stack.auth())
    ).status_code == 202
    await eventually(lambda: _has(stack, "rita@example.com", "Thanks for replying"))
    done = await eventually(lambda: _status(stack, enrollment, "completed"))
    wait_end = [e for e in done["timeline"] if e["kind"] == "step_done" and e["step"] == "hold"]
    assert wait_end[0]["ended_by"] == "replied"


async def test_entry_event_enrolls_once(stack: Stack) -> None:
    document = (
        f"key: entry\nname: E\n{SENDER}\nentry: {{events: [signed_up], reenroll: never}}\nsteps:\n"
        + email_step("welcome", "Welcome aboard")
    )
    assert (await stack.apply("entry", document)).status_code == 201
    batch = {"events": [{"id": "s1", "type": "signed_up", "email": "neo@example.com"}]}
    first = await stack.client.post("/v1/events", json=batch, headers=stack.auth())
    assert first.json() == {"accepted": 1, "duplicates": 0}
    duplicate = await stack.client.post("/v1/events", json=batch, headers=stack.auth())
    assert duplicate.json() == {"accepted": 0, "duplicates": 1}
    await eventually(lambda: subjects(stack, "neo@example.com"))
    contact = await _contact(stack, "neo@example.com")
    await eventually(lambda: _all_finished(stack, "neo@example.com"))
    again = {"events": [{"id": "s2", "type": "signed_up", "email": "neo@example.com"}]}
    await stack.client.post("/v1/events", json=again, headers=stack.auth())
    contact = await _contact(stack, "neo@example.com")
    assert len(contact["enrollments"]) == 1  # reenroll: never
    assert await subjects(stack, "neo@example.com") == ["Welcome aboard"]


async def test_one_click_unsubscribe_stops_every_sequence(stack: Stack) -> None:
    for key in ("news-a", "news-b"):
        document = (
            f"key: {key}\nname: {key}\n{SENDER}\nsteps:\n"
            + email_step("first", f"First from {key}")
            + "  - id: hold\n    wait: {for: 60d}\n"
            + email_step("second", "Never sent")
        )
        assert (await stack.apply(key, document)).status_code == 201
        assert (await stack.enroll(key, "uma@example.com")).status_code == 201
    mail = await eventually(lambda: _at_least(stack, "uma@example.com", 2))
    token = mail[0].raw.split(b"/u/", 1)[1].split(b">", 1)[0].decode()
    page = await stack.client.get(f"/u/{token}")
    assert page.status_code == 200 and "Unsubscribe" in page.text
    assert all(
        e["status"] == "active" for e in (await _contact(stack, "uma@example.com"))["enrollments"]
    )
    one_click = await stack.client.post(
        f"/u/{token}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    contact = await _contact(stack, "uma@example.com")
    assert contact["suppressed"] == "unsubscribed"
    assert {e["status"] for e in contact["enrollments"]} == {"exited"}
    refused = await stack.enroll("news-a", "UMA@example.com")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "contact_suppressed"


async def test_cancel_and_idempotency(stack: Stack) -> None:
    document = (
        f"key: cancel\nname: C\n{SENDER}\nsteps:\n  - id: hold\n    wait: {{for: 60d}}\n"
        + email_step("late", "Late")
    )
    assert (await stack.apply("cancel", document)).status_code == 201
    headers = {**stack.auth(), "Idempotency-Key": "order-7"}
    body: dict[str, Any] = {"sequence": "cancel", "contact": {"email": "cy@example.com"}}
    created = await stack.client.post("/v1/enrollments", json=body, headers=headers)
    replay = await stack.client.post("/v1/enrollments", json=body, headers=headers)
    assert (created.status_code, replay.status_code) == (201, 200)
    assert replay.json()["id"] == created.json()["id"]
    body["contact"]["attributes"] = {"plan": "pro"}
    reused = await stack.client.post("/v1/enrollments", json=body, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    enrollment = created.json()["id"]
    cancelled = await stack.client.post(
        f"/v1/enrollments/{enrollment}/cancel", headers=stack.auth()
    )
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["next_run"] is None
    twice = await stack.client.post(f"/v1/enrollments/{enrollment}/cancel", headers=stack.auth())
    assert twice.status_code == 409


async def test_frequency_cap_defers_the_second_email(stack: Stack) -> None:
    document = (
        f"key: capped\nname: Capped\n{SENDER}\nfrequency_cap: {{max: 1, per: 2d}}\nsteps:\n"
        + email_step("one", "One")
        + email_step("two", "Two")
    )
    assert (await stack.apply("capped", document)).status_code == 201
    enrollment = (await stack.enroll("capped", "fay@example.com")).json()["id"]
    done = await eventually(lambda: _status(stack, enrollment, "completed"))
    deferred = [e for e in done["timeline"] if e["kind"] == "deferred"]
    assert deferred and deferred[0]["reason"] == "frequency cap"
    sent = sorted(m.path.stat().st_mtime for m in stack.mail_to("fay@example.com"))
    assert len(sent) == 2 and sent[1] - sent[0] >= 1.5  # 2 sequence days at one second a day


async def test_bulk_enrollment_reports_each_contact(stack: Stack) -> None:
    document = f"key: bulk\nname: B\n{SENDER}\nsteps:\n" + email_step("hi", "Hi")
    assert (await stack.apply("bulk", document)).status_code == 201
    contacts = [{"email": "a@example.com"}, {"email": "b@example.com"}, {"email": "A@example.com"}]
    response = await stack.client.post(
        "/v1/enrollments/bulk",
        json={"sequence": "bulk", "contacts": contacts},
        headers=stack.auth(),
    )
    body = response.json()
    assert response.status_code == 207
    assert (body["created"], body["failed"]) == (2, 1)
    assert body["results"][2]["error"]["code"] == "already_enrolled"
    await eventually(lambda: _states(stack, ["sent", "sent"]))  # one batch, both recorded sent


async def _states(stack: Stack, expected: list[str]) -> bool:
    async with stack.deps.reader.connect() as conn:
        states = sorted((await conn.execute(select(MESSAGES.c.state))).scalars())
    return states == expected


async def _has(stack: Stack, address: str, subject: str) -> bool:
    return subject in await subjects(stack, address)


async def _at_least(stack: Stack, address: str, n: int) -> list[Any] | None:
    mail = stack.mail_to(address)
    return mail if len(mail) >= n else None


async def _status(stack: Stack, enrollment_id: str, status: str) -> dict[str, Any] | None:
    body = await stack.enrollment(enrollment_id)
    return body if body["status"] == status else None


async def _contact(stack: Stack, email: str) -> dict[str, Any]:
    response = await stack.client.get(f"/v1/contacts/{email}", headers=stack.auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _all_finished(stack: Stack, email: str) -> bool:
    return all(e["status"] != "active" for e in (await _contact(stack, email))["enrollments"])


async def test_send_window_in_the_recipients_zone(
    database_url: str, tmp_path: Path, capture: CaptureServer, redis_db: str
) -> None:
    # One sequence hour is one real second here, so a one-hour window outlasts a wake-up's latency.
    settings = make_settings(tmp_path, database_url, DRIPLINE_DAY_SECONDS=24)
    async with running_stack(settings, redis_db, capture) as stack:
        await _window_scenario(stack)


async def _window_scenario(stack: Stack) -> None:
    now_virtual = stack.deps.seqtime.to_virtual(stack.deps.clock.now())
    tokyo = ZoneInfo("Asia/Tokyo")
    # Two to three real seconds ahead: set-up on a busy machine must not reach the window first.
    # Four sequence hours (four real seconds) wide, so a wake-up late on a loaded machine still
    # lands inside it.
    opens = (now_virtual.astimezone(tokyo) + timedelta(hours=3)).replace(
        minute=0, second=0, microsecond=0
    )
    if opens.hour > 19:  # a window may not wrap past midnight: open at the next one instead
        opens = opens.replace(hour=0) + timedelta(days=1)
    closes = opens + timedelta(hours=4)
    window = f"{opens:%H}:00-{closes:%H}:00"
    document = (
        f"key: windowed\nname: W\n{SENDER}\n"
        f'schedule: {{timezone_from: contact.timezone, window: "{window}"}}\nsteps:\n'
        + email_step("hello", "Hello in your morning")
    )
    assert (await stack.apply("windowed", document)).status_code == 201
    enrolled = await stack.enroll("windowed", "kenji@example.com", timezone="Asia/Tokyo")
    done = await eventually(lambda: _status(stack, enrolled.json()["id"], "completed"))
    deferred = [e for e in done["timeline"] if e["kind"] == "deferred"]
    assert deferred[0]["reason"] == "outside the send window"
    async with stack.deps.reader.connect() as conn:
        sent_at = await conn.scalar(select(MESSAGES.c.sent_at))
    assert sent_at is not None
    local = stack.deps.seqtime.to_virtual(sent_at).astimezone(tokyo)
    assert opens <= local < closes  # sent inside the window, in the contact's own zone


async def test_a_broken_step_does_not_hold_up_its_batch(stack: Stack) -> None:
    document = (
        f"key: strict\nname: S\n{SENDER}\nsteps:\n"
        + email_step("hello", "Hello {{ contact.first_name }}")  # no default: may fail
    )
    assert (await stack.apply("strict", document)).status_code == 201
    contacts = [
        {"email": "named@example.com", "attributes": {"first_name": "Nia"}},
        {"email": "nameless@example.com"},
    ]
    response = await stack.client.post(
        "/v1/enrollments/bulk",
        json={"sequence": "strict", "contacts": contacts},
        headers=stack.auth(),
    )
    ids = [r["id"] for r in response.json()["results"]]
    await eventually(lambda: _has(stack, "named@example.com", "Hello Nia"))
    skipped = await eventually(lambda: _status(stack, ids[1], "completed"))
    outcome = next(e for e in skipped["timeline"] if e["kind"] == "step_done")
    assert outcome["outcome"] == "skipped" and "first_name" in outcome["reason"]
    assert not stack.mail_to("nameless@example.com")


async def test_a_row_that_keeps_failing_is_given_up(stack: Stack) -> None:
    document = f"key: poison\nname: P\n{SENDER}\nsteps:\n  - id: hold\n    wait: {{for: 60d}}\n"
    assert (await stack.apply("poison", document)).status_code == 201
    enrollment = (await stack.enroll("poison", "pia@example.com")).json()["id"]
    async with stack.deps.engine.begin() as conn:
        # As if five workers had died holding this row: the next claim is its sixth.
        await conn.execute(
            update(RUNS)
            .where(RUNS.c.enrollment_id == enrollment)
            .values(attempts=5, due_at=stack.deps.clock.now())
        )
    await stack.deps.waker.wake_at([stack.deps.clock.now()])
    ended = await eventually(lambda: _status(stack, enrollment, "exited"))
    assert ended["exit_reason"] == "step hold failed 5 times"


async def test_frequency_cap_holds_across_sequences(stack: Stack) -> None:
    for key in ("cap-a", "cap-b"):
        document = (
            f"key: {key}\nname: {key}\n{SENDER}\nfrequency_cap: {{max: 1, per: 3d}}\nsteps:\n"
            + email_step("only", f"From {key}")
        )
        assert (await stack.apply(key, document)).status_code == 201
    first = (await stack.enroll("cap-a", "cal@example.com")).json()["id"]
    second = (await stack.enroll("cap-b", "cal@example.com")).json()["id"]
    await eventually(lambda: _at_least(stack, "cal@example.com", 1))
    await asyncio.sleep(1.0)
    assert len(stack.mail_to("cal@example.com")) == 1  # the other waits out the cap (3 s here)
    bodies = [await stack.enrollment(e) for e in (first, second)]
    deferred = [e for b in bodies for e in b["timeline"] if e["kind"] == "deferred"]
    assert [d["reason"] for d in deferred] == ["frequency cap"]
    await eventually(lambda: _at_least(stack, "cal@example.com", 2), within=10)
