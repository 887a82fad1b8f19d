"""Database failures: typed, retried while they may pass, told to people plainly."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot.store import Store, StoreBusy, StoreDamaged, StoreError, StoreUnwritable, generate_key
from bot.store.errors import classify, with_retry
from bot.store.migrate import upgrade_to_head
from bot.store.secrets import SecretBox
from bot.types import Actor, ChannelConfig, ChannelRef, Platform, Scope, Source

REF = ChannelRef(Platform.CONSOLE, channel_id="c")
ADMIN = Actor("a", "Ada", is_channel_admin=True)


def sqlite_error(message: str) -> OperationalError:
    return OperationalError("UPDATE x", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("database is locked", StoreBusy),
        ("attempt to write a readonly database", StoreUnwritable),
        ("database or disk is full", StoreUnwritable),
        ("disk I/O error", StoreUnwritable),
        ("database disk image is malformed", StoreDamaged),
        ("file is not a database", StoreDamaged),
    ],
)
def test_sqlite_failures_are_typed(message: str, kind: type[StoreError]) -> None:
    typed = classify(sqlite_error(message))
    assert isinstance(typed, kind)
    assert "nothing was saved" in str(typed)


class _PgError(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def test_damage_is_told_by_its_code_or_sqlites_own_words_only() -> None:
    """Operator probe: a damaged file was a bug's "Something went wrong". A value quoted
    in another error (a key named `corrupt`) is no damage."""
    from sqlalchemy.exc import IntegrityError

    for code in ("XX001", "XX002"):
        typed = classify(IntegrityError("x", {}, _PgError(code, "invalid page in block 7")))
        assert isinstance(typed, StoreDamaged) and typed.detail == "invalid page in block 7"
    for words in ("file is not a database", "database disk image is malformed"):
        quoted = _PgError("23505", f"DETAIL: Key (name)=({words}) already exists.")
        assert classify(IntegrityError("x", {}, quoted)) is None
        assert classify(IntegrityError("x", {}, _PgError("23505", words))) is None
    # Damage found at start on PostgreSQL is named as damage, not as a server to start.
    from bot.app import _damaged
    from bot.settings import load_settings

    settings = load_settings(database_url="postgresql+asyncpg://bot@db.example:5433/bot")
    said = _damaged(settings, "invalid page in block 7 of relation base/1/2")
    assert said.startswith("the database at db.example:5433 is damaged or is no database")
    assert "Restoring a backup" in said and "invalid page in block 7" in said


def test_postgresql_out_of_connection_slots_is_busy_and_waited_for() -> None:
    """Shards sharing one server took every slot: turns failed with no word to anyone
    (`sorry, too many clients already` was no error the store knew)."""
    for message in ("sorry, too many clients already", "remaining connection slots are reserved"):
        err = OperationalError("SELECT 1", {}, _PgError("53300", message))
        typed = classify(err)
        assert isinstance(typed, StoreBusy) and typed.transient


def test_no_pooled_connection_free_in_time_is_busy_and_waited_for() -> None:
    """Every pooled connection held by statements a silent server never answered: the
    next one waited pool_timeout, and SQLAlchemy's TimeoutError (no builtin one) was
    no error the store knew, so a turn or a command failed as a bug."""
    typed = classify(PoolTimeout("QueuePool limit of size 5 overflow 10 reached"))
    assert isinstance(typed, StoreBusy) and typed.transient


def test_bugs_are_not_hidden() -> None:
    assert classify(sqlite_error("no such column: nope")) is None
    assert classify(ValueError("x")) is None


async def test_retry_until_it_passes_then_gives_up() -> None:
    calls = 0
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise sqlite_error("database is locked")
        return "saved"

    assert await with_retry("write", flaky, sleep=sleep) == "saved"
    assert calls == 3 and len(slept) == 2

    async def locked() -> str:
        raise sqlite_error("database is locked")

    with pytest.raises(StoreBusy):
        await with_retry("write", locked, budget=0.0, sleep=sleep)

    async def readonly() -> str:
        raise sqlite_error("attempt to write a readonly database")

    slept.clear()
    with pytest.raises(StoreUnwritable):
        await with_retry("write", readonly, sleep=sleep)
    assert slept == []  # not worth waiting for


@contextmanager
def locked_for(path: Path, seconds: float) -> Iterator[None]:
    """Another process's exclusive lock on the SQLite file, held for `seconds`."""
    taken = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, timeout=30)
        conn.execute("BEGIN EXCLUSIVE")
        taken.set()
        threading.Event().wait(seconds)
        conn.rollback()
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    try:
        yield
    finally:
        thread.join()


async def test_a_write_waits_out_a_lock_held_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of(source=Source.OPENAI)
    )
    try:
        with locked_for(path, 6.5):  # longer than SQLite's own 5 s busy timeout
            await store.update_config(REF, Scope.CHANNEL, ADMIN, {"model": "m"}, action="t")
        assert (await store.effective_config(REF)).model == "m"
    finally:
        await store.close()


async def test_config_and_secret_change_together_or_not_at_all(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of(source=Source.OPENAI)
    )
    try:
        with pytest.raises(ValueError):
            await store.update_config(
                REF,
                Scope.CHANNEL,
                ADMIN,
                {"proxy_url": "http://h/v1"},
                action="proxy set",
                secrets={"not_a_secret_name": None},
            )
        assert await store.scope_values(REF, Scope.CHANNEL) == {}
        assert await asyncio.wait_for(store.audit_entries(REF), 5) == []
    finally:
        await store.close()
