"""A conversation's lorebook timed effects (bot.characters.timed), kept as JSON."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, and_, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement, Executable

from bot.store.base import Database
from bot.store.models import LoreTimersRow, utcnow
from bot.store.reads import Conversation, conversation_of
from bot.types import ChannelRef

_TIMERS = cast(Table, LoreTimersRow.__table__)


def _of(conversation: Conversation) -> ColumnElement[bool]:
    platform, server_id, channel_id, thread_id = conversation
    t = _TIMERS.c
    return and_(
        t.platform == platform,
        t.server_id == server_id,
        t.channel_id == channel_id,
        t.thread_id == thread_id,
    )


def forget_timers(ref: ChannelRef) -> Executable:
    """The statement that forgets a conversation's effects (run with its /reset)."""
    return delete(_TIMERS).where(_of(conversation_of(ref)))


class LorePart:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, ref: ChannelRef) -> dict[str, Any] | None:
        """The conversation's effects as last stored; None when none were."""

        async def read(session: AsyncSession) -> Any:
            return await session.scalar(select(_TIMERS.c.effects).where(_of(conversation_of(ref))))

        found = await self._db.read("lorebook timers read", read)
        return found if isinstance(found, dict) else None

    async def put(self, ref: ChannelRef, effects: dict[str, Any]) -> None:
        """Replace the conversation's effects."""
        platform, server_id, channel_id, thread_id = conversation_of(ref)
        stmt = self._db.insert(LoreTimersRow).values(
            platform=platform,
            server_id=server_id,
            channel_id=channel_id,
            thread_id=thread_id,
            effects=effects,
            updated_at=utcnow(),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["platform", "server_id", "channel_id", "thread_id"],
            set_={"effects": stmt.excluded.effects, "updated_at": stmt.excluded.updated_at},
        )

        async def work(session: AsyncSession) -> None:
            await session.execute(stmt)

        await self._db.write("lorebook timers write", work)
