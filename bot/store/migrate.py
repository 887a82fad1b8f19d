"""Schema migrations run from code: no alembic.ini, works from an installed wheel.

Alembic (with Mako and Pygments, ~12 MB) is imported only when the schema has to
change: a start on a database already at the newest revision finds that with one
SELECT and the revision lines of the migration files.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections import Counter
from collections.abc import Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from bot.store.db import create_engine, sqlite_file
from bot.store.errors import classify

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from alembic.config import Config

_LOCK = 0x63686174626F74  # "chatbot": the advisory lock key of migrations
MIGRATION_WAIT_MS = 300_000  # SQLite: how long a start waits for another one's migration
# SQLite: a start still waiting for another process's write lock after this says so once
# (a second `chatbot run` or a migration holding it; the wait was silent for minutes).
LOCK_NOTICE_MS = 3_000
_REVISION = re.compile(r'^(down_revision|revision)\b[^=\n]*=\s*"([^"]+)"', re.MULTILINE)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config pointing at the packaged `migrations` directory."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    if url is not None:
        # An attribute, not a main option: ConfigParser would choke on `%` in passwords.
        config.attributes["url"] = url
    return config


def head() -> str | None:
    """The newest revision this code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


class UnknownRevision(Exception):
    """The database is at a revision no migration file here names: a newer version of the
    bot upgraded it."""

    def __init__(self, revision: str) -> None:
        super().__init__(revision)
        self.revision = revision


class MigrationBroke(OSError):
    """A migration left rows that refer to missing ones: it is not committed."""


class MigrationFailed(Exception):
    """Upgrading the schema from `revision` failed (`cause`); the database was left as it
    was (each upgrade runs as one transaction)."""

    def __init__(self, revision: str | None, cause: OSError | DBAPIError) -> None:
        super().__init__(revision, cause)
        self.revision = revision
        self.cause = cause


