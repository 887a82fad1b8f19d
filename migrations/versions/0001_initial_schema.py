"""Initial schema: channel configs, encrypted secrets, messages, model cache, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.String:
    return sa.String(length=255)


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _place() -> list[sa.Column[str]]:
    """platform, server_id, channel_id: the key every table shares."""
    return [
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("server_id", _id(), nullable=False),
        sa.Column("channel_id", _id(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "channel_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        *_place(),
        sa.Column("source", sa.String(length=16), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("proxy_url", sa.Text(), nullable=True),
        sa.Column("resolved_url", sa.Text(), nullable=True),
        sa.Column("bypass_status_check", sa.Boolean(), nullable=True),
        sa.Column("show_external_models", sa.Boolean(), nullable=True),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("temperature", sa.Double(), nullable=True),
        sa.Column("top_p", sa.Double(), nullable=True),
        sa.Column("max_tokens", sa.Integer(), nullable=True),
        sa.Column("context_tokens", sa.Integer(), nullable=True),
        sa.Column("stop", sa.JSON(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("reply_mode", sa.String(length=16), nullable=True),
        sa.Column("show_reasoning", sa.Boolean(), nullable=True),
        sa.Column("mistral_safe_prompt", sa.Boolean(), nullable=True),
        sa.Column("status_ok", sa.Boolean(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_checked_url", sa.Text(), nullable=True),
        sa.Column("status_checked_at", _utc(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_channel_configs"),
        sa.UniqueConstraint(
            "platform",
            "server_id",
            "channel_id",
            name="uq_channel_configs_platform_server_id_channel_id",
        ),
    )
    op.create_table(
        "secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        *_place(),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_secrets"),
        sa.UniqueConstraint(
            "platform",
            "server_id",
            "channel_id",
            "name",
            name="uq_secrets_platform_server_id_channel_id_name",
        ),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        *_place(),
        sa.Column("thread_id", _id(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("token_estimate", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_index(
        "ix_messages_platform_server_id_channel_id_thread_id_id",
        "messages",
        ["platform", "server_id", "channel_id", "thread_id", "id"],
    )
    op.create_table(
        "model_cache",
        sa.Column("id", sa.Integer(), nullable=False),
        *_place(),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("fetched_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_cache"),
        sa.UniqueConstraint(
            "platform",
            "server_id",
            "channel_id",
            "source",
            name="uq_model_cache_platform_server_id_channel_id_source",
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        *_place(),
        sa.Column("actor_id", _id(), nullable=False),
        sa.Column("actor_name", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index(
        "ix_audit_log_platform_server_id_channel_id_id",
        "audit_log",
        ["platform", "server_id", "channel_id", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_audit_log_platform_server_id_channel_id_id", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("model_cache")
    op.drop_index("ix_messages_platform_server_id_channel_id_thread_id_id", table_name="messages")
    op.drop_table("messages")
    op.drop_table("secrets")
    op.drop_table("channel_configs")
