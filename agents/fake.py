"""Deterministic models at our seam, for tests, evaluations and the demo. No network.

``FunctionModel`` answers with whatever a plain function returns (or raises), pydantic-ai style.
``heuristic_answer`` is such a function that writes a plausible, adaptive email from the prompt
alone: it reads the brief and the ``<data>`` block the way a model would, so the whole prompt
path is exercised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from agents.llm import Completion, Message

Answer = Callable[[list[Message]], str]


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
    lead, why = _lead(clicked, ignored)
    paragraphs = [
        f"Hi {name}," if name else "Hi there,",
        lead,
        f"The button below ({label}) takes you straight there, whenever you have a quiet moment."
        if label
        else "Have a look whenever you have a quiet moment.",
        "Reply to this email if a question comes up; a person reads every reply.",
    ]
    subject = _subject(clicked, name)
    answer = {
        "subject": subject,
        "preheader": "A short note picked for what you looked at so far.",
        "paragraphs": [p for p in paragraphs if p],
        "cta_text": label,
        "rationale": why,
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
    return "Here is where to start.", "No engagement yet: a plain first step from the brief."


def _subject(clicked: list[str], name: str | None) -> str:
    if clicked:
        return f"More on {_topic(clicked[-1])}" + (f", {name}" if name else "")
    return f"A quick next step, {name}" if name else "A quick next step"


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
