"""Questions waiting for their conversation's turn, by the process holding them, so one
that went away without answering them (`kill -9`) is followed by a word in their channel.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "waiting_turns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("channel_id", sa.String(length=255), nullable=False),
        sa.Column("thread_id", sa.String(length=255), nullable=False),
        sa.Column("post_id", sa.String(length=255), nullable=False),
        sa.Column("served_by", sa.String(length=255), nullable=False),
        sa.Column("process", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_waiting_turns"),
    )
    op.create_index(
        "ix_waiting_turns_platform_served_by", "waiting_turns", ["platform", "served_by"]
    )


def downgrade() -> None:
    op.drop_index("ix_waiting_turns_platform_served_by", table_name="waiting_turns")
    op.drop_table("waiting_turns")
