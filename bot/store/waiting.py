"""Questions waiting for their conversation's turn: kept in a process's memory until then,
and recorded here meanwhile, so that a process that went away without answering them
(`kill -9`, out of memory, a power cut) is followed by a word in their channels.

Each record names what served its channel (`served_by`: a front-end's claims, see
bot.store.leases) and the process that held it. Only one process serves a channel at a
time, so a record of another process for what this one serves now was left behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.store.base import Database
from bot.store.models import PostRow, WaitingRow, utcnow
from bot.types import ChannelRef, Platform

_WAITING = cast(Table, WaitingRow.__table__)
_POSTS = cast(Table, PostRow.__table__)
_CLAIM_BATCH = 500


@dataclass(frozen=True, slots=True)
class Unanswered:
    """A question a process that went away held without answering it."""

    id: int  # its record (WaitingPart.remove once said)
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

    async def remove(self, *records: int) -> None:
        """No longer waiting: its turn came, a shutdown told it it will not, or the next
        process said it went unanswered."""
        stmt = delete(_WAITING).where(_WAITING.c.id.in_(records))

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._db.write_plain("waiting question done", work)

    async def claim_left(
        self, platform: Platform, served_by: str, process: str
    ) -> list[Unanswered]:
        """The questions other processes left waiting for what `served_by` serves, oldest
        first, now this process's to say (`remove` each once said: a process that goes
        away meanwhile leaves the rest to the next). One whose question was stored
        after all (its turn came; only its record's removal failed) is dropped."""
        w, p = _WAITING.c, _POSTS.c
        theirs = (w.platform == platform.value, w.served_by == served_by, w.process != process)
        # A few hundred at a time: a statement's parameters are bounded (PostgreSQL).
        batch = select(w.id).where(*theirs).order_by(w.id).limit(_CLAIM_BATCH)
        claim = (
            update(_WAITING)
            .where(w.id.in_(batch.scalar_subquery()))
            .values(process=process)
            .returning(w.id, w.server_id, w.channel_id, w.thread_id, w.post_id, w.created_at)
        )

        async def work(conn: AsyncConnection) -> list[Unanswered]:
            left: list[Unanswered] = []
            while True:
                rows = (await conn.execute(claim)).all()
                posts = {r.post_id for r in rows}
                stored: set[str] = set()
                if posts:
                    found = select(p.post_id).where(
                        p.platform == platform.value, p.post_id.in_(posts)
                    )
                    stored = set((await conn.execute(found)).scalars())
                answered = [r.id for r in rows if r.post_id in stored]
                if answered:
                    await conn.execute(delete(_WAITING).where(w.id.in_(answered)))
                left += [
                    Unanswered(
                        int(r.id),
                        ChannelRef(
                            platform, r.channel_id, server_id=r.server_id, thread_id=r.thread_id
                        ),
                        r.post_id,
                        r.created_at,
                    )
                    for r in rows
                    if r.id not in answered
                ]
                if len(rows) < _CLAIM_BATCH:
                    return sorted(left, key=lambda u: (u.asked_at, u.id))

        return await self._db.write_plain("waiting questions left", work)

    async def prune(self, older_than: timedelta) -> int:
        """Records no process will say (what served them is served under another name
        now: a new token, other shards) past `older_than`."""
        stmt = delete(_WAITING).where(_WAITING.c.created_at < utcnow() - older_than)

        async def work(conn: AsyncConnection) -> int:
            return int((await conn.execute(stmt)).rowcount or 0)

        return await self._db.write_plain("waiting questions pruned", work)
