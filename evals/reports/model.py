"""What every report format reads: the run's settings, the comparison and the gate's verdict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from evals import gate
from evals.compare import ALL, Comparison, Totals
from evals.sides import Side


@dataclass(frozen=True)
class SideInfo:
    label: str
    prompt: str
    model: str

    @classmethod
    def of(cls, side: Side) -> SideInfo:
        return cls(side.label, side.prompt, side.model)

    @property
    def title(self) -> str:
        return f"{self.label}: prompt {self.prompt}, {self.model}"


@dataclass(frozen=True)
class Report:
    comparison: Comparison
    verdict: gate.Verdict
    candidate: SideInfo
    baseline: SideInfo | None
    mode: str  # live, record or replay
    judge: str | None  # the judge model, when one graded
    started_at: datetime
    seconds: float

    @property
    def notices(self) -> list[str]:
        """What a reader must not miss: ungraded assertions and model drafts refused."""
        found = []
        for label, totals in self._sides():
            if totals.skipped_assertions:
                found.append(
                    f"{label}: {totals.skipped_assertions} assertion(s) skipped, not passed "
                    "(judge: no judge model configured; set DRIPLINE_JUDGE_MODEL)"
                )
            if totals.simulated_calls:
                found.append(
                    f"{label}: {totals.simulated_calls} of {totals.model_calls} model call(s) "
                    "answered by a stand-in model, not a provider: their tokens, cost and "
                    "latency are simulated, not measured"
                )
            if totals.fell_back:
                found.append(
                    f"{label}: {totals.fell_back} email(s) fell back to the offline composer "
                    "after the guardrails refused the model's drafts"
                )
        return found

    @property
    def spending(self) -> str:
        """This run's model calls and what they cost: nothing when all came from cache."""
        sides = [totals for _, totals in self._sides()]
        calls = sum(t.model_calls for t in sides)
        reused = sum(t.reused_calls for t in sides)
        spent = sum(t.spent_usd for t in sides)
        simulated = sum(t.simulated_calls for t in sides)
        money = f"${spent:.6f} spent"
        if simulated:  # a stand-in's price is its made-up tokens times the configured prices
            money = (
                f"${spent:.6f} simulated (a stand-in model; nothing billed)"
                if simulated == calls
                else f"${spent:.6f} spent, partly simulated"
            )
        return f"{calls} model calls, {reused} from cache or recordings, {money}"

    def _sides(self) -> list[tuple[str, Totals]]:
        sides = [("candidate", self.comparison.candidate[ALL])]
        if self.comparison.baseline is not None:
            sides.append(("baseline", self.comparison.baseline[ALL]))
        return sides


def figure(totals: Totals, text: str) -> str:
    """A tokens, cost or latency figure, labelled when a stand-in model made it up."""
    return f"{text} {totals.figures}" if "simulated" in totals.figures else text
