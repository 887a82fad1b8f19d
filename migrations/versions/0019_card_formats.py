"""SillyTavern's formats of a card's world info, scenario and personality (a preset's
`wi_format`, `scenario_format` and `personality_format`).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        batch.add_column(sa.Column("wi_format", sa.Text(), nullable=True))
        batch.add_column(sa.Column("scenario_format", sa.Text(), nullable=True))
        batch.add_column(sa.Column("personality_format", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        batch.drop_column("personality_format")
        batch.drop_column("scenario_format")
        batch.drop_column("wi_format")
