"""Quotas and who may chat: limits and access rules per channel or server, and the
per-server lock rows that make a charge atomic across processes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "limits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("channel_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=True),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_limits"),
        sa.UniqueConstraint(
            "platform",
            "server_id",
            "channel_id",
            "name",
            name="uq_limits_platform_server_id_channel_id_name",
        ),
    )
    op.create_table(
        "access_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("channel_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("effect", sa.String(length=8), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_rules"),
        sa.UniqueConstraint(
            "platform",
            "server_id",
            "channel_id",
            "kind",
            "subject",
            name="uq_access_rules_platform_server_id_channel_id_kind_subject",
        ),
    )
    op.create_table(
        "quota_locks",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("channel_id", sa.String(length=255), nullable=False),
        sa.Column("charges", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "server_id", "channel_id", name="pk_quota_locks"),
    )


def downgrade() -> None:
    op.drop_table("quota_locks")
    op.drop_table("access_rules")
    op.drop_table("limits")
