"""Candidate against baseline: totals per suite and side, and case-by-case changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from evals.runner import CaseResult

ALL = "all suites"
Change = Literal["fixed", "regressed", "still passing", "still failing", "new"]


@dataclass(frozen=True)
class Totals:
    """One side's numbers over a set of cases."""

    cases: int = 0
    passed: int = 0
    errors: int = 0
    fell_back: int = 0  # emails the graph wrote with the composer after refusing the model's
    assertions: int = 0
    failed_assertions: int = 0
    skipped_assertions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    judge_usd: float = 0.0
    spent_usd: float = 0.0
    model_calls: int = 0
    reused_calls: int = 0  # answered from the cache or recordings
    latency_ms: int = 0  # model time, summed over the calls
    simulated_calls: int = 0  # answered by a stand-in model: their usage is not measured

    @classmethod
    def of(cls, results: Iterable[CaseResult]) -> Totals:
        rows = list(results)
        calls = [c for r in rows for c in r.calls]
        return cls(
            cases=len(rows),
            passed=sum(r.passed for r in rows),
            errors=sum(r.error is not None for r in rows),
            fell_back=sum(r.fell_back for r in rows),
            assertions=sum(len(r.verdicts) for r in rows),
            failed_assertions=sum(r.count("fail") for r in rows),
            skipped_assertions=sum(r.count("skip") for r in rows),
            prompt_tokens=sum(c.prompt_tokens for c in calls if c.purpose == "draft"),
            completion_tokens=sum(c.completion_tokens for c in calls if c.purpose == "draft"),
            cost_usd=sum(r.cost_usd for r in rows),
            judge_usd=sum(r.judge_usd for r in rows),
            spent_usd=sum(r.spent_usd for r in rows),
            model_calls=len(calls),
            reused_calls=sum(c.reused for c in calls),
            latency_ms=sum(c.latency_ms for c in calls if c.purpose == "draft"),
            simulated_calls=sum(c.simulated for c in calls),
        )

    @property
    def pass_rate(self) -> float:
        """Per cent of cases whose every graded assertion passed."""
        return 100.0 * self.passed / self.cases if self.cases else 0.0

    @property
    def figures(self) -> str:
        """Whether the tokens, cost and latency were measured: "measured", "simulated" (a
        stand-in model answered every call), "partly simulated", or "none" (no model call)."""
        if not self.model_calls:
            return "none"
        if not self.simulated_calls:
            return "measured"
        return "simulated" if self.simulated_calls == self.model_calls else "partly simulated"

    @property
    def cost_per_email(self) -> float:
        return self.cost_usd / self.cases if self.cases else 0.0

    @property
    def tokens_per_email(self) -> float:
        total = self.prompt_tokens + self.completion_tokens
        return total / self.cases if self.cases else 0.0

    @property
    def latency_per_email(self) -> float:
        return self.latency_ms / self.cases if self.cases else 0.0


@dataclass(frozen=True)
class Pair:
    candidate: CaseResult
    baseline: CaseResult | None

    @property
    def key(self) -> str:
        return self.candidate.case.key

    @property
    def change(self) -> Change:
        if self.baseline is None:
            return "new"
        was, now = self.baseline.passed, self.candidate.passed
        if was == now:
            return "still passing" if now else "still failing"
        return "fixed" if now else "regressed"

    @property
    def copy_changed(self) -> bool:
        before = self.baseline.draft if self.baseline is not None else None
        after = self.candidate.draft
        return before is not None and after is not None and before.text() != after.text()


@dataclass(frozen=True)
class Comparison:
    suites: tuple[str, ...]
    candidate: dict[str, Totals]  # by suite name, and ALL
    baseline: dict[str, Totals] | None
    pairs: tuple[Pair, ...]

    def delta(self, suite: str) -> float | None:
        """Candidate pass rate minus baseline's, in percentage points."""
        if self.baseline is None:
            return None
        return self.candidate[suite].pass_rate - self.baseline[suite].pass_rate

    def changed(self, change: Change) -> list[Pair]:
        return [p for p in self.pairs if p.change == change]


def compare(candidate: list[CaseResult], baseline: list[CaseResult] | None) -> Comparison:
    suites = tuple(dict.fromkeys(r.case.suite for r in candidate))
    before = {r.case.key: r for r in baseline or []}
    pairs = tuple(Pair(r, before.get(r.case.key)) for r in candidate)
    return Comparison(
        suites=suites,
        candidate=_by_suite(candidate, suites),
        baseline=_by_suite(baseline, suites) if baseline is not None else None,
        pairs=pairs,
    )


def _by_suite(results: list[CaseResult], suites: tuple[str, ...]) -> dict[str, Totals]:
    totals = {s: Totals.of(r for r in results if r.case.suite == s) for s in suites}
    return {**totals, ALL: Totals.of(results)}
