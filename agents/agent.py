"""The copy agent as the engine sees it: run a request, resume a review, read a pending one.

A request that needs no review runs on a graph without a checkpointer (nothing to resume, nothing
to store). One that does runs on a thread named by the engine, checkpointed in the engine's
database; running it again, after a crash, returns the pending review instead of drafting anew.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command

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
