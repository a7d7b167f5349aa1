"""Assertions that reuse the copy graph's own guardrails (agents/guardrails.py)."""

from __future__ import annotations

import html
import re

from pydantic import field_validator

from agents import guardrails
from evals.assertions.base import Args, Assertion, NoArgs, Subject, Verdict

_HREF = re.compile(r"""\bhref\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


class RuleArgs(Args):
    rules: tuple[str, ...] = ()  # a subset of the guardrails; all of them when empty

    @field_validator("rules", mode="before")
    @classmethod
    def _known(cls, value: object) -> object:
        names = (value,) if isinstance(value, str) else value
        for name in names if isinstance(names, list | tuple) else ():
            if name not in guardrails.RULE_NAMES:
                known = ", ".join(guardrails.RULE_NAMES)
                raise ValueError(f"unknown guardrail {name!r} (known: {known})")
        return names


def check_guardrails(args: RuleArgs, s: Subject) -> Verdict:
    """The graph's own guardrails (schema_valid, length_bounds, no_placeholders, allowed_links,
    no_invented_facts, spam_phrases, no_injected_text, greeting_named, no_unbacked_offers,
    unsubscribe_present) pass on the email that would be sent, and that email is the model's
    own: when the graph refused the model's drafts and fell back to the offline composer, this
    fails and says why. `rules` narrows it."""
    findings = [*guardrails.check_copy(s.draft, s.request), *guardrails.check_preview(s.preview)]
    wanted = set(args.rules or guardrails.RULE_NAMES)
    problems = [f"{f.rule}: {f.message}" for f in guardrails.failed(findings) if f.rule in wanted]
    if s.fallback_reason:
        problems.insert(0, f"fell back to the offline composer ({s.fallback_reason})")
    return Verdict.of(problems)


def check_no_invented_facts(args: NoArgs, s: Subject) -> Verdict:
    """No number, price, date or name that is in neither the step (brief, fallback, CTA) nor the
    contact's data nor earlier subjects: the guardrail no_invented_facts, on its own."""
    finding = guardrails.no_invented_facts(s.draft, s.request)
    return Verdict.of([finding.message] if not finding.ok else [])


def check_no_new_urls(args: NoArgs, s: Subject) -> Verdict:
    """Every URL in the copy is one the step allows (the guardrail allowed_links), and every
    link in the rendered email is the step's CTA, one of its links, or the unsubscribe link."""
    finding = guardrails.allowed_links(s.draft, s.request)
    problems = [finding.message] if not finding.ok else []
    allowed = {*s.request.links, s.preview.unsubscribe_url}
    problems += [
        f"the rendered email links to {url!r}"
        for url in dict.fromkeys(html.unescape(u) for u in _HREF.findall(s.preview.html))
        if url not in allowed
    ]
    return Verdict.of(problems)


GUARDRAILS = Assertion("guardrails", check_guardrails, RuleArgs, shorthand="rules")
NO_INVENTED_FACTS = Assertion("no_invented_facts", check_no_invented_facts)
NO_NEW_URLS = Assertion("no_new_urls", check_no_new_urls)
