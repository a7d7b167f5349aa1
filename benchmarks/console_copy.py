"""The words in the data set, written by the project's own copy agent.

The agent runs for real (the graph, the guardrails, the layout's preview) with the deterministic
heuristic model at its seam (``agents.fake.heuristic_answer`` in a ``FunctionModel``), once per
kind of email: sequence, step, variant, whether the contact has a first name, and what the
heuristic reads of their engagement (the last link clicked and the last one ignored). Each
other email of that kind is that draft with the contact's own first name in place of the
stand-in's, which is what the heuristic writes for them. A step's fallback copy (the model
failed) is composed per contact by the offline composer.

Drafts held for review are built per contact as ``sequences.review.drafting`` and the graph build
them: the engine's copy request (``compose.copy_request`` + ``adaptive.with_variant_stats``),
the graph's own ``choose`` and ``gather`` nodes for the variant and the signals, the composer's
fallback and the real preview. ``draft_templates`` lets the engine draft the rows left for it
and checks that the seeded drafts have the same shape, key for key.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from langgraph.runtime import Runtime
from sqlalchemy import select

from agents import nodes
from agents.agent import CopyAgent
from agents.composer import compose
from agents.copy import CopyRequest, Decision, Draft, EngagementSummary, Finding, ModelCall
from agents.devserver import HEURISTIC_MODEL
from agents.fake import FunctionModel, heuristic_answer
from agents.llm import ModelUnavailable
from agents.state import AgentContext, CopyState
from benchmarks.console_people import Plan
from benchmarks.console_rows import Row
from sequences.definitions.document import EmailStep
from sequences.delivery.compose import (
    StepView,
    build_request,
    copy_request,
    preview_renderer,
    sender_view,
)
from sequences.delivery.outcomes import Job
from sequences.deps import Deps
from sequences.engine.flow import RunContext
from sequences.engine.outbox import Claim
from sequences.runner import run_due
from sequences.signals import adaptive
from sequences.store.tables import DRAFTS, DraftStatus, new_id

STAND_IN = "Wilhelmina"  # the first name the agent writes to; swapped for each contact's
_STAND_IN = re.compile(rf"\b{STAND_IN}\b")
OUTAGE = ModelUnavailable("the endpoint answered 503 Service Unavailable after 3 attempts")
Key = tuple[str, str, str | None, bool, str | None, str | None]
# Keyed by data, not by schema: a contact's attributes, the topics they clicked.
FREE_FORM = frozenset({"request.contact", "request.affinities"})


def heuristic_agent(agent: CopyAgent) -> CopyAgent:
    """The engine's agent (its graphs and checkpoints) with the local heuristic model."""
    return agent.using(FunctionModel(heuristic_answer, HEURISTIC_MODEL))


@dataclass(frozen=True)
class Written:
    """Copy for one email, the model calls it took, and why it is what it is."""

    draft: Draft
    findings: tuple[Finding, ...] = ()
    calls: tuple[ModelCall, ...] = ()
    reason: str = ""  # a fallback's cause, an approval
    choice: dict[str, Any] | None = None  # how the variant was sampled


