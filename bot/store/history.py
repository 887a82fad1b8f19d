"""Conversation history: turns stored as they happen, read newest first, forgotten on /reset."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.store.base import NAME_CHARS, Database, audit_row
from bot.store.batch import Batcher
from bot.store.models import BlobRow, MessageImageRow, MessageRow, utcnow
from bot.store.reads import TurnReads, conversation_of, entry_of, in_conversation
from bot.types import Actor, ChannelRef, HistoryEntry, Image, ImageRef, Role, Scope, TurnState
from bot.types.text import clean_text

_WRITE_BATCH = 1000  # writes per grouped commit
_INTERRUPTED = "The bot stopped while writing this answer (restart or crash)."
_MESSAGES = cast(Table, MessageRow.__table__)
_MESSAGE_IMAGES = cast(Table, MessageImageRow.__table__)
_INSERT_RETURNING_IDS = insert(_MESSAGES).returning(_MESSAGES.c.id, sort_by_parameter_order=True)
_ORPHAN_BLOBS = delete(BlobRow).where(~exists().where(MessageImageRow.sha256 == BlobRow.sha256))
_UPDATE = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("row_id"))
    .values(
        content=bindparam("content"),
        token_estimate=bindparam("token_estimate"),
        error=bindparam("error"),
        state=bindparam("state"),
    )
)


Guard = Callable[[AsyncConnection], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class _Insert:
    rows: list[dict[str, Any]]
    links: list[tuple[ImageRef, ...]]  # per row: the images it showed
    blobs: tuple[Image, ...] = ()  # their bytes (kept once per hash)
    # Runs first in the same transaction (a quota charge); False: these rows are not
    # stored. Guards run in `order` order, so two batches lock the same rows alike.
    guard: Guard | None = None
    order: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Update:
    values: dict[str, Any]


def _row(ref: ChannelRef, entry: HistoryEntry) -> dict[str, Any]:
    return {
        "platform": ref.platform.value,
        "server_id": ref.server_id,
        "channel_id": ref.channel_id,
        "thread_id": ref.thread_id,
        "role": Role(entry.role).value,
        "author": None if entry.author is None else clean_text(entry.author)[:NAME_CHARS],
        "content": clean_text(entry.content),
        "token_estimate": entry.tokens,
        "error": None if entry.error is None else clean_text(entry.error),
        "state": TurnState(entry.state).value,
        "image_count": len(entry.images),
        "reply_to": entry.reply_to,
        "author_id": None if entry.author_id is None else entry.author_id[:NAME_CHARS],
        "created_at": utcnow(),
    }


def _changes(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "row_id": entry.id,
        "content": clean_text(entry.content),
        "token_estimate": entry.tokens,
        "error": None if entry.error is None else clean_text(entry.error),
        "state": TurnState(entry.state).value,
    }


class HistoryPart:
    """Writes that finish together share one transaction; a bad one fails alone."""

    def __init__(self, db: Database, reads: TurnReads) -> None:
        self._db = db
        self._reads = reads
        self._writes: Batcher[_Insert | _Update, list[int]] = Batcher(
            self._write_batch, _WRITE_BATCH
        )

    async def drain(self) -> None:
        await self._writes.drain()

    async def history(self, ref: ChannelRef, limit: int) -> list[HistoryEntry]:
        """The newest `limit` entries of this channel/thread, oldest first."""
        return await self._reads.history(ref, limit)

    async def add(
        self,
        ref: ChannelRef,
        entries: Sequence[HistoryEntry],
        images: Sequence[Image] = (),
        guard: Guard | None = None,
        order: tuple[str, ...] = (),
    ) -> list[HistoryEntry]:
        """Store new entries and the bytes of their images (all or none), with row ids;
        none (an empty list) when `guard`, run first in the same transaction, says no."""
        write = _Insert(
            [_row(ref, e) for e in entries],
            [e.images for e in entries],
            tuple(images),
            guard,
            order,
        )
        ids = await self._writes.submit(write)
        if guard is not None and len(ids) < len(entries):
            return []
        stored = [replace(e, id=i) for e, i in zip(entries, ids, strict=True)]
        self._reads.appended(ref, stored)
        return stored

    async def update(self, ref: ChannelRef, entry: HistoryEntry, *, remember: bool = True) -> None:
        """Rewrite a stored entry (a growing answer, its final state) by its id.

        `remember=False` for the saves while an answer still streams: the turn's end
        updates what this process remembers, once.
        """
        assert entry.id is not None, "only stored entries can be updated"
        await self._writes.submit(_Update(_changes(entry)))
        if remember:
            self._reads.appended(ref, [entry])

    async def alternatives(
        self, ref: ChannelRef, question_id: int
    ) -> list[tuple[HistoryEntry, bool]]:
        """Every answer to one question, oldest first, each with whether it is the shown one."""

        async def read(session: AsyncSession) -> list[tuple[HistoryEntry, bool]]:
            rows = await session.execute(
                select(_MESSAGES)
                .where(
                    in_conversation(conversation_of(ref)),
                    _MESSAGES.c.reply_to == question_id,
                    _MESSAGES.c.role == Role.ASSISTANT.value,
                )
                .order_by(_MESSAGES.c.id)
            )
            return [(entry_of(row), not row.hidden) for row in rows]

        return await self._db.read("history read", read)

    async def show(self, ref: ChannelRef, question_id: int, answer_id: int) -> None:
        """Make one answer to a question the shown one (the history continues from it)."""

        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(_MESSAGES)
                .where(
                    in_conversation(conversation_of(ref)),
                    _MESSAGES.c.reply_to == question_id,
                    _MESSAGES.c.role == Role.ASSISTANT.value,
                )
                .values(hidden=_MESSAGES.c.id != answer_id)
            )

        await self._db.write("history write", work)
        self._reads.histories.drop(conversation_of(ref))

    async def mark_interrupted(self, ref: ChannelRef) -> int:
        """Answers of this conversation still marked as being written: their writer is gone.

        Called with the conversation's turn order held, so no live turn is among them.
        """
        half_written = and_(
            in_conversation(conversation_of(ref)), _MESSAGES.c.state == TurnState.STREAMING.value
        )

        async def work(session: AsyncSession) -> int:
            result = await session.execute(
                update(_MESSAGES)
                .where(half_written)
                .values(state=TurnState.INTERRUPTED.value, error=_INTERRUPTED)
            )
            return int(getattr(result, "rowcount", 0) or 0)

        count = await self._db.write("history write", work)
        if count:
            self._reads.histories.drop(conversation_of(ref))
        return count

    async def clear(self, ref: ChannelRef, actor: Actor) -> int:
        """Delete this channel's (or this thread's) stored turns and the images only they
        showed; audited; returns the count."""
        key = ref.scope_key(Scope.CHANNEL)

        async def work(session: AsyncSession) -> int:
            result = await session.execute(
                delete(_MESSAGES).where(in_conversation(conversation_of(ref)))
            )
            count = int(getattr(result, "rowcount", 0) or 0)
            await session.execute(_ORPHAN_BLOBS)
            where = f" in thread {ref.thread_id}" if ref.thread_id else ""
            session.add(audit_row(key, actor, "history.clear", f"{count} messages deleted{where}"))
            return count

        count = await self._db.write("history write", work)
        self._reads.histories.drop(conversation_of(ref))
        return count

    async def image_data(self, refs: Sequence[ImageRef]) -> dict[str, Image]:
        """The stored bytes of these images, by hash (a pruned one is simply missing)."""
        wanted = sorted({r.sha256 for r in refs})
        if not wanted:
            return {}

        async def read(session: AsyncSession) -> dict[str, Image]:
            rows = await session.execute(
                select(BlobRow.sha256, BlobRow.media_type, BlobRow.data).where(
                    BlobRow.sha256.in_(wanted)
                )
            )
            return {sha: Image(kind, data, sha256=sha) for sha, kind, data in rows}

        return await self._db.read("image read", read)

    async def prune_images(self, max_bytes: int, max_age: timedelta) -> int:
        """Forget image bytes past their age, then the oldest past the size cap.

        A message that showed a forgotten image keeps its name ("[image: cat.png]").
        """

        async def work(session: AsyncSession) -> int:
            cutoff = utcnow() - max_age
            old = await session.execute(delete(BlobRow).where(BlobRow.created_at < cutoff))
            removed = int(getattr(old, "rowcount", 0) or 0)
            total = await session.scalar(select(func.coalesce(func.sum(BlobRow.size), 0)))
            excess = int(total or 0) - max_bytes
            if excess > 0:
                oldest = await session.execute(
                    select(BlobRow.sha256, BlobRow.size).order_by(BlobRow.created_at)
                )
                doomed: list[str] = []
                for sha, size in oldest:
                    if excess <= 0:
                        break
                    doomed.append(sha)
                    excess -= size
                await session.execute(delete(BlobRow).where(BlobRow.sha256.in_(doomed)))
                removed += len(doomed)
            return removed

        return await self._db.write("image prune", work)

    async def _insert_ids(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert message rows in one statement; their ids, in the rows' order."""
        if self._db.postgres:
            result = await conn.execute(_INSERT_RETURNING_IDS, rows)
            return list(result.scalars())
        # SQLite cannot promise RETURNING's order, so SQLAlchemy would send one INSERT per
        # row (a thread hop each through aiosqlite: a burst's 50 questions took ~40 ms).
        # Inside this write transaction SQLite is the only writer and gives a statement's
        # rows consecutive rowids after the largest: the last one tells them all.
        result = await conn.execute(insert(_MESSAGES), rows)
        if len(rows) == 1 and result.lastrowid:  # one row: sqlite3 reports it, no query
            return [int(result.lastrowid)]
        last = int(await conn.scalar(text("SELECT last_insert_rowid()")) or 0)
        return list(range(last - len(rows) + 1, last + 1))

    async def _write_batch(self, writes: Sequence[_Insert | _Update]) -> list[list[int]]:
        """Every insert and update that arrived together, in one transaction."""
        changes = [w.values for w in writes if isinstance(w, _Update)]
        refused: set[int] = set()  # positions in `writes` of inserts a guard turned down

        async def work(conn: AsyncConnection) -> list[int]:
            refused.clear()
            guarded = [(i, w) for i, w in enumerate(writes) if isinstance(w, _Insert) and w.guard]
            for i, w in sorted(guarded, key=lambda pair: pair[1].order):
                assert isinstance(w, _Insert) and w.guard is not None
                if not await w.guard(conn):
                    refused.add(i)
            inserts = [
                w for i, w in enumerate(writes) if isinstance(w, _Insert) and i not in refused
            ]
            rows = [row for w in inserts for row in w.rows]
            links = [refs for w in inserts for refs in w.links]
            blobs = {b.sha256: b for w in inserts for b in w.blobs}
            ids: list[int] = []
            if blobs:
                now = utcnow()
                stmt = self._db.insert(BlobRow)
                # Seen again: it is fresh again for the retention rule.
                stmt = stmt.on_conflict_do_update(
                    index_elements=["sha256"], set_={"created_at": stmt.excluded.created_at}
                )
                await conn.execute(
                    stmt,
                    [
                        {
                            "sha256": b.sha256,
                            "media_type": b.media_type,
                            "data": b.data,
                            "size": len(b.data),
                            "created_at": now,
                        }
                        for b in blobs.values()
                    ],
                )
            if rows:
                ids = await self._insert_ids(conn, rows)
                shown = [
                    {
                        "message_id": message_id,
                        "position": position,
                        "sha256": ref.sha256,
                        "name": clean_text(ref.name)[:NAME_CHARS],
                        "media_type": ref.media_type,
                    }
                    for message_id, refs in zip(ids, links, strict=True)
                    for position, ref in enumerate(refs)
                ]
                if shown:
                    await conn.execute(insert(_MESSAGE_IMAGES), shown)
            if changes:
                await conn.execute(_UPDATE, changes)
            return ids

        ids = iter(await self._db.write_plain("history write", work))
        return [
            [next(ids) for _ in w.rows] if isinstance(w, _Insert) and i not in refused else []
            for i, w in enumerate(writes)
        ]
