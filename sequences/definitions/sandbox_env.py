"""The hardened Jinja2 sandbox behind sequences.definitions.sandbox: limits, allow-lists, the
environment."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from jinja2 import ChainableUndefined, Undefined, nodes
from jinja2.filters import do_replace, sync_do_join
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_eval_context
from jinja2.visitor import NodeTransformer

MAX_OUTPUT_CHARS = 100_000
TIME_LIMIT_SECONDS = 1.0
MAX_RANGE = 10_000
MAX_INT_BITS = 4_096
MAX_TEMPLATE_CHARS = 50_000
MAX_CONDITION_CHARS = 2_000

TEMPLATE_NAMES = frozenset({"contact", "sender", "step"})
CONDITION_NAMES = frozenset(
    {
        "contact",
        "event",
        "score",
        "affinity",
        "affinities",
        "opened",
        "clicked",
        "replied",
        "converted",
        "events",
    }
)


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Filters that turn their input into text get their input weighed first.
_STRING_FILTERS = _names(
    "capitalize e escape lower string striptags title tojson trim truncate upper urlencode "
    "wordcount"
)
_PLAIN_FILTERS = _names(
    "abs count d default dictsort first float int items last length list map max min reject "
    "rejectattr reverse round select selectattr sort sum unique"
)
# Methods callable on built-in values; anything else (center, ljust, zfill, format,
# join, replace, to_bytes...) can allocate without bound from a tiny expression.
_STR_METHODS = _names(
    "capitalize casefold count endswith find isalnum isalpha isdigit islower isnumeric isspace "
    "istitle isupper lower lstrip partition removeprefix removesuffix rfind rpartition rsplit "
    "rstrip split splitlines startswith strip swapcase title upper"
)
_SAFE_METHODS: tuple[tuple[type | tuple[type, ...], frozenset[str]], ...] = (
    (str, _STR_METHODS),
    (dict, _names("get items keys values")),
    ((list, tuple), _names("count index")),
    ((int, float), frozenset()),
)
# What a template may call as a method at all: the allow-lists above and the loop's helpers.
METHOD_NAMES = frozenset().union(*(names for _, names in _SAFE_METHODS)) | {"cycle", "changed"}
_TOO_BIG_NUMBER = f"number too large: results are limited to {MAX_INT_BITS} bits"


class SandboxError(ValueError):
    """A user-authored template or condition was refused or failed."""


class UnsafeTemplateError(SandboxError):
    """Refused: a syntax error, a disallowed construct, or a size or time limit."""


class TemplateRenderError(SandboxError):
    """A valid template failed on this context (missing value, type error...)."""


DEADLINE: ContextVar[float | None] = ContextVar("dripline_sandbox_deadline", default=None)


def tick() -> None:
    deadline = DEADLINE.get()
    if deadline is not None and time.monotonic() > deadline:
        raise UnsafeTemplateError(f"template took longer than {TIME_LIMIT_SECONDS:g} s to run")


def _weight(value: object, limit: int = MAX_OUTPUT_CHARS) -> int:
    """Rough printed size of value; stops once past limit, so shared refs cost little."""
    total = 0
    pending: list[Iterator[object]] = [iter((value,))]
    while pending and total <= limit:
        item = next(pending[-1], pending)
        if item is pending:
            pending.pop()
        elif isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            total += 1
            pending.append(itertools.chain(item.keys(), item.values()))
        elif isinstance(item, list | tuple | set | frozenset):
            total += 1
            pending.append(iter(item))
        else:
            total += 1
    return total


def check_size(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise UnsafeTemplateError(f"{what} is larger than the {MAX_OUTPUT_CHARS} character limit")


def _check_weight(value: object, what: str) -> None:
    check_size(_weight(value), what)


def _finalize(value: Any) -> Any:
    _check_weight(value, "printed value")
    return value


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:
        count = MAX_RANGE + 1
    if count > MAX_RANGE:
        raise UnsafeTemplateError(f"range() is limited to {MAX_RANGE} items")
    return numbers


def _repeat_size(left: object, right: object) -> int | None:
    """Printed size of ``left * right`` when it repeats a sequence, else None."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            return _weight(seq) * max(times, 0)
    return None


