"""Outbox rows of emails drafted ahead (sequences.review.ahead): scheduled when the wait before
the email begins, parked ``ready`` once their copy is stored, made the email's own row when the
flow reaches the step, and sent back to drafting when new engagement makes the copy stale.
Every write is conditional on the row's phase, state or claim, as in sequences.engine.outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.engine import outbox
from sequences.engine.outbox import Claim
from sequences.store.db import among
from sequences.store.tables import DRAFTS, RUNS, RunPhase, RunState


async def park_drafted(conn: AsyncConnection, claims: list[Claim], now: datetime) -> set[int]:
    """Drafting-ahead rows whose copy is stored: ``ready`` until the flow reaches the step, or
    due at once when it already has (the row's phase says which). Returns the ids still ours."""
    reached = RUNS.c.phase != RunPhase.ahead
    return await outbox.update_held(
        conn,
        claims,
        state=case((reached, RunState.due), else_=RunState.ready),
        due_at=case((reached, now), else_=RUNS.c.send_at),
        phase=case((reached, RunPhase.due), else_=RunPhase.ahead),
        drafted_at=now,
        claim_token=None,
        claimed_until=None,
        attempts=0,
    )


async def reach_drafted(
    conn: AsyncConnection, pairs: list[tuple[str, str]], now: datetime
) -> set[tuple[str, str]]:
    """The flow reached these (enrollment, email step) pairs: a row drafting or drafted ahead
    for one becomes the email's own row, due now (a row held for review or being drafted stays
    so, and follows when it is done). Returns the pairs that had such a row."""
    by_step: dict[str, list[str]] = {}
    for enrollment_id, step_id in pairs:
        by_step.setdefault(step_id, []).append(enrollment_id)
    found: set[tuple[str, str]] = set()
    waiting = (RunState.due, RunState.ready)
    for step_id, ids in sorted(by_step.items()):
        rows = await conn.execute(
            update(RUNS)
            .where(
                among(conn, RUNS.c.enrollment_id, sorted(ids)),
                RUNS.c.step_id == step_id,
                RUNS.c.phase == RunPhase.ahead,
                RUNS.c.state.in_([*waiting, RunState.held, RunState.claimed]),
            )
            .values(
                phase=RunPhase.due,
                send_at=now,
                state=case((RUNS.c.state == RunState.ready, RunState.due), else_=RUNS.c.state),
                due_at=case((RUNS.c.state.in_(waiting), now), else_=RUNS.c.due_at),
            )
            .returning(RUNS.c.enrollment_id)
        )
        found.update((r.enrollment_id, step_id) for r in rows)
    return found


async def redraft(
    conn: AsyncConnection, enrollment_ids: list[str], now: datetime
) -> list[tuple[str, str]]:
    """New engagement came in: copy drafted ahead and not yet reached is written again. A draft
    a reviewer approved stays as approved. Returns the (enrollment, step) pairs redrafting."""
    if not enrollment_ids:
        return []
    rows = await conn.execute(
        update(RUNS)
        .where(
            among(conn, RUNS.c.enrollment_id, sorted(set(enrollment_ids))),
            RUNS.c.phase == RunPhase.ahead,
            RUNS.c.state == RunState.ready,
            RUNS.c.send_at > now,
            ~exists(select(DRAFTS.c.id).where(DRAFTS.c.step_run_id == RUNS.c.id)),
        )
        .values(state=RunState.due, due_at=now, drafted_at=None)
        .returning(RUNS.c.enrollment_id, RUNS.c.step_id)
    )
    return [(r.enrollment_id, r.step_id) for r in rows]


async def schedule_ahead(
    conn: AsyncConnection, rows: list[tuple[str, str, datetime, datetime]], now: datetime
) -> None:
    """Insert (enrollment, email step, draft at, send at) drafting-ahead rows."""
    if rows:
        await conn.execute(
            insert(RUNS),
            [
                {
                    "enrollment_id": e,
                    "step_id": s,
                    "due_at": draft_at,
                    "state": RunState.due,
                    "attempts": 0,
                    "created_at": now,
                    "woken_by": None,
                    "phase": RunPhase.ahead,
                    "send_at": send_at,
                }
                for e, s, draft_at, send_at in rows
            ],
        )
