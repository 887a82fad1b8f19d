"""Limits and who-may-chat rules per channel or server, and the atomic charge: a usage
row reserved only if the sums it would join stay under the limits, in one transaction
(its own, or the one that stores the question).

On PostgreSQL a charge bumps its server's row in quota_locks: that row lock queues every
other charge of the server (any process) until commit. The same statement reserves the
row and reads the sums, in the snapshot the statement began with; the lock row's count,
as that snapshot saw it and as bumped, says whether a charge committed meanwhile (while
this one waited for the lock). Only then are the sums read again, behind the lock, so an
uncontended charge is one round trip. On SQLite the reserved row's INSERT comes first
and takes the database's write lock before any read, so two processes never deadlock;
its RETURNING reads the sums. Either way a refusal deletes the reserved row again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    JSON,
    ColumnElement,
    CompoundSelect,
    Executable,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from bot.store.base import NAME_CHARS, Database, Key, key_of, rows_at, usage_model
from bot.store.batch import Batcher
from bot.store.cache import ScopedCache
from bot.store.history import HeldUsage
from bot.store.models import (
    RESERVED,
    RESERVED_ONLY,
    SETTLED,
    AccessRuleRow,
    LimitRow,
    QuotaLockRow,
    UsageRow,
    utcnow,
)
from bot.types import Actor, ChannelRef, Scope
from bot.types.limits import AccessKind, AccessRule, Charge, Counts, Effect, ScopeLimits

V = TypeVar("V")
Q = TypeVar("Q")
CACHE_SECONDS = 30.0  # a process serves its channels alone; this bounds a CLI's change
_CACHED = 10_000
_READ_BATCH = 200  # scopes per batched read
_LIMITS_AT = rows_at(
    LimitRow.platform, LimitRow.server_id, LimitRow.channel_id, LimitRow.name, LimitRow.value
)
_RULES_AT = rows_at(
    AccessRuleRow.platform,
    AccessRuleRow.server_id,
    AccessRuleRow.channel_id,
    AccessRuleRow.kind,
    AccessRuleRow.subject,
    AccessRuleRow.effect,
).order_by(AccessRuleRow.id)  # the order they were set in


def _top(ref: ChannelRef) -> Key:
    """The row a charge locks: the server's; a place without a server locks itself."""
    if ref.has_server:
        return (ref.platform.value, ref.server_id, "")
    return (ref.platform.value, "", ref.channel_id)


def _keys(ref: ChannelRef) -> list[tuple[Scope, Key]]:
    keys = [(Scope.CHANNEL, key_of(ref, Scope.CHANNEL))]
    if ref.has_server:
        keys.append((Scope.SERVER, key_of(ref, Scope.SERVER)))
    return keys


def _at(table: Any, key: Key) -> ColumnElement[bool]:
    return and_(table.platform == key[0], table.server_id == key[1], table.channel_id == key[2])