def _check_binop(operator: str, left: object, right: object) -> None:
    if operator == "%" and isinstance(left, str):
        raise UnsafeTemplateError("string formatting with % is not allowed; use ~ to join text")
    if operator == "*" and (size := _repeat_size(left, right)) is not None:
        check_size(size, "repeated text")
    both_text = isinstance(left, str) and isinstance(right, str)
    if operator == "+" and (both_text or isinstance(left, list | tuple)):
        check_size(_weight(left) + _weight(right), "concatenation")
    if operator == "**" and _power_bits(left, right) > MAX_INT_BITS:
        raise UnsafeTemplateError(_TOO_BIG_NUMBER)


def _power_bits(base: object, exponent: object) -> int:
    """Rough size of an integer power, computed before Python spends time on it."""
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1:
        return base.bit_length() * exponent
    return 0


def _guard(func: Callable[..., Any], name: str, *, weigh_args: bool) -> Callable[..., Any]:
    # functools.wraps also copies jinja's pass_context/pass_eval_context marker.
    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        tick()
        if weigh_args:
            _check_weight((args, kwargs), f"input of filter {name}")
        return func(*args, **kwargs)

    return guarded


@pass_eval_context
def _join(
    eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: str | int | None = None
) -> str:
    items = list(value)
    check_size(_weight(items) + len(str(d)) * len(items), "joined text")
    return sync_do_join(eval_ctx, items, d, attribute)


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
    text, old_text, new_text = str(s), str(old), str(new)
    hits = text.count(old_text) if old_text else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    check_size(len(text) + hits * max(len(new_text) - len(old_text), 0), "replaced text")
    return do_replace(eval_ctx, s, old, new, count)


def _safe_filters(defaults: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    chosen = {name: defaults[name] for name in _PLAIN_FILTERS | _STRING_FILTERS}
    chosen |= {"join": _join, "replace": _replace}
    weigh = _STRING_FILTERS | {"join", "replace"}
    return {name: _guard(f, name, weigh_args=name in weigh) for name, f in chosen.items()}


def _env_call(method: str, args: list[nodes.Node], lineno: int) -> nodes.Call:
    target = nodes.EnvironmentAttribute(method, lineno=lineno)
    return nodes.Call(target, args, [], None, None, lineno=lineno)


class _Bounder(NodeTransformer):
    """Routes loops and ``~`` through the environment so they count against the limits."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _env_call("bounded_iter", [node.iter], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _env_call("bounded_concat", list(node.nodes), node.lineno)


class Missing(ChainableUndefined):
    """Condition-side undefined: comparisons against a missing value are False."""

    __slots__ = ()

    # Jinja's base class types these as always-raising; here they answer False.
    def __lt__(self, other: object) -> bool:  # type: ignore[override]
        return False

    __le__ = __gt__ = __ge__ = __lt__  # type: ignore[assignment]


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, undefined: type[Undefined]) -> None:
        super().__init__(autoescape=False, undefined=undefined, finalize=_finalize)
        self.globals.clear()
        self.globals["range"] = _bounded_range
        self.filters = _safe_filters(self.filters)

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        return super()._generate(_Bounder().visit(source), name, filename, defer_init)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if not callable(value):
            return True
        allowed = next((names for kinds, names in _SAFE_METHODS if isinstance(obj, kinds)), None)
        return allowed is None or attr in allowed

    def wrap_str_format(self, value: Any) -> None:
        # Never hand out str.format: its padding ('{:>999999999}') allocates at will.
        return None

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise UnsafeTemplateError(
            f"unsafe expression: attribute {attribute!r} of {type(obj).__name__!r} is not allowed"
        )

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        tick()
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        tick()
        _check_binop(operator, left, right)
        result = self.binop_table[operator](left, right)
        if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
            raise UnsafeTemplateError(_TOO_BIG_NUMBER)
        return result

    def bounded_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            tick()
            yield item

    def bounded_concat(self, *values: Any) -> str:
        tick()
        _check_weight(values, "joined text")
        return "".join(map(str, values))
