"""Walking one enrollment through its sequence as the engine runs it, leaving the engine's rows.

The order of things follows ``flow.plan_move`` / ``apply_moves`` (control steps resolved inline,
an outbox row per email and wait), ``reviews`` (a draft held for review, approved by a reviewer,
then sent) and ``sending``: the send window, the message rendered and recorded
(``compose.render_message``, ``compose.message_row``, its tracked links), the draft noted on the
timeline, then what the relay said: sent (and the recipient's reactions to come), a hard bounce
(the address suppressed, the enrollment over), or 4xx after 4xx until the attempts run out
(retried with the engine's backoff, then the enrollment ends). Branch conditions run in the
engine's sandbox; ``choose`` steps and variants are sampled by the engine's Thompson sampler over
the counts so far.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from typing import Any

from agents.bandit import ArmStats, Candidate, Choice, thompson
from benchmarks.console_copy import Known, Written, approve, ledger, review
from benchmarks.console_people import Happening, Mail, Plan, click_rate, reactions
from benchmarks.console_rows import Row, event_row
from benchmarks.console_trail import Sent, Trail, World
from sequences.definitions.document import (
    BranchStep,
    ChooseStep,
    EmailStep,
    ExitStep,
    GotoStep,
    WaitStep,
)
from sequences.definitions.sandbox import evaluate_condition
from sequences.delivery.compose import Outgoing, message_row, render_message
from sequences.delivery.outcomes import Job
from sequences.engine.flow import MAX_HOPS
from sequences.engine.outbox import Claim
from sequences.engine.pacing import window_release
from sequences.review.drafting import needs_review
from sequences.signals import adaptive
from sequences.store.tables import (
    DRAFTS,
    EVENTS,
    LINKS,
    MESSAGES,
    MODEL_CALLS,
    DraftStatus,
    EnrollmentStatus,
    MessageState,
    RunState,
)

Waypoint = EmailStep | WaitStep
REVIEWERS = ("review-maya", "review-jonas", "review-priya")
NOTES = ("Looks good.", "Fine to send, thanks.", "Checked the company name.")
COMPOSER_SHARE = 0.04  # sends whose model call failed, so the step's fallback copy went out
QUEUED = "250 2.0.0 Ok: queued as {}"
BOUNCED = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"
DEFERRED = "421 4.7.0 Try again later, closing connection."


async def placed(world: World, plan: Plan) -> Trail:
    """A held plan is walked once to see when it reaches its review, then again started that
    much earlier or later, so its draft is made at the planned time (the walk is the same:
    same seed, same counts, and no cut-off at now before the review)."""
    trail = await walk(world, plan)
    if plan.hold_time is None or trail.held_at == plan.hold_time:
        return trail
    if trail.held_at is not None:
        shift = plan.hold_time - trail.held_at
        trail = await walk(world, replace(plan, created_at=plan.created_at + shift))
    if trail.held_at != plan.hold_time:
        raise RuntimeError(f"{plan.enrollment_id} did not reach {plan.hold_step} as planned")
    return trail


async def walk(world: World, plan: Plan) -> Trail:
    trail = Trail(world, plan)
    enroll(trail)
    step = move(trail, trail.defn.steps[0].id)
    while step is not None:
        ran = await email(trail, step) if isinstance(step, EmailStep) else wait(trail, step)
        step = move(trail, trail.defn.next_step_id(step.id)) if ran else None
    trail.drain()
    return trail


def enroll(trail: Trail) -> None:
    plan = trail.plan
    if plan.source != "api":  # an entry event enrolled them: it was stored just before
        kind = plan.source.removeprefix("event:")
        signup = Happening(plan.created_at, kind, "api", None, {"plan": "trial"})
        key = f"api:{kind}-{plan.contact_id}"
        trail.rows.add(EVENTS, event_row(plan.contact_id, key, None, signup, plan.created_at))
    trail.entry("enrolled", version=trail.pinned.version, source=plan.source)
    if plan.cancel_after is not None:
        trail.expect([Happening(plan.created_at + plan.cancel_after, "cancel", "api", None)])


# ------------------------------------------------------------------------------ moving on


def move(trail: Trail, target: str | None) -> Waypoint | None:
    """From ``target`` on: control steps resolved, then the email or wait scheduled, or the
    end; None when the enrollment ended."""
    for _ in range(MAX_HOPS):
        if target is None:
            trail.end(EnrollmentStatus.completed, "end of sequence")
            return None
        step = trail.defn.step(target)
        if isinstance(step, ExitStep):
            trail.end(
                EnrollmentStatus.completed, step.exit.reason or f"exit step {step.id}", step.id
            )
            return None
        if isinstance(step, EmailStep):
            trail.schedule(step.id, trail.t)
            return step
        if isinstance(step, WaitStep):
            due = trail.t + trail.world.deps.seqtime.real_duration(step.wait.duration)
            trail.entry("waiting", step.id, until=step.wait.until, wake_at=due.isoformat())
            trail.schedule(step.id, due)
            return step
        target = decide(trail, step)
    raise RuntimeError(f"{trail.defn.key}: a goto loop without a wait")


def decide(trail: Trail, step: BranchStep | GotoStep | ChooseStep) -> str:
    detail: dict[str, Any] = {}
    if isinstance(step, GotoStep):
        target, why = step.goto, "goto"
    elif isinstance(step, ChooseStep):
        target, why, detail = choose(trail, step)
    else:
        target, why = branch(trail, step)
    trail.entry("decision", step.id, goto=target, reason=why, **detail)
    return target


def branch(trail: Trail, step: BranchStep) -> tuple[str, str]:
    signals = trail.engagement()
    context = {"contact": trail.ctx.contact_view(), "event": signals.last_event}
    context |= signals.helpers()
    for number, rule in enumerate(step.branch):
        if rule.else_ is not None:
            return rule.else_, "else"
        if rule.if_ and rule.goto and evaluate_condition(rule.if_, context):
            return rule.goto, f"rule {number}: {rule.if_}"
    raise ValueError(f"branch {step.id} has no else")


def choose(trail: Trail, step: ChooseStep) -> tuple[str, str, dict[str, Any]]:
    """Each candidate stands for the email it leads to, with that step's counts so far."""
    defn = trail.defn
    candidates = adaptive.choose_candidates(defn, step, trail.world.tally.arms(defn.key))
    choice = sample(trail, step.id, candidates)
    return choice.id, choice.reason, {"choice": choice.model_dump(mode="json")}


