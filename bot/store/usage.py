"""Usage rows: one insert per provider call that costs; sums per day, user and model."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from datetime import date
from functools import partial
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Result,
    Select,
    Table,
    case,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.store.base import NAME_CHARS, Database, usage_model
from bot.store.batch import Batcher
from bot.store.errors import StoreError
from bot.store.models import RESERVED, UsageRow
from bot.types import KeyScope, UsageBucket, UsageQuery, UsageRecord

EXPORT_PAGE = 1000
_WRITE_BATCH = 500  # rows per INSERT when many turns end at once
_UNSAVED_KEPT = 10_000
_USAGE = cast(Table, UsageRow.__table__)


def _values(record: UsageRecord) -> dict[str, Any]:
    return {
        "created_at": record.at,
        "day": record.day,
        "platform": record.platform,
        "server_id": record.server_id[:NAME_CHARS],
        "channel_id": record.channel_id[:NAME_CHARS],
        "thread_id": record.thread_id[:NAME_CHARS],
        "user_id": record.user_id[:NAME_CHARS],
        "source": record.source,
        "model": usage_model(record.model),
        "input_tokens": max(0, record.input_tokens),
        "output_tokens": max(0, record.output_tokens),
        "estimated": record.estimated,
        "error": record.error,
        "key_scope": record.key_scope.value,
        "state": "settled",
    }


def _record(row: UsageRow) -> UsageRecord:
    try:
        scope = KeyScope(row.key_scope)
    except ValueError:
        scope = KeyScope.NONE
    return UsageRecord(
        at=row.created_at,
        platform=row.platform,
        server_id=row.server_id,
        channel_id=row.channel_id,
        thread_id=row.thread_id,
        user_id=row.user_id,
        source=row.source,
        model=row.model,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        estimated=row.estimated,
        error=row.error,
        key_scope=scope,
        reserved=row.state == RESERVED,
    )


def _conditions(query: UsageQuery) -> list[ColumnElement[bool]]:
    u = UsageRow
    found = [u.platform == query.platform, u.day >= query.since, u.day <= query.until]
    if query.server_id is not None:
        found.append(u.server_id == query.server_id)
    if query.channel_id is not None:
        found.append(u.channel_id == query.channel_id)
    if query.user_id is not None:
        found.append(u.user_id == query.user_id)
    return found


class UsagePart:
    def __init__(self, db: Database, long_reads: Database | None = None) -> None:
        """`long_reads`: what sums and exports are read through (they may take a while)."""
        self._db = db
        self._long = long_reads or db
        self._writes: Batcher[UsageRecord, None] = Batcher(self._write_batch, _WRITE_BATCH)
        self._settles: Batcher[tuple[int, UsageRecord], None] = Batcher(
            self._settle_batch, _WRITE_BATCH
        )
        # Rows the database refused, with the reservation each settles (bounded: a
        # database down for days keeps the newest).
        self._unsaved: deque[tuple[UsageRecord, int | None]] = deque(maxlen=_UNSAVED_KEPT)

    async def record(self, record: UsageRecord, reserved: int | None = None) -> None:
        """Insert one row, or settle the row reserved for the call (its id); rows of turns
        ending together share one statement and commit. One the database refused (full,
        busy past its wait) is kept to try again (`retry`): its reservation would
        otherwise count at what it might have used."""
        try:
            await self._submit(record, reserved)
        except StoreError:
            self._unsaved.append((record, reserved))
            raise

    async def _submit(self, record: UsageRecord, reserved: int | None) -> None:
        if reserved is None:
            await self._writes.submit(record)
        else:
            await self._settles.submit((reserved, record))

    async def retry(self) -> int:
        """Record the rows the database refused before, oldest first; how many went in
        (StoreError when it still refuses: they wait for the next try)."""
        done = 0
        while self._unsaved:
            await self._submit(*self._unsaved[0])
            self._unsaved.popleft()
            done += 1
        return done

    async def drain(self, patience: float | None = None) -> int:
        """See Batcher.drain: how many rows were given up."""
        lost = await asyncio.gather(self._writes.drain(patience), self._settles.drain(patience))
        return sum(lost)

    async def _settle_batch(self, settles: Sequence[tuple[int, UsageRecord]]) -> list[None]:
        # The reserved row keeps its time and place; the real counts replace the estimate.
        keep = ("created_at", "day", "platform", "server_id", "channel_id", "thread_id")
        rows = []
        for row_id, record in settles:
            values = {k: v for k, v in _values(record).items() if k not in keep}
            rows.append({"id": row_id, **values})

        async def work(session: AsyncSession) -> None:
            await session.execute(update(UsageRow), rows)

        await self._db.write("usage settle", work)
        return [None] * len(settles)

    async def _write_batch(self, records: Sequence[UsageRecord]) -> list[None]:
        rows = [_values(r) for r in records]

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(insert(_USAGE), rows)

        await self._db.write_plain("usage write", work)
        return [None] * len(records)

    async def buckets(self, query: UsageQuery) -> list[UsageBucket]:
        """Sums per (day, user, model) over the query's rows, in day order."""
        u = UsageRow
        stmt = _summed(u.day, u.user_id, u.model).where(*_conditions(query))

        async def read(session: AsyncSession) -> list[UsageBucket]:
            return _buckets(await session.execute(stmt))

        return await self._long.read("usage read", read)

    async def summary(
        self, query: UsageQuery, top_users: int = 0
    ) -> tuple[list[UsageBucket], list[UsageBucket]]:
        """What /usage shows, summed by the database: the query's sums per (day, model)
        in day order (their user_id ""), and per (user, model) of the `top_users` users
        with the most tokens (ties: the first ids; their day `query.since`). Not a bucket
        per (day, user, model): a busy server's month holds tens of thousands."""
        u = UsageRow
        where = _conditions(query)
        per_day = _summed(u.day, literal(""), u.model, group=(u.day, u.model)).where(*where)
        top = (
            select(u.user_id)
            .where(*where)
            .group_by(u.user_id)
            .order_by(func.sum(u.input_tokens + u.output_tokens).desc(), u.user_id)
            .limit(top_users)
        )
        per_user = _summed(literal(0), u.user_id, u.model, group=(u.user_id, u.model)).where(
            *where, u.user_id.in_(top.scalar_subquery())
        )

        async def read(session: AsyncSession) -> tuple[list[UsageBucket], list[UsageBucket]]:
            days = _buckets(await session.execute(per_day))
            users = []
            if top_users > 0 and days:
                users = _buckets(await session.execute(per_user), query.since)
            return days, users

        return await self._long.read("usage read", read)

    async def records(self, since: date) -> AsyncIterator[UsageRecord]:
        """Every row from the UTC day `since` on, oldest first, read a page at a time."""
        after = 0
        while True:
            stmt = (
                select(UsageRow)
                .where(UsageRow.day >= since, UsageRow.id > after)
                .order_by(UsageRow.id)
                .limit(EXPORT_PAGE)
            )

            rows = await self._long.read("usage export", partial(_scalars, stmt))
            for row in rows:
                yield _record(row)
            if len(rows) < EXPORT_PAGE:
                return
            after = rows[-1].id


