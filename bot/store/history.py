"""Conversation history: turns stored as they happen, read newest first, forgotten on /reset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.base import NAME_CHARS, Database, audit_row
from bot.store.batch import Batcher
from bot.store.models import MessageRow, utcnow
from bot.store.reads import TurnReads, conversation_of, in_conversation
from bot.types import Actor, ChannelRef, HistoryEntry, Role, Scope, TurnState
from bot.types.text import clean_text

_WRITE_BATCH = 1000  # writes per grouped commit
_INTERRUPTED = "The bot stopped while writing this answer (restart or crash)."
_MESSAGES = cast(Table, MessageRow.__table__)
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


@dataclass(frozen=True, slots=True)
class _Insert:
    rows: list[dict[str, Any]]


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

    async def add(self, ref: ChannelRef, entries: Sequence[HistoryEntry]) -> list[HistoryEntry]:
        """Store new entries (all or none); they come back with their row ids."""
        ids = await self._writes.submit(_Insert([_row(ref, e) for e in entries]))
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
        """Delete this channel's (or this thread's) stored turns; audited; returns the count."""
        key = ref.scope_key(Scope.CHANNEL)

        async def work(session: AsyncSession) -> int:
            result = await session.execute(
                delete(_MESSAGES).where(in_conversation(conversation_of(ref)))
            )
            count = int(getattr(result, "rowcount", 0) or 0)
            where = f" in thread {ref.thread_id}" if ref.thread_id else ""
            session.add(audit_row(key, actor, "history.clear", f"{count} messages deleted{where}"))
            return count

        count = await self._db.write("history write", work)
        self._reads.histories.drop(conversation_of(ref))
        return count

    async def _write_batch(self, writes: Sequence[_Insert | _Update]) -> list[list[int]]:
        """Every insert and update that arrived together, in one transaction."""
        rows = [row for w in writes if isinstance(w, _Insert) for row in w.rows]
        changes = [w.values for w in writes if isinstance(w, _Update)]

        async def work(session: AsyncSession) -> list[int]:
            ids: list[int] = []
            if rows:
                # Returned in parameter order, so each caller gets its own rows' ids.
                result = await session.execute(
                    insert(MessageRow).returning(MessageRow.id, sort_by_parameter_order=True),
                    rows,
                )
                ids = list(result.scalars())
            if changes:
                await (await session.connection()).execute(_UPDATE, changes)
            return ids

        ids = iter(await self._db.write("history write", work))
        return [[next(ids) for _ in w.rows] if isinstance(w, _Insert) else [] for w in writes]
