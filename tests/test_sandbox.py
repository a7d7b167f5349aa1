from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from sequences.definitions import sandbox
from sequences.definitions.sandbox import (
    TemplateRenderError,
    UnsafeTemplateError,
    evaluate_condition,
    render_template,
    validate_condition,
    validate_template,
)

CONTEXT: dict[str, object] = {
    "contact": {"first_name": "Ann", "company": "<Initech>", "tags": ["trial", "eu"]},
    "sender": {"name": "Dana", "email": "dana@acme.test"},
    "step": {"id": "welcome"},
}


def clicked_only(*steps: str) -> Callable[[str], bool]:
    return lambda step: step in steps


# --- templates: what should work ---------------------------------------------------------


def test_renders_with_defaults_and_all_context_names() -> None:
    source = "Hi {{ contact.first_name | default('there') }}, {{ sender.name }} ({{ step.id }})"
    assert render_template(source, CONTEXT) == "Hi Ann, Dana (welcome)"
    assert render_template("Hi {{ contact.nickname | default('there') }}", CONTEXT) == "Hi there"


def test_autoescape_is_off_for_plain_text() -> None:
    assert render_template("{{ contact.company }}", CONTEXT) == "<Initech>"


def test_loops_filters_and_safe_methods_work() -> None:
    source = (
        "{% for tag in contact.tags %}{{ loop.index }}:{{ tag | upper }}"
        "{% if not loop.last %}, {% endif %}{% endfor %}"
        "{% for x in [] %}x{% else %} none{% endfor %}"
        " {{ contact.tags | join('/') }} {{ contact.first_name.lower() ~ '!' }}"
        " {{ range(3) | list | length }} {{ 'ab' * 2 }} {{ 2 ** 10 }}"
    )
    expected = "1:TRIAL, 2:EU none trial/eu ann! 3 abab 1024"
    assert render_template(source, CONTEXT) == expected


def test_compiled_templates_are_cached() -> None:
    source = "cached {{ step.id }}"
    render_template(source, CONTEXT)
    hits = sandbox._compiled_template.cache_info().hits
    render_template(source, CONTEXT)
    assert sandbox._compiled_template.cache_info().hits == hits + 1


# --- templates: missing values and static refusals -----------------------------------------


def test_missing_variable_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(TemplateRenderError, match=r"missing value.*last_name"):
        render_template("Hi {{ contact.last_name }}", CONTEXT)
    with pytest.raises(TemplateRenderError, match="missing value"):
        render_template("Hi {{ contact.first_name }}", {})


def test_private_attribute_refused_at_validate_and_at_render() -> None:
    source = "{{ ''.__class__.__mro__ }}"
    message = "unsafe expression: attribute '__class__' is not allowed"
    with pytest.raises(UnsafeTemplateError, match=message):
        validate_template(source)
    with pytest.raises(UnsafeTemplateError, match=message):
        render_template(source, CONTEXT)


def test_computed_private_attribute_is_refused_by_the_runtime_sandbox() -> None:
    source = "{{ ''['__cla' ~ 'ss__'] }}"
    validate_template(source)  # the name is only known when it runs
    with pytest.raises(UnsafeTemplateError, match="'__class__'"):
        render_template(source, CONTEXT)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ secrets }}", "unknown name 'secrets'"),
        ("{{ cycler }}", "unknown name 'cycler'"),
        ("{{ contact.name | center(99) }}", "filter 'center' is not available"),
        ("{% include 'other.html' %}", "include, import and extends are not allowed"),
        ("Hi\n{{ contact.name }", "syntax error on line 2"),
        ("{{ contact.name is frobbed }}", "test 'frobbed' is not available"),
    ],
)
def test_static_refusals(source: str, message: str) -> None:
    with pytest.raises(UnsafeTemplateError, match=message):
        validate_template(source)


# --- templates: size and time limits -----------------------------------------------------


