"""When a send may go out: the recipient's send window and the per-contact frequency cap."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.definitions.schedule import frequency_cap_release, next_allowed, window_from_spec
from sequences.deps import Deps
from sequences.engine.flow import RunContext
from sequences.store.db import lock_rows
from sequences.store.tables import CONTACTS, MESSAGES, MessageState

# Every message that went out, or may have, counts against the cap.
COUNTED = (MessageState.sending, MessageState.sent, MessageState.unknown, MessageState.retrying)


def window_release(deps: Deps, ctx: RunContext, now: datetime) -> datetime | None:
    """The real time the recipient's send window next opens, or None when it is open now."""
    if ctx.definition.schedule is None:
        return None
    virtual_now = deps.seqtime.to_virtual(now)
    zone, days, window = window_from_spec(ctx.definition.schedule, ctx.timezone)
    allowed = next_allowed(virtual_now, timezone=zone, days=days, window=window)
    return deps.seqtime.to_real(allowed) if allowed > virtual_now else None


async def cap_releases(
    conn: AsyncConnection, deps: Deps, contexts: Sequence[RunContext], now: datetime
) -> list[datetime | None]:
    """For each send in order, None if it may go now, else when its frequency cap allows it.

    The contacts are locked first, so two workers cannot both take a contact's last slot;
    sends earlier in ``contexts`` count against later ones for the same contact.
    """
    capped = sorted({c.contact_id for c in contexts if c.definition.frequency_cap})
    if not capped:
        return [None] * len(contexts)
    await lock_rows(conn, CONTACTS, capped)
    longest = max(_per(deps, c) for c in contexts if c.definition.frequency_cap)
    rows = await conn.execute(
        select(MESSAGES.c.contact_id, MESSAGES.c.created_at).where(
            MESSAGES.c.contact_id.in_(capped),
            MESSAGES.c.state.in_(COUNTED),
            MESSAGES.c.created_at > now - longest,
        )
    )
    sent: dict[int, list[datetime]] = {}
    for row in rows:
        sent.setdefault(row.contact_id, []).append(row.created_at)
    return [_release(deps, ctx, sent, now) for ctx in contexts]


def _per(deps: Deps, ctx: RunContext) -> timedelta:
    cap = ctx.definition.frequency_cap
    return deps.seqtime.real_duration(cap.duration) if cap else timedelta(0)


def _release(
    deps: Deps, ctx: RunContext, sent: dict[int, list[datetime]], now: datetime
) -> datetime | None:
    cap = ctx.definition.frequency_cap
    if cap is None:
        return None
    times = sent.setdefault(ctx.contact_id, [])
    release = frequency_cap_release(times, now=now, max_count=cap.max, per=_per(deps, ctx))
    if release > now:
        return release
    times.append(now)  # this send takes a slot for the ones after it
    return None
