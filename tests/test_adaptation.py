"""Scores change what comes next: branches read them, choose steps and variants sample them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import BROWSER_UA, Stack, eventually, make_settings, running_stack

from agents.bandit import Candidate, Choice, replay
from agents.composer import compose
from agents.copy import CopyRequest, Fallback, VariantOption
from sequences.definitions import registry
from sequences.definitions.document import ChooseStep
from sequences.mail.capture import CaptureServer
from sequences.signals import adaptive

SENDER = 'sender: {from: "Ops <ops@acme.test>"}'
TIPS = """
  - id: tip-pricing
    email: {brief: pricing, topics: [pricing], fallback: {subject: "Pricing tip", body: "B."}}
  - id: end-pricing
    exit: {}
  - id: tip-security
    email: {brief: security, topics: [security], fallback: {subject: "Security tip", body: "B."}}
  - id: end-security
    exit: {}
"""
ROUTED = f"""key: routed
name: Routed
{SENDER}
steps:
  - id: hello
    email:
      brief: hello
      topics: [pricing]
      cta: {{text: Prices, url: "https://acme.test/pricing"}}
      fallback: {{subject: "Hello", body: "B."}}
  - id: pause
    wait: {{for: 2d, until: [clicked]}}
  - id: route
    branch:
      - {{if: "affinity('pricing') > 0.5 and score > 2", goto: tip-pricing}}
      - {{else: tip-security}}
{TIPS}"""
CHOOSING = f"""key: choosing
name: Choosing
{SENDER}
steps:
  - id: next
    choose: [tip-pricing, tip-security]
{TIPS}"""


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, capture: CaptureServer, redis_db: str
) -> AsyncIterator[Stack]:
    async with running_stack(make_settings(tmp_path, database_url), redis_db, capture) as running:
        yield running


async def subjects(stack: Stack, email: str) -> list[str]:
    return sorted(m.subject for m in stack.mail_to(email))


async def timeline(stack: Stack, enrollment: str, kind: str) -> list[dict[str, Any]]:
    status = await stack.enrollment(enrollment)
    return [e for e in status["timeline"] if e["kind"] == kind]


async def test_a_branch_reads_the_score_and_the_affinities(stack: Stack) -> None:
    assert (await stack.apply("routed", ROUTED)).status_code == 201
    clicker = (await stack.enroll("routed", "clicks@example.com")).json()["id"]
    quiet = (await stack.enroll("routed", "quiet@example.com")).json()["id"]
    await eventually(lambda: subjects(stack, "clicks@example.com"))
    event = {
        "id": "c1",
        "type": "clicked",
        "email": "clicks@example.com",
        "message_id": stack.mail_to("clicks@example.com")[0].message_id,
        "properties": {"url": "https://acme.test/pricing", "user_agent": BROWSER_UA},
    }
    response = await stack.client.post("/v1/events", json={"events": [event]}, headers=stack.auth())
    assert response.status_code == 202
    assert await eventually(lambda: _has(stack, "clicks@example.com", "Pricing tip"))
    assert await eventually(lambda: _has(stack, "quiet@example.com", "Security tip"), within=30)
    [taken] = await timeline(stack, clicker, "decision")
    assert taken["goto"] == "tip-pricing" and "affinity('pricing')" in taken["reason"]
    [other] = await timeline(stack, quiet, "decision")
    assert other["goto"] == "tip-security" and other["reason"] == "else"


async def _has(stack: Stack, email: str, subject: str) -> bool:
    return subject in await subjects(stack, email)


async def test_a_choose_decision_is_logged_with_what_replays_it(stack: Stack) -> None:
    assert (await stack.apply("choosing", CHOOSING)).status_code == 201
    enrollment = (await stack.enroll("choosing", "cho@example.com")).json()["id"]
    [decision] = await eventually(lambda: timeline(stack, enrollment, "decision"))
    choice = Choice.model_validate(decision["choice"])
    assert decision["goto"] == choice.id and decision["reason"] == choice.reason
    assert choice.reason.startswith("thompson sampling on engagement")
    candidates = [
        Candidate(id="tip-pricing", topics=("pricing",)),
        Candidate(id="tip-security", topics=("security",)),
    ]
    assert replay(choice, candidates) == choice


async def test_the_engine_refuses_a_choice_outside_the_candidates(stack: Stack) -> None:
    assert (await stack.apply("choosing", CHOOSING)).status_code == 201

    def rogue(candidates: list[Candidate], affinities: dict[str, float], **_: Any) -> Choice:
        return Choice(id="end-pricing", reason="picked an exit")

    async with stack.deps.engine.connect() as conn:
        pinned = await registry.current(conn, "choosing")
        assert pinned is not None
        step = pinned.definition.step("next")
        assert isinstance(step, ChooseStep)
        target, reason, detail = await adaptive.choose_next(
            conn, stack.deps, pinned.definition, step, "enr_x", {}, chooser=rogue
        )
    assert target in ("tip-pricing", "tip-security")
    assert target == adaptive.stable_pick("enr_x", "next", ["tip-pricing", "tip-security"])
    assert reason.startswith("refused choice: 'end-pricing' is not one of the candidates")
    assert detail["choice"]["id"] == "end-pricing"  # what was refused stays on record


async def test_a_sampled_variant_is_logged_on_the_drafted_entry(stack: Stack) -> None:
    document = (
        f"key: varied\nname: V\n{SENDER}\nsteps:\n  - id: pitch\n    email:\n"
        '      brief: b\n      fallback: {subject: "S", body: "B."}\n'
        "      variants: [{id: short, angle: short}, {id: long, angle: long, topics: [docs]}]\n"
    )
    assert (await stack.apply("varied", document)).status_code == 201
    enrollment = (await stack.enroll("varied", "var@example.com")).json()["id"]
    [drafted] = await eventually(lambda: timeline(stack, enrollment, "drafted"))
    choice = Choice.model_validate(drafted["choice"])
    assert drafted["variant"] == choice.id in ("short", "long")
    assert set(choice.samples) == {"short", "long"} and choice.seed == adaptive.seed(
        stack.deps, enrollment, "pitch"
    )


def test_a_variant_outside_the_step_is_refused_for_the_engines_pick() -> None:
    request = CopyRequest(
        sequence_key="s",
        step_id="pitch",
        brief="b",
        fallback=Fallback(subject="Hello", body="Body."),
        contact={"first_name": "Ada"},
        variants=(VariantOption(id="short", angle="short"), VariantOption(id="long", angle="long")),
        preferred_variant="long",
    )
    draft = compose(request, "short", why="test")
    assert adaptive.checked_variant(request, draft) == (draft, None)
    rogue = draft.model_copy(update={"variant": "sneaky"})
    checked, refusal = adaptive.checked_variant(request, rogue)
    assert checked is not None and checked.variant == "long"
    assert (
        refusal == "refused variant choice: 'sneaky' is not one of the candidates ['short', 'long']"
    )
    plain = request.model_copy(update={"variants": ()})
    assert adaptive.checked_variant(plain, rogue) == (rogue, None)  # a step without variants


def test_the_engines_pick_after_a_refused_variant_passes_the_copy_gate() -> None:
    request = CopyRequest(
        sequence_key="s",
        step_id="pitch",
        brief="b",
        fallback=Fallback(subject="Hello", body="Hi null, read this."),
        contact={"first_name": "Ada"},
        variants=(VariantOption(id="short", angle="short"), VariantOption(id="long", angle="long")),
        preferred_variant="long",
    )
    rogue = compose(request, "short", why="test").model_copy(update={"variant": "sneaky"})
    checked, refusal = adaptive.checked_variant(request, rogue)
    assert checked is None
    assert refusal is not None and "greeting_named" in refusal and refusal.endswith("not sent")
