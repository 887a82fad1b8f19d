"""Every row of one database into another, empty one (`chatbot copy-database`): moving
from SQLite to PostgreSQL when a deployment outgrows one machine, or back.

Both are at the schema this code knows (the caller migrates the target). The source is
read as one snapshot; the target is written in one transaction, checked table by table
before its commit, so a failure leaves it as empty as it was. Rows keep their ids (posts
and images refer to messages by id), and new ones start after the highest any table ever
gave, as they would have in the source.
Secrets are copied as they are stored: encrypted for their channel, not for a database,
so the same BOT_SECRET_KEYS opens them there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    Column,
    LargeBinary,
    Table,
    bindparam,
    func,
    insert,
    inspect,
    select,
    text,
    tuple_,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.store.models import Base

BATCH_ROWS = 500
# A statement's parameters: PostgreSQL takes at most 32,767 (a batch is one INSERT).
BATCH_PARAMETERS = 30_000
# Rows holding files (images, card pictures; encrypted secrets are small but share the
# type): fewer at a time, so a batch stays tens of MB however large the files are.
BATCH_FILE_ROWS = 8
# How long a statement of the copy waits for a lock another session holds (PostgreSQL)
# before the copy gives up, saying who holds it: every process of the bot is stopped by
# then, so such a lock is a forgotten session's, and waiting would hang for good.
LOCK_WAIT_SECONDS = 10
_LOCK_TIMEOUT = "55P03"  # PostgreSQL's lock_not_available


class TargetNotEmpty(Exception):
    """The target already holds rows (`tables`): copying would mix two bots' data."""

    def __init__(self, tables: list[str]) -> None:
        super().__init__(tables)
        self.tables = tables


class CopyFailed(Exception):
    """Copying `table` failed with `cause` (a row the target refused); nothing committed."""

    def __init__(self, table: str, cause: DBAPIError) -> None:
        super().__init__(table, cause)
        self.table = table
        self.cause = cause


class CopyLocked(Exception):
    """A lock another session held (on `table`, when one was being read or written) was
    waited for LOCK_WAIT_SECONDS: given up, nothing committed."""

    def __init__(self, table: str | None) -> None:
        super().__init__(table)
        self.table = table


class CopyMismatch(Exception):
    """The target's count of a table differs from the source's after the copy (not
    committed)."""


@dataclass(slots=True)
class Progress:
    """How far a copy has come, for what to say if it is stopped: `table`, the one being
    copied; `committing` once its commit is under way (stopped then, it might stand or
    not, so it is let finish)."""

    table: str | None = None
    committing: bool = False


@dataclass(frozen=True, slots=True)
class Copied:
    table: str
    rows: int


def tables() -> list[Table]:
    """The bot's tables, each after the ones its rows refer to."""
    return list(Base.metadata.sorted_tables)


@asynccontextmanager
async def _snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose reads all see the database as it was at the first of them."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            await conn.begin()
            await conn.execute(text("SET TRANSACTION READ ONLY"))
            await _wait_for_locks(conn)
        else:
            # sqlite3 opens no transaction for reads; one begun by hand holds a snapshot
            # from its first read on (WAL), and lets writers go on meanwhile.
            await conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            await conn.rollback()


async def _wait_for_locks(conn: AsyncConnection) -> None:
    """This transaction's statements give up a lock wait after LOCK_WAIT_SECONDS."""
    await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT_SECONDS}s'"))


async def same_database(one: AsyncEngine, other: AsyncEngine) -> bool:
    """Whether two PostgreSQL engines reach the same database, however their URLs spell
    it (`localhost` or 127.0.0.1, a host in the query, a Unix socket): the same server
    running since the same moment, and the same database in it."""
    if one.dialect.name != "postgresql" or other.dialect.name != "postgresql":
        return False
    said = []
    for engine in (one, other):
        async with engine.connect() as conn:
            found = await conn.execute(_WHICH_DATABASE)
            said.append(tuple(found.one()))
    return said[0] == said[1]


_WHICH_DATABASE = text(
    "SELECT pg_postmaster_start_time(), oid FROM pg_database WHERE datname = current_database()"
)


