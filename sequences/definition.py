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

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from email.utils import parseaddr
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

try:  # libyaml parses a 256 KB document ~10x faster than the pure-Python parser
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

from sequences.durations import parse_duration
from sequences.sandbox import validate_condition, validate_template

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_NODES = 5_000
MAX_STEPS = 200
STEP_KINDS = ("email", "wait", "branch", "goto", "choose", "exit")

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_WINDOW = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str


class DefinitionError(ValueError):
    """A sequence document was refused; ``errors`` says where and why."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.path}: {e.message}" for e in errors))


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid id: use a-z, 0-9 and '-', e.g. welcome-email")
    return value


def _address(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("an address must fit on one line")
    address = parseaddr(value)[1]
    try:
        # test_environment admits the reserved .test domain used in local setups.
        validate_email(address, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not an email address ('Name <user@host>'): {exc}") from None
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def _zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone, e.g. Europe/Paris") from None


def _passes(check: Callable[[str], object]) -> AfterValidator:
    """A validator that keeps the text as written once ``check`` accepts it."""

    def validate(value: str) -> str:
        check(value)
        return value

    return AfterValidator(validate)


Slug = Annotated[str, AfterValidator(_slug)]
Duration = Annotated[str, _passes(parse_duration)]
Address = Annotated[str, AfterValidator(_address)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=100)]
TemplateText = Annotated[str, StringConstraints(max_length=50_000), _passes(validate_template)]
Condition = Annotated[str, _passes(validate_condition)]
Approval = Literal["always", "first_of_each_step", "never"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_window(text: str) -> tuple[time, time]:
    """``"09:00-17:00"`` -> (09:00, 17:00); the end is exclusive."""
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a window: use HH:MM-HH:MM, e.g. 09:00-17:00")
    hh1, mm1, hh2, mm2 = (int(part) for part in match.groups())
    try:
        start, end = time(hh1, mm1), time(hh2, mm2)
    except ValueError:
        raise ValueError(f"{text!r} has an impossible time of day") from None
    if start >= end:
        raise ValueError(f"window {text!r} must start before it ends (no overnight windows)")
    return start, end


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sender(_Model):
    from_: Address = Field(alias="from")
    reply_to: Address | None = None


class Entry(_Model):
    events: list[EventType] = []
    reenroll: Literal["never", "after_exit"] = "never"


class Schedule(_Model):
    timezone: Annotated[str, _passes(_zone)] = "UTC"
    timezone_from: Literal["contact.timezone"] | None = None
    days: list[Day] = Field(default_factory=lambda: list(DAYS), min_length=1)
    window: Annotated[str, _passes(parse_window)] | None = None

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


class Variant(_Model):
    id: Slug | None = None
    angle: str = Field(min_length=1, max_length=500)
    fallback: Fallback | None = None


class EmailSpec(_Model):
    brief: str = Field(min_length=1, max_length=2000)
    cta: Cta | None = None
    links: list[HttpUrl] = []
    fallback: Fallback
    variants: list[Variant] = []
    approval: Approval | None = None
    layout: Slug | None = None

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
    layout: Slug = "basic"
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


class _StrictLoader(_BaseLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, object]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if (key_node.tag, key_node.value) in seen:
                    problem = f"duplicate key {key_node.value!r}"
                    raise yaml.constructor.ConstructorError(
                        None, None, problem, key_node.start_mark
                    )
                seen.add((key_node.tag, key_node.value))
        return super().construct_mapping(node, deep)


def _body_error(message: str) -> DefinitionError:
    return DefinitionError([FieldError("body", message)])


def _load_text(source: str | bytes) -> object:
    data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _body_error(f"the document is larger than {MAX_DOCUMENT_BYTES // 1024} KB")
    try:
        return yaml.load(data, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _body_error(f"invalid YAML{where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise _body_error(f"invalid YAML: {' '.join(str(exc).split())}") from exc


def _check_size(document: object) -> None:
    """Count values, stopping at the limit: an alias bomb costs no more than a big file."""
    pending: list[Iterator[object]] = [iter((document,))]
    for count in itertools.count(1):
        item = next(pending[-1], pending)
        while item is pending and len(pending) > 1:
            pending.pop()
            item = next(pending[-1], pending)
        if item is pending:
            return
        if count > MAX_NODES:
            raise _body_error(f"the document has more than {MAX_NODES} values (aliases included)")
        if isinstance(item, Mapping):
            pending.append(itertools.chain(item.keys(), item.values()))
        elif isinstance(item, list | tuple):
            pending.append(iter(item))


def _path(loc: tuple[int | str, ...]) -> str:
    parts = list(loc)
    # A step's union tag sits between its index and its fields: steps.3.wait.wait.for.
    if len(parts) > 3 and parts[0] == "steps" and parts[2] in STEP_KINDS:
        del parts[2]
    return ".".join(str(part) for part in parts)


def _message(error: ErrorDetails) -> str:
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "step_kind" and isinstance(value, Mapping):
        kinds = [kind for kind in STEP_KINDS if kind in value]
        if kinds:
            return f"a step has exactly one kind, this one has {' and '.join(kinds)}"
    return error["msg"].removeprefix("Value error, ")


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors: list[FieldError] = []
    for error in exc.errors(include_url=False):
        path = _path(error["loc"])
        inner = error.get("ctx", {}).get("error")
        if isinstance(inner, DefinitionError):
            errors += [
                FieldError(".".join(filter(None, (path, e.path))), e.message) for e in inner.errors
            ]
        else:
            errors.append(FieldError(path or "body", _message(error)))
    return errors


def parse_definition(source: str | bytes | Mapping[str, object]) -> SequenceDefinition:
    """Parse YAML/JSON text or an already-parsed mapping; raise DefinitionError if invalid."""
    document = source if isinstance(source, Mapping) else _load_text(source)
    _check_size(document)
    if not isinstance(document, Mapping):
        raise _body_error("a sequence definition must be a mapping (key, name, sender, steps...)")
    try:
        return SequenceDefinition.model_validate(document)
    except ValidationError as exc:
        raise DefinitionError(_field_errors(exc)) from exc


def canonical_json(defn: SequenceDefinition) -> str:
    """One spelling per meaning: sorted keys, aliases, defaults filled in, nulls dropped."""
    document = defn.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def definition_checksum(defn: SequenceDefinition) -> str:
    return hashlib.sha256(canonical_json(defn).encode()).hexdigest()
