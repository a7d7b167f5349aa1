"""The review queue: pending drafts oldest first, one draft at a time, approve / edit /
reject, and bulk approval of a step a reviewer has come to trust."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.copy import Decision
from api import reviewing
from api.console.framing import framed
from api.console.sessions import Session
from api.console.web import PostSessionDep, SessionDep, ago, now, page, redirect
from api.deps import DepsDep, ReadConnDep
from sequences.deps import Deps
from sequences.errors import Invalid
from sequences.store.tables import DRAFTS, DraftStatus

router = APIRouter(prefix="/console", include_in_schema=False)

Slug = Annotated[str | None, Query(max_length=63)]
PAGE_SIZE = 50
NOTICES = {
    "approved": "Approved. The email goes out on the worker's next pass.",
    "regenerate": "Rejected: the agent is writing a new draft, which will join the queue.",
    "fallback": "Rejected: the fallback copy will be sent instead.",
    "skip": "Rejected: the step is skipped for this contact.",
}


@router.get("/queue")
async def queue(
    request: Request,
    conn: ReadConnDep,
    session: SessionDep,
    sequence: Slug = None,
    step: Slug = None,
    after: Annotated[str | None, Query(max_length=32)] = None,
    notice: Annotated[str | None, Query(max_length=32)] = None,
    approved: Annotated[int | None, Query(ge=0)] = None,
    left: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    where = reviewing.Filter.queue(sequence, step)
    shown = await reviewing.page(conn, where, after=after, limit=PAGE_SIZE)
    moment = now(request)
    return page(
        request,
        "queue.html",
        session,
        drafts=[
            {**reviewing.summary(row), "waiting": ago(row.created_at, moment)} for row in shown.rows
        ],
        next_after=shown.next,
        total=await reviewing.count(conn, where),
        groups=await _groups(conn),
        where=where,
        notice=_notice(notice, approved, left),
    )


def _notice(code: str | None, approved: int | None, left: int | None) -> str | None:
    if code == "bulk" and approved is not None:
        kept = f" {left} with failing checks stay in the queue." if left else ""
        return f"Approved {approved} drafts.{kept}"
    return NOTICES.get(code or "")


async def _groups(conn: AsyncConnection) -> list[Any]:
    """Pending drafts per sequence and step: the filter's choices, with their counts."""
    rows = await conn.execute(
        select(DRAFTS.c.sequence_key, DRAFTS.c.step_id, func.count().label("n"))
        .where(DRAFTS.c.status == DraftStatus.pending)
        .group_by(DRAFTS.c.sequence_key, DRAFTS.c.step_id)
        .order_by(DRAFTS.c.sequence_key, DRAFTS.c.step_id)
    )
    return list(rows)