async def lock_holders(engine: AsyncEngine, table: str | None) -> list[str]:
    """The other sessions that may hold what the copy waited for, described for the
    operator: those holding a lock on `table`, else any in an open transaction."""
    if engine.dialect.name != "postgresql":
        return []
    async with engine.connect() as conn:
        rows = []
        if table is not None:
            rows = list(await conn.execute(_HOLDERS.bindparams(table=table, every=False)))
        if not rows:
            rows = list(await conn.execute(_HOLDERS.bindparams(table=table or "", every=True)))
    return [_holder(*row) for row in rows]


def _holder(pid: int, user: str, program: str, client: object, state: str, took: float) -> str:
    said = [f"user {user}"]
    if program:
        said.insert(0, program)
    if client is not None:
        said.append(f"from {client}")
    if state:
        said.append(f"{state} for {int(took)} s" if took else state)
    return f"session {pid} ({', '.join(said)})"


# Client sessions in this database, but this one, with a transaction open (a lock lives
# as long as its transaction): those holding a lock on :table, or (:every) all of them.
_HOLDERS = text(
    "SELECT a.pid, a.usename, a.application_name, host(a.client_addr), a.state, "
    "COALESCE(EXTRACT(EPOCH FROM now() - COALESCE(a.state_change, a.xact_start)), 0) "
    "FROM pg_stat_activity a WHERE a.datname = current_database() "
    "AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL "
    "AND a.backend_type = 'client backend' AND (:every OR EXISTS (SELECT 1 FROM pg_locks l "
    "WHERE l.pid = a.pid AND l.granted AND l.relation = to_regclass(:table))) "
    "ORDER BY a.xact_start LIMIT 3"
)


async def foreign_tables(engine: AsyncEngine, migrated: bool) -> list[str]:
    """Tables and views in the database's default schema that are none of the bot's:
    another program's, in a database named by mistake, which a copy would mix the bot's
    tables into. Before the bot's schema is there (not `migrated`), every one is, even
    one named as the bot's are (`messages`). An extension's own (PostGIS's
    `spatial_ref_sys`, pg_stat_statements' views: a template or a host installs them in
    every new database) hold no program's data and are not counted."""
    ours = {table.name for table in tables()} | {"alembic_version"} if migrated else set()
    async with engine.connect() as conn:
        found = await conn.run_sync(
            lambda sync: [*inspect(sync).get_table_names(), *inspect(sync).get_view_names()]
        )
        if conn.dialect.name == "postgresql":
            ours |= set(await conn.scalars(_OF_EXTENSIONS))
    return sorted(set(found) - ours)


# The tables and views in the default schema that belong to an installed extension.
_OF_EXTENSIONS = text(
    "SELECT c.relname FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass "
    "AND d.objid = c.oid AND d.deptype = 'e' "
    "WHERE c.relnamespace = current_schema()::regnamespace"
)


async def filled(conn: AsyncConnection) -> list[str]:
    """The bot's tables that hold any row on `conn`."""
    found = []
    for table in tables():
        try:
            if await conn.scalar(select(1).select_from(table).limit(1)) is not None:
                found.append(table.name)
        except DBAPIError as err:
            if lock_timed_out(err):
                raise CopyLocked(table.name) from err
            raise
    return found


def lock_timed_out(err: DBAPIError) -> bool:
    """Whether `err` is a lock waited for LOCK_WAIT_SECONDS (_wait_for_locks)."""
    return str(getattr(err.orig, "sqlstate", "")) == _LOCK_TIMEOUT


