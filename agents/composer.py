"""The offline composer: copy from the step's fallback, with no model involved.

It is the default when no model is configured, and what the agent falls back to when the model
fails, so a broken API never leaves a sequence dead. Its drafts say so in ``model``.
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


class OfflineComposer:
    async def write(self, request: CopyRequest) -> Draft:
        return compose(request)


def compose(request: CopyRequest) -> Draft:
    fallback = request.fallback
    preheader = fallback.preheader or _first_sentence(fallback.body)
    angle = f" (variant {request.variant}: {request.angle})" if request.variant else ""
    return Draft(
        subject=" ".join(fallback.subject.split()),
        preheader=preheader,
        paragraphs=split_paragraphs(fallback.body),
        cta_text=request.cta.text if request.cta else None,
        cta_url=request.cta.url if request.cta else None,
        rationale=f"Offline composer: the step's fallback copy{angle}; no model configured.",
        model=COMPOSER_MODEL,
    )


def _first_sentence(body: str) -> str:
    text = " ".join(body.split())
    match = re.match(r"(.{1,140}?[.!?])(\s|$)", text)
    return match.group(1) if match else text[:140]
