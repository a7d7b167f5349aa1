"""The graph's nodes: small functions of state. None sends or writes anything, so a node that a
resume re-runs does no harm; the engine acts on the graph's outcome."""

from __future__ import annotations

import logging
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from agents import guardrails
from agents.bandit import ArmStats, Candidate, thompson
from agents.composer import compose, split_paragraphs
from agents.copy import CopyRequest, Decision, Draft, Finding, ModelCall, Outcome, Preview
from agents.llm import ModelError
from agents.prompting import PromptError, draft_of
from agents.schema import SCHEMA_NAME, output_schema, parse_answer
from agents.state import AgentContext, CopyState

log = logging.getLogger(__name__)
Update = dict[str, Any]


def _request(state: CopyState) -> CopyRequest:
    return CopyRequest.model_validate(state["request"])


def gather(state: CopyState, runtime: Runtime[AgentContext]) -> Update:
    """What the contact did so far, reduced to the signals later nodes and reviewers read."""
    engagement = _request(state).engagement
    signals = {
        "clicked": list(engagement.clicked()),
        "ignored": list(engagement.ignored()),
        "replied": any(step.replied for step in engagement.history),
        "emails_so_far": len(engagement.history),
        "score": engagement.score,
    }
    mode = "model" if runtime.context.model is not None else "composer"
    return {"signals": signals, "mode": mode, "revisions": 0}


def choose(state: CopyState) -> Update:
    """Which variant to write: sampled from the variants' feedback when the engine sends a
    seed, else the engine's stable split; never anything outside the candidates."""
    request = _request(state)
    ids = [v.id for v in request.variants]
    if not ids:
        return {"variant": None, "choice_reason": "the step has no variants"}
    if request.choice_seed is not None:
        choice = thompson(
            [
                Candidate(id=v.id, topics=v.topics, stats=v.stats or ArmStats())
                for v in request.variants
            ],
            request.affinities,
            seed=request.choice_seed,
            goal=request.goal,
            affinity_weight=request.affinity_weight,
        )
        return {"variant": choice.id, "choice_reason": choice.reason, "choice": choice.model_dump()}
    if request.preferred_variant in ids:
        option = request.variant(request.preferred_variant)
        assert option is not None
        reason = f"variant {option.id} ({option.angle}): the engine's split for this enrollment"
        return {"variant": option.id, "choice_reason": reason}
    return {"variant": ids[0], "choice_reason": f"variant {ids[0]}: first candidate"}


async def draft(state: CopyState, runtime: Runtime[AgentContext]) -> Update:
    request = _request(state)
    variant = state.get("variant")
    model = runtime.context.model
    if model is None:
        reason = runtime.context.offline_reason
        copy = compose(request, variant, why=reason or "")
        return {"draft": copy.model_dump(), "findings": [], "fallback_reason": reason}
    try:
        prompts = runtime.context.prompts
        messages = prompts.draft_messages(request, variant, state.get("reviewer_note"))
    except PromptError as error:
        log.error("prompt could not be rendered", extra={"error": str(error)})
        return {"draft": None, "fallback_reason": f"prompt error: {error}"}
    return await _ask(state, runtime, request, messages, "draft")


async def revise(state: CopyState, runtime: Runtime[AgentContext]) -> Update:
    request = _request(state)
    findings = [Finding.model_validate(f) for f in state.get("findings", [])]
    previous, answer = state["messages"], state.get("answer", "")
    messages = runtime.context.prompts.revise_messages(request, previous, answer, findings)
    update = await _ask(state, runtime, request, messages, "revise")
    return {**update, "revisions": state.get("revisions", 0) + 1}


