"""Which chat platform messages show which stored turns, so deleting one forgets its turn;
message ids that are never used twice (SQLite's table remade for it).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("post_id", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_posts_message_id_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_posts"),
    )
    op.create_index(
        "ix_posts_platform_post_id_message_id",
        "posts",
        ["platform", "post_id", "message_id"],
        unique=True,
    )
    op.create_index("ix_posts_message_id", "posts", ["message_id"])
    if op.get_bind().dialect.name == "sqlite":
        # Once turns can be forgotten one by one, SQLite would give the next message the
        # id of a newest one deleted: an answer's buttons (cc:regen:7) and what a
        # front-end remembers would then name another turn. AUTOINCREMENT never reuses
        # an id (PostgreSQL's sequences never do). The table is made anew to get it.
        with op.batch_alter_table(
            "messages", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "messages", recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
    op.drop_index("ix_posts_message_id", table_name="posts")
    op.drop_index("ix_posts_platform_post_id_message_id", table_name="posts")
    op.drop_table("posts")