class QuotaPart:
    def __init__(self, db: Database) -> None:
        self._db = db
        # Per-process memory of each scope's rows, dropped on this process's writes.
        self._limits: ScopedCache[dict[str, int | None]] = ScopedCache(
            ttl=CACHE_SECONDS, max_entries=_CACHED
        )
        self._statements = _Statements(db)
        self._rules: ScopedCache[list[AccessRule]] = ScopedCache(
            ttl=CACHE_SECONDS, max_entries=_CACHED
        )
        # A burst of channels not read yet reads its scopes in one query, not four each.
        self._limit_reads: Batcher[Key, dict[str, int | None]] = Batcher(
            self._read_limits, _READ_BATCH
        )
        self._rule_reads: Batcher[tuple[Key, Scope], list[AccessRule]] = Batcher(
            self._read_rules, _READ_BATCH
        )

    # ---- limits ---------------------------------------------------------------------

    async def limits(self, ref: ChannelRef) -> ScopeLimits:
        """What is set for this channel and its server (None: set to off)."""
        found = ScopeLimits()
        keys = _keys(ref)
        read = await _remembered_all(
            self._limits, [(key, key) for _, key in keys], self._limit_reads.submit
        )
        for (scope, _), values in zip(keys, read, strict=True):
            (found.server if scope is Scope.SERVER else found.channel).update(values)
        return found

    async def set_limit(
        self, ref: ChannelRef, scope: Scope, name: str, value: int | None, actor: Actor
    ) -> None:
        key = key_of(ref, scope)

        async def work(session: AsyncSession) -> None:
            values = {"value": value, "updated_by": actor.id[:NAME_CHARS], "updated_at": utcnow()}
            stmt = self._db.insert(LimitRow).values(
                platform=key[0], server_id=key[1], channel_id=key[2], name=name, **values
            )
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["platform", "server_id", "channel_id", "name"], set_=values
                )
            )

        await self._db.write("limits write", work)
        self._limits.drop(key)

    async def clear_limit(self, ref: ChannelRef, scope: Scope, name: str) -> bool:
        key = key_of(ref, scope)

        async def work(session: AsyncSession) -> bool:
            result = await session.execute(
                delete(LimitRow).where(_at(LimitRow, key), LimitRow.name == name)
            )
            return bool(getattr(result, "rowcount", 0))

        removed = await self._db.write("limits write", work)
        self._limits.drop(key)
        return removed

    # ---- charges --------------------------------------------------------------------

    async def counts(self, ref: ChannelRef, user_id: str, now: datetime) -> Counts:
        """What the limits of this place count right now, and what of it answers being
        written hold (for /limits)."""

        async def read(session: AsyncSession) -> Counts:
            conn = await session.connection()
            where = _where(ref, user_id, now)
            counts = await self._statements.counts(conn, ref, where, True)
            return await self._statements.with_held(conn, ref, where, counts)

        return await self._db.read("usage sums", read)

    async def charge(
        self, ref: ChannelRef, charge: Charge, decide: Callable[[Counts], V | None] | None
    ) -> tuple[int | None, V | None]:
        """Reserve `charge` unless `decide` (given the counts) refuses: (row id, None) or
        (None, refusal), atomically across processes, in a transaction of its own.
        Without `decide` (no limit) the row is only held: nothing is counted or locked."""

        async def work(session: AsyncSession) -> tuple[int | None, V | None]:
            return await self._charge_on(await session.connection(), ref, charge, decide)

        return await self._db.write("usage charge", work)

    def guard(
        self, ref: ChannelRef, charge: Charge, decide: Callable[[Counts], V | None] | None
    ) -> Guarded[V]:
        """The same charge as a guard for another write's transaction (the question's):
        the turn then commits once before the model is asked."""
        if decide is None:  # only held: stored with the question's batch, not run
            return Guarded(None, HeldUsage(_reserved_row(charge)))
        held: Guarded[V] = Guarded(lambda conn: self._charge_on(conn, ref, charge, decide))
        held.order = _top(ref)
        return held

    async def _charge_on(
        self,
        conn: AsyncConnection,
        ref: ChannelRef,
        charge: Charge,
        decide: Callable[[Counts], V | None] | None,
    ) -> tuple[int | None, V | None]:
        if decide is None:
            return await self._statements.hold(conn, charge), None
        where = _where(ref, charge.user_id, charge.at)
        statements = self._statements
        if self._db.postgres:
            reserved, counts = await statements.lock_reserve_and_count(conn, ref, where, charge)
            if counts is None:  # a charge committed while this one waited for the lock
                # Read again behind the lock, they hold this charge's row too.
                counts = _without(
                    await statements.counts(conn, ref, where, charge.count_recent), charge
                )
        else:
            # SQLite: the reserved row's INSERT takes the database's write lock before
            # anything is read, which is all the lock row is for. The counts it returns
            # hold the new row: taken without it.
            reserved, held = await statements.reserve_and_count(conn, ref, where, charge)
            counts = _without(held, charge)
        refusal = decide(counts)
        if refusal is None:
            return reserved, None
        await conn.execute(delete(UsageRow).where(UsageRow.id == reserved))
        # Refused: what answers being written hold of it, for the refusal to say (read
        # only here, so a charge that goes pays nothing for it).
        return None, decide(await statements.with_held(conn, ref, where, counts))

    async def release(self, row_id: int) -> None:
        """Drop a reservation whose turn never reached the model."""

        async def work(session: AsyncSession) -> None:
            await session.execute(
                delete(UsageRow).where(UsageRow.id == row_id, UsageRow.state == RESERVED)
            )

        await self._db.write("usage release", work)

    async def settle_stale(
        self, older_than: timedelta, now: datetime, running: Collection[int] = ()
    ) -> int:
        """Reserved rows of calls that cannot still run (a crash left them): settled at
        their estimate; `running`: rows of this process's turns, which still can. Of any
        day (a bot may have stayed stopped for weeks): the reserved rows' own index
        (ix_usage_reserved) finds them, as its condition is named literally."""
        cutoff = now - older_than
        stale = (
            text(RESERVED_ONLY),
            UsageRow.created_at < cutoff,
            UsageRow.id.not_in(sorted(running)),
        )

        async def left(session: AsyncSession) -> bool:
            return bool(await session.scalar(select(UsageRow.id).where(*stale).limit(1)))

        # Read first: most starts find none, and write nothing (a read-only database
        # then says so at the first turn, not in a warning about reservations).
        if not await self._db.read("usage settle", left):
            return 0

        async def work(session: AsyncSession) -> int:
            result = await session.execute(update(UsageRow).where(*stale).values(state=SETTLED))
            return int(getattr(result, "rowcount", 0) or 0)

        return await self._db.write("usage settle", work)

    # ---- who may chat ---------------------------------------------------------------

    async def rules(self, ref: ChannelRef) -> list[AccessRule]:
        """The channel's rules, then its server's."""
        keys = _keys(ref)
        read = await _remembered_all(
            self._rules, [(key, (key, scope)) for scope, key in keys], self._rule_reads.submit
        )
        return [rule for rules in read for rule in rules]

    async def _read_limits(self, keys: Sequence[Key]) -> list[dict[str, int | None]]:
        async def read(conn: AsyncConnection) -> dict[Key, dict[str, int | None]]:
            found: dict[Key, dict[str, int | None]] = {}
            rows = await conn.execute(_LIMITS_AT, {"keys": sorted(set(keys))})
            for platform, server, channel, name, value in rows.all():
                values = found.setdefault((platform, server, channel), {})
                values[str(name)] = None if value is None else int(value)
            return found

        found = await self._db.read_plain("limits read", read)
        return [dict(found.get(key, {})) for key in keys]

    async def _read_rules(self, wants: Sequence[tuple[Key, Scope]]) -> list[list[AccessRule]]:
        async def read(conn: AsyncConnection) -> dict[Key, list[tuple[str, str, str]]]:
            found: dict[Key, list[tuple[str, str, str]]] = {}
            rows = await conn.execute(_RULES_AT, {"keys": sorted({key for key, _ in wants})})
            for platform, server, channel, kind, subject, effect in rows.all():
                found.setdefault((platform, server, channel), []).append((kind, subject, effect))
            return found

        found = await self._db.read_plain("access read", read)
        return [_rules_of(found.get(key, []), scope) for key, scope in wants]

    async def set_rule(self, ref: ChannelRef, scope: Scope, rule: AccessRule, actor: Actor) -> None:
        key = key_of(ref, scope)

        async def work(session: AsyncSession) -> None:
            values = {"effect": rule.effect.value, "created_by": actor.id[:NAME_CHARS]}
            stmt = self._db.insert(AccessRuleRow).values(
                platform=key[0],
                server_id=key[1],
                channel_id=key[2],
                kind=_stored_kind(rule.kind, rule.effect),
                subject=rule.subject[:NAME_CHARS],
                created_at=utcnow(),
                **values,
            )
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["platform", "server_id", "channel_id", "kind", "subject"],
                    set_=values,
                )
            )

        await self._db.write("access write", work)
        self._rules.drop(key)

    async def remove_rule(
        self, ref: ChannelRef, scope: Scope, kind: AccessKind, subject: str, *, admin: bool = False
    ) -> bool:
        """Remove the who-may-chat rule for `subject` at `scope` (`admin`: its bot-admin
        grant instead)."""
        key = key_of(ref, scope)
        stored = _stored_kind(kind, Effect.ADMIN if admin else Effect.ALLOW)

        async def work(session: AsyncSession) -> bool:
            result = await session.execute(
                delete(AccessRuleRow).where(
                    _at(AccessRuleRow, key),
                    AccessRuleRow.kind == stored,
                    AccessRuleRow.subject == subject[:NAME_CHARS],
                )
            )
            return bool(getattr(result, "rowcount", 0))

        removed = await self._db.write("access write", work)
        self._rules.drop(key)
        return removed


