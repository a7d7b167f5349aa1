"""Drafts waiting for review: list, read, approve (optionally edited), reject."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query

from agents.copy import Decision
from api import reviewing
from api.deps import DepsDep, ReadConnDep, Reviewer
from api.schemas import ApproveIn, RejectIn
from sequences.errors import Invalid
from sequences.store.tables import DraftStatus

router = APIRouter(prefix="/v1/drafts", tags=["drafts"])


@router.get("")
async def list_drafts(
    conn: ReadConnDep,
    _: Reviewer,
    status: Annotated[DraftStatus, Query()] = DraftStatus.pending,
    sequence: Annotated[str | None, Query(max_length=63)] = None,
    step: Annotated[str | None, Query(max_length=63)] = None,
    after: Annotated[
        str | None, Query(max_length=32, description="The previous page's `next`.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    order: Annotated[
        Literal["queue", "due"],
        Query(description="queue: oldest first; due: the email due soonest first."),
    ] = "queue",
) -> dict[str, Any]:
    """Drafts by status, oldest first (the review queue) or soonest due first, filterable by
    sequence and step."""
    where = reviewing.Filter(status, sequence, step)
    if order == "due":
        if after is not None and not after.isdigit():
            raise Invalid(
                "bad_cursor",
                "after: with order=due, pass the previous page's next (a number)",
                [{"path": "after"}],
            )
        skip = int(after or 0)
        page = await reviewing.by_deadline(conn, where, skip=skip, limit=limit, due=True)
    else:
        page = await reviewing.page(conn, where, after=after, limit=limit)
    return {"drafts": [reviewing.summary(row) for row in page.rows], "next": page.next}


@router.get("/{draft_id}")
async def get_draft(draft_id: str, conn: ReadConnDep, _: Reviewer) -> dict[str, Any]:
    """One draft: the copy, the rendered email, the checks, the fallback, the contact."""
    return reviewing.detail(await reviewing.load(conn, draft_id))


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
    return await reviewing.approve(deps, draft_id, decision)


@router.post("/{draft_id}/reject")
async def reject(
    draft_id: str, body: RejectIn, deps: DepsDep, principal: Reviewer
) -> dict[str, Any]:
    """Reject a pending draft: regenerate it (with a note), send the fallback, or skip."""
    decision = Decision(action=body.action, note=body.note, by=principal.name)
    return await reviewing.decide(deps, draft_id, decision)
