"""Sequences, contacts and enrollments as content-ops people read them: the definition as a
graph, funnels and the bandit's split per step, and each enrollment's timeline and emails."""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.console import funnels
from api.console.framing import framed
from api.console.graph import DONE, layout
from api.console.web import SessionDep, page
from api.deps import DepsDep, ReadConnDep
from api.routes.contacts import load_contact
from api.routes.enrollments import describe
from sequences.definitions import registry
from sequences.errors import NotFound
from sequences.review import ahead
from sequences.review.costs import step_costs
from sequences.signals import counts, stepstats
from sequences.store.tables import (
    CONTACTS,
    ENROLLMENTS,
    MESSAGES,
    MODEL_CALLS,
    SEQUENCES,
    VERSIONS,
)

router = APIRouter(prefix="/console", include_in_schema=False)
RECENT = 25


@router.get("/sequences")
async def sequences_page(request: Request, conn: ReadConnDep, session: SessionDep) -> HTMLResponse:
    rows = (await conn.execute(select(SEQUENCES).order_by(SEQUENCES.c.key))).all()
    return page(
        request,
        "sequences.html",
        session,
        sequences=rows,
        enrollments=await counts.enrollments(conn),
        emails={k: counts.sequence_total(v) for k, v in (await counts.emails(conn)).items()},
        pending=await funnels.pending_drafts(conn),
    )


@router.get("/sequences/{key}")
async def sequence_page(
    key: str, request: Request, conn: ReadConnDep, deps: DepsDep, session: SessionDep
) -> HTMLResponse:
    pinned = await registry.current(conn, key)
    if pinned is None:
        raise NotFound("unknown_sequence", f"no sequence '{key}'")
    defn = pinned.definition
    stats = await stepstats.arm_stats(conn, key)
    found = await funnels.funnels(conn, defn, pinned.sequence_id)
    at_step, ended = await _positions(conn, pinned.sequence_id)
    recent = await _recent(conn, pinned.sequence_id)
    return page(
        request,
        "sequence.html",
        session,
        key=key,
        defn=defn,
        version=pinned.version,
        versions=await _versions(conn, pinned.sequence_id),
        graph=layout(defn),
        funnels=found,
        sent_by_step={f.step: f.total.sent for f in found},
        at_step=at_step,
        ended=ended,
        models=await _models(conn, key),
        splits=funnels.splits(defn, stats),
        costs=await step_costs(conn, key, pinned.sequence_id, deps.settings.agent_model),
        drafting=await ahead.step_report(conn, pinned.sequence_id, defn, deps.settings.draft_ahead),
        counts=(await counts.enrollments(conn, pinned.sequence_id)).get(
            pinned.sequence_id, counts.Enrollments()
        ),
        recent=recent,
        outcomes=await _outcomes(conn, recent),
    )


async def _positions(
    conn: AsyncConnection, sequence_id: int
) -> tuple[dict[str, int], dict[str, int]]:
    """Active enrollments per step they are at, and ended ones per exit step (the end of the
    sequence under the graph's "completed" node)."""
    rows = await conn.execute(
        select(ENROLLMENTS.c.status, ENROLLMENTS.c.position, func.count().label("n"))
        .where(
            ENROLLMENTS.c.sequence_id == sequence_id,
            ENROLLMENTS.c.status.in_(["active", "exited", "completed"]),
        )
        .group_by(ENROLLMENTS.c.status, ENROLLMENTS.c.position)
    )
    at_step: dict[str, int] = {}
    ended: dict[str, int] = {}
    for row in rows:
        if row.status == "active" and row.position:
            at_step[row.position] = at_step.get(row.position, 0) + row.n
        elif row.status == "completed":
            ended[DONE] = ended.get(DONE, 0) + row.n
        elif row.position:  # exited: counted on the graph only where the node is an exit step
            ended[row.position] = ended.get(row.position, 0) + row.n
    return at_step, ended


async def _models(conn: AsyncConnection, key: str) -> dict[str, int]:
    """The models whose calls the cost table counts (not the one configured now), and how
    many calls each made."""
    rows = await conn.execute(
        select(MODEL_CALLS.c.model, func.count().label("n"))
        .where(MODEL_CALLS.c.sequence_key == key)
        .group_by(MODEL_CALLS.c.model)
        .order_by(func.count().desc())
    )
    return {row.model: row.n for row in rows}


async def _versions(conn: AsyncConnection, sequence_id: int) -> list[Any]:
    rows = await conn.execute(
        select(VERSIONS.c.version, VERSIONS.c.created_at)
        .where(VERSIONS.c.sequence_id == sequence_id)
        .order_by(VERSIONS.c.version.desc())
    )
    return list(rows)


async def _recent(conn: AsyncConnection, sequence_id: int) -> list[Any]:
    rows = await conn.execute(
        select(
            ENROLLMENTS.c.id,
            ENROLLMENTS.c.status,
            ENROLLMENTS.c.version_id,
            ENROLLMENTS.c.position,
            ENROLLMENTS.c.created_at,
            CONTACTS.c.email,
        )
        .join(CONTACTS, CONTACTS.c.id == ENROLLMENTS.c.contact_id)
        .where(ENROLLMENTS.c.sequence_id == sequence_id)
        .order_by(ENROLLMENTS.c.created_at.desc())
        .limit(RECENT)
    )
    return list(rows)


