"""Sending one email of a walk, as ``sequences.delivery.sending`` does: the message rendered
and recorded (``compose.render_message``, ``compose.message_row``, its tracked links), the draft
noted on the timeline, then what the relay said: sent (and the recipient's reactions to come), a
hard bounce (the address suppressed, the enrollment over), or 4xx after 4xx until the attempts run
out (retried with the engine's backoff, then the enrollment ends)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from benchmarks.console_behaviour import (
    BOUNCED,
    DEFERRED,
    QUEUED,
    Happening,
    Mail,
    click_rate,
    delivery,
    reactions,
)
from benchmarks.console_copy import Written, ledger
from benchmarks.console_rows import Row
from benchmarks.console_trail import Trail
from benchmarks.console_world import Sent, event_row
from sequences.definitions.document import EmailStep
from sequences.delivery.compose import Outgoing, message_row, render_message
from sequences.engine.outbox import Claim
from sequences.store.tables import (
    EVENTS,
    LINKS,
    MESSAGES,
    MODEL_CALLS,
    EnrollmentStatus,
    MessageState,
)


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
