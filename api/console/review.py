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
from api.console.compare import copy_text, read_pick, word_diff
from api.console.framing import framed
from api.console.sessions import Session
from api.console.web import PostSessionDep, SessionDep, now, page, redirect
from api.deps import DepsDep, ReadConnDep
from sequences.definitions import registry
from sequences.deps import Deps
from sequences.errors import Conflict, Invalid
from sequences.store.tables import DRAFTS, ENROLLMENTS, DraftStatus

router = APIRouter(prefix="/console", include_in_schema=False)

Slug = Annotated[str | None, Query(max_length=63)]
PAGE_SIZE = 50
NOTICES = {
    "approved": "Approved. The email goes out on the worker's next pass.",
    "regenerate": "Rejected: the agent is writing a new draft, which will join the queue.",
    "fallback": "Rejected: the fallback copy will be sent instead.",
    "skip": "Rejected: the step is skipped for this contact.",
    "lost": "Someone else decided this draft first: your decision was not recorded.",
}


@router.get("/queue")
async def queue(
    request: Request,
    conn: ReadConnDep,
    session: SessionDep,
    sequence: Slug = None,
    step: Slug = None,
    after: Annotated[str | None, Query(max_length=32)] = None,
    sort: Literal["age", "deadline", "due"] = "age",
    skip: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    notice: Annotated[str | None, Query(max_length=32)] = None,
    approved: Annotated[int | None, Query(ge=0)] = None,
    left: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    where = reviewing.Filter.queue(sequence, step)
    if sort in ("deadline", "due"):
        shown = await reviewing.by_deadline(
            conn, where, skip=skip, limit=PAGE_SIZE, due=sort == "due"
        )
    else:
        shown = await reviewing.page(conn, where, after=after, limit=PAGE_SIZE)
    moment, me = now(request), session.principal.name
    return page(
        request,
        "queue.html",
        session,
        drafts=[
            {
                **reviewing.summary(row),
                "snippet": _snippet(row.copy),
                "claim": reviewing.held_by_other(row, me, moment),
            }
            for row in shown.rows
        ],
        next_after=shown.next,
        sort=sort,
        total=await reviewing.count(conn, where),
        groups=await _groups(conn),
        where=where,
        notice=_notice(notice, approved, left),
    )


def _snippet(copy: dict[str, Any], limit: int = 110) -> str:
    """What an inbox shows under the subject: the preheader, else the body's opening."""
    text = copy.get("preheader") or " ".join(copy.get("paragraphs", []))
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _notice(code: str | None, approved: int | None, left: int | None) -> str | None:
    if code == "bulk" and approved is not None:
        kept = f" {left} with failing checks stay in the queue." if left else ""
        return f"Approved {approved} draft{'' if approved == 1 else 's'}.{kept}"
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
    deps: DepsDep,
    session: SessionDep,
    sequence: Slug = None,
    step: Slug = None,
    notice: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    row = await reviewing.load(conn, draft_id)
    where = reviewing.Filter.queue(sequence, step)
    context = await _draft_context(conn, row, where)
    if row.status == DraftStatus.pending:
        # Opening a draft marks it as being read by this reviewer, unless someone else is.
        context["claim"] = await reviewing.claim(deps, draft_id, session.principal.name)
    return page(request, "draft.html", session, **context, notice=NOTICES.get(notice or ""))


async def _draft_context(
    conn: AsyncConnection, row: Any, where: reviewing.Filter
) -> dict[str, Any]:
    before, after = await _neighbours(conn, row, where)
    draft = reviewing.detail(row)
    return {
        "draft": draft,
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
        "sender": await _sender(conn, row),
        "timezone": row.timezone,
        # The contact as stored (the request may hold fields back from the model), A to Z.
        "attributes": sorted((row.attributes or {}).items()),
        "held": row.request.get("held_fields", []),
        "changes": await _changes(conn, row, draft),
        "pick": read_pick(draft["choice_reason"]),
    }


async def _sender(conn: AsyncConnection, row: Any) -> Any:
    """From and Reply-To as the enrollment's version of the sequence sends them."""
    version_id = (
        await conn.execute(
            select(ENROLLMENTS.c.version_id).where(ENROLLMENTS.c.id == row.enrollment_id)
        )
    ).scalar_one()
    return (await registry.load_version(conn, version_id)).sender


async def _changes(conn: AsyncConnection, row: Any, draft: dict[str, Any]) -> dict[str, Any] | None:
    """The draft against the revision it replaced, or else against the fallback copy."""
    if row.revision > 1:
        earlier = (
            await conn.execute(
                select(DRAFTS.c.copy).where(
                    DRAFTS.c.step_run_id == row.step_run_id,
                    DRAFTS.c.revision == row.revision - 1,
                )
            )
        ).scalar_one_or_none()
        if earlier is not None:
            against = f"revision {row.revision - 1}"
            return {"against": against, "diff": word_diff(copy_text(earlier), copy_text(row.copy))}
    if draft["fallback"]:
        diff = word_diff(copy_text(draft["fallback"]), copy_text(row.copy))
        return {"against": "the fallback copy", "diff": diff}
    return None


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
    except Conflict:
        return _lost(draft_id, where)
    return _onward(following, where, "approved")


def _lost(draft_id: str, where: reviewing.Filter) -> Response:
    """Someone decided first: the draft's page says who, and offers the next in the queue."""
    return redirect(
        f"/console/drafts/{draft_id}", sequence=where.sequence, step=where.step, notice="lost"
    )


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
    try:
        await reviewing.decide(deps, draft_id, decision)
    except Conflict:
        return _lost(draft_id, where)
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


@router.post("/queue/approve-selected")
async def approve_selected(
    deps: DepsDep,
    session: PostSessionDep,
    draft: Annotated[list[str], Form(max_length=PAGE_SIZE)] = [],  # noqa: B006  (FastAPI's form list)
    sequence: Annotated[str, Form(max_length=63)] = "",
    step: Annotated[str, Form(max_length=63)] = "",
) -> Response:
    """Approve the drafts ticked in the queue, as they are; any with a failed check stays."""
    if not draft:
        raise Invalid("nothing_selected", "draft: tick at least one draft to approve")
    if any(len(d) > 32 for d in draft):
        raise Invalid("bad_draft", "draft: not a draft id")
    outcome = await reviewing.approve_selected(deps, draft, by=session.principal.name)
    return redirect(
        "/console/queue",
        sequence=sequence,
        step=step,
        notice="bulk",
        approved=str(outcome.approved),
        left=str(outcome.left),
    )
