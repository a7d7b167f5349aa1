"""Bearer API keys: shown once at creation, stored as SHA-256 hashes, each with one role;
listed by name and prefix, and revoked by either (which ends the key's console sessions)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.errors import Conflict, NotFound
from sequences.store.tables import API_KEYS, CONSOLE_SESSIONS

KEY_PREFIX = "dl_"
PREFIX_LENGTH = 10  # what is stored and listed of a key: enough to tell keys apart, not to use


class Role(StrEnum):
    admin = "admin"  # everything
    enroll = "enroll"  # contacts, enrollments and events: what a CRM or a backend needs
    reviewer = "reviewer"  # reads sequences and reviews drafts; cannot enroll
    metrics = "metrics"  # reads /metrics only: what a Prometheus scraper needs


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
            name=name,
            prefix=secret[:PREFIX_LENGTH],
            key_hash=hash_key(secret),
            role=role,
            created_at=now,
        )
    )
    return secret


# Built once: every request runs it, and building the expression (and its cache key) cost
# more than executing the cached statement.
_LIVE_KEY = select(API_KEYS.c.id, API_KEYS.c.name, API_KEYS.c.role).where(
    API_KEYS.c.key_hash == bindparam("key_hash"), API_KEYS.c.revoked_at.is_(None)
)


async def authenticate(conn: AsyncConnection, secret: str) -> Principal | None:
    row = (await conn.execute(_LIVE_KEY, {"key_hash": hash_key(secret)})).first()
    return Principal(row.id, row.name, Role(row.role)) if row else None


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: never its secret."""

    name: str
    prefix: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


_INFO = (
    API_KEYS.c.id,
    API_KEYS.c.name,
    API_KEYS.c.prefix,
    API_KEYS.c.role,
    API_KEYS.c.created_at,
    API_KEYS.c.revoked_at,
)


def _info(row: Any) -> KeyInfo:
    return KeyInfo(row.name, row.prefix, Role(row.role), row.created_at, row.revoked_at)


async def list_keys(conn: AsyncConnection, *, revoked: bool = False) -> list[KeyInfo]:
    """Live keys oldest first; ``revoked`` includes the revoked ones."""
    query = select(*_INFO).order_by(API_KEYS.c.id)
    if not revoked:
        query = query.where(API_KEYS.c.revoked_at.is_(None))
    return [_info(row) for row in await conn.execute(query)]


async def revoke_key(conn: AsyncConnection, name_or_prefix: str, now: datetime) -> KeyInfo:
    """Revoke the one live key with this name or prefix (a whole key names its prefix too) and
    end its console sessions. Several matches revoke nothing: the caller picks by prefix."""
    ident = name_or_prefix.strip()
    if ident.startswith(KEY_PREFIX) and len(ident) >= PREFIX_LENGTH:
        which = API_KEYS.c.prefix == ident[:PREFIX_LENGTH]
    else:
        which = API_KEYS.c.name == ident
    rows = (await conn.execute(select(*_INFO).where(which, API_KEYS.c.revoked_at.is_(None)))).all()
    if not rows:
        raise NotFound("unknown_key", f"no live API key named or prefixed '{ident}'")
    if len(rows) > 1:
        prefixes = [row.prefix for row in rows]
        raise Conflict(
            "ambiguous_key",
            f"{len(rows)} live keys match '{ident}'; revoke one by its prefix: "
            + ", ".join(prefixes),
            {"prefixes": prefixes},
        )
    row = rows[0]
    await conn.execute(update(API_KEYS).where(API_KEYS.c.id == row.id).values(revoked_at=now))
    # Sessions also die with the key on their next request; deleting them says so at once.
    await conn.execute(delete(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.key_id == row.id))
    return KeyInfo(row.name, row.prefix, Role(row.role), row.created_at, now)
