"""Turn state on messages (streaming, interrupted, failed …) and the kind of a failed check.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(
            sa.Column("state", sa.String(length=16), server_default="done", nullable=False)
        )
    with op.batch_alter_table("channel_configs") as batch:
        batch.add_column(sa.Column("status_kind", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        batch.drop_column("status_kind")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("state")
