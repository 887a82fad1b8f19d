"""Answers stored before 0005 find their questions: each answer without one answers the
newest question before it in its channel or thread. Without it, regenerating such an
answer left it shown beside the new one (the model read both, run together), and a swipe
found only one answer.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A character's greeting answers itself (its reply_to is its own first id), and an answer
# copied into a thread as its first message has no question before it: both stay as
# they are. The conversation index (platform, server, channel, thread, id) serves the
# inner query.
_BACKFILL = """
UPDATE messages SET reply_to = (
    SELECT q.id FROM messages AS q
    WHERE q.platform = messages.platform
      AND q.server_id = messages.server_id
      AND q.channel_id = messages.channel_id
      AND q.thread_id = messages.thread_id
      AND q.id < messages.id
      AND q.role = 'user'
    ORDER BY q.id DESC
    LIMIT 1
)
WHERE role = 'assistant' AND reply_to IS NULL
"""


def upgrade() -> None:
    op.execute(_BACKFILL)


def downgrade() -> None:
    pass  # which answers had no question recorded is not kept: they keep the one found