@router.get("/contacts")
async def contacts_page(
    request: Request,
    conn: ReadConnDep,
    session: SessionDep,
    q: Annotated[str, Query(max_length=320)] = "",
) -> HTMLResponse:
    query = select(CONTACTS.c.id, CONTACTS.c.email, CONTACTS.c.created_at, CONTACTS.c.attributes)
    needle = q.strip().lower()
    if needle:
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(CONTACTS.c.email_key.like(f"%{escaped}%", escape="\\"))
    rows = await conn.execute(query.order_by(CONTACTS.c.id.desc()).limit(50))
    return page(request, "contacts.html", session, contacts=list(rows), q=q)


@router.get("/contacts/{contact_id}")
async def contact_page(
    contact_id: int, request: Request, conn: ReadConnDep, deps: DepsDep, session: SessionDep
) -> HTMLResponse:
    view = await load_contact(conn, deps, contact_id)
    if view is None:
        raise NotFound("unknown_contact", f"no contact {contact_id}")
    return page(
        request,
        "contact.html",
        session,
        contact=view.row,
        standing=view.standing,
        enrollments=view.enrollments[::-1],  # newest first
        outcomes=await _outcomes(conn, view.enrollments),
    )


async def _outcomes(conn: AsyncConnection, rows: list[Any]) -> dict[str, str]:
    """Each enrollment's outcome as the counts name it (an exit step reached is completed)."""
    return {e.id: await counts.outcome_of(conn, e.status, e.version_id, e.position) for e in rows}


@router.get("/enrollments/{enrollment_id}")
async def enrollment_page(
    enrollment_id: str,
    request: Request,
    conn: ReadConnDep,
    deps: DepsDep,
    session: SessionDep,
    message: Annotated[str | None, Query(max_length=32)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    enrollment = await describe(conn, deps, enrollment_id)
    contact = (
        await conn.execute(
            select(CONTACTS)
            .join(ENROLLMENTS, ENROLLMENTS.c.contact_id == CONTACTS.c.id)
            .where(ENROLLMENTS.c.id == enrollment_id)
        )
    ).first()
    messages = list(
        await conn.execute(
            select(MESSAGES)
            .where(MESSAGES.c.enrollment_id == enrollment_id)
            .order_by(MESSAGES.c.created_at)
        )
    )
    shown = next((m for m in messages if m.id == message), messages[-1] if messages else None)
    timeline = list(reversed(enrollment["timeline"]))
    version_id = (
        await conn.execute(
            select(ENROLLMENTS.c.version_id).where(ENROLLMENTS.c.id == enrollment_id)
        )
    ).scalar_one()
    return page(
        request,
        "enrollment.html",
        session,
        enrollment=enrollment,
        contact=contact,
        messages=messages,
        shown=shown,
        entries=[_entry(e) for e in timeline if kind in (None, "", e["kind"])],
        kinds=Counter(str(e["kind"]) for e in timeline),
        kind=kind or "",
        outcome=await counts.outcome_of(
            conn, enrollment["status"], version_id, enrollment.get("current_step")
        ),
    )


_LEAD = ("reason", "rationale", "type", "note", "reply")
_QUIET = {"at", "kind", "step", "choice", "message", "draft", "wake_at", "until"}


def _entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A timeline entry as one line to read and a few facts beside it."""
    lead = next((str(entry[k]) for k in _LEAD if entry.get(k)), "")
    choice = entry.get("choice")
    if isinstance(choice, dict) and choice.get("reason"):
        lead = lead or str(choice["reason"])
    facts = {
        k: _readable(v)
        for k, v in entry.items()
        if k not in _QUIET and k not in _LEAD and isinstance(v, str | int | float | bool)
    }
    if isinstance(entry.get("wake_at"), str):
        facts["wakes"] = _readable(entry["wake_at"])
    until = entry.get("until")
    if until:
        facts["until"] = " / ".join(until) if isinstance(until, list) else until
    return {**entry, "lead": lead, "facts": facts, "choice_detail": choice}


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})[0-9:.]*(\+00:00|Z)$")


def _readable(value: object) -> object:
    """An ISO timestamp as ``2026-11-13 04:44 UTC``; anything else as it is."""
    if isinstance(value, str) and (match := _ISO.match(value)):
        return f"{match.group(1)} {match.group(2)} UTC"
    return value


@router.get("/messages/{message_pk}/html")
async def message_html(message_pk: str, conn: ReadConnDep, _: SessionDep) -> HTMLResponse:
    """An email as it was sent, for the sandboxed iframe."""
    html = (
        await conn.execute(select(MESSAGES.c.html_body).where(MESSAGES.c.id == message_pk))
    ).scalar_one_or_none()
    if html is None:
        raise NotFound("unknown_message", f"no message '{message_pk}'")
    return framed(html)
