"""What a chat turn reads (config, secrets, history): batched, plain SQL, remembered."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.store.base import Database, Key, chain, rows_at
from bot.store.batch import Batcher
from bot.store.cache import ScopedCache
from bot.store.models import ChannelConfigRow, MessageImageRow, MessageRow, SecretRow
from bot.types import ChannelConfig, ChannelRef, HistoryEntry, ImageRef, Role, Scope, TurnState

# What a chat turn reads is remembered (see bot.store.cache): bounded in entries, in
# the memory history takes, and in age.
_CACHE_TTL = 30.0
_CACHE_ENTRIES = 20_000
HISTORY_KEEP = 400  # entries per conversation; engines read 200
_HISTORY_BYTES = 32_000_000
# An entry's own objects (its dataclass, author, ids, state…) beside its text.
_ENTRY_BYTES = 400
_READ_BATCH = 200  # channels per batched read (bound parameters stay far below limits)

Conversation = tuple[str, str, str, str]  # (platform, server, channel, thread)


class Merge(Protocol):
    """bot.store.config.merge with the operator's defaults given."""

    def __call__(
        self,
        ref: ChannelRef,
        rows: Sequence[Any],
        *,
        own_secrets: Collection[str],
        server_secrets: Collection[str],
    ) -> ChannelConfig: ...


_CONFIG_ROWS = rows_at(ChannelConfigRow.__table__)
_SECRET_ROWS = rows_at(SecretRow.__table__)
_MESSAGES = MessageRow.__table__
_MESSAGE_IMAGES = MessageImageRow.__table__


def _newest_rows() -> Any:
    """Messages of the conversations given as `conversations`, numbered newest first;
    only those up to `limit`."""
    m = _MESSAGES
    conversation = (m.c.platform, m.c.server_id, m.c.channel_id, m.c.thread_id)
    numbered = (
        select(
            m,
            func.row_number()
            .over(partition_by=conversation, order_by=m.c.id.desc())
            .label("newest"),
        )
        .where(
            tuple_(*conversation).in_(bindparam("conversations", expanding=True)),
            m.c.hidden.is_(False),
        )
        .subquery()
    )
    return select(numbered).where(numbered.c.newest <= bindparam("limit"))


_NEWEST = _newest_rows()


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """A secret row as read, still sealed; `origin` is "channel" or "server"."""

    origin: str
    platform: str
    server_id: str
    channel_id: str
    name: str
    key_id: str
    nonce: bytes
    ciphertext: bytes
    direct_chat: str | None = None  # PERSONAL or HELD (bot.store.vault)
    owner: str | None = None  # who set a PERSONAL one (None: not known)
    # The server's row of the same name, which the channel's own replaces: not sent here,
    # still a secret a message in the channel must not carry (connection.channel_secrets).
    shadows: StoredSecret | None = None


@dataclass(frozen=True, slots=True)
class _Want:
    """What one caller needs read for one channel (or thread)."""

    ref: ChannelRef
    config: bool = False
    secrets: bool = False
    history: int = 0  # newest entries wanted; 0: none


@dataclass(frozen=True, slots=True)
class _Read:
    config: ChannelConfig | None = None
    secrets: Mapping[str, StoredSecret] | None = None
    history: list[HistoryEntry] | None = None


@dataclass(frozen=True, slots=True)
class _History:
    entries: tuple[HistoryEntry, ...]
    complete: bool  # holds every stored entry, not just the newest


def _history_bytes(history: _History) -> int:
    """About what a conversation's remembered entries take: Python keeps text of ASCII
    at a byte a character, other text at up to four (emoji: the soak probe's history
    cache, capped at 32 M characters, took 119 MB)."""
    return sum(
        (len(e.content) if e.content.isascii() else 4 * len(e.content)) + _ENTRY_BYTES
        for e in history.entries
    )


def conversation_of(ref: ChannelRef) -> Conversation:
    return (ref.platform.value, ref.server_id, ref.channel_id, ref.thread_id)


def in_conversation(conversation: Conversation) -> ColumnElement[bool]:
    """Messages of one channel or thread (what the conversation index serves)."""
    platform, server_id, channel_id, thread_id = conversation
    m = _MESSAGES
    return and_(
        m.c.platform == platform,
        m.c.server_id == server_id,
        m.c.channel_id == channel_id,
        m.c.thread_id == thread_id,
    )


def entry_of(row: Any) -> HistoryEntry:
    return HistoryEntry(
        role=Role(row.role),
        content=row.content,
        author=row.author,
        tokens=row.token_estimate,
        error=row.error,
        state=TurnState(row.state),
        id=row.id,
        reply_to=row.reply_to,
        author_id=row.author_id,
        files=row.files,
    )


