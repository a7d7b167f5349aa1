"""Console sign-in: an API key with the reviewer (or admin) role buys a browser session.

The cookie carries a random secret; the database keeps only its SHA-256, the key it was
bought with and a CSRF token. Every page re-reads the key, so revoking it signs the browser
out at once. Forms carry the CSRF token; the cookie is HttpOnly and SameSite=Strict too.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import Principal, Role, hash_key
from sequences.store.tables import API_KEYS, CONSOLE_SESSIONS

COOKIE = "dripline_console"
LIFETIME = timedelta(hours=12)
CONSOLE_ROLES = frozenset({Role.admin, Role.reviewer})


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str
    expires_at: datetime

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token, token or "")


async def start(conn: AsyncConnection, principal: Principal, now: datetime) -> str:
    """A new session for ``principal``; returns the cookie's secret (stored only hashed)."""
    secret = secrets.token_urlsafe(32)
    await conn.execute(
        insert(CONSOLE_SESSIONS).values(
            id=hash_key(secret),
            key_id=principal.key_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + LIFETIME,
        )
    )
    # Expired sessions of the same key go when it signs in again: the table stays small.
    await conn.execute(
        delete(CONSOLE_SESSIONS).where(
            CONSOLE_SESSIONS.c.key_id == principal.key_id, CONSOLE_SESSIONS.c.expires_at < now
        )
    )
    return secret


async def find(conn: AsyncConnection, secret: str, now: datetime) -> Session | None:
    """The live session behind a cookie: unexpired, its key not revoked, still console-worthy."""
    row = (
        await conn.execute(
            select(
                API_KEYS.c.id,
                API_KEYS.c.name,
                API_KEYS.c.role,
                CONSOLE_SESSIONS.c.csrf_token,
                CONSOLE_SESSIONS.c.expires_at,
            )
            .join(API_KEYS, API_KEYS.c.id == CONSOLE_SESSIONS.c.key_id)
            .where(
                CONSOLE_SESSIONS.c.id == hash_key(secret),
                CONSOLE_SESSIONS.c.expires_at > now,
                API_KEYS.c.revoked_at.is_(None),
            )
        )
    ).first()
    if row is None or Role(row.role) not in CONSOLE_ROLES:
        return None
    return Session(Principal(row.id, row.name, Role(row.role)), row.csrf_token, row.expires_at)


async def end(conn: AsyncConnection, secret: str) -> None:
    await conn.execute(delete(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.id == hash_key(secret)))
