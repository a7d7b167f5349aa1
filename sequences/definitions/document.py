"""Sequence definitions: the YAML (or JSON) document a content-ops team applies.

Ordering: steps run in list order. After an ``email`` or ``wait`` step the
enrollment continues with the next step in the list. ``goto`` jumps to the named
step; ``branch`` tries its ``if`` rules in order and jumps to the first match's
``goto``, else to its ``else`` step; ``choose`` jumps to one of its candidates,
picked from engagement scores; ``exit`` ends the enrollment. After a jump,
execution goes on in list order from the target. Running past the last step
completes the enrollment. Every loop in the steps must pass through a ``wait``,
so no loop can spin or email a contact back-to-back.

Errors carry dotted paths spelled with the document's own keys:
``steps.2.branch.0.goto``, ``steps.3.wait.for``, ``sender.from``. Problems with
the text as a whole (YAML syntax, size) use the path ``body``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import time, timedelta
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from sequences.definitions.fields import (
    DAYS,
    Address,
    Approval,
    Condition,
    Day,
    EventType,
    HttpUrl,
    Slug,
    TemplateText,
    parse_window,
    passes,
    valid_zone,
)
from sequences.definitions.refusals import DefinitionError, FieldError
from sequences.kit.durations import Duration, Lead, parse_duration

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_NODES = 5_000
MAX_STEPS = 200
STEP_KINDS = ("email", "wait", "branch", "goto", "choose", "exit")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sender(_Model):
    from_: Address = Field(alias="from")
    reply_to: Address | None = None


class Entry(_Model):
    events: list[EventType] = []
    reenroll: Literal["never", "after_exit"] = "never"


class Schedule(_Model):
    timezone: Annotated[str, passes(valid_zone)] = "UTC"
    timezone_from: Literal["contact.timezone"] | None = None
    days: list[Day] = Field(default_factory=lambda: list(DAYS), min_length=1)
    window: Annotated[str, passes(parse_window)] | None = None

    @property
    def weekdays(self) -> frozenset[int]:
        """Allowed days as ``datetime.weekday()`` numbers (0 = Monday)."""
        return frozenset(DAYS.index(day) for day in self.days)

    @property
    def window_times(self) -> tuple[time, time] | None:
        return None if self.window is None else parse_window(self.window)


class FrequencyCap(_Model):
    max: int = Field(ge=1)
    per: Duration

    @property
    def duration(self) -> timedelta:
        return parse_duration(self.per)


class Cta(_Model):
    text: str = Field(min_length=1, max_length=200)
    url: HttpUrl


class Fallback(_Model):
    subject: Annotated[TemplateText, StringConstraints(min_length=1)]
    preheader: TemplateText = ""
    body: Annotated[TemplateText, StringConstraints(min_length=1)]


Topics = Annotated[list[Slug], Field(max_length=10)]


class Variant(_Model):
    id: Slug | None = None
    angle: str = Field(min_length=1, max_length=500)
    fallback: Fallback | None = None
    # What the variant is about: a click on it raises the contact's affinity for these, and a
    # contact with affinity for them is steered towards this variant.
    topics: Topics = []


class EmailSpec(_Model):
    brief: str = Field(min_length=1, max_length=2000)
    cta: Cta | None = None
    links: list[HttpUrl] = []
    fallback: Fallback
    variants: list[Variant] = []
    approval: Approval | None = None
    layout: Slug | None = None
    topics: Topics = []
    # How long before it is due this email is drafted (unset: the sequence's ``draft_ahead``).
    draft_ahead: Lead | None = None

    @field_validator("variants")
    @classmethod
    def _variant_ids(cls, variants: list[Variant]) -> list[Variant]:
        named = [
            v if v.id else v.model_copy(update={"id": f"v{n}"}) for n, v in enumerate(variants, 1)
        ]
        ids = [v.id for v in named]
        if len(set(ids)) != len(ids):
            raise ValueError(f"variant ids must be unique (unnamed ones are v1, v2...): {ids}")
        return named


class WaitSpec(_Model):
    for_: Duration = Field(alias="for")
    until: list[EventType] = []

    @property
    def duration(self) -> timedelta:
        return parse_duration(self.for_)


class BranchRule(_Model):
    if_: Condition | None = Field(None, alias="if")
    goto: Slug | None = None
    else_: Slug | None = Field(None, alias="else")

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        conditional = self.if_ is not None and self.goto is not None and self.else_ is None
        fallback = self.else_ is not None and self.if_ is None and self.goto is None
        if not (conditional or fallback):
            raise ValueError("a rule is either {if: <condition>, goto: <step>} or {else: <step>}")
        return self

    @property
    def target(self) -> str:
        return self.else_ or self.goto or ""


class ExitSpec(_Model):
    reason: str | None = Field(None, max_length=500)


class EmailStep(_Model):
    kind: ClassVar[str] = "email"
    id: Slug
    email: EmailSpec


class WaitStep(_Model):
    kind: ClassVar[str] = "wait"
    id: Slug
    wait: WaitSpec


class BranchStep(_Model):
    kind: ClassVar[str] = "branch"
    id: Slug
    branch: list[BranchRule] = Field(min_length=1)

    @field_validator("branch")
    @classmethod
    def _else_last(cls, rules: list[BranchRule]) -> list[BranchRule]:
        elses = [n for n, rule in enumerate(rules) if rule.else_ is not None]
        if elses != [len(rules) - 1]:
            raise ValueError("a branch needs exactly one {else: <step>} rule, and it must be last")
        return rules


class GotoStep(_Model):
    kind: ClassVar[str] = "goto"
    id: Slug
    goto: Slug


class ChooseStep(_Model):
    kind: ClassVar[str] = "choose"
    id: Slug
    choose: list[Slug] = Field(min_length=2)

    @field_validator("choose")
    @classmethod
    def _distinct(cls, candidates: list[str]) -> list[str]:
        if len(set(candidates)) != len(candidates):
            raise ValueError("each candidate step may be listed once")
        return candidates


class ExitStep(_Model):
    kind: ClassVar[str] = "exit"
    id: Slug
    # ``exit:`` with nothing after it reads as null in YAML; treat it as ``exit: {}``.
    exit: Annotated[ExitSpec, BeforeValidator(lambda v: {} if v is None else v)]


def _step_kind(value: Any) -> str | None:
    """The union tag: the one kind key present, or None (an error) for zero or several."""
    has = value.__contains__ if isinstance(value, Mapping) else lambda k: hasattr(value, k)
    kinds = [kind for kind in STEP_KINDS if has(kind)]
    return kinds[0] if len(kinds) == 1 else None


Step = Annotated[
    Annotated[EmailStep, Tag("email")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[GotoStep, Tag("goto")]
    | Annotated[ChooseStep, Tag("choose")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one of: " + ", ".join(STEP_KINDS),
    ),
]


class Adapt(_Model):
    """How variants and ``choose`` steps are picked from feedback (Thompson sampling)."""

    goal: Literal["engagement", "clicks", "replies", "conversions"] = "engagement"
    # How far a contact's topic affinity may raise a candidate's sampled value (0 ignores it).
    affinity_weight: float = Field(1.0, ge=0.0, le=10.0)


class SequenceDefinition(_Model):
    key: Slug
    name: str = Field(min_length=1, max_length=200)
    sender: Sender
    entry: Entry | None = None
    exclusive_group: Slug | None = None
    exit_on: list[EventType] = []
    schedule: Schedule | None = None
    frequency_cap: FrequencyCap | None = None
    approval: Approval = "never"
    approval_deadline: Duration | None = None
    approval_timeout_policy: Literal["hold", "fallback", "skip"] = "fallback"
    # Copy the guardrails refuse (whoever wrote it) is skipped, or held for a reviewer.
    refused_copy_policy: Literal["skip", "hold"] = "skip"
    # Drafts ahead: an email reached through a wait is drafted (and shown to reviewers) this
    # long before it is due, so it goes at its due time whatever the model's latency. Unset: the
    # deployment's DRIPLINE_DRAFT_AHEAD; ``0`` drafts when the email is due.
    draft_ahead: Lead | None = None
    # An email whose draft is not ready when it is due: ``fallback`` waits up to
    # ``late_draft_wait_seconds`` for the model, then sends the fallback copy; ``hold`` keeps
    # the email until its draft is ready, however long the model takes.
    late_draft: Literal["fallback", "hold"] = "fallback"
    late_draft_wait_seconds: float = Field(30.0, ge=0, le=600)
    layout: Slug = "basic"
    # A prompt version under prompts/drafting/ (v1, v2...); unset means the setting's default.
    prompt: Annotated[str, StringConstraints(pattern=r"^v[0-9]+[a-z0-9-]*$")] | None = None
    adapt: Adapt = Adapt()
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _steps_connect(self) -> Self:
        errors = _reference_errors(self.steps) or _loop_errors(self)
        if errors:
            raise DefinitionError(errors)
        return self

    def index(self, step_id: str) -> int:
        for number, step in enumerate(self.steps):
            if step.id == step_id:
                return number
        raise KeyError(f"sequence {self.key!r} has no step {step_id!r}")

    def step(self, step_id: str) -> Step:
        return self.steps[self.index(step_id)]

    def next_step_id(self, step_id: str) -> str | None:
        """The step after ``step_id`` in list order; None at the end (completion)."""
        following = self.index(step_id) + 1
        return self.steps[following].id if following < len(self.steps) else None

    def topics(self, step_id: str, variant: str | None = None) -> tuple[str, ...]:
        """What an email step (and its variant) is about; empty for other steps."""
        step = self.step(step_id)
        if not isinstance(step, EmailStep):
            return ()
        chosen = next((v for v in step.email.variants if v.id == variant), None)
        extra = chosen.topics if chosen is not None else []
        return tuple(dict.fromkeys([*step.email.topics, *extra]))

    def arm_step(self, step_id: str) -> str:
        """The email step a ``choose`` candidate leads to (through waits and gotos), whose
        stats stand for the candidate; the candidate itself when no email comes first."""
        current: str | None = step_id
        for _ in range(MAX_STEPS):
            if current is None:
                break
            step = self.step(current)
            if isinstance(step, EmailStep):
                return step.id
            if isinstance(step, GotoStep):
                current = step.goto
            elif isinstance(step, WaitStep):
                current = self.next_step_id(current)
            else:
                break
        return step_id

    @property
    def approval_deadline_duration(self) -> timedelta | None:
        return None if self.approval_deadline is None else parse_duration(self.approval_deadline)


def _jumps(step: Step) -> Iterator[tuple[str, str]]:
    """(path inside the step, target id) for each step this one can jump to."""
    if isinstance(step, GotoStep):
        yield "goto", step.goto
    elif isinstance(step, BranchStep):
        for number, rule in enumerate(step.branch):
            yield f"branch.{number}.{'else' if rule.else_ else 'goto'}", rule.target
    elif isinstance(step, ChooseStep):
        yield from ((f"choose.{number}", target) for number, target in enumerate(step.choose))


def _reference_errors(steps: list[Step]) -> list[FieldError]:
    errors: list[FieldError] = []
    first_use: dict[str, int] = {}
    for number, step in enumerate(steps):
        if step.id in first_use:
            message = f"duplicate step id {step.id!r} (first used by steps.{first_use[step.id]})"
            errors.append(FieldError(f"steps.{number}.id", message))
        first_use.setdefault(step.id, number)
    for number, step in enumerate(steps):
        for where, target in _jumps(step):
            if target not in first_use:
                errors.append(FieldError(f"steps.{number}.{where}", f"no step named {target!r}"))
    return errors


def _successors(defn: SequenceDefinition, step_id: str) -> list[str]:
    step = defn.step(step_id)
    jumps = [target for _, target in _jumps(step)]
    if jumps or isinstance(step, ExitStep):
        return jumps
    following = defn.next_step_id(step_id)
    return [] if following is None else [following]


def _find_loop(
    defn: SequenceDefinition, step_id: str, trail: list[str], done: set[str]
) -> list[str]:
    """A loop through ``step_id`` that has no wait step in it, or []."""
    if step_id in trail:
        return [*trail[trail.index(step_id) :], step_id]
    if step_id in done or isinstance(defn.step(step_id), WaitStep):
        return []
    for successor in _successors(defn, step_id):
        loop = _find_loop(defn, successor, [*trail, step_id], done)
        if loop:
            return loop
    done.add(step_id)
    return []


def _loop_errors(defn: SequenceDefinition) -> list[FieldError]:
    done: set[str] = set()
    for step in defn.steps:
        loop = _find_loop(defn, step.id, [], done)
        if loop:
            where = f"steps.{defn.index(loop[-2])}"
            message = f"the loop {' -> '.join(loop)} has no wait step; add one inside the loop"
            return [FieldError(where, message)]
    return []
