"""The offline composer: copy from the step's fallback, with no model involved.

It is the model when none is configured, and what the agent falls back to when the model fails,
so a broken API never leaves a sequence dead. Its drafts say so in ``model``.
"""

from __future__ import annotations

import re

from agents.copy import CopyRequest, Draft

COMPOSER_MODEL = "offline-composer"
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def split_paragraphs(body: str) -> tuple[str, ...]:
    """Blank lines separate paragraphs; single newlines inside one are folded to spaces."""
    parts = (" ".join(p.split()) for p in _PARAGRAPH_BREAK.split(body.strip()))
    return tuple(p for p in parts if p)


def compose(request: CopyRequest, variant: str | None = None, *, why: str = "") -> Draft:
    """The step's fallback copy for ``variant`` (or the step's own), labelled as such."""
    fallback = request.fallback_for(variant)
    option = request.variant(variant)
    reason = why or "no model configured"
    angle = f" (variant {option.id}: {option.angle})" if option else ""
    return Draft(
        subject=" ".join(fallback.subject.split()),
        preheader=fallback.preheader or _first_sentence(fallback.body),
        paragraphs=split_paragraphs(fallback.body),
        cta_text=request.cta.text if request.cta else None,
        cta_url=request.cta.url if request.cta else None,
        rationale=f"Offline composer: the step's fallback copy{angle}; {reason}.",
        model=COMPOSER_MODEL,
        variant=variant,
    )


def _first_sentence(body: str) -> str:
    text = " ".join(body.split())
    match = re.match(r"(.{1,140}?[.!?])(\s|$)", text)
    return match.group(1) if match else text[:140]
