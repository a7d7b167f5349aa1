"""Guardrails on the form of a draft: one finding per rule, schema_valid, length_bounds,
no_placeholders, spam_phrases and unsubscribe_present.

Each failing draft differs from a good one by the offending text only, so the tests also check
that no other rule fires on it: a rule that refuses ordinary copy is as wrong as one that lets
bad copy through."""

from __future__ import annotations

import pytest
from guardrail_cases import (
    BRIEF,
    UNSUBSCRIBE,
    assert_fails,
    assert_passes,
    failing_rules,
    make_draft,
    make_request,
)

from agents.copy import (
    CopyRequest,
    Preview,
)
from agents.guardrails import (
    COPY_RULES,
    CTA_MAX,
    MAX_PARAGRAPHS,
    PREHEADER_MAX,
    RULE_NAMES,
    check_copy,
    check_preview,
    failed,
    length_bounds,
    no_placeholders,
    schema_valid,
    spam_phrases,
    unsubscribe_present,
)


@pytest.fixture
def request_() -> CopyRequest:
    return make_request()


# check_copy and the good draft ---------------------------------------------------------------


def test_check_copy_returns_one_finding_per_rule_in_order(request_: CopyRequest) -> None:
    findings = check_copy(make_draft(), request_)
    assert [f.rule for f in findings] == list(COPY_RULES)
    assert list(COPY_RULES) == [
        "schema_valid",
        "length_bounds",
        "no_placeholders",
        "allowed_links",
        "no_invented_facts",
        "spam_phrases",
        "no_injected_text",
        "greeting_named",
        "no_unbacked_offers",
    ]
    assert RULE_NAMES[-1] == "unsubscribe_present"
    assert RULE_NAMES[:-1] == tuple(COPY_RULES)


def test_good_draft_passes_every_rule(request_: CopyRequest) -> None:
    findings = check_copy(make_draft(), request_)
    assert [f for f in findings if not f.ok] == []
    assert all(f.message == "" for f in findings)


def test_failed_keeps_only_the_failing_findings(request_: CopyRequest) -> None:
    draft = make_draft("Act now: visit evil.com today.")
    findings = check_copy(draft, request_)
    assert [f.rule for f in failed(findings)] == ["allowed_links", "spam_phrases"]
    assert all(not f.ok for f in failed(findings))


# schema_valid ----------------------------------------------------------------------------------


def test_schema_valid_passes_a_complete_draft(request_: CopyRequest) -> None:
    assert_passes(schema_valid(make_draft(), request_), "schema_valid")


def test_schema_valid_passes_no_button_when_the_step_has_no_cta() -> None:
    request = make_request(cta=None)
    draft = make_draft(cta_text=None, cta_url=None)
    assert_passes(schema_valid(draft, request), "schema_valid")
    assert failing_rules(draft, request) == set()


@pytest.mark.parametrize("subject", ["", "   "])
def test_schema_valid_fails_an_empty_subject(request_: CopyRequest, subject: str) -> None:
    assert_fails(schema_valid(make_draft(subject=subject), request_), "schema_valid", "subject")
    assert "the subject is empty" in schema_valid(make_draft(subject=subject), request_).message


@pytest.mark.parametrize("paragraphs", [(), ("",), (" ", "\n")])
def test_schema_valid_fails_an_empty_body(
    request_: CopyRequest, paragraphs: tuple[str, ...]
) -> None:
    finding = schema_valid(make_draft(paragraphs=paragraphs), request_)
    assert_fails(finding, "schema_valid", "the body is empty")


@pytest.mark.parametrize("label", [None, "", "  "])
def test_schema_valid_fails_a_cta_step_without_a_button_label(
    request_: CopyRequest, label: str | None
) -> None:
    finding = schema_valid(make_draft(cta_text=label), request_)
    assert_fails(finding, "schema_valid", "call to action", "no button")


def test_schema_valid_lists_every_problem(request_: CopyRequest) -> None:
    finding = schema_valid(make_draft(subject="", paragraphs=(), cta_text=None), request_)
    assert_fails(finding, "schema_valid", "subject is empty", "body is empty", "no button")


# length_bounds ---------------------------------------------------------------------------------


