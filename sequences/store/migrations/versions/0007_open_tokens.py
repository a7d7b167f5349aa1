"""open tokens: the open pixel gets its own token, apart from the unsubscribe link's

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 21:50:00

Messages already sent keep open_token NULL: their pixel still carries ``token``, and the
pixel route falls back to it for them alone.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_token", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_messages_open_token", ["open_token"])


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("uq_messages_open_token", type_="unique")
        batch_op.drop_column("open_token")
