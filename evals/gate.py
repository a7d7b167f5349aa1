"""The regression gate: may the candidate ship?

It fails when, overall or in any one suite, the candidate's pass rate is more than
``max_drop`` percentage points below the baseline's, or below the absolute floor
``min_pass_rate``. Judged per suite as well as overall, so a regression in one suite is not
hidden by gains in another.
"""

from __future__ import annotations

from dataclasses import dataclass

from evals.compare import ALL, Comparison

# Floating-point noise must not turn "exactly the allowed drop" into a failure.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Policy:
    max_drop: float = 2.0  # percentage points
    min_pass_rate: float = 0.0  # per cent


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]  # why it failed, one line per breach
    policy: Policy


def check(comparison: Comparison, policy: Policy) -> Verdict:
    reasons: list[str] = []
    for scope in (*comparison.suites, ALL):
        reasons += _breaches(comparison, scope, policy)
    return Verdict(passed=not reasons, reasons=tuple(reasons), policy=policy)


def _breaches(comparison: Comparison, scope: str, policy: Policy) -> list[str]:
    now = comparison.candidate[scope].pass_rate
    found = []
    if now < policy.min_pass_rate - _EPSILON:
        found.append(f"{scope}: pass rate {now:.1f}% is below the floor {policy.min_pass_rate:g}%")
    if comparison.baseline is not None:
        was = comparison.baseline[scope].pass_rate
        if was - now > policy.max_drop + _EPSILON:
            found.append(
                f"{scope}: pass rate fell {was - now:.1f} points ({was:.1f}% -> {now:.1f}%), "
                f"more than the {policy.max_drop:g} allowed"
            )
    return found
