"""The fast path: arq jobs that wake a worker when outbox rows fall due.

Jobs carry no payload beyond a due-time bucket; the worker claims whatever rows are due from the
database. Ids are deterministic per 100 ms bucket, so a thousand rows due together cost one job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol

from arq.connections import ArqRedis

log = logging.getLogger(__name__)

WAKE_JOB = "wake"
QUEUE_NAME = "dripline:queue"
BUCKET_MS = 100


class Waker(Protocol):
    async def wake_at(self, due: Iterable[datetime]) -> None: ...


def bucket_of(due: datetime) -> int:
    return int(due.timestamp() * 1000) // BUCKET_MS


class ArqWaker:
    """Enqueues one deferred wake job per distinct due-time bucket."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool

    async def wake_at(self, due: Iterable[datetime]) -> None:
        for bucket in sorted({bucket_of(d) for d in due}):
            defer_ms = (bucket + 1) * BUCKET_MS
            when = datetime.fromtimestamp(defer_ms / 1000, tz=UTC)
            try:
                await self.pool.enqueue_job(
                    WAKE_JOB, _job_id=f"wake:{bucket}", _defer_until=when, _queue_name=QUEUE_NAME
                )
            except Exception:  # the sweeper re-enqueues; a Redis blip must not fail the request
                log.warning("wake enqueue failed; the sweeper will pick the rows up", exc_info=True)
