"""The copy agent as the engine sees it: run a request, resume a review, read a pending one.

A request that needs no review runs on a graph without a checkpointer (nothing to resume, nothing
to store); with no model either, its nodes run in plain Python without the graph's machinery,
unless the gate refuses the copy and the request holds it for a reviewer. One that needs review
runs on a thread named by the engine, checkpointed in the engine's database; running it again,
after a crash, returns the pending review instead of drafting anew.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command

from agents import nodes
from agents.composer import COMPOSER_MODEL
from agents.copy import CopyRequest, Decision, Draft, Finding, ModelCall, Outcome, Preview
from agents.graph import CopyGraph, build
from agents.llm import ChatModel
from agents.prompting import PACKAGED, Prompts
from agents.state import AgentContext, CopyState, Render


@dataclass(frozen=True)
class Review:
    """The graph stopped for a reviewer; this is what they are shown."""

    draft: Draft
    preview: Preview
    findings: tuple[Finding, ...]
    fallback: Draft
    variant: str | None
    choice_reason: str
    fallback_reason: str | None
    signals: dict[str, Any]


@dataclass
class Result:
    """One invocation's answer: an outcome or a review, and the model calls it made."""

    outcome: Outcome | None = None
    review: Review | None = None
    calls: list[ModelCall] = field(default_factory=list)


class CopyAgent:
    def __init__(
        self,
        model: ChatModel | None,
        checkpointer: BaseCheckpointSaver[str] | None = None,
        *,
        max_revisions: int = 1,
        prompts: Prompts = PACKAGED,
    ) -> None:
        self.model = model
        self.max_revisions = max_revisions
        self.prompts = prompts
        self.offline_reason: str | None = None
        self._plain = build()
        self._reviewed = build(checkpointer) if checkpointer is not None else None

    def offline(self, reason: str) -> CopyAgent:
        """The same graphs and checkpoints with the composer as the model, for ``reason``."""
        twin = copy.copy(self)
        twin.model, twin.offline_reason = None, reason
        return twin

    def using(self, model: ChatModel | None) -> CopyAgent:
        """The same compiled graphs with another model: an evaluation swaps one in per case."""
        twin = copy.copy(self)
        twin.model = model
        return twin

    @property
    def model_name(self) -> str:
        return self.model.name if self.model is not None else COMPOSER_MODEL

    async def run(self, request: CopyRequest, render: Render, thread: str | None = None) -> Result:
        if not request.needs_review:
            if self.model is None:
                context = self._context(render)
                direct = await _direct(request, context)
                if direct is not None:
                    return self._result(direct, context)
            context = self._context(render)
            start = CopyState(request=request.model_dump())
            state = await self._plain.ainvoke(start, context=context)
            return self._result(state, context)
        graph, config = self._thread(thread)
        found = await self._existing(graph, config)
        if found is not None:
            return found
        context = self._context(render)
        state = await graph.ainvoke(
            CopyState(request=request.model_dump()), config, context=context, durability="exit"
        )
        return self._result(state, context)

    async def resume(self, thread: str, decision: Decision, render: Render) -> Result:
        graph, config = self._thread(thread)
        snapshot = await graph.aget_state(config)
        if not snapshot.interrupts:  # resumed before (a crash after it): the answer stands
            found = await self._existing(graph, config)
            if found is None:
                raise LookupError(f"thread {thread!r} has nothing to resume")
            return found
        context = self._context(render)
        state = await graph.ainvoke(
            Command(resume=decision.model_dump()), config, context=context, durability="exit"
        )
        return self._result(state, context)

    async def pending(self, thread: str) -> Review | None:
        graph, config = self._thread(thread)
        snapshot = await graph.aget_state(config)
        return _review(snapshot.interrupts[0].value) if snapshot.interrupts else None

    def _thread(self, thread: str | None) -> tuple[CopyGraph, RunnableConfig]:
        if self._reviewed is None or thread is None:
            raise ValueError("a request that needs review needs a checkpointer and a thread")
        return self._reviewed, {"configurable": {"thread_id": thread}}

    async def _existing(self, graph: CopyGraph, config: RunnableConfig) -> Result | None:
        snapshot = await graph.aget_state(config)
        if snapshot.interrupts:
            return Result(review=_review(snapshot.interrupts[0].value))
        outcome = (snapshot.values or {}).get("outcome")
        return Result(outcome=Outcome.model_validate(outcome)) if outcome else None

    def _context(self, render: Render) -> AgentContext:
        return AgentContext(
            model=self.model,
            render=render,
            max_revisions=self.max_revisions,
            offline_reason=self.offline_reason,
            prompts=self.prompts,
        )

    def _result(self, state: dict[str, Any], context: AgentContext) -> Result:
        interrupts = state.get("__interrupt__") or ()
        if interrupts:
            return Result(review=_review(interrupts[0].value), calls=context.calls)
        return Result(outcome=Outcome.model_validate(state["outcome"]), calls=context.calls)


async def _direct(request: CopyRequest, context: AgentContext) -> dict[str, Any] | None:
    """The graph's walk for a request no reviewer sees, node by node with the graph's own routing
    (agents/graph.py) and none of its machinery: the final state, or None where ``review`` could
    stop for a reviewer (copy the gate refused and the request holds), which is the graph's."""
    runtime = Runtime(context=context)
    state = CopyState(request=request.model_dump())
    state = _then(state, nodes.gather(state, runtime))
    state = _then(state, nodes.choose(state))
    state = _then(state, await nodes.draft(state, runtime))
    step = nodes.after_draft(state)
    while step != "render":
        if step == "check":
            state = _then(state, nodes.check(state))
            step = nodes.after_check(state, runtime)
        elif step == "revise":
            state = _then(state, await nodes.revise(state, runtime))
            step = "check"
        else:
            state = _then(state, nodes.fallback(state))
            step = "render"
    state = _then(state, nodes.render(state, runtime))
    if state.get("refused") and request.refused_copy != "skip":
        return None
    command = nodes.review(state)
    if command.goto != END or not isinstance(command.update, dict):
        raise RuntimeError(f"review went to {command.goto!r} on a request that needs no review")
    return {**state, **command.update}


def _then(state: CopyState, update: nodes.Update) -> CopyState:
    """The state after a node's update: every key of CopyState takes the last value written."""
    return cast(CopyState, {**state, **update})


def _review(value: dict[str, Any]) -> Review:
    return Review(
        draft=Draft.model_validate(value["draft"]),
        preview=Preview.model_validate(value["preview"]),
        findings=tuple(Finding.model_validate(f) for f in value["findings"]),
        fallback=Draft.model_validate(value["fallback"]),
        variant=value.get("variant"),
        choice_reason=value.get("choice_reason", ""),
        fallback_reason=value.get("fallback_reason"),
        signals=value.get("signals", {}),
    )