@router.get("/drafts/{draft_id}")
async def draft_page(
    draft_id: str,
    request: Request,
    conn: ReadConnDep,
    session: SessionDep,
    sequence: Slug = None,
    step: Slug = None,
    notice: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    row = await reviewing.load(conn, draft_id)
    where = reviewing.Filter.queue(sequence, step)
    return page(
        request,
        "draft.html",
        session,
        **await _draft_context(conn, row, where),
        notice=NOTICES.get(notice or ""),
    )


async def _draft_context(
    conn: AsyncConnection, row: Any, where: reviewing.Filter
) -> dict[str, Any]:
    before, after = await _neighbours(conn, row, where)
    return {
        "draft": reviewing.detail(row),
        "where": where,
        "previous_id": before,
        "next_id": after,
        "position": await _position(conn, row, where),
        "total": await reviewing.count(conn, where),
        "form": {
            "subject": row.copy.get("subject", ""),
            "preheader": row.copy.get("preheader", ""),
            "body": "\n\n".join(row.copy.get("paragraphs", [])),
        },
        "errors": [],
    }


async def _neighbours(
    conn: AsyncConnection, row: Any, where: reviewing.Filter
) -> tuple[str | None, str | None]:
    """The pending drafts just before and just after this one in the (filtered) queue."""
    base = where.apply(select(DRAFTS.c.id))
    before = await conn.execute(
        base.where(reviewing.earlier_than(row))
        .order_by(DRAFTS.c.created_at.desc(), DRAFTS.c.id.desc())
        .limit(1)
    )
    after = await conn.execute(
        base.where(reviewing.later_than(row)).order_by(DRAFTS.c.created_at, DRAFTS.c.id).limit(1)
    )
    return before.scalar_one_or_none(), after.scalar_one_or_none()


async def _position(conn: AsyncConnection, row: Any, where: reviewing.Filter) -> int:
    ahead = await conn.execute(
        where.apply(select(func.count()).select_from(DRAFTS)).where(reviewing.earlier_than(row))
    )
    return int(ahead.scalar_one()) + 1


@router.get("/drafts/{draft_id}/preview")
async def draft_preview(draft_id: str, conn: ReadConnDep, _: SessionDep) -> HTMLResponse:
    """The email exactly as it would be sent, for the sandboxed iframe."""
    row = await reviewing.load(conn, draft_id)
    return framed(row.preview_html)


@router.post("/drafts/{draft_id}/approve")
async def approve(
    draft_id: str,
    request: Request,
    deps: DepsDep,
    session: PostSessionDep,
    sequence: Annotated[str, Form(max_length=63)] = "",
    step: Annotated[str, Form(max_length=63)] = "",
    subject: Annotated[str | None, Form(max_length=998)] = None,
    preheader: Annotated[str | None, Form(max_length=500)] = None,
    body: Annotated[str | None, Form(max_length=20_000)] = None,
    note: Annotated[str | None, Form(max_length=1000)] = None,
) -> Response:
    where = reviewing.Filter.queue(sequence, step)
    decision = Decision(
        action="approve",
        subject=subject,
        preheader=preheader,
        body=body,
        note=note or None,
        by=session.principal.name,
    )
    following = await _following(deps, draft_id, where)
    try:
        await reviewing.approve(deps, draft_id, decision)
    except Invalid as refused:
        return await _refused(request, deps, session, draft_id, where, decision, refused)
    return _onward(following, where, "approved")


async def _following(deps: Deps, draft_id: str, where: reviewing.Filter) -> str | None:
    async with deps.reader.connect() as conn:
        row = await reviewing.load(conn, draft_id)
        return (await _neighbours(conn, row, where))[1]


def _onward(following: str | None, where: reviewing.Filter, notice: str) -> Response:
    """After a decision: the next draft in the same queue, or the queue when none is left."""
    if following:
        return redirect(
            f"/console/drafts/{following}", sequence=where.sequence, step=where.step, notice=notice
        )
    return redirect("/console/queue", sequence=where.sequence, step=where.step, notice=notice)


async def _refused(
    request: Request,
    deps: Deps,
    session: Session,
    draft_id: str,
    where: reviewing.Filter,
    decision: Decision,
    refused: Invalid,
) -> HTMLResponse:
    """The draft page again, with the reviewer's edits kept and each failed rule named."""
    async with deps.reader.connect() as conn:
        row = await reviewing.load(conn, draft_id)
        context = await _draft_context(conn, row, where)
    context["form"] = {
        "subject": decision.subject or "",
        "preheader": decision.preheader or "",
        "body": decision.body or "",
    }
    context["errors"] = refused.details or [{"path": "body", "message": refused.message}]
    context["editing"] = True
    return page(request, "draft.html", session, status_code=422, **context)


@router.post("/drafts/{draft_id}/reject")
async def reject(
    draft_id: str,
    deps: DepsDep,
    session: PostSessionDep,
    action: Annotated[Literal["regenerate", "fallback", "skip"], Form()],
    sequence: Annotated[str, Form(max_length=63)] = "",
    step: Annotated[str, Form(max_length=63)] = "",
    note: Annotated[str | None, Form(max_length=1000)] = None,
) -> Response:
    where = reviewing.Filter.queue(sequence, step)
    following = await _following(deps, draft_id, where)
    decision = Decision(action=action, note=note or None, by=session.principal.name)
    await reviewing.decide(deps, draft_id, decision)
    return _onward(following, where, action)


@router.post("/queue/approve-step")
async def approve_step(
    deps: DepsDep,
    session: PostSessionDep,
    sequence: Annotated[str, Form(min_length=1, max_length=63)],
    step: Annotated[str, Form(min_length=1, max_length=63)],
) -> Response:
    """Approve every pending draft of one step whose checks all pass; the rest stay queued."""
    outcome = await reviewing.approve_step(deps, sequence, step, by=session.principal.name)
    return redirect(
        "/console/queue",
        sequence=sequence,
        step=step,
        notice="bulk",
        approved=str(outcome.approved),
        left=str(outcome.left),
    )
