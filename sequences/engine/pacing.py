"""When a send may go out: the recipient's send window and the per-contact frequency cap.

Both are decided before a step is drafted, so a deferred step costs no model call. The cap's
spacing counts from when the relay accepted each earlier email (``sent_at``); a message still
on its way counts from when it was recorded, and is measured again once it has gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.definitions.schedule import frequency_cap_release, next_allowed, window_from_spec
from sequences.deps import Deps
from sequences.engine.flow import RunContext
from sequences.store.db import lock_rows
from sequences.store.tables import CONTACTS, MESSAGES, MessageState

# Every message that went out, or may have, counts against the cap.
COUNTED = (
    MessageState.queued,
    MessageState.sending,
    MessageState.sent,
    MessageState.unknown,
    MessageState.retrying,
)


WINDOW = "outside the send window"
CAP = "frequency cap"


async def hold_backs(
    conn: AsyncConnection, deps: Deps, contexts: Sequence[RunContext], now: datetime
) -> list[tuple[datetime, str] | None]:
    """For each send in order, None if it may go now, else when it may and why not.

    Locks the capped contacts (see ``cap_releases``): call it before any other write in the
    transaction, as contacts come first in the engine's lock order.
    """
    windows = [window_release(deps, ctx, now) for ctx in contexts]
    inside = [ctx for ctx, opens in zip(contexts, windows, strict=True) if opens is None]
    caps = iter(await cap_releases(conn, deps, inside, now))
    holds: list[tuple[datetime, str] | None] = []
    for opens in windows:
        if opens is not None:
            holds.append((opens, WINDOW))
        elif (release := next(caps)) is not None:
            holds.append((release, CAP))
        else:
            holds.append(None)
    return holds


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
    accepted = func.coalesce(MESSAGES.c.sent_at, MESSAGES.c.created_at)
    rows = await conn.execute(
        select(MESSAGES.c.contact_id, MESSAGES.c.sent_at, MESSAGES.c.created_at).where(
            MESSAGES.c.contact_id.in_(capped),
            MESSAGES.c.state.in_(COUNTED),
            accepted > now - longest,
        )
    )
    sent: dict[int, list[datetime]] = {}
    for row in rows:
        sent.setdefault(row.contact_id, []).append(row.sent_at or row.created_at)
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
