"""The model's requests-per-minute budget is shared by every worker through Redis, so a large
batch waits its turn instead of bouncing off the provider with 429s."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from sequences.review.modelbudget import ModelBudget


async def test_two_workers_share_one_budget(redis_db: str) -> None:
    first, second = Redis.from_url(redis_db), Redis.from_url(redis_db)
    try:
        # 600 requests a minute: 10 a second, a burst of 10. Two "workers" ask for 30 in all.
        budgets = [ModelBudget(r, "local", 600, 1_000_000) for r in (first, second)]
        started = time.monotonic()
        await asyncio.gather(*(budgets[n % 2].acquire(100) for n in range(30)))
        elapsed = time.monotonic() - started
        # 10 go at once, the other 20 at 10 a second: about 2 s whoever asks.
        assert elapsed >= 1.8
    finally:
        await first.aclose()
        await second.aclose()


async def test_tokens_per_minute_hold_back_large_prompts(redis_db: str) -> None:
    client = Redis.from_url(redis_db)
    try:
        # 60,000 tokens a minute (1,000 a second, a minute's worth at once), many requests.
        budget = ModelBudget(client, "local", 60_000, 60_000)
        started = time.monotonic()
        await budget.acquire(60_000)  # the whole minute's budget in one go: no wait
        assert time.monotonic() - started < 0.5
        await budget.acquire(1_000)  # nothing left: a second's refill
        assert time.monotonic() - started >= 0.9
    finally:
        await client.aclose()
