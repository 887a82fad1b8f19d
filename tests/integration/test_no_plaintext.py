"""Stored secrets never appear in plaintext: not in SQLite's file or WAL, not in PostgreSQL's
dump or data files, not in any log line of the whole flow (engine logging at DEBUG)."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text, update

from bot.store import Store, migrate
from bot.store.models import SecretRow
from bot.store.secrets import SecretBox, SecretUnreadable, generate_key
from bot.types import (
    Actor,
    ChannelConfig,
    ChannelRef,
    HistoryEntry,
    ModelInfo,
    Platform,
    Role,
    Scope,
    SecretValue,
    Source,
)
from tests.peers.postgres import PostgresDatabase

CHAN = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
OTHER = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
ADMIN = Actor("u1", "Ada", is_channel_admin=True)
log = logging.getLogger("tests.no_plaintext")


@dataclass
class Flow:
    """What one run stored: the secrets (must stay hidden) and a marker (must be found)."""

    plaintexts: list[str]
    marker: str

    def needles(self) -> list[bytes]:
        found: list[bytes] = []
        for value in self.plaintexts:
            raw = value.encode()
            found += [raw, base64.b64encode(raw), raw.hex().encode()]
        return found


def count_hits(data: bytes, needles: Iterable[bytes]) -> int:
    return sum(data.count(needle) for needle in needles)


async def run_flow(url: str) -> tuple[Flow, Store]:
    """Migrate, store secrets at every scope, overwrite, rotate, read back; store stays open."""
    flow = Flow(
        plaintexts=[f"sk-{kind}-{secrets.token_hex(16)}" for kind in ("chan", "srv", "old", "pw")],
        marker=f"control-marker-{secrets.token_hex(8)}",
    )
    chan_key, server_key, overwritten, password = flow.plaintexts
    old_key, new_key = generate_key(), generate_key()
    defaults = ChannelConfig.of(source=Source.OPENAI)

    await migrate.upgrade(url)
    first = await Store.open(url, SecretBox.from_setting(old_key), defaults=defaults)
    try:
        await first.set_secret(
            CHAN, Scope.CHANNEL, "openai_api_key", SecretValue(overwritten), ADMIN
        )
        await first.set_secret(CHAN, Scope.CHANNEL, "openai_api_key", SecretValue(chan_key), ADMIN)
        await first.set_secret(CHAN, Scope.SERVER, "claude_api_key", SecretValue(server_key), ADMIN)
        await first.set_secret(OTHER, Scope.CHANNEL, "proxy_password", SecretValue(password), ADMIN)
        await first.update_config(
            CHAN, Scope.CHANNEL, ADMIN, {"system_prompt": flow.marker}, action="system"
        )
        await first.add_messages(
            CHAN,
            [HistoryEntry(Role.USER, "hello", author="Ada"), HistoryEntry(Role.ASSISTANT, "hi")],
        )
        await first.cache_models(CHAN, ChannelConfig({}), [ModelInfo("gpt-4o")])
    finally:
        await first.close()

    store = await Store.open(url, SecretBox.from_setting(f"{new_key},{old_key}"), defaults=defaults)
    assert await store.rotate_keys() == 3
    assert (await store.resolve_secret(CHAN, "openai_api_key")) == SecretValue(chan_key)
    assert (await store.resolve_secret(OTHER, "claude_api_key")) == SecretValue(server_key)
    assert (await store.resolve_secret(OTHER, "proxy_password")) == SecretValue(password)
    assert (await store.secret_origin(CHAN, "openai_api_key")) == ("channel", chan_key[-4:])
    # Values pass through log calls the way careless code would write them.
    value = await store.resolve_secret(CHAN, "openai_api_key")
    log.warning("resolved %s / %r / %s", value, value, f"{value}")

    # An unreadable secret's error goes to the log too: it must name, not show, the secret.
    async with store.engine.begin() as conn:
        await conn.execute(
            update(SecretRow)
            .where(SecretRow.name == "proxy_password")
            .values(channel_id="c1")  # moved rows no longer match their AAD
        )
    # Written behind the store's back, so a restarted bot sees it (a running store
    # remembers what it read; see bot.store.cache). Open it before closing the old one:
    # SQLite would fold and delete the WAL file the caller wants to scan.
    restarted = await Store.open(
        url, SecretBox.from_setting(f"{new_key},{old_key}"), defaults=defaults
    )
    await restarted.effective_config(CHAN)  # connected before the old one lets go
    await store.close()
    store = restarted
    with pytest.raises(SecretUnreadable) as err:
        await store.resolve_secret(CHAN, "proxy_password")
    log.error("secret problem: %s (%r)", err.value, err.value)
    return flow, store


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "sqlalchemy.pool", "alembic", "aiosqlite", "asyncpg"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_logs_clean(caplog: pytest.LogCaptureFixture, flow: Flow, backend: str) -> None:
    lines = [caplog.text]
    for record in caplog.records:
        lines += [record.getMessage(), repr(record.args), repr(record.exc_info)]
    captured = "\n".join(lines).encode()
    hits = count_hits(captured, flow.needles())
    control = captured.count(flow.marker.encode())
    print(
        f"[no-plaintext] {backend} logs: {len(caplog.records)} records, {len(captured)} bytes "
        f"scanned at DEBUG; plaintext hits={hits}; control marker hits={control}"
    )
    # The control proves bound parameters were logged, so a leaked key would have shown.
    assert b"INSERT INTO secrets" in captured and control > 0
    assert hits == 0


async def test_sqlite_file_and_wal_hold_no_plaintext(
    tmp_path: Path, all_logs: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "data" / "bot.db"
    flow, store = await run_flow(f"sqlite+aiosqlite:///{db}")
    try:
        async with store.engine.connect() as conn:
            assert (await conn.scalar(text("PRAGMA journal_mode"))) == "wal"
        wal = db.with_name(db.name + "-wal")
        # Read while the store is open: closing would checkpoint and delete the WAL.
        files = {db: db.read_bytes(), wal: wal.read_bytes()}
    finally:
        await store.close()
    files[Path(f"{db} (after close)")] = db.read_bytes()

    needles = flow.needles()
    for path, data in files.items():
        hits = count_hits(data, needles)
        control = data.count(flow.marker.encode())
        print(
            f"[no-plaintext] sqlite {path.name}: {len(data)} bytes scanned; "
            f"plaintext hits={hits}; control marker hits={control}"
        )
        assert hits == 0
    assert len(files[wal]) > 0
    assert sum(data.count(flow.marker.encode()) for data in files.values()) > 0
    assert_logs_clean(all_logs, flow, "sqlite")


@pytest.mark.postgres
async def test_postgres_dump_and_data_files_hold_no_plaintext(
    postgres_db: PostgresDatabase, all_logs: pytest.LogCaptureFixture
) -> None:
    flow, store = await run_flow(postgres_db.url)
    try:
        async with store.engine.connect() as conn:
            oid = await conn.scalar(
                text("SELECT oid FROM pg_database WHERE datname = current_database()")
            )
            await conn.execute(text("CHECKPOINT"))
    finally:
        await store.close()
    server = postgres_db.server
    needles = flow.needles()

    dump = server.client("pg_dump", "--no-owner", postgres_db.name)
    secrets_copy = server.sql("COPY secrets TO STDOUT", database=postgres_db.name).encode()
    assert b"COPY public.secrets" in dump and secrets_copy.count(b"\n") == 3

    raw = b"".join(
        p.read_bytes()
        for folder in (server.data_dir / "base" / str(oid), server.data_dir / "pg_wal")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    )
    for label, data in (("pg_dump", dump), ("COPY secrets", secrets_copy), ("data+WAL", raw)):
        hits = count_hits(data, needles)
        control = data.count(flow.marker.encode())
        print(
            f"[no-plaintext] postgres {label}: {len(data)} bytes scanned; "
            f"plaintext hits={hits}; control marker hits={control}"
        )
        assert hits == 0
    assert dump.count(flow.marker.encode()) > 0 and raw.count(flow.marker.encode()) > 0
    assert_logs_clean(all_logs, flow, "postgres")