class TurnReads:
    """The caches of what turns read, filled by one batched query per kind.

    Correct while one process serves a channel: writes through the store drop or
    update what they change (see bot.store.cache).
    """

    def __init__(self, db: Database, merge: Merge) -> None:
        self._db = db
        self._merge = merge
        self._batch: Batcher[_Want, _Read] = Batcher(self._read_batch, _READ_BATCH)
        self.configs: ScopedCache[ChannelConfig] = ScopedCache(
            ttl=_CACHE_TTL, max_entries=_CACHE_ENTRIES
        )
        self.secrets: ScopedCache[Mapping[str, StoredSecret]] = ScopedCache(
            ttl=_CACHE_TTL, max_entries=_CACHE_ENTRIES
        )
        self.histories: ScopedCache[_History] = ScopedCache(
            ttl=_CACHE_TTL,
            max_entries=_CACHE_ENTRIES,
            max_weight=_HISTORY_BYTES,
            weigh=_history_bytes,
        )

    def secrets_changed(self, scope: Key) -> None:
        """Secrets at `scope` were set or removed: a config depends on which the channel
        has of its own (whether its endpoint is its server's), so both are read again."""
        self.secrets.drop_scope(scope)
        self.configs.drop_scope(scope)

    async def drain(self, patience: float | None = None) -> int:
        """See Batcher.drain: how many reads were given up."""
        return await self._batch.drain(patience)

    async def prefetch(self, ref: ChannelRef, history_limit: int) -> None:
        """Load what a chat turn reads in one round trip (only what is not remembered)."""
        scope = ref.scope_key(Scope.CHANNEL)
        want = _Want(
            ref,
            config=self.configs.get(scope) is None,
            secrets=self.secrets.get(scope) is None,
            history=0 if self._remembered(ref, history_limit) is not None else history_limit,
        )
        if want.config or want.secrets or want.history:
            await self._batch.submit(want)

    async def config(self, ref: ChannelRef) -> ChannelConfig:
        cached = self.configs.get(ref.scope_key(Scope.CHANNEL))
        if cached is not None:
            return cached
        config = (await self._batch.submit(_Want(ref, config=True))).config
        assert config is not None
        return config

    async def sealed_secrets(self, ref: ChannelRef) -> Mapping[str, StoredSecret]:
        """The nearest stored secret of each name for this channel, still sealed.

        One read serves every name a turn needs; each is opened only when asked for, so
        an unreadable secret fails only the lookups of its own name.
        """
        cached = self.secrets.get(ref.scope_key(Scope.CHANNEL))
        if cached is not None:
            return cached
        secrets = (await self._batch.submit(_Want(ref, secrets=True))).secrets
        assert secrets is not None
        return secrets

    async def history(self, ref: ChannelRef, limit: int) -> list[HistoryEntry]:
        remembered = self._remembered(ref, limit)
        if remembered is not None:
            return remembered
        entries = (await self._batch.submit(_Want(ref, history=limit))).history
        assert entries is not None
        return entries

    def appended(self, ref: ChannelRef, entries: Sequence[HistoryEntry]) -> None:
        """This process stored `entries` (or replaced them by id): keep the cache true."""
        conversation = conversation_of(ref)
        cached = self.histories.get(conversation)
        if cached is None:
            return
        kept = list(cached.entries)
        positions = {e.id: i for i, e in enumerate(kept) if e.id is not None}
        for entry in entries:
            at = positions.get(entry.id) if entry.id is not None else None
            if at is not None:
                kept[at] = entry
            else:
                kept.append(entry)
        complete = cached.complete and len(kept) <= HISTORY_KEEP
        self.histories.replace(conversation, _History(tuple(kept[-HISTORY_KEEP:]), complete))

    def _remembered(self, ref: ChannelRef, limit: int) -> list[HistoryEntry] | None:
        if limit <= 0:
            return []
        cached = self.histories.get(conversation_of(ref))
        if cached is not None and (cached.complete or len(cached.entries) >= limit):
            return list(cached.entries[-limit:])
        return None

    async def _read_batch(self, wants: Sequence[_Want]) -> list[_Read]:
        """One connection, one query per kind for every channel asked about."""
        generations = (
            self.configs.generation(),
            self.secrets.generation(),
            self.histories.generation(),
        )
        config_refs = [w.ref for w in wants if w.config]
        # A config says whether the channel's endpoint is its server's: that depends on
        # the secrets the channel has of its own, read in the same statement.
        secret_refs = [w.ref for w in wants if w.secrets or w.config]
        limits: dict[Conversation, int] = {}
        for w in wants:
            if w.history:
                conversation = conversation_of(w.ref)
                limits[conversation] = max(w.history, limits.get(conversation, 0))

        async def read(conn: AsyncConnection) -> tuple[Any, Any, Any]:
            return (
                await _rows_for(conn, _CONFIG_ROWS, config_refs),
                await _rows_for(conn, _SECRET_ROWS, secret_refs),
                await _load_histories(conn, limits),
            )

        config_rows, secret_rows, histories = await self._db.read_plain("read", read)
        results = []
        for w in wants:
            scope = w.ref.scope_key(Scope.CHANNEL)
            got = _Read()
            if w.config:
                own = secret_rows.get(scope, ())
                server = (
                    secret_rows.get(w.ref.scope_key(Scope.SERVER), ()) if w.ref.has_server else ()
                )
                config = self._merge(
                    w.ref,
                    _nearest_first(w.ref, config_rows),
                    own_secrets={r.name for r in own},
                    server_secrets={r.name for r in server},
                )
                self.configs.put(scope, scope, config, generation=generations[0])
                got = replace(got, config=config)
            if w.secrets:
                secrets = _sealed(w.ref, _nearest_first(w.ref, secret_rows))
                self.secrets.put(scope, scope, secrets, generation=generations[1])
                got = replace(got, secrets=secrets)
            if w.history:
                conversation = conversation_of(w.ref)
                entries = histories[conversation]
                history = _History(tuple(entries), complete=len(entries) < limits[conversation])
                self.histories.put(conversation, scope, history, generation=generations[2])
                got = replace(got, history=entries[-w.history :])
            results.append(got)
        return results


