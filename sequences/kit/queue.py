"""The fast path: arq jobs that wake a worker when outbox rows fall due.

Jobs carry no payload beyond a due-time bucket; the worker claims whatever rows are due from the
database. Ids are deterministic per 100 ms bucket, so a thousand rows due together cost one job.
"""

from __future__ import annotations

import logging
import time
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


# Buckets this process enqueued whose job is not due yet, remembered so that the requests of
# one 100 ms bucket cost one enqueue (arq's own check of the job id is three round trips to
# Redis each). A job arq ran is gone (keep_result=0), so a bucket whose time has come is
# enqueued again: a row committed after its bucket's job ran still gets a job of its own.
RECENT_BUCKETS = 4096
PENDING_MARGIN_MS = 5


class ArqWaker:
    """Enqueues one deferred wake job per distinct due-time bucket."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool
        self.recent: dict[int, None] = {}  # insertion-ordered: the oldest goes first

    async def wake_at(self, due: Iterable[datetime]) -> None:
        # Skipped: a bucket enqueued here whose job cannot have run yet (if Redis lost it
        # meanwhile, the sweeper finds its rows, as for any lost job).
        soon = time.time() * 1000 + PENDING_MARGIN_MS
        for bucket in sorted({bucket_of(d) for d in due}):
            defer_ms = (bucket + 1) * BUCKET_MS
            if bucket in self.recent and defer_ms > soon:
                continue
            when = datetime.fromtimestamp(defer_ms / 1000, tz=UTC)
            try:
                await self.pool.enqueue_job(
                    WAKE_JOB, _job_id=f"wake:{bucket}", _defer_until=when, _queue_name=QUEUE_NAME
                )
            except Exception:  # the sweeper re-enqueues; a Redis blip must not fail the request
                log.warning("wake enqueue failed; the sweeper will pick the rows up", exc_info=True)
                continue
            self.recent[bucket] = None
            if len(self.recent) > RECENT_BUCKETS:
                del self.recent[next(iter(self.recent))]