async def _ask(
    state: CopyState,
    runtime: Runtime[AgentContext],
    request: CopyRequest,
    messages: list[dict[str, str]],
    purpose: str,
) -> Update:
    model = runtime.context.model
    assert model is not None
    try:
        completion = await model.complete(messages, output_schema(), SCHEMA_NAME)
    except ModelError as error:
        runtime.context.calls.append(
            ModelCall(
                model=model.name,
                purpose=purpose,
                outcome=type(error).__name__,
                attempts=error.attempts,
            )
        )
        return {"draft": None, "fallback_reason": f"{error.reason} ({error})"}
    runtime.context.calls.append(
        ModelCall(
            model=completion.model,
            purpose=purpose,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cached_tokens=completion.cached_tokens,
            latency_ms=completion.latency_ms,
            attempts=completion.attempts,
        )
    )
    parsed = parse_answer(completion.content)
    base: Update = {"messages": messages, "answer": completion.content, "fallback_reason": None}
    if isinstance(parsed, Finding):
        return {**base, "draft": None, "findings": [parsed.model_dump()]}
    copy = draft_of(parsed, request, state.get("variant"), completion.model)
    return {**base, "draft": copy.model_dump(), "findings": []}


def after_draft(state: CopyState) -> str:
    if state.get("fallback_reason"):
        return "fallback"
    if state.get("mode") == "composer":
        return "render"  # the author's own copy: only the gate in render checks it
    return "check"


def check(state: CopyState) -> Update:
    if state.get("draft") is None:  # the answer was not valid JSON for the schema
        return {}
    copy = Draft.model_validate(state["draft"])
    findings = guardrails.check_copy(copy, _request(state))
    return {"findings": [f.model_dump() for f in findings]}


def after_check(state: CopyState, runtime: Runtime[AgentContext]) -> str:
    failed = [f for f in state.get("findings", []) if not f["ok"]]
    if not failed and state.get("draft") is not None:
        return "render"
    if state.get("revisions", 0) < runtime.context.max_revisions:
        return "revise"
    return "fallback"


def fallback(state: CopyState) -> Update:
    """The composer's copy, with the reason the model's did not stand."""
    reason = state.get("fallback_reason") or _failed_rules(state)
    copy = compose(_request(state), state.get("variant"), why=reason)
    return {"draft": copy.model_dump(), "fallback_reason": reason}


def _failed_rules(state: CopyState) -> str:
    failed = [f for f in state.get("findings", []) if not f["ok"]]
    named = ", ".join(f"{f['rule']} ({f['message']})" for f in failed) or "no usable draft"
    return f"guardrails refused the model's drafts: {named}"


def render(state: CopyState, runtime: Runtime[AgentContext]) -> Update:
    """The draft in its layout, through the gate every email passes whoever wrote it: the model,
    a reviewer's edit or the composer (after a failure too)."""
    request = _request(state)
    copy = _with_held_fields(Draft.model_validate(state["draft"]), request)
    preview = runtime.context.render(copy)
    checked = guardrails.check_preview(preview)
    refused = guardrails.failed(guardrails.check_gate(copy, request))
    kept = [f for f in state.get("findings", []) if f["rule"] != "unsubscribe_present"]
    return {
        "draft": copy.model_dump(),
        "preview": preview.model_dump(),
        "findings": kept + [f.model_dump() for f in checked],
        "refused": [f.model_dump() for f in refused],
    }


def _with_held_fields(copy: Draft, request: CopyRequest) -> Draft:
    """The rationale names the contact fields the copy was written without, for the timeline."""
    note = "Contact fields held back: " + ", ".join(request.held_fields) + "."
    if not request.held_fields or note in copy.rationale:
        return copy
    return copy.model_copy(update={"rationale": f"{copy.rationale} {note}".strip()})


def review(state: CopyState) -> Command[Any]:
    """Send, or stop for a reviewer when the request says so; resumed with a Decision."""
    findings = [Finding.model_validate(f) for f in state.get("findings", [])]
    if any(f.rule == "unsubscribe_present" and not f.ok for f in findings):
        return _done("skip", state, "the rendered email has no unsubscribe link; not sent")
    request = _request(state)
    refused = [Finding.model_validate(f) for f in state.get("refused", [])]
    if refused:
        return _refused(state, request, refused)
    if state.get("approved_by"):
        why = state.get("fallback_reason")
        return _done(
            "send", state, f"approved by {state['approved_by']}" + (f"; {why}" if why else "")
        )
    if not request.needs_review:
        return _done("send", state, state.get("fallback_reason") or "")
    answer = interrupt(_review_payload(state, request))
    decision = Decision.model_validate(answer)
    return _decide(state, request, decision)