def _file_revisions() -> tuple[set[str], set[str]]:
    """(revisions, down_revisions) the migration files state, read without Alembic."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for script in (files("migrations") / "versions").iterdir():
        if not script.name.endswith(".py") or script.name.startswith("_"):
            continue
        for kind, value in _REVISION.findall(script.read_text(encoding="utf-8")):
            (revisions if kind == "revision" else downs).add(value)
    return revisions, downs


def newest_file_revision() -> str | None:
    """The newest revision as the migration files state it: the one revision no file
    names as its down_revision (None when that is not exactly one)."""
    revisions, downs = _file_revisions()
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def is_known(revision: str) -> bool:
    """Whether a migration file here names `revision` (one none names: a newer version's)."""
    return revision in _file_revisions()[0]


def _one_sqlite_transaction(engine: AsyncEngine) -> None:
    """SQLite: every step in one transaction, DDL included (the driver would commit each
    CREATE at once), begun holding the write lock. A second process starting together
    waits for it, then finds the schema migrated; a failure leaves no step half done.

    Foreign keys are off meanwhile, as SQLite's own procedure for remaking a table asks:
    dropping the old `messages` would otherwise delete every row referring to it (ON
    DELETE CASCADE). They are checked before the commit instead (_run)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _driver_leaves_transactions_to_us(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:  # a long migration of a big database is waited for, not failed
            cursor.execute(f"PRAGMA busy_timeout={MIGRATION_WAIT_MS}")
            cursor.execute("PRAGMA foreign_keys=OFF")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_with_the_write_lock(connection: Connection) -> None:
        notice = min(LOCK_NOTICE_MS, MIGRATION_WAIT_MS)
        # The first try on the driver's own cursor: a wait cut short to say so is no
        # failure of the upgrade (_first_failure would keep it to blame a later one on).
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        waiting = refused = False
        try:
            cursor.execute(f"PRAGMA busy_timeout={notice}")
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as err:
                if err.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                waiting = True
            left = MIGRATION_WAIT_MS - notice if waiting else MIGRATION_WAIT_MS
            cursor.execute(f"PRAGMA busy_timeout={left}")
        except sqlite3.Error:
            # Anything but the lock: asked again below, through SQLAlchemy, so it is
            # raised as the driver's errors are (DBAPIError, which a start says in words).
            refused = True
        finally:
            cursor.close()
        if refused:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={MIGRATION_WAIT_MS}")
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        if not waiting:
            return
        log.warning(
            "waiting for the database lock on %s: another process holds it (a second "
            "chatbot, or a migration); waiting up to %s",
            sqlite_file(engine.url) or engine.url.database,
            f"{MIGRATION_WAIT_MS / 60_000:g} minutes",
        )
        # The rest of the wait; a lock held past it fails as it did without the notice.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        connection.exec_driver_sql(f"PRAGMA busy_timeout={MIGRATION_WAIT_MS}")


def migration_engine(url: str) -> AsyncEngine:
    """The engine migrations run on: ours (SQLite pragmas, parent directory), one
    connection, and on SQLite one transaction that holds the write lock."""
    engine = create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        _one_sqlite_transaction(engine)
    return engine


async def _run(url: str, action: Callable[[Config], None], lock_wait: float | None = None) -> None:
    # A connection handed to env.py, so migrations run inside the caller's event loop
    # instead of a nested asyncio.run.
    engine = migration_engine(url)
    said = _first_failure(engine)
    try:
        async with engine.connect() as connection:
            await _give_up_locks(connection, lock_wait)
            if connection.dialect.name == "postgresql":
                # Processes starting together migrate one after another: the others
                # wait here, then find the schema at head (held until the commit).
                held = text("SELECT pg_try_advisory_xact_lock(:key)")
                if not (await connection.execute(held, {"key": _LOCK})).scalar():
                    # Said, or a start behind a long one (or a killed one whose server
                    # process still runs it) waits without a word.
                    log.info(
                        "another process is upgrading the database schema; waiting for it to finish"
                    )
                    lock = text("SELECT pg_advisory_xact_lock(:key)")
                    await connection.execute(lock, {"key": _LOCK})
            broken_before: set[tuple[Any, ...]] = set()
            if connection.dialect.name == "sqlite":
                # Begun here (with the write lock), not by Alembic: Alembic commits a
                # transaction it began itself, before the check below could undo it.
                await connection.begin()
                broken_before = await _broken_references(connection)

            def run(sync_connection: Connection) -> None:
                config = alembic_config(url)
                config.attributes["connection"] = sync_connection
                action(config)

            await connection.run_sync(run)
            if connection.dialect.name == "sqlite":
                broken = await _broken_references(connection) - broken_before
                if broken:  # rolled back with the rest when the connection closes
                    raise MigrationBroke(f"{len(broken)} rows refer to rows that are gone")
                _say_broken_before(broken_before)
            await connection.commit()
    except DBAPIError as err:
        if said and classify(err) is None:
            raise said[0] from err
        raise
    finally:
        await engine.dispose()


async def _broken_references(connection: AsyncConnection) -> set[tuple[Any, ...]]:
    """SQLite: the rows that refer to a row that is not there (table, rowid, parent, fk)."""
    return {tuple(row) for row in await connection.exec_driver_sql("PRAGMA foreign_key_check")}


def _say_broken_before(broken: set[tuple[Any, ...]]) -> None:
    """Rows that referred to missing ones before the upgrade (deleted where foreign keys
    are off: the sqlite3 shell) are no failure of it: said, and left as they are."""
    counts = Counter((table, parent) for table, _rowid, parent, _fk in broken)
    for (table, parent), count in sorted(counts.items()):
        log.warning(
            "%d row(s) of %s refer to %s rows that are gone (so before this upgrade too; "
            "left as they are)",
            count,
            table,
            parent,
        )


def _first_failure(engine: AsyncEngine) -> list[DBAPIError]:
    """The first failure on `engine` that says what is wrong (a full disk, a lock), kept
    for when a later one is raised instead: SQLite rolls a whole transaction back on a
    full disk, and Alembic's clean-up of its half-made table then fails ("no such table")."""
    said: list[DBAPIError] = []

    @event.listens_for(engine.sync_engine, "handle_error")
    def _keep(context: ExceptionContext) -> None:
        failure = context.sqlalchemy_exception
        if not said and isinstance(failure, DBAPIError) and classify(failure) is not None:
            said.append(failure)

    return said


async def _give_up_locks(connection: AsyncConnection, lock_wait: float | None) -> None:
    """PostgreSQL: with `lock_wait`, a statement on `connection` that waits so many
    seconds for another session's lock fails (55P03) instead of waiting for good. The
    whole session's (the connection is this call's alone, closed after it)."""
    if lock_wait is not None and connection.dialect.name == "postgresql":
        await connection.exec_driver_sql(f"SET lock_timeout = '{int(lock_wait * 1000)}ms'")
        await connection.commit()  # a setting made in no transaction of Alembic's


async def upgrade(url: str, revision: str = "head", *, lock_wait: float | None = None) -> None:
    """Upgrade the database at `url` (default: to the newest revision); `lock_wait`:
    _give_up_locks'."""
    from alembic import command

    await _run(url, lambda config: command.upgrade(config, revision), lock_wait)


async def upgrade_to_head(url: str, *, lock_wait: float | None = None) -> str | None:
    """Upgrade to the newest revision and return the revision the database is now at.
    `lock_wait`: seconds a wait for another session's lock lasts before it fails (a
    copy's target, which no process of the bot holds); None: as long as it takes."""
    at = await current(url, lock_wait=lock_wait)
    if at is not None and at == newest_file_revision():
        return at
    if at is not None and not is_known(at):
        raise UnknownRevision(at)  # Alembic would say it "can't locate" it, in a traceback
    try:
        await upgrade(url, lock_wait=lock_wait)
    except (OSError, DBAPIError) as err:
        raise MigrationFailed(at, err) from err
    return await current(url, lock_wait=lock_wait)


async def downgrade(url: str, revision: str = "base") -> None:
    """Downgrade the database at `url` (default: drop every table the migrations made)."""
    from alembic import command

    await _run(url, lambda config: command.downgrade(config, revision))


def _version(sync: Connection) -> str | None:
    # Alembic's own bookkeeping table: one row holding the revision (none before any).
    if not inspect(sync).has_table("alembic_version"):
        return None
    rows = sync.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


async def current(url: str | URL, *, lock_wait: float | None = None) -> str | None:
    """The revision the database at `url` is at, or None when it was never migrated.
    `lock_wait`: _give_up_locks'."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await _give_up_locks(connection, lock_wait)
            return await connection.run_sync(_version)
    finally:
        await engine.dispose()
