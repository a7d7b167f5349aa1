"""Feedback becomes scores: contact scores, topic affinities and step stats, per event batch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import BROWSER_UA, Stack, eventually, make_settings, running_stack
from sqlalchemy import func, select

from sequences.mail.capture import CaptureServer
from sequences.store.tables import EVENTS, LINKS, MESSAGES, STEP_STATS, SUPPRESSIONS

SENDER = 'sender: {from: "Ops <ops@acme.test>"}'
OFFER = f"""key: offer
name: Offer
{SENDER}
steps:
  - id: pitch
    email:
      brief: Pitch the plan.
      cta: {{text: See pricing, url: "https://acme.test/pricing"}}
      fallback: {{subject: "The plan", body: "Body."}}
      variants:
        - {{id: money, angle: saves money, topics: [pricing]}}
        - {{id: speed, angle: saves time, topics: [pricing]}}
  - id: hold
    wait: {{for: 30d}}
"""
SCANNER = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, capture: CaptureServer, redis_db: str
) -> AsyncIterator[Stack]:
    # A year's half-life (6 real minutes here): within a test, scores are sums to within 2%.
    settings = make_settings(tmp_path, database_url, DRIPLINE_SCORE_HALF_LIFE="365d")
    async with running_stack(settings, redis_db, capture) as running:
        yield running


async def sent_message(stack: Stack, email: str) -> Any:
    async def find() -> Any:
        async with stack.deps.reader.connect() as conn:
            return (
                await conn.execute(
                    select(MESSAGES).where(MESSAGES.c.to_addr == email, MESSAGES.c.state == "sent")
                )
            ).first()

    return await eventually(find)


async def stats(stack: Stack) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    async with stack.deps.reader.connect() as conn:
        rows = await conn.execute(select(STEP_STATS))
        return {(r.step_id, r.variant): (r.sends, r.clicks, r.replies, r.conversions) for r in rows}


async def post(stack: Stack, *events: dict[str, Any]) -> Any:
    return await stack.client.post(
        "/v1/events", json={"events": list(events)}, headers=stack.auth()
    )


async def contact(stack: Stack, email: str) -> dict[str, Any]:
    response = await stack.client.get(f"/v1/contacts/{email}", headers=stack.auth())
    body: dict[str, Any] = response.json()
    return body


def click(event_id: str, message: Any, agent: str = BROWSER_UA) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "clicked",
        "message_id": message.message_id,
        "properties": {"url": "https://acme.test/pricing", "user_agent": agent},
    }


async def test_feedback_updates_scores_and_step_stats_incrementally(stack: Stack) -> None:
    assert (await stack.apply("offer", OFFER)).status_code == 201
    enrollment = (await stack.enroll("offer", "ana@example.com")).json()["id"]
    message = await sent_message(stack, "ana@example.com")
    assert message.variant in ("money", "speed")
    await eventually(lambda: _sends(stack, message.variant))

    first = await post(
        stack, click("c1", message), {"id": "o1", "type": "opened", "message_id": message.id}
    )
    assert first.json() == {"accepted": 2, "duplicates": 0}
    again = await post(
        stack, click("c2", message), {"id": "r1", "type": "replied", "email": "ana@example.com"}
    )
    assert again.json() == {"accepted": 2, "duplicates": 0}

    # Two human clicks on one message count once for the step; the reply names no message
    # and is credited to the latest email (last touch).
    assert (await stats(stack))[("pitch", message.variant)] == (1, 1, 1, 0)
    seen = (await stack.client.get("/v1/sequences/offer", headers=stack.auth())).json()
    arm = seen["performance"]["pitch"][message.variant]
    assert (arm["sends"], arm["clicks"], arm["replies"], arm["conversions"]) == (1, 1, 1, 0)
    assert arm["clicks_rate"] == pytest.approx(2 / 3, abs=1e-4)  # Beta(1 + 1, 1 + 0)
    person = await contact(stack, "ana@example.com")
    assert person["score"] == pytest.approx(3.0 + 0.25 + 3.0 + 5.0, rel=0.02)
    assert person["affinities"] == {"pricing": pytest.approx(2.0, rel=0.02)}
    status = await stack.enrollment(enrollment)
    assert status["engagement"]["score"] == pytest.approx(11.25, rel=0.02)
    assert status["engagement"]["affinities"] == {"pricing": pytest.approx(2.0, rel=0.02)}


async def _sends(stack: Stack, variant: str) -> bool:
    return (await stats(stack)).get(("pitch", variant), (0,))[0] == 1


async def test_bot_clicks_count_for_nothing(stack: Stack) -> None:
    assert (await stack.apply("offer", OFFER)).status_code == 201
    await stack.enroll("offer", "bo@example.com")
    message = await sent_message(stack, "bo@example.com")
    async with stack.deps.reader.connect() as conn:
        token = await conn.scalar(select(LINKS.c.token).where(LINKS.c.message_pk == message.id))
    probe = await stack.client.head(f"/t/c/{token}", headers={"User-Agent": BROWSER_UA})
    scanner = await stack.client.get(f"/t/c/{token}", headers={"User-Agent": SCANNER})
    assert probe.status_code == scanner.status_code == 302
    reported = await post(stack, click("esp-1", message, agent=SCANNER))
    assert reported.json()["accepted"] == 1

    async with stack.deps.reader.connect() as conn:
        flags = (await conn.execute(select(EVENTS.c.is_bot, EVENTS.c.properties))).all()
        clicked_at = await conn.scalar(select(MESSAGES.c.clicked_at))
    assert [bot for bot, _ in flags] == [True, True, True]
    assert flags[2][1]["bot"] == "scanner user agent"
    assert clicked_at is None
    assert (await stats(stack))[("pitch", message.variant)][1] == 0
    assert (await contact(stack, "bo@example.com"))["score"] == 0


async def test_bounces_and_complaints_count_against_the_contact(stack: Stack) -> None:
    soft = {
        "id": "b1",
        "type": "bounced",
        "email": "soft@example.com",
        "properties": {"bounce_type": "soft"},
    }
    hard = {
        "id": "b2",
        "type": "bounced",
        "email": "hard@example.com",
        "properties": {"bounce_type": "hard"},
    }
    spam = {"id": "s1", "type": "complained", "email": "spam@example.com"}
    assert (await post(stack, soft, hard, spam)).json()["accepted"] == 3
    scores = {e: (await contact(stack, f"{e}@example.com")) for e in ("soft", "hard", "spam")}
    assert scores["spam"]["score"] < scores["hard"]["score"] < scores["soft"]["score"] < 0
    assert [scores[e]["suppressed"] for e in ("soft", "hard", "spam")] == [
        None,
        "hard_bounce",
        "complaint",
    ]


async def test_a_bad_batch_names_every_bad_event_and_stores_nothing(stack: Stack) -> None:
    good = {"id": "g1", "type": "clicked", "email": "ok@example.com"}
    no_contact = {"id": "g2", "type": "clicked", "contact_id": 999999}
    no_message = {"id": "g3", "type": "clicked", "message_id": "<nope@acme.test>"}
    response = await post(stack, good, no_contact, no_message)
    assert response.status_code == 422
    error = response.json()["error"]
    assert [d["path"] for d in error["details"]] == ["events.1.contact_id", "events.2.message_id"]
    assert "events.1.contact_id: no contact 999999" in error["message"]
    async with stack.deps.reader.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(EVENTS)) == 0
        assert await conn.scalar(select(func.count()).select_from(SUPPRESSIONS)) == 0


async def test_one_id_twice_in_a_batch_counts_once(stack: Stack) -> None:
    event = {"id": "same", "type": "converted", "email": "twice@example.com"}
    assert (await post(stack, event, event)).json() == {"accepted": 1, "duplicates": 1}
    assert (await post(stack, event)).json() == {"accepted": 0, "duplicates": 1}
    assert (await contact(stack, "twice@example.com"))["score"] == pytest.approx(8.0, rel=0.02)


async def test_event_batches_take_turns_and_all_land(stack: Stack) -> None:
    """DRIPLINE_EVENT_TRANSACTIONS (1 by default): batches posted at once run their
    transactions one after another in a process (short lock holds), and every one lands."""
    import asyncio

    from sqlalchemy import event

    open_now, most = set(), [0]
    sync_engine = stack.deps.engine.sync_engine

    def on_execute(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            open_now.add(id(conn))
            most[0] = max(most[0], len(open_now))

    def on_end(conn: Any) -> None:
        open_now.discard(id(conn))

    event.listen(sync_engine, "before_cursor_execute", on_execute)
    event.listen(sync_engine, "commit", on_end)
    event.listen(sync_engine, "rollback", on_end)
    try:
        answers = await asyncio.gather(
            *(
                post(
                    stack,
                    *(
                        {"id": f"b{b}-{n}", "type": "converted", "email": f"p{n}@example.com"}
                        for n in range(20)
                    ),
                )
                for b in range(8)
            )
        )
    finally:
        event.remove(sync_engine, "before_cursor_execute", on_execute)
        event.remove(sync_engine, "commit", on_end)
        event.remove(sync_engine, "rollback", on_end)
    assert [a.status_code for a in answers] == [202] * 8
    assert sum(a.json()["accepted"] for a in answers) == 160
    assert most[0] == 1
    async with stack.deps.reader.connect() as conn:
        stored = await conn.scalar(select(func.count()).select_from(EVENTS))
    assert stored == 160
