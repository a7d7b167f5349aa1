"""The arq worker: wake jobs run due outbox rows; a sweeper cron keeps the database honest.

Jobs carry no data: the database is the truth. A flushed Redis loses only wake-ups, and the
sweeper re-creates them from overdue rows; a killed worker's claims expire (a live worker renews
its leases by a heartbeat) and are re-run, and its messages left ``sending`` become ``unknown``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

from arq import cron
from arq.worker import Worker, func
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.delivery import outcomes
from sequences.deps import Deps
from sequences.engine import outbox
from sequences.kit.queue import QUEUE_NAME, WAKE_JOB
from sequences.review import reviews
from sequences.runner import run_due
from sequences.runtime import arq_settings, open_deps
from sequences.settings import Settings
from sequences.store.db import transaction

log = logging.getLogger(__name__)


async def wake(ctx: dict[str, Any]) -> int:
    """Run every due row; called at the due time of a bucket of rows, or by the sweeper."""
    deps: Deps = ctx["deps"]
    return await run_due(deps)


async def sweep(ctx: dict[str, Any]) -> None:
    deps: Deps = ctx["deps"]
    now = deps.clock.now()

    async def work(conn: AsyncConnection) -> tuple[int, list[datetime]]:
        expired = await outbox.expire_claims(conn, now)
        # Drafts left unreviewed past their deadline: the worker applies the sequence's policy.
        await reviews.release_overdue(conn, now)
        await outcomes.settle_orphans(conn)  # messages last, as the lock order has them
        return expired, await outbox.overdue(conn, now, limit=1)

    expired, overdue = await transaction(deps.engine, work)
    if expired:
        log.warning("expired stale claims", extra={"count": expired})
    if overdue:
        await deps.waker.wake_at([now])


def build_worker(
    settings: Settings,
    *,
    redis_url: str,
    smtp: tuple[str, int],
    burst: bool = False,
) -> Worker:
    """A worker; signals are the caller's to handle (``request_stop`` stops it gracefully)."""

    async def startup(ctx: dict[str, Any]) -> None:
        stack = AsyncExitStack()
        ctx["stack"] = stack
        ctx["deps"] = await stack.enter_async_context(
            open_deps(settings, redis_url=redis_url, smtp=smtp)
        )

    async def shutdown(ctx: dict[str, Any]) -> None:
        stack: AsyncExitStack | None = ctx.get("stack")
        if stack is not None:
            await stack.aclose()

    every = max(1, round(settings.sweep_interval_seconds))
    return Worker(
        functions=[func(wake, name=WAKE_JOB)],
        cron_jobs=[cron(sweep, second=set(range(0, 60, every)), run_at_startup=True, unique=True)],
        queue_name=QUEUE_NAME,
        redis_settings=arq_settings(redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        keep_result=0,  # a kept result would make arq refuse the next wake with the same id
        max_jobs=4,
        # run_due starts no batch after 30 s, so this only stops a job that hangs.
        job_timeout=300,
        job_completion_wait=round(settings.shutdown_grace_seconds),
        poll_delay=0.05,
        burst=burst,
        handle_signals=False,
    )


def request_stop(worker: Worker, signum: signal.Signals) -> None:
    """SIGTERM: claim nothing more, let in-flight batches finish their sends, then stop."""
    deps: Deps | None = worker.ctx.get("deps")
    if deps is not None:
        deps.stopping.set()
    worker.handle_sig_wait_for_completion(signum)


async def stop_worker(worker: Worker, task: asyncio.Task[None], grace: float = 10.0) -> None:
    """Stop a worker started with ``async_run``: in-flight batches get ``grace`` seconds to
    finish, then whatever is left is cancelled (its claims expire and rerun)."""
    deps: Deps | None = worker.ctx.get("deps")
    if deps is not None:
        deps.stopping.set()
    worker.allow_pick_jobs = False
    jobs = [t for t in worker.tasks.values() if not t.done()]
    if jobs:
        await asyncio.wait(jobs, timeout=grace)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    try:
        await worker.close()
    except asyncio.CancelledError:
        # arq re-raises the cancellation of the jobs it just cancelled; only ours must propagate.
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
