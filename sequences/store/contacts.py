"""Contacts: upserted by email, unique case-insensitively."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.errors import Invalid
from sequences.store.arrays import insert_arrays
from sequences.store.db import among, dialect_insert
from sequences.store.tables import CONTACTS


@dataclass(frozen=True)
class ContactRef:
    id: int
    email: str
    email_key: str


def email_key(email: str) -> str:
    return email.strip().lower()


# The most a contact's attributes may hold, as JSON, once an enrollment merged its values over
# the stored ones (the API checks each request against the same figure before anything runs).
MAX_ATTRIBUTES_BYTES = 64_000


def bounded(email: str, merged: dict[str, Any]) -> dict[str, Any]:
    """``merged`` when it fits; raises Invalid naming the contact when the merge outgrew it."""
    size = len(json.dumps(merged, ensure_ascii=False, default=str).encode())
    if size > MAX_ATTRIBUTES_BYTES:
        message = (
            f"{email}: attributes merged over the stored ones are {size} bytes as JSON"
            f" (at most {MAX_ATTRIBUTES_BYTES}); replace them with PUT /v1/contacts/{{email}}"
        )
        raise Invalid("invalid_request", message, [{"path": "attributes", "message": message}])
    return merged


async def upsert(
    conn: AsyncConnection,
    email: str,
    *,
    now: datetime,
    timezone: str | None = None,
    attributes: dict[str, Any] | None = None,
    replace: bool = False,
) -> ContactRef:
    """Create or update a contact. ``replace`` swaps the attributes (a CRM's PUT); otherwise
    the given attributes are merged over the stored ones (an enrollment's snapshot)."""
    key = email_key(email)
    await conn.execute(
        dialect_insert(conn, CONTACTS)
        .values(
            email=email.strip(),
            email_key=key,
            timezone=timezone,
            attributes=attributes or {},
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["email_key"])
    )
    query = select(CONTACTS.c.id, CONTACTS.c.attributes, CONTACTS.c.timezone).where(
        CONTACTS.c.email_key == key
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).one()
    merged = dict(attributes or {}) if replace else {**(row.attributes or {}), **(attributes or {})}
    bounded(email, merged)
    changes: dict[str, Any] = {}
    if merged != (row.attributes or {}):
        changes["attributes"] = merged
    if timezone is not None and timezone != row.timezone:
        changes["timezone"] = timezone
    if changes:
        await conn.execute(
            update(CONTACTS).where(CONTACTS.c.id == row.id).values(**changes, updated_at=now)
        )
    return ContactRef(row.id, email.strip(), key)


@dataclass(frozen=True)
class ContactFields:
    """What a request says about one contact."""

    email: str
    timezone: str | None = None
    attributes: dict[str, Any] | None = None


@dataclass(frozen=True)
class ContactState:
    """A contact as stored after an upsert: what an enrollment's first step reads."""

    id: int
    email: str
    email_key: str
    timezone: str | None
    attributes: dict[str, Any]
    created: bool = False  # inserted by this upsert: nothing about it (scores, events) yet


async def upsert_many(
    conn: AsyncConnection, items: list[ContactFields], *, now: datetime
) -> list[ContactState]:
    """``upsert`` (merging attributes) for many contacts in three statements at most: insert
    the missing (each new row comes back, already ours until commit), lock and read the others
    (id order, as ``LOCK_ORDER`` asks), update the changed. One state per item, in order; an
    address given twice gets both merged in turn."""
    first = {email_key(i.email): i for i in reversed(items)}  # a new contact is created as
    rows = [_new_row(key, first[key], now) for key in sorted(first)]  # its first mention says,
    if len(rows) > 1 and conn.dialect.name == "postgresql":  # so only repeats and old contacts
        inserted: Any = await insert_arrays(  # get updated
            conn,
            CONTACTS,
            rows,
            conflict="ON CONFLICT (email_key) DO NOTHING",
            returning=tuple(c.name for c in _STATE),
        )
    else:
        inserted = await conn.execute(
            dialect_insert(conn, CONTACTS)
            .on_conflict_do_nothing(index_elements=["email_key"])
            .returning(*_STATE),
            rows,
        )
    states = {r.email_key: _state(r, created=True) for r in inserted}
    older = sorted(k for k in first if k not in states)
    if older:
        query = (
            select(*_STATE).where(among(conn, CONTACTS.c.email_key, older)).order_by(CONTACTS.c.id)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        states |= {r.email_key: _state(r, created=False) for r in await conn.execute(query)}
    changed: set[str] = set()
    result: list[ContactState] = []
    for item in items:
        key = email_key(item.email)
        old = states[key]
        new = ContactState(
            old.id,
            old.email,
            key,
            item.timezone if item.timezone is not None else old.timezone,
            bounded(item.email, {**old.attributes, **(item.attributes or {})}),
            old.created,
        )
        if new != old:
            states[key] = new
            changed.add(key)
        result.append(new)
    await _write_changes(conn, [states[k] for k in sorted(changed)], now)
    return result


_STATE = (
    CONTACTS.c.id,
    CONTACTS.c.email,
    CONTACTS.c.email_key,
    CONTACTS.c.timezone,
    CONTACTS.c.attributes,
)


def _state(row: Any, *, created: bool) -> ContactState:
    return ContactState(
        row.id, row.email, row.email_key, row.timezone, dict(row.attributes or {}), created
    )


def _new_row(key: str, item: ContactFields, now: datetime) -> dict[str, Any]:
    return {
        "email": item.email.strip(),
        "email_key": key,
        "timezone": item.timezone,
        "attributes": item.attributes or {},
        "created_at": now,
        "updated_at": now,
    }


async def _write_changes(conn: AsyncConnection, states: list[ContactState], now: datetime) -> None:
    if states:
        await conn.execute(
            update(CONTACTS)
            .where(CONTACTS.c.id == bindparam("contact"))
            .values(timezone=bindparam("zone"), attributes=bindparam("attrs"), updated_at=now),
            [{"contact": s.id, "zone": s.timezone, "attrs": s.attributes} for s in states],
        )


async def find(
    conn: AsyncConnection, *, email: str | None = None, contact_id: int | None = None
) -> ContactRef | None:
    query = select(CONTACTS.c.id, CONTACTS.c.email, CONTACTS.c.email_key)
    if email is not None:
        query = query.where(CONTACTS.c.email_key == email_key(email))
    else:
        query = query.where(CONTACTS.c.id == contact_id)
    row = (await conn.execute(query)).first()
    return ContactRef(row.id, row.email, row.email_key) if row else None


async def ensure_many(
    conn: AsyncConnection, emails: list[str], *, now: datetime
) -> dict[str, ContactRef]:
    """The contacts for these addresses, created bare where missing; keyed by email key.

    Unlike ``upsert`` nothing is locked or changed: an event names a contact, it does not edit
    one. Two statements at most, whatever the number of addresses.
    """
    wanted = {email_key(e): e.strip() for e in emails}
    found = await _by_key(conn, list(wanted))
    missing = [k for k in wanted if k not in found]
    if missing:
        await conn.execute(
            dialect_insert(conn, CONTACTS).on_conflict_do_nothing(index_elements=["email_key"]),
            [
                {
                    "email": wanted[k],
                    "email_key": k,
                    "timezone": None,
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for k in sorted(missing)
            ],
        )
        found |= await _by_key(conn, missing)
    return found


async def _by_key(conn: AsyncConnection, keys: list[str]) -> dict[str, ContactRef]:
    if not keys:
        return {}
    rows = await conn.execute(
        select(CONTACTS.c.id, CONTACTS.c.email, CONTACTS.c.email_key).where(
            among(conn, CONTACTS.c.email_key, keys)
        )
    )
    return {r.email_key: ContactRef(r.id, r.email, r.email_key) for r in rows}


async def find_many(conn: AsyncConnection, contact_ids: set[int]) -> dict[int, ContactRef]:
    if not contact_ids:
        return {}
    rows = await conn.execute(
        select(CONTACTS.c.id, CONTACTS.c.email, CONTACTS.c.email_key).where(
            among(conn, CONTACTS.c.id, sorted(contact_ids))
        )
    )
    return {r.id: ContactRef(r.id, r.email, r.email_key) for r in rows}
