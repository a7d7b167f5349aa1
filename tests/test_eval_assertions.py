"""Every assertion a suite may name, with an email that passes it and one that fails it.

The emails are guardrail_cases' good draft for Dana at Acme Corp, changed by the one thing each
assertion looks at, so a failure here is that assertion's and no other's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from eval_cases import subject
from guardrail_cases import make_request
from pydantic import ValidationError

from agents.copy import CopyRequest, Draft
from evals.assertions import ASSERTIONS
from evals.assertions.base import Grade, Subject
from evals.assertions.facts import FactArgs, fact_exists

Make = Callable[[], Subject]


@dataclass(frozen=True)
class Example:
    assertion: str
    args: Any
    make: Make
    status: str
    says: str = ""  # text the verdict's message must contain

    def __str__(self) -> str:
        return f"{self.assertion}-{self.status}-{self.says[:20]}"


LINK = "Visit https://evil.example/win to claim it."
PUSHY = "Hurry, this is your last chance to get the amazing setup guide."
DENSE = (
    "Organisational interoperability considerations necessitate comprehensive evaluation of "
    "infrastructural dependencies, notwithstanding administrative responsibilities concerning "
    "institutional authorisation procedures and documentation."
)


def judged(score: int) -> Make:
    return lambda: subject(judge=FixedGrader(score))


class FixedGrader:
    name = "fixed-grader"

    def __init__(self, score: int, error: Exception | None = None) -> None:
        self.score, self.error = score, error
        self.rubrics: list[str] = []

    async def grade(self, rubric: str, request: CopyRequest, draft: Draft) -> Grade:
        self.rubrics.append(rubric)
        if self.error is not None:
            raise self.error
        return Grade(self.score, f"scored {self.score}")


EXAMPLES = [
    Example("guardrails", None, subject, "pass"),
    Example("guardrails", None, lambda: subject(LINK), "fail", "allowed_links"),
    Example(
        "guardrails",
        None,
        lambda: subject(fallback_reason="model unavailable"),
        "fail",
        "fell back to the offline composer (model unavailable)",
    ),
    Example("guardrails", ["spam_phrases"], lambda: subject(LINK), "pass"),
    Example("contains", "setup guide", subject, "pass"),
    Example("contains", "pricing", subject, "fail", "lacks 'pricing'"),
    Example("contains", {"text": ["pricing", "setup guide"], "mode": "any"}, subject, "pass"),
    Example("contains", {"text": "Dana", "where": "subject"}, subject, "pass"),
    Example("contains", {"text": "Acme Corp", "where": "subject"}, subject, "fail"),
    Example("contains", "won", lambda: subject("We won't spam you."), "fail", "lacks 'won'"),
    Example("not_contains", ["prize", "discount"], subject, "pass"),
    Example(
        "not_contains", "prize", lambda: subject("You won a prize."), "fail", "contains 'prize'"
    ),
    Example("regex", r"five[- ]minutes?", subject, "pass"),
    Example("regex", r"\bdiscount\b", subject, "fail", "no match"),
    Example("regex", {"pattern": r"\bhi\s*,", "absent": True}, subject, "pass"),
    Example(
        "regex",
        {"pattern": r"\bhi\s*,", "absent": True},
        lambda: subject(paragraphs=("Hi ,", "Welcome aboard, the guide is ready for you.")),
        "fail",
        "matches: 'Hi ,'",
    ),
    Example("length", {"subject_chars": [10, 60], "body_words": [20, 120]}, subject, "pass"),
    Example("length", {"body_words": [1, 10]}, subject, "fail", "body_words is"),
    Example("length", {"paragraphs": [1, 2]}, subject, "fail", "paragraphs is 3"),
    Example("mentions_fact", "company", subject, "pass", "'Acme Corp'"),
    Example("mentions_fact", "job_title", subject, "fail", "job_title"),
    Example("mentions_fact", ["job_title", "first_name"], subject, "pass", "first_name"),
    Example("no_invented_facts", None, subject, "pass"),
    Example(
        "no_invented_facts",
        None,
        lambda: subject("Save 30% if you sign up by Friday."),
        "fail",
        "'30%'",
    ),
    Example("no_new_urls", None, subject, "pass"),
    Example("no_new_urls", None, lambda: subject(LINK), "fail", "evil.example"),
    Example(
        "no_new_urls",
        None,
        lambda: subject(links=("https://tracker.example/x",)),
        "fail",
        "the rendered email links to 'https://tracker.example/x'",
    ),
    Example("reading_ease", 50, subject, "pass", "reading ease"),
    Example(
        "reading_ease", 50, lambda: subject(paragraphs=("Hi Dana,", DENSE)), "fail", "(min 50)"
    ),
    Example("tone", None, subject, "pass"),
    Example("tone", None, lambda: subject(PUSHY), "fail", "'hurry'"),
    Example("tone", {"avoid": [], "prefer": ["welcome"]}, subject, "pass"),
    Example("tone", {"avoid": [], "prefer": ["thanks", "glad"]}, subject, "fail", "none of"),
    Example("judge", "Points to the setup guide in a warm tone.", judged(5), "pass", "5/5"),
    Example(
        "judge",
        {"rubric": "Points to the setup guide warmly.", "min_score": 4},
        judged(3),
        "fail",
        "3/5 (min 4)",
    ),
    Example(
        "judge",
        "Points to the setup guide in a warm tone.",
        subject,
        "skip",
        "no judge model configured (set DRIPLINE_JUDGE_MODEL",
    ),
]


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
async def test_assertion(example: Example) -> None:
    assertion = ASSERTIONS[example.assertion]
    verdict = await assertion.run(assertion.parse(example.args), example.make())
    assert verdict.status == example.status, verdict.message
    assert example.says in verdict.message


def test_every_assertion_has_a_passing_and_a_failing_example_and_a_doc() -> None:
    for name, assertion in ASSERTIONS.items():
        statuses = {e.status for e in EXAMPLES if e.assertion == name}
        assert {"pass", "fail"} <= statuses, name
        assert len(assertion.doc) > 60, name


async def test_a_judge_that_gives_no_usable_grade_fails_the_assertion() -> None:
    from evals.judge import JudgeError

    grader = FixedGrader(5, JudgeError("score 9 is not an integer from 1 to 5"))
    assertion = ASSERTIONS["judge"]
    verdict = await assertion.run(assertion.parse("Warm and short."), subject(judge=grader))
    assert verdict.status == "fail" and "no usable grade: score 9" in verdict.message
    assert grader.rubrics == ["Warm and short."]


@pytest.mark.parametrize(
    ("name", "args", "problem"),
    [
        ("guardrails", ["no_such_rule"], "unknown guardrail 'no_such_rule'"),
        ("regex", "([unclosed", "not a regular expression"),
        ("length", {}, "give at least one bound"),
        ("length", {"body_words": [50, 10]}, "0 <= min <= max"),
        ("contains", {"text": []}, "at least 1 item"),
        ("judge", {"rubric": "Good.", "min_score": 4}, "at least 10 characters"),
        ("judge", {"rubric": "A long enough rubric.", "min_score": 6}, "less than or equal to 5"),
        ("tone", {"avoid": [], "loud": True}, "Extra inputs are not permitted"),
    ],
)
def test_bad_arguments_are_refused_when_parsed(name: str, args: Any, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        ASSERTIONS[name].parse(args)


def test_mentions_fact_checks_the_field_exists_in_the_case_contact() -> None:
    contact = make_request().contact
    assert fact_exists(FactArgs(fact=("company", "usage.top")), contact) == (
        "the contact has no usage.top"
    )
    assert fact_exists(FactArgs(fact=("company",)), contact) is None


async def test_mentions_fact_reads_nested_and_list_fields() -> None:
    request = make_request(
        contact={"first_name": "Dana", "usage": {"integrations": ["HubSpot", "Slack"]}}
    )
    assertion = ASSERTIONS["mentions_fact"]
    args = assertion.parse("usage.integrations")
    with_slack = await assertion.run(args, subject("Reports now go to Slack.", request=request))
    assert with_slack.status == "pass" and "'Slack'" in with_slack.message
    without = await assertion.run(args, subject(request=request))
    assert without.status == "fail"
