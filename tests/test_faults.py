"""Crashes and lost queues: a SIGKILLed worker or a flushed Redis: nobody stuck, nothing twice."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from harness import Stack, WorkerProcess, eventually, make_settings, running_stack
from sqlalchemy import func, select

from sequences.mail.capture import CaptureServer
from sequences.store.tables import ENROLLMENTS, MESSAGES, RUNS

SEQUENCE = """
key: faults
name: Faults
sender: {from: "Ops <ops@acme.test>"}
steps:
  - id: first
    email: {brief: First, fallback: {subject: "First", body: "One."}}
  - id: pause
    wait: {for: 1d}
  - id: second
    email: {brief: Second, fallback: {subject: "Second", body: "Two."}}
"""
CONTACTS = 40


@pytest.fixture
def worker_env(tmp_path: Path, capture: CaptureServer, redis_db: str) -> Iterator[dict[str, str]]:
    yield {
        **os.environ,
        "REDIS_URL": redis_db,
        "SMTP_HOST": capture.host,
        "SMTP_PORT": str(capture.port),
        "DRIPLINE_DATA_DIR": str(tmp_path / "data"),
        "DRIPLINE_DAY_SECONDS": "1",
        "DRIPLINE_CLAIM_LEASE_SECONDS": "2",
        "DRIPLINE_PUBLIC_URL": "http://dripline.test",
        "DKIM_DOMAIN": "acme.test",
    }


async def _enroll_all(stack: Stack) -> None:
    assert (await stack.apply("faults", SEQUENCE)).status_code == 201
    for n in range(CONTACTS):
        response = await stack.enroll("faults", f"lead{n}@example.com")
        assert response.status_code == 201, response.text


@contextlib.asynccontextmanager
async def fault_run(
    database_url: str, capture: CaptureServer, tmp_path: Path, env: dict[str, str], redis_url: str
) -> AsyncIterator[tuple[Stack, WorkerProcess]]:
    """The API in this process, the contacts enrolled, the worker started as a subprocess."""
    settings = make_settings(tmp_path, database_url)
    worker = WorkerProcess({**env, "DATABASE_URL": database_url}, tmp_path / "worker.log")
    async with running_stack(settings, redis_url, capture, worker=False) as stack:
        await _enroll_all(stack)
        worker.start()
        try:
            yield stack, worker
        finally:
            worker.stop()


async def _finished(stack: Stack) -> bool:
    async with stack.deps.reader.connect() as conn:
        active = await conn.scalar(select(func.count()).where(ENROLLMENTS.c.status == "active"))
    return active == 0


async def _assert_clean_finish(stack: Stack, capture: CaptureServer) -> None:
    await eventually(lambda: _finished(stack), within=60, interval=0.5)
    counts = capture.count_by_message_id()
    assert counts, "nothing was sent"
    assert max(counts.values()) == 1, "a message reached the SMTP server twice"
    async with stack.deps.reader.connect() as conn:
        pending = await conn.scalar(
            select(func.count()).where(RUNS.c.state.in_(["due", "claimed"]))
        )
    assert pending == 0
    states = await _message_states(stack)
    assert set(states) <= {"sent", "unknown"}
    # Every message recorded as sent reached the server exactly once.
    assert states.get("sent", 0) <= len(counts)
    assert states.get("sent", 0) + states.get("unknown", 0) == 2 * CONTACTS


async def test_sigkill_mid_run(
    database_url: str,
    capture: CaptureServer,
    tmp_path: Path,
    worker_env: dict[str, str],
    redis_db: str,
) -> None:
    async with fault_run(database_url, capture, tmp_path, worker_env, redis_db) as (stack, worker):
        await eventually(lambda: _count_at_least(capture, 10), within=30)
        worker.kill()
        worker.start()
        await _assert_clean_finish(stack, capture)


async def test_redis_flushed_mid_run(
    database_url: str,
    capture: CaptureServer,
    tmp_path: Path,
    worker_env: dict[str, str],
    redis_db: str,
) -> None:
    async with fault_run(database_url, capture, tmp_path, worker_env, redis_db) as (stack, _):
        await eventually(lambda: _count_at_least(capture, CONTACTS), within=30)
        redis.Redis.from_url(redis_db).flushdb()  # every deferred wake-up for the waits is gone
        await _assert_clean_finish(stack, capture)


async def test_sigterm_finishes_sends_in_flight(
    database_url: str,
    capture: CaptureServer,
    tmp_path: Path,
    worker_env: dict[str, str],
    redis_db: str,
) -> None:
    async with fault_run(database_url, capture, tmp_path, worker_env, redis_db) as (stack, worker):
        await eventually(lambda: _count_at_least(capture, 10), within=30)
        assert worker.terminate() == 0
        # A graceful stop cuts no send off: nothing is left sending or of unknown outcome.
        assert set(await _message_states(stack)) <= {"sent"}
        worker.start()
        await _assert_clean_finish(stack, capture)
        assert "unknown" not in await _message_states(stack)


async def _count_at_least(capture: CaptureServer, n: int) -> bool:
    return len(capture.messages()) >= n


async def _message_states(stack: Stack) -> dict[str, int]:
    grouped = select(MESSAGES.c.state, func.count()).group_by(MESSAGES.c.state)
    async with stack.deps.reader.connect() as conn:
        return {state: n for state, n in await conn.execute(grouped)}


async def test_transaction_survives_connections_postgres_dropped(postgres_url: str) -> None:
    """No pre-ping: a pooled connection the server killed fails its first statement, and
    ``transaction`` runs the work again on a fresh connection, exactly once in effect."""
    import asyncpg
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import AsyncConnection

    from sequences.store.db import make_engine, transaction

    engine = make_engine(postgres_url, pool_size=2)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE hits (n int)"))
            backend = await conn.scalar(text("SELECT pg_backend_pid()"))
        admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            killed = await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", backend)
        finally:
            await admin.close()
        assert killed is True

        attempts: list[int] = []

        async def work(conn: AsyncConnection) -> int:
            attempts.append(1)
            await conn.execute(text("INSERT INTO hits VALUES (1)"))
            return int(await conn.scalar(text("SELECT pg_backend_pid()")))

        fresh = await transaction(engine, work)
        assert len(attempts) == 2 and fresh != backend  # the dead one failed, a new one ran
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM hits")) == 1

        # A connection the caller holds is not swapped behind its back: the error surfaces.
        async with engine.connect() as held:
            pid = await held.scalar(text("SELECT pg_backend_pid()"))
            await held.commit()
            admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
            try:
                await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
            finally:
                await admin.close()
            with pytest.raises(DBAPIError):
                await transaction(held, work)
    finally:
        await engine.dispose()


async def test_a_process_keeps_as_many_connections_as_it_has_work_in_flight(
    postgres_url: str, tmp_path: Path
) -> None:
    """``DRIPLINE_DB_POOL_SIZE`` connections stay open between requests: a second wave of as
    many concurrent transactions opens none. With a pool smaller than the work in flight, every
    checkout past it opened a connection and closed it on return (~15 a second in the single
    enrollment benchmark)."""
    import asyncio

    from sqlalchemy import event, text
    from sqlalchemy.ext.asyncio import AsyncConnection

    from sequences.store.db import make_engine, transaction

    settings = make_settings(tmp_path, postgres_url, DRIPLINE_DB_POOL_SIZE=4)
    engine = make_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
    opened: list[int] = []
    event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))

    async def four_at_once() -> None:
        release, holding = asyncio.Event(), []

        async def hold(conn: AsyncConnection) -> None:
            await conn.execute(text("SELECT 1"))
            holding.append(1)
            await release.wait()

        async def all_holding() -> bool:
            return len(holding) == 4

        tasks = [asyncio.create_task(transaction(engine, hold)) for _ in range(4)]
        await eventually(all_holding)
        release.set()
        await asyncio.gather(*tasks)

    try:
        await four_at_once()
        assert len(opened) == 4
        await four_at_once()
        assert len(opened) == 4  # the second wave found them all in the pool
    finally:
        await engine.dispose()


async def test_a_lookup_runs_outside_a_transaction_and_leaves_the_pool_as_it_was(
    postgres_url: str,
) -> None:
    """``lookups`` (the API key's SELECT) runs in autocommit: each statement is its own
    transaction, so now() moves from one statement to the next. The same pooled connection
    taken through the engine afterwards is in a transaction again, where now() stays put."""
    from sqlalchemy import text

    from sequences.store.db import lookups, make_engine, read_only

    engine = make_engine(postgres_url, pool_size=1)
    try:
        for used, in_autocommit in ((lookups(engine), True), (read_only(engine), False)):
            async with used.connect() as conn:
                first = await conn.scalar(text("SELECT now()"))
                await conn.execute(text("SELECT pg_sleep(0.01)"))
                second = await conn.scalar(text("SELECT now()"))
            assert (second > first) is in_autocommit
    finally:
        await engine.dispose()


async def test_a_bucket_is_enqueued_once_until_its_time_comes(redis_db: str) -> None:
    """The waker remembers the buckets it enqueued: a bucket still ahead is not asked of Redis
    again, and one whose time came (arq ran and dropped its job) is enqueued anew."""
    from datetime import UTC, datetime, timedelta

    from sequences.kit.queue import QUEUE_NAME, ArqWaker, bucket_of
    from sequences.runtime import arq_pool

    pool = await arq_pool(redis_db)
    try:
        waker = ArqWaker(pool)
        ahead = datetime.now(UTC) + timedelta(minutes=5)
        await waker.wake_at([ahead])
        assert await pool.zcard(QUEUE_NAME) == 1
        # Gone behind its back (job and queue entry): a remembered bucket is not asked again.
        await pool.delete(QUEUE_NAME, f"arq:job:wake:{bucket_of(ahead)}")
        await waker.wake_at([ahead, ahead + timedelta(milliseconds=1)])
        assert await pool.zcard(QUEUE_NAME) == 0
        await waker.wake_at([ahead + timedelta(seconds=1)])  # another bucket is enqueued
        assert await pool.zcard(QUEUE_NAME) == 1

        past = datetime.now(UTC) - timedelta(seconds=1)
        await waker.wake_at([past])
        assert await pool.zcard(QUEUE_NAME) == 2
        job = f"arq:job:wake:{bucket_of(past)}"
        await pool.delete(job)
        await pool.zrem(QUEUE_NAME, f"wake:{bucket_of(past)}")  # as arq leaves a job it ran
        await waker.wake_at([past])  # its time has come: enqueued again
        assert await pool.zcard(QUEUE_NAME) == 2
    finally:
        await pool.aclose()
