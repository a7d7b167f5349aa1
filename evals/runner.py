"""Running suites: every case on every side through the real copy graph, concurrently.

Each case goes through ``CopyAgent.run`` as the engine would run it (guardrails, revision,
fallback and rendering in the real MJML layout), with the model behind a CachingModel. Then its
expectations are checked against the email that would be sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.agent import CopyAgent
from agents.composer import COMPOSER_MODEL
from agents.config import ModelConfig
from agents.copy import CopyRequest, Draft, Preview
from agents.llm import ChatModel
from agents.state import Render
from evals.assertions.base import Expectation, Subject, Verdict
from evals.cache import CachingModel, Call, RecordingMissing, Store
from evals.judge import JUDGE_VERSION, Judge
from evals.sides import Side
from evals.suites import Case, Suite
from sequences.delivery.compose import render_draft
from sequences.mail.render import LayoutRenderer

UNSUBSCRIBE = "https://dripline.example/u/eval-preview"
# A model call that failed for reasons of the endpoint, not of the copy: the case is not scored.
_UNREACHABLE = frozenset({"ModelUnavailable", "ModelRefused"})


@dataclass(frozen=True)
class JudgeSetup:
    config: ModelConfig
    chat: ChatModel | None  # None in replay mode


@dataclass
class CaseResult:
    case: Case
    side: str
    prompt: str
    model: str
    draft: Draft | None = None
    preview: Preview | None = None
    reason: str = ""  # why the graph sent what it sent, when it says (a fallback's cause)
    fell_back: bool = False
    verdicts: list[tuple[Expectation, Verdict]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    cost_usd: float = 0.0  # what the email's model calls cost when the model answered them
    judge_usd: float = 0.0  # the same for the judge's calls, kept apart: not the email's cost
    spent_usd: float = 0.0  # what this run paid for both (nothing for cached or recorded answers)
    seconds: float = 0.0
    error: str | None = None  # the case could not be scored: a missing recording, no endpoint

    @property
    def passed(self) -> bool:
        return self.error is None and all(v.status != "fail" for _, v in self.verdicts)

    def count(self, status: str) -> int:
        return sum(1 for _, v in self.verdicts if v.status == status)


@dataclass
class Harness:
    """What every case of a run shares."""

    store: Store
    agent: CopyAgent  # graphs compiled once; each case swaps its own model in
    renderer: LayoutRenderer = field(default_factory=LayoutRenderer)
    judge: JudgeSetup | None = None
    concurrency: int = 4
    on_done: Callable[[CaseResult], None] = lambda result: None


async def run(suites: list[Suite], sides: list[Side], harness: Harness) -> list[CaseResult]:
    """Every case on every side, at most ``concurrency`` at once; results in input order."""
    gate = asyncio.Semaphore(harness.concurrency)

    async def one(case: Case, side: Side) -> CaseResult:
        async with gate:
            result = await run_case(case, side, harness)
        harness.on_done(result)
        return result

    jobs = [one(case, side) for side in sides for suite in suites for case in suite.cases]
    return list(await asyncio.gather(*jobs))


async def run_case(case: Case, side: Side, harness: Harness) -> CaseResult:
    started = time.perf_counter()
    result = CaseResult(case, side.label, side.prompt, side.model)
    request = case.request.model_copy(update={"prompt_version": side.prompt})
    try:
        await _draft(result, request, side, harness)
        if result.error is None:
            await _check(result, request, harness)
    except RecordingMissing as error:
        result.error = str(error)
    result.seconds = time.perf_counter() - started
    return result


async def _draft(result: CaseResult, request: CopyRequest, side: Side, h: Harness) -> None:
    case = result.case
    model = None
    if not side.offline and case.writer == "model":
        model = CachingModel(
            side.model, side.chat, h.store, case.suite, side.prompt, side.config.temperature
        )
    answer = await h.agent.using(model).run(request, _render(case, h.renderer))
    outcome = answer.outcome
    failed = [c for c in answer.calls if c.outcome in _UNREACHABLE]
    if failed:
        why = outcome.reason if outcome else failed[0].outcome
        result.error = f"the model could not be reached: {why}"
    if outcome is None or outcome.draft is None or outcome.preview is None:
        result.error = result.error or f"the graph sent nothing: {outcome and outcome.reason}"
        return
    result.draft, result.preview, result.reason = outcome.draft, outcome.preview, outcome.reason
    result.fell_back = model is not None and outcome.draft.model == COMPOSER_MODEL
    if model is not None:
        _tally(result, model.calls, side.config)


async def _check(result: CaseResult, request: CopyRequest, h: Harness) -> None:
    assert result.draft is not None and result.preview is not None
    judge_model = _judge_model(result.case, h)
    subject = Subject(
        request=request,
        draft=result.draft,
        preview=result.preview,
        fallback_reason=result.reason if result.fell_back else None,
        judge=Judge(judge_model) if judge_model is not None else None,
    )
    result.verdicts = [(e, await e.run(subject)) for e in result.case.expectations]
    if judge_model is not None and h.judge is not None:
        _tally(result, judge_model.calls, h.judge.config)


def _judge_model(case: Case, h: Harness) -> CachingModel | None:
    if h.judge is None:
        return None
    config = h.judge.config
    return CachingModel(
        config.model,
        h.judge.chat,
        h.store,
        case.suite,
        f"judge/{JUDGE_VERSION}",
        config.temperature,
        purpose="judge",
    )


def _tally(result: CaseResult, calls: list[Call], config: ModelConfig) -> None:
    for call in calls:
        cost = config.cost(call.prompt_tokens, call.cached_tokens, call.completion_tokens)
        if call.purpose == "judge":
            result.judge_usd += cost
        else:
            result.cost_usd += cost
        result.spent_usd += 0.0 if call.reused else cost
    result.calls += calls


def _render(case: Case, renderer: LayoutRenderer) -> Render:
    """The engine's preview rendering: the suite's layout, a placeholder unsubscribe link."""

    def render(draft: Draft) -> Preview:
        email = render_draft(
            renderer, case.layout, draft, unsubscribe_url=UNSUBSCRIBE, sender_line=case.sender_line
        )
        return Preview(html=email.html, text=email.text, unsubscribe_url=UNSUBSCRIBE)

    return render
