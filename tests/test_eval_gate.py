"""The regression gate: a candidate that got worse than its baseline, by more than the allowed
drop or below the floor, fails, overall or in any single suite; the command exits 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_cases import SUITES, WORSE, WORSE_PROMPTS
from typer.testing import CliRunner

from api.cli import app
from evals import gate
from evals.compare import ALL, Comparison, Totals


def comparison(baseline: dict[str, int] | None, candidate: dict[str, int]) -> Comparison:
    """Ten cases per suite; the numbers are how many passed."""

    def totals(passed: dict[str, int]) -> dict[str, Totals]:
        by_suite = {s: Totals(cases=10, passed=n) for s, n in passed.items()}
        everything = Totals(cases=10 * len(passed), passed=sum(passed.values()))
        return {**by_suite, ALL: everything}

    return Comparison(
        suites=tuple(candidate),
        candidate=totals(candidate),
        baseline=totals(baseline) if baseline is not None else None,
        pairs=(),
    )


@pytest.mark.parametrize(
    ("baseline", "candidate", "policy", "reasons"),
    [
        ({"a": 8, "b": 8}, {"a": 8, "b": 8}, gate.Policy(), []),
        ({"a": 8, "b": 8}, {"a": 9, "b": 9}, gate.Policy(), []),
        ({"a": 8, "b": 8}, {"a": 7, "b": 8}, gate.Policy(max_drop=10), []),
        (
            {"a": 8, "b": 8},
            {"a": 7, "b": 8},
            gate.Policy(max_drop=2),
            [
                "a: pass rate fell 10.0 points (80.0% -> 70.0%), more than the 2 allowed",
                "all suites: pass rate fell 5.0 points (80.0% -> 75.0%), more than the 2 allowed",
            ],
        ),
        # A gain in one suite does not hide a loss in another.
        (
            {"a": 8, "b": 5},
            {"a": 6, "b": 7},
            gate.Policy(max_drop=5),
            ["a: pass rate fell 20.0 points (80.0% -> 60.0%), more than the 5 allowed"],
        ),
        (
            None,
            {"a": 6},
            gate.Policy(min_pass_rate=70),
            [
                "a: pass rate 60.0% is below the floor 70%",
                "all suites: pass rate 60.0% is below the floor 70%",
            ],
        ),
        (None, {"a": 7}, gate.Policy(min_pass_rate=70), []),
    ],
)
def test_the_gate(
    baseline: dict[str, int] | None,
    candidate: dict[str, int],
    policy: gate.Policy,
    reasons: list[str],
) -> None:
    verdict = gate.check(comparison(baseline, candidate), policy)
    assert list(verdict.reasons) == reasons
    assert verdict.passed == (not reasons)


def _eval(tmp_path: Path, *args: str, suites: list[Path] = SUITES) -> tuple[int, str]:
    command = ["eval", "run", *map(str, suites), "--model", "fake-heuristic", "--no-progress"]
    command += ["--cache-dir", str(tmp_path / "cache"), "--prompts-dir", str(WORSE_PROMPTS)]
    result = CliRunner().invoke(app, [*command, *args])
    return result.exit_code, " ".join(result.output.split())


def test_a_deliberately_worse_prompt_fails_the_gate(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, output = _eval(tmp_path, "--prompt", WORSE, "--baseline", "v1", "--json", str(report))
    assert code == 1, output
    assert "gate failed (max drop 2 points, floor 0%)" in output
    data = json.loads(report.read_text())
    assert not data["gate"]["passed"]
    overall = data["suites"][ALL]
    assert overall["delta_points"] < -2
    regressed = {c["key"] for c in data["cases"] if c["change"] == "regressed"}
    # Without the data block the model cannot greet by name or build on a click.
    assert {"onboarding/plain-welcome", "sales-follow-up/clicked-pricing"} <= regressed
    reasons = " ".join(data["gate"]["reasons"])
    assert "onboarding: pass rate fell" in reasons and "all suites: pass rate fell" in reasons


def test_the_floor_alone_gates_a_run_without_baseline(tmp_path: Path) -> None:
    code, output = _eval(tmp_path, "--prompt", "v1", "--min-pass-rate", "99", suites=SUITES[:1])
    assert code == 1, output
    assert "onboarding: pass rate 92.9% is below the floor 99%" in output
    code, output = _eval(tmp_path, "--prompt", "v1", "--min-pass-rate", "90", suites=SUITES[:1])
    assert code == 0, output
