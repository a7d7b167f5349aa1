"""Everything a request handler or a worker job needs, built once per process and passed down."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.agent import CopyAgent
from sequences.kit.clock import Clock, SequenceTime
from sequences.kit.fetcher import Fetcher
from sequences.kit.queue import Waker
from sequences.mail.ratelimit import RateLimiter
from sequences.mail.render import LayoutRenderer
from sequences.mail.signers import Signers
from sequences.mail.smtp import Mailer
from sequences.settings import Settings


@dataclass
class Deps:
    settings: Settings
    engine: AsyncEngine
    reader: AsyncEngine  # the same pool, for read-only work (see sequences.store.db.read_only)
    lookups: AsyncEngine  # the same pool, for one read statement (sequences.store.db.lookups)
    redis: Redis
    clock: Clock
    seqtime: SequenceTime
    waker: Waker
    agent: CopyAgent
    renderer: LayoutRenderer
    mailer: Mailer | None = None
    signers: Signers | None = None
    limiter: RateLimiter | None = None
    fetcher: Fetcher | None = None  # the API's HTTPS client for the SNS handshake
    # Set on SIGTERM: finish the batch in hand, claim no more (in-flight sends are not cut off).
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Event batches run in this process at once: settings.event_transactions (api.routes.events).
    event_gate: asyncio.Semaphore | None = None
