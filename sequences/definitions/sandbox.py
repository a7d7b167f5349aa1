"""Run user-authored Jinja2: fallback templates and branch conditions.

Both run in an ``ImmutableSandboxedEnvironment`` hardened further, because the
sandbox alone blocks attribute escapes but not resource exhaustion:

* Static checks when a sequence is applied (:func:`validate_template`,
  :func:`validate_condition`): syntax, only the documented context names, no
  ``_private`` attributes, only allow-listed filters, no include/import/extends.
* Size: output is streamed and cut off past :data:`MAX_OUTPUT_CHARS`; every
  operation that can amplify text (``*``, ``+``, ``~``, ``join``, ``replace``,
  printing a container) is refused beforehand if its result would be too big.
  Methods on built-in values are allow-listed (``'a'.center(10**9)`` and
  ``str.format`` padding are out), string ``%`` formatting is refused.
* Time: every loop iteration, call, operator, filter and output chunk checks a
  per-render deadline of :data:`TIME_LIMIT_SECONDS`; ``range()`` is capped.

Missing values: templates use ``StrictUndefined`` (a typo must fail loudly, not
send "Hi ,"); use ``default(...)`` for optional fields. In conditions a missing
value is falsy: ``contact.plan == 'enterprise'`` and ``contact.seats > 10`` are
False when the field is absent, and a condition that cannot be evaluated because
of a missing value (``contact.seats + 1 > 2``) is False as a whole.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from jinja2 import StrictUndefined, Template, meta, nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.parser import Parser

from sequences.definitions.sandbox_env import (
    CONDITION_NAMES,
    DEADLINE,
    MAX_CONDITION_CHARS,
    MAX_TEMPLATE_CHARS,
    METHOD_NAMES,
    TEMPLATE_NAMES,
    TIME_LIMIT_SECONDS,
    BoundedEnvironment,
    Missing,
    SandboxError,
    TemplateRenderError,
    UnsafeTemplateError,
    check_size,
    tick,
)

__all__ = [
    "SandboxError",
    "TemplateRenderError",
    "UnsafeTemplateError",
    "evaluate_condition",
    "render_template",
    "validate_condition",
    "validate_template",
]


@functools.lru_cache(maxsize=1)
def _template_env() -> BoundedEnvironment:
    return BoundedEnvironment(StrictUndefined)


@functools.lru_cache(maxsize=1)
def _condition_env() -> BoundedEnvironment:
    return BoundedEnvironment(Missing)


@contextmanager
def _parsing() -> Iterator[None]:
    try:
        yield
    except TemplateSyntaxError as exc:
        raise UnsafeTemplateError(f"syntax error on line {exc.lineno}: {exc.message}") from exc
    except RecursionError as exc:
        raise UnsafeTemplateError("expression is nested too deeply") from exc


def _parse_expression(env: BoundedEnvironment, source: str) -> nodes.Template:
    parser = Parser(env, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        lineno = parser.stream.current.lineno
        raise TemplateSyntaxError("unexpected text after the condition", lineno)
    ast = nodes.Template([nodes.Output([expr])], lineno=1)
    ast.set_environment(env)
    return ast


def _node_problem(env: BoundedEnvironment, node: nodes.Node) -> str | None:
    name: object = None
    if isinstance(node, nodes.Getattr):
        name = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        name = node.arg.value
    if isinstance(name, str) and name.startswith("_"):
        return f"unsafe expression: attribute {name!r} is not allowed"
    if isinstance(node, nodes.Filter) and node.name not in env.filters:
        return f"filter {node.name!r} is not available; use one of {', '.join(sorted(env.filters))}"
    if isinstance(node, nodes.Test) and node.name not in env.tests:
        return f"test {node.name!r} is not available"
    if isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport):
        return "include, import and extends are not allowed"
    return _render_problem(node)


def _render_problem(node: nodes.Node) -> str | None:
    """What would fail at render for every contact: a method the sandbox never hands out
    (``'{}'.format(x)``) and ``%`` formatting of text."""
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        method, owner = node.node.attr, node.node.node
        if method not in METHOD_NAMES and not (
            isinstance(owner, nodes.Name) and owner.name == "loop"
        ):
            kind = f" of {type(owner.value).__name__!r}" if isinstance(owner, nodes.Const) else ""
            return f"attribute {method!r}{kind} cannot be called in a template; use ~ to join text"
    if isinstance(node, nodes.Mod) and _is_text(node.left):
        return "string formatting with % is not allowed; use ~ to join text"
    return None


def _is_text(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Concat | nodes.TemplateData) or (
        isinstance(node, nodes.Const) and isinstance(node.value, str)
    )


def _post_order(node: nodes.Node) -> Iterator[nodes.Node]:
    # Children first: in ``''.__class__.__mro__`` the first bad name is reported first.
    for child in node.iter_child_nodes():
        yield from _post_order(child)
    yield node


def _check_ast(env: BoundedEnvironment, ast: nodes.Template, allowed: frozenset[str]) -> None:
    with _parsing():  # a deeply nested expression can exhaust the stack here too
        problems = (_node_problem(env, node) for node in _post_order(ast))
        problem = next(filter(None, problems), None)
        unknown = sorted(meta.find_undeclared_variables(ast) - allowed) if problem is None else []
    if problem is not None:
        raise UnsafeTemplateError(problem)
    if unknown:
        names = ", ".join(sorted(allowed))
        raise UnsafeTemplateError(f"unknown name {unknown[0]!r}: only {names} can be used here")


def _check_length(source: str, limit: int, what: str) -> None:
    if len(source) > limit:
        raise UnsafeTemplateError(f"{what} is longer than {limit} characters")


def validate_template(source: str) -> None:
    """Refuse a template that cannot be used: raises UnsafeTemplateError saying why."""
    _check_length(source, MAX_TEMPLATE_CHARS, "template")
    env = _template_env()
    with _parsing():
        ast = env.parse(source)
    _check_ast(env, ast, TEMPLATE_NAMES)


def validate_condition(source: str) -> None:
    """Refuse a branch condition that cannot be used: raises UnsafeTemplateError."""
    _check_length(source, MAX_CONDITION_CHARS, "condition")
    env = _condition_env()
    with _parsing():
        ast = _parse_expression(env, source)
    _check_ast(env, ast, CONDITION_NAMES)


@functools.lru_cache(maxsize=512)
def _compiled_template(source: str) -> Template:
    validate_template(source)
    with _parsing():
        return _template_env().from_string(source)


@functools.lru_cache(maxsize=1024)
def _compiled_condition(source: str) -> TemplateExpression:
    validate_condition(source)
    with _parsing():
        return _condition_env().compile_expression(source)


@contextmanager
def _running(what: str) -> Iterator[None]:
    """Run user code under the time budget; map whatever it raises onto our errors."""
    token = DEADLINE.set(time.monotonic() + TIME_LIMIT_SECONDS)
    try:
        yield
    except SandboxError:
        raise
    except SecurityError as exc:
        raise UnsafeTemplateError(f"unsafe expression: {exc}") from exc
    except UndefinedError as exc:
        raise TemplateRenderError(f"{what} uses a missing value: {exc}") from exc
    except Exception as exc:  # user code can raise anything: ZeroDivisionError, TypeError...
        raise TemplateRenderError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        DEADLINE.reset(token)


def _collect(chunks: Iterator[str]) -> str:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        check_size(size, "template output")
        tick()
        parts.append(chunk)
    return "".join(parts)


def render_template(source: str, context: Mapping[str, object]) -> str:
    """Render a subject/preheader/body template as plain text (no autoescape).

    Raises UnsafeTemplateError (refused or over a limit) or TemplateRenderError.
    """
    template = _compiled_template(source)
    with _running("template"):
        return _collect(template.generate(dict(context)))


def evaluate_condition(source: str, context: Mapping[str, object]) -> bool:
    """Evaluate a branch condition; a missing value makes it False (see module doc)."""
    expression = _compiled_condition(source)
    with _running("condition"):
        try:
            return bool(expression(dict(context)))
        except UndefinedError:
            return False
