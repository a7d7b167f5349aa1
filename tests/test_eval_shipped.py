"""The shipped suites, replayed from their committed recordings (made through the real
``openai`` client against the local heuristic server): what `make test` gates on.

The pass rates are the ones recorded; a change to a suite, a prompt or the graph that moves
them shows up here, and a request with no recording fails here rather than calling a model.
"""

from __future__ import annotations

import asyncio
import json

from eval_cases import RECORDINGS, SUITES

from agents.composer import COMPOSER_MODEL
from agents.config import ModelConfig
from agents.devserver import HEURISTIC_MODEL
from evals.cache import Mode
from evals.compare import ALL
from evals.session import Plan, execute

RECORDED = {
    "onboarding": (14, 13),
    "sales-follow-up": (12, 10),
    "signup-data": (10, 10),
    "win-back": (11, 10),
}


def test_the_shipped_suites_replay_v2_against_v1_and_pass_the_gate() -> None:
    plan = Plan(
        suites=tuple(SUITES),
        prompt="v2",
        baseline="v1",
        model=ModelConfig(model=HEURISTIC_MODEL),
        mode=Mode.replay,
        cache_dir=None,
        recordings=RECORDINGS,
        progress=False,
    )
    report = asyncio.run(execute(plan))
    comparison = report.comparison
    assert report.verdict.passed, report.verdict.reasons
    for totals in (comparison.candidate, comparison.baseline or {}):
        measured = {s: (totals[s].cases, totals[s].passed) for s in RECORDED}
        assert measured == RECORDED
        assert totals[ALL].model_calls == totals[ALL].reused_calls > 0  # no model was asked
        assert totals[ALL].spent_usd == 0 and totals[ALL].cost_usd > 0
        assert totals[ALL].fell_back == 0
    # Every committed recording was used: none is left over from an older suite or prompt.
    calls = comparison.candidate[ALL].model_calls + (comparison.baseline or {})[ALL].model_calls
    assert len(list(RECORDINGS.glob("*/*.json"))) == calls
    # Recorded by the stand-in server: its usage figures are labelled, in the files and the report.
    recorded = [json.loads(p.read_text()) for p in RECORDINGS.glob("*/*.json")]
    assert all(r["usage"].startswith("simulated: ") for r in recorded)
    assert comparison.candidate[ALL].figures == "simulated"
    assert "nothing billed" in report.spending
    # The composer cases are the fallback path: the step's own copy, through the same gate.
    for pair in comparison.pairs:
        draft, case = pair.candidate.draft, pair.candidate.case
        assert draft is not None
        assert draft.model == (COMPOSER_MODEL if case.writer == "composer" else HEURISTIC_MODEL)
