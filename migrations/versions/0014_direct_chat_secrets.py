"""A secret set in a Matrix direct chat for that chat itself (its owner's), and whether
it is held since the room became a group; those stored before are marked as not known yet.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("secrets") as batch:
        batch.add_column(sa.Column("direct_chat", sa.String(length=16), nullable=True))
    # A Matrix room's own secrets stored before this: whether each was set in a direct
    # chat for itself is not known. The bot's next start decides by the room as it is
    # then (a direct chat: its owner's; else the room's).
    op.execute(
        "UPDATE secrets SET direct_chat = 'legacy' WHERE platform = 'matrix' AND channel_id <> ''"
    )


def downgrade() -> None:
    # A direct chat's key held since the room became a group would be the room's to the
    # code before this (and, upgraded again, "legacy": the room's too): its owner would
    # pay for the group's questions. It goes, as a held one waits to be set again.
    op.execute("DELETE FROM secrets WHERE direct_chat = 'held'")
    with op.batch_alter_table("secrets") as batch:
        batch.drop_column("direct_chat")
