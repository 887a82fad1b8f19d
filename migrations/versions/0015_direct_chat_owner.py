"""Who set a secret in a Matrix direct chat for that chat (its owner), so it is held once
the owner is no longer in the room, also when the bot did not see a third member come
and go (it was stopped, or one sync held it all).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("secrets") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=255), nullable=True))
    # The owners of the secrets stored before this: whoever set each last, as the audit
    # log says (it names the secret and its setter, never the value).
    op.execute(
        "UPDATE secrets SET owner = ("
        " SELECT a.actor_id FROM audit_log a"
        " WHERE a.platform = secrets.platform AND a.server_id = secrets.server_id"
        " AND a.channel_id = secrets.channel_id AND a.action = 'secret.set'"
        " AND a.detail = secrets.name || ' set'"
        " ORDER BY a.id DESC LIMIT 1"
        ") WHERE direct_chat IN ('personal', 'legacy')"
    )


def downgrade() -> None:
    with op.batch_alter_table("secrets") as batch:
        batch.drop_column("owner")