def sample(trail: Trail, step_id: str, candidates: list[Candidate]) -> Choice:
    adapt = trail.defn.adapt
    return thompson(
        candidates,
        trail.affinities(),
        seed=adaptive.seed(trail.world.deps, trail.plan.enrollment_id, step_id),
        goal=adapt.goal,
        affinity_weight=adapt.affinity_weight,
    )


def wait(trail: Trail, step: WaitStep) -> bool:
    run = trail.open_run
    assert run is not None
    if not trail.reach(run["due_at"]) and not (trail.active and run["woken_by"]):
        return False
    if not trail.reach(run["due_at"] + trail.latency()):  # woken: the worker runs it now
        return False
    trail.close_run(run)
    trail.entry("step_done", step.id, ended_by=run["woken_by"] or "timeout")
    return True


# -------------------------------------------------------------------------------- emails


async def email(trail: Trail, step: EmailStep) -> bool:
    run = trail.open_run
    assert run is not None
    if trail.plan.template and trail.plan.hold_step == step.id:
        trail.held_at, trail.horizon = run["due_at"], trail.world.now  # the engine drafts it
        return False
    if not claim(trail, step, run):
        return False
    job = Job(Claim(run["id"], "", trail.plan.enrollment_id, step.id, 1, None), trail.ctx, step)
    if needs_review(job, trail.world.approved):
        written = await reviewed(trail, step, run)
    else:
        written = await drafted(trail, step)
    return written is not None and send(trail, step, run, written)