async def _remembered_all(
    cache: ScopedCache[V], wants: Sequence[tuple[Key, Q]], read: Callable[[Q], Awaitable[V]]
) -> list[V]:
    """Each key's value: all from the cache when it holds them (no tasks: a turn asks
    several times), else each remembered or read, side by side."""
    hits: list[V] = []
    for key, _ in wants:
        hit = cache.get(key)
        if hit is None:
            return list(
                await asyncio.gather(*(_remembered(cache, k, read, want) for k, want in wants))
            )
        hits.append(hit)
    return hits


async def _remembered(
    cache: ScopedCache[V], key: Key, read: Callable[[Q], Awaitable[V]], want: Q
) -> V:
    """`key`'s value from the cache, else read (and kept unless a write came meanwhile)."""
    hit = cache.get(key)
    if hit is None:
        generation = cache.generation()
        hit = await read(want)
        cache.put(key, key, hit, generation=generation)
    return hit


# The `kind` a bot-admin role's row is stored with: a role may have a who-may-chat rule
# and a bot-admin grant on the same scope (one row each; the table keeps one per kind and
# subject), and a version before them skips a kind it does not know.
_ADMIN_ROLE = "admin"


def _stored_kind(kind: AccessKind, effect: Effect) -> str:
    return _ADMIN_ROLE if effect is Effect.ADMIN else kind.value


