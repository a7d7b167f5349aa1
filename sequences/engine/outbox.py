"""Outbox rows: scheduled, claimed atomically, finished under the claim that took them.

A claim is one conditional UPDATE ... RETURNING (with FOR UPDATE SKIP LOCKED on PostgreSQL, which
SQLite lacks and does not need: it has one writer at a time). Every later write about a claimed
row is conditional on its claim token, so a worker whose lease expired cannot act twice.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.store.arrays import insert_many
from sequences.store.db import among
from sequences.store.tables import RUNS, RunPhase, RunState

DRAFTING = (RunPhase.ahead, RunPhase.late)  # rows the drafting lane claims (review.ahead)


@dataclass(frozen=True)
class Claim:
    run_id: int
    token: str
    enrollment_id: str
    step_id: str
    attempts: int
    woken_by: str | None
    # Drafts ahead (sequences.review.ahead): the row's RunPhase (None: never ahead), when the
    # email is due, and when its copy was stored.
    phase: str | None = None
    send_at: datetime | None = None
    drafted_at: datetime | None = None

    @property
    def drafting(self) -> bool:
        """A drafting-ahead claim: write and store the copy, send nothing."""
        return self.phase in DRAFTING


async def claim_due(
    conn: AsyncConnection,
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    drafting: bool = False,
) -> list[Claim]:
    """Claim up to ``limit`` due rows, soonest first: drafting-ahead rows with ``drafting``,
    every other row without, so a slow model never holds up sends and waits."""
    phase = RUNS.c.phase.in_(DRAFTING)
    due = (
        select(RUNS.c.id)
        .where(
            RUNS.c.state == RunState.due,
            RUNS.c.due_at <= now,
            phase if drafting else or_(RUNS.c.phase.is_(None), ~phase),
        )
        .order_by(RUNS.c.due_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    token = secrets.token_hex(8)
    stmt = (
        update(RUNS)
        .where(RUNS.c.id.in_(due.scalar_subquery()), RUNS.c.state == RunState.due)
        .values(
            state=RunState.claimed,
            claim_token=token,
            claimed_until=now + lease,
            attempts=RUNS.c.attempts + 1,
        )
        .returning(
            RUNS.c.id,
            RUNS.c.enrollment_id,
            RUNS.c.step_id,
            RUNS.c.attempts,
            RUNS.c.woken_by,
            RUNS.c.phase,
            RUNS.c.send_at,
            RUNS.c.drafted_at,
        )
    )
    rows = (await conn.execute(stmt)).all()
    return [
        Claim(
            r.id,
            token,
            r.enrollment_id,
            r.step_id,
            r.attempts,
            r.woken_by,
            r.phase,
            r.send_at,
            r.drafted_at,
        )
        for r in rows
    ]


async def finish(conn: AsyncConnection, claim: Claim, state: RunState = RunState.done) -> bool:
    """Close a claimed row; False when the claim was lost (lease expired, row cancelled)."""
    return claim.run_id in await finish_many(conn, [claim], state)


async def release(conn: AsyncConnection, claim: Claim, due_at: datetime, **values: object) -> bool:
    """Give a claimed row back, due again at ``due_at`` (outside the window, a 4xx retry);
    ``values`` change other columns with it."""
    result = await conn.execute(
        update(RUNS)
        .where(_held(claim))
        .values(
            # A deliberate postponement is no failure: ``attempts`` counts lapsed claims only.
            state=RunState.due,
            due_at=due_at,
            claim_token=None,
            claimed_until=None,
            attempts=0,
            **values,
        )
    )
    return result.rowcount == 1


async def hold(conn: AsyncConnection, claim: Claim, until: datetime) -> bool:
    """Park a claimed row while its draft waits for a reviewer. No worker claims a held row;
    a decision (or the review deadline, ``until``) makes it due again."""
    result = await conn.execute(
        update(RUNS)
        .where(_held(claim))
        .values(state=RunState.held, due_at=until, claim_token=None, claimed_until=None, attempts=0)
    )
    return result.rowcount == 1


async def unhold(conn: AsyncConnection, run_ids: list[int], now: datetime) -> list[int]:
    """Held rows due at once (a reviewer decided, or the deadline passed); returns those moved."""
    if not run_ids:
        return []
    rows = await conn.execute(
        update(RUNS)
        .where(among(conn, RUNS.c.id, run_ids), RUNS.c.state == RunState.held)
        .values(state=RunState.due, due_at=now)
        .returning(RUNS.c.id)
    )
    return [r.id for r in rows]


def still_held(
    run_id: ColumnElement[int], tokens: list[str] | BindParameter[Any]
) -> ColumnElement[bool]:
    """True inside a statement while the row ``run_id`` (a column of the statement's table) is
    claimed under one of ``tokens``: a token belongs to one claim, so the claim is ours."""
    return exists(
        select(RUNS.c.id).where(
            RUNS.c.id == run_id,
            RUNS.c.state == RunState.claimed,
            RUNS.c.claim_token.in_(tokens),
        )
    )


def _held(claim: Claim) -> ColumnElement[bool]:
    return and_(
        RUNS.c.id == claim.run_id,
        RUNS.c.state == RunState.claimed,
        RUNS.c.claim_token == claim.token,
    )


async def expire_claims(conn: AsyncConnection, now: datetime) -> int:
    """Claims whose lease ran out (a killed worker) become due again. A row locked meanwhile is
    being renewed or finished by its worker: it is skipped, never waited for."""
    lapsed = select(RUNS.c.id).where(RUNS.c.state == RunState.claimed, RUNS.c.claimed_until < now)
    if conn.dialect.name == "postgresql":
        lapsed = lapsed.order_by(RUNS.c.id).with_for_update(skip_locked=True)
    ids = [r.id for r in await conn.execute(lapsed)]
    if not ids:
        return 0
    result = await conn.execute(
        update(RUNS)
        .where(
            among(conn, RUNS.c.id, ids),
            RUNS.c.state == RunState.claimed,
            RUNS.c.claimed_until < now,
        )
        .values(state=RunState.due, claim_token=None, claimed_until=None)
    )
    return result.rowcount


async def renew(conn: AsyncConnection, claims: list[Claim], until: datetime) -> int:
    """The heartbeat of a running batch: push the lease of every row it still holds to
    ``until``. Rows locked by another transaction are skipped (whoever holds the lock is
    finishing or extending them), so a heartbeat never waits and never deadlocks."""
    ids = sorted(c.run_id for c in claims)
    tokens = sorted({c.token for c in claims})
    if not ids:
        return 0
    held = select(RUNS.c.id).where(
        among(conn, RUNS.c.id, ids),
        RUNS.c.state == RunState.claimed,
        among(conn, RUNS.c.claim_token, tokens),
    )
    if conn.dialect.name == "postgresql":
        held = held.order_by(RUNS.c.id).with_for_update(skip_locked=True)
    locked = [r.id for r in await conn.execute(held)]
    if not locked:
        return 0
    result = await conn.execute(
        update(RUNS).where(among(conn, RUNS.c.id, locked)).values(claimed_until=until)
    )
    return result.rowcount


async def cancel_pending(conn: AsyncConnection, enrollment_ids: list[str]) -> None:
    """Exit criteria act at once: nothing pending for these enrollments may run."""
    if enrollment_ids:
        await conn.execute(
            update(RUNS)
            .where(
                among(conn, RUNS.c.enrollment_id, enrollment_ids),
                RUNS.c.state.in_([RunState.due, RunState.claimed, RunState.held, RunState.ready]),
            )
            .values(state=RunState.cancelled, claim_token=None, claimed_until=None)
        )


async def overdue(conn: AsyncConnection, now: datetime, limit: int = 1000) -> list[datetime]:
    rows = await conn.execute(
        select(RUNS.c.due_at)
        .where(RUNS.c.state == RunState.due, RUNS.c.due_at <= now)
        .order_by(RUNS.c.due_at)
        .limit(limit)
    )
    return [r.due_at for r in rows]


async def wake_waits(
    conn: AsyncConnection, waits: dict[str, tuple[str, str]], now: datetime
) -> list[str]:
    """Make pending wait rows due at once. ``waits``: enrollment -> (wait step, event type).
    Returns the enrollments woken.

    A row already woken is left alone, and on PostgreSQL the rows are locked in id order with
    SKIP LOCKED: a row another transaction holds is being woken or run already, and waiting
    for it would let two event batches deadlock.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for enrollment_id, pair in waits.items():
        groups.setdefault(pair, []).append(enrollment_id)
    woken: list[str] = []
    for (step_id, event_type), enrollment_ids in sorted(groups.items()):
        waiting = select(RUNS.c.id).where(
            among(conn, RUNS.c.enrollment_id, sorted(enrollment_ids)),
            RUNS.c.step_id == step_id,
            RUNS.c.state == RunState.due,
            RUNS.c.woken_by.is_(None),
        )
        if conn.dialect.name == "postgresql":
            waiting = waiting.order_by(RUNS.c.id).with_for_update(skip_locked=True)
        ids = [r.id for r in await conn.execute(waiting)]
        if not ids:
            continue
        rows = await conn.execute(
            update(RUNS)
            .where(among(conn, RUNS.c.id, ids), RUNS.c.state == RunState.due)
            .values(due_at=now, woken_by=event_type)
            .returning(RUNS.c.enrollment_id)
        )
        woken += [r.enrollment_id for r in rows]
    return woken


async def extend(conn: AsyncConnection, claim: Claim, until: datetime) -> bool:
    """Renew the lease before a side effect; False means the claim is no longer ours."""
    return claim.run_id in await extend_many(conn, [claim], until)


async def schedule_many(
    conn: AsyncConnection,
    rows: list[tuple[str, str, datetime]],
    now: datetime,
    woken_by: list[str | None] | None = None,
) -> None:
    """Insert (enrollment, step, due) rows in one statement; ``woken_by`` names, per row, the
    event that already ended a wait (None for most)."""
    if rows:
        woken = woken_by or [None] * len(rows)
        values = [
            {
                "enrollment_id": e,
                "step_id": s,
                "due_at": d,
                "state": RunState.due,
                "attempts": 0,
                "created_at": now,
                "woken_by": w,
            }
            for (e, s, d), w in zip(rows, woken, strict=True)
        ]
        await insert_many(conn, RUNS, values)


async def finish_many(
    conn: AsyncConnection, claims: list[Claim], state: RunState = RunState.done
) -> set[int]:
    """Close many claimed rows; returns the ids still held (a lapsed claim is left alone)."""
    return await update_held(conn, claims, state=state, claim_token=None, claimed_until=None)


async def extend_many(conn: AsyncConnection, claims: list[Claim], until: datetime) -> set[int]:
    """Renew many leases before side effects; returns the ids still ours."""
    return await update_held(conn, claims, claimed_until=until)


async def update_held(conn: AsyncConnection, claims: list[Claim], **values: object) -> set[int]:
    """Update the rows these claims still hold, one statement per claim token; returns their ids."""
    by_token: dict[str, list[int]] = {}
    for claim in claims:
        by_token.setdefault(claim.token, []).append(claim.run_id)
    held: set[int] = set()
    for token, ids in by_token.items():
        rows = await conn.execute(
            update(RUNS)
            .where(
                among(conn, RUNS.c.id, ids),
                RUNS.c.state == RunState.claimed,
                RUNS.c.claim_token == token,
            )
            .values(**values)
            .returning(RUNS.c.id)
        )
        held.update(r.id for r in rows)
    return held
