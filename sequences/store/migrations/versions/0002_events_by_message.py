"""events by message: click handling looks up a message's recent clicks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 11:15:30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_events_message_type_at", "events", ["message_pk", "type", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_events_message_type_at", table_name="events")
