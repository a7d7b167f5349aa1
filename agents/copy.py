"""The copy seam: what the engine asks for and what it gets back.

agents/ knows nothing of the database. The engine hands over a typed request (contact data,
engagement so far, the step's brief and its already-rendered fallback) and receives a draft.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Fallback:
    """The step's fallback copy, already rendered from its template for this contact."""

    subject: str
    preheader: str
    body: str


@dataclass(frozen=True)
class Cta:
    text: str
    url: str


@dataclass(frozen=True)
class CopyRequest:
    sequence_key: str
    step_id: str
    brief: str
    fallback: Fallback
    contact: Mapping[str, Any]
    cta: Cta | None = None
    variant: str | None = None
    angle: str | None = None
    allowed_links: tuple[str, ...] = ()
    engagement: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Draft:
    subject: str
    preheader: str
    paragraphs: tuple[str, ...]
    cta_text: str | None
    cta_url: str | None
    rationale: str
    model: str


class CopyWriter(Protocol):
    """Anything that turns a request into a draft: the offline composer, or the agent."""

    async def write(self, request: CopyRequest) -> Draft: ...
