"""Alembic environment: async engines, URL handed in by bot.store.migrate (or DATABASE_URL)."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from bot.store.db import normalize_url
from bot.store.migrate import migration_engine
from bot.store.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    url = url or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set DATABASE_URL or use `chatbot migrate`")
    return str(url)


def _render_item(kind: str, obj: Any, _context: AutogenContext) -> str | Literal[False]:
    # Revisions must not import app code: write our UTC type as the column type it wraps.
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: object) -> None:
    # Batch mode lets later revisions alter SQLite tables (which lack most ALTERs).
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        render_item=_render_item,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(
        url=normalize_url(_url()),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    # SQLite too: the migration engine begins its transaction itself, DDL included, so
    # the upgrade is one transaction (all steps or none) instead of one per step.
    _configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = migration_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (given := config.attributes.get("connection")) is not None:
    do_run_migrations(given)
else:
    asyncio.run(run_async_migrations())
