"""Drafts waiting for review: list, read, approve (optionally edited), reject."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents import guardrails
from agents.copy import CopyRequest, Decision, Draft
from agents.nodes import apply_edits
from api.deps import DepsDep, ReadConnDep, Reviewer
from api.schemas import ApproveIn, RejectIn
from sequences import reviews
from sequences.compose import preview_renderer
from sequences.definition import EmailStep
from sequences.deps import Deps
from sequences.errors import Conflict, Invalid, NotFound
from sequences.flow import load_context
from sequences.models import CONTACTS, DRAFTS, DraftStatus

router = APIRouter(prefix="/v1/drafts", tags=["drafts"])
_FIELDS = {"subject": "subject", "preheader": "preheader", "paragraphs": "body"}


@router.get("")
async def list_drafts(
    conn: ReadConnDep,
    _: Reviewer,
    status: Annotated[DraftStatus, Query()] = DraftStatus.pending,
    sequence: Annotated[str | None, Query(max_length=63)] = None,
    step: Annotated[str | None, Query(max_length=63)] = None,
    after: Annotated[str | None, Query(max_length=32, description="Last id of the page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Drafts by status, oldest first (the review queue), filterable by sequence and step."""
    query = select(DRAFTS, CONTACTS.c.email).join(CONTACTS, CONTACTS.c.id == DRAFTS.c.contact_id)
    query = query.where(DRAFTS.c.status == status)
    if sequence:
        query = query.where(DRAFTS.c.sequence_key == sequence)
    if step:
        query = query.where(DRAFTS.c.step_id == step)
    if after:
        mark = (await conn.execute(select(DRAFTS.c.created_at).where(DRAFTS.c.id == after))).first()
        if mark is None:
            raise Invalid("bad_cursor", f"after: no draft '{after}'", [{"path": "after"}])
        query = query.where(
            (DRAFTS.c.created_at > mark.created_at)
            | ((DRAFTS.c.created_at == mark.created_at) & (DRAFTS.c.id > after))
        )
    rows = (
        await conn.execute(query.order_by(DRAFTS.c.created_at, DRAFTS.c.id).limit(limit + 1))
    ).all()
    items = [_summary(row) for row in rows[:limit]]
    return {"drafts": items, "next": items[-1]["id"] if len(rows) > limit else None}


@router.get("/{draft_id}")
async def get_draft(draft_id: str, conn: ReadConnDep, _: Reviewer) -> dict[str, Any]:
    """One draft: the copy, the rendered email, the checks, the fallback, the contact."""
    row = await _row(conn, draft_id)
    request = CopyRequest.model_validate(row.request)
    return {
        **_summary(row),
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


@router.post("/{draft_id}/approve")
async def approve(
    draft_id: str,
    deps: DepsDep,
    principal: Reviewer,
    edits: Annotated[ApproveIn | None, Body()] = None,
) -> dict[str, Any]:
    """Approve a pending draft, as it is or edited; edits must pass the same checks."""
    edits = edits or ApproveIn()
    decision = Decision(
        action="approve",
        subject=edits.subject,
        preheader=edits.preheader,
        body=edits.body,
        note=edits.note,
        by=principal.name,
    )
    async with deps.reader.connect() as conn:
        row = await _row(conn, draft_id)
        await _check_edits(conn, deps, row, decision)
    return await _decide(deps, draft_id, decision)


@router.post("/{draft_id}/reject")
async def reject(
    draft_id: str, body: RejectIn, deps: DepsDep, principal: Reviewer
) -> dict[str, Any]:
    """Reject a pending draft: regenerate it (with a note), send the fallback, or skip."""
    decision = Decision(action=body.action, note=body.note, by=principal.name)
    return await _decide(deps, draft_id, decision)


async def _decide(deps: Deps, draft_id: str, decision: Decision) -> dict[str, Any]:
    now = deps.clock.now()
    async with deps.engine.begin() as conn:
        row = await reviews.decide(conn, draft_id, decision, now)
        if row is None:
            current = await _row(conn, draft_id)
            raise Conflict(
                "draft_not_pending",
                f"draft '{draft_id}' is {current.status}, not pending: it was decided already",
            )
    await deps.waker.wake_at([now])  # after the commit: the worker must see the decision
    return {"id": draft_id, "status": row.status, "decision": row.decision}


async def _check_edits(conn: AsyncConnection, deps: Deps, row: Any, decision: Decision) -> None:
    """Refuse (422, nothing changed) an edit that fails a guardrail, naming field and rule."""
    edited = apply_edits(Draft.model_validate(row.copy), decision)
    if edited is None:
        return
    findings = guardrails.check_copy(edited, CopyRequest.model_validate(row.request))
    ctx = await load_context(conn, row.enrollment_id)
    step = ctx.definition.step(row.step_id) if ctx else None
    if ctx is not None and isinstance(step, EmailStep):
        findings += guardrails.check_preview(preview_renderer(deps, ctx, step)(edited))
    failed = guardrails.failed(findings)
    if failed:
        details = [{"path": _path(f.message), "message": f"{f.rule}: {f.message}"} for f in failed]
        raise Invalid("edit_refused", "the edited draft fails the guardrails", details)


def _path(message: str) -> str:
    for word, field in _FIELDS.items():
        if word in message:
            return field
    return "body"


async def _row(conn: AsyncConnection, draft_id: str) -> Any:
    row = (
        await conn.execute(
            select(DRAFTS, CONTACTS.c.email)
            .join(CONTACTS, CONTACTS.c.id == DRAFTS.c.contact_id)
            .where(DRAFTS.c.id == draft_id)
        )
    ).first()
    if row is None:
        raise NotFound("unknown_draft", f"no draft '{draft_id}'")
    return row


def _summary(row: Any) -> dict[str, Any]:
    copy = row.copy or {}
    failed = [f["rule"] for f in row.review.get("findings", []) if not f.get("ok", True)]
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
        "failed_checks": failed,
        "created_at": _iso(row.created_at),
        "deadline_at": _iso(row.deadline_at),
        "decided_by": row.decided_by,
        "decided_at": _iso(row.decided_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
