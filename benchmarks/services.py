"""The services a run uses: a PostgreSQL database of its own and a Redis database.

The PostgreSQL URL is only used to create ``dripline_bench_<random>``, which is dropped at the
end; the Redis database is flushed before and after.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass


@dataclass
class Database:
    admin_url: str  # plain postgresql:// for asyncpg
    name: str

    @property
    def url(self) -> str:
        base = self.admin_url.rsplit("/", 1)[0]
        return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+asyncpg://", f"{base}/{self.name}")


def _asyncpg_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


async def create_database(admin_url: str) -> Database:
    import asyncpg

    name = f"dripline_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(_asyncpg_url(admin_url), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return Database(_asyncpg_url(admin_url), name)


async def drop_database(db: Database) -> None:
    import asyncpg

    conn = await asyncpg.connect(db.admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    finally:
        await conn.close()


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
