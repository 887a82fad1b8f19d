"""Engine creation for SQLite (aiosqlite) and PostgreSQL (asyncpg), same code above it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# How long a SQLite writer waits for another one before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
}


def normalize_url(url: str | URL) -> URL:
    """Give a plain `sqlite://` / `postgres(ql)://` URL its async driver; refuse others."""
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in _DRIVERS:
        return parsed.set(drivername=_DRIVERS[driver])
    if driver in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        return parsed
    raise ValueError(
        f"DATABASE_URL uses the {driver!r} driver; use sqlite+aiosqlite:///path/to/file.db "
        "or postgresql+asyncpg://user:password@host/dbname"
    )


class SQLiteDialect(SQLiteDialect_aiosqlite):
    """aiosqlite, minus the no-op rollbacks and commits.

    Each call into aiosqlite is a hop to its thread and back, and every read gave its
    connection back with a rollback, though SQLite opens no transaction for a SELECT:
    ~5 hops of a turn's ~30. SQLite itself says whether a transaction is open (read
    here without a hop, while the connection is between statements)."""

    supports_statement_cache = True  # what it changes is not SQL

    def do_rollback(self, dbapi_connection: Any) -> None:
        if dbapi_connection.driver_connection.in_transaction:
            super().do_rollback(dbapi_connection)  # type: ignore[no-untyped-call]

    def do_commit(self, dbapi_connection: Any) -> None:
        if dbapi_connection.driver_connection.in_transaction:
            super().do_commit(dbapi_connection)  # type: ignore[no-untyped-call]


# Every sqlite+aiosqlite engine of this process (the bot's, Alembic's) uses it.
registry.register("sqlite.aiosqlite", __name__, "SQLiteDialect")


def _sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run while a turn is written; foreign keys are off by default in
    # SQLite; busy_timeout makes a second writer wait instead of failing at once.
    # synchronous=NORMAL: in WAL mode a commit then waits for no fsync (only checkpoints
    # do); a killed process loses nothing, a power cut at most the last commits.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def create_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """An AsyncEngine for the URL; for an SQLite file, its directory is created first."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            path.resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, **kwargs)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(parsed, **kwargs)
