"""A model list says which endpoint URL it was fetched for, and is offered only while the
channel uses that URL: after the operator's DEFAULT_PROXY_URL changed between two starts,
channels still offered the old endpoint's models as this one's.

Lists stored before say nothing of it: one fetched while the channel or its server set a
URL is taken as that URL's; the others (the operator's URL or the source's own API, which
cannot be told apart here) are not offered until the next status check fetches them anew.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("model_cache", sa.Column("endpoint_url", sa.Text(), nullable=True))
    lists = sa.table(
        "model_cache",
        sa.column("platform", sa.String),
        sa.column("server_id", sa.String),
        sa.column("channel_id", sa.String),
        sa.column("endpoint_url", sa.Text),
    )
    configs = sa.table(
        "channel_configs",
        sa.column("platform", sa.String),
        sa.column("server_id", sa.String),
        sa.column("channel_id", sa.String),
        sa.column("proxy_url", sa.Text),
    )
    channel, server = configs.alias("channel"), configs.alias("server")
    own = (
        sa.select(channel.c.proxy_url)
        .where(
            channel.c.platform == lists.c.platform,
            channel.c.server_id == lists.c.server_id,
            channel.c.channel_id == lists.c.channel_id,
        )
        .scalar_subquery()
    )
    servers = (
        sa.select(server.c.proxy_url)
        .where(
            server.c.platform == lists.c.platform,
            server.c.server_id == lists.c.server_id,
            server.c.server_id != "",
            server.c.channel_id == "",
        )
        .scalar_subquery()
    )
    op.execute(lists.update().values(endpoint_url=sa.func.coalesce(own, servers)))


def downgrade() -> None:
    with op.batch_alter_table("model_cache") as batch:
        batch.drop_column("endpoint_url")
