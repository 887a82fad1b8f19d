"""bot/store/copy.py: every row, across batches, onto each backend; ids never given twice."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.copy import (
    BATCH_FILE_ROWS,
    BATCH_ROWS,
    CopyFailed,
    TargetNotEmpty,
    copy_rows,
    tables,
)
from bot.store.db import create_engine
from bot.store.migrate import upgrade
from bot.store.models import BlobRow, ChannelConfigRow, MessageRow, QuotaLockRow

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


async def _filled(url: str, messages: int, blobs: int, locks: int) -> AsyncEngine:
    await upgrade(url)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            insert(MessageRow),
            [
                {
                    "platform": "discord",
                    "server_id": "s",
                    "channel_id": f"c{i % 7}",
                    "thread_id": "",
                    "role": "user" if i % 2 else "assistant",
                    "content": f"message {i} ✓",
                    "token_estimate": i,
                    "created_at": NOW,
                }
                for i in range(messages)
            ],
        )
        for _ in range(blobs):
            data = os.urandom(50_000)
            await conn.execute(
                insert(BlobRow).values(
                    sha256=hashlib.sha256(data).hexdigest(),
                    media_type="image/png",
                    data=data,
                    size=len(data),
                    created_at=NOW,
                )
            )
        await conn.execute(
            insert(ChannelConfigRow),
            [
                {"platform": "discord", "server_id": "s", "channel_id": c, "model": m}
                for c, m in (("", None), ("c", "m"))
            ],
        )
        await conn.execute(
            insert(QuotaLockRow),
            [
                {
                    "platform": "matrix",
                    "server_id": f"!r{i % 3}",
                    "channel_id": f"x{i}",
                    "charges": i,
                }
                for i in range(locks)
            ],
        )
    return engine


async def _everything(engine: AsyncEngine) -> dict[str, list[tuple[object, ...]]]:
    async with engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in await conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in tables()
        }


async def test_every_row_arrives_across_batches_and_ids_go_on_after_the_highest_ever(
    tmp_path: Path, database_url: str
) -> None:
    source = await _filled(
        f"sqlite+aiosqlite:///{tmp_path}/source.db",
        messages=2 * BATCH_ROWS + 34,
        blobs=2 * BATCH_FILE_ROWS + 3,
        locks=BATCH_ROWS + 7,
    )
    # The newest turns forgotten: their ids must not come back on the copy.
    async with source.begin() as conn:
        highest = await conn.scalar(select(func.max(MessageRow.id)))
        await conn.execute(delete(MessageRow).where(MessageRow.id > highest - 5))
    await upgrade(database_url)
    target = create_engine(database_url)
    try:
        copied = {c.table: c.rows for c in await copy_rows(source, target)}
        assert copied["messages"] == 2 * BATCH_ROWS + 29
        assert copied["blobs"] == 2 * BATCH_FILE_ROWS + 3
        assert copied["quota_locks"] == BATCH_ROWS + 7
        assert await _everything(target) == await _everything(source)
        async with target.connect() as conn:  # a JSON column not set stays SQL NULL
            unset = select(func.count()).where(ChannelConfigRow.__table__.c.stop.is_(None))
            assert await conn.scalar(unset) == 2
        async with target.begin() as conn:
            added = await conn.execute(
                insert(MessageRow)
                .values(
                    platform="discord",
                    server_id="s",
                    channel_id="c0",
                    thread_id="",
                    role="user",
                    content="after the move",
                    token_estimate=3,
                )
                .returning(MessageRow.id)
            )
            assert added.scalar_one() == highest + 1

        # A second copy finds it filled, says where, and adds nothing.
        with pytest.raises(TargetNotEmpty) as refused:
            await copy_rows(source, target)
        assert "messages" in refused.value.tables
        async with target.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(MessageRow))
        assert count == copied["messages"] + 1
    finally:
        await source.dispose()
        await target.dispose()


async def test_a_row_the_target_refuses_leaves_it_empty(tmp_path: Path, postgres_url: str) -> None:
    """SQLite keeps text longer than a column's length; PostgreSQL refuses it: named by
    its table, and the whole copy is rolled back."""
    source = await _filled(f"sqlite+aiosqlite:///{tmp_path}/source.db", 3, 1, 1)
    async with source.begin() as conn:
        await conn.execute(
            insert(QuotaLockRow).values(
                platform="matrix", server_id="!r", channel_id="x" * 300, charges=1
            )
        )
    await upgrade(postgres_url)
    target = create_engine(postgres_url)
    try:
        with pytest.raises(CopyFailed) as failed:
            await copy_rows(source, target)
        assert failed.value.table == "quota_locks"
        assert await _everything(target) == {t.name: [] for t in tables()}
    finally:
        await source.dispose()
        await target.dispose()
