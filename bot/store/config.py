"""Channel configuration: how values are checked, merged along the scopes, and written."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.base import Database, Key, audit_row, chain, key_of, where
from bot.store.models import AuditRow, ChannelConfigRow, utcnow
from bot.types import (
    Actor,
    ChannelConfig,
    ChannelRef,
    GenerationParams,
    ReplyMode,
    Scope,
    Source,
    StatusCheck,
)
from bot.types.text import clean_text, shorten

E = TypeVar("E", Source, ReplyMode)
_AUDIT_VALUE_CHARS = 80


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return clean_text(value)


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
    return [clean_text(item) for item in items]


def _choice(kind: type[E]) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        try:
            return kind(str(value)).value
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise ValueError(f"{name} must be one of: {allowed}") from None

    return check


# How a value is checked on the way in, per column.
FIELDS: dict[str, Callable[[str, object], object]] = {
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
CONFIG_FIELDS = frozenset(FIELDS)


def checked(changes: Mapping[str, object]) -> dict[str, object]:
    """`changes` with every value checked (None unsets); ValueError names a bad one."""
    unknown = sorted(set(changes) - CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    return {
        name: None if value is None else FIELDS[name](name, value)
        for name, value in changes.items()
    }


def _outward(name: str, value: object) -> object:
    """A stored column value as the core uses it (enums, tuples)."""
    if name == "source":
        return Source(str(value))
    if name == "reply_mode":
        return ReplyMode(str(value))
    if name == "stop" and isinstance(value, list):
        return tuple(value)
    return value


def merge(defaults: ChannelConfig, ref: ChannelRef, rows: Sequence[Any]) -> ChannelConfig:
    """Channel row → server row → operator defaults, per field. Pure: rows nearest first."""
    d = defaults

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
            kind=channel.status_kind or "",
            checked_at=channel.status_checked_at,
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


def summary(changes: Mapping[str, object]) -> str:
    """The audit line of a change (values shortened; never called with a secret)."""
    parts = []
    for name, value in changes.items():
        if value is None:
            parts.append(f"{name} unset")
        else:
            parts.append(f"{name}={shorten(repr(value), _AUDIT_VALUE_CHARS)}")
    return ", ".join(parts)


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


class ConfigPart:
    """Reads and writes of channel and server configuration rows, and their audit log."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def row(self, session: AsyncSession, key: Key) -> ChannelConfigRow:
        """The row at `key`, created when missing, locked for the rest of the transaction."""
        now = utcnow()
        await session.execute(
            self._db.insert(ChannelConfigRow)
            .values(
                platform=key[0], server_id=key[1], channel_id=key[2], created_at=now, updated_at=now
            )
            .on_conflict_do_nothing(index_elements=["platform", "server_id", "channel_id"])
        )
        row = await session.scalar(
            select(ChannelConfigRow)
            .where(where(ChannelConfigRow, key))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert row is not None
        return row

    async def apply(
        self,
        session: AsyncSession,
        key: Key,
        actor: Actor,
        cleaned: Mapping[str, object],
        action: str,
    ) -> None:
        """Set checked values at `key` and audit it, inside the caller's transaction."""
        row = await self.row(session, key)
        for name, value in cleaned.items():
            setattr(row, name, value)
        row.updated_at = utcnow()
        session.add(audit_row(key, actor, action, summary(cleaned)))

    async def record_status(
        self, session: AsyncSession, key: Key, status: StatusCheck | None, resolved_url: str | None
    ) -> None:
        now = utcnow()
        row = await self.row(session, key)
        row.status_ok = None if status is None else status.ok
        row.status_reason = None if status is None else clean_text(status.reason)
        row.status_checked_url = None if status is None else status.checked_url
        row.status_kind = None if status is None else (status.kind or None)
        row.status_checked_at = None if status is None else now
        row.resolved_url = resolved_url
        row.updated_at = now

    async def scope_values(self, ref: ChannelRef, scope: Scope) -> dict[str, object]:
        """What is explicitly set at `scope` (enums as enums, `stop` as a tuple)."""
        key = key_of(ref, scope)

        async def read(session: AsyncSession) -> ChannelConfigRow | None:
            return await session.scalar(
                select(ChannelConfigRow).where(where(ChannelConfigRow, key))
            )

        row = await self._db.read("config read", read)
        if row is None:
            return {}
        values: dict[str, object] = {}
        for name in FIELDS:
            value = getattr(row, name)
            if value is not None:
                values[name] = _outward(name, value)
        return values

    async def audit_entries(self, ref: ChannelRef, limit: int) -> list[AuditEntry]:
        """Changes affecting this channel (its own and its server's), newest first."""
        keys = chain(ref)

        async def read(session: AsyncSession) -> Sequence[AuditRow]:
            return (
                await session.scalars(
                    select(AuditRow)
                    .where(or_(*(where(AuditRow, key) for key in keys)))
                    .order_by(AuditRow.id.desc())
                    .limit(max(limit, 0))
                )
            ).all()

        rows = await self._db.read("audit read", read)
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
