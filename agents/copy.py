"""The copy seam: what the engine asks for and what it gets back.

agents/ knows nothing of the database. The engine hands over a typed request (contact data, the
engagement so far, the step's brief, its candidates and its already-rendered fallback) and gets
back a decision and a draft. Every type here is a frozen pydantic model, so a request or a draft
can be stored with a pending review and read back unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.bandit import ArmStats, Choice, Goal
from agents.llm import Attempt


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Fallback(_Frozen):
    """The step's fallback copy, already rendered from its template for this contact."""

    subject: str
    preheader: str = ""
    body: str


class Cta(_Frozen):
    text: str
    url: str


class PastStep(_Frozen):
    """One email this enrollment already received, and what the contact did with it."""

    step_id: str
    subject: str
    sent_at: str
    opened: bool = False  # unverified: privacy proxies fetch every pixel
    clicked: tuple[str, ...] = ()  # the URLs a human clicked (bot clicks are left out)
    offered: tuple[str, ...] = ()  # every link the email carried
    replied: bool = False

    @property
    def ignored(self) -> tuple[str, ...]:
        """Links the email offered that were not clicked."""
        return tuple(url for url in self.offered if url not in self.clicked)


class EngagementSummary(_Frozen):
    history: tuple[PastStep, ...] = ()
    events: tuple[str, ...] = ()  # every human event type in the enrollment, oldest first
    score: float = 0.0

    def clicked(self) -> tuple[str, ...]:
        return tuple(url for step in self.history for url in step.clicked)

    def ignored(self) -> tuple[str, ...]:
        clicked = set(self.clicked())
        return tuple(url for step in self.history for url in step.ignored if url not in clicked)

    def for_prompt(self) -> dict[str, Any]:
        """The summary as the model reads it: per email, what was said and what happened."""
        return {
            "emails_so_far": [
                {
                    "step": s.step_id,
                    "subject": s.subject,
                    "sent_at": s.sent_at,
                    "opened_unverified": s.opened,
                    "clicked_links": list(s.clicked),
                    "ignored_links": list(s.ignored),
                    "replied": s.replied,
                }
                for s in self.history
            ],
            "other_events": [e for e in self.events if e not in _EMAIL_EVENTS],
            "engagement_score": round(self.score, 2),
        }


_EMAIL_EVENTS = frozenset({"delivered", "opened", "clicked", "replied"})


class VariantOption(_Frozen):
    """One variant the definition allows for this step, with what feedback says of it."""

    id: str
    angle: str
    score: float | None = None  # the goal's value at the posterior means
    topics: tuple[str, ...] = ()
    stats: ArmStats | None = None


class CopyRequest(_Frozen):
    sequence_key: str
    step_id: str
    brief: str
    fallback: Fallback
    contact: dict[str, Any]
    sender_name: str = ""
    cta: Cta | None = None
    variants: tuple[VariantOption, ...] = ()
    # The engine's pick among ``variants`` (a stable split today); the choose node starts there.
    preferred_variant: str | None = None
    # Fallback copy per variant id, when a variant brings its own.
    variant_fallbacks: dict[str, Fallback] = Field(default_factory=dict)
    allowed_links: tuple[str, ...] = ()
    engagement: EngagementSummary = EngagementSummary()
    prompt_version: str = "v1"
    needs_review: bool = False
    # Adaptive variant choice: with a seed, the choose node samples the variants' posteriors
    # (blended with the contact's topic affinities) instead of taking ``preferred_variant``.
    choice_seed: int | None = None
    goal: Goal = "engagement"
    affinity_weight: float = 1.0
    affinities: dict[str, float] = Field(default_factory=dict)
    # Contact fields kept out of the copy and this request ("contact.company (markup)").
    held_fields: tuple[str, ...] = ()
    # What happens to copy the gate refuses: the step is skipped, or held for a reviewer.
    refused_copy: Literal["skip", "hold"] = "skip"

    @property
    def links(self) -> tuple[str, ...]:
        """Every URL the step may carry: its links and its call to action."""
        return self.allowed_links + ((self.cta.url,) if self.cta else ())

    def variant(self, variant_id: str | None) -> VariantOption | None:
        return next((v for v in self.variants if v.id == variant_id), None)

    def fallback_for(self, variant_id: str | None) -> Fallback:
        return self.variant_fallbacks.get(variant_id or "", self.fallback)


class Draft(_Frozen):
    subject: str
    preheader: str
    paragraphs: tuple[str, ...]
    cta_text: str | None
    cta_url: str | None
    rationale: str
    model: str
    variant: str | None = None

    @property
    def body(self) -> str:
        return "\n\n".join(self.paragraphs)

    def text(self) -> str:
        """Everything a reader sees, for the guardrails to read."""
        parts = [self.subject, self.preheader, *self.paragraphs, self.cta_text or ""]
        return "\n".join(p for p in parts if p)


class Finding(_Frozen):
    """One guardrail's verdict on a draft."""

    rule: str
    ok: bool
    message: str = ""


class Preview(_Frozen):
    """A draft rendered into the step's layout, as a reviewer sees it before it is sent."""

    html: str
    text: str
    unsubscribe_url: str


class ModelCall(_Frozen):
    """One request to the model, for the cost ledger."""

    model: str
    purpose: Literal["draft", "revise"]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: int = 0
    outcome: str = "ok"
    # Each HTTP request behind this call, for the timeline; not a ledger column.
    attempts: tuple[Attempt, ...] = Field(default=(), exclude=True)


class Decision(_Frozen):
    """What a reviewer (or a passed deadline) decided about a draft waiting for review."""

    action: Literal["approve", "regenerate", "fallback", "skip"]
    subject: str | None = None
    preheader: str | None = None
    body: str | None = None
    note: str | None = None
    by: str = "reviewer"


class Outcome(_Frozen):
    """What the graph returns once it is done: a draft to send, or the step skipped."""

    action: Literal["send", "skip"]
    draft: Draft | None = None
    reason: str = ""
    findings: tuple[Finding, ...] = ()
    preview: Preview | None = None
    choice: Choice | None = None  # how the variant was picked, for the timeline and replays
