from __future__ import annotations

import copy
import json
import time as clock
from datetime import time, timedelta
from importlib.resources import files
from typing import Any

import pytest
import yaml

from sequences.definitions.ahead import email_after_wait, lead
from sequences.definitions.document import (
    BranchStep,
    EmailStep,
    ExitStep,
    GotoStep,
    SequenceDefinition,
    WaitStep,
)
from sequences.definitions.loading import canonical_json, definition_checksum, parse_definition
from sequences.definitions.refusals import DefinitionError, FieldError
from sequences.kit.durations import parse_duration

EXAMPLE = files("sequences") / "examples" / "trial-onboarding.yaml"

FALLBACK = {"subject": "Hi {{ contact.first_name | default('there') }}", "body": "Hello."}
MINIMAL: dict[str, Any] = {
    "key": "mini",
    "name": "Mini",
    "sender": {"from": "Dana at Acme <dana@acme.test>"},
    "steps": [
        {"id": "hello", "email": {"brief": "Say hello.", "fallback": FALLBACK}},
        {"id": "pause", "wait": {"for": "2d", "until": ["clicked"]}},
        {
            "id": "route",
            "branch": [{"if": "clicked('hello')", "goto": "done"}, {"else": "again"}],
        },
        {"id": "again", "goto": "hello"},
        {"id": "done", "exit": {}},
    ],
}