async def _scalars(stmt: Select[UsageRow], session: AsyncSession) -> list[UsageRow]:
    return list((await session.scalars(stmt)).all())


def _summed(day: Any, user: Any, model: Any, group: Sequence[Any] | None = None) -> Select[Any]:
    """The sums of a bucket, grouped by `group` (day, user and model unless given) and
    ordered by it."""
    u = UsageRow
    group = (day, user, model) if group is None else group
    return (
        select(
            day,
            user,
            model,
            func.sum(u.input_tokens),
            func.sum(u.output_tokens),
            func.count(),
            func.sum(case((u.state == RESERVED, 0), (u.estimated, 1), else_=0)),
            func.sum(case((u.error, 1), else_=0)),
            func.sum(case((u.state == RESERVED, 1), else_=0)),
        )
        .group_by(*group)
        .order_by(*group)
    )


def _buckets(rows: Result[Any], day: date | None = None) -> list[UsageBucket]:
    """Buckets of rows _summed selected (each on `day` if given)."""
    found: Sequence[Sequence[Any]] = rows.all()
    return [
        UsageBucket(
            day=_day(r[0]) if day is None else day,
            user_id=str(r[1]),
            model=str(r[2]),
            input_tokens=int(r[3] or 0),
            output_tokens=int(r[4] or 0),
            calls=int(r[5] or 0),
            estimated_calls=int(r[6] or 0),
            error_calls=int(r[7] or 0),
            reserved_calls=int(r[8] or 0),
        )
        for r in found
    ]


def _day(value: object) -> date:
    # SQLite hands back a string from a grouped Date column on some drivers.
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
