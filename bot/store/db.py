"""Engine creation for SQLite (aiosqlite) and PostgreSQL (asyncpg), same code above it."""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import aiosqlite
from sqlalchemy import event
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# How long a SQLite writer waits for another one before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000

# PostgreSQL across a network that goes silent (a partition, a failover, a dead VM)
# neither answers nor refuses: the driver waited on its socket until the kernel gave up,
# ~15 minutes, with no word to anyone. Seconds to connect (any engine); a statement's
# deadline on the bot's own engine (Store.open), where a turn's and a command's
# statements take milliseconds; and on the one it reads /usage sums, the usage export and
# housekeeping's survey of every stored message with, which may take a while over a year
# of rows or millions of messages. Migrations and `chatbot copy` have none: they may run
# long.
PG_CONNECT_SECONDS = 10.0
PG_STATEMENT_SECONDS = 15.0
PG_LONG_READ_SECONDS = 600.0
# Seconds a closing store gives what it cannot hurry: a write told to stop (past a
# shutdown's patience) to wind down, and each PostgreSQL connection to say goodbye. Past
# that (the server silent) the write is left to go with the process, and the connection
# is dropped unsaid.
CLOSE_GRACE = 1.0

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


class _PrefetchingConnection(sqlite3.Connection):
    """The connection in aiosqlite's thread: a statement's rows are read where it runs.

    aiosqlite runs `execute` on its thread and hands back the cursor; reading the rows
    would be a second hop. Here they are read in the same hop and kept for `take_rows`
    (SQLAlchemy runs one statement at a time on a connection, and takes the rows before
    the next)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rows: list[Any] = []

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        cursor = self.cursor()
        cursor.execute(sql, parameters)
        self._rows = cursor.fetchall() if cursor.description else []
        return cursor

    def take_rows(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows


class _Cursor:
    """A statement on aiosqlite in one hop to its thread.

    SQLAlchemy's adapter asks aiosqlite for a cursor, runs the statement, fetches the
    rows and closes the cursor: four hops, each waking both threads, and a wakeup is
    what a statement costs on a busy loop. Here the statement runs on the connection
    (its cursor is made and its rows read in the same hop, `_PrefetchingConnection`),
    and closing has nothing left to do on the thread: every row has been read, so
    SQLite has already finished the statement.
    """

    arraysize = 1

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self._cursor: aiosqlite.Cursor | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> _Cursor:
        return self

    async def execute(self, sql: str, parameters: Any = None) -> None:
        self._cursor = await self._connection.execute(sql, parameters)
        connection = self._cursor.connection
        assert isinstance(connection, _PrefetchingConnection)
        self._rows = connection.take_rows()

    async def executemany(self, sql: str, parameters: Any) -> None:
        self._cursor = await self._connection.executemany(sql, parameters)
        self._rows = []

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = self.arraysize if size is None else size
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []

    @property
    def description(self) -> Any:
        return None if self._cursor is None else self._cursor.description

    @property
    def rowcount(self) -> int:
        return -1 if self._cursor is None else self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return None if self._cursor is None else self._cursor.lastrowid


class _Connection:
    """An aiosqlite connection whose cursors are `_Cursor`s; all else is aiosqlite's own
    (SQLAlchemy's adapter reads some of its attributes directly)."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._aiosqlite = connection

    def cursor(self) -> _Cursor:
        return _Cursor(self._aiosqlite)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._aiosqlite, name)


T = TypeVar("T")


