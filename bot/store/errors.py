"""Database failures as typed errors people can be told about, and the retry rule."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("bot.store")

T = TypeVar("T")

# A lock held by another process, a restarting server: worth waiting for, up to a point.
RETRY_SECONDS = 20.0
_BACKOFF_FIRST = 0.2
_BACKOFF_CAP = 3.0


class StoreError(Exception):
    """The database could not do what was asked; nothing of it was saved.

    `str(err)` is safe to show a chat user and says what to do.
    """

    transient = False


class StoreBusy(StoreError):
    transient = True

    def __init__(self) -> None:
        super().__init__("The bot's database is busy, so nothing was saved. Try again in a moment.")


class StoreUnavailable(StoreError):
    transient = True

    def __init__(self) -> None:
        super().__init__(
            "The bot cannot reach its database, so nothing was saved. Try again shortly; "
            "if it keeps happening, tell the bot's operator."
        )


class StoreUnwritable(StoreError):
    """`full`: out of space (or the disk failing), not read-only."""

    def __init__(self, *, full: bool = False) -> None:
        super().__init__(
            "The bot's database cannot be written (read-only or out of disk space), so "
            "nothing was saved. Tell the bot's operator."
        )
        self.full = full


class StoreDamaged(StoreError):
    """The database file (or a table or index in it) is damaged: no retry mends it.
    `detail`: the driver's own words, for the operator's log and start-up message."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "The bot's database is damaged, so nothing was saved. Tell the bot's operator: "
            "the bot's log says what to do."
        )
        self.detail = detail


# PostgreSQL SQLSTATE classes and codes, SQLite's messages.
# Serialization failure, deadlock, lock not available, object in use; too many
# connections (every slot taken by this and other processes: one frees soon).
_PG_BUSY = {"40001", "40P01", "55P03", "55006", "53300"}
_PG_UNWRITABLE = {"25006", "53100", "53000", "53200", "58030"}
_SQLITE_BUSY = ("database is locked", "database table is locked", "busy")
_SQLITE_FULL = ("disk is full", "disk i/o error")
_SQLITE_UNWRITABLE = ("readonly", "read-only", "out of memory", *_SQLITE_FULL)
_PG_DAMAGED = {"XX001", "XX002"}  # data_corrupted, index_corrupted
# SQLite's own words for SQLITE_CORRUPT and SQLITE_NOTADB (whole: a value quoted in an
# error must not read as damage).
_SQLITE_DAMAGED = ("database disk image is malformed", "file is not a database")


def classify(err: BaseException) -> StoreError | None:
    """The StoreError a driver error means, or None when it is a bug to surface."""
    if isinstance(err, StoreError):
        return err
    if isinstance(err, OSError | ConnectionError | TimeoutError):
        return StoreUnavailable()
    if isinstance(err, PoolTimeout):  # every pooled connection busy past pool_timeout
        return StoreBusy()
    if not isinstance(err, DBAPIError):
        return None
    code = str(getattr(err.orig, "sqlstate", "") or getattr(err.orig, "pgcode", "") or "")
    message = str(err.orig).lower()
    sqlite = isinstance(err.orig, sqlite3.Error)
    if code in _PG_DAMAGED or (sqlite and message.startswith(_SQLITE_DAMAGED)):
        return StoreDamaged(str(err.orig).splitlines()[0][:200] if str(err.orig) else "")
    if code in _PG_BUSY or any(m in message for m in _SQLITE_BUSY):
        return StoreBusy()
    if code in _PG_UNWRITABLE or any(m in message for m in _SQLITE_UNWRITABLE):
        return StoreUnwritable(full=code == "53100" or any(m in message for m in _SQLITE_FULL))
    if code.startswith(("08", "57P")) or err.connection_invalidated:
        return StoreUnavailable()
    if isinstance(err, OperationalError) and "unable to open database" in message:
        return StoreUnwritable()
    return None


async def with_retry(
    what: str,
    op: Callable[[], Awaitable[T]],
    *,
    budget: float = RETRY_SECONDS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `op`; on a passing failure try again with backoff until `budget` seconds are used.

    Raises the StoreError the failure means (the driver's own error for anything else).
    """
    started = time.monotonic()
    delay = _BACKOFF_FIRST
    while True:
        try:
            return await op()
        except Exception as err:
            typed = classify(err)
            if typed is None:
                raise
            waited = time.monotonic() - started
            if isinstance(typed, StoreDamaged):
                log.error(
                    "database %s failed: the database is damaged (%s). Stop the bot and "
                    "restore a backup (README: Restoring a backup); a SQLite file may also "
                    "be moved away, to start with an empty one.",
                    what,
                    _short(err),
                )
                raise typed from None
            if not typed.transient or waited + delay > budget:
                log.warning("database %s failed: %s (%s)", what, type(typed).__name__, _short(err))
                raise typed from None
            log.info("database %s: %s, again in %.1fs", what, type(typed).__name__, delay)
        await sleep(delay)
        delay = min(_BACKOFF_CAP, delay * 2) * random.uniform(0.8, 1.2)


def _short(err: BaseException) -> str:
    cause = err.orig if isinstance(err, DBAPIError) else err
    return f"{type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''}"
