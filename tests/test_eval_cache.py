"""Model answers are cached by request, recorded for CI and replayed without a model.

A re-run asks the model nothing; replay never calls a model and names the case it has no
recording for; recordings made through the real ``openai`` client against the local server
replay to the same emails.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest
from eval_cases import SUITES, counting_model
from typer.testing import CliRunner

from agents.agent import CopyAgent
from agents.config import ModelConfig
from agents.devserver import HEURISTIC_MODEL, HeuristicResponder, serve_openai
from agents.llm import ChatModel, Completion, OpenAIChatModel
from api.cli import app
from evals.cache import Mode, Store, request_key
from evals.runner import CaseResult, Harness, run
from evals.sides import Side
from evals.suites import Suite, load_suite

MESSAGES = [{"role": "system", "content": "Write."}, {"role": "user", "content": "Hi"}]
SCHEMA = {"type": "object"}


def small_suite(cases: int = 3) -> Suite:
    suite = load_suite(SUITES[0])
    return dataclasses.replace(suite, cases=suite.cases[:cases])


def side(chat: ChatModel | None, model: str = "fake-heuristic", prompt: str = "v1") -> Side:
    return Side("candidate", prompt, model, chat, ModelConfig(model=model))


async def run_once(chat: ChatModel | None, store: Store, **changes: str) -> list[CaseResult]:
    harness = Harness(store, CopyAgent(None))
    return await run([small_suite()], [side(chat, **changes)], harness)


def test_the_key_is_stable_and_changes_with_every_part_of_the_request() -> None:
    base = request_key("m", MESSAGES, SCHEMA, 0.4, "v1")
    assert base == request_key("m", [dict(m) for m in MESSAGES], dict(SCHEMA), 0.4, "v1")
    changed = [
        request_key("other", MESSAGES, SCHEMA, 0.4, "v1"),
        request_key("m", [*MESSAGES[:1], {"role": "user", "content": "Hi!"}], SCHEMA, 0.4, "v1"),
        request_key("m", MESSAGES, {"type": "object", "required": []}, 0.4, "v1"),
        request_key("m", MESSAGES, SCHEMA, 0.0, "v1"),
        request_key("m", MESSAGES, SCHEMA, 0.4, "v2"),
    ]
    assert len({base, *changed}) == 6


async def test_a_second_run_makes_no_model_call_and_costs_nothing(tmp_path: Path) -> None:
    store = Store(Mode.live, tmp_path / "cache", tmp_path / "recordings")
    model = counting_model()
    first = await run_once(model, store)
    asked = len(model.requests)
    assert asked >= 3 and all(r.spent_usd > 0 for r in first)

    again = counting_model()
    second = await run_once(again, store)
    assert again.requests == []
    assert all(c.reused for r in second for c in r.calls)
    assert [r.draft for r in second] == [r.draft for r in first]
    assert [r.cost_usd for r in second] == [r.cost_usd for r in first]
    assert all(r.spent_usd == 0 for r in second)
    assert not (tmp_path / "recordings").exists()  # live mode records nothing


async def test_replay_never_calls_a_model_and_names_the_case_with_no_recording(
    tmp_path: Path,
) -> None:
    store = Store(Mode.replay, tmp_path / "cache", tmp_path / "recordings")
    results = await run_once(None, store, model="gpt-4o-mini")
    assert [r.draft for r in results] == [None, None, None]
    first = results[0]
    assert first.case.key == "onboarding/plain-welcome"
    assert first.error is not None
    assert "no recording of this draft request (gpt-4o-mini, prompt v1)" in first.error
    assert "make one with --record" in first.error


async def test_recorded_answers_replay_to_the_same_emails(tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    model = counting_model()
    recorded = await run_once(model, Store(Mode.record, tmp_path / "cache", recordings))
    files = sorted((recordings / "onboarding").glob("*.json"))
    assert len(files) == len(model.requests)

    replayed = await run_once(None, Store(Mode.replay, None, recordings))
    assert [r.error for r in replayed] == [None] * 3
    assert [r.draft for r in replayed] == [r.draft for r in recorded]
    assert all(c.reused for r in replayed for c in r.calls)


async def test_recordings_made_over_http_with_the_openai_client_replay(tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    responder = HeuristicResponder()
    async with serve_openai(responder, models=(HEURISTIC_MODEL,)) as url:
        chat = OpenAIChatModel(ModelConfig(model=HEURISTIC_MODEL, base_url=url, api_key="x"))
        try:
            store = Store(Mode.record, None, recordings)
            recorded = await run_once(chat, store, model=HEURISTIC_MODEL)
        finally:
            await chat.close()
    assert responder.requests >= 3
    assert all(r.draft and r.draft.model == HEURISTIC_MODEL for r in recorded)
    replayed = await run_once(None, Store(Mode.replay, None, recordings), model=HEURISTIC_MODEL)
    assert [r.draft for r in replayed] == [r.draft for r in recorded]
    # The stand-in server's usage is a formula: each recording says so, and replays keep saying it.
    files = [json.loads(p.read_text()) for p in recordings.glob("*/*.json")]
    assert files and all(f["usage"].startswith(f"simulated: {HEURISTIC_MODEL}") for f in files)
    assert all(c.simulated for r in replayed for c in r.calls)


def test_a_real_model_s_recording_carries_no_simulated_label(tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    real = Completion("{}", "gpt-4o-mini-2024-07-18", 10, 2, 0, 300)
    Store(Mode.record, None, recordings).save("k" * 64, "s", {}, real, fresh=True)
    [entry] = [json.loads(p.read_text()) for p in recordings.glob("*/*.json")]
    assert "usage" not in entry and entry["completion"]["model"] == real.model


def test_the_command_exits_2_in_replay_when_a_recording_is_missing(tmp_path: Path) -> None:
    args = ["eval", "run", str(SUITES[0]), "--replay", "--model", "gpt-4o-mini"]
    args += ["--recordings", str(tmp_path), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "error: onboarding/plain-welcome (candidate): no recording" in result.output


@pytest.mark.parametrize("mode", [Mode.live, Mode.record])
def test_a_cached_answer_is_recorded_too(tmp_path: Path, mode: Mode) -> None:
    import asyncio

    cache, recordings = tmp_path / "cache", tmp_path / "recordings"
    asyncio.run(run_once(counting_model(), Store(Mode.live, cache, recordings)))
    model = counting_model()
    asyncio.run(run_once(model, Store(mode, cache, recordings)))
    assert model.requests == []
    assert (recordings / "onboarding").exists() == (mode is Mode.record)


async def test_an_unreachable_endpoint_leaves_the_case_unscored(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = ModelConfig(model="gpt-4o-mini", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    chat = OpenAIChatModel(config)
    try:
        results = await run_once(chat, Store(Mode.live, tmp_path / "cache"), model="gpt-4o-mini")
    finally:
        await chat.close()
    assert all(r.error and "the model could not be reached" in r.error for r in results)
    assert not (tmp_path / "cache").exists()  # a failure is never cached
