"""Prompt regression suites: ``evals/suites/*.yaml``.

A suite names its sequence and sender, defines email steps exactly as a sequence definition
does (brief, CTA, links, fallback), and lists cases: a contact's data, what they did with
earlier emails, the step to write and what the email must satisfy. ``expect`` at the top applies
to every case; a case's own expectation of the same name replaces it.

Every problem is refused at load time in one line naming the file and the field path, e.g.
``evals/suites/win-back.yaml: cases.3.expect.1: unknown assertion 'contain'``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.copy import CopyRequest, EngagementSummary, PastStep
from evals.assertions import ASSERTIONS
from evals.assertions.base import Expectation
from sequences.definitions.document import EmailSpec
from sequences.definitions.fields import Slug
from sequences.definitions.sandbox import SandboxError
from sequences.delivery.compose import StepView, build_request


class SuiteError(ValueError):
    """A suite that cannot be loaded. The message is one line: file, field path, problem."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SenderSpec(_Spec):
    name: str = Field(min_length=1)
    email: str = "hello@acme.test"


class PastEmailSpec(_Spec):
    step: str
    subject: str
    sent_at: str = "2025-03-03T09:00:00+00:00"
    opened: bool = False
    clicked: tuple[str, ...] = ()
    offered: tuple[str, ...] = ()
    replied: bool = False


class EngagementSpec(_Spec):
    history: tuple[PastEmailSpec, ...] = ()
    events: tuple[str, ...] = ()
    score: float = 0.0

    def summary(self) -> EngagementSummary:
        history = tuple(
            PastStep(step_id=h.step, **h.model_dump(exclude={"step"})) for h in self.history
        )
        return EngagementSummary(history=history, events=self.events, score=self.score)


class CaseSpec(_Spec):
    id: Slug
    about: str = ""
    step: Any  # a name from the suite's steps, or a step of its own; checked in _step
    contact: dict[str, Any]
    engagement: EngagementSpec = EngagementSpec()
    variant: str | None = None
    # "composer": the step's fallback copy writes, as when no model is set or its drafts are
    # refused, through the same gate; such a case needs no model and no recording.
    writer: Literal["model", "composer"] = "model"
    expect: tuple[Any, ...] = ()


class SuiteSpec(_Spec):
    suite: Slug
    about: str = ""
    sequence: Slug
    sender: SenderSpec
    layout: Slug = "basic"
    steps: dict[Slug, Any] = {}
    expect: tuple[Any, ...] = ()
    cases: tuple[CaseSpec, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Case:
    suite: str
    id: str
    about: str
    request: CopyRequest  # prompt_version is filled in per run
    expectations: tuple[Expectation, ...]
    layout: str
    sender_line: str
    writer: str = "model"

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.id}"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    about: str
    cases: tuple[Case, ...]


def load_suites(paths: Iterable[Path]) -> list[Suite]:
    suites = [load_suite(p) for p in paths]
    seen: dict[str, Path] = {}
    for suite in suites:
        if suite.name in seen:
            raise SuiteError(f"{suite.path}: suite: {suite.name!r} is also {seen[suite.name]}")
        seen[suite.name] = suite.path
    return suites


def load_suite(path: Path) -> Suite:
    spec = _validated(path, _document(path))
    steps = {name: _email(path, f"steps.{name}", raw) for name, raw in spec.steps.items()}
    defaults = [_expectation(path, f"expect.{n}", raw) for n, raw in enumerate(spec.expect)]
    cases = [_case(path, n, c, spec, steps, defaults) for n, c in enumerate(spec.cases)]
    ids = [c.id for c in cases]
    for n, case_id in enumerate(ids):
        if case_id in ids[:n]:
            raise SuiteError(f"{path}: cases.{n}.id: {case_id!r} is used twice")
    return Suite(spec.suite, path, spec.about, tuple(cases))


def _document(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SuiteError(f"{path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "body"
        problem = getattr(error, "problem", None) or str(error)
        raise SuiteError(f"{path}: {where}: YAML: {_line(problem)}") from None
    if not isinstance(document, dict):
        raise SuiteError(f"{path}: body: a suite is a mapping (suite, sender, steps, cases)")
    return document


def _validated(path: Path, document: dict[str, Any]) -> SuiteSpec:
    try:
        return SuiteSpec.model_validate(document)
    except ValidationError as error:
        raise SuiteError(f"{path}: {_at('', error)}") from None


def _email(path: Path, where: str, raw: Any) -> EmailSpec:
    try:
        return EmailSpec.model_validate(raw)
    except ValidationError as error:
        raise SuiteError(f"{path}: {_at(where, error)}") from None


def _case(
    path: Path,
    n: int,
    spec: CaseSpec,
    suite: SuiteSpec,
    steps: dict[str, EmailSpec],
    defaults: list[Expectation],
) -> Case:
    where = f"cases.{n}"
    step_id, email = _step(path, where, spec.step, steps)
    own = [_expectation(path, f"{where}.expect.{i}", e) for i, e in enumerate(spec.expect)]
    named = {e.name for e in own}
    expectations = [e for e in defaults if e.name not in named] + own
    for expectation in expectations:
        check = expectation.assertion.against_contact
        problem = check(expectation.args, spec.contact) if check else None
        if problem:
            raise SuiteError(f"{path}: {where}.expect: {expectation.label}: {problem}")
    sender = suite.sender.model_dump()
    view = StepView(suite.sequence, step_id, email, sender)
    try:
        request = build_request(
            view, spec.contact, spec.engagement.summary(), preferred_variant=spec.variant
        )
    except SandboxError as error:
        raise SuiteError(f"{path}: {where}.step.fallback: {_line(str(error))}") from None
    line = f"{sender['name']} · {sender['email']}"
    return Case(
        suite.suite,
        spec.id,
        spec.about,
        request,
        tuple(expectations),
        suite.layout,
        line,
        spec.writer,
    )


def _step(path: Path, where: str, raw: Any, steps: dict[str, EmailSpec]) -> tuple[str, EmailSpec]:
    if isinstance(raw, str):
        if raw not in steps:
            have = ", ".join(steps) or "none"
            raise SuiteError(f"{path}: {where}.step: no step {raw!r} in steps (have: {have})")
        return raw, steps[raw]
    return "inline", _email(path, f"{where}.step", raw)


def _expectation(path: Path, where: str, raw: Any) -> Expectation:
    name, args = _named(path, where, raw)
    assertion = ASSERTIONS.get(name)
    if assertion is None:
        known = ", ".join(ASSERTIONS)
        raise SuiteError(f"{path}: {where}: unknown assertion {name!r} (known: {known})")
    try:
        return Expectation(assertion, assertion.parse(args))
    except ValidationError as error:
        raise SuiteError(f"{path}: {_at(f'{where}.{name}', error)}") from None


def _named(path: Path, where: str, raw: Any) -> tuple[str, Any]:
    if isinstance(raw, str):
        return raw, None
    if isinstance(raw, dict) and len(raw) == 1:
        ((name, args),) = raw.items()
        return str(name), args
    raise SuiteError(f"{path}: {where}: an expectation is a name or {{name: arguments}}")


def _at(where: str, error: ValidationError) -> str:
    """``where.field.path: message`` for the first problem (and how many more there are)."""
    errors = error.errors(include_url=False)
    first = errors[0]
    path = ".".join(p for p in (where, *(str(part) for part in first["loc"])) if p)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path or 'body'}: {_line(first['msg'])}{more}"


def _line(text: str) -> str:
    return " ".join(text.split())
