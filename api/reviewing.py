"""Deciding drafts: shared by the JSON API and the console, so both refuse the same edits,
answer the same race with the same conflict, and wake the worker the same way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from agents import guardrails
from agents.copy import CopyRequest, Decision, Draft, Finding
from agents.nodes import apply_edits
from sequences.definitions.document import EmailStep
from sequences.delivery.compose import preview_renderer
from sequences.deps import Deps
from sequences.engine.flow import load_context
from sequences.errors import Conflict, Invalid, NotFound
from sequences.review import reviews
from sequences.store.tables import CONTACTS, DRAFTS, DraftStatus

CLAIM_FOR = timedelta(minutes=5)  # long enough to read a draft, short enough not to block
_FIELDS = {"subject": "subject", "preheader": "preheader", "paragraphs": "body"}
_EDITABLE = ("subject", "preheader", "body")


@dataclass(frozen=True)
class Filter:
    status: str = DraftStatus.pending
    sequence: str | None = None
    step: str | None = None

    @classmethod
    def queue(cls, sequence: str | None, step: str | None) -> Filter:
        """The review queue, narrowed to a sequence and step when given (blank is all)."""
        return cls(DraftStatus.pending, sequence or None, step or None)

    def apply(self, query: Select[Any]) -> Select[Any]:
        query = query.where(DRAFTS.c.status == self.status)
        if self.sequence:
            query = query.where(DRAFTS.c.sequence_key == self.sequence)
        if self.step:
            query = query.where(DRAFTS.c.step_id == self.step)
        return query


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next: str | None  # the last id shown, when more follow


async def page(
    conn: AsyncConnection, where: Filter, *, after: str | None = None, limit: int = 50
) -> Page:
    """Drafts oldest first (the review queue), from after the draft ``after``."""
    query = where.apply(_with_contact())
    if after:
        mark = (
            await conn.execute(select(DRAFTS.c.id, DRAFTS.c.created_at).where(DRAFTS.c.id == after))
        ).first()
        if mark is None:
            raise Invalid("bad_cursor", f"after: no draft '{after}'", [{"path": "after"}])
        query = query.where(later_than(mark))
    ordered = query.order_by(DRAFTS.c.created_at, DRAFTS.c.id).limit(limit + 1)
    rows = list((await conn.execute(ordered)).all())
    return Page(rows[:limit], rows[limit - 1].id if len(rows) > limit else None)


async def by_deadline(
    conn: AsyncConnection, where: Filter, *, skip: int, limit: int, due: bool = False
) -> Page:
    """Drafts whose decide-by deadline comes first (those without one last), ``skip`` in;
    with ``due``, those whose email is due first (drafted ahead: sooner than written)."""
    first = DRAFTS.c.due_at if due else DRAFTS.c.deadline_at
    ordered = (
        where.apply(_with_contact())
        .order_by(first.is_(None), first, DRAFTS.c.created_at, DRAFTS.c.id)
        .offset(skip)
        .limit(limit + 1)
    )
    rows = list((await conn.execute(ordered)).all())
    return Page(rows[:limit], str(skip + limit) if len(rows) > limit else None)


def _with_contact() -> Select[Any]:
    return select(
        DRAFTS, CONTACTS.c.email, CONTACTS.c.timezone, CONTACTS.c.attributes.label("attributes")
    ).join(CONTACTS, CONTACTS.c.id == DRAFTS.c.contact_id)


def later_than(row: Any) -> ColumnElement[bool]:
    """Drafts after ``row`` in queue order (oldest first, ties by id)."""
    return or_(
        DRAFTS.c.created_at > row.created_at,
        and_(DRAFTS.c.created_at == row.created_at, DRAFTS.c.id > row.id),
    )


def earlier_than(row: Any) -> ColumnElement[bool]:
    """Drafts before ``row`` in queue order."""
    return or_(
        DRAFTS.c.created_at < row.created_at,
        and_(DRAFTS.c.created_at == row.created_at, DRAFTS.c.id < row.id),
    )


async def count(conn: AsyncConnection, where: Filter) -> int:
    total = await conn.execute(where.apply(select(func.count()).select_from(DRAFTS)))
    return int(total.scalar_one())


async def load(conn: AsyncConnection, draft_id: str) -> Any:
    """The draft row with its contact's address; NotFound when there is none."""
    row = (await conn.execute(_with_contact().where(DRAFTS.c.id == draft_id))).first()
    if row is None:
        raise NotFound("unknown_draft", f"no draft '{draft_id}'")
    return row


