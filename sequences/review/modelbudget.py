"""Requests and tokens per minute to the model endpoint, shared by every worker through Redis,
so a large batch stays under the provider's limits instead of bouncing off them with 429s."""

from __future__ import annotations

from redis.asyncio import Redis

from sequences.mail.ratelimit import RateLimiter


class ModelBudget:
    def __init__(self, redis: Redis, endpoint: str, requests_per_minute: float, tpm: float) -> None:
        self._requests = RateLimiter(
            redis,
            f"dripline:model:{endpoint}:requests",
            requests_per_minute / 60,
            burst=max(1, int(requests_per_minute / 60)),
        )
        # A minute's tokens may go at once: providers count tokens per minute, not per second.
        self._tokens = RateLimiter(
            redis, f"dripline:model:{endpoint}:tokens", tpm / 60, burst=max(1, int(tpm))
        )

    async def acquire(self, tokens: int) -> None:
        await self._requests.acquire(1)
        await self._tokens.acquire(max(1, tokens))