class Copywriter:
    """The agent's drafts, one per kind of email, each handed out in every contact's name."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._drafts: dict[Key, Written] = {}

    async def write(
        self, ctx: RunContext, step: EmailStep, variant: str | None, summary: EngagementSummary
    ) -> Written:
        name = first_name(ctx)
        clicked, ignored = summary.clicked(), summary.ignored()
        key = (ctx.sequence_key, step.id, variant, name is not None, _last(clicked), _last(ignored))
        found = self._drafts.get(key)
        if found is None:
            found = self._drafts[key] = await self._run(ctx, step, variant, summary)
        return found if name is None else _named(found, name)

    async def _run(
        self, ctx: RunContext, step: EmailStep, variant: str | None, summary: EngagementSummary
    ) -> Written:
        stand_in = replace(ctx, attributes={**ctx.attributes, "first_name": STAND_IN})
        if first_name(ctx) is None:
            stand_in = ctx
        view = StepView(ctx.sequence_key, step.id, step.email, sender_view(ctx))
        request = build_request(
            view,
            stand_in.contact_view(),
            summary,
            preferred_variant=variant,
            prompt_version=ctx.definition.prompt or self.deps.settings.prompt_version,
        )
        result = await self.deps.agent.run(request, preview_renderer(self.deps, stand_in, step))
        outcome = result.outcome
        if outcome is None or outcome.draft is None:
            raise RuntimeError(f"the copy agent wrote nothing for {view.step_id}: {outcome}")
        return Written(outcome.draft, outcome.findings, tuple(result.calls), outcome.reason)

    def composed(
        self, ctx: RunContext, step: EmailStep, variant: str | None, summary: EngagementSummary
    ) -> Written:
        """The step's fallback copy, as the graph sends it when the model is down."""
        reason = f"{OUTAGE.reason} ({OUTAGE})"
        request = copy_request(ctx, step, summary, prompt_version=self.deps.settings.prompt_version)
        failed = ModelCall(model=HEURISTIC_MODEL, purpose="draft", outcome=type(OUTAGE).__name__)
        return Written(compose(request, variant, why=reason), (), (failed,), reason)


def first_name(ctx: RunContext) -> str | None:
    name = ctx.attributes.get("first_name")
    return name if isinstance(name, str) and name else None


def _last(urls: tuple[str, ...]) -> str | None:
    return urls[-1] if urls else None


def _named(written: Written, name: str) -> Written:
    def swap(text: str) -> str:
        return _STAND_IN.sub(lambda _: name, text)

    draft = written.draft
    paragraphs = tuple(swap(p) for p in draft.paragraphs)
    named = draft.model_copy(update={"subject": swap(draft.subject), "paragraphs": paragraphs})
    return replace(written, draft=named)


# ------------------------------------------------------------------------ drafts for review


@dataclass(frozen=True)
class Known:
    """What the engine knows as it drafts: the enrollment's engagement, the contact's topic
    affinities, and the step stats the bandit samples."""

    summary: EngagementSummary
    affinities: dict[str, float]
    stats: adaptive.Stats


@dataclass(frozen=True)
class Reviewed:
    row: Row  # the drafts row, pending
    written: Written


async def review(
    writer: Copywriter, ctx: RunContext, step: EmailStep, known: Known, run_id: int, at: datetime
) -> Reviewed:
    """A draft stopped for a reviewer at ``at``, as ``reviews.record`` stores it."""
    deps = writer.deps
    request = review_request(deps, ctx, step, known)
    state = CopyState(request=request.model_dump())
    picked = nodes.choose(state)
    written = await writer.write(ctx, step, picked["variant"], known.summary)
    written = replace(written, choice=picked.get("choice"))
    render = preview_renderer(deps, ctx, step)
    preview = render(written.draft)
    signals = nodes.gather(state, Runtime(context=AgentContext(model=None, render=render)))
    fallback = compose(request, picked["variant"], why="shown to the reviewer")
    wait = ctx.definition.approval_deadline_duration
    deadline = at + deps.seqtime.real_duration(wait) if wait else None
    row = draft_row(ctx, step, run_id, written.draft, request, (at, deadline))
    row.update(preview_html=preview.html, preview_text=preview.text)
    row["review"] = {
        "findings": [f.model_dump() for f in written.findings],
        "fallback": fallback.model_dump(mode="json"),
        "choice_reason": picked["choice_reason"],
        "fallback_reason": None,
        "signals": signals["signals"],
        "unsubscribe_url": preview.unsubscribe_url,
    }
    return Reviewed(row, written)


def review_request(deps: Deps, ctx: RunContext, step: EmailStep, known: Known) -> CopyRequest:
    """The request ``drafting.prepare`` makes: the step, the contact, the variants' counts."""
    version = deps.settings.prompt_version
    request = copy_request(ctx, step, known.summary, needs_review=True, prompt_version=version)
    seed = adaptive.seed(deps, ctx.enrollment_id, step.id)
    defn = ctx.definition
    return adaptive.with_variant_stats(request, defn, step, known.stats, known.affinities, seed)


