"""The composer's path without LangGraph: with no model and no review, CopyAgent.run walks the
graph's nodes in plain Python and answers exactly as the compiled graph does, and only copy the
gate refused and the request holds for a reviewer still goes through the graph."""

from __future__ import annotations

from typing import Any

import pytest
from agent_cases import make_request, outcome_of, render, review_of

from agents.agent import CopyAgent, Result
from agents.bandit import ArmStats
from agents.copy import CopyRequest, Draft, Fallback, Preview, VariantOption
from agents.fake import FunctionModel
from agents.fake import heuristic_answer as heuristic
from agents.state import CopyState, Render

VARIANTS = (
    VariantOption(id="v1", angle="Lead with the time the setup saves", topics=("setup",)),
    VariantOption(
        id="v2",
        angle="Lead with how a similar team used it",
        topics=("case-study",),
        stats=ArmStats(sends=40, clicks=9, replies=2),
    ),
)
V2_FALLBACK = Fallback(
    subject="How a team like yours started", body="Hi there,\n\nHere is how one team began."
)
BLANK_GREETING = Fallback(subject="Welcome", body="Hi ,\n\nThe setup guide is ready for you.")

CASES: dict[str, dict[str, Any]] = {
    "plain": {},
    "first variant": {"variants": VARIANTS},
    "preferred variant": {"variants": VARIANTS, "preferred_variant": "v2"},
    "retired preferred variant": {"variants": VARIANTS, "preferred_variant": "v9-retired"},
    "variant fallback": {
        "variants": VARIANTS,
        "preferred_variant": "v2",
        "variant_fallbacks": {"v2": V2_FALLBACK},
    },
    "sampled variant": {"variants": VARIANTS, "choice_seed": 7},
    "sampled for replies": {
        "variants": VARIANTS,
        "choice_seed": 12345,
        "goal": "replies",
        "affinities": {"case-study": 0.8},
    },
    "held fields": {"held_fields": ("contact.company (a URL or domain)",)},
    "refused, skipped": {"fallback": BLANK_GREETING},
    "refused, skipped by choice": {"fallback": BLANK_GREETING, "refused_copy": "skip"},
    "refused, held": {"fallback": BLANK_GREETING, "refused_copy": "hold"},
    "refused and held, with variants": {
        "fallback": BLANK_GREETING,
        "refused_copy": "hold",
        "variants": VARIANTS,
        "choice_seed": 3,
    },
}
OFFLINE = "the model took longer than 20 s"


def _agents() -> dict[str, CopyAgent]:
    return {
        "composer": CopyAgent(None),
        "offline twin": CopyAgent(FunctionModel(heuristic)).offline(OFFLINE),
    }


async def graph_result(agent: CopyAgent, request: CopyRequest, draw: Render = render) -> Result:
    """What run() answered before the direct path: the compiled graph without a checkpointer."""
    context = agent._context(draw)
    state = await agent._plain.ainvoke(CopyState(request=request.model_dump()), context=context)
    return agent._result(state, context)


def _no_graph(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the graph ran")


@pytest.mark.parametrize("agent_name", ["composer", "offline twin"])
@pytest.mark.parametrize("case", list(CASES))
async def test_the_direct_path_answers_as_the_graph_does(case: str, agent_name: str) -> None:
    agent = _agents()[agent_name]
    request = make_request(**CASES[case])

    expected = await graph_result(agent, request)
    got = await agent.run(request, render)

    assert got.outcome == expected.outcome
    assert got.review == expected.review
    assert got.calls == expected.calls == []
    assert got == expected


async def test_every_outcome_kind_is_among_the_cases() -> None:
    """The cases above reach each of review's no-review answers, and the held review."""
    agent = CopyAgent(None)
    sent = outcome_of(await agent.run(make_request(**CASES["held fields"]), render))
    assert sent.action == "send" and sent.draft is not None
    assert "Contact fields held back" in sent.draft.rationale
    skipped = outcome_of(await agent.run(make_request(**CASES["refused, skipped"]), render))
    assert skipped.action == "skip" and skipped.reason.startswith("guardrails refused the copy")
    held = review_of(await agent.run(make_request(**CASES["refused, held"]), render))
    assert held.fallback_reason is not None and "greeting_named" in held.fallback_reason
    sampled = outcome_of(await agent.run(make_request(**CASES["sampled variant"]), render))
    assert sampled.choice is not None
    offline = outcome_of(await _agents()["offline twin"].run(make_request(), render))
    assert offline.action == "send" and offline.reason == OFFLINE


async def test_a_render_without_the_unsubscribe_link_is_skipped_as_by_the_graph() -> None:
    def bare(draft: Draft) -> Preview:
        return render(draft).model_copy(update={"unsubscribe_url": ""})

    agent = CopyAgent(None)
    for case in ("plain", "refused, skipped", "refused, held"):
        request = make_request(**CASES[case])
        expected = await graph_result(agent, request, bare)
        assert outcome_of(expected).action == "skip"
        assert "no unsubscribe link" in outcome_of(expected).reason
        assert await agent.run(request, bare) == expected


@pytest.mark.parametrize("agent_name", ["composer", "offline twin"])
async def test_no_model_and_no_review_never_runs_the_graph(
    agent_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = _agents()[agent_name]
    monkeypatch.setattr(agent._plain, "ainvoke", _no_graph)
    monkeypatch.setattr(agent._plain, "astream", _no_graph)
    for case, changes in CASES.items():
        if changes.get("refused_copy") == "hold":
            continue
        result = await agent.run(make_request(**changes), render)
        assert result.outcome is not None, case


async def test_held_refused_copy_and_a_model_still_run_the_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    held = CopyAgent(None)
    monkeypatch.setattr(held._plain, "ainvoke", _counting(held, calls))
    review_of(await held.run(make_request(**CASES["refused, held"]), render))
    assert calls == ["graph"]

    modelled = CopyAgent(FunctionModel(heuristic))
    monkeypatch.setattr(modelled._plain, "ainvoke", _counting(modelled, calls))
    outcome_of(await modelled.run(make_request(), render))
    assert calls == ["graph", "graph"]


def _counting(agent: CopyAgent, calls: list[str]) -> Any:
    ainvoke = agent._plain.ainvoke

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append("graph")
        return await ainvoke(*args, **kwargs)

    return counted
