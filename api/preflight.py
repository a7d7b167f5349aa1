"""What a long-running command checks before it starts, so a newcomer reads one line, not a
traceback: the configured Redis and database answer, and the public URL (the base of every
tracking and unsubscribe link in the emails) points where `dripline serve` listens."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError

from sequences.settings import Settings
from sequences.store.db import make_engine

TIMEOUT_SECONDS = 10.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}


def shown_url(url: str) -> str:
    """A service URL fit to print: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def database_problem(settings: Settings, error: BaseException) -> str:
    url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    if isinstance(error, ArgumentError):
        return (
            f"DATABASE_URL {url} is not a URL SQLAlchemy can use ({error}); "
            "PostgreSQL is postgresql+asyncpg://user@host/db"
        )
    reason = getattr(error, "orig", None) or error
    return f"cannot use the database at {url}: {reason}"


async def unreachable(settings: Settings, redis_url: str | None) -> str | None:
    """Why the configured Redis (``redis_url``; None: embedded) or database cannot be used, in
    one line; None when both answer."""
    if redis_url:
        problem = await _redis_problem(redis_url)
        if problem:
            return problem
    return await _database_problem(settings)


async def _redis_problem(url: str) -> str | None:
    try:
        client: Redis = Redis.from_url(url, socket_connect_timeout=TIMEOUT_SECONDS)
    except ValueError as error:  # no scheme, or one redis-py does not know
        return f"REDIS_URL {shown_url(url)} is not a Redis URL: {error}"
    try:
        await asyncio.wait_for(client.ping(), TIMEOUT_SECONDS)
    except (RedisError, OSError, TimeoutError) as error:
        return f"cannot reach Redis at {shown_url(url)} (REDIS_URL): {error or 'timed out'}"
    finally:
        await client.aclose()
    return None


async def _database_problem(settings: Settings) -> str | None:
    try:
        engine = make_engine(settings.resolved_database_url)
    except ArgumentError as error:  # postgres:// (no such dialect), a missing driver
        return database_problem(settings, error)
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (OSError, DBAPIError, TimeoutError) as error:
        return database_problem(settings, error)
    finally:
        await engine.dispose()
    return None


def align_public_url(settings: Settings, host: str, port: int) -> str | None:
    """Point an unset DRIPLINE_PUBLIC_URL at where `serve` listens; a set one that names this
    machine on another port gets a warning (returned), since its links would lead nowhere."""
    shown_host = "127.0.0.1" if host in _LOOPBACK else host
    here = f"http://{shown_host}:{port}"
    if "public_url" not in settings.model_fields_set:
        settings.public_url = here
        return None
    public = urlsplit(settings.public_url)
    default_port = 443 if public.scheme == "https" else 80
    if public.hostname in _LOOPBACK and (public.port or default_port) != port:
        return (
            f"warning: DRIPLINE_PUBLIC_URL is {settings.public_url} but the API listens on "
            f"{here}: the tracking and unsubscribe links in emails will point at "
            f"{settings.public_url}"
        )
    return None