async def approve(deps: Deps, draft_id: str, decision: Decision) -> dict[str, Any]:
    """Approve a pending draft as it is or edited; an edit that fails a guardrail is refused
    (422, nothing changed) naming the field and the rule."""
    async with deps.reader.connect() as conn:
        row = await load(conn, draft_id)
        if apply_edits(Draft.model_validate(row.copy), decision) is None:
            # A form that posts the copy back unchanged is a plain approval.
            decision = decision.model_copy(update=dict.fromkeys(_EDITABLE))
        failed = await edit_findings(conn, deps, row, decision)
    if failed:
        details = [{"path": _path(f.message), "message": f"{f.rule}: {f.message}"} for f in failed]
        raise Invalid("edit_refused", "the edited draft fails the guardrails", details)
    return await decide(deps, draft_id, decision)


async def edit_findings(
    conn: AsyncConnection, deps: Deps, row: Any, decision: Decision
) -> list[Finding]:
    """The guardrails the edited copy fails: the copy checks, then the rendered email's."""
    edited = apply_edits(Draft.model_validate(row.copy), decision)
    if edited is None:
        return []
    findings = guardrails.check_copy(edited, CopyRequest.model_validate(row.request))
    ctx = await load_context(conn, row.enrollment_id)
    step = ctx.definition.step(row.step_id) if ctx else None
    if ctx is not None and isinstance(step, EmailStep):
        findings += guardrails.check_preview(preview_renderer(deps, ctx, step)(edited))
    return guardrails.failed(findings)


async def decide(deps: Deps, draft_id: str, decision: Decision) -> dict[str, Any]:
    """Record a decision on a pending draft; 409 when someone decided it first."""
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        row = await reviews.decide(conn, draft_id, decision, now)
        if row is None:
            current = await load(conn, draft_id)
            raise Conflict(
                "draft_not_pending",
                f"draft '{draft_id}' is {current.status}, not pending: "
                f"it was decided already{_by(current.decided_by)}",
            )
    await deps.waker.wake_at([now])  # after the commit: the worker must see the decision
    return {"id": draft_id, "status": row.status, "decision": row.decision}


@dataclass(frozen=True)
class Claim:
    """Someone else has the draft open: shown, never enforced (whoever decides first wins)."""

    by: str
    until: datetime


async def claim(deps: Deps, draft_id: str, by: str) -> Claim | None:
    """Mark a pending draft "being reviewed by ``by``" for CLAIM_FOR, unless another reviewer's
    claim is still live; then that claim is returned (and left as it is)."""
    now = deps.clock.now()
    free = or_(
        DRAFTS.c.claimed_by.is_(None), DRAFTS.c.claimed_by == by, DRAFTS.c.claimed_until <= now
    )
    async with deps.engine.begin() as conn:
        taken = await conn.execute(
            update(DRAFTS)
            .where(DRAFTS.c.id == draft_id, DRAFTS.c.status == DraftStatus.pending, free)
            .values(claimed_by=by, claimed_until=now + CLAIM_FOR)
            .returning(DRAFTS.c.id)
        )
        if taken.first() is not None:
            return None
        row = (
            await conn.execute(
                select(DRAFTS.c.status, DRAFTS.c.claimed_by, DRAFTS.c.claimed_until).where(
                    DRAFTS.c.id == draft_id
                )
            )
        ).first()
    return held_by_other(row, by, now)


