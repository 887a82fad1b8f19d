"""A preset's other two prompts: the auxiliary prompt (SillyTavern's `nsfw`) and the
post-history instructions (its `jailbreak`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        batch.add_column(sa.Column("auxiliary_prompt", sa.Text(), nullable=True))
        batch.add_column(sa.Column("post_history_prompt", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        batch.drop_column("post_history_prompt")
        batch.drop_column("auxiliary_prompt")
