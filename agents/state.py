"""The graph's state, checkpointed between a draft and its review. Plain JSON values only, so a
checkpoint reads back the same in any process and under any serializer settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

from agents.copy import Draft, ModelCall, Preview
from agents.llm import ChatModel, Message
from agents.prompting import PACKAGED, Prompts


class CopyState(TypedDict, total=False):
    request: dict[str, Any]  # CopyRequest.model_dump()
    mode: str  # "model" or "composer"
    signals: dict[str, Any]  # what gather made of the engagement, for choose and the reviewer
    variant: str | None
    choice_reason: str
    choice: dict[str, Any] | None  # agents.bandit.Choice as JSON, when the variant was sampled
    messages: list[Message]  # the conversation with the model so far, for a revision
    answer: str  # the model's last raw answer
    draft: dict[str, Any] | None  # Draft.model_dump()
    findings: list[dict[str, Any]]  # Finding.model_dump() per rule
    revisions: int
    fallback_reason: str | None
    reviewer_note: str | None
    refused: list[dict[str, Any]]  # the gate's failed findings on the draft about to be sent
    approved_by: str | None  # set once a reviewer accepted what will be sent
    preview: dict[str, Any] | None  # Preview.model_dump()
    outcome: dict[str, Any] | None  # Outcome.model_dump(): the graph's answer


Render = Callable[[Draft], Preview]


@dataclass
class AgentContext:
    """Per invocation and never checkpointed: the model, the engine's renderer, the ledger."""

    model: ChatModel | None
    render: Render
    max_revisions: int = 1
    offline_reason: str | None = None  # why the composer writes although a model exists
    prompts: Prompts = PACKAGED  # evaluations try candidate prompt folders through this
    calls: list[ModelCall] = field(default_factory=list)
