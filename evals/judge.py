"""The LLM judge: grades an email against a suite's rubric, 1 to 5.

A pinned model at temperature 0 with a versioned prompt (prompts/judge/<version>/), so a score
means the same thing from one run to the next; its answers are cached and recorded like the
drafting model's. Everything it reads is quoted as data, as in the drafting prompt.
"""

from __future__ import annotations

import json
from typing import Any

from agents.copy import CopyRequest, Draft
from agents.llm import ChatModel, Message
from agents.prompting import PACKAGED, Prompts, quote_data
from evals.assertions.base import Grade

JUDGE_VERSION = "v1"
SCHEMA_NAME = "email_grade"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "description": "1 (ignores the rubric) to 5 (meets it all)"},
        "reasons": {"type": "string", "description": "One or two sentences: what decided it."},
    },
    "required": ["score", "reasons"],
    "additionalProperties": False,
}


class JudgeError(ValueError):
    """The judge answered, but not with a score from 1 to 5."""


class Judge:
    def __init__(
        self, model: ChatModel, prompts: Prompts = PACKAGED, version: str = JUDGE_VERSION
    ) -> None:
        self.name = model.name
        self.version = version
        self._model = model
        self._prompts = prompts

    async def grade(self, rubric: str, request: CopyRequest, draft: Draft) -> Grade:
        completion = await self._model.complete(
            self.messages(rubric, request, draft), SCHEMA, SCHEMA_NAME
        )
        return parse_grade(completion.content)

    def messages(self, rubric: str, request: CopyRequest, draft: Draft) -> list[Message]:
        step = {"brief": request.brief, "cta": request.cta, "links": request.allowed_links}
        email = {
            "subject": draft.subject,
            "preheader": draft.preheader,
            "paragraphs": draft.paragraphs,
            "cta_text": draft.cta_text,
        }
        values = {
            "rubric": rubric.strip(),
            "step_json": quote_data(step),
            "contact_json": quote_data(request.contact),
            "engagement_json": quote_data(request.engagement.for_prompt()),
            "email_json": quote_data(email),
        }
        render = self._prompts.render
        return [
            {"role": "system", "content": render("judge", self.version, "system.j2", {})},
            {"role": "user", "content": render("judge", self.version, "user.j2", values)},
        ]


def parse_grade(text: str) -> Grade:
    try:
        answer = json.loads(text)
        score, reasons = answer["score"], str(answer.get("reasons", ""))
    except (ValueError, TypeError, KeyError) as error:
        raise JudgeError(f"not a grade: {error}") from None
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        raise JudgeError(f"score {score!r} is not an integer from 1 to 5")
    return Grade(score=score, reasons=" ".join(reasons.split()))
