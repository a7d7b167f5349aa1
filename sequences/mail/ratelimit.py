"""A token bucket in Redis, shared by every worker that sends through the same relay."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

__all__ = ["RateLimiter"]

logger = logging.getLogger(__name__)

# Reservation-style bucket: the caller's tokens are taken at once (the balance may go negative)
# and the script answers how long to wait until they would have been available. One round
# trip per acquire, no polling, and waiters are served in arrival order. Redis TIME is the
# only clock, so workers on hosts with skewed clocks still agree. The wait is returned as a
# string because Redis truncates Lua numbers to integers.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate) - wanted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
local refill_ms = math.ceil((burst - tokens) / rate * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], refill_ms)
if tokens >= 0 then
  return '0'
end
return tostring(-tokens / rate)
"""


class RateLimiter:
    """``acquire`` blocks until the shared budget of ``rate_per_second`` allows the send.

    ``burst`` (default: one second's worth) is how many tokens may be taken at once after
    an idle period.
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        rate_per_second: float,
        burst: int | None = None,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self._redis = redis
        self._key = key
        self._rate = rate_per_second
        self._burst = burst if burst is not None else max(1, int(rate_per_second))
        if self._burst < 1:
            raise ValueError("burst must be at least 1")
        self._script = redis.register_script(_TOKEN_BUCKET)

    async def acquire(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        reply = await self._script(keys=[self._key], args=[self._rate, self._burst, n])
        wait = float(reply.decode("ascii") if isinstance(reply, bytes) else reply)
        if wait > 0:
            logger.debug("rate limit %s: waiting %.3f s for %d token(s)", self._key, wait, n)
            await asyncio.sleep(wait)
