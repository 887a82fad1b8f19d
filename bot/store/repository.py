"""The `Store` facade: configuration, secrets, history, model cache and audit log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    delete,
    insert,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.store.batch import Batcher
from bot.store.cache import ScopedCache
from bot.store.db import create_engine
from bot.store.models import (
    AuditRow,
    Base,
    ChannelConfigRow,
    MessageRow,
    ModelCacheRow,
    SecretRow,
    utcnow,
)
from bot.store.secrets import (
    Sealed,
    SecretBox,
    SecretUnreadable,
    associated_data,
    describe_scope,
)
from bot.types import (
    Actor,
    ChannelConfig,
    ChannelRef,
    GenerationParams,
    HistoryEntry,
    ModelInfo,
    ReplyMode,
    Role,
    Scope,
    SecretValue,
    Source,
    StatusCheck,
)

# Secret names the bot stores; a typo must not silently create a new secret.
SECRET_NAMES = frozenset(
    {"openai_api_key", "claude_api_key", "mistral_api_key", "custom_api_key", "proxy_password"}
)

_NO_SECRETS: Mapping[str, SecretValue] = MappingProxyType({})
_AUDIT_VALUE_CHARS = 80
_NAME_CHARS = 255
_ACTION_CHARS = 64

Key = tuple[str, str, str]
E = TypeVar("E", Source, ReplyMode)

# What a chat turn reads is remembered (see bot.store.cache): bounded in entries, in
# history characters, and in age.
_CACHE_TTL = 30.0
_CACHE_ENTRIES = 20_000
_HISTORY_KEEP = 400  # entries per conversation; engines read 200
_HISTORY_CHARS = 32_000_000
_Found = tuple[str, SecretValue] | None


_READ_BATCH = 200  # channels per batched read (bound parameters stay far below limits)
_WRITE_BATCH = 1000  # turns per grouped commit


def _rows_at(table: Any) -> Any:
    """Rows at any of the (platform, server, channel) keys given as `keys`, built once."""
    key = tuple_(table.c.platform, table.c.server_id, table.c.channel_id)
    return select(table).where(key.in_(bindparam("keys", expanding=True)))


_CONFIG_ROWS = _rows_at(ChannelConfigRow.__table__)
_SECRET_ROWS = _rows_at(SecretRow.__table__)
_MESSAGES = MessageRow.__table__


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
    secrets: Mapping[str, _StoredSecret] | None = None
    history: list[HistoryEntry] | None = None


@dataclass(frozen=True, slots=True)
class _StoredSecret:
    origin: str  # "channel" | "server"
    platform: str
    server_id: str
    channel_id: str
    name: str
    key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class _History:
    entries: tuple[HistoryEntry, ...]
    complete: bool  # holds every stored entry, not just the newest


def _history_chars(history: _History) -> int:
    return sum(len(e.content) for e in history.entries) + 64 * len(history.entries)


def api_key_name(source: Source) -> str:
    """The secret name holding a source's API key (`openai_api_key`, …)."""
    return f"{source.value}_api_key"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One configuration change as shown to admins (never a secret value)."""

    id: int
    at: datetime
    scope: Scope
    channel_id: str
    actor_id: str
    actor_name: str
    action: str
    detail: str


# ---- configuration columns: how a value is checked on the way in -------------------


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number")
    return value


def _stop(name: str, value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of strings")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"{name} must be a list of strings")
    return items


def _choice(kind: type[E]) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        try:
            return kind(str(value)).value
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise ValueError(f"{name} must be one of: {allowed}") from None

    return check


_CONFIG_FIELDS: dict[str, Callable[[str, object], object]] = {
    "source": _choice(Source),
    "model": _text,
    "proxy_url": _text,
    "resolved_url": _text,
    "bypass_status_check": _flag,
    "show_external_models": _flag,
    "system_prompt": _text,
    "temperature": _number,
    "top_p": _number,
    "max_tokens": _integer,
    "context_tokens": _integer,
    "stop": _stop,
    "seed": _integer,
    "reply_mode": _choice(ReplyMode),
    "show_reasoning": _flag,
    "mistral_safe_prompt": _flag,
}
CONFIG_FIELDS = frozenset(_CONFIG_FIELDS)


def _outward(name: str, value: object) -> object:
    """A stored column value as the core uses it (enums, tuples)."""
    if name == "source":
        return Source(str(value))
    if name == "reply_mode":
        return ReplyMode(str(value))
    if name == "stop" and isinstance(value, list):
        return tuple(value)
    return value


def _summary(changes: Mapping[str, object]) -> str:
    parts = []
    for name, value in changes.items():
        if value is None:
            parts.append(f"{name} unset")
            continue
        text = repr(value)
        if len(text) > _AUDIT_VALUE_CHARS:
            text = text[: _AUDIT_VALUE_CHARS - 1] + "…"
        parts.append(f"{name}={text}")
    return ", ".join(parts)


def _model_to_json(model: ModelInfo) -> dict[str, Any]:
    return {
        "id": model.id,
        "display_name": model.display_name,
        "context_length": model.context_length,
        "vision": model.vision,
    }


def _model_from_json(data: Mapping[str, Any]) -> ModelInfo:
    return ModelInfo(
        id=str(data["id"]),
        display_name=data.get("display_name"),
        context_length=data.get("context_length"),
        vision=data.get("vision"),
    )


class Store:
    """Everything the core persists; one engine, one short session per operation."""

    def __init__(
        self,
        engine: AsyncEngine,
        box: SecretBox,
        defaults: ChannelConfig,
        default_secrets: Mapping[str, SecretValue],
    ) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._box = box
        self._defaults = defaults
        self._default_secrets = dict(default_secrets)
        self._postgres = engine.dialect.name == "postgresql"
        # SQLite has one writer; queueing writers here instead of in its busy timeout
        # keeps a burst of turns (hundreds of channels at once) from "database is locked".
        self._write_lock = asyncio.Lock() if not self._postgres else None
        self._reads: Batcher[_Want, _Read] = Batcher(self._read_batch, _READ_BATCH)
        self._turns: Batcher[list[dict[str, Any]], None] = Batcher(
            self._write_turns, _WRITE_BATCH
        )
        self._configs: ScopedCache[ChannelConfig] = ScopedCache(
            ttl=_CACHE_TTL, max_entries=_CACHE_ENTRIES
        )
        self._secrets: ScopedCache[Mapping[str, _StoredSecret]] = ScopedCache(
            ttl=_CACHE_TTL, max_entries=_CACHE_ENTRIES
        )
        self._histories: ScopedCache[_History] = ScopedCache(
            ttl=_CACHE_TTL,
            max_entries=_CACHE_ENTRIES,
            max_weight=_HISTORY_CHARS,
            weigh=_history_chars,
        )

    @classmethod
    async def open(
        cls,
        url: str,
        box: SecretBox,
        *,
        defaults: ChannelConfig,
        default_secrets: Mapping[str, SecretValue] = _NO_SECRETS,
    ) -> Store:
        """Connect to an already migrated database (see bot.store.migrate)."""
        return cls(create_engine(url), box, defaults, default_secrets)

    async def close(self) -> None:
        await self._reads.drain()
        await self._turns.drain()
        await self._engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    # ---- helpers ------------------------------------------------------------------

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction; on SQLite one at a time per process."""
        if self._write_lock is None:
            async with self._sessions.begin() as session:
                yield session
            return
        async with self._write_lock, self._sessions.begin() as session:
            yield session

    @staticmethod
    def _key(ref: ChannelRef, scope: Scope) -> Key:
        if scope is Scope.SERVER and not ref.has_server:
            raise ValueError(f"{ref} has no server, so there is no server-wide setting")
        return ref.scope_key(scope)

    @staticmethod
    def _chain(ref: ChannelRef) -> list[Key]:
        """Rows consulted for a channel, nearest first."""
        keys = [ref.scope_key(Scope.CHANNEL)]
        if ref.has_server:
            keys.append(ref.scope_key(Scope.SERVER))
        return keys

    @staticmethod
    def _where(table: Any, key: Key) -> ColumnElement[bool]:
        return and_(table.platform == key[0], table.server_id == key[1], table.channel_id == key[2])

    def _insert(self, table: type[Base]) -> postgresql.Insert | sqlite.Insert:
        # Both dialects share the ON CONFLICT API; it makes get-or-create race-free.
        return postgresql.insert(table) if self._postgres else sqlite.insert(table)

    async def _config_row(self, session: AsyncSession, key: Key) -> ChannelConfigRow:
        """The row at `key`, created when missing, locked for the rest of the transaction."""
        now = utcnow()
        await session.execute(
            self._insert(ChannelConfigRow)
            .values(
                platform=key[0], server_id=key[1], channel_id=key[2], created_at=now, updated_at=now
            )
            .on_conflict_do_nothing(index_elements=["platform", "server_id", "channel_id"])
        )
        row = await session.scalar(
            select(ChannelConfigRow)
            .where(self._where(ChannelConfigRow, key))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert row is not None
        return row

    @staticmethod
    def _audit(key: Key, actor: Actor, action: str, detail: str) -> AuditRow:
        return AuditRow(
            platform=key[0],
            server_id=key[1],
            channel_id=key[2],
            actor_id=actor.id[:_NAME_CHARS],
            actor_name=actor.display_name[:_NAME_CHARS],
            action=action[:_ACTION_CHARS],
            detail=detail,
        )

    @staticmethod
    def _check_secret_name(name: str) -> None:
        if name not in SECRET_NAMES:
            raise ValueError(f"unknown secret {name!r}; known: {', '.join(sorted(SECRET_NAMES))}")

    def _open_secret(self, row: SecretRow | _StoredSecret) -> SecretValue:
        return self._box.open(
            Sealed(row.key_id, row.nonce, row.ciphertext),
            associated_data(row.platform, row.server_id, row.channel_id, row.name),
            where=describe_scope(row.platform, row.server_id, row.channel_id),
            name=row.name,
        )

    # ---- configuration ------------------------------------------------------------

    # ---- what a chat turn reads: batched, plain SQL, remembered ---------------------

    async def prefetch(self, ref: ChannelRef, history_limit: int) -> None:
        """Load what a chat turn reads (config, secrets, history) in one round trip.

        Only what is not remembered already is read, together with what other turns
        starting at the same time need; later calls are then cache hits.
        """
        scope = ref.scope_key(Scope.CHANNEL)
        want = _Want(
            ref,
            config=self._configs.get(scope) is None,
            secrets=self._secrets.get(scope) is None,
            history=0 if self._remembered_history(ref, history_limit) else history_limit,
        )
        if want.config or want.secrets or want.history:
            await self._reads.submit(want)

    async def _read_batch(self, wants: Sequence[_Want]) -> list[_Read]:
        """One connection, one query per kind for every channel asked about."""
        generations = (
            self._configs.generation(),
            self._secrets.generation(),
            self._histories.generation(),
        )
        config_refs = [w.ref for w in wants if w.config]
        secret_refs = [w.ref for w in wants if w.secrets]
        limits: dict[tuple[str, str, str, str], int] = {}
        for w in wants:
            if w.history:
                conversation = self._conversation(w.ref)
                limits[conversation] = max(w.history, limits.get(conversation, 0))
        async with self._engine.connect() as conn:
            config_rows = await self._rows_for(conn, _CONFIG_ROWS, config_refs)
            secret_rows = await self._rows_for(conn, _SECRET_ROWS, secret_refs)
            histories = await self._load_histories(conn, limits)
        results = []
        for w in wants:
            scope = w.ref.scope_key(Scope.CHANNEL)
            read = _Read()
            if w.config:
                config = self._merge(w.ref, self._nearest_first(w.ref, config_rows))
                self._configs.put(scope, scope, config, generation=generations[0])
                read = replace(read, config=config)
            if w.secrets:
                secrets = self._sealed(w.ref, self._nearest_first(w.ref, secret_rows))
                self._secrets.put(scope, scope, secrets, generation=generations[1])
                read = replace(read, secrets=secrets)
            if w.history:
                conversation = self._conversation(w.ref)
                entries = histories[conversation]
                limit = limits[conversation]
                history = _History(tuple(entries), complete=len(entries) < limit)
                self._histories.put(conversation, scope, history, generation=generations[2])
                read = replace(read, history=entries[-w.history :])
            results.append(read)
        return results

    async def _rows_for(
        self, conn: AsyncConnection, statement: Any, refs: Sequence[ChannelRef]
    ) -> dict[Key, Any]:
        """Rows of these channels and of their servers, by (platform, server, channel)."""
        if not refs:
            return {}
        keys = sorted({key for ref in refs for key in self._chain(ref)})
        rows = (await conn.execute(statement, {"keys": keys})).all()
        found: dict[Key, list[Any]] = {}
        for row in rows:
            found.setdefault((row.platform, row.server_id, row.channel_id), []).append(row)
        return found

    def _nearest_first(self, ref: ChannelRef, rows: Mapping[Key, list[Any]]) -> list[Any]:
        """The rows of this channel's chain, the channel's own first."""
        return [row for key in self._chain(ref) for row in rows.get(key, ())]

    @staticmethod
    def _sealed(ref: ChannelRef, nearest_first: Sequence[Any]) -> Mapping[str, _StoredSecret]:
        nearest: dict[str, _StoredSecret] = {}
        for row in reversed(nearest_first):  # the channel's row of a name replaces the server's
            nearest[row.name] = _StoredSecret(
                origin="channel" if row.channel_id == ref.channel_id else "server",
                platform=row.platform,
                server_id=row.server_id,
                channel_id=row.channel_id,
                name=row.name,
                key_id=row.key_id,
                nonce=row.nonce,
                ciphertext=row.ciphertext,
            )
        return MappingProxyType(nearest)

    @staticmethod
    async def _load_histories(
        conn: AsyncConnection, limits: Mapping[tuple[str, str, str, str], int]
    ) -> dict[tuple[str, str, str, str], list[HistoryEntry]]:
        """The newest turns of each conversation, one statement for all of them.

        Each part reads only its own newest rows through the conversation index (a
        window over whole histories would read every old turn as well).
        """
        found: dict[tuple[str, str, str, str], list[HistoryEntry]] = {c: [] for c in limits}
        if not limits:
            return found
        parts = []
        for conversation, limit in limits.items():
            platform, server_id, channel_id, thread_id = conversation
            m = _MESSAGES
            newest = (
                select(m)
                .where(
                    m.c.platform == platform,
                    m.c.server_id == server_id,
                    m.c.channel_id == channel_id,
                    m.c.thread_id == thread_id,
                )
                .order_by(m.c.id.desc())
                .limit(limit)
                .subquery()
            )
            parts.append(select(newest))
        statement = union_all(*parts) if len(parts) > 1 else parts[0]
        rows = (await conn.execute(statement)).all()
        for row in sorted(rows, key=lambda row: row.id):  # oldest first
            found[(row.platform, row.server_id, row.channel_id, row.thread_id)].append(
                HistoryEntry(
                    role=Role(row.role),
                    content=row.content,
                    author=row.author,
                    tokens=row.token_estimate,
                    error=row.error,
                )
            )
        return found

    def _remembered_history(self, ref: ChannelRef, limit: int) -> list[HistoryEntry] | None:
        cached = self._histories.get(self._conversation(ref))
        if limit <= 0:
            return []
        if cached is not None and (cached.complete or len(cached.entries) >= limit):
            return list(cached.entries[-limit:])
        return None

    # ---- configuration ------------------------------------------------------------

    async def effective_config(self, ref: ChannelRef) -> ChannelConfig:
        """Channel row → server row (when the channel has a server) → defaults, per field."""
        cached = self._configs.get(ref.scope_key(Scope.CHANNEL))
        if cached is not None:
            return cached
        config = (await self._reads.submit(_Want(ref, config=True))).config
        assert config is not None
        return config

    def _merge(self, ref: ChannelRef, rows: Sequence[Any]) -> ChannelConfig:
        d = self._defaults

        def pick(name: str, default: Any) -> Any:
            for row in rows:
                value = getattr(row, name)
                if value is not None:
                    return _outward(name, value)
            return default

        channel = rows[0] if rows and rows[0].channel_id == ref.channel_id else None
        status = None
        if channel is not None and channel.status_ok is not None:
            status = StatusCheck(
                ok=channel.status_ok,
                reason=channel.status_reason or "",
                checked_url=channel.status_checked_url or "",
            )
        return ChannelConfig(
            source=pick("source", d.source),
            model=pick("model", d.model),
            proxy_url=pick("proxy_url", d.proxy_url),
            resolved_url=pick("resolved_url", d.resolved_url),
            bypass_status_check=pick("bypass_status_check", d.bypass_status_check),
            show_external_models=pick("show_external_models", d.show_external_models),
            system_prompt=pick("system_prompt", d.system_prompt),
            params=GenerationParams(
                temperature=pick("temperature", d.params.temperature),
                top_p=pick("top_p", d.params.top_p),
                max_tokens=pick("max_tokens", d.params.max_tokens),
                context_tokens=pick("context_tokens", d.params.context_tokens),
                stop=pick("stop", d.params.stop),
                seed=pick("seed", d.params.seed),
            ),
            reply_mode=pick("reply_mode", d.reply_mode),
            show_reasoning=pick("show_reasoning", d.show_reasoning),
            mistral_safe_prompt=pick("mistral_safe_prompt", d.mistral_safe_prompt),
            status=status,
        )

    async def scope_values(self, ref: ChannelRef, scope: Scope) -> dict[str, object]:
        """What is explicitly set at `scope` (enums as enums, `stop` as a tuple)."""
        key = self._key(ref, scope)
        async with self._sessions() as session:
            row = await session.scalar(
                select(ChannelConfigRow).where(self._where(ChannelConfigRow, key))
            )
        if row is None:
            return {}
        values: dict[str, object] = {}
        for name in _CONFIG_FIELDS:
            value = getattr(row, name)
            if value is not None:
                values[name] = _outward(name, value)
        return values

    async def update_config(
        self,
        ref: ChannelRef,
        scope: Scope,
        actor: Actor,
        changes: Mapping[str, object],
        *,
        action: str,
    ) -> None:
        """Set (or unset, with None) columns at `scope` and audit it, in one transaction."""
        key = self._key(ref, scope)
        unknown = sorted(set(changes) - CONFIG_FIELDS)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        cleaned = {
            name: None if value is None else _CONFIG_FIELDS[name](name, value)
            for name, value in changes.items()
        }
        if not cleaned:
            return
        async with self._write() as session:
            row = await self._config_row(session, key)
            for name, value in cleaned.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            session.add(self._audit(key, actor, action, _summary(cleaned)))
        self._configs.drop_scope(key)

    async def record_status(
        self, ref: ChannelRef, status: StatusCheck | None, resolved_url: str | None
    ) -> None:
        """Store a status check's outcome on the channel row (None forgets it); not audited."""
        key = self._key(ref, Scope.CHANNEL)
        now = utcnow()
        async with self._write() as session:
            row = await self._config_row(session, key)
            row.status_ok = None if status is None else status.ok
            row.status_reason = None if status is None else status.reason
            row.status_checked_url = None if status is None else status.checked_url
            row.status_checked_at = None if status is None else now
            row.resolved_url = resolved_url
            row.updated_at = now
        self._configs.drop_scope(key)

    # ---- secrets --------------------------------------------------------------------

    async def set_secret(
        self, ref: ChannelRef, scope: Scope, name: str, value: SecretValue, actor: Actor
    ) -> None:
        """Encrypt and store a secret at `scope`; the audit row records only its name."""
        self._check_secret_name(name)
        if not value:
            raise ValueError("an empty secret cannot be stored; clear it instead")
        key = self._key(ref, scope)
        sealed = self._box.seal(value, associated_data(*key, name))
        now = utcnow()
        stmt = self._insert(SecretRow).values(
            platform=key[0],
            server_id=key[1],
            channel_id=key[2],
            name=name,
            key_id=sealed.key_id,
            nonce=sealed.nonce,
            ciphertext=sealed.ciphertext,
            created_at=now,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["platform", "server_id", "channel_id", "name"],
            set_={
                "key_id": stmt.excluded.key_id,
                "nonce": stmt.excluded.nonce,
                "ciphertext": stmt.excluded.ciphertext,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        async with self._write() as session:
            await session.execute(stmt)
            session.add(self._audit(key, actor, "secret.set", f"{name} set"))
        self._secrets.drop_scope(key)

    async def clear_secret(self, ref: ChannelRef, scope: Scope, name: str, actor: Actor) -> bool:
        """Remove a secret at `scope`; True (and audited) when there was one."""
        self._check_secret_name(name)
        key = self._key(ref, scope)
        async with self._write() as session:
            result = await session.execute(
                delete(SecretRow).where(self._where(SecretRow, key), SecretRow.name == name)
            )
            removed = bool(getattr(result, "rowcount", 0))
            if removed:
                session.add(self._audit(key, actor, "secret.clear", f"{name} cleared"))
        self._secrets.drop_scope(key)
        return removed

    async def _effective_secret(self, ref: ChannelRef, name: str) -> _Found:
        self._check_secret_name(name)
        stored = (await self._stored_secrets(ref)).get(name)
        if stored is not None:
            return stored.origin, self._open_secret(stored)
        default = self._default_secrets.get(name)
        if default:
            return "operator", default
        return None

    async def _stored_secrets(self, ref: ChannelRef) -> Mapping[str, _StoredSecret]:
        """The nearest stored secret of each name for this channel, still sealed.

        One read serves every name a turn needs; each is opened only when asked for, so
        an unreadable secret fails only the lookups of its own name.
        """
        cached = self._secrets.get(ref.scope_key(Scope.CHANNEL))
        if cached is not None:
            return cached
        secrets = (await self._reads.submit(_Want(ref, secrets=True))).secrets
        assert secrets is not None
        return secrets

    async def resolve_secret(self, ref: ChannelRef, name: str) -> SecretValue | None:
        """The effective secret: channel → server → operator default.

        Raises SecretUnreadable when the stored one cannot be decrypted.
        """
        found = await self._effective_secret(ref, name)
        return None if found is None else found[1]

    async def secret_origin(self, ref: ChannelRef, name: str) -> tuple[str, str] | None:
        """("channel" | "server" | "operator", last4) of the effective secret."""
        found = await self._effective_secret(ref, name)
        return None if found is None else (found[0], found[1].last4)

    async def rotate_keys(self) -> int:
        """Re-encrypt every secret under the first key in one transaction; all or nothing."""
        async with self._write() as session:
            rows = (
                await session.scalars(select(SecretRow).order_by(SecretRow.id).with_for_update())
            ).all()
            # Decrypt everything before writing anything: one unreadable secret aborts.
            opened = [(row, self._open_secret(row)) for row in rows]
            now = utcnow()
            for row, value in opened:
                sealed = self._box.seal(
                    value, associated_data(row.platform, row.server_id, row.channel_id, row.name)
                )
                row.key_id = sealed.key_id
                row.nonce = sealed.nonce
                row.ciphertext = sealed.ciphertext
                row.updated_at = now
        self._secrets.clear()
        return len(opened)

    # ---- history ----------------------------------------------------------------------

    @staticmethod
    def _thread_where(ref: ChannelRef) -> ColumnElement[bool]:
        return and_(
            MessageRow.platform == ref.platform.value,
            MessageRow.server_id == ref.server_id,
            MessageRow.channel_id == ref.channel_id,
            MessageRow.thread_id == ref.thread_id,
        )

    @staticmethod
    def _conversation(ref: ChannelRef) -> tuple[str, str, str, str]:
        return (ref.platform.value, ref.server_id, ref.channel_id, ref.thread_id)

    async def history(self, ref: ChannelRef, limit: int) -> list[HistoryEntry]:
        """The newest `limit` turns of this channel/thread, oldest first."""
        remembered = self._remembered_history(ref, limit)
        if remembered is not None:
            return remembered
        entries = (await self._reads.submit(_Want(ref, history=limit))).history
        assert entries is not None
        return entries

    async def save_turn(self, ref: ChannelRef, entries: Sequence[HistoryEntry]) -> None:
        """Append the entries of one turn (user message, reply) in one transaction.

        Turns finishing together share a transaction (one commit instead of hundreds);
        a turn is never split across two, and a bad turn fails alone.
        """
        if not entries:
            return
        now = utcnow()
        rows = [
            {
                "platform": ref.platform.value,
                "server_id": ref.server_id,
                "channel_id": ref.channel_id,
                "thread_id": ref.thread_id,
                "role": Role(entry.role).value,
                "author": None if entry.author is None else entry.author[:_NAME_CHARS],
                "content": entry.content,
                "token_estimate": entry.tokens,
                "error": entry.error,
                "created_at": now,
            }
            for entry in entries
        ]
        await self._turns.submit(rows)
        conversation = self._conversation(ref)
        cached = self._histories.get(conversation)
        if cached is not None:
            kept = (*cached.entries, *entries)
            complete = cached.complete and len(kept) <= _HISTORY_KEEP
            self._histories.replace(conversation, _History(kept[-_HISTORY_KEEP:], complete))

    async def _write_turns(self, turns: Sequence[list[dict[str, Any]]]) -> list[None]:
        """Commit the turns that finished together in one transaction."""
        # Rows go in list order, so ids follow the order of each turn's entries.
        async with self._write() as session:
            await session.execute(insert(MessageRow), [row for rows in turns for row in rows])
        return [None] * len(turns)

    async def clear_history(self, ref: ChannelRef, actor: Actor) -> int:
        """Delete this channel's (or this thread's) stored turns; audited; returns the count."""
        key = ref.scope_key(Scope.CHANNEL)
        async with self._write() as session:
            result = await session.execute(delete(MessageRow).where(self._thread_where(ref)))
            count = int(getattr(result, "rowcount", 0) or 0)
            where = f" in thread {ref.thread_id}" if ref.thread_id else ""
            session.add(
                self._audit(key, actor, "history.clear", f"{count} messages deleted{where}")
            )
        self._histories.drop(self._conversation(ref))
        return count

    # ---- model cache ------------------------------------------------------------------

    async def cache_models(
        self, ref: ChannelRef, source: Source, models: Sequence[ModelInfo]
    ) -> None:
        """Replace the cached model list of this channel and source."""
        key = ref.scope_key(Scope.CHANNEL)
        stmt = self._insert(ModelCacheRow).values(
            platform=key[0],
            server_id=key[1],
            channel_id=key[2],
            source=Source(source).value,
            models=[_model_to_json(m) for m in models],
            fetched_at=utcnow(),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["platform", "server_id", "channel_id", "source"],
            set_={"models": stmt.excluded.models, "fetched_at": stmt.excluded.fetched_at},
        )
        async with self._write() as session:
            await session.execute(stmt)

    async def cached_models(self, ref: ChannelRef, source: Source) -> list[ModelInfo] | None:
        """The cached list, or None when none was stored for this channel and source."""
        key = ref.scope_key(Scope.CHANNEL)
        async with self._sessions() as session:
            row = await session.scalar(
                select(ModelCacheRow).where(
                    self._where(ModelCacheRow, key), ModelCacheRow.source == Source(source).value
                )
            )
        return None if row is None else [_model_from_json(m) for m in row.models]

    # ---- audit ------------------------------------------------------------------------

    async def audit_entries(self, ref: ChannelRef, limit: int = 50) -> list[AuditEntry]:
        """Changes affecting this channel (its own and its server's), newest first."""
        chain = self._chain(ref)
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(AuditRow)
                    .where(or_(*(self._where(AuditRow, key) for key in chain)))
                    .order_by(AuditRow.id.desc())
                    .limit(max(limit, 0))
                )
            ).all()
        return [
            AuditEntry(
                id=row.id,
                at=row.created_at,
                scope=Scope.SERVER if row.channel_id == "" else Scope.CHANNEL,
                channel_id=row.channel_id,
                actor_id=row.actor_id,
                actor_name=row.actor_name,
                action=row.action,
                detail=row.detail,
            )
            for row in rows
        ]


__all__ = [
    "CONFIG_FIELDS",
    "SECRET_NAMES",
    "AuditEntry",
    "SecretUnreadable",
    "Store",
    "api_key_name",
]
