"""judge: an LLM grades the email against the case's rubric."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agents.llm import ModelOutputError
from evals.assertions.base import Args, Assertion, Subject, Verdict
from evals.judge import JudgeError

NO_JUDGE = "no judge model configured (set DRIPLINE_JUDGE_MODEL or --judge-model): not graded"


class JudgeArgs(Args):
    rubric: Annotated[str, Field(min_length=10)]
    min_score: Annotated[int, Field(ge=1, le=5)] = 4


async def check_judge(args: JudgeArgs, s: Subject) -> Verdict:
    """A judge model (pinned, temperature 0, prompt in prompts/judge/) scores the email 1-5
    against `rubric`; it passes at `min_score` (default 4). With no judge model configured it
    is skipped, and every report says so: it never passes unseen."""
    if s.judge is None:
        return Verdict("skip", NO_JUDGE)
    try:
        grade = await s.judge.grade(args.rubric, s.request, s.draft)
    except (JudgeError, ModelOutputError) as error:
        return Verdict("fail", f"the judge gave no usable grade: {error}")
    message = f"{s.judge.name}: {grade.score}/5 (min {args.min_score}): {grade.reasons}"
    return Verdict("pass" if grade.score >= args.min_score else "fail", message)


JUDGE = Assertion("judge", check_judge, JudgeArgs, shorthand="rubric")