def _made_in_a_daemon_thread(make: Callable[[], T]) -> T:
    """`make()`, called from a daemon thread.

    aiosqlite gives each connection a worker thread, which inherits the daemon flag of
    the thread that creates it (see `threading.Thread`). As a daemon it never keeps the
    process from exiting when a connection was left open (SQLAlchemy flips the flag
    through a private attribute when it connects by itself; a connection of our own
    is made where the flag is already set)."""
    made: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            made.append(make())
        except BaseException as err:  # handed to the caller below
            errors.append(err)

    thread = threading.Thread(target=run, name="aiosqlite connect", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return made[0]


def _sqlite_connector(url: URL) -> Callable[[], Awaitable[_Connection]]:
    """An `async_creator` for the URL: aiosqlite connections with `_Cursor`s, opened with
    the arguments SQLAlchemy itself would pass (and `_PrefetchingConnection` as sqlite3's
    connection class)."""
    cargs, cparams = SQLiteDialect().create_connect_args(url)
    cparams["factory"] = _PrefetchingConnection

    async def connect() -> _Connection:
        pending = _made_in_a_daemon_thread(lambda: aiosqlite.connect(*cargs, **cparams))
        return _Connection(await pending)

    return connect


# Every sqlite+aiosqlite engine of this process (the bot's, Alembic's) uses it.
registry.register("sqlite.aiosqlite", __name__, "SQLiteDialect")


def sqlite_file(url: URL) -> Path | None:
    """The file an SQLite URL names (a path, or a `file:` URI as `read_only` writes
    one); None for a database in memory."""
    database = url.database or ""
    if database.startswith("file:"):
        if url.query.get("mode") == "memory":
            return None
        database = unquote(database.removeprefix("file:"))
    if not database or database.startswith(":memory:"):
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


def _on_read_only_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Nothing else: journal_mode=WAL would be a write (a backup in another mode changed).
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


class NotReadable(Exception):
    """An SQLite file this user cannot read where it lies; the message says why and
    what to do."""


def read_only(url: str | URL) -> URL:
    """The URL that opens the database without writing to it: an SQLite file with
    `mode=ro` (its journal mode left as it is). A WAL database's readers need its -shm
    file: where there is none and this user may not make one (a folder they may not
    write, a read-only mount), it is read as unchanging (`immutable=1`), which is right
    while no -wal file holds changes (a writer would have made the -shm file). Raises
    NotReadable when it cannot be read so. Other URLs are returned as they are."""
    parsed = normalize_url(url)
    path = sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is None:
        return parsed
    path = path.resolve()
    if not os.access(path, os.R_OK):
        raise NotReadable(
            f"this user may not read the database file {path}: run the command as the "
            "user the bot runs as, or on a copy this user may read."
        )
    query = {"uri": "true", "mode": "ro"}
    shm, wal = (path.with_name(path.name + end) for end in ("-shm", "-wal"))
    if not shm.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        if wal.is_file() and wal.stat().st_size > 0:
            raise NotReadable(
                f"cannot read the database file {path} where it is: its {wal.name} holds "
                f"changes not yet in it, which SQLite reads only with a {shm.name} file "
                f"beside it, and this user may not make one in {path.parent}. Copy "
                f"{path.name} and {wal.name} together to a folder this user may write, "
                "and point DATABASE_URL at the copy."
            )
        query["immutable"] = "1"
    return parsed.set(database="file:" + quote(str(path)), query=query)


@functools.cache
def _pg_connection_class() -> type[Any]:
    """asyncpg's connection, whose goodbye (`close`, as a pool or engine closes it) waits
    CLOSE_GRACE seconds at most, then drops it: a server gone silent never answers one,
    and asyncpg would wait its whole statement deadline, or forever, and raise."""
    # Imported here: asyncpg is not loaded by a bot on SQLite.
    import asyncpg  # type: ignore[import-untyped]

    class Connection(asyncpg.Connection):  # type: ignore[misc]
        async def close(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncpg's)
            try:
                await super().close(timeout=CLOSE_GRACE if timeout is None else timeout)
            except (TimeoutError, OSError):
                self.terminate()  # asyncpg has aborted it already; this says it is done

    return Connection


def create_engine(
    url: str | URL, *, statement_seconds: float | None = None, **kwargs: Any
) -> AsyncEngine:
    """An AsyncEngine for the URL; for an SQLite file, its directory is created first
    (a read-only one, `read_only`'s URL: nothing is made or written). PostgreSQL:
    connecting gives up after PG_CONNECT_SECONDS; with `statement_seconds`, a statement
    (and a wait for a pooled connection) after so many, as TimeoutError (StoreUnavailable)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None:
            path.resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, async_creator=_sqlite_connector(parsed), **kwargs)
        ro = parsed.query.get("mode") == "ro"
        listener = _on_read_only_sqlite_connect if ro else _on_sqlite_connect
        event.listen(engine.sync_engine, "connect", listener)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = {
        "timeout": PG_CONNECT_SECONDS,
        "connection_class": _pg_connection_class(),
        **kwargs.pop("connect_args", {}),
    }
    if statement_seconds is not None:
        connect_args["command_timeout"] = statement_seconds
        if kwargs.get("poolclass") is None:
            kwargs.setdefault("pool_timeout", statement_seconds)
    return create_async_engine(parsed, connect_args=connect_args, **kwargs)