async def _rows_for(
    conn: AsyncConnection, statement: Any, refs: Sequence[ChannelRef]
) -> dict[Key, list[Any]]:
    """Rows of these channels and of their servers, by (platform, server, channel)."""
    if not refs:
        return {}
    keys = sorted({key for ref in refs for key in chain(ref)})
    rows = (await conn.execute(statement, {"keys": keys})).all()
    found: dict[Key, list[Any]] = {}
    for row in rows:
        found.setdefault((row.platform, row.server_id, row.channel_id), []).append(row)
    return found


def _nearest_first(ref: ChannelRef, rows: Mapping[Key, list[Any]]) -> list[Any]:
    """The rows of this channel's chain, the channel's own first."""
    return [row for key in chain(ref) for row in rows.get(key, ())]


def _sealed(ref: ChannelRef, nearest_first: Sequence[Any]) -> Mapping[str, StoredSecret]:
    nearest: dict[str, StoredSecret] = {}
    for row in reversed(nearest_first):  # the channel's row of a name replaces the server's
        nearest[row.name] = StoredSecret(
            origin="channel" if row.channel_id == ref.channel_id else "server",
            platform=row.platform,
            server_id=row.server_id,
            channel_id=row.channel_id,
            name=row.name,
            key_id=row.key_id,
            nonce=row.nonce,
            ciphertext=row.ciphertext,
            direct_chat=row.direct_chat,
            owner=row.owner,
            shadows=nearest.get(row.name),
        )
    return MappingProxyType(nearest)


async def _load_histories(
    conn: AsyncConnection, limits: Mapping[Conversation, int]
) -> dict[Conversation, list[HistoryEntry]]:
    """The newest turns of each conversation, in one statement of one fixed shape.

    A UNION with one part per conversation read only the newest rows of each, but it
    was a new statement for every batch size: building and compiling a burst's
    50-part UNION took longer than reading. The window reads a cold conversation's
    rows in full once; after that the store remembers them.
    """
    found: dict[Conversation, list[HistoryEntry]] = {c: [] for c in limits}
    if not limits:
        return found
    params = {"conversations": sorted(limits), "limit": max(limits.values())}
    rows = [row for row in (await conn.execute(_NEWEST, params)).all()]
    images = await _images_of(conn, [row.id for row in rows if row.image_count])
    for row in sorted(rows, key=lambda row: row.id):  # oldest first
        conversation = (row.platform, row.server_id, row.channel_id, row.thread_id)
        if row.newest > limits[conversation]:
            continue
        entry = entry_of(row)
        if row.id in images:
            entry = replace(entry, images=tuple(images[row.id]))
        found[conversation].append(entry)
    return found


async def _images_of(conn: AsyncConnection, message_ids: list[int]) -> dict[int, list[ImageRef]]:
    """The images these messages showed, in order (one query, only when there are any)."""
    if not message_ids:
        return {}
    t = _MESSAGE_IMAGES
    rows = await conn.execute(
        select(t.c.message_id, t.c.sha256, t.c.name, t.c.media_type)
        .where(t.c.message_id.in_(message_ids))
        .order_by(t.c.message_id, t.c.position)
    )
    found: dict[int, list[ImageRef]] = {}
    for message_id, sha, name, kind in rows:
        found.setdefault(message_id, []).append(ImageRef(sha, name, kind))
    return found
