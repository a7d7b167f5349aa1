"""Versioned prompts: ``prompts/drafting/<version>/`` holds system.j2, user.j2 and revise.j2
(and ``prompts/judge/<version>/`` the evaluation judge's).

The system prompt is static, so it comes first and providers' prefix caching applies to it; only
the user message varies. Missing variables are errors, never blanks. Contact data goes in as JSON
inside a ``<data>`` block, with ``<`` escaped so no value can close the block.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FunctionLoader, StrictUndefined, Template, TemplateNotFound

from agents.copy import CopyRequest, Draft, Finding
from agents.llm import Message

VERSION_PATTERN = re.compile(r"^v[0-9]+[a-z0-9-]*$")

Root = Traversable | Path


class PromptError(ValueError):
    """A prompt version that does not exist, or a template that needs a missing variable."""


class Prompts:
    """The prompt templates under one or more roots, searched in order.

    The package's own ``prompts/`` is always the last root. An evaluator's ``--prompts-dir`` (or
    a test's fixture folder) goes in front, so a candidate version can be tried without copying
    it into the installed package.
    """

    def __init__(self, *extra: Root) -> None:
        self.roots: tuple[Root, ...] = (*extra, resources.files("prompts"))
        self.env = Environment(
            loader=FunctionLoader(self._load),
            undefined=StrictUndefined,
            autoescape=False,  # plain text for a model; the data block is JSON-quoted instead
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def _load(self, name: str) -> str:
        for root in self.roots:
            path = root.joinpath(*name.split("/"))
            if path.is_file():
                return path.read_text(encoding="utf-8")
        raise TemplateNotFound(name)

    def versions(self, family: str = "drafting") -> list[str]:
        found: set[str] = set()
        for root in self.roots:
            folder = root.joinpath(family)
            if folder.is_dir():
                found |= {p.name for p in folder.iterdir() if p.is_dir()}
        return sorted(v for v in found if VERSION_PATTERN.match(v))

    def check_version(self, version: str, family: str = "drafting") -> None:
        """Refuse an unknown version before anything that names it is stored or run."""
        have = self.versions(family)
        if version not in have:
            raise PromptError(f"no prompt version {version!r} (have: {', '.join(have)})")

    def render(self, family: str, version: str, part: str, values: dict[str, Any]) -> str:
        try:
            return _template(self, family, version, part).render(**values).strip()
        except TemplateNotFound as error:
            raise PromptError(f"prompt version {version!r} has no {error.name}") from error
        except PromptError:
            raise
        except Exception as error:  # StrictUndefined: a variable the template needs is missing
            raise PromptError(f"prompt {version}/{part}: {error}") from error

    def draft_messages(
        self, request: CopyRequest, variant: str | None, reviewer_note: str | None = None
    ) -> list[Message]:
        values = _draft_values(request, variant, reviewer_note)
        version = request.prompt_version
        return [
            {"role": "system", "content": self.render("drafting", version, "system.j2", {})},
            {"role": "user", "content": self.render("drafting", version, "user.j2", values)},
        ]

    def revise_messages(
        self, request: CopyRequest, previous: list[Message], answer: str, findings: list[Finding]
    ) -> list[Message]:
        failed = [f for f in findings if not f.ok]
        note = self.render("drafting", request.prompt_version, "revise.j2", {"findings": failed})
        return [
            *previous,
            {"role": "assistant", "content": answer},
            {"role": "user", "content": note},
        ]


@lru_cache(maxsize=128)
def _template(prompts: Prompts, family: str, version: str, part: str) -> Template:
    prompts.check_version(version, family)
    return prompts.env.get_template(f"{family}/{version}/{part}")


# The installed package's prompts: what the engine drafts with.
PACKAGED = Prompts()


def versions() -> list[str]:
    return PACKAGED.versions()


def check_version(version: str) -> None:
    """Refuse an unknown version before a sequence that names it is stored."""
    PACKAGED.check_version(version)


def quote_data(value: Any) -> str:
    """JSON that cannot end the ``<data>`` block it sits in."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e")


def draft_messages(
    request: CopyRequest, variant: str | None, reviewer_note: str | None = None
) -> list[Message]:
    return PACKAGED.draft_messages(request, variant, reviewer_note)


def revise_messages(
    request: CopyRequest, previous: list[Message], answer: str, findings: list[Finding]
) -> list[Message]:
    return PACKAGED.revise_messages(request, previous, answer, findings)


def _draft_values(
    request: CopyRequest, variant: str | None, reviewer_note: str | None
) -> dict[str, Any]:
    option = request.variant(variant)
    return {
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
