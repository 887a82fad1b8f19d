"""What every part of the store shares: the engine, transactions with retries, row keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, Select, Table, and_, bindparam, select, text, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.store.errors import with_retry
from bot.store.models import AuditRow, Base
from bot.types import Actor, ChannelRef, Scope
from bot.types.text import clean_text

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql

T = TypeVar("T")
H = TypeVar("H", AsyncSession, AsyncConnection)  # what a transaction's work is handed
Key = tuple[str, str, str]  # (platform, server, channel); channel "" = the server's row

NAME_CHARS = 255
_ACTION_CHARS = 64


def usage_model(model: str) -> str:
    """A usage row's model, reserved or settled alike: printable and at most NAME_CHARS.
    A model id is checked where it is set; one a row holds otherwise (written by SQL)
    would be a row of its own, control characters and all, in /usage and the export."""
    return clean_text(model)[:NAME_CHARS]


class Database:
    """The engine, and transactions that are retried as a whole when the failure passes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.postgres = engine.dialect.name == "postgresql"
        # SQLite has one writer; queueing writers here instead of in its busy timeout
        # keeps a burst of turns (hundreds of channels at once) from "database is locked".
        self._write_lock = asyncio.Lock() if not self.postgres else None

    async def write(
        self, what: str, work: Callable[[AsyncSession], Awaitable[T]], *, reads_first: bool = False
    ) -> T:
        """Run `work` in one transaction; all of it is saved or none (StoreError).

        `reads_first`: `work` reads rows, then writes what it made of them. On SQLite the
        transaction then takes the database's write lock before it reads (BEGIN
        IMMEDIATE); it otherwise begins at the first write, and another process's write
        in between was overwritten (a key set during `rotate-keys` came back as the old
        one). PostgreSQL locks the rows the work reads FOR UPDATE."""
        if reads_first and not self.postgres:
            return await self._transaction(what, self.sessions.begin, _immediately(work))
        return await self._transaction(what, self.sessions.begin, work)

    async def write_plain(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`write` on a bare connection (Core statements, no ORM session): what a turn
        writes, where a session's own bookkeeping cost more than the statements."""
        return await self._transaction(what, self.engine.begin, work)

    async def _transaction(
        self,
        what: str,
        begin: Callable[[], AbstractAsyncContextManager[H]],
        work: Callable[[H], Awaitable[T]],
    ) -> T:
        async def attempt() -> T:
            if self._write_lock is None:
                async with begin() as handle:
                    return await work(handle)
            async with self._write_lock, begin() as handle:
                return await work(handle)

        return await with_retry(what, attempt)

    async def read(self, what: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async def attempt() -> T:
            async with self.sessions() as session:
                return await work(session)

        return await with_retry(what, attempt)

    async def read_plain(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """A read on a bare connection (prebuilt Core statements, no ORM objects)."""

        async def attempt() -> T:
            async with self.engine.connect() as conn:
                return await work(conn)

        return await with_retry(what, attempt)

    def insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        # Both dialects share the ON CONFLICT API; it makes get-or-create race-free.
        if not self.postgres:
            return sqlite.insert(table)
        # Imported where it runs: SQLAlchemy's PostgreSQL dialect is ~2 MB of an SQLite bot.
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)


def _immediately(
    work: Callable[[AsyncSession], Awaitable[T]],
) -> Callable[[AsyncSession], Awaitable[T]]:
    async def locked(session: AsyncSession) -> T:
        await session.execute(text("BEGIN IMMEDIATE"))  # sqlite3 begins none before a write
        return await work(session)

    return locked


def rows_at(*columns: Any) -> Select[Any]:
    """`columns` (or a whole table) of the rows at any of the (platform, server, channel)
    keys given as the parameter `keys`: built once and run as it is, not built again for
    every read."""
    table = columns[0] if isinstance(columns[0], Table) else columns[0].table
    key = tuple_(table.c.platform, table.c.server_id, table.c.channel_id)
    return select(*columns).where(key.in_(bindparam("keys", expanding=True)))


def key_of(ref: ChannelRef, scope: Scope) -> Key:
    if scope is Scope.SERVER and not ref.has_server:
        raise ValueError(f"{ref} has no server, so there is no server-wide setting")
    return ref.scope_key(scope)


def chain(ref: ChannelRef) -> list[Key]:
    """Rows consulted for a channel, nearest first."""
    keys = [ref.scope_key(Scope.CHANNEL)]
    if ref.has_server:
        keys.append(ref.scope_key(Scope.SERVER))
    return keys


def where(table: Any, key: Key) -> ColumnElement[bool]:
    return and_(table.platform == key[0], table.server_id == key[1], table.channel_id == key[2])


def audit_row(key: Key, actor: Actor, action: str, detail: str) -> AuditRow:
    return AuditRow(
        platform=key[0],
        server_id=key[1],
        channel_id=key[2],
        actor_id=actor.id[:NAME_CHARS],
        actor_name=actor.display_name[:NAME_CHARS],
        action=action[:_ACTION_CHARS],
        detail=detail,
    )


__all__ = ["Base", "Database", "Key", "audit_row", "chain", "key_of", "where"]
