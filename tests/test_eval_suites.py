"""The shipped suites, and how a bad suite or a bad command line is refused: one line naming
the file and the field path, exit status 2, before any case runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_cases import SUITES, suite_text
from typer.testing import CliRunner

from api.cli import app
from evals.suites import SuiteError, load_suite, load_suites

HARD_CASES = {
    "missing first name": "onboarding/missing-first-name",
    "non-Latin names": "onboarding/non-latin-name-cjk",
    "HTML in fields": "onboarding/html-in-name",
    "emoji in fields": "onboarding/emoji-in-name",
    "very long fields": "onboarding/very-long-fields",
    "contradictory engagement": "sales-follow-up/click-without-open",
    "prompt injection in contact fields": "win-back/injection-in-cancel-reason",
    "fallback path with an injected field": "signup-data/composer-injection-in-company",
    "fallback path with template syntax": "signup-data/composer-template-in-name",
    "placeholder greeting": "signup-data/model-placeholder-name",
    "offer bait": "signup-data/model-discount-bait",
}


def test_the_shipped_suites_cover_three_sequences_and_the_hard_cases() -> None:
    suites = load_suites(SUITES)
    assert [s.name for s in suites] == ["onboarding", "sales-follow-up", "signup-data", "win-back"]
    writers = {case.writer for suite in suites for case in suite.cases}
    assert writers == {"model", "composer"}  # the fallback path has cases of its own
    keys = {case.key for suite in suites for case in suite.cases}
    assert len(keys) >= 30
    missing = {kind: key for kind, key in HARD_CASES.items() if key not in keys}
    assert not missing
    names = {e.name for suite in suites for case in suite.cases for e in case.expectations}
    assert {"guardrails", "judge", "mentions_fact", "no_new_urls", "tone"} <= names


def test_a_case_gets_the_suite_defaults_and_replaces_one_of_the_same_name(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    cases = (
        "  - {id: a, step: hello, contact: {first_name: Ann}}\n"
        "  - {id: b, step: hello, contact: {first_name: Bo}, expect: [{reading_ease: 30}]}\n"
    )
    path.write_text(suite_text(cases, expect="[guardrails, {reading_ease: 70}]"))
    first, second = load_suite(path).cases
    assert [e.label for e in first.expectations] == ["guardrails", "reading_ease 70.0"]
    assert [e.label for e in second.expectations] == ["guardrails", "reading_ease 30.0"]
    assert second.request.fallback.subject == "Welcome, Bo"  # rendered like the engine does


BAD = [
    ("cases: [\n  - {id: a", "line 12: YAML:"),
    ("cases: []\n", "cases: Tuple should have at least 1 item"),
    (
        "cases:\n  - {id: a, step: hello, contact: {}, expect: [contain]}\n",
        "cases.0.expect.0: unknown assertion 'contain' (known: guardrails, contains",
    ),
    (
        "cases:\n  - {id: a, step: hello, contact: {}, expect: [{length: {body_words: [9, 1]}}]}\n",
        "cases.0.expect.0.length.body_words: Value error, bounds are [min, max]",
    ),
    (
        "cases:\n  - {id: a, step: goodbye, contact: {}}\n",
        "cases.0.step: no step 'goodbye' in steps (have: hello)",
    ),
    (
        "cases:\n  - {id: a, step: hello, contact: {}, expect: [{mentions_fact: company}]}\n",
        'cases.0.expect: mentions_fact ["company"]: the contact has no company',
    ),
    (
        "cases:\n  - {id: a, step: hello, contact: {}}\n  - {id: a, step: hello, contact: {}}\n",
        "cases.1.id: 'a' is used twice",
    ),
    ("cases:\n  - {id: A B, step: hello, contact: {}}\n", "cases.0.id: Value error, 'A B'"),
    (
        "cases:\n  - {id: a, step: {brief: Hi, fallback: {subject: S}}, contact: {}}\n",
        "cases.0.step.fallback.body: Field required",
    ),
    (
        "cases:\n  - {id: a, step: hello, contact: {}, expect: [{contains: x, regex: y}]}\n",
        "cases.0.expect.0: an expectation is a name or {name: arguments}",
    ),
]


@pytest.mark.parametrize(("cases", "message"), BAD)
def test_a_bad_suite_is_refused_naming_the_file_and_path(
    tmp_path: Path, cases: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(suite_text(cases))
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    assert str(raised.value).startswith(f"{path}: "), raised.value
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_fallback_that_cannot_render_for_the_contact_names_the_case(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    step = (
        "  hello:\n    brief: Say hello.\n"
        "    fallback: {subject: 'Hi {{ contact.first_name }}', body: 'Hello.'}\n"
    )
    path.write_text(suite_text("  - {id: a, step: hello, contact: {last_name: Lee}}\n", step=step))
    with pytest.raises(SuiteError, match=r"bad.yaml: cases.0.step.fallback: .*first_name"):
        load_suite(path)


def test_two_suites_of_one_name_are_refused(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(suite_text("  - {id: a, step: hello, contact: {}}\n"))
    with pytest.raises(SuiteError, match=r"b\.yaml: suite: 'tiny' is also .*a\.yaml"):
        load_suites([tmp_path / "a.yaml", tmp_path / "b.yaml"])


def _eval(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["eval", "run", *args, "--no-progress", "--no-cache"])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.yaml", "--model", "offline-composer"], "error: nope.yaml: No such file"),
        (
            ["{suite}", "--prompt", "v7", "--model", "offline-composer"],
            "error: --prompt: no prompt version 'v7' (have: v1, v2)",
        ),
        (
            ["{suite}", "--baseline", "v0", "--model", "offline-composer"],
            "error: --baseline: no prompt version 'v0'",
        ),
        (["{suite}", "--model", "gpt-4o-mini"], "error: model 'gpt-4o-mini' needs an endpoint"),
        (["{suite}", "--record", "--replay"], "error: --record and --replay exclude each other"),
        (["{bad}", "--model", "offline-composer"], "bad.yaml: cases.0.expect.0: unknown assertion"),
    ],
)
def test_the_command_refuses_bad_input_with_exit_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(suite_text("  - {id: a, step: hello, contact: {}, expect: [nope]}\n"))
    given = [a.format(suite=SUITES[0], bad=bad) for a in args]
    code, output = _eval(*given)
    assert code == 2, output
    assert message in " ".join(output.split())


def test_the_assertions_command_documents_every_assertion() -> None:
    result = CliRunner().invoke(app, ["eval", "assertions"])
    assert result.exit_code == 0
    for name in ("guardrails", "mentions_fact", "no_new_urls", "reading_ease", "judge"):
        assert f"\n{name}\n" in f"\n{result.output}"
