"""What ESP webhook events do once signed: only events about mail Dripline sent act, on the one
recipient it went to; suppression across sequences, delays, batches, duplicates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import esp_requests as esp
import pytest
from esp_cases import (
    OUTCOMES,
    PROVIDERS,
    click,
    ours,
    post,
    running,
    score,
    send_to,
    status,
    stored,
    suppressed,
)
from harness import Stack

from sequences.mail.capture import CaptureServer


@pytest.fixture
async def stack(tmp_path: Path, capture: CaptureServer, redis_db: str) -> AsyncIterator[Stack]:
    async with running(tmp_path, capture, redis_db) as started:
        yield started


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_outcomes_about_our_mail(stack: Stack, provider: str) -> None:
    hard, complaint, soft, delayed = OUTCOMES[provider]
    people = [f"{kind}-{provider}@example.com" for kind in ("hard", "complaint", "soft", "late")]
    sent = await send_to(stack, *people)
    also = await send_to(stack, *people, sequence="webhook-b")  # suppression ends every sequence
    for build, email in zip((hard, complaint, soft, delayed), people, strict=True):
        answer = await post(stack, ours(provider, build(email), sent[email]))
        assert (answer["accepted"], answer["foreign"]) == (1, 0), (email, answer)
    hard_at, complaint_at, soft_at, late_at = people
    soft_suppressed = "hard_bounce" if provider == "mailgun" else None
    assert [await suppressed(stack, e) for e in people] == [
        "hard_bounce",
        "complaint",
        soft_suppressed,
        None,
    ]
    assert await status(stack, also[hard_at]) == ("exited", "hard_bounce")
    assert await status(stack, also[complaint_at]) == ("exited", "complaint")
    assert await status(stack, sent[late_at]) == ("active", None)
    events = {e["email_key"]: e for e in await stored(stack)}
    assert events[hard_at]["properties"]["bounce_type"] == "hard"
    assert events[hard_at]["message_pk"] == sent[hard_at].pk
    assert events[soft_at]["type"] == "bounced"
    # A delay is recorded, the same kind from every provider, and never scored as a bounce.
    assert events[late_at]["type"] == "delayed"
    assert await score(stack, late_at) == 0.0


async def test_events_about_mail_we_never_sent_change_nothing(stack: Stack) -> None:
    """Another system's mail on the same ESP account: a click that would exit the enrollment
    (exit_on: clicked) and score +3, a bounce that would suppress, all answered 2xx and counted."""
    sent = (await send_to(stack, "ada@example.com"))["ada@example.com"]
    hard = {provider: OUTCOMES[provider][0] for provider in PROVIDERS}
    for provider in PROVIDERS:
        for build in (click(provider), hard[provider]):
            answer = await post(stack, esp.signed(provider, build(sent.email)))
            assert (answer["accepted"], answer["foreign"]) == (0, 1), (provider, answer)
    # Our Message-ID, reported for someone else (a forward): not about that person either.
    forwarded = esp.sendgrid_event("click", "bob@example.com", **{"smtp-id": sent.header})
    assert (await post(stack, esp.sendgrid([forwarded])))["foreign"] == 1
    assert await stored(stack) == []
    assert await suppressed(stack, sent.email) is None
    assert await status(stack, sent) == ("active", None)
    assert await score(stack, sent.email) == 0.0
    # The same click naming our message does act: the test above could have failed.
    assert (await post(stack, ours("postmark", click("postmark")(sent.email), sent)))["accepted"]
    assert await status(stack, sent) == ("exited", "exit_on: clicked")
    assert await score(stack, sent.email) > 2.0  # +3, decaying (half-life: 14 s in this test)


async def test_a_multi_recipient_event_concerns_only_our_recipient(stack: Stack) -> None:
    sent = await send_to(stack, "ada@example.com", "bob@example.com", "cy@example.com")
    ada, bob, cy = sent.values()
    two = esp.resend_payload("email.bounced", [bob.email, ada.email], bounce={"type": "Permanent"})
    assert (await post(stack, ours("resend", two, ada)))["accepted"] == 1
    bounce = esp.ses_bounce(cy.email, "Permanent", notification=True)
    other = {"emailAddress": bob.email, "diagnosticCode": "smtp; 550 5.2.2 mailbox full"}
    bounce["bounce"]["bouncedRecipients"].insert(0, other)
    bounce["mail"]["commonHeaders"]["messageId"] = cy.header  # SES echoes the Message-ID
    assert (await post(stack, esp.sns(bounce)))["accepted"] == 1
    opened = esp.ses_record("Open", ada.email, open={"userAgent": esp.BROWSER_UA})
    opened["mail"]["destination"] = [bob.email, ada.email, cy.email]
    assert (await post(stack, ours("ses", opened, ada)))["accepted"] == 1
    assert [await suppressed(stack, p.email) for p in (ada, bob, cy)] == [
        "hard_bounce",
        None,
        "hard_bounce",
    ]
    events = await stored(stack)
    assert [(e["type"], e["email_key"]) for e in events] == [
        ("bounced", ada.email),
        ("bounced", cy.email),
        ("opened", ada.email),
    ]
    assert events[1]["properties"]["reply"] == "smtp; 550 5.1.1 user unknown"  # cy's, not bob's


async def test_a_batch_with_a_bad_item_stores_the_good_ones(
    tmp_path: Path, capture: CaptureServer, redis_db: str, database_url: str
) -> None:
    async with running(tmp_path, capture, redis_db, url=database_url) as stack:
        sent = (await send_to(stack, "ada@example.com"))["ada@example.com"]
        good = esp.tagged("sendgrid", esp.sendgrid_event("open", sent.email), sent.pk)
        later = esp.tagged("sendgrid", esp.sendgrid_event("click", sent.email), sent.pk)
        bad = esp.without(esp.sendgrid_event("open", sent.email), "sg_event_id")
        answer = await post(stack, esp.sendgrid([good, bad, later]))
        assert answer["accepted"] == 2
        assert answer["rejected"] == [
            {"path": "1.sg_event_id", "message": "expected a string, got nothing"}
        ]
        assert [e["type"] for e in await stored(stack)] == ["opened", "clicked"]
        metrics = (await stack.client.get("/metrics", headers=stack.auth())).text
        assert 'dripline_webhook_rejected_total{field="sg_event_id",provider="sendgrid"} 1.0' in (
            metrics
        )
        assert 'dripline_webhook_items_total{outcome="accepted",provider="sendgrid"} 2.0' in metrics


def _again(provider: str, payload: dict[str, Any]) -> Callable[[], esp.Signed]:
    """The ESP delivering one event again: SendGrid, Mailgun and Svix sign each attempt afresh
    (Mailgun with a new token; a repeated token is tested at the door); SNS repeats itself."""
    if provider == "resend":
        first = esp.signed(provider, payload)
        return lambda: esp.svix(first.body, msg_id=first.headers["svix-id"])
    if provider == "ses":
        once = esp.signed(provider, payload)
        return lambda: once
    return lambda: esp.signed(provider, payload)


async def test_duplicate_deliveries_are_answered_2xx_and_stored_once(stack: Stack) -> None:
    sent = await send_to(stack, *(f"{p}@example.com" for p in PROVIDERS))
    for provider in PROVIDERS:
        message = sent[f"{provider}@example.com"]
        again = _again(provider, esp.tagged(provider, click(provider)(message.email), message.pk))
        assert (await post(stack, again()))["accepted"] == 1, provider
        second = await post(stack, again())
        assert (second["accepted"], second["duplicates"]) == (0, 1), (provider, second)
    assert len(await stored(stack)) == len(PROVIDERS)
