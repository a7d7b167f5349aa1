"""Bearer API keys: shown once at creation, stored as SHA-256 hashes, each with one role."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.store.tables import API_KEYS

KEY_PREFIX = "dl_"


class Role(StrEnum):
    admin = "admin"  # everything
    enroll = "enroll"  # contacts, enrollments and events: what a CRM or a backend needs
    reviewer = "reviewer"  # reads sequences and reviews drafts; cannot enroll


@dataclass(frozen=True)
class Principal:
    key_id: int
    name: str
    role: Role


def hash_key(secret: str) -> str:
    # The keys are 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(conn: AsyncConnection, name: str, role: Role, now: datetime) -> str:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        insert(API_KEYS).values(
            name=name, prefix=secret[:10], key_hash=hash_key(secret), role=role, created_at=now
        )
    )
    return secret


async def authenticate(conn: AsyncConnection, secret: str) -> Principal | None:
    row = (
        await conn.execute(
            select(API_KEYS.c.id, API_KEYS.c.name, API_KEYS.c.role).where(
                API_KEYS.c.key_hash == hash_key(secret), API_KEYS.c.revoked_at.is_(None)
            )
        )
    ).first()
    return Principal(row.id, row.name, Role(row.role)) if row else None
