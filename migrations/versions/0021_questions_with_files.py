"""A question that carried files (its own, or those of the message it replied to) says
so: an edit of its text keeps it as it was, since the files' text is part of its content.
Only Discord knew, and only of a message's own files: an edited reply to someone else's
file dropped that file's text, and an edited Matrix caption its file's.

Questions stored before hold images (image_count) or a file's fenced block (a line
that opens a fence, which a typed code block has too: such a question keeps its text
on an edit, as a question with files does).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added in place: SQLite's batch mode would make the table anew, and without its
    # AUTOINCREMENT (0010) a forgotten newest turn's id would be given again.
    op.add_column(
        "messages", sa.Column("files", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    messages = sa.table(
        "messages",
        sa.column("role", sa.String),
        sa.column("image_count", sa.Integer),
        sa.column("content", sa.Text),
        sa.column("files", sa.Boolean),
    )
    op.execute(
        messages.update()
        .where(
            messages.c.role == "user",
            sa.or_(messages.c.image_count > 0, messages.c.content.contains("\n```")),
        )
        .values(files=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("messages", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("files")
