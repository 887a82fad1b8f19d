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
    # A shared claim held only by processes agreeing on it (a Discord bot's shard count:
    # shard 0 of 2 and shard 0 of 3 both get some guilds' messages): a process with
    # another variant is refused as if the claim were its alone.
    variant: int | None = None

    @property
    def key(self) -> int:
        """A signed 64-bit number for it: its PostgreSQL advisory lock's key."""
        digest = hashlib.blake2b(self.name.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    @property
    def key32(self) -> int:
        """A signed 32-bit number for it: with `variant`, its two-part advisory lock's
        first key (pg_locks shows the parts apart, so other variants can be found)."""
        return self.key >> 32


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
        conn = self._conn
        taken: list[Claim] = []
        for claim in claims:
            if claim.variant is None:
                kind = "_shared" if claim.shared else ""
                got = await conn.scalar(
                    text(f"SELECT pg_try_advisory_lock{kind}(:key)"), {"key": claim.key}
                )
            else:
                got = await _take_variant(conn, claim)
            if not got:
                for held in taken:
                    kind = "_shared" if held.shared else ""
                    if held.variant is None:
                        unlock, keys = f"pg_advisory_unlock{kind}(:key)", {"key": held.key}
                    else:
                        unlock = "pg_advisory_unlock_shared(:key, :variant)"
                        keys = {"key": held.key32, "variant": held.variant}
                    await conn.execute(text(f"SELECT {unlock}"), keys)
                await conn.commit()
                return False
            taken.append(claim)
        await conn.commit()  # session locks outlast it; the connection rests idle
        return True

    def _take_files(self, claims: Sequence[Claim]) -> bool:
        folder = _folder(self._engine)
        if folder is None or fcntl is None:
            return True  # a database in memory, or no flock: one process all the same
        folder.mkdir(mode=0o700, exist_ok=True)
        opened: list[int] = []
        gates: list[int] = []  # held while the claims are taken, then let go
        try:
            for claim in claims:
                name = f"{claim.key & (2**64 - 1):016x}"
                if claim.variant is not None:
                    # One process at a time looks for other variants and takes its own.
                    gates.append(os.open(folder / f"{name}.gate", os.O_RDWR | os.O_CREAT, 0o600))
                    fcntl.flock(gates[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)
                    mine = f"{name}.{claim.variant}"
                    for path in folder.glob(f"{name}.*"):
                        if path.name not in (mine, f"{name}.gate") and _held(path):
                            raise BlockingIOError
                    name = mine
                opened.append(os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o600))
                kind = fcntl.LOCK_SH if claim.shared else fcntl.LOCK_EX
                fcntl.flock(opened[-1], kind | fcntl.LOCK_NB)
        except BaseException as err:
            for fd in opened:
                os.close(fd)
            if isinstance(err, BlockingIOError):
                return False
            raise
        finally:
            for fd in gates:
                os.close(fd)
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
    return any(_held(path) for path in folder.iterdir())


async def _take_variant(conn: AsyncConnection, claim: Claim) -> bool:
    """Hold `claim` shared under its variant, unless a process holds it under another.
    The two-part lock's parts show in pg_locks (classid, objid; objsubid 2); looking and
    taking go one process at a time, behind a lock held until this transaction ends."""
    gate = Claim(f"{claim.name} gate")
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": gate.key})
    others = await conn.scalar(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 2 AND classid::bigint = :key AND objid::bigint <> :variant "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"key": claim.key32 & (2**32 - 1), "variant": claim.variant},
    )
    if others:
        return False
    return bool(
        await conn.scalar(
            text("SELECT pg_try_advisory_lock_shared(:key, :variant)"),
            {"key": claim.key32, "variant": claim.variant},
        )
    )


def _held(path: Path) -> bool:
    """Whether a process holds a lock on this claim's file (SQLite)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # gone meanwhile, or not a claim's file
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # the lock, if this took it, goes with it
    return False