def document(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    doc.update(changes)
    return doc


def with_step(index: int, step: dict[str, Any]) -> dict[str, Any]:
    doc = document()
    doc["steps"][index] = step
    return doc


def refusal(source: str | bytes | dict[str, Any]) -> list[FieldError]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(source)
    return caught.value.errors


def paths(source: str | bytes | dict[str, Any]) -> dict[str, str]:
    return {error.path: error.message for error in refusal(source)}


# --- the example and the accepted forms ------------------------------------------------------


def test_example_parses_from_package_data() -> None:
    defn = parse_definition(EXAMPLE.read_text(encoding="utf-8"))
    assert defn.key == "trial-onboarding"
    assert defn.sender.from_ == "Dana at Acme <dana@acme.test>"
    assert defn.exit_on == ["converted", "replied"]
    assert defn.exclusive_group == "onboarding"
    assert [step.kind for step in defn.steps][:3] == ["email", "wait", "branch"]
    assert {"email", "wait", "branch", "goto", "exit"} <= {step.kind for step in defn.steps}


def test_example_step_helpers() -> None:
    defn = parse_definition(EXAMPLE.read_bytes())
    pause = defn.step("pause")
    assert isinstance(pause, WaitStep)
    assert pause.wait.duration == timedelta(days=2)
    assert pause.wait.until == ["clicked"]
    assert defn.index("route") == 2
    assert defn.next_step_id("welcome") == "pause"
    assert defn.next_step_id(defn.steps[-1].id) is None
    with pytest.raises(KeyError):
        defn.step("missing")


def test_example_schedule_cap_and_variants() -> None:
    defn = parse_definition(EXAMPLE.read_text(encoding="utf-8"))
    assert defn.schedule is not None
    assert defn.schedule.weekdays == frozenset(range(5))
    assert defn.schedule.window_times == (time(9), time(17))
    assert defn.frequency_cap is not None and defn.frequency_cap.duration == timedelta(days=1)
    nudge = defn.step("nudge")
    assert isinstance(nudge, EmailStep)
    assert [v.id for v in nudge.email.variants] == ["v1", "v2"]


def test_json_text_and_mappings_are_accepted() -> None:
    from_json = parse_definition(json.dumps(MINIMAL))
    assert from_json == parse_definition(MINIMAL)
    route = from_json.step("route")
    assert isinstance(route, BranchStep)
    assert [rule.target for rule in route.branch] == ["done", "again"]
    assert isinstance(from_json.step("again"), GotoStep)


def test_empty_exit_reads_like_an_empty_mapping() -> None:
    text = yaml.safe_dump(MINIMAL).replace("exit: {}", "exit:")
    defn = parse_definition(text)
    assert isinstance(defn.step("done"), ExitStep)
    assert definition_checksum(defn) == definition_checksum(parse_definition(MINIMAL))


# --- refusals, each with its path ----------------------------------------------------------


def test_invalid_yaml_reports_body_and_line() -> None:
    [error] = refusal("key: mini\n  name: bad indent\n")
    assert error == FieldError(
        "body", "invalid YAML at line 2, column 7: mapping values are not allowed in this context"
    )
    [error] = refusal("key: mini\nname: Mini\nsteps: [\n  - id: a\n")
    assert (error.path, error.message.startswith("invalid YAML at line 4")) == ("body", True)


def test_duplicate_yaml_keys_are_refused() -> None:
    [error] = refusal("key: mini\nname: Mini\nkey: other\n")
    assert (error.path, "line 3" in error.message) == ("body", True)
    assert "duplicate key 'key'" in error.message


def test_goto_to_a_missing_step() -> None:
    assert paths(with_step(3, {"id": "again", "goto": "nowhere"})) == {
        "steps.3.goto": "no step named 'nowhere'"
    }


def test_branch_and_choose_targets_must_exist() -> None:
    branch = {"id": "route", "branch": [{"if": "clicked('hello')", "goto": "x"}, {"else": "y"}]}
    errors = paths(with_step(2, branch))
    assert set(errors) == {"steps.2.branch.0.goto", "steps.2.branch.1.else"}
    errors = paths(with_step(3, {"id": "again", "choose": ["hello", "ghost"]}))
    assert set(errors) == {"steps.3.choose.1"}


def test_bad_duration_names_wait_for() -> None:
    errors = paths(with_step(1, {"id": "pause", "wait": {"for": "2x"}}))
    assert errors == {
        "steps.1.wait.for": "'2x' is not a duration: use a number followed by s, m, h, d or w, "
        "e.g. 2d"
    }


def test_malformed_sender_addresses() -> None:
    errors = paths(document(sender={"from": "Dana <dana@@acme>", "reply_to": "nope"}))
    assert set(errors) == {"sender.from", "sender.reply_to"}
    assert "is not an email address" in errors["sender.from"]
    assert set(paths(document(sender={"from": "a@b.test\r\nBcc: x@y.test"}))) == {"sender.from"}


def test_unsafe_template_in_fallback() -> None:
    email = {"brief": "x", "fallback": {"subject": "{{ ''.__class__ }}", "body": "b"}}
    errors = paths(with_step(0, {"id": "hello", "email": email}))
    assert errors == {
        "steps.0.email.fallback.subject": "unsafe expression: attribute '__class__' is not allowed"
    }


def condition_step(condition: str) -> dict[str, Any]:
    return {"id": "route", "branch": [{"if": condition, "goto": "done"}, {"else": "done"}]}


def test_unsafe_or_unknown_condition() -> None:
    errors = paths(with_step(2, condition_step("().__class__")))
    unsafe = "unsafe expression: attribute '__class__' is not allowed"
    assert errors == {"steps.2.branch.0.if": unsafe}
    errors = paths(with_step(2, condition_step("secrets.plan")))
    assert "unknown name 'secrets'" in errors["steps.2.branch.0.if"]


def test_branch_rules_shape_and_else_position() -> None:
    bad_rule = {"id": "route", "branch": [{"if": "clicked('hello')"}, {"else": "done"}]}
    assert set(paths(with_step(2, bad_rule))) == {"steps.2.branch.0"}
    else_first = {"id": "route", "branch": [{"else": "done"}, {"if": "score > 1", "goto": "done"}]}
    assert "must be last" in paths(with_step(2, else_first))["steps.2.branch"]


def test_duplicate_step_ids() -> None:
    doc = document()
    doc["steps"].append({"id": "hello", "exit": {}})
    assert paths(doc) == {"steps.5.id": "duplicate step id 'hello' (first used by steps.0)"}


def test_two_kind_keys_in_one_step() -> None:
    step = {"id": "both", "goto": "done", "wait": {"for": "1d"}}
    assert paths(with_step(3, step)) == {
        "steps.3": "a step has exactly one kind, this one has wait and goto"
    }
    assert "exactly one of: email, wait" in paths(with_step(3, {"id": "none"}))["steps.3"]


def test_unknown_keys() -> None:
    assert paths(document(colour="blue")) == {"colour": "unknown field"}
    step = {"id": "pause", "wait": {"for": "1d", "unitl": ["clicked"]}}
    assert paths(with_step(1, step)) == {"steps.1.wait.unitl": "unknown field"}
    assert paths(with_step(3, {"id": "again", "goto": "hello", "x": 1})) == {
        "steps.3.x": "unknown field"
    }


def test_schedule_window_and_timezone() -> None:
    schedule = {"timezone": "Mars/Olympus", "window": "17:00-09:00", "days": ["mon", "fun"]}
    errors = paths(document(schedule=schedule))
    assert set(errors) == {"schedule.timezone", "schedule.window", "schedule.days.1"}
    assert "start before it ends" in errors["schedule.window"]
    assert "HH:MM-HH:MM" in paths(document(schedule={"window": "9-17"}))["schedule.window"]


def test_loops_need_a_wait_step() -> None:
    doc = document()
    del doc["steps"][1]  # without the pause, hello -> route -> again -> hello never waits
    [error] = refusal(doc)
    assert error.path.startswith("steps.")
    assert "has no wait step" in error.message
    assert "hello" in error.message


def test_self_goto_is_a_loop() -> None:
    assert "has no wait step" in paths(with_step(3, {"id": "again", "goto": "again"}))["steps.3"]


def test_whole_document_refusals() -> None:
    assert set(paths("- just\n- a list\n")) == {"body"}
    assert set(paths("")) == {"body"}
    too_big = "name: " + "x" * (257 * 1024)
    assert "larger than 256 KB" in paths(too_big)["body"]


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    started = clock.monotonic()
    errors = paths("\n".join(lines) + "\n")  # 10**9 values if expanded
    assert "more than 5000 values" in errors["body"]
    assert clock.monotonic() - started < 1


def test_missing_required_fields() -> None:
    doc = document()
    del doc["sender"]
    assert paths(doc) == {"sender": "required field is missing"}
    assert "at least 1" in paths(document(steps=[]))["steps"]


def test_definition_error_text_lists_paths() -> None:
    with pytest.raises(DefinitionError, match=r"steps\.3\.goto: no step named 'nowhere'"):
        parse_definition(with_step(3, {"id": "again", "goto": "nowhere"}))


def test_model_validate_applies_the_cross_checks_too() -> None:
    with pytest.raises(ValueError, match="no step named"):
        SequenceDefinition.model_validate(with_step(3, {"id": "again", "goto": "nowhere"}))


# --- canonical form --------------------------------------------------------------------------


def reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(item) for item in value]
    return value


