"""When a send may go out: the recipient's send window and the per-contact frequency cap."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.deps import Deps
from sequences.flow import RunContext
from sequences.models import MESSAGES, MessageState
from sequences.schedule import frequency_cap_release, next_allowed, window_from_spec


async def deferral(
    conn: AsyncConnection, deps: Deps, ctx: RunContext, now: datetime
) -> tuple[datetime | None, str]:
    """The real time to try again, or None to send now; with the reason for the timeline."""
    defn = ctx.definition
    virtual_now = deps.seqtime.to_virtual(now)
    if defn.schedule is not None:
        zone, days, window = window_from_spec(defn.schedule, ctx.timezone)
        allowed = next_allowed(virtual_now, timezone=zone, days=days, window=window)
        if allowed > virtual_now:
            return deps.seqtime.to_real(allowed), "outside the send window"
    cap = defn.frequency_cap
    if cap is None:
        return None, ""
    per_real = deps.seqtime.real_duration(cap.duration)
    rows = await conn.execute(
        select(MESSAGES.c.sent_at).where(
            MESSAGES.c.contact_id == ctx.contact_id,
            MESSAGES.c.state.in_([MessageState.sent, MessageState.unknown]),
            MESSAGES.c.sent_at > now - per_real,
        )
    )
    sent = [r.sent_at for r in rows]
    release = frequency_cap_release(sent, now=now, max_count=cap.max, per=per_real)
    if release > now:
        return release, "frequency cap"
    return None, ""