async def _copy_table(source: AsyncConnection, target: AsyncConnection, table: Table) -> int:
    """`table`'s rows in primary-key order, a batch at a time (keyset paging: never all
    of a large history in memory)."""
    key = list(table.primary_key.columns)
    files = any(isinstance(c.type, LargeBinary) for c in table.columns)
    size = BATCH_FILE_ROWS if files else min(BATCH_ROWS, BATCH_PARAMETERS // len(table.columns))
    # A JSON column's SQL NULL (not set) stays NULL: JSON's own binding writes the JSON
    # text `null` for None, which reads the same here but is no NULL to SQL.
    nulls = {
        c.key: bindparam(c.key, type_=JSON(none_as_null=True))
        for c in table.columns
        if isinstance(c.type, JSON)
    }
    statement = insert(table).values(nulls) if nulls else insert(table)
    copied = 0
    last: tuple[object, ...] | None = None
    while True:
        query = select(table).order_by(*key).limit(size)
        if last is not None:
            query = query.where(tuple_(*key) > tuple_(*last) if len(key) > 1 else key[0] > last[0])
        rows = [dict(row) for row in (await source.execute(query)).mappings()]
        if not rows:
            return copied
        await target.execute(statement, rows)
        copied += len(rows)
        last = tuple(rows[-1][column.key] for column in key)


def _id_column(table: Table) -> Column[int] | None:
    """The table's own numbered id, if it has one (not a hash, not a composite key)."""
    key = list(table.primary_key.columns)
    return key[0] if len(key) == 1 and key[0].type.python_type is int else None


async def ids_used(conn: AsyncConnection) -> dict[str, int]:
    """The largest id each table has ever handed out, deleted rows' included: a turn's id
    is never given twice (buttons name turns by it), so a copy starts after these."""
    used: dict[str, int] = {}
    for table in tables():
        column = _id_column(table)
        if column is None:
            continue
        highest = await conn.scalar(select(func.coalesce(func.max(column), 0)))
        if conn.dialect.name == "postgresql":
            sequence = func.pg_get_serial_sequence(table.name, column.name)
            last = await conn.scalar(select(func.pg_sequence_last_value(sequence)))
        elif table.dialect_options["sqlite"]["autoincrement"]:
            query = text("SELECT seq FROM sqlite_sequence WHERE name = :name")
            last = await conn.scalar(query, {"name": table.name})
        else:
            last = None  # SQLite reuses the ids after the highest row itself
        used[table.name] = max(int(highest or 0), int(last or 0))
    return used


async def _continue_ids(target: AsyncConnection, used: dict[str, int]) -> None:
    """Each table's next id after the `used` ones."""
    for table in tables():
        column = _id_column(table)
        if column is None or not used.get(table.name):
            continue
        if target.dialect.name == "postgresql":
            sequence = func.pg_get_serial_sequence(table.name, column.name)
            await target.execute(select(func.setval(sequence, used[table.name])))
        elif table.dialect_options["sqlite"]["autoincrement"]:
            # The copied rows made its row (at their highest id), unless none was left.
            values = {"name": table.name, "seq": used[table.name]}
            await target.execute(text("DELETE FROM sqlite_sequence WHERE name = :name"), values)
            await target.execute(
                text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :seq)"), values
            )


async def copy_rows(
    source: AsyncEngine, target: AsyncEngine, progress: Progress | None = None
) -> list[Copied]:
    """Every row of `source` into `target`, which must hold none (TargetNotEmpty). All
    or nothing: returns what was copied, table by table; `progress` follows it."""
    progress = Progress() if progress is None else progress
    copied: list[Copied] = []
    try:
        async with _snapshot(source) as reading, target.begin() as writing:
            if writing.dialect.name == "postgresql":
                await _wait_for_locks(writing)
            await _copy_all(reading, writing, progress, copied)
    except (CopyFailed, DBAPIError) as err:
        if lock_timed_out(err.cause if isinstance(err, CopyFailed) else err):
            raise CopyLocked(progress.table) from err
        raise
    return copied


async def _copy_all(
    reading: AsyncConnection, writing: AsyncConnection, progress: Progress, copied: list[Copied]
) -> None:
    found = await filled(writing)
    if found:
        raise TargetNotEmpty(found)
    for table in tables():
        progress.table = table.name
        try:
            rows = await _copy_table(reading, writing, table)
        except DBAPIError as err:
            raise CopyFailed(table.name, err) from err
        counted = await reading.scalar(select(func.count()).select_from(table))
        written = await writing.scalar(select(func.count()).select_from(table))
        if not rows == counted == written:
            raise CopyMismatch(
                f"{table.name}: {counted} row(s) read, {rows} copied, {written} there"
            )
        copied.append(Copied(table.name, rows))
    await _continue_ids(writing, await ids_used(reading))
    progress.committing = True  # the block's end commits, with no await before it
