"""The data model. The database is the source of truth for every contact's progress."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, Table, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from sequences.store.db import JsonType, UTCDateTime


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class EnrollmentStatus(StrEnum):
    active = "active"
    completed = "completed"
    exited = "exited"
    cancelled = "cancelled"


class RunState(StrEnum):
    due = "due"
    claimed = "claimed"
    held = "held"  # an email waiting for a reviewer: no worker claims it until a decision
    # An email drafted ahead of its due time, waiting for the flow to reach it (the wait before
    # it to end): no worker claims it; reaching the step makes it due (sequences.engine.flow).
    ready = "ready"
    done = "done"
    cancelled = "cancelled"


class RunPhase(StrEnum):
    """Where an email row drafted ahead stands (sequences.review.ahead)."""

    ahead = "ahead"  # drafting before its due time; the flow has not reached the step yet
    late = "late"  # the flow reached it with no draft ready and the policy is to hold for one
    due = "due"  # the flow reached it: a send row like any other, with its draft (or not)


class MessageState(StrEnum):
    queued = "queued"  # recorded, not yet handed to the relay: safe to send (again)
    sending = "sending"  # committed right before its MAIL FROM: found after a crash -> unknown
    sent = "sent"
    retrying = "retrying"  # a 4xx: known not delivered, safe to send again
    bounced = "bounced"
    failed = "failed"
    unknown = "unknown"  # the process died mid-send; never resent blindly
    cancelled = "cancelled"  # never handed to the relay: the enrollment ended or was suppressed


LOSSES = "type IN ('unsubscribed', 'complained', 'bounced')"


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)
    email_key: str = Field(max_length=320, unique=True)  # lower-cased: unique case-insensitively
    timezone: str | None = Field(default=None, max_length=64)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JsonType))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Sequence(SQLModel, table=True):
    __tablename__ = "sequences"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=63, unique=True)
    name: str = Field(max_length=200)
    current_version: int = 1
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SequenceVersion(SQLModel, table=True):
    __tablename__ = "sequence_versions"
    __table_args__ = (UniqueConstraint("sequence_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    sequence_id: int = Field(foreign_key="sequences.id", index=True)
    version: int
    checksum: str = Field(max_length=64)
    definition: dict[str, Any] = Field(sa_column=Column(JsonType, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Enrollment(SQLModel, table=True):
    __tablename__ = "enrollments"
    __table_args__ = (
        # One active enrollment per contact per exclusive group (or per sequence without one).
        Index(
            "uq_enrollments_active_lock",
            "contact_id",
            "active_lock",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_enrollments_sequence_created", "sequence_id", "created_at"),  # latest first
    )
    id: str = Field(primary_key=True, max_length=32)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    sequence_id: int = Field(foreign_key="sequences.id", index=True)
    version_id: int = Field(foreign_key="sequence_versions.id")
    version: int
    status: str = Field(default=EnrollmentStatus.active, max_length=16, index=True)
    position: str | None = Field(default=None, max_length=63)
    active_lock: str = Field(max_length=200)
    exit_reason: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=300, unique=True)
    request_hash: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class StepRun(SQLModel, table=True):
    """The outbox: "step X of enrollment E is due at T". Claimed atomically, then acted on."""

    __tablename__ = "step_runs"
    __table_args__ = (Index("ix_step_runs_state_due", "state", "due_at"),)
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: str = Field(foreign_key="enrollments.id", index=True, max_length=32)
    step_id: str = Field(max_length=63)
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    state: str = Field(default=RunState.due, max_length=16)
    attempts: int = 0
    claim_token: str | None = Field(default=None, max_length=32)
    claimed_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    woken_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # Drafts ahead (sequences.review.ahead): ``phase`` is null for a row that never drafted
    # ahead, else a RunPhase. ``send_at``: when the email was expected to go when the row was
    # made (the wait's end), then when the flow reached it. ``drafted_at``: when the copy this
    # row will send was stored.
    phase: str | None = Field(default=None, max_length=8)
    send_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    drafted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    id: str = Field(primary_key=True, max_length=32)
    step_run_id: int = Field(foreign_key="step_runs.id", unique=True)  # one send per outbox row
    enrollment_id: str = Field(foreign_key="enrollments.id", index=True, max_length=32)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    step_id: str = Field(max_length=63)
    variant: str | None = Field(default=None, max_length=63)
    message_id: str = Field(max_length=255, unique=True)
    # Unlinkable tokens: ``token`` is the unsubscribe link's, ``open_token`` the pixel's (a
    # logged pixel URL must not unsubscribe anyone), each link has its own (``links.token``).
    # Messages sent before the split have no open_token: their pixel is ``token``.
    token: str = Field(max_length=64, unique=True)
    open_token: str | None = Field(default=None, max_length=64, unique=True)
    to_addr: str = Field(max_length=320)
    subject: str = Field(max_length=998)
    text_body: str
    html_body: str
    copy_source: str = Field(max_length=64)
    state: str = Field(default=MessageState.sending, max_length=16)
    attempts: int = 0
    last_reply: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    # The first human click, reply and conversion: step stats count each message once.
    clicked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    replied_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    converted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class Link(SQLModel, table=True):
    """Click tracking redirects only to URLs stored here, never to one taken from the request."""

    __tablename__ = "links"
    id: int | None = Field(default=None, primary_key=True)
    message_pk: str = Field(foreign_key="messages.id", index=True, max_length=32)
    token: str = Field(max_length=64, unique=True)
    url: str = Field(max_length=2000)


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_message_type_at", "message_pk", "type", "occurred_at"),
        # The few events that are losses (read per page by the console's counts); partial, so
        # the many opens and clicks cost it nothing.
        Index(
            "ix_events_losses",
            "message_pk",
            postgresql_where=text(LOSSES),
            sqlite_where=text(LOSSES),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=300, unique=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    enrollment_id: str | None = Field(default=None, index=True, max_length=32)
    message_pk: str | None = Field(default=None, max_length=32)
    type: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JsonType))
    is_bot: bool = False
    verified: bool = True  # opens are never verified: privacy proxies fetch every pixel
    source: str = Field(default="api", max_length=32)


class TimelineEntry(SQLModel, table=True):
    __tablename__ = "timeline"
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: str = Field(index=True, max_length=32)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    kind: str = Field(max_length=32)
    step_id: str | None = Field(default=None, max_length=63)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JsonType))


class Suppression(SQLModel, table=True):
    __tablename__ = "suppressions"
    id: int | None = Field(default=None, primary_key=True)
    email_key: str = Field(max_length=320, unique=True)
    reason: str = Field(max_length=32)
    detail: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    role: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class DraftStatus(StrEnum):
    pending = "pending"  # waiting for a reviewer
    approved = "approved"  # decided; the worker resumes the graph and sends
    rejected = "rejected"  # decided: regenerate, fallback or skip
    expired = "expired"  # the deadline passed and the sequence's policy decided
    resolved = "resolved"  # the worker acted on the decision
    cancelled = "cancelled"  # the enrollment ended while it waited


class DraftRecord(SQLModel, table=True):
    """A draft the graph stopped on for review; the graph's checkpoint holds its thread."""

    __tablename__ = "drafts"
    __table_args__ = (
        UniqueConstraint("step_run_id", "revision"),
        Index("ix_drafts_status_created", "status", "created_at"),
    )
    id: str = Field(primary_key=True, max_length=32)
    step_run_id: int = Field(foreign_key="step_runs.id", index=True)
    revision: int = 1
    thread_id: str = Field(max_length=120)
    enrollment_id: str = Field(foreign_key="enrollments.id", index=True, max_length=32)
    contact_id: int = Field(foreign_key="contacts.id")
    sequence_key: str = Field(max_length=63)
    step_id: str = Field(max_length=63)
    variant: str | None = Field(default=None, max_length=63)
    status: str = Field(default=DraftStatus.pending, max_length=16)
    model: str = Field(max_length=120)
    subject: str = Field(max_length=998)
    copy_: dict[str, Any] = Field(sa_column=Column("copy", JsonType, nullable=False))
    preview_html: str
    preview_text: str
    review: dict[str, Any] = Field(sa_column=Column(JsonType, nullable=False))
    request: dict[str, Any] = Field(sa_column=Column(JsonType, nullable=False))
    decision: dict[str, Any] | None = Field(default=None, sa_column=Column(JsonType))
    decided_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    deadline_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    # When the email is due to go: reviewers work soonest first (null: drafted when due).
    due_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    decided_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    # A soft claim: the reviewer who has it open, until when. Shown to others; never a lock.
    claimed_by: str | None = Field(default=None, max_length=200)
    claimed_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class ModelCallRecord(SQLModel, table=True):
    """The cost ledger: one row per request to the model, against the outbox row it drafted."""

    __tablename__ = "model_calls"
    id: int | None = Field(default=None, primary_key=True)
    step_run_id: int = Field(foreign_key="step_runs.id", index=True)
    sequence_key: str = Field(max_length=63)
    step_id: str = Field(max_length=63)
    model: str = Field(max_length=120)
    purpose: str = Field(max_length=16)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: int = 0
    outcome: str = Field(default="ok", max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ContactScore(SQLModel, table=True):
    """A contact's decayed engagement score and topic affinities, as of ``as_of``.

    Updated incrementally as events arrive: the stored values decay to the event's time, then
    the event's weight is added. Readers decay them to their own ``now``.
    """

    __tablename__ = "contact_scores"
    contact_id: int = Field(foreign_key="contacts.id", primary_key=True)
    score: float = 0.0
    affinities: dict[str, float] = Field(default_factory=dict, sa_column=Column(JsonType))
    events: int = 0
    as_of: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class StepStats(SQLModel, table=True):
    """Per sequence step and variant ('' for none): sends and the messages that drew a human
    click, a reply or a conversion. The Beta posteriors the bandit samples come from these."""

    __tablename__ = "step_stats"
    __table_args__ = (UniqueConstraint("sequence_key", "step_id", "variant"),)
    id: int | None = Field(default=None, primary_key=True)
    sequence_key: str = Field(max_length=63)
    step_id: str = Field(max_length=63)
    variant: str = Field(default="", max_length=63)
    sends: int = 0
    clicks: int = 0
    replies: int = 0
    conversions: int = 0


class ConsoleSession(SQLModel, table=True):
    """A browser signed in to the console with an API key. The cookie holds a random secret;
    only its SHA-256 is stored, and revoking the key ends its sessions with it."""

    __tablename__ = "console_sessions"
    id: str = Field(primary_key=True, max_length=64)  # sha256 of the cookie's secret
    key_id: int = Field(foreign_key="api_keys.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Meta(SQLModel, table=True):
    """Process-shared facts, such as the accelerated clock's anchor."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=1000)


def _table(model: type[SQLModel]) -> Table:
    """The Core table behind a model, for the set-based statements on hot paths."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


CONTACTS = _table(Contact)
SEQUENCES = _table(Sequence)
VERSIONS = _table(SequenceVersion)
ENROLLMENTS = _table(Enrollment)
RUNS = _table(StepRun)
MESSAGES = _table(Message)
LINKS = _table(Link)
EVENTS = _table(Event)
TIMELINE = _table(TimelineEntry)
SUPPRESSIONS = _table(Suppression)
API_KEYS = _table(ApiKey)
META = _table(Meta)
DRAFTS = _table(DraftRecord)
MODEL_CALLS = _table(ModelCallRecord)
CONTACT_SCORES = _table(ContactScore)
STEP_STATS = _table(StepStats)
CONSOLE_SESSIONS = _table(ConsoleSession)
