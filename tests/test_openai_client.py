"""The real ``openai`` client against a local OpenAI-compatible server, through the whole graph.

Each test scripts the server (agents.devserver) and runs ``CopyAgent.run``: what is sent, what
falls back to the offline composer and why, and how many HTTP requests the model made.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agents.agent import CopyAgent, Result
from agents.composer import COMPOSER_MODEL
from agents.config import ModelConfig
from agents.copy import CopyRequest, Cta, Draft, Fallback, Outcome, Preview
from agents.devserver import (
    HEURISTIC_MODEL,
    LOCAL_MODEL,
    HeuristicResponder,
    Reply,
    Responder,
    ScriptedResponder,
    serve_openai,
)
from agents.llm import ModelUnavailable, OpenAIChatModel
from agents.schema import SCHEMA_NAME, output_schema

MAX_RETRIES = 2
UNSUBSCRIBE = "https://example.com/unsubscribe/t0k3n"
REQUEST = CopyRequest(
    sequence_key="onboarding",
    step_id="welcome",
    brief="Welcome the new user and point them to the setup guide; it takes ten minutes.",
    fallback=Fallback(
        subject="Welcome aboard",
        body="Thanks for signing up.\n\nThe setup guide walks you through the first steps.",
    ),
    contact={"first_name": "Ada", "company": "Analytical Engines"},
    sender_name="Dripline",
    cta=Cta(text="Open the setup guide", url="https://example.com/setup"),
)
GOOD = {
    "subject": "Your setup guide, Ada",
    "preheader": "Ten minutes from sign-up to your first sequence.",
    "paragraphs": [
        "Hi Ada,",
        "Thanks for signing up. The setup guide walks you through the first steps, "
        "and it takes about ten minutes from start to finish.",
        "Reply to this email if a question comes up; a person reads every reply.",
    ],
    "cta_text": "Open the setup guide",
    "rationale": "A new user: leading with the setup guide.",
}
GOOD_REPLY = Reply.ok(json.dumps(GOOD), prompt_tokens=812, completion_tokens=97, cached_tokens=512)


def render(draft: Draft) -> Preview:
    body = "\n\n".join(draft.paragraphs)
    html = f"<p>{body}</p><p><a href='{UNSUBSCRIBE}'>Unsubscribe</a></p>"
    text = f"{body}\n\nUnsubscribe: {UNSUBSCRIBE}"
    return Preview(html=html, text=text, unsubscribe_url=UNSUBSCRIBE)


def config(url: str, **changes: Any) -> ModelConfig:
    values: dict[str, Any] = {
        "base_url": url,
        "api_key": "test",
        "timeout_seconds": 2.0,
        "max_retries": MAX_RETRIES,
        "backoff_seconds": 0.01,
        "max_backoff_seconds": 0.05,
    }
    return ModelConfig(**(values | changes))


@contextlib.asynccontextmanager
async def openai_model(responder: Responder, **changes: Any) -> AsyncIterator[OpenAIChatModel]:
    async with serve_openai(responder) as url:
        model = OpenAIChatModel(config(url, **changes))
        try:
            yield model
        finally:
            await model.close()


async def run(responder: Responder, max_revisions: int = 1, **changes: Any) -> Result:
    async with openai_model(responder, **changes) as model:
        return await CopyAgent(model, max_revisions=max_revisions).run(REQUEST, render)


def outcome_of(result: Result) -> Outcome:
    assert result.outcome is not None and result.review is None
    return result.outcome


def fell_back(result: Result) -> tuple[Draft, str]:
    """The composer's draft was sent; returns it with the reason the model's did not stand."""
    outcome = outcome_of(result)
    assert outcome.action == "send" and outcome.draft is not None
    assert outcome.draft.model == COMPOSER_MODEL
    assert outcome.draft.subject == REQUEST.fallback.subject
    assert outcome.reason and outcome.reason in outcome.draft.rationale
    return outcome.draft, outcome.reason


def sent_model_draft(result: Result) -> Draft:
    outcome = outcome_of(result)
    assert outcome.action == "send", outcome.reason
    assert outcome.draft is not None and outcome.draft.model == LOCAL_MODEL
    assert outcome.draft.subject == GOOD["subject"]
    assert outcome.draft.cta_url == "https://example.com/setup"
    assert outcome.preview is not None and UNSUBSCRIBE in outcome.preview.text
    return outcome.draft


async def test_a_good_answer_is_sent_with_the_usage_the_server_reported() -> None:
    server = ScriptedResponder([GOOD_REPLY])
    result = await run(server)

    draft = sent_model_draft(result)
    assert draft.paragraphs == tuple(GOOD["paragraphs"])
    assert outcome_of(result).reason == ""
    [call] = result.calls
    assert (call.model, call.purpose, call.outcome) == (LOCAL_MODEL, "draft", "ok")
    assert (call.prompt_tokens, call.completion_tokens, call.cached_tokens) == (812, 97, 512)
    [request] = server.requests
    assert request["model"] == ModelConfig().model
    fmt = request["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"] == {"name": SCHEMA_NAME, "schema": output_schema(), "strict": True}
    assert request["messages"][0]["role"] == "system"
    assert request["messages"][1]["role"] == "user"
    assert "<data>" in request["messages"][1]["content"]


async def test_a_rate_limit_with_retry_after_is_retried_then_sent() -> None:
    server = ScriptedResponder([Reply.error(429, "slow down", {"Retry-After": "0"}), GOOD_REPLY])
    result = await run(server)

    sent_model_draft(result)
    assert len(server.requests) == 2
    assert [c.outcome for c in result.calls] == ["ok"]  # the retry is inside one model call
    limited, answered = result.calls[0].attempts
    assert (limited.status, limited.wait, answered.status) == (429, 0.0, 200)
    assert limited.error is not None and "slow down" in limited.error


@pytest.mark.parametrize("max_revisions", [0, 1, 2])
async def test_a_500_storm_falls_back_after_our_retries_alone(max_revisions: int) -> None:
    server = ScriptedResponder([], then=Reply.error(500, "upstream exploded"))
    result = await run(server, max_revisions=max_revisions)

    _, reason = fell_back(result)
    assert reason.startswith("model unavailable") and "500" in reason
    # A failed call goes straight to the fallback (no revision): one model call, our retries
    # only; the SDK's own (max_retries=0) would multiply this.
    assert len(server.requests) == MAX_RETRIES + 1
    assert [(c.purpose, c.outcome) for c in result.calls] == [("draft", "ModelUnavailable")]


async def test_a_revision_that_meets_a_500_storm_falls_back() -> None:
    server = ScriptedResponder([Reply.ok("Sure! Here is your email.")], then=Reply.error(503))
    result = await run(server, max_revisions=1)

    _, reason = fell_back(result)
    assert reason.startswith("model unavailable") and "503" in reason
    assert len(server.requests) == 1 + (MAX_RETRIES + 1)  # the draft, then the revision's tries
    assert [(c.purpose, c.outcome) for c in result.calls] == [
        ("draft", "ok"),
        ("revise", "ModelUnavailable"),
    ]


async def test_a_timeout_falls_back_quickly() -> None:
    server = ScriptedResponder([], then=Reply(content=json.dumps(GOOD), delay=10))
    started = time.monotonic()
    result = await run(server, timeout_seconds=0.25)

    _, reason = fell_back(result)
    assert reason.startswith("model unavailable") and "timed out" in reason.lower()
    assert len(server.requests) == MAX_RETRIES + 1
    assert time.monotonic() - started < 4  # three 0.25 s timeouts, not the server's 10 s


async def test_malformed_output_is_revised_and_the_revision_sent() -> None:
    server = ScriptedResponder([Reply.ok("Sure! Here is your email."), GOOD_REPLY])
    result = await run(server, max_revisions=1)

    sent_model_draft(result)
    assert [c.purpose for c in result.calls] == ["draft", "revise"]
    first, second = (r["messages"] for r in server.requests)
    assert second[: len(first)] == first
    assert second[len(first)] == {"role": "assistant", "content": "Sure! Here is your email."}
    refusal = second[-1]
    assert refusal["role"] == "user"
    assert "schema_valid" in refusal["content"] and "not JSON" in refusal["content"]
    assert server.requests[1]["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize(
    "answer", ["I cannot write JSON today.", json.dumps({"subject": "Only a subject"})]
)
async def test_output_that_stays_malformed_falls_back_naming_schema_valid(answer: str) -> None:
    server = ScriptedResponder([], then=Reply.ok(answer))
    result = await run(server, max_revisions=1)

    _, reason = fell_back(result)
    assert "guardrails refused" in reason and "schema_valid" in reason
    assert len(server.requests) == 2  # the draft and one revision
    assert [c.purpose for c in result.calls] == ["draft", "revise"]


@pytest.mark.parametrize("status", [401, 404])
async def test_a_refused_request_falls_back_without_a_retry(status: int) -> None:
    server = ScriptedResponder([], then=Reply.error(status, "no such key or model"))
    result = await run(server)

    _, reason = fell_back(result)
    assert reason.startswith("model refused the request") and str(status) in reason
    assert len(server.requests) == 1
    assert [c.outcome for c in result.calls] == ["ModelRefused"]


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
async def test_a_200_whose_body_is_not_json_is_retried_then_falls_back(content_type: str) -> None:
    server = ScriptedResponder([], then=Reply.raw_body("not json", content_type=content_type))
    result = await run(server)

    _, reason = fell_back(result)
    assert reason.startswith("model returned a malformed response")
    assert len(server.requests) == MAX_RETRIES + 1  # retried like a 5xx
    [call] = result.calls
    assert call.outcome == "ModelMalformed"
    assert [a.number for a in call.attempts] == [1, 2, 3]
    assert all(a.status == 200 and a.error for a in call.attempts)
    assert [a.wait is not None for a in call.attempts] == [True, True, False]


async def test_a_completion_without_content_is_retried_then_falls_back() -> None:
    server = ScriptedResponder([], then=Reply.ok(None))
    result = await run(server)

    _, reason = fell_back(result)
    assert reason.startswith("model returned no content")
    assert len(server.requests) == MAX_RETRIES + 1


async def test_a_malformed_body_then_a_good_answer_sends_the_models_copy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = ScriptedResponder([Reply.raw_body("{not json"), GOOD_REPLY])
    with caplog.at_level(logging.INFO, logger="agents.llm"):
        result = await run(server)

    sent_model_draft(result)
    [call] = result.calls
    first, second = call.attempts
    assert (first.number, first.status, second.number, second.status) == (1, 200, 2, 200)
    assert first.error and "not JSON" in first.error and first.wait is not None
    assert second.error is None and second.wait is None
    logged = [r for r in caplog.records if r.name == "agents.llm"]
    assert [(r.attempt, r.of, r.levelname) for r in logged] == [  # type: ignore[attr-defined]
        (1, MAX_RETRIES + 1, "WARNING"),
        (2, MAX_RETRIES + 1, "INFO"),
    ]
    assert "not JSON" in logged[0].error  # type: ignore[attr-defined]
    assert "attempt 1 of 3 failed: status 200" in logged[0].getMessage()
    assert "not JSON" in logged[0].getMessage() and "retrying in" in logged[0].getMessage()


async def test_the_heuristic_responder_writes_a_draft_that_is_sent() -> None:
    result = await run(HeuristicResponder())

    outcome = outcome_of(result)
    assert outcome.action == "send", outcome.reason
    assert outcome.draft is not None and outcome.draft.model == HEURISTIC_MODEL
    [call] = result.calls
    assert call.prompt_tokens > 0 and call.completion_tokens > 0


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "0.2"}, {"retry-after-ms": "200", "Retry-After": "1"}],
    ids=["seconds", "milliseconds-win"],
)
async def test_complete_waits_as_long_as_retry_after_says(headers: dict[str, str]) -> None:
    server = ScriptedResponder([Reply.error(429, headers=headers), GOOD_REPLY])
    async with openai_model(server, backoff_seconds=0.001, max_backoff_seconds=1.0) as model:
        completion = await model.complete([{"role": "user", "content": "hi"}], {}, "x")

    assert completion.content == json.dumps(GOOD)
    first, second = server.received_at
    assert 0.18 <= second - first < 1.0  # our own backoff alone would be ~1 ms


async def test_retry_after_is_capped_by_max_backoff() -> None:
    server = ScriptedResponder([], then=Reply.error(429, headers={"Retry-After": "30"}))
    started = time.monotonic()
    async with openai_model(server, max_backoff_seconds=0.05) as model:
        with pytest.raises(ModelUnavailable, match="429"):
            await model.complete([{"role": "user", "content": "hi"}], {}, "x")

    assert len(server.requests) == MAX_RETRIES + 1
    assert time.monotonic() - started < 2
