"""The whole run as JSON: settings, totals per suite and side, the gate, and every case."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from evals.compare import Totals
from evals.reports.model import Report
from evals.runner import CaseResult


def to_json(report: Report) -> dict[str, Any]:
    comparison = report.comparison
    return {
        "started_at": report.started_at.isoformat(),
        "seconds": round(report.seconds, 3),
        "mode": report.mode,
        "judge": report.judge,
        "candidate": asdict(report.candidate),
        "baseline": asdict(report.baseline) if report.baseline else None,
        "gate": {
            "passed": report.verdict.passed,
            "reasons": list(report.verdict.reasons),
            **asdict(report.verdict.policy),
        },
        "notices": report.notices,
        "suites": {
            name: {
                "candidate": _totals(totals),
                "baseline": _totals(comparison.baseline[name]) if comparison.baseline else None,
                "delta_points": comparison.delta(name),
            }
            for name, totals in comparison.candidate.items()
        },
        "cases": [
            {
                "key": pair.key,
                "about": pair.candidate.case.about,
                "change": pair.change,
                "candidate": _case(pair.candidate),
                "baseline": _case(pair.baseline) if pair.baseline else None,
            }
            for pair in comparison.pairs
        ],
    }


def _totals(totals: Totals) -> dict[str, Any]:
    return {
        **asdict(totals),
        "pass_rate": round(totals.pass_rate, 2),
        "cost_per_email_usd": totals.cost_per_email,
        "figures": totals.figures,  # "simulated" when a stand-in model made up the usage
    }


def _case(result: CaseResult) -> dict[str, Any]:
    draft = result.draft
    return {
        "prompt": result.prompt,
        "model": result.model,
        "passed": result.passed,
        "error": result.error,
        "fell_back": result.fell_back,
        "reason": result.reason,
        "email": draft.model_dump(mode="json") if draft else None,
        "assertions": [
            {"name": e.name, "label": e.label, "status": v.status, "message": v.message}
            for e, v in result.verdicts
        ],
        "usage": {
            "calls": [asdict(c) for c in result.calls],
            "cost_usd": result.cost_usd,
            "judge_usd": result.judge_usd,
            "spent_usd": result.spent_usd,
            "seconds": round(result.seconds, 3),
        },
    }
