"""drafts ahead: an email's outbox row drafts before its due time (phase, send_at, drafted_at), and
a draft for review carries the email's due time (drafts.due_at)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sequences.store.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, sequences.store.db.UTCDateTime(timezone=True), nullable=True)


def upgrade() -> None:
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.add_column(_when("send_at"))
        batch_op.add_column(_when("drafted_at"))
        batch_op.add_column(sa.Column("phase", sa.String(length=8), nullable=True))
    with op.batch_alter_table("drafts", schema=None) as batch_op:
        batch_op.add_column(_when("due_at"))


def downgrade() -> None:
    with op.batch_alter_table("drafts", schema=None) as batch_op:
        batch_op.drop_column("due_at")
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_column("phase")
        batch_op.drop_column("drafted_at")
        batch_op.drop_column("send_at")
