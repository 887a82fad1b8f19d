"""Usage accounting: one row per provider call that costs, indexed for per-day,
per-user, per-channel and per-server sums.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("channel_id", sa.String(length=255), nullable=False),
        sa.Column("thread_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Boolean(), nullable=False),
        sa.Column("key_scope", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="settled", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage"),
    )
    op.create_index("ix_usage_day", "usage", ["day"])
    op.create_index("ix_usage_platform_server_id_day", "usage", ["platform", "server_id", "day"])
    op.create_index(
        "ix_usage_platform_server_id_channel_id_day",
        "usage",
        ["platform", "server_id", "channel_id", "day"],
    )
    op.create_index("ix_usage_platform_user_id_day", "usage", ["platform", "user_id", "day"])


def downgrade() -> None:
    op.drop_index("ix_usage_platform_user_id_day", table_name="usage")
    op.drop_index("ix_usage_platform_server_id_channel_id_day", table_name="usage")
    op.drop_index("ix_usage_platform_server_id_day", table_name="usage")
    op.drop_index("ix_usage_day", table_name="usage")
    op.drop_table("usage")