def claim(trail: Trail, step: EmailStep, run: Row) -> bool:
    """The worker takes the row; outside the recipient's send window it waits for it."""
    if not trail.reach(run["due_at"] + trail.latency()):
        return False
    opens = window_release(trail.world.deps, trail.ctx, trail.t)
    if opens is None:
        return True
    trail.entry("deferred", step.id, until=opens.isoformat(), reason="outside the send window")
    run["due_at"] = opens
    return trail.reach(opens + trail.latency())


async def drafted(trail: Trail, step: EmailStep) -> Written:
    variant, choice = pick_variant(trail, step)
    writer, summary = trail.world.copywriter, trail.summary()
    if not trail.calm and trail.rng.random() < COMPOSER_SHARE:
        written = writer.composed(trail.ctx, step, variant, summary)
    else:
        written = await writer.write(trail.ctx, step, variant, summary)
    return replace(written, choice=choice)


def pick_variant(trail: Trail, step: EmailStep) -> tuple[str | None, dict[str, Any] | None]:
    if not step.email.variants:
        return None, None
    arms = trail.world.tally.arms(trail.defn.key)
    candidates = [
        Candidate(
            id=v.id or "",
            topics=trail.defn.topics(step.id, v.id),
            stats=arms.get((step.id, v.id or ""), ArmStats()),
        )
        for v in step.email.variants
    ]
    choice = sample(trail, step.id, candidates)
    return choice.id, choice.model_dump(mode="json")


async def reviewed(trail: Trail, step: EmailStep, run: Row) -> Written | None:
    """Held for a reviewer; None when the walk stops with the draft pending (or cancelled)."""
    world = trail.world
    known = Known(trail.summary(), trail.affinities(), world.tally.arms(trail.defn.key))
    found = await review(world.copywriter, trail.ctx, step, known, run["id"], trail.t)
    row, draft = found.row, found.written.draft
    trail.rows.add(DRAFTS, row)
    trail.rows.add(
        MODEL_CALLS, *ledger(trail.ctx, step.id, run["id"], found.written, trail.t, trail.rng)
    )
    trail.open_draft = row
    deadline = row["deadline_at"]
    trail.entry(
        "review_requested",
        step.id,
        draft=row["id"],
        model=draft.model,
        rationale=draft.rationale,
        revision=1,
        deadline=deadline.isoformat() if deadline else None,
    )
    run.update(state=RunState.held, due_at=deadline or trail.t, attempts=0)
    if trail.plan.hold_step == step.id:
        trail.held_at, trail.horizon = trail.t, world.now
        return None
    return await decided(trail, step, run, row, found.written)


async def decided(
    trail: Trail, step: EmailStep, run: Row, row: Row, written: Written
) -> Written | None:
    """A reviewer approves it (before now: only the planned drafts stay pending)."""
    delay = timedelta(hours=trail.rng.expovariate(1 / 5), minutes=2)
    limit = (trail.horizon - trail.t) * 0.9
    if row["deadline_at"] is not None:
        limit = min(limit, (row["deadline_at"] - trail.t) * 0.9)
    if not trail.reach(trail.t + min(delay, limit)):
        return None
    by = trail.rng.choice(REVIEWERS)
    note = trail.rng.choice(NOTES) if trail.rng.random() < 0.15 else None
    approve(row, by, note, trail.t)
    noted = {"note": note} if note else {}
    trail.entry(
        "draft_approved", step.id, draft=row["id"], by=by, action="approve", **noted, edited=False
    )
    run.update(state=RunState.due, due_at=trail.t)
    trail.world.approved.add((trail.defn.key, step.id))
    if not trail.reach(trail.t + trail.latency()):
        return None
    row["status"] = DraftStatus.resolved
    return replace(written, calls=(), reason=f"approved by {by}")


# ------------------------------------------------------------------------------- sending


