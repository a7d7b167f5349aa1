"""console read indexes: loss events by message (partial), enrollments by sequence and time

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOSSES = "type IN ('unsubscribed', 'complained', 'bounced')"


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_losses",
            ["message_pk"],
            unique=False,
            postgresql_where=sa.text(LOSSES),
            sqlite_where=sa.text(LOSSES),
        )
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_enrollments_sequence_created", ["sequence_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index("ix_enrollments_sequence_created")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_losses")
