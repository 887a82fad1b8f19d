"""The `Store` facade: configuration, secrets, history, model cache and audit log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, bindparam, delete, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

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
V = TypeVar("V")

# What a chat turn reads is remembered (see bot.store.cache): bounded in entries, in
# history characters, and in age.
_CACHE_TTL = 30.0
_CACHE_ENTRIES = 20_000
_HISTORY_KEEP = 400  # entries per conversation; engines read 200
_HISTORY_CHARS = 32_000_000
_Found = tuple[str, SecretValue] | None


def _chain_select(table: Any) -> Any:
    """Rows of a channel and of its server (see Store._chain_params), built once."""
    return select(table).where(
        table.c.platform == bindparam("platform"),
        table.c.server_id == bindparam("server_id"),
        table.c.channel_id.in_([bindparam("channel_id"), bindparam("server_row")]),
    )


_CONFIG_CHAIN = _chain_select(ChannelConfigRow.__table__)
_SECRET_CHAIN = _chain_select(SecretRow.__table__)
_MESSAGES = MessageRow.__table__
_NEWEST_MESSAGES = (
    select(_MESSAGES)
    .where(
        _MESSAGES.c.platform == bindparam("platform"),
        _MESSAGES.c.server_id == bindparam("server_id"),
        _MESSAGES.c.channel_id == bindparam("channel_id"),
        _MESSAGES.c.thread_id == bindparam("thread_id"),
    )
    .order_by(_MESSAGES.c.id.desc())
    .limit(bindparam("limit"))
)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # the caller gave up waiting; the write stands
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


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
        self._pending_turns: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._turn_writer: asyncio.Task[None] | None = None
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
        if self._turn_writer is not None:
            await asyncio.gather(self._turn_writer, return_exceptions=True)
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

    # ---- what a chat turn reads: plain-SQL loaders sharing one connection -------------

    async def prefetch(self, ref: ChannelRef, history_limit: int) -> None:
        """Load what a chat turn reads (config, secrets, history) in one round trip.

        Only what is not remembered already is read; later calls are then cache hits.
        """
        scope = ref.scope_key(Scope.CHANNEL)
        conversation = self._conversation(ref)
        want_config = self._configs.get(scope) is None
        want_secrets = self._secrets.get(scope) is None
        remembered = self._histories.get(conversation)
        want_history = history_limit > 0 and not (
            remembered is not None
            and (remembered.complete or len(remembered.entries) >= history_limit)
        )
        if not (want_config or want_secrets or want_history):
            return
        generations = (
            self._configs.generation(),
            self._secrets.generation(),
            self._histories.generation(),
        )
        async with self._engine.connect() as conn:
            if want_config:
                config = await self._load_config(conn, ref)
            if want_secrets:
                secrets = await self._load_secrets(conn, ref)
            if want_history:
                entries = await self._load_history(conn, ref, history_limit)
        if want_config:
            self._configs.put(scope, scope, config, generation=generations[0])
        if want_secrets:
            self._secrets.put(scope, scope, secrets, generation=generations[1])
        if want_history:
            history = _History(tuple(entries), complete=len(entries) < history_limit)
            self._histories.put(conversation, scope, history, generation=generations[2])

    @staticmethod
    def _chain_params(ref: ChannelRef) -> dict[str, str]:
        # Without a server the "server row" slot repeats the channel: no (p, "", "") row
        # may ever apply to a room that stands alone.
        return {
            "platform": ref.platform.value,
            "server_id": ref.server_id,
            "channel_id": ref.channel_id,
            "server_row": "" if ref.has_server else ref.channel_id,
        }

    async def _load_config(self, conn: AsyncConnection, ref: ChannelRef) -> ChannelConfig:
        rows = (await conn.execute(_CONFIG_CHAIN, self._chain_params(ref))).all()
        nearest_first = sorted(rows, key=lambda row: row.channel_id != ref.channel_id)
        return self._merge(ref, nearest_first)

    async def _load_secrets(
        self, conn: AsyncConnection, ref: ChannelRef
    ) -> Mapping[str, _StoredSecret]:
        rows = (await conn.execute(_SECRET_CHAIN, self._chain_params(ref))).all()
        nearest: dict[str, _StoredSecret] = {}
        # Server rows first, so the channel's row of the same name replaces them.
        for row in sorted(rows, key=lambda row: row.channel_id == ref.channel_id):
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

    async def _load_history(
        self, conn: AsyncConnection, ref: ChannelRef, limit: int
    ) -> list[HistoryEntry]:
        params = {
            "platform": ref.platform.value,
            "server_id": ref.server_id,
            "channel_id": ref.channel_id,
            "thread_id": ref.thread_id,
            "limit": limit,
        }
        rows = (await conn.execute(_NEWEST_MESSAGES, params)).all()
        return [
            HistoryEntry(
                role=Role(row.role),
                content=row.content,
                author=row.author,
                tokens=row.token_estimate,
                error=row.error,
            )
            for row in reversed(rows)
        ]

    # ---- configuration ------------------------------------------------------------

    async def _remembered(
        self,
        cache: ScopedCache[V],
        ref: ChannelRef,
        load: Callable[[AsyncConnection, ChannelRef], Awaitable[V]],
    ) -> V:
        """The channel's value from `cache`, else loaded (and remembered)."""
        scope = ref.scope_key(Scope.CHANNEL)
        cached = cache.get(scope)
        if cached is not None:
            return cached
        generation = cache.generation()
        async with self._engine.connect() as conn:
            value = await load(conn, ref)
        cache.put(scope, scope, value, generation=generation)
        return value

    async def effective_config(self, ref: ChannelRef) -> ChannelConfig:
        """Channel row → server row (when the channel has a server) → defaults, per field."""
        return await self._remembered(self._configs, ref, self._load_config)

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
        return await self._remembered(self._secrets, ref, self._load_secrets)

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
        if limit <= 0:
            return []
        conversation = self._conversation(ref)
        cached = self._histories.get(conversation)
        if cached is not None and (cached.complete or len(cached.entries) >= limit):
            return list(cached.entries[-limit:])
        generation = self._histories.generation()
        async with self._engine.connect() as conn:
            entries = await self._load_history(conn, ref, limit)
        history = _History(tuple(entries), complete=len(entries) < limit)
        self._histories.put(
            conversation, ref.scope_key(Scope.CHANNEL), history, generation=generation
        )
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
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_turns.append((rows, done))
        if self._turn_writer is None or self._turn_writer.done():
            self._turn_writer = asyncio.create_task(self._write_turns())
        await done
        conversation = self._conversation(ref)
        cached = self._histories.get(conversation)
        if cached is not None:
            kept = (*cached.entries, *entries)
            complete = cached.complete and len(kept) <= _HISTORY_KEEP
            self._histories.replace(conversation, _History(kept[-_HISTORY_KEEP:], complete))

    async def _write_turns(self) -> None:
        """Commit every waiting turn together; on failure retry each alone."""
        while self._pending_turns:
            batch, self._pending_turns = self._pending_turns, []
            try:
                await self._insert_messages([row for rows, _ in batch for row in rows])
            except Exception as err:
                if len(batch) == 1:
                    _settle(batch[0][1], err)
                    continue
                for rows, done in batch:
                    try:
                        await self._insert_messages(rows)
                    except Exception as one:
                        _settle(done, one)
                    else:
                        _settle(done, None)
            else:
                for _, done in batch:
                    _settle(done, None)

    async def _insert_messages(self, rows: list[dict[str, Any]]) -> None:
        # Rows go in list order, so ids follow the order of each turn's entries.
        async with self._write() as session:
            await session.execute(insert(MessageRow), rows)

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
