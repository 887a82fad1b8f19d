"""Turn variants: which question an answer answers, hidden alternatives, who asked.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("reply_to", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("hidden", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("author_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    # Answers not shown (the alternatives of a regenerated one) would all show again to
    # the code before 0005, run together into what the model reads: they go.
    op.execute(
        "DELETE FROM message_images WHERE message_id IN (SELECT id FROM messages WHERE hidden)"
    )
    op.execute("DELETE FROM messages WHERE hidden")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("author_id")
        batch.drop_column("hidden")
        batch.drop_column("reply_to")
