"""Deterministic models at our seam, for tests, evaluations and the demo. No network.

``FunctionModel`` answers with whatever a plain function returns (or raises), pydantic-ai style.
``heuristic_answer`` is such a function that writes a plausible, adaptive email from the prompt
alone: it reads the step's brief, its call to action and the ``<data>`` block the way a model
would (agents.fake_copy), so the whole prompt path is exercised and each step reads like
itself. Its rationale says it is a stand-in, so no reviewer mistakes it for a model's work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from agents.fake_copy import Composed, compose, shorten
from agents.llm import Completion, Message

Answer = Callable[[list[Message]], str]
# Said in every draft's rationale (what a reviewer reads): these rules are not a language model.
STAND_IN_NOTE = "Stand-in model (rules, not an LLM):"


class FunctionModel:
    def __init__(self, answer: Answer, name: str = "function-model") -> None:
        self.name = name
        self._answer = answer
        self.requests: list[list[Message]] = []

    async def complete(
        self, messages: list[Message], schema: dict[str, Any], schema_name: str
    ) -> Completion:
        self.requests.append(messages)
        content = self._answer(messages)  # may raise a ModelError, like a real endpoint
        prompt = sum(len(m["content"]) for m in messages) // 4
        return Completion(content, self.name, prompt, len(content) // 4, 0, 1)


def prompt_data(messages: list[Message]) -> dict[str, Any]:
    """The JSON inside the first user message's ``<data>`` block."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    found = re.search(r"<data>\s*(.*?)\s*</data>", user, re.DOTALL)
    return json.loads(found.group(1)) if found else {}


def prompt_field(messages: list[Message], label: str) -> str:
    user = next(m["content"] for m in messages if m["role"] == "user")
    # A field ends at a blank line or at the next label: "CALL TO ACTION:", "ANGLE for this ...".
    end = r"(?:\n\s*\n|\n[A-Z]{2,}[A-Z ]*(?::|\s[a-z(]))"
    found = re.search(rf"^{label}:\s*(.*?){end}", user + "\n\n", re.M | re.S)
    return " ".join(found.group(1).split()) if found else ""


def heuristic_answer(messages: list[Message]) -> str:
    data = prompt_data(messages)
    recipient = data.get("recipient", {})
    attributes = recipient.get("attributes", recipient)
    engagement = data.get("engagement", {})
    clicked = [u for e in engagement.get("emails_so_far", []) for u in e["clicked_links"]]
    ignored = [u for e in engagement.get("emails_so_far", []) for u in e["ignored_links"]]
    name = _safe_name(attributes.get("first_name"))
    cta = prompt_field(messages, "CALL TO ACTION")
    label = None if cta.startswith("none") else cta.split("->")[0].strip()
    brief = compose(prompt_field(messages, "BRIEF"))
    angle = prompt_field(messages, "ANGLE for this variant")
    lead, why = _lead(clicked, ignored)
    said = [lead, *brief.lines[:3]] if lead else brief.lines[:3]
    paragraphs = [
        f"Hi {name}," if name else "Hi there,",
        " ".join(said) or "Here is where to start.",
        *brief.items[:3],
        " ".join(brief.lines[3:]),
        f"{label}: it takes you straight there, whenever you have a quiet moment."
        if label
        else "Have a look whenever you have a quiet moment.",
        "Reply to this email if a question comes up; a person reads every reply.",
    ]
    answer = {
        "subject": _subject(brief.subject, clicked, name, prompt_field(messages, "STEP")),
        "preheader": _preheader(brief),
        "paragraphs": [p for p in paragraphs if p],
        "cta_text": label,
        "rationale": f"{STAND_IN_NOTE} {why}" + (f" Angle: {angle}." if angle else ""),
    }
    return json.dumps(answer)


def _lead(clicked: list[str], ignored: list[str]) -> tuple[str, str]:
    if clicked:
        topic = _topic(clicked[-1])
        skipped = f"; left {_topic(ignored[-1])} aside" if ignored else ""
        return (
            f"Since you took a look at {topic}, here is the next step on that.",
            f"Clicked {topic}{skipped}: leading with {topic}.",
        )
    if ignored:
        topic = _topic(ignored[-1])
        return (
            "Here is a different way to look at it, in two minutes.",
            f"No clicks so far ({topic} did not land): trying a new angle.",
        )
    return "", "No engagement yet: the brief's points, in its order."


def _subject(phrase: str, clicked: list[str], name: str | None, step: str) -> str:
    """The brief's own subject phrase (so each step has its own), the clicked topic first."""
    base = phrase or (f"A note on {step.replace('-', ' ')}" if step else "A quick next step")
    if clicked:  # the step's own subject still leads, so a clicker's emails differ too
        topic = _topic(clicked[-1])
        tail = f", and more on {topic}"
        options = [base + tail, shorten(base, 60 - len(tail)) + tail, f"More on {topic}"]
    else:
        options = [f"{base}, {name}", base] if name else [base]
    return next((o for o in options if len(o) <= 60), options[-1][:60])


def _preheader(brief: Composed) -> str:
    """One sentence after the subject: the brief's second point, or its first."""
    lines = brief.lines[1:2] or brief.lines[:1] or ["A short note for this step."]
    text = lines[0] if not brief.items else f"{lines[0]} {' '.join(brief.items[:2])}"
    return text if len(text) <= 140 else text[:137].rsplit(" ", 1)[0] + "..."


def _topic(url: str) -> str:
    path = urlparse(url).path.strip("/").split("/")[-1] or urlparse(url).netloc
    return path.replace("-", " ").replace("_", " ")


def _safe_name(value: Any) -> str | None:
    """A first name that looks like one: a model should not greet an injection payload."""
    if not isinstance(value, str):
        return None
    name = " ".join(value.split())
    plausible = re.fullmatch(r"[^\W\d_][^\W\d_ .'-]*(?:[ .'-]+[^\W\d_]+){0,2}\.?", name)
    return name if plausible and len(name) <= 40 else None
