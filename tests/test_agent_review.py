"""The copy graph's review path on real checkpoints (SQLite and PostgreSQL): a draft waits at an
interrupt, and approve, edit, regenerate, fallback and skip resume it the right way, once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from agent_cases import (
    CASE_STUDY,
    PRICING,
    UNSUBSCRIBE,
    engagement,
    is_fallback,
    make_request,
    outcome_of,
    render,
    review_of,
    sent,
    user_message,
)

from agents.agent import CopyAgent
from agents.composer import COMPOSER_MODEL
from agents.copy import (
    Decision,
)
from agents.fake import FunctionModel
from agents.fake import heuristic_answer as heuristic
from sequences.review.checkpoints import open_checkpointer

# 5. Approval flows ----------------------------------------------------------------------------


@asynccontextmanager
async def reviewing(database_url: str, model: FunctionModel) -> AsyncIterator[CopyAgent]:
    async with open_checkpointer(database_url) as checkpointer:
        yield CopyAgent(model, checkpointer)


REVIEWED = make_request(needs_review=True)
THREAD = "enrollment-17:day-7-follow-up:42"


async def test_a_draft_waits_for_review_and_is_sent_once_approved(database_url: str) -> None:
    model = FunctionModel(heuristic)
    async with reviewing(database_url, model) as agent:
        first = await agent.run(REVIEWED, render, THREAD)
        review = review_of(first)
        assert review.draft.model == "function-model" and "pricing" in review.draft.subject
        assert review.draft.body in review.preview.text and UNSUBSCRIBE in review.preview.html
        is_fallback(review.fallback)
        assert review.findings and all(f.ok for f in review.findings)
        assert "unsubscribe_present" in {f.rule for f in review.findings}
        assert review.signals["clicked"] == [PRICING]
        assert [c.purpose for c in first.calls] == ["draft"]

        again = await agent.run(REVIEWED, render, THREAD)  # a worker that crashed and retried
        assert review_of(again) == review and again.calls == []
        assert len(model.requests) == 1
        assert await agent.pending(THREAD) == review

        approved = await agent.resume(THREAD, Decision(action="approve", by="Sam"), render)
        assert sent(approved) == review.draft
        assert outcome_of(approved).reason == "approved by Sam"
        assert approved.calls == [] and await agent.pending(THREAD) is None

        # Exactly once: resuming or running a finished thread repeats its answer, no model call.
        repeat = await agent.resume(THREAD, Decision(action="skip", by="Other"), render)
        assert outcome_of(repeat) == outcome_of(approved)
        rerun = await agent.run(REVIEWED, render, THREAD)
        assert outcome_of(rerun) == outcome_of(approved)
        assert len(model.requests) == 1 and repeat.calls == rerun.calls == []


async def test_an_approved_edit_is_sent_as_edited(database_url: str) -> None:
    async with reviewing(database_url, FunctionModel(heuristic)) as agent:
        review = review_of(await agent.run(REVIEWED, render, THREAD))
        body = (
            "Hi Dana,\n\nThanks for trying Acme. Our team can answer any questions on a short "
            "call before the trial ends.\n\nReply to this email if anything comes up."
        )
        decision = Decision(action="approve", subject="Your trial, Dana", body=body, by="Sam")
        result = await agent.resume(THREAD, decision, render)

    copy = sent(result)
    assert copy.subject == "Your trial, Dana"
    assert copy.paragraphs == (
        "Hi Dana,",
        "Thanks for trying Acme. Our team can answer any questions on a short call before "
        "the trial ends.",
        "Reply to this email if anything comes up.",
    )
    assert copy.preheader == review.draft.preheader  # what the reviewer left alone stays
    assert copy.rationale == review.draft.rationale + " Edited by Sam."
    outcome = outcome_of(result)
    assert outcome.reason == "approved by Sam"
    assert outcome.preview is not None and "Thanks for trying Acme." in outcome.preview.text


async def test_an_edit_that_breaks_a_guardrail_goes_back_to_review(database_url: str) -> None:
    async with reviewing(database_url, FunctionModel(heuristic)) as agent:
        review = review_of(await agent.run(REVIEWED, render, THREAD))
        body = (
            "Hi {{ first_name }},\n\nOur team can answer any questions on a short call "
            "before the trial ends, whenever suits you best."
        )
        decision = Decision(action="approve", body=body, by="Sam")
        again = review_of(await agent.resume(THREAD, decision, render))

        failed = {f.rule: f.message for f in again.findings if not f.ok}
        assert list(failed) == ["no_placeholders"] and "first_name" in failed["no_placeholders"]
        assert again.draft == review.draft  # the refused edit replaced nothing
        assert await agent.pending(THREAD) == again

        fixed = body.replace("{{ first_name }}", "Dana")
        result = await agent.resume(
            THREAD, Decision(action="approve", body=fixed, by="Sam"), render
        )

    copy = sent(result)
    assert copy.paragraphs[0] == "Hi Dana," and "{{" not in copy.text()
    assert outcome_of(result).reason == "approved by Sam"


async def test_regenerate_drafts_again_with_the_note_and_waits_again(database_url: str) -> None:
    model = FunctionModel(heuristic)
    note = "Lead with the onboarding call, not the price"
    async with reviewing(database_url, model) as agent:
        review_of(await agent.run(REVIEWED, render, THREAD))
        decision = Decision(action="regenerate", note=note, by="Sam")
        regenerated = await agent.resume(THREAD, decision, render)

        second = review_of(regenerated)
        assert [c.purpose for c in regenerated.calls] == ["draft"]
        assert len(model.requests) == 2
        assert note not in user_message(model.requests[0])
        assert f"Their note: {json.dumps(note)}" in user_message(model.requests[1])
        assert await agent.pending(THREAD) == second

        result = await agent.resume(THREAD, Decision(action="approve", by="Kim"), render)

    assert sent(result) == second.draft
    assert outcome_of(result).reason == "approved by Kim"
    assert len(model.requests) == 2


async def test_choosing_the_fallback_sends_the_composer_copy(database_url: str) -> None:
    model = FunctionModel(heuristic)
    async with reviewing(database_url, model) as agent:
        review = review_of(await agent.run(REVIEWED, render, THREAD))
        decision = Decision(action="fallback", note="too salesy", by="Sam")
        result = await agent.resume(THREAD, decision, render)
        assert await agent.pending(THREAD) is None

    copy = sent(result)
    is_fallback(copy)
    assert copy.paragraphs == review.fallback.paragraphs
    assert "Sam chose the fallback copy: too salesy" in copy.rationale
    assert "Sam" in outcome_of(result).reason
    assert result.calls == [] and len(model.requests) == 1


async def test_skip_sends_nothing(database_url: str) -> None:
    async with reviewing(database_url, FunctionModel(heuristic)) as agent:
        review_of(await agent.run(REVIEWED, render, THREAD))
        decision = Decision(action="skip", note="already talking to sales", by="Sam")
        result = await agent.resume(THREAD, decision, render)

    outcome = outcome_of(result)
    assert outcome.action == "skip" and outcome.draft is None
    assert outcome.reason == "skipped by Sam: already talking to sales"


async def test_another_worker_resumes_a_thread_from_the_checkpoint(database_url: str) -> None:
    first_model, second_model = FunctionModel(heuristic), FunctionModel(heuristic)
    async with reviewing(database_url, first_model) as first_worker:
        review = review_of(await first_worker.run(REVIEWED, render, THREAD))

    async with reviewing(database_url, second_model) as second_worker:
        assert await second_worker.pending(THREAD) == review
        rerun = await second_worker.run(REVIEWED, render, THREAD)
        assert review_of(rerun) == review
        result = await second_worker.resume(THREAD, Decision(action="approve", by="Sam"), render)

    assert sent(result) == review.draft
    assert outcome_of(result).reason == "approved by Sam"
    assert second_model.requests == [] and len(first_model.requests) == 1


async def test_threads_are_kept_apart_and_an_unknown_one_has_nothing_to_resume(
    tmp_path: Path,
) -> None:
    model = FunctionModel(heuristic)
    other = make_request(
        needs_review=True, engagement=engagement(clicked=CASE_STUDY, ignored=PRICING)
    )
    async with reviewing(f"sqlite+aiosqlite:///{tmp_path}/cp.db", model) as agent:
        a = review_of(await agent.run(REVIEWED, render, "thread-a"))
        b = review_of(await agent.run(other, render, "thread-b"))
        assert "pricing" in a.draft.subject and "case study" in b.draft.subject
        assert await agent.pending("thread-a") == a and await agent.pending("thread-b") == b
        assert await agent.pending("thread-c") is None
        with pytest.raises(LookupError, match="thread-c"):
            await agent.resume("thread-c", Decision(action="approve"), render)
        with pytest.raises(ValueError, match="checkpointer and a thread"):
            await agent.run(REVIEWED, render)
    with pytest.raises(ValueError, match="checkpointer and a thread"):
        await CopyAgent(model).run(REVIEWED, render, "thread-a")


async def test_the_offline_twin_resumes_a_review_without_the_model(tmp_path: Path) -> None:
    model = FunctionModel(heuristic)
    reason = "the model took longer than 20 s"
    async with reviewing(f"sqlite+aiosqlite:///{tmp_path}/cp.db", model) as agent:
        offline = agent.offline(reason)
        review = review_of(await offline.run(REVIEWED, render, THREAD))
        assert review.draft.model == COMPOSER_MODEL and review.fallback_reason == reason
        regenerate = Decision(action="regenerate", note="try again", by="Sam")
        again = review_of(await offline.resume(THREAD, regenerate, render))
        assert again.draft.model == COMPOSER_MODEL
        result = await offline.resume(THREAD, Decision(action="approve", by="Sam"), render)

    is_fallback(sent(result))
    assert outcome_of(result).reason == "approved by Sam"
    assert model.requests == []