def words(n: int) -> str:
    """``n`` words of plain, fact-free copy."""
    return " ".join(["the", "setup", "guide", "helps"] * (n // 4) + ["the"] * (n % 4))


def test_length_bounds_passes_the_limits_themselves(request_: CopyRequest) -> None:
    at_limits = make_draft(
        subject="s" * 78,
        preheader="p" * PREHEADER_MAX,
        paragraphs=(words(150), words(150)),
        cta_text="c" * CTA_MAX,
    )
    assert len(at_limits.body.split()) == 300
    assert_passes(length_bounds(at_limits, request_), "length_bounds")
    shortest = make_draft(subject="Hey", paragraphs=(words(15),))
    assert_passes(length_bounds(shortest, request_), "length_bounds")
    six = make_draft(paragraphs=tuple(words(4) for _ in range(MAX_PARAGRAPHS)))
    assert_passes(length_bounds(six, request_), "length_bounds")


def test_length_bounds_fails_a_long_subject(request_: CopyRequest) -> None:
    subject = "Your setup guide is ready, Dana, and it connects your domain in no time at all."
    assert len(subject) == 79
    draft = make_draft(subject=subject)
    assert_fails(length_bounds(draft, request_), "length_bounds", "subject is 79 characters")
    assert failing_rules(draft, request_) == {"length_bounds"}


def test_length_bounds_fails_a_short_subject(request_: CopyRequest) -> None:
    draft = make_draft(subject="Hi")
    assert_fails(length_bounds(draft, request_), "length_bounds", "subject is 2 characters")
    assert failing_rules(draft, request_) == {"length_bounds"}


def test_length_bounds_fails_a_short_body(request_: CopyRequest) -> None:
    draft = make_draft(paragraphs=("Hi Dana,", "Open the setup guide."))
    assert_fails(length_bounds(draft, request_), "length_bounds", "body is 6 words")
    assert failing_rules(draft, request_) == {"length_bounds"}


def test_length_bounds_fails_a_long_body(request_: CopyRequest) -> None:
    draft = make_draft(paragraphs=(words(151), words(150)))
    assert_fails(length_bounds(draft, request_), "length_bounds", "body is 301 words")
    assert failing_rules(draft, request_) == {"length_bounds"}


def test_length_bounds_fails_too_many_paragraphs(request_: CopyRequest) -> None:
    draft = make_draft(paragraphs=tuple(words(4) for _ in range(MAX_PARAGRAPHS + 1)))
    assert_fails(length_bounds(draft, request_), "length_bounds", "7 paragraphs (max 6)")
    assert failing_rules(draft, request_) == {"length_bounds"}


def test_length_bounds_fails_a_long_button_label(request_: CopyRequest) -> None:
    label = "Open the setup guide and connect your domain"
    assert len(label) == 44
    draft = make_draft(cta_text=label)
    assert_fails(length_bounds(draft, request_), "length_bounds", "button label is 44 characters")
    assert failing_rules(draft, request_) == {"length_bounds"}


def test_length_bounds_fails_a_long_preheader(request_: CopyRequest) -> None:
    draft = make_draft(preheader="p" * (PREHEADER_MAX + 1))
    assert_fails(length_bounds(draft, request_), "length_bounds", "preheader is 151 characters")


# no_placeholders -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "placeholder"),
    [
        ("Hi {{ first_name }}, the guide is ready.", "{{ first_name }}"),
        ("Hi {{first_name}}, the guide is ready.", "{{first_name}}"),
        ("Hi [First Name], the guide is ready.", "[First Name]"),
        ("Hi *|FNAME|*, the guide is ready.", "*|FNAME|*"),
        ("Hi %FIRSTNAME%, the guide is ready.", "%FIRSTNAME%"),
        ("Hi {first_name}, the guide is ready.", "{first_name}"),
        ("Hi ${first_name}, the guide is ready.", "${first_name}"),
        ("The guide is <strong>ready</strong> for you.", "<strong>"),
        ("The guide is ready.<br/>See you there.", "<br/>"),
        ("{% if plan %}The guide is ready.{% endif %}", "{% if plan %}"),
        ("The guide is ready for [insert company].", "[insert company]"),
        ("The guide is ready. TODO: add the second tip.", "TODO"),
        ("Lorem ipsum dolor sit amet.", "Lorem ipsum"),
    ],
)
def test_no_placeholders_fails_and_names_the_placeholder(
    request_: CopyRequest, sentence: str, placeholder: str
) -> None:
    draft = make_draft(sentence)
    assert_fails(no_placeholders(draft, request_), "no_placeholders", repr(placeholder))


def test_no_placeholders_reads_the_subject_and_the_button(request_: CopyRequest) -> None:
    subject = make_draft(subject="Welcome aboard, {{ first_name }}")
    assert_fails(no_placeholders(subject, request_), "no_placeholders", "{{ first_name }}")
    button = make_draft(cta_text="Open [Company] guide")
    assert_fails(no_placeholders(button, request_), "no_placeholders", "[Company]")


def test_no_placeholders_names_a_stray_half_tag(request_: CopyRequest) -> None:
    draft = make_draft("Hi {{ first_name, the guide is ready.")
    assert_fails(no_placeholders(draft, request_), "no_placeholders", "'{{'")


def test_no_placeholders_passes_plain_copy(request_: CopyRequest) -> None:
    assert_passes(no_placeholders(make_draft(), request_), "no_placeholders")
    # A lower-case "todo list" is copy, not a marker; brackets around a word that is no field
    # name are prose.
    plain = make_draft("Clear your todo list faster [and keep the guide open].")
    assert_passes(no_placeholders(plain, request_), "no_placeholders")
    assert failing_rules(plain, request_) == set()


# spam_phrases ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "phrase"),
    [
        ("Act now to keep your setup on track.", "act now"),
        ("The setup guide is 100% free.", "100% free"),
        ("Click here to open the guide.", "click here"),
        ("It is guaranteed to take no effort.", "guaranteed"),
        ("Welcome aboard!!!", "!!!"),
    ],
)
def test_spam_phrases_fails_and_names_the_phrase(
    request_: CopyRequest, sentence: str, phrase: str
) -> None:
    draft = make_draft(sentence)
    assert_fails(spam_phrases(draft, request_), "spam_phrases", f"spam phrase {phrase!r}")


