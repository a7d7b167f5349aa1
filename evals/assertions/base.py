"""What every assertion shares: the email under test, a verdict, and how one is declared.

An assertion is a named, documented function of (arguments, Subject) returning a Verdict. Its
arguments are a small pydantic model, so a suite's typo is refused when the suite is loaded,
with the case's path, and never while the cases run.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from agents.copy import CopyRequest, Draft, Finding, Preview

Status = Literal["pass", "fail", "skip"]
Where = Literal["subject", "preheader", "body", "cta", "text"]


@dataclass(frozen=True)
class Verdict:
    status: Status
    message: str = ""

    @classmethod
    def of(cls, problems: list[str], ok: str = "") -> Verdict:
        """Pass with ``ok`` when there are no problems, else fail listing them."""
        return cls("fail", "; ".join(problems[:5])) if problems else cls("pass", ok)


@dataclass(frozen=True)
class Grade:
    """A judge's score for one email against one rubric."""

    score: int
    reasons: str


class Grader(Protocol):
    name: str

    async def grade(self, rubric: str, request: CopyRequest, draft: Draft) -> Grade: ...


@dataclass(frozen=True)
class Subject:
    """One email under test: the request it answers, what would be sent, and how it came to be."""

    request: CopyRequest
    draft: Draft
    preview: Preview
    findings: tuple[Finding, ...] = ()  # the graph's own verdicts on the model's last draft
    fallback_reason: str | None = None  # set when the composer's copy stands in for a model's
    judge: Grader | None = None

    def text(self, where: Where) -> str:
        draft = self.draft
        parts = {
            "subject": draft.subject,
            "preheader": draft.preheader,
            "body": draft.body,
            "cta": draft.cta_text or "",
        }
        return draft.text() if where == "text" else parts[where]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(Args):
    pass


Check = Callable[[Any, Subject], Verdict | Awaitable[Verdict]]
# A load-time check of the arguments against the case's contact; returns a problem or None.
ContactCheck = Callable[[Any, dict[str, Any]], str | None]


@dataclass(frozen=True)
class Assertion:
    name: str
    check: Check
    args: type[Args] = NoArgs
    shorthand: str | None = None  # the argument a bare YAML value fills: `contains: quickstart`
    against_contact: ContactCheck | None = None

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.check) or ""

    def parse(self, raw: Any) -> Args:
        """Arguments from YAML: nothing, a mapping of them, or a bare value for the shorthand."""
        if raw is None:
            return self.args.model_validate({})
        if isinstance(raw, dict) or self.shorthand is None:
            return self.args.model_validate(raw)
        return self.args.model_validate({self.shorthand: raw})

    async def run(self, args: Args, subject: Subject) -> Verdict:
        verdict = self.check(args, subject)
        return verdict if isinstance(verdict, Verdict) else await verdict


@dataclass(frozen=True)
class Expectation:
    """One assertion with its arguments, as a case lists it."""

    assertion: Assertion
    args: Args

    @property
    def name(self) -> str:
        return self.assertion.name

    @property
    def label(self) -> str:
        """A short, stable name for reports: ``contains ["quickstart"]``."""
        given = self.args.model_dump(mode="json", exclude_defaults=True)
        if not given:
            return self.name
        short = self.assertion.shorthand
        value = given[short] if short and list(given) == [short] else given
        label = f"{self.name} {json.dumps(value, ensure_ascii=False)}"
        return label if len(label) <= 100 else label[:99].rstrip() + "…"

    async def run(self, subject: Subject) -> Verdict:
        return await self.assertion.run(self.args, subject)
