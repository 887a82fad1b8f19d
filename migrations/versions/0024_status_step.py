"""A failed status check keeps what an admin does about it (its step) apart from what
failed: the outcome was kept in a member's words ("Only an admin can fix that …"), and
chat and /settings told an admin that too, never the step itself ("Check the URL …").

Checks stored before keep their wording (a member's) until the channel is checked again.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        batch.add_column(sa.Column("status_step", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_configs") as batch:
        batch.drop_column("status_step")
