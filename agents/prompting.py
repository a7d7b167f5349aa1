"""Versioned prompts: ``prompts/drafting/<version>/`` holds system.j2, user.j2 and revise.j2.

The system prompt is static, so it comes first and providers' prefix caching applies to it; only
the user message varies. Missing variables are errors, never blanks. Contact data goes in as JSON
inside a ``<data>`` block, with ``<`` escaped so no value can close the block.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, FunctionLoader, StrictUndefined, Template, TemplateNotFound

from agents.copy import CopyRequest, Draft, Finding
from agents.llm import Message

VERSION_PATTERN = re.compile(r"^v[0-9]+[a-z0-9-]*$")
_PARTS = ("system.j2", "user.j2", "revise.j2")


class PromptError(ValueError):
    """A prompt version that does not exist, or a template that needs a missing variable."""


def _load(name: str) -> str:
    path = resources.files("prompts").joinpath(name)
    if not path.is_file():
        raise TemplateNotFound(name)
    return path.read_text(encoding="utf-8")


_env = Environment(
    loader=FunctionLoader(_load),
    undefined=StrictUndefined,
    autoescape=False,  # plain text for a model; the data block is JSON-quoted instead
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


def versions() -> list[str]:
    root = resources.files("prompts").joinpath("drafting")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name))


def check_version(version: str) -> None:
    """Refuse an unknown version before a sequence that names it is stored."""
    if version not in versions():
        raise PromptError(f"no prompt version {version!r} (have: {', '.join(versions())})")


@lru_cache(maxsize=64)
def _template(version: str, part: str) -> Template:
    check_version(version)
    return _env.get_template(f"drafting/{version}/{part}")


def quote_data(value: Any) -> str:
    """JSON that cannot end the ``<data>`` block it sits in."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e")


def draft_messages(
    request: CopyRequest, variant: str | None, reviewer_note: str | None = None
) -> list[Message]:
    option = request.variant(variant)
    values = {
        "sequence_key": request.sequence_key,
        "step_id": request.step_id,
        "sender_name": request.sender_name or "the sender",
        "brief": request.brief,
        "angle": option.angle if option else None,
        "cta": request.cta,
        "links": list(request.allowed_links),
        "contact_json": quote_data(request.contact),
        "engagement_json": quote_data(request.engagement.for_prompt()),
        "reviewer_note": quote_data(reviewer_note) if reviewer_note else None,
    }
    return [
        {"role": "system", "content": _render(request.prompt_version, "system.j2", {})},
        {"role": "user", "content": _render(request.prompt_version, "user.j2", values)},
    ]


def revise_messages(
    request: CopyRequest, previous: list[Message], answer: str, findings: list[Finding]
) -> list[Message]:
    failed = [f for f in findings if not f.ok]
    note = _render(request.prompt_version, "revise.j2", {"findings": failed})
    return [*previous, {"role": "assistant", "content": answer}, {"role": "user", "content": note}]


def _render(version: str, part: str, values: dict[str, Any]) -> str:
    try:
        return _template(version, part).render(**values).strip()
    except TemplateNotFound as error:
        raise PromptError(f"prompt version {version!r} has no {error.name}") from error
    except Exception as error:  # StrictUndefined: a variable the template needs is missing
        raise PromptError(f"prompt {version}/{part}: {error}") from error


def draft_of(
    answer: dict[str, Any], request: CopyRequest, variant: str | None, model: str
) -> Draft:
    """The model's JSON answer as a Draft; the CTA's URL always comes from the step."""
    return Draft(
        subject=str(answer["subject"]).strip(),
        preheader=str(answer.get("preheader") or "").strip(),
        paragraphs=tuple(str(p).strip() for p in answer["paragraphs"] if str(p).strip()),
        # The step's own label stands in when the model left the button unnamed.
        cta_text=(str(answer.get("cta_text") or "").strip() or request.cta.text)
        if request.cta
        else None,
        cta_url=request.cta.url if request.cta else None,
        rationale=str(answer.get("rationale") or "").strip()[:500],
        model=model,
        variant=variant,
    )
