"""Shared pieces of the eval tests: an email under test, suites written on the fly, a counting
model, and the paths of the shipped suites and of the deliberately worse prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guardrail_cases import make_draft, make_request

from agents.copy import CopyRequest, Draft, Preview
from agents.fake import FunctionModel, heuristic_answer
from evals.assertions.base import Grader, Subject

ROOT = Path(__file__).resolve().parent.parent
SUITES = sorted((ROOT / "evals" / "suites").glob("*.yaml"))
RECORDINGS = ROOT / "evals" / "recordings"
WORSE_PROMPTS = ROOT / "tests" / "fixtures" / "prompts"
WORSE = "v9-no-data"  # drops the recipient's data and the CTA from the user message
UNSUBSCRIBE = "https://dripline.example/u/test"


def preview(draft: Draft, *links: str) -> Preview:
    """The draft in a minimal layout: its button, any ``links``, and the unsubscribe link."""
    hrefs = [draft.cta_url, *links] if draft.cta_url else list(links)
    anchors = "".join(f'<a href="{url}">link</a>' for url in hrefs)
    html = f"<p>{draft.body}</p>{anchors}<a href='{UNSUBSCRIBE}'>Unsubscribe</a>"
    text = f"{draft.body}\n\nUnsubscribe: {UNSUBSCRIBE}"
    return Preview(html=html, text=text, unsubscribe_url=UNSUBSCRIBE)


def subject(
    *paragraphs: str,
    request: CopyRequest | None = None,
    links: tuple[str, ...] = (),
    judge: Grader | None = None,
    fallback_reason: str | None = None,
    **changes: Any,
) -> Subject:
    """A good email (guardrail_cases' draft) with ``paragraphs`` added and ``changes`` made."""
    draft = make_draft(*paragraphs, **changes)
    return Subject(
        request=request or make_request(),
        draft=draft,
        preview=preview(draft, *links),
        fallback_reason=fallback_reason,
        judge=judge,
    )


def counting_model(name: str = "fake-heuristic") -> FunctionModel:
    """The deterministic model; ``.requests`` lists every call that reached it."""
    return FunctionModel(heuristic_answer, name=name)


def suite_text(cases: str, expect: str = "[guardrails]", step: str = "") -> str:
    """A small valid suite with ``cases`` (YAML, indented by four) and top-level ``expect``."""
    steps = step or (
        "  hello:\n"
        "    brief: Welcome them and point them to the quickstart.\n"
        "    cta: {text: Open the quickstart, url: 'https://acme.test/quickstart'}\n"
        "    fallback: {subject: 'Welcome, {{ contact.first_name | default(\"there\", true) }}',"
        " body: 'Hi there, welcome.'}\n"
    )
    return (
        "suite: tiny\nsequence: tiny\nsender: {name: Dana at Acme}\n"
        f"steps:\n{steps}expect: {expect}\ncases:\n{cases}"
    )
