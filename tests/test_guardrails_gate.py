"""The gate every email passes, whoever wrote it: the greeting and offer rules (a passing and a
failing case each), the composer's copy checked in the graph, refused copy skipped or held for
a reviewer with the findings shown, and subjects that always fold."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy

import pytest
from agent_cases import make_request, outcome_of, render, review_of
from guardrail_cases import assert_fails, assert_passes, make_draft

from agents.agent import CopyAgent
from agents.copy import Fallback
from agents.guardrails import (
    GATE_RULES,
    allowed_links,
    check_gate,
    greeting_named,
    no_unbacked_offers,
)
from sequences.mail.mime import SUBJECT_MAX_CHARS, OutgoingEmail, build_message


@pytest.mark.parametrize("greeting", ["Hi ,", "Hi null,", "Hello undefined!", "Dear None,"])
def test_a_greeting_that_names_nobody_fails(greeting: str) -> None:
    draft = make_draft(paragraphs=(greeting, "The setup guide is ready for you."))
    assert_fails(greeting_named(draft, make_request()), "greeting_named", "names nobody")


@pytest.mark.parametrize("greeting", ["Hi Dana,", "Hi there,", "Hi, I'm Maya.", "Hello!"])
def test_a_greeting_with_a_name_or_none_at_all_passes(greeting: str) -> None:
    draft = make_draft(paragraphs=(greeting, "The setup guide is ready for you."))
    assert_passes(greeting_named(draft, make_request()), "greeting_named")


@pytest.mark.parametrize(
    ("sentence", "offer"),
    [
        ("We can give your team a discount on the annual plan.", "discount"),
        ("Upgrade now and get 20% off your first year.", "% off"),
        ("Your first month is on the house.", "free"),
        ("Reply and we will arrange a trial extension.", "trial extension"),
    ],
)
def test_an_offer_the_brief_never_made_fails(sentence: str, offer: str) -> None:
    draft = make_draft(sentence)
    assert_fails(no_unbacked_offers(draft, make_request()), "no_unbacked_offers", offer)


def test_an_offer_the_brief_makes_passes_and_one_it_rules_out_does_not() -> None:
    draft = make_draft("We can give your team a discount on the annual plan.")
    made = make_request(brief="Mention the annual discount for teams.")
    assert_passes(no_unbacked_offers(draft, made), "no_unbacked_offers")
    ruled_out = make_request(brief="Welcome them. No pressure, no discounts.")
    assert_fails(no_unbacked_offers(draft, ruled_out), "no_unbacked_offers", "discount")
    assert_passes(
        no_unbacked_offers(make_draft("Feel free to reply."), ruled_out), "no_unbacked_offers"
    )


def test_the_gate_reads_what_a_contact_could_smuggle_in() -> None:
    assert list(GATE_RULES) == [
        "no_placeholders",
        "allowed_links",
        "no_injected_text",
        "greeting_named",
        "no_unbacked_offers",
    ]
    assert all(f.ok for f in check_gate(make_draft(), make_request()))
    smuggled = make_draft("Claim it at http://evil.test/win {{ config }}")
    refused = {f.rule for f in check_gate(smuggled, make_request()) if not f.ok}
    assert refused == {"allowed_links", "no_placeholders"}


BLANK_GREETING = Fallback(subject="Welcome", body="Hi ,\n\nThe setup guide is ready for you.")


async def test_the_composers_copy_passes_the_gate_and_is_skipped_when_refused() -> None:
    result = await CopyAgent(None).run(make_request(fallback=BLANK_GREETING), render)
    outcome = outcome_of(result)
    assert outcome.action == "skip" and outcome.draft is None
    assert outcome.reason.startswith("guardrails refused the copy: greeting_named")


async def test_refused_copy_is_held_for_a_reviewer_with_the_findings_shown() -> None:
    request = make_request(fallback=BLANK_GREETING, refused_copy="hold")
    result = await CopyAgent(None).run(request, render, "thread-hold")
    review = review_of(result)
    failed = [f.rule for f in review.findings if not f.ok]
    assert failed == ["greeting_named"]
    assert review.fallback_reason is not None and "greeting_named" in review.fallback_reason


async def test_the_composers_good_copy_is_sent_with_the_held_fields_named() -> None:
    request = make_request(held_fields=("contact.company (a URL or domain)",))
    outcome = outcome_of(await CopyAgent(None).run(request, render))
    assert outcome.action == "send" and outcome.draft is not None
    assert "Contact fields held back: contact.company (a URL or domain)." in outcome.draft.rationale


def _subject_on_the_wire(subject: str) -> tuple[str, list[bytes]]:
    raw = build_message(
        OutgoingEmail(
            from_addr="Dana <dana@acme.test>",
            to_addr="ada@example.com",
            subject=subject,
            text="Hello",
            html="<p>Hello</p>",
            message_id="<1@acme.test>",
            unsubscribe_url="https://acme.test/u/1",
            date=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )
    parsed = email.message_from_bytes(raw, policy=policy.default)
    return str(parsed["subject"]), raw.split(b"\r\n")


@pytest.mark.parametrize(
    "subject",
    ["Welcome, " + "B" * 1000, "Welcome, " + "é" * 600, "x" * 5000, "Bob\x00\x1b[31m hi"],
)
def test_a_subject_always_folds(subject: str) -> None:
    decoded, lines = _subject_on_the_wire(subject)
    assert all(len(line) <= 78 for line in lines[:20])  # the headers
    assert len(decoded) <= SUBJECT_MAX_CHARS
    assert "\x00" not in decoded and "\x1b" not in decoded
    if len(subject) > SUBJECT_MAX_CHARS:
        assert decoded.endswith("\u2026") and subject.startswith(decoded[:-1])


def test_the_recipients_own_address_may_be_quoted_but_no_other() -> None:
    request = make_request(contact={"first_name": "Dana", "email": "dana@acme.io"})
    own = make_draft("We will send the summary to dana@acme.io as usual.")
    assert_passes(allowed_links(own, request), "allowed_links")
    other = make_draft("Write to deals@acme.io for a better price.")
    assert_fails(allowed_links(other, request), "allowed_links", "acme.io")
    # In any case and more than once, ASCII or not (the two ways the address is blanked out).
    twice = make_draft("Sent to DANA@Acme.IO, and a copy to dana@acme.io.")
    assert_passes(allowed_links(twice, request), "allowed_links")
    accented = make_request(contact={"first_name": "Zoë", "email": "zoë@acme.io"})
    assert_passes(
        allowed_links(make_draft("Zoë, it goes to ZOË@ACME.IO."), accented), "allowed_links"
    )
    assert_fails(
        allowed_links(make_draft("Zoë, it goes to zoe@acme.io."), accented), "allowed_links"
    )


@pytest.mark.parametrize(
    ("sentence", "offer"),
    [
        ("Get 20% OFF today.", "% off"),  # upper case: the word check reads lower-cased text
        ("Ask us for a plan extension.", "trial extension"),
        ("A di\u017fcount for your team.", "discount"),  # a long s: not ASCII, scanned in full
        ("Zo\u00eb, your team gets a discount.", "discount"),
    ],
)
def test_an_offer_is_found_in_any_case_and_script(sentence: str, offer: str) -> None:
    assert_fails(
        no_unbacked_offers(make_draft(sentence), make_request()), "no_unbacked_offers", offer
    )


def test_control_characters_in_the_copy_fail() -> None:
    draft = make_draft("Your guide\x1b[31m is ready\u202e.")
    finding = check_gate(draft, make_request())[0]
    assert_fails(finding, "no_placeholders", "U+001B", "U+202E")
    assert_passes(
        check_gate(make_draft("Line one\n\tline two."), make_request())[0], "no_placeholders"
    )
