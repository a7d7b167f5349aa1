"""Request and response bodies of the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from api import limits
from sequences.store.contacts import MAX_ATTRIBUTES_BYTES

MAX_PROPERTIES_BYTES = 16_000


def deliverable(address: str) -> str:
    """Without SMTPUTF8 the local part must be ASCII; an international domain goes as IDNA."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError(
            "the part before @ must be ASCII: international mailboxes are not supported"
        )
    return f"{local}@{domain.encode('idna').decode('ascii')}"


def address(value: str) -> str:
    """A contact's address, checked as pydantic's EmailStr would, except that the reserved
    ``.test`` domain is accepted on purpose: local set-ups and the examples use it (their
    senders are on acme.test), and mail to it ends in the capture inbox or bounces, never
    at a stranger's."""
    try:
        checked = validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as error:
        raise ValueError(f"value is not a valid email address: {error}") from None
    return checked.normalized


Email = Annotated[
    str,
    AfterValidator(address),
    AfterValidator(deliverable),
    WithJsonSchema({"type": "string", "format": "email"}),
]


class ContactUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str | None = Field(
        None, description="IANA zone, e.g. Europe/Paris; drives send windows."
    )
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Free-form data the copy and branches read."
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return valid_zone(value)

    @field_validator("attributes")
    @classmethod
    def _size(cls, value: dict[str, Any]) -> dict[str, Any]:
        return bounded_attributes(value)


class ContactIn(ContactUpdate):
    email: Email = Field(description="The contact's address; unique case-insensitively.")


def valid_zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{value}' is not an IANA timezone such as Europe/Paris") from None
    return value


def bounded_attributes(value: dict[str, Any]) -> dict[str, Any]:
    """Attributes within the limits of api.limits; the error names the offending path."""
    return limits.checked(value, max_bytes=MAX_ATTRIBUTES_BYTES, what="attributes")


class EnrollmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sequence: str = Field(description="The sequence key.")
    contact: ContactIn


class BulkEnrollmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sequence: str
    contacts: list[ContactIn] = Field(min_length=1, max_length=1000)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None, max_length=200, description="Your event id; a repeated id is accepted once."
    )
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")
    email: Email | None = None
    contact_id: int | None = Field(None, ge=1, le=2**31 - 1)
    message_id: str | None = Field(
        None, max_length=255, description="Our Message-ID (or message id) it concerns."
    )
    occurred_at: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("properties")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        return limits.checked(value, max_bytes=MAX_PROPERTIES_BYTES, what="properties")

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("occurred_at needs a timezone, e.g. 2026-11-26T10:00:00Z")
        return value


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=1000)


class ApproveIn(BaseModel):
    """Approve a pending draft, optionally with edits (which pass the same guardrails)."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(None, min_length=1, max_length=200, description="A new subject.")
    preheader: str | None = Field(None, max_length=300, description="A new preheader.")
    body: str | None = Field(
        None,
        min_length=1,
        max_length=20_000,
        description="A new body: plain text, paragraphs separated by a blank line.",
    )
    note: str | None = Field(None, max_length=1000, description="Why, for the timeline.")


class RejectIn(BaseModel):
    """Reject a pending draft: draft it again, send the fallback copy, or skip the step."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["regenerate", "fallback", "skip"]
    note: str | None = Field(
        None, max_length=1000, description="For regenerate, what the new draft should change."
    )
