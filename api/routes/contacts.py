"""Contacts: upsert by email (how a CRM keeps Dripline current) and read with enrollments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import ConnDep, DepsDep, Enroller, ReadConnDep, Reader
from api.limits import readable
from api.schemas import ContactUpdate, Email
from sequences.deps import Deps
from sequences.errors import Invalid, NotFound
from sequences.signals import scores
from sequences.store import contacts
from sequences.store.tables import (
    CONTACTS,
    ENROLLMENTS,
    SEQUENCES,
    SUPPRESSIONS,
)

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])
_EMAIL = TypeAdapter(Email)


def checked_email(email: str) -> str:
    try:
        return str(_EMAIL.validate_python(email))
    except ValidationError as error:
        message = error.errors()[0]["msg"]
        raise Invalid(
            "invalid_email", f"email: {message}", [{"path": "email", "message": message}]
        ) from None


@router.put("/{email}")
async def put_contact(
    email: str, body: ContactUpdate, conn: ConnDep, deps: DepsDep, _: Enroller
) -> dict[str, Any]:
    """Create or replace a contact's attributes and timezone; branches read the latest values."""
    ref = await contacts.upsert(
        conn,
        checked_email(email),
        now=deps.clock.now(),
        timezone=body.timezone,
        attributes=body.attributes,
        replace=True,
    )
    return await _contact(conn, deps, ref.id)


@router.get("/{email}")
async def get_contact(email: str, conn: ReadConnDep, deps: DepsDep, _: Reader) -> dict[str, Any]:
    """A contact's attributes, decayed engagement score, topic affinities, suppression and
    enrollments."""
    ref = await contacts.find(conn, email=checked_email(email))
    if ref is None:
        raise NotFound("unknown_contact", f"no contact with email '{email}'")
    return await _contact(conn, deps, ref.id)


@dataclass(frozen=True)
class ContactView:
    row: Any  # the contacts row
    standing: scores.ContactScore  # decayed to now
    enrollments: list[Any]  # enrollment rows, oldest first, with their sequence's key


async def load_contact(conn: AsyncConnection, deps: Deps, contact_id: int) -> ContactView | None:
    """A contact with their standing and enrollments (the API's and the console's view)."""
    row = (await conn.execute(select(CONTACTS).where(CONTACTS.c.id == contact_id))).first()
    if row is None:
        return None
    enrollments = await conn.execute(
        select(ENROLLMENTS, SEQUENCES.c.key.label("sequence"))
        .join(SEQUENCES, SEQUENCES.c.id == ENROLLMENTS.c.sequence_id)
        .where(ENROLLMENTS.c.contact_id == contact_id)
        .order_by(ENROLLMENTS.c.created_at)
    )
    standing = (
        await scores.contact_scores(conn, [contact_id], deps.clock.now(), scores.Decay.of(deps))
    )[contact_id]
    return ContactView(row, standing, list(enrollments))


async def _contact(conn: AsyncConnection, deps: Deps, contact_id: int) -> dict[str, Any]:
    view = await load_contact(conn, deps, contact_id)
    assert view is not None  # found by email just before
    row, standing = view.row, view.standing
    suppressed = (
        await conn.execute(
            select(SUPPRESSIONS.c.reason).where(SUPPRESSIONS.c.email_key == row.email_key)
        )
    ).scalar_one_or_none()
    return {
        "id": row.id,
        "email": row.email,
        "timezone": row.timezone,
        "attributes": readable(row.attributes or {}),  # rows stored before the limits too
        "score": round(standing.score, 3),
        "affinities": standing.view()["affinities"],
        "suppressed": suppressed,
        "enrollments": [
            {
                "id": e.id,
                "sequence": e.sequence,
                "version": e.version,
                "status": e.status,
                "position": e.position,
            }
            for e in view.enrollments
        ],
    }