def test_checksum_is_stable_across_key_order_and_explicit_defaults() -> None:
    original = parse_definition(MINIMAL)
    shuffled = parse_definition(yaml.safe_dump(reversed_keys(MINIMAL), sort_keys=False))
    explicit = parse_definition(document(approval="never", layout="basic", exit_on=[]))
    assert definition_checksum(original) == definition_checksum(shuffled)
    assert definition_checksum(original) == definition_checksum(explicit)
    assert canonical_json(original) == canonical_json(shuffled)
    assert len(definition_checksum(original)) == 64


def test_checksum_changes_with_content() -> None:
    changed = with_step(1, {"id": "pause", "wait": {"for": "3d", "until": ["clicked"]}})
    assert definition_checksum(parse_definition(changed)) != definition_checksum(
        parse_definition(MINIMAL)
    )


def test_canonical_json_round_trips() -> None:
    defn = parse_definition(EXAMPLE.read_text(encoding="utf-8"))
    again = parse_definition(canonical_json(defn))
    assert again == defn
    assert '"for":"2d"' in canonical_json(defn)


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        ("1w", timedelta(weeks=1)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("365d", timedelta(days=365)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2x", "'2x' is not a duration: use a number followed by s, m, h, d or w, e.g. 2d"),
        ("", "is not a duration"),
        ("-1d", "is not a duration"),
        ("1d1d", "is not a duration"),
        ("12h1d", "is not a duration"),
        ("0s", "longer than zero"),
        ("366d", "longest allowed duration is 365d"),
        ("99999999w", "longest allowed"),
    ],
)
def test_parse_duration_refusals(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert message in str(caught.value)


def test_draft_ahead_takes_a_duration_or_zero_and_knows_the_email_after_a_wait() -> None:
    defn = parse_definition(document(draft_ahead=0))  # YAML's number 0: "draft when due"
    assert defn.draft_ahead == "0"
    assert paths(document(draft_ahead=5)) == {
        "draft_ahead": "'5' is not a duration: use a number followed by s, m, h, d or w, e.g. 2d"
    }
    assert set(paths(document(draft_ahead="-1h"))) == {"draft_ahead"}
    assert set(paths(document(late_draft="later"))) == {"late_draft"}
    assert set(paths(document(late_draft_wait_seconds=601))) == {"late_draft_wait_seconds"}
    # After "pause" comes a branch: which email follows is not known until the wait ends.
    assert email_after_wait(defn, "pause") is None
    looped = document(draft_ahead="2h")
    looped["steps"][2] = {"id": "route", "goto": "hello"}  # pause -> goto -> hello
    hello = email_after_wait(parse_definition(looped), "pause")
    assert hello is not None and hello.id == "hello"
    assert lead(parse_definition(looped), hello, "15m") == timedelta(hours=2)
    assert lead(defn, hello, "15m") == timedelta(0)
    assert lead(parse_definition(document()), hello, "15m") == timedelta(minutes=15)
