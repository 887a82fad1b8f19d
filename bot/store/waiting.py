"""Questions waiting for their conversation's turn: kept in a process's memory until then,
and recorded here meanwhile, so that a process that went away without answering them
(`kill -9`, out of memory, a power cut) is followed by a word in their channels.

Each record names what served its channel (`served_by`: a front-end's claims, see
bot.store.leases) and the process that held it. Only one process serves a channel at a
time, so a record of another process for what this one serves now was left behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.store.base import Database
from bot.store.models import WaitingRow, utcnow
from bot.types import ChannelRef, Platform

_WAITING = cast(Table, WaitingRow.__table__)


@dataclass(frozen=True, slots=True)
class Unanswered:
    """A question a process that went away held without answering it."""

    ref: ChannelRef
    post_id: str  # its platform message
    asked_at: datetime


class WaitingPart:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, ref: ChannelRef, post_id: str, served_by: str, process: str) -> int:
        """Record a question that waits for its turn; its record's id."""
        stmt = insert(_WAITING).returning(_WAITING.c.id)
        row = {
            "platform": ref.platform.value,
            "server_id": ref.server_id,
            "channel_id": ref.channel_id,
            "thread_id": ref.thread_id,
            "post_id": post_id,
            "served_by": served_by,
            "process": process,
            "created_at": utcnow(),
        }

        async def work(conn: AsyncConnection) -> int:
            return int((await conn.execute(stmt, row)).scalar_one())

        return await self._db.write_plain("waiting question write", work)

    async def remove(self, record: int) -> None:
        """Its turn came (or a shutdown told it it will not): no longer waiting."""
        stmt = delete(_WAITING).where(_WAITING.c.id == record)

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._db.write_plain("waiting question done", work)

    async def take_left(self, platform: Platform, served_by: str, process: str) -> list[Unanswered]:
        """The questions other processes left waiting for what `served_by` serves, oldest
        first; taken (deleted) in the same statement, so each is said once."""
        w = _WAITING.c
        stmt = (
            delete(_WAITING)
            .where(w.platform == platform.value, w.served_by == served_by, w.process != process)
            .returning(w.server_id, w.channel_id, w.thread_id, w.post_id, w.created_at, w.id)
        )

        async def work(conn: AsyncConnection) -> list[Unanswered]:
            rows = sorted((await conn.execute(stmt)).all(), key=lambda r: (r.created_at, int(r.id)))
            return [
                Unanswered(
                    ChannelRef(
                        platform, r.channel_id, server_id=r.server_id, thread_id=r.thread_id
                    ),
                    r.post_id,
                    r.created_at,
                )
                for r in rows
            ]

        return await self._db.write_plain("waiting questions left", work)
