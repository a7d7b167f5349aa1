"""Fallback copy quotes the contact as they would read it: no markup, no blank names."""

from __future__ import annotations

from agents.copy import EngagementSummary
from sequences.definitions.document import EmailSpec
from sequences.delivery.compose import StepView, as_written, build_request

WELCOME = EmailSpec.model_validate(
    {
        "brief": "Welcome them.",
        "fallback": {
            "subject": "Welcome to {{ contact.company | default('Acme', true) }}",
            "body": "Hi {{ contact.first_name | default('there', true) }},\n\nThe guide is ready.",
        },
    }
)
STEP = StepView("trial", "welcome", WELCOME, {"name": "Dana", "email": "dana@acme.test"})


def test_markup_and_blank_names_never_reach_the_fallback_copy() -> None:
    contact = {"first_name": "   ", "company": "<script>alert(1)</script><b>Globex</b>  Inc"}
    request = build_request(STEP, contact, EngagementSummary())
    assert request.fallback.body.startswith("Hi there,")
    assert request.fallback.subject == "Welcome to Globex Inc"
    assert request.contact == contact  # the model still reads what the contact typed


def test_as_written_keeps_what_is_not_markup() -> None:
    cleaned = as_written({"name": " R&D <team> ", "seats": 12, "tags": ["<b>x</b>"], "a": "1 < 2"})
    assert cleaned == {"name": "R&D", "seats": 12, "tags": ["<b>x</b>"], "a": "1 < 2"}