def test_spam_phrases_reads_the_button_label(request_: CopyRequest) -> None:
    draft = make_draft(cta_text="Click here")
    assert_fails(spam_phrases(draft, request_), "spam_phrases", "'click here'")


def test_spam_phrases_fails_a_shouted_subject(request_: CopyRequest) -> None:
    draft = make_draft(subject="FREE MONEY INSIDE")
    assert_fails(spam_phrases(draft, request_), "spam_phrases", "shouted subject", "FREE MONEY")


def test_spam_phrases_fails_repeated_exclamation_marks(request_: CopyRequest) -> None:
    draft = make_draft("Welcome aboard!!")
    finding = spam_phrases(draft, request_)
    assert_fails(finding, "spam_phrases", "repeated exclamation marks")
    assert failing_rules(draft, request_) == {"spam_phrases"}


def test_spam_phrases_passes_plain_copy(request_: CopyRequest) -> None:
    assert_passes(spam_phrases(make_draft(), request_), "spam_phrases")
    # "impact now" holds "act now", "contact now" too; one capitalised word is no shout.
    plain = make_draft(
        "You will see the impact now that your domain is connected. Welcome aboard!",
        subject="Your NEW setup guide, Dana",
    )
    assert_passes(spam_phrases(plain, request_), "spam_phrases")


def test_spam_phrases_passes_acronyms_the_brief_uses() -> None:
    subject = "GDPR and HIPAA, covered"
    request = make_request(brief=BRIEF + " Reassure them that GDPR and HIPAA are covered.")
    assert_passes(spam_phrases(make_draft(subject=subject), request), "spam_phrases")
    # The same subject is shouting when nothing in the step uses those words.
    assert_fails(
        spam_phrases(make_draft(subject=subject), make_request()),
        "spam_phrases",
        "GDPR HIPAA",
    )


# unsubscribe_present ---------------------------------------------------------------------------


def preview(html: str, text: str, url: str = UNSUBSCRIBE) -> Preview:
    return Preview(html=html, text=text, unsubscribe_url=url)


HTML = f'<p>Hi Dana,</p><p><a href="{UNSUBSCRIBE}">Unsubscribe</a></p>'
TEXT = f"Hi Dana,\n\nUnsubscribe: {UNSUBSCRIBE}"


def test_unsubscribe_present_passes_when_both_parts_carry_the_url() -> None:
    assert_passes(unsubscribe_present(preview(HTML, TEXT)), "unsubscribe_present")
    assert check_preview(preview(HTML, TEXT)) == [unsubscribe_present(preview(HTML, TEXT))]


def test_unsubscribe_present_fails_a_missing_html_link() -> None:
    finding = unsubscribe_present(preview("<p>Hi Dana,</p>", TEXT))
    assert_fails(finding, "unsubscribe_present", "HTML part")
    assert "text part" not in finding.message


def test_unsubscribe_present_fails_a_missing_text_link() -> None:
    finding = unsubscribe_present(preview(HTML, "Hi Dana,"))
    assert_fails(finding, "unsubscribe_present", "text part")
    assert "HTML part" not in finding.message


def test_unsubscribe_present_fails_another_recipients_link() -> None:
    other = preview(HTML, TEXT, url="https://mail.dripline.io/u/Qq17pA")
    assert_fails(unsubscribe_present(other), "unsubscribe_present", "HTML part", "text part")
    assert [f.ok for f in check_preview(other)] == [False]


def test_unsubscribe_present_fails_an_empty_url() -> None:
    finding = unsubscribe_present(preview(HTML, TEXT, url=""))
    assert_fails(finding, "unsubscribe_present", "no unsubscribe URL")