def _rules_of(rows: Sequence[tuple[str, str, str]], scope: Scope) -> list[AccessRule]:
    rules = []
    for kind, subject, effect in rows:
        if kind == _ADMIN_ROLE:
            rules.append(AccessRule(AccessKind.ROLE, subject, Effect.ADMIN, scope is Scope.SERVER))
            continue
        try:
            rules.append(
                AccessRule(AccessKind(kind), subject, Effect(effect), scope is Scope.SERVER)
            )
        except ValueError:
            continue  # a kind a later version wrote
    return rules


def _without(counts: Counts, charge: Charge) -> Counts:
    """The counts as they were before `charge`'s own reserved row."""
    estimate = max(0, charge.estimate)
    recent = list(counts.user_recent)
    if recent:
        recent.pop(recent.index(charge.at) if charge.at in recent else len(recent) - 1)
    return Counts(
        counts.user_tokens_today - estimate,
        counts.channel_tokens_today - estimate,
        counts.server_tokens_today - estimate,
        tuple(recent),
        counts.user_failed,  # its own row has not failed
    )


def _reserved_row(charge: Charge) -> dict[str, Any]:
    return {
        "created_at": charge.at,
        "day": charge.at.date(),
        "platform": charge.platform,
        "server_id": charge.server_id[:NAME_CHARS],
        "channel_id": charge.channel_id[:NAME_CHARS],
        "thread_id": charge.thread_id[:NAME_CHARS],
        "user_id": charge.user_id[:NAME_CHARS],
        "source": charge.source,
        "model": usage_model(charge.model),
        "input_tokens": max(0, charge.estimate - charge.answer),
        "output_tokens": max(0, min(charge.answer, charge.estimate)),
        "estimated": True,
        "error": False,
        "key_scope": "none",
        "state": RESERVED,
    }


class Guarded(Generic[V]):
    """A charge waiting to run inside another write: `run` it there; then `reserved` or
    `refusal` says how it went (the last attempt's, when a transaction was retried).
    Where no limit counts (`held`), only a row to store with that write's others."""

    def __init__(
        self,
        charge: Callable[[AsyncConnection], Awaitable[tuple[int | None, V | None]]] | None,
        held: HeldUsage | None = None,
    ) -> None:
        self._charge = charge
        self.held = held
        self.order: tuple[str, ...] = ()
        self.reserved: int | None = None
        self.refusal: V | None = None

    async def run(self, conn: AsyncConnection) -> bool:
        assert self._charge is not None, "a held row is stored, not run"
        self.reserved, self.refusal = await self._charge(conn)
        return self.refusal is None


def _where(ref: ChannelRef, user_id: str, now: datetime) -> dict[str, Any]:
    """What a charge sums over: ids cut as _reserved_row stores them (a longer id must
    still find its own rows, or it escapes every per-user limit)."""
    since = now - timedelta(minutes=1)
    return {
        "platform": ref.platform.value,
        "server_id": ref.server_id[:NAME_CHARS],
        "channel_id": ref.channel_id[:NAME_CHARS],
        "user_id": user_id[:NAME_CHARS],
        "today": now.date(),
        "since": since,
        "since_day": since.date(),
    }


