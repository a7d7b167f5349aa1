"""One ``dripline eval run``: load the suites, run both sides, compare, gate."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agents.agent import CopyAgent
from agents.config import ModelConfig
from agents.prompting import Prompts
from evals import gate
from evals.cache import Mode, Store
from evals.compare import compare
from evals.progress import progress_bar
from evals.reports.model import Report, SideInfo
from evals.runner import CaseResult, Harness, JudgeSetup, run
from evals.sides import Side, close, make_judge, make_side
from evals.suites import load_suites


@dataclass(frozen=True)
class Plan:
    suites: tuple[Path, ...]
    prompt: str
    model: ModelConfig  # the candidate's model, its endpoint and prices
    baseline: str | None = None
    baseline_model: ModelConfig | None = None  # None: the candidate's
    judge: ModelConfig | None = None
    mode: Mode = Mode.live
    cache_dir: Path | None = None
    recordings: Path = Path("evals/recordings")
    prompts_dir: Path | None = None
    concurrency: int = 4
    policy: gate.Policy = field(default_factory=gate.Policy)
    progress: bool = True


class CasesFailed(RuntimeError):
    """Some cases could not be scored (a missing recording, an unreachable model)."""

    def __init__(self, failed: list[CaseResult]) -> None:
        self.failed = failed
        first = failed[0]
        super().__init__(f"{first.case.key} ({first.side}): {first.error}")


async def execute(plan: Plan) -> Report:
    """Raises SuiteError or UsageError before any case runs, CasesFailed after."""
    started, clock = datetime.now(UTC), time.perf_counter()
    suites = load_suites(plan.suites)
    prompts = Prompts(plan.prompts_dir) if plan.prompts_dir else Prompts()
    sides = _sides(plan, prompts)
    harness = _harness(plan, prompts)
    total = sum(len(s.cases) for s in suites) * len(sides)
    try:
        with progress_bar(total, enabled=plan.progress) as on_done:
            harness.on_done = on_done
            results = await run(suites, sides, harness)
    finally:
        for chat in [s.chat for s in sides] + [harness.judge.chat if harness.judge else None]:
            await close(chat)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise CasesFailed(failed)
    return _report(plan, sides, results, started, time.perf_counter() - clock)


def _sides(plan: Plan, prompts: Prompts) -> list[Side]:
    sides = [make_side("candidate", plan.prompt, plan.model, plan.mode, prompts)]
    if plan.baseline is not None:
        model = plan.baseline_model or plan.model
        sides.append(make_side("baseline", plan.baseline, model, plan.mode, prompts))
    return sides


def _harness(plan: Plan, prompts: Prompts) -> Harness:
    store = Store(plan.mode, plan.cache_dir, plan.recordings)
    agent = CopyAgent(None, max_revisions=plan.model.max_revisions, prompts=prompts)
    judge = None
    if plan.judge is not None:
        judge = JudgeSetup(*make_judge(plan.judge.model, plan.judge, plan.mode))
    return Harness(store, agent, judge=judge, concurrency=plan.concurrency)


def _report(
    plan: Plan, sides: list[Side], results: list[CaseResult], started: datetime, seconds: float
) -> Report:
    candidate = [r for r in results if r.side == "candidate"]
    baseline = [r for r in results if r.side == "baseline"] if len(sides) > 1 else None
    comparison = compare(candidate, baseline)
    return Report(
        comparison=comparison,
        verdict=gate.check(comparison, plan.policy),
        candidate=SideInfo.of(sides[0]),
        baseline=SideInfo.of(sides[1]) if len(sides) > 1 else None,
        mode=plan.mode.value,
        judge=plan.judge.model if plan.judge else None,
        started_at=started,
        seconds=seconds,
    )
