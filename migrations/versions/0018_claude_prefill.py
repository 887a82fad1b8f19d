"""SillyTavern's Claude prefill settings: the assistant prefill (the text Claude's answer
begins with) and continue prefill (continue an answer as Claude's own start).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        batch.add_column(sa.Column("assistant_prefill", sa.Text(), nullable=True))
        batch.add_column(sa.Column("continue_prefill", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        batch.drop_column("continue_prefill")
        batch.drop_column("assistant_prefill")
