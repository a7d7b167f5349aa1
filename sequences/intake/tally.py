"""What ESP webhooks brought, counted per provider and outcome (rejected items per field).

Kept in Redis so every API process adds to the same figures, which ``/metrics`` reports. The
counts only ever grow; a flushed Redis restarts them, which Prometheus reads as a counter reset.
"""

from __future__ import annotations

from redis.asyncio import Redis

from sequences.intake.esp.common import Rejected

KEY = "dripline:webhook-items"


async def add(
    redis: Redis, provider: str, outcomes: dict[str, int], rejected: list[Rejected]
) -> None:
    """``outcomes``: accepted, duplicate, ignored, foreign -> how many; each rejected item is
    counted under the field at fault."""
    fields = {f"{provider}|{outcome}|": n for outcome, n in outcomes.items() if n}
    for item in rejected:
        name = f"{provider}|rejected|{item.field}"
        fields[name] = fields.get(name, 0) + 1
    if not fields:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for name, n in fields.items():
            pipe.hincrby(KEY, name, n)
        await pipe.execute()


async def read(redis: Redis) -> list[tuple[str, str, str, int]]:
    """(provider, outcome, field at fault or "", count) for every count so far."""
    # redis-py types hash commands for its sync and async clients at once.
    counts: dict[bytes | str, bytes | str] = await redis.hgetall(KEY)  # type: ignore[misc]
    found = []
    for name, n in counts.items():
        text = name.decode() if isinstance(name, bytes) else str(name)
        provider, outcome, field = [*text.split("|"), "", ""][:3]
        found.append((provider, outcome, field, int(n)))
    return sorted(found)
