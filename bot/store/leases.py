"""Who serves what: one process per database serves a front-end's identity (a Matrix
account, a Discord bot or one of its shards). Two processes logged in as one Matrix account
answered every message twice, and the history held each question twice, with nothing in
either log.

PostgreSQL: session advisory locks on a connection kept open; the server drops them when
the process goes, however it goes. SQLite (one machine): `flock` on a file per identity
in a folder beside the database; the kernel drops it likewise.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.store.db import sqlite_file

try:
    import fcntl
except ImportError:  # Windows: no flock, so no claims there on SQLite (said in the README)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("bot.store")


@dataclass(frozen=True, slots=True)
class Claim:
    """An identity served: `name` says what (never a secret). A `shared` claim is held by
    every process serving a part of it (each Discord shard's process holds its bot's
    shared, and its shards' own), so a process serving the whole waits for them all."""

    name: str
    shared: bool = False

    @property
    def key(self) -> int:
        """A signed 64-bit number for it: its PostgreSQL advisory lock's key."""
        digest = hashlib.blake2b(self.name.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)


class Lease:
    """Claims taken together, all or none, until close()."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None  # PostgreSQL: where the locks live
        self._files: list[int] = []  # SQLite: the locked files' descriptors

    async def take(self, claims: Sequence[Claim]) -> bool:
        """Hold every one of `claims`; False (holding none of them) when another process
        holds one. A database error is raised (the connection is dropped: the next try
        opens another)."""
        if self._engine.dialect.name != "postgresql":
            return self._take_files(claims)
        try:
            return await self._take_advisory(claims)
        except BaseException:
            await self._drop()
            raise

    async def holding(self, claims: Sequence[Claim]) -> bool:
        """Whether this process still holds `claims`. PostgreSQL keeps them only as long as
        the connection they were taken on: a restart, a dropped network or an idle timeout
        lets them go, unsaid."""
        if self._engine.dialect.name != "postgresql":
            return True  # the kernel keeps a file's lock for as long as it is open
        if self._conn is None:
            return False
        try:
            count = await self._conn.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted"
                )
            )
            await self._conn.commit()
        except Exception as err:
            log.info("could not check the serving locks: %s", type(err).__name__)
            await self._drop()
            return False
        return bool(count == len(set(claims)))

    async def _drop(self) -> None:
        """Forget the connection (and so its locks, if it still has any): never pooled."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.invalidate()
            await conn.close()
        except Exception as err:  # dead already: nothing of it is left to hold locks
            log.debug("a dropped serving connection would not close: %s", type(err).__name__)

    async def _take_advisory(self, claims: Sequence[Claim]) -> bool:
        if self._conn is None:
            self._conn = await self._engine.connect()
        taken: list[Claim] = []
        for claim in claims:
            kind = "_shared" if claim.shared else ""
            got = await self._conn.scalar(
                text(f"SELECT pg_try_advisory_lock{kind}(:key)"), {"key": claim.key}
            )
            if not got:
                for held in taken:
                    kind = "_shared" if held.shared else ""
                    await self._conn.execute(
                        text(f"SELECT pg_advisory_unlock{kind}(:key)"), {"key": held.key}
                    )
                await self._conn.commit()
                return False
            taken.append(claim)
        await self._conn.commit()  # session locks outlast it; the connection rests idle
        return True

    def _take_files(self, claims: Sequence[Claim]) -> bool:
        folder = _folder(self._engine)
        if folder is None or fcntl is None:
            return True  # a database in memory, or no flock: one process all the same
        folder.mkdir(mode=0o700, exist_ok=True)
        opened: list[int] = []
        try:
            for claim in claims:
                path = folder / f"{claim.key & (2**64 - 1):016x}"
                opened.append(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
                kind = fcntl.LOCK_SH if claim.shared else fcntl.LOCK_EX
                fcntl.flock(opened[-1], kind | fcntl.LOCK_NB)
        except BaseException as err:
            for fd in opened:
                os.close(fd)
            if isinstance(err, BlockingIOError):
                return False
            raise
        self._files += opened
        return True

    async def close(self) -> None:
        """Let every claim go. Never raises: a connection that cannot say so is dropped,
        and its locks with it."""
        files, self._files = self._files, []
        for fd in files:
            os.close(fd)
        conn = self._conn
        if conn is None:
            return
        try:  # the connection goes back to the pool: its locks must not go with it
            await conn.execute(text("SELECT pg_advisory_unlock_all()"))
            await conn.commit()
            self._conn = None
            await conn.close()
        except Exception as err:
            log.info("could not release the serving locks: %s", type(err).__name__)
        finally:
            await self._drop()  # anything left: never pooled


def _folder(engine: AsyncEngine) -> Path | None:
    """SQLite: the folder of the claims' files, beside the database file."""
    path = sqlite_file(engine.url)
    if path is None:
        return None
    path = path.resolve()  # one folder however the database is reached (read-only too)
    return path.with_name(path.name + ".serving")


async def served(engine: AsyncEngine) -> bool:
    """Whether a process serves anything on this database now (it holds a claim)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            held = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid <> pg_backend_pid() AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            )
        return bool(held)
    folder = _folder(engine)
    if folder is None or fcntl is None or not folder.is_dir():
        return False
    for path in folder.iterdir():
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # gone meanwhile, or not a claim's file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # the lock, if this took it, goes with it
    return False
