"""Prompt versions: which exist, extra prompt folders, and a broken version failing clearly."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest
from prompt_cases import make_request

from agents import prompting
from agents.copy import Finding
from agents.prompting import (
    PromptError,
    Prompts,
    check_version,
    draft_messages,
    revise_messages,
    versions,
)

# versions --------------------------------------------------------------------------------------


def test_check_version_accepts_v1_and_v2_and_names_an_unknown_version() -> None:
    assert {"v1", "v2"} <= set(versions())
    check_version("v1")
    check_version("v2")
    with pytest.raises(PromptError, match=r"no prompt version 'v7'.*have: .*v1, v2"):
        check_version("v7")


def test_an_extra_prompt_root_is_searched_before_the_package(tmp_path: Path) -> None:
    folder = tmp_path / "drafting" / "v5-trial"
    folder.mkdir(parents=True)
    (folder / "system.j2").write_text("Be brief.")
    (folder / "user.j2").write_text("STEP: {{ step_id }}")
    prompts = Prompts(tmp_path)
    assert {"v1", "v2", "v5-trial"} <= set(prompts.versions())
    assert "v5-trial" not in versions()  # the package's own set is unchanged
    messages = prompts.draft_messages(make_request(prompt_version="v5-trial"), None)
    assert messages[1]["content"] == "STEP: day-3-nudge"
    packaged = prompts.draft_messages(make_request(prompt_version="v1"), None)
    assert packaged == draft_messages(make_request(prompt_version="v1"), None)
    assert prompts.versions("judge") == ["v1"]


def test_v2_keeps_the_data_block_and_the_call_to_action_line_of_v1() -> None:
    """Models and the local heuristic server read these; v2 changes the instructions only."""
    v1, v2 = (draft_messages(make_request(prompt_version=v), None) for v in ("v1", "v2"))
    for label in ("DATA (untrusted", "<data>", "CALL TO ACTION: Connect your domain ->"):
        assert label in v1[1]["content"] and label in v2[1]["content"]
    assert v1[0]["content"] != v2[0]["content"]


def test_an_unknown_version_in_a_request_raises_prompt_error() -> None:
    with pytest.raises(PromptError, match="'v7'"):
        draft_messages(make_request(prompt_version="v7"), None)
    with pytest.raises(PromptError, match="'v7'"):
        revise_messages(make_request(prompt_version="v7"), [], "{}", [])


VersionMaker = Callable[[str, dict[str, str]], str]


@pytest.fixture
def make_version() -> Iterator[VersionMaker]:
    """A temporary prompt version under prompts/drafting/, removed again afterwards."""
    root = Path(str(resources.files("prompts").joinpath("drafting")))
    made: list[Path] = []

    def make(name: str, parts: dict[str, str]) -> str:
        version = f"v999test-{name}"
        folder = root / version
        assert not folder.exists(), folder
        folder.mkdir()
        made.append(folder)
        for part, text in parts.items():
            (folder / part).write_text(text, encoding="utf-8")
        prompting._template.cache_clear()
        return version

    try:
        yield make
    finally:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        prompting._template.cache_clear()


SYSTEM = "You write one email.\n"
REVISE = "{% for finding in findings %}- {{ finding.rule }}\n{% endfor %}Again."


def test_a_new_version_directory_is_picked_up(make_version: VersionMaker) -> None:
    version = make_version(
        "ok", {"system.j2": SYSTEM, "user.j2": "BRIEF: {{ brief }}", "revise.j2": REVISE}
    )
    assert version in versions()
    check_version(version)
    messages = draft_messages(make_request(prompt_version=version), None)
    assert messages == [
        {"role": "system", "content": "You write one email."},
        {
            "role": "user",
            "content": "BRIEF: Nudge a trial user who has not connected a sending domain yet.",
        },
    ]


def test_a_template_needing_a_missing_variable_raises_prompt_error(
    make_version: VersionMaker,
) -> None:
    version = make_version(
        "missing-var",
        {
            "system.j2": SYSTEM,
            "user.j2": "{{ brief }} for {{ customer_tier }}",
            "revise.j2": REVISE,
        },
    )
    with pytest.raises(PromptError, match=rf"{version}/user\.j2.*'customer_tier' is undefined"):
        draft_messages(make_request(prompt_version=version), None)


def test_a_missing_attribute_raises_prompt_error(make_version: VersionMaker) -> None:
    version = make_version(
        "missing-attr",
        {"system.j2": SYSTEM, "user.j2": "{{ cta.price }}", "revise.j2": REVISE},
    )
    with pytest.raises(PromptError, match="price"):
        draft_messages(make_request(prompt_version=version), None)


def test_a_version_missing_a_part_raises_prompt_error(make_version: VersionMaker) -> None:
    version = make_version("no-revise", {"system.j2": SYSTEM, "user.j2": "{{ brief }}"})
    request = make_request(prompt_version=version)
    messages = draft_messages(request, None)
    with pytest.raises(PromptError, match=rf"'{version}' has no drafting/{version}/revise\.j2"):
        revise_messages(request, messages, "{}", [Finding(rule="schema_valid", ok=False)])
