from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from sequences.mail.ratelimit import RateLimiter

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisConnectionError, OSError) as exc:
        await client.aclose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required in CI: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}")
    yield client
    await client.aclose()


@pytest.fixture
async def key(redis: Redis) -> AsyncIterator[str]:
    name = f"test:ratelimit:{uuid.uuid4().hex}"
    yield name
    await redis.delete(name)


async def test_two_limiters_share_one_budget(redis: Redis, key: str) -> None:
    first = RateLimiter(redis, key, rate_per_second=50, burst=1)
    second = RateLimiter(redis, key, rate_per_second=50, burst=1)

    async def take(limiter: RateLimiter, times: int) -> None:
        for _ in range(times):
            await limiter.acquire()

    started = time.monotonic()
    await asyncio.gather(take(first, 50), take(second, 50))
    elapsed = time.monotonic() - started
    # 100 tokens at 50/s with a burst of 1 need 99/50 = 1.98 s; separate budgets would take 1 s.
    assert 1.8 <= elapsed < 4.0


async def test_burst_is_free_then_waits(redis: Redis, key: str) -> None:
    limiter = RateLimiter(redis, key, rate_per_second=100, burst=10)
    started = time.monotonic()
    await limiter.acquire(10)
    assert time.monotonic() - started < 0.05
    await limiter.acquire(5)
    assert time.monotonic() - started >= 0.045


async def test_key_expires_when_idle(redis: Redis, key: str) -> None:
    await RateLimiter(redis, key, rate_per_second=100, burst=10).acquire()
    ttl_ms = await redis.pttl(key)
    assert 0 < ttl_ms <= 2000


def test_rejects_bad_parameters(redis: Redis) -> None:
    with pytest.raises(ValueError):
        RateLimiter(redis, "k", rate_per_second=0)
    with pytest.raises(ValueError):
        RateLimiter(redis, "k", rate_per_second=10, burst=0)


async def test_rejects_bad_count(redis: Redis, key: str) -> None:
    with pytest.raises(ValueError):
        await RateLimiter(redis, key, rate_per_second=10).acquire(0)