def held_by_other(row: Any, me: str, now: datetime) -> Claim | None:
    """The live claim of another reviewer on a pending draft row, if any."""
    if row is None or row.status != DraftStatus.pending or not row.claimed_by:
        return None
    if row.claimed_by == me or row.claimed_until is None or row.claimed_until <= now:
        return None
    return Claim(row.claimed_by, row.claimed_until)


@dataclass(frozen=True)
class Bulk:
    approved: int
    left: int  # pending drafts of the step with a failed check: a reviewer reads each


async def approve_step(deps: Deps, sequence: str, step: str, *, by: str) -> Bulk:
    """Approve, as they are, the step's pending drafts whose checks all pass (one commit)."""
    where = Filter(DraftStatus.pending, sequence, step)
    return await _approve_clean(deps, where.apply(select(DRAFTS.c.id, DRAFTS.c.review)), by)


async def approve_selected(deps: Deps, draft_ids: list[str], *, by: str) -> Bulk:
    """Approve, as they are, those of these drafts still pending whose checks all pass."""
    query = select(DRAFTS.c.id, DRAFTS.c.review).where(
        DRAFTS.c.id.in_(draft_ids), DRAFTS.c.status == DraftStatus.pending
    )
    return await _approve_clean(deps, query, by, note="bulk approval of selected drafts")


async def _approve_clean(
    deps: Deps, query: Select[Any], by: str, note: str = "bulk approval of the step"
) -> Bulk:
    now = deps.clock.now()
    decision = Decision(action="approve", note=note, by=by)
    async with deps.engine.begin() as conn:
        rows = (await conn.execute(query)).all()
        clean = [row.id for row in rows if not failed_rules(row.review)]
        approved = 0
        for draft_id in clean:
            approved += await reviews.decide(conn, draft_id, decision, now) is not None
    if approved:
        await deps.waker.wake_at([now])
    return Bulk(approved, len(rows) - len(clean))


def failed_rules(review: dict[str, Any]) -> list[str]:
    return [f["rule"] for f in review.get("findings", []) if not f.get("ok", True)]


def _by(who: str | None) -> str:
    return f" by {who}" if who else ""


def _path(message: str) -> str:
    for word, field in _FIELDS.items():
        if word in message:
            return field
    return "body"


def summary(row: Any) -> dict[str, Any]:
    """A draft as the queue lists it."""
    copy = row.copy or {}
    return {
        "id": row.id,
        "status": row.status,
        "sequence": row.sequence_key,
        "step": row.step_id,
        "variant": row.variant,
        "revision": row.revision,
        "enrollment_id": row.enrollment_id,
        "email": row.email,
        "subject": row.subject,
        "model": row.model,
        "rationale": copy.get("rationale", ""),
        "failed_checks": failed_rules(row.review),
        "created_at": _iso(row.created_at),
        "deadline_at": _iso(row.deadline_at),
        "due_at": _iso(row.due_at),
        "decided_by": row.decided_by,
        "decided_at": _iso(row.decided_at),
        "claimed_by": row.claimed_by,
        "claimed_until": _iso(row.claimed_until),
    }


def detail(row: Any) -> dict[str, Any]:
    """A draft as a reviewer reads it: the copy, the rendered email, the checks, the fallback,
    the contact and what they did so far."""
    request = CopyRequest.model_validate(row.request)
    return {
        **summary(row),
        "copy": row.copy,
        "preview": {"html": row.preview_html, "text": row.preview_text},
        "findings": row.review.get("findings", []),
        "fallback": row.review.get("fallback"),
        "choice_reason": row.review.get("choice_reason"),
        "fallback_reason": row.review.get("fallback_reason"),
        "signals": row.review.get("signals", {}),
        "contact": request.contact,
        "engagement": request.engagement.for_prompt(),
        "brief": request.brief,
        "decision": row.decision,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
