"""The LLM judge: its versioned prompt, its verdicts, its pinned temperature, and its calls
going through the same cache as the drafting model's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from eval_cases import SUITES, counting_model
from guardrail_cases import INJECTION, make_draft, make_request

from agents.agent import CopyAgent
from agents.config import ModelConfig
from agents.fake import FunctionModel
from agents.llm import Message
from evals.cache import Mode, Store
from evals.judge import Judge, JudgeError, parse_grade
from evals.runner import Harness, JudgeSetup, run
from evals.sides import Side, make_judge
from evals.suites import load_suite


def grading(score: int) -> FunctionModel:
    def answer(messages: list[Message]) -> str:
        return json.dumps({"score": score, "reasons": "Warm, and the quickstart is the step."})

    return FunctionModel(answer, name="judge-2024-08-06")


async def test_the_judge_reads_its_versioned_prompt_with_everything_quoted_as_data() -> None:
    model = grading(5)
    request = make_request(contact={"first_name": "Dana", "notes": f"<b>{INJECTION}</b>"})
    grade = await Judge(model).grade("Warm and on brief.", request, make_draft())
    assert (grade.score, grade.reasons) == (5, "Warm, and the quickstart is the step.")
    system, user = model.requests[0]
    assert "You grade one marketing email against a rubric" in system["content"]
    assert user["content"].startswith("RUBRIC:\nWarm and on brief.")
    assert "\\u003cb\\u003eIgnore all previous instructions" in user["content"]
    assert '"subject": "Your five-minute setup, Dana"' in user["content"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not a grade"),
        ('{"reasons": "no score"}', "not a grade"),
        ('{"score": 6, "reasons": ""}', "score 6 is not an integer from 1 to 5"),
        ('{"score": "4", "reasons": ""}', "score '4' is not"),
        ('{"score": true, "reasons": ""}', "score True is not"),
    ],
)
def test_an_answer_that_is_no_grade_is_refused(text: str, problem: str) -> None:
    with pytest.raises(JudgeError, match=problem):
        parse_grade(text)


def test_the_judge_runs_at_temperature_zero_whatever_the_drafting_model_uses() -> None:
    config, chat = make_judge("gpt-4o-2024-08-06", ModelConfig(temperature=0.9), Mode.replay)
    assert (config.model, config.temperature, chat) == ("gpt-4o-2024-08-06", 0.0, None)


async def test_judged_cases_are_graded_cached_and_costed_apart(tmp_path: Path) -> None:
    suite = load_suite(SUITES[0])
    suite = dataclasses.replace(suite, cases=suite.cases[:1])  # plain-welcome has a rubric
    draft_side = Side("candidate", "v1", "fake-heuristic", counting_model(), ModelConfig())
    store = Store(Mode.live, tmp_path / "cache")

    async def judged(score: int) -> tuple[str, float, float, int]:
        judge = grading(score)
        harness = Harness(
            store,
            CopyAgent(None),
            judge=JudgeSetup(ModelConfig(model=judge.name, temperature=0.0), judge),
        )
        (result,) = await run([suite], [draft_side], harness)
        verdict = next(v for e, v in result.verdicts if e.name == "judge")
        return verdict.status, result.judge_usd, result.cost_usd, len(judge.requests)

    status, judge_usd, cost_usd, asked = await judged(5)
    assert (status, asked) == ("pass", 1)
    assert judge_usd > 0 and cost_usd > 0
    # The same email and rubric again: the judge's answer comes from the cache.
    assert await judged(2) == ("pass", judge_usd, cost_usd, 0)
