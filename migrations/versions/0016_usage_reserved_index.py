"""Usage rows not settled yet, found however old: a partial index on reserved rows, so
settling what a crash left reads only them (it read the last week's rows, and a bot
stopped longer left its reservations "not ended yet" for good).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESERVED_ONLY = "state = 'reserved'"


def upgrade() -> None:
    op.create_index(
        "ix_usage_reserved",
        "usage",
        ["created_at"],
        sqlite_where=sa.text(RESERVED_ONLY),
        postgresql_where=sa.text(RESERVED_ONLY),
    )


def downgrade() -> None:
    op.drop_index("ix_usage_reserved", table_name="usage")