def draft_row(
    ctx: RunContext,
    step: EmailStep,
    run_id: int,
    draft: Draft,
    request: CopyRequest,
    times: tuple[datetime, datetime | None],
) -> Row:
    """``times``: when it was made, and its review deadline."""
    claim = Claim(run_id, "", ctx.enrollment_id, step.id, 1, None)
    return {
        "id": new_id("drf"),
        "step_run_id": run_id,
        "revision": 1,
        "thread_id": Job(claim, ctx, step).thread,
        "enrollment_id": ctx.enrollment_id,
        "contact_id": ctx.contact_id,
        "sequence_key": ctx.sequence_key,
        "step_id": step.id,
        "variant": draft.variant,
        "status": DraftStatus.pending,
        "model": draft.model,
        "subject": draft.subject,
        "copy": draft.model_dump(mode="json"),
        "preview_html": "",
        "preview_text": "",
        "review": {},
        "request": request.model_dump(mode="json"),
        "decision": None,
        "decided_by": None,
        "created_at": times[0],
        "deadline_at": times[1],
        "decided_at": None,
    }


def approve(row: Row, by: str, note: str | None, at: datetime) -> None:
    decision = Decision(action="approve", note=note, by=by)
    row.update(status=DraftStatus.approved, decision=decision.model_dump(mode="json"))
    row.update(decided_by=by, decided_at=at)


def ledger(
    ctx: RunContext, step_id: str, run_id: int, written: Written, at: datetime, rng: random.Random
) -> list[Row]:
    """The cost ledger's rows. The in-process model answers in a millisecond; an endpoint takes
    about a second, so that is what the ledger says."""
    return [
        {
            "step_run_id": run_id,
            "sequence_key": ctx.sequence_key,
            "step_id": step_id,
            **call.model_dump(),
            "latency_ms": int(rng.lognormvariate(6.8, 0.35)) if call.outcome == "ok" else 0,
            "created_at": at,
        }
        for call in written.calls
    ]


async def draft_templates(deps: Deps, chosen: list[Plan]) -> None:
    """The engine drafts the rows the templates left due; the seeded drafts must match them."""
    expected = sum(plan.template for plan in chosen)
    ran = await run_due(deps)
    if ran != expected:
        raise RuntimeError(f"the engine ran {ran} outbox rows; the templates left {expected}")
    real = {plan.enrollment_id for plan in chosen if plan.template}
    async with deps.reader.connect() as conn:
        rows = (await conn.execute(select(DRAFTS).where(DRAFTS.c.status == "pending"))).all()
    by_step = {r.step_id: r for r in rows if r.enrollment_id not in real}
    for made in (r for r in rows if r.enrollment_id in real and r.step_id in by_step):
        problems = [
            problem
            for column in ("copy", "review", "request")
            for problem in same_shape(
                made._mapping[column], by_step[made.step_id]._mapping[column], column
            )
        ]
        if problems:
            raise RuntimeError(f"seeded drafts differ from the engine's: {problems[:5]}")


def same_shape(real: Any, seeded_value: Any, path: str) -> list[str]:
    """Where two JSON values differ in keys or types (values may differ; nulls match all)."""
    if real is None or seeded_value is None or path in FREE_FORM:
        return []
    if isinstance(real, dict) and isinstance(seeded_value, dict):
        if set(real) != set(seeded_value):
            return [f"{path}: keys {sorted(set(real) ^ set(seeded_value))}"]
        return [
            p for key in real for p in same_shape(real[key], seeded_value[key], f"{path}.{key}")
        ]
    if isinstance(real, list) and isinstance(seeded_value, list):
        pairs = zip(real[:1], seeded_value[:1], strict=False)
        return [p for a, b in pairs for p in same_shape(a, b, f"{path}[0]")]
    numbers = (int, float)
    if isinstance(real, numbers) and isinstance(seeded_value, numbers):
        return []
    return [] if type(real) is type(seeded_value) else [f"{path}: {type(real).__name__}"]