def _refused(state: CopyState, request: CopyRequest, refused: list[Finding]) -> Command[Any]:
    """Copy the gate refused is not sent: the sequence skips the step, or a reviewer decides
    with the findings in front of them."""
    named = "; ".join(f"{f.rule} ({f.message})" for f in refused)
    reason = f"guardrails refused the copy: {named}"
    if request.refused_copy == "skip":
        return _done("skip", state, f"{reason}; not sent")
    payload = _review_payload(state, request)
    named_rules = {f.rule for f in refused}
    shown = [f for f in payload["findings"] if f["rule"] not in named_rules]
    shown += [f.model_dump() for f in refused]
    answer = interrupt({**payload, "findings": shown, "fallback_reason": reason})
    return _decide(state, request, Decision.model_validate(answer))


def _review_payload(state: CopyState, request: CopyRequest) -> dict[str, Any]:
    fallback_copy = compose(request, state.get("variant"), why="shown to the reviewer")
    return {
        "draft": state["draft"],
        "preview": state["preview"],
        "findings": state.get("findings", []),
        "fallback": fallback_copy.model_dump(),
        "variant": state.get("variant"),
        "choice_reason": state.get("choice_reason", ""),
        "fallback_reason": state.get("fallback_reason"),
        "signals": state.get("signals", {}),
    }


def _decide(state: CopyState, request: CopyRequest, decision: Decision) -> Command[Any]:
    if decision.action == "skip":
        return _done("skip", state, f"skipped by {decision.by}" + _noted(decision))
    if decision.action == "regenerate":
        update: Update = {"reviewer_note": decision.note, "revisions": 0, "draft": None}
        return Command(goto="draft", update=update)
    if decision.action == "fallback":
        reason = f"{decision.by} chose the fallback copy" + _noted(decision)
        return Command(
            goto="fallback", update={"fallback_reason": reason, "approved_by": decision.by}
        )
    edited = apply_edits(Draft.model_validate(state["draft"]), decision)
    if edited is None:
        return _done("send", {**state, "approved_by": decision.by}, f"approved by {decision.by}")
    findings = guardrails.check_copy(edited, request)
    if guardrails.failed(findings):  # the API checks edits first; this is the last line
        return Command(goto="review", update={"findings": [f.model_dump() for f in findings]})
    return Command(goto="render", update={"draft": edited.model_dump(), "approved_by": decision.by})


def apply_edits(copy: Draft, decision: Decision) -> Draft | None:
    """The draft with a reviewer's edits, or None when they changed nothing."""
    changes: dict[str, Any] = {}
    if decision.subject is not None and decision.subject.strip() != copy.subject:
        changes["subject"] = " ".join(decision.subject.split())
    if decision.preheader is not None and decision.preheader.strip() != copy.preheader:
        changes["preheader"] = decision.preheader.strip()
    if decision.body is not None and split_paragraphs(decision.body) != copy.paragraphs:
        changes["paragraphs"] = split_paragraphs(decision.body)
    if not changes:
        return None
    note = f" Edited by {decision.by}."
    return copy.model_copy(update={**changes, "rationale": copy.rationale + note})


def _noted(decision: Decision) -> str:
    return f": {decision.note}" if decision.note else ""


def _done(action: str, state: CopyState, reason: str) -> Command[Any]:
    draft_value = state.get("draft")
    preview = state.get("preview")
    outcome = Outcome(
        action=action,
        draft=Draft.model_validate(draft_value) if draft_value and action == "send" else None,
        reason=reason,
        findings=tuple(Finding.model_validate(f) for f in state.get("findings", [])),
        preview=Preview.model_validate(preview) if preview else None,
        choice=state.get("choice"),
    )
    return Command(goto="__end__", update={"outcome": outcome.model_dump()})
