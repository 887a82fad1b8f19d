"""Samplers that SillyTavern presets carry: top_k, frequency and presence penalty,
reasoning effort, Claude's thinking budget.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        batch.add_column(sa.Column("top_k", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("frequency_penalty", sa.Double(), nullable=True))
        batch.add_column(sa.Column("presence_penalty", sa.Double(), nullable=True))
        batch.add_column(sa.Column("reasoning_effort", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("thinking_budget", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        for column in (
            "thinking_budget",
            "reasoning_effort",
            "presence_penalty",
            "frequency_penalty",
            "top_k",
        ):
            batch.drop_column(column)
