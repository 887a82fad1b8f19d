"""Schema migrations run from code: no alembic.ini, works from an installed wheel."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.pool import NullPool

from bot.store.db import create_engine

_LOCK = 0x63686174626F74  # "chatbot": the advisory lock key of migrations


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config pointing at the packaged `migrations` directory."""
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    if url is not None:
        # An attribute, not a main option: ConfigParser would choke on `%` in passwords.
        config.attributes["url"] = url
    return config


def head() -> str | None:
    """The newest revision this code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _run(url: str, action: Callable[[Config], None]) -> None:
    # Our own engine (SQLite pragmas, parent directory) and a connection handed to env.py,
    # so migrations run inside the caller's event loop instead of a nested asyncio.run.
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # Processes starting together migrate one after another: the others
                # wait here, then find the schema at head (held until the commit).
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})

            def run(sync_connection: Connection) -> None:
                config = alembic_config(url)
                config.attributes["connection"] = sync_connection
                action(config)

            await connection.run_sync(run)
            await connection.commit()
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` (default: to the newest revision)."""
    await _run(url, lambda config: command.upgrade(config, revision))


async def upgrade_to_head(url: str) -> str | None:
    """Upgrade to the newest revision and return the revision the database is now at."""
    await upgrade(url)
    return await current(url)


async def downgrade(url: str, revision: str = "base") -> None:
    """Downgrade the database at `url` (default: drop every table the migrations made)."""
    await _run(url, lambda config: command.downgrade(config, revision))


async def current(url: str) -> str | None:
    """The revision the database at `url` is at, or None when it was never migrated."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
