"""Building a process's dependencies from settings: for the API, the worker and the CLI."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime

from arq.connections import ArqRedis, RedisSettings, create_pool
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.agent import CopyAgent
from agents.llm import OpenAIChatModel
from sequences.deps import Deps
from sequences.kit.clock import Clock, SequenceTime, SystemClock
from sequences.kit.queue import QUEUE_NAME, ArqWaker
from sequences.mail.ratelimit import RateLimiter
from sequences.mail.render import LayoutRenderer
from sequences.mail.signers import Signers, load_or_create_key
from sequences.mail.smtp import SmtpMailer
from sequences.review.checkpoints import open_checkpointer
from sequences.review.modelbudget import ModelBudget
from sequences.settings import Settings
from sequences.store import migrate
from sequences.store.db import dialect_insert, lookups, make_engine, read_only
from sequences.store.tables import META

# Young-generation collections every 50,000 allocations instead of 700: a send batch or an
# event batch allocates tens of thousands of short-lived objects, and the default thresholds
# ran ~450 collections per 1,000 sends (0.4 s of a 5 s drain in the send benchmark).
GC_THRESHOLDS = (50_000, 20, 10)


def settle_heap() -> None:
    """For a long-running API or worker process, once it is set up: what exists now (modules,
    compiled statements, templates) is frozen out of the collector's scans, and young
    collections run less often. Not for tests or one-off commands, which build many apps."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def clock_anchor(engine: AsyncEngine, day_seconds: float, now: datetime) -> SequenceTime:
    """All processes share one accelerated timeline, anchored in the database."""
    speed_key, anchor_key = "clock_day_seconds", "clock_anchor"
    async with engine.begin() as conn:
        rows = {r.key: r.value for r in await conn.execute(select(META.c.key, META.c.value))}
        if rows.get(speed_key) == repr(day_seconds) and anchor_key in rows:
            return SequenceTime.from_day_seconds(
                datetime.fromisoformat(rows[anchor_key]), day_seconds
            )
        for key, value in ((speed_key, repr(day_seconds)), (anchor_key, now.isoformat())):
            stmt = dialect_insert(conn, META).values(key=key, value=value)
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value})
            )
    return SequenceTime.from_day_seconds(now, day_seconds)


def arq_settings(redis_url: str) -> RedisSettings:
    return RedisSettings.from_dsn(redis_url)


async def arq_pool(redis_url: str) -> ArqRedis:
    return await create_pool(arq_settings(redis_url), default_queue_name=QUEUE_NAME)


def _model(settings: Settings, redis: ArqRedis) -> OpenAIChatModel | None:
    """The configured model, or None: with no key and no endpoint the composer writes."""
    config = settings.agent_model
    if not config.configured:
        return None
    endpoint = config.base_url or "api.openai.com"
    budget = ModelBudget(
        redis, endpoint, settings.model_requests_per_minute, settings.model_tokens_per_minute
    )
    return OpenAIChatModel(config, budget)


@asynccontextmanager
async def open_deps(
    settings: Settings,
    *,
    redis_url: str,
    smtp: tuple[str, int] | None = None,
    clock: Clock | None = None,
    run_migrations: bool = True,
) -> AsyncIterator[Deps]:
    """Everything one process needs, closed again on exit. ``smtp`` makes it able to send."""
    clock = clock or SystemClock()
    engine = make_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if run_migrations:
        await migrate.upgrade(engine)
    pool = await arq_pool(redis_url)
    stack = AsyncExitStack()
    checkpointer = await stack.enter_async_context(
        open_checkpointer(settings.resolved_database_url)
    )
    model = _model(settings, pool)
    deps = Deps(
        settings=settings,
        engine=engine,
        reader=read_only(engine),
        lookups=lookups(engine),
        redis=pool,
        clock=clock,
        seqtime=await clock_anchor(engine, settings.day_seconds, clock.now()),
        waker=ArqWaker(pool),
        agent=CopyAgent(model, checkpointer, max_revisions=settings.agent_model.max_revisions),
        renderer=LayoutRenderer(),
    )
    if smtp is not None:
        deps.mailer = SmtpMailer(
            smtp[0],
            smtp[1],
            pool_size=settings.smtp_pool_size,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout,
            local_hostname=settings.smtp_local_hostname,
        )
        deps.signers = Signers(
            load_or_create_key(settings.dkim_key_path), settings.dkim_selector, settings.dkim_domain
        )
        deps.limiter = RateLimiter(
            pool, f"dripline:rate:{smtp[0]}:{smtp[1]}", settings.smtp_rate_per_second
        )
    try:
        yield deps
    finally:
        if model is not None:
            await model.close()
        await stack.aclose()
        if deps.mailer is not None:
            await deps.mailer.close()
        await pool.aclose()
        await engine.dispose()