class _Statements:
    """A charge's statements, built once: a turn should not pay for SQL compilation."""

    def __init__(self, db: Database) -> None:
        u = UsageRow
        q = QuotaLockRow
        top: dict[str, Any] = {
            name: bindparam(f"lock_{name}") for name in ("platform", "server_id", "channel_id")
        }
        lock = db.insert(q).values(**top, charges=1)
        self._lock = lock.on_conflict_do_update(
            index_elements=list(top), set_={"charges": q.charges + 1}
        ).returning(q.charges)
        self._seen = select(q.charges).where(*(getattr(q, name) == p for name, p in top.items()))
        at = u.created_at.type
        # SQLite returns the minute's times as JSON text: read them as the column would.
        dialect = db.engine.dialect
        self._time = at.dialect_impl(dialect).result_processor(dialect, None) or (lambda t: t)
        sums, day, minute, here = _counting(u)
        # With a messages limit: the sums and the user's last minute in one round trip,
        # the sums' row first (kind 0), then the minute's times in order: its calls that
        # went or may still (kind 1), then those that failed (kind 2, counted apart).
        # Keyed by (has a server, counts the last minute).
        self._counts: dict[tuple[bool, bool], Select[Any] | CompoundSelect[Any]] = {}
        for has in (True, False):
            place = [] if has else [here]
            self._counts[has, False] = select(*sums).where(*day, *place)
            self._counts[has, True] = union_all(
                select(literal(0).label("kind"), *sums, literal(None, at).label("at")).where(
                    *day, *place
                ),
                select(
                    case((u.error, literal(2)), else_=literal(1)),
                    literal(0),
                    literal(0),
                    literal(0),
                    u.created_at,
                ).where(*minute, *place),
            ).order_by("kind", "at")
        # What reserved rows hold of the sums: the day's rows of the place that are.
        reserved = u.state == RESERVED
        self._held = {
            has: select(*sums).where(*day, reserved, *([] if has else [here]))
            for has in (True, False)
        }
        self._reserving: dict[tuple[bool, bool, tuple[str, ...]], Select[Any]] = {}
        self._returning: dict[tuple[bool, bool, tuple[str, ...]], Executable] = {}
        self._holding: dict[tuple[str, ...], Executable] = {}

    def _reserving_query(self, has: bool, recent: bool, names: tuple[str, ...]) -> Select[Any]:
        """PostgreSQL: the lock row bumped, a reserved row with these columns, and the
        counts, in one statement; then the reserved row's id, and the lock row's count
        as bumped and as the statement's snapshot saw it.

        Each INSERT in the WITH runs once, and everything read sees the snapshot the
        statement began with: not the reserved row. Built once per shape of the row."""
        query = self._reserving.get((has, recent, names))
        if query is None:
            values: dict[str, Any] = {name: bindparam(f"reserve_{name}") for name in names}
            reserve = insert(UsageRow).values(values).returning(UsageRow.id).cte("reserved")
            locked = self._lock.cte("locked")
            counted = self._counts[has, recent].subquery()
            query = select(
                counted,
                select(reserve.c.id).scalar_subquery().label("reserved_id"),
                select(locked.c.charges).scalar_subquery().label("charges"),
                self._seen.scalar_subquery().label("charges_seen"),
            )
            if recent:  # a subquery's order does not carry over
                query = query.order_by(counted.c.kind, counted.c.at)
            self._reserving[has, recent, names] = query
        return query

    def _returning_insert(self, has: bool, recent: bool, names: tuple[str, ...]) -> Executable:
        """SQLite: a reserved row with these columns, returning its id and the counts (as
        JSON: the sums, then the minute's times) in one statement. SQLite has no
        data-modifying WITH, but its RETURNING takes subqueries; they see the new row."""
        query = self._returning.get((has, recent, names))
        if query is None:
            counted = aliased(UsageRow, name="counted")
            sums, day, minute, here = _counting(counted)
            place = [] if has else [here]
            found: list[Any] = [select(func.json_array(*sums)).where(*day, *place)]
            if recent:  # the minute's times, then those of its calls that failed
                for failed, name in ((False, "recent"), (True, "failed")):
                    times = select(counted.created_at.label("at")).where(
                        *minute, *place, counted.error if failed else ~counted.error
                    )
                    found.append(select(func.json_group_array(times.subquery(name).c.at)))
            values: dict[str, Any] = {name: bindparam(f"reserve_{name}") for name in names}
            query = (
                insert(UsageRow)
                .values(values)
                .returning(UsageRow.id, *(type_coerce(f.scalar_subquery(), JSON) for f in found))
            )
            self._returning[has, recent, names] = query
        return query

    async def hold(self, conn: AsyncConnection, charge: Charge) -> int:
        """Reserve `charge`'s row, counting nothing (no limit holds); its id."""
        row = _reserved_row(charge)
        names = tuple(row)
        query = self._holding.get(names)
        if query is None:
            values: dict[str, Any] = {name: bindparam(f"reserve_{name}") for name in names}
            query = self._holding[names] = insert(UsageRow).values(values).returning(UsageRow.id)
        params = {f"reserve_{name}": value for name, value in row.items()}
        return int((await conn.execute(query, params)).scalar_one())

    async def reserve_and_count(
        self, conn: AsyncConnection, ref: ChannelRef, where: dict[str, Any], charge: Charge
    ) -> tuple[int, Counts]:
        """Reserve `charge`'s row and read the counts, which hold it (SQLite only: from
        the INSERT on it holds the database's write lock)."""
        row = _reserved_row(charge)
        query = self._returning_insert(ref.has_server, charge.count_recent, tuple(row))
        params = where | {f"reserve_{name}": value for name, value in row.items()}
        found = (await conn.execute(query, params)).one()
        user_today, channel_today, server_today = (int(v or 0) for v in found[1])
        recent: tuple[datetime, ...] = ()
        failed: tuple[datetime, ...] = ()
        if charge.count_recent:
            recent, failed = (tuple(sorted(self._time(t) for t in ts)) for ts in found[2:4])
        return int(found[0]), Counts(user_today, channel_today, server_today, recent, failed)

    async def counts(
        self, conn: AsyncConnection, ref: ChannelRef, where: dict[str, Any], recent: bool
    ) -> Counts:
        rows = (await conn.execute(self._counts[ref.has_server, recent], where)).all()
        return _counted(rows, recent)

    async def with_held(
        self, conn: AsyncConnection, ref: ChannelRef, where: dict[str, Any], counts: Counts
    ) -> Counts:
        """`counts` with what reserved rows hold of each sum (answers being written)."""
        found = (await conn.execute(self._held[ref.has_server], where)).one()
        user, channel, server = (int(v or 0) for v in found)
        return replace(counts, user_held=user, channel_held=channel, server_held=server)

    async def lock_reserve_and_count(
        self, conn: AsyncConnection, ref: ChannelRef, where: dict[str, Any], charge: Charge
    ) -> tuple[int, Counts | None]:
        """Take the server's lock row, reserve `charge`'s row and read the counts without
        it (PostgreSQL only). The counts are None when a charge committed after this
        statement began: they miss its row and must be read again."""
        row = _reserved_row(charge)
        query = self._reserving_query(ref.has_server, charge.count_recent, tuple(row))
        top = _top(ref)
        params = where | {f"reserve_{name}": value for name, value in row.items()}
        params |= {"lock_platform": top[0], "lock_server_id": top[1], "lock_channel_id": top[2]}
        rows = (await conn.execute(query, params)).all()
        *_, reserved, charges, seen = rows[0]
        current = int(charges) == int(seen or 0) + 1  # no other charge came between
        return int(reserved), _counted(rows, charge.count_recent) if current else None