def send(trail: Trail, step: EmailStep, run: Row, written: Written) -> bool:
    deps, ctx = trail.world.deps, trail.ctx
    outgoing = render_message(deps, ctx, step, written.draft, trail.t)
    claim = Claim(run["id"], "", ctx.enrollment_id, step.id, 1, None)
    row = message_row(outgoing, claim, ctx, step, written.draft)
    row.update(last_reply=None, sent_at=None, clicked_at=None, replied_at=None, converted_at=None)
    trail.rows.add(MESSAGES, row)
    trail.rows.add(LINKS, *outgoing.links)
    trail.rows.add(MODEL_CALLS, *ledger(ctx, step.id, run["id"], written, trail.t, trail.rng))
    trail.entry("drafted", step.id, **drafted_detail(outgoing, written))
    outcome = delivery(trail.rng, trail.calm)
    if outcome == "bounced":
        return bounced(trail, run, row)
    if outcome == "failed":
        return failed(trail, step, run, row)
    return delivered(trail, step, run, row, outgoing)


def delivery(rng: random.Random, calm: bool) -> str:
    """sent, bounced (a hard 5xx at RCPT) or failed (4xx until the attempts ran out)."""
    roll = 1.0 if calm else rng.random()
    return "bounced" if roll < 0.015 else "failed" if roll < 0.019 else "sent"


def drafted_detail(outgoing: Outgoing, written: Written) -> dict[str, Any]:
    draft = written.draft
    detail: dict[str, Any] = {"message": outgoing.id, "variant": draft.variant}
    detail |= {"model": draft.model, "rationale": draft.rationale}
    if written.reason:
        detail["reason"] = written.reason
    if written.choice:
        detail["choice"] = written.choice
    return detail


def delivered(trail: Trail, step: EmailStep, run: Row, row: Row, outgoing: Outgoing) -> bool:
    trail.t += timedelta(seconds=trail.rng.uniform(0.2, 1.5))
    reply = QUEUED.format(f"{trail.rng.getrandbits(40):010X}")
    row.update(state=MessageState.sent, sent_at=trail.t, attempts=1, last_reply=reply)
    trail.close_run(run)
    mail = Mail(outgoing.id, trail.t, tuple(dict.fromkeys(link["url"] for link in outgoing.links)))
    trail.sent[outgoing.id] = Sent(row, mail, step.id, outgoing.variant)
    trail.counted.append((step.id, outgoing.variant, "sends"))
    rate = click_rate(trail.defn.key, step.id, outgoing.variant)
    trail.expect(reactions(trail.rng, mail, trail.plan.person.interest, rate, calm=trail.calm))
    trail.entry("step_done", step.id, message=outgoing.id, outcome="sent")
    return True


def bounced(trail: Trail, run: Row, row: Row) -> bool:
    """A 5xx at RCPT: the message bounced, the address is suppressed, every sequence ends."""
    trail.t += timedelta(seconds=trail.rng.uniform(0.3, 2.0))
    reply = BOUNCED.format(row["to_addr"])
    row.update(state=MessageState.bounced, last_reply=reply)
    trail.close_run(run)
    bounce = Happening(
        trail.t, "bounced", "smtp", row["id"], {"bounce_type": "hard", "reply": reply}
    )
    key = f"smtp:{row['id']}"
    trail.rows.add(
        EVENTS, event_row(trail.plan.contact_id, key, trail.plan.enrollment_id, bounce, trail.t)
    )
    trail.entry("bounced", reply=reply)
    trail.suppress("hard_bounce", trail.t, reply)
    return False


def failed(trail: Trail, step: EmailStep, run: Row, row: Row) -> bool:
    """4xx after 4xx: retried with backoff until the attempts run out, then the enrollment ends."""
    settings = trail.world.deps.settings
    for attempt in range(1, settings.max_send_attempts + 1):
        trail.t += timedelta(seconds=trail.rng.uniform(1, 20))
        last = attempt == settings.max_send_attempts
        state = MessageState.failed if last else MessageState.retrying
        row.update(state=state, attempts=attempt, last_reply=DEFERRED)
        kind = "send_failed" if last else "send_retry"
        trail.entry(kind, step.id, message=row["id"], reply=DEFERRED, attempt=attempt)
        if last:
            break
        backoff = min(settings.retry_base_seconds * 2 ** (attempt - 1), 3600)
        run.update(due_at=trail.t + timedelta(seconds=backoff), attempts=0)
        if not trail.reach(run["due_at"] + trail.latency()):
            return False
    trail.close_run(run)
    trail.end(EnrollmentStatus.exited, "send failed", step.id)
    return False