def assert_refused_quickly(source: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(UnsafeTemplateError, match=message):
        render_template(source, CONTEXT)
    assert time.monotonic() - started < 0.5


def test_huge_string_multiplication_is_refused_quickly() -> None:
    assert_refused_quickly("{{ 'a' * 50000000 }}", "repeated text is larger")
    assert_refused_quickly("{{ 50000000 * 'a' }}", "repeated text is larger")
    assert_refused_quickly("{{ ['a'] * 50000000 }}", "repeated text is larger")


def test_huge_range_is_refused() -> None:
    assert_refused_quickly("{% for i in range(10**9) %}{% endfor %}", r"range\(\) is limited")


def test_output_over_the_limit_is_refused() -> None:
    source = "{% for i in range(5000) %}{{ 'x' * 50 }}{% endfor %}"
    assert_refused_quickly(source, "template output is larger")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'a'.center(1000000000) }}", "attribute 'center' of 'str'"),
        ("{{ '{:>999999999}'.format(1) }}", "attribute 'format' of 'str'"),
        ("{{ (5).to_bytes(100000000, 'big') }}", "attribute 'to_bytes' of 'int'"),
        ("{{ '%999999999d' % 1 }}", "string formatting with %"),
        ("{{ 2 ** 100000000 }}", "number too large"),
        ("{% set a = 'x' * 90000 %}{{ a ~ a }}", "joined text is larger"),
        ("{% set a = 'x' * 90000 %}{{ a + a }}", "concatenation is larger"),
        ("{% set a = 'x' * 90000 %}{{ [a, a, a] | join(',') }}", "is larger"),
        ("{% set a = 'x' * 90000 %}{{ a | replace('x', 'yy') }}", "replaced text is larger"),
        ("{% set a = 'x' * 90000 %}{{ [a, a] }}", "printed value is larger"),
        ("{% set a = 'x' * 90000 %}{{ [a, a] | string }}", "input of filter string"),
    ],
)
def test_amplifying_operations_are_refused_before_allocating(source: str, message: str) -> None:
    assert_refused_quickly(source, message)


def test_runaway_loops_hit_the_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "TIME_LIMIT_SECONDS", 0.05)
    nested = (
        "{% for i in range(10000) %}{% for j in range(10000) %}"
        "{% for k in range(10000) %}{% endfor %}{% endfor %}{% endfor %}"
    )
    assert_refused_quickly(nested, "took longer than")


def test_runaway_recursion_hits_the_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "TIME_LIMIT_SECONDS", 0.05)
    source = (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}"
    )
    assert_refused_quickly(source, "took longer than")


def test_runtime_errors_are_render_errors() -> None:
    with pytest.raises(TemplateRenderError, match="ZeroDivisionError"):
        render_template("{{ 1 / 0 }}", CONTEXT)


# --- conditions -----------------------------------------------------------------------------


def test_engagement_helpers_are_callable_in_conditions() -> None:
    context = {"clicked": clicked_only("welcome"), "contact": {}}
    assert evaluate_condition("clicked('welcome')", context) is True
    assert evaluate_condition("clicked('nudge')", context) is False
    assert evaluate_condition("not clicked('nudge') and clicked('welcome')", context) is True


def test_conditions_read_contact_event_and_score() -> None:
    context = {
        "contact": {"plan": "enterprise", "seats": 40},
        "event": {"type": "clicked"},
        "score": 0.7,
        "events": [{"type": "opened"}, {"type": "clicked"}],
    }
    assert evaluate_condition("contact.plan == 'enterprise' and contact.seats > 10", context)
    assert evaluate_condition("event.type == 'clicked' and score >= 0.5", context)
    assert evaluate_condition("events | selectattr('type', 'eq', 'clicked') | list", context)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("contact.plan == 'enterprise'", False),
        ("contact.plan != 'enterprise'", True),
        ("contact.seats > 10", False),
        ("not (contact.seats > 10)", True),
        ("contact.billing.country == 'FR'", False),
        ("contact.seats + 1 > 10", False),
        ("'vip' in contact.tags", False),
        ("event.type == 'clicked'", False),
    ],
)
def test_missing_values_in_conditions_are_falsy(source: str, expected: bool) -> None:
    assert evaluate_condition(source, {"contact": {}}) is expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("''.__class__", "attribute '__class__' is not allowed"),
        ("sender.name == 'x'", "unknown name 'sender'"),
        ("contact.plan == 'a' }}{{ 1", "syntax error on line 1"),
        ("contact.plan ==", "syntax error"),
        ("contact.plan | center(9)", "filter 'center' is not available"),
    ],
)
def test_condition_refusals(source: str, message: str) -> None:
    with pytest.raises(UnsafeTemplateError, match=message):
        validate_condition(source)
    with pytest.raises(UnsafeTemplateError, match=message):
        evaluate_condition(source, {"contact": {}})


def test_condition_limits_apply_too() -> None:
    with pytest.raises(UnsafeTemplateError, match="repeated text"):
        evaluate_condition("'a' * 50000000 == contact.plan", {"contact": {}})
    with pytest.raises(UnsafeTemplateError, match="range"):
        evaluate_condition("range(10**9) | list", {"contact": {}})


def test_condition_runtime_errors_are_render_errors() -> None:
    with pytest.raises(TemplateRenderError, match="ZeroDivisionError"):
        evaluate_condition("contact.seats / 0 > 1", {"contact": {"seats": 3}})