def _counting(u: Any) -> tuple[tuple[Any, ...], list[Any], list[Any], Any]:
    """The terms of the counts over `u` (the usage table or an alias of it): the three
    sums, the server's day, the user's last minute, and the place without a server."""
    tokens = u.input_tokens + u.output_tokens
    day = [
        u.platform == bindparam("platform"),
        u.server_id == bindparam("server_id"),
        u.day == bindparam("today"),
    ]
    minute = [
        u.platform == bindparam("platform"),
        u.server_id == bindparam("server_id"),
        u.user_id == bindparam("user_id"),
        u.day >= bindparam("since_day"),
        u.created_at > bindparam("since", type_=u.created_at.type),
    ]
    # A place without a server is its own: its rows are the channel's.
    here = u.channel_id == bindparam("channel_id")
    # One pass over the server's rows of the day (an index range) for all three sums.
    sums = (
        func.coalesce(func.sum(case((u.user_id == bindparam("user_id"), tokens), else_=0)), 0),
        func.coalesce(
            func.sum(case((u.channel_id == bindparam("channel_id"), tokens), else_=0)), 0
        ),
        func.coalesce(func.sum(tokens), 0),
    )
    return sums, day, minute, here


def _counted(rows: Sequence[Any], recent: bool) -> Counts:
    """Counts from the rows of a counts query: the sums first, then the minute's times."""
    if not recent:
        user_today, channel_today, server_today = (int(v or 0) for v in rows[0][:3])
        return Counts(user_today, channel_today, server_today)
    user_today, channel_today, server_today = (int(v or 0) for v in rows[0][1:4])
    went = tuple(r[4] for r in rows[1:] if r[0] == 1)
    failed = tuple(r[4] for r in rows[1:] if r[0] == 2)
    return Counts(user_today, channel_today, server_today, went, failed)
