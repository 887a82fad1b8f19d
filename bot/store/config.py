"""Channel configuration: how values are checked, merged along the scopes, and written."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.fields import REGISTRY, Registry
from bot.store.base import Database, Key, audit_row, chain, key_of, where
from bot.store.models import AuditRow, ChannelConfigRow, utcnow
from bot.store.vault import PROXY_PASSWORD, api_key_name
from bot.types import (
    SOURCE_API,
    Actor,
    ChannelConfig,
    ChannelRef,
    Scope,
    Source,
    StatusCheck,
)
from bot.types.text import clean_text, shorten

_AUDIT_VALUE_CHARS = 80


def checked(changes: Mapping[str, object]) -> dict[str, object]:
    """`changes` by column with every value checked (None unsets); ValueError names one."""
    return REGISTRY.checked(changes)


def merge(
    defaults: ChannelConfig,
    ref: ChannelRef,
    rows: Sequence[Any],
    registry: Registry = REGISTRY,
    *,
    own_secrets: Collection[str] = (),
    server_secrets: Collection[str] = (),
) -> ChannelConfig:
    """Channel row → server row → operator defaults → built-in defaults, per setting.

    Pure: `rows` are the channel's own row and its server's, nearest first;
    `own_secrets` the names of the secrets stored for the channel itself, `server_secrets`
    those stored for its server.
    """
    values, origins, passed = registry.merge(rows, defaults.values)
    channel = rows[0] if rows and rows[0].channel_id == ref.channel_id else None
    server = rows[-1] if ref.has_server and rows and rows[-1].channel_id == "" else None
    # Whether its server's row exists yet (a status write makes it) changes nothing here.
    shared = ref.has_server and _server_endpoint(values, origins, own_secrets, server_secrets)
    status = _status_of(channel)
    if shared:  # the server's check is of this endpoint too: the newer of the two says
        status = _newer(status, _status_of(server, server_wide=True))
    # A check's record (its outcome, the URL it found working) speaks for the endpoint URL
    # it was made for. The operator's DEFAULT_PROXY_URL changes, or goes, with a restart,
    # which no command sees: a record made for the old one is not this channel's now
    # (kept, its URL was still used, and shown, as the operator's; its failure, once the
    # URL was gone, still refused every turn).
    url = values.get("proxy_url")
    found = values.get("resolved_url")
    if isinstance(found, str) and not found_for(found, url):
        # The server's /v1 fix is of its URL, not of one this channel sets itself.
        if origins.get("resolved_url") == "channel":
            status = None
        values["resolved_url"], origins["resolved_url"] = None, "default"
    if status is not None and status.checked_url:
        # Without a URL the check went to the source's own API (custom has none).
        made_for = url or SOURCE_API.get(ChannelConfig(values).source)
        status = status if found_for(status.checked_url, made_for) else None
    return ChannelConfig(
        MappingProxyType(values),
        MappingProxyType(origins),
        status,
        MappingProxyType(passed),
        server_endpoint=shared,
    )


def _server_endpoint(
    values: Mapping[str, object],
    origins: Mapping[str, str],
    own_secrets: Collection[str],
    server_secrets: Collection[str],
) -> bool:
    """Whether the channel reaches its server's endpoint with its server's credential: no
    source or URL of its own, nor a key or proxy password of its own that is sent there
    (Endpoint.credential: behind a URL the proxy password, and for custom its key when
    there is no password; a key of its own kept while the server's password is sent
    changes nothing the endpoint sees, so its server's check is of this endpoint too)."""
    if origins.get("source") == "channel" or origins.get("proxy_url") == "channel":
        return False
    source = ChannelConfig(values).source
    if not values.get("proxy_url"):
        return api_key_name(source) not in own_secrets
    if PROXY_PASSWORD in own_secrets:
        return False
    # The server's password goes to its URL and to the operator's (connection.withheld).
    key_sent = source is Source.CUSTOM and PROXY_PASSWORD not in server_secrets
    return not (key_sent and api_key_name(source) in own_secrets)


def _status_of(row: Any, *, server_wide: bool = False) -> StatusCheck | None:
    """The status check kept on `row`, if any."""
    if row is None or row.status_ok is None:
        return None
    return StatusCheck(
        ok=row.status_ok,
        reason=row.status_reason or "",
        checked_url=row.status_checked_url or "",
        kind=row.status_kind or "",
        step=row.status_step or "",
        checked_at=row.status_checked_at,
        server_wide=server_wide,
    )


def _newer(own: StatusCheck | None, server: StatusCheck | None) -> StatusCheck | None:
    """The later of two checks of one endpoint (one kept before this was shared: the
    channel's, made before an upgrade, or before it used the server's endpoint)."""
    if own is None or server is None:
        return own or server
    if own.checked_at is None:
        return server
    if server.checked_at is None or own.checked_at > server.checked_at:
        return own
    return server


def found_for(found: str, url: object) -> bool:
    """Whether `found`, a URL a status check reached, was reached for the endpoint URL
    `url`: that URL, or it with the /v1 the check adds when the URL lacks it."""
    if not isinstance(url, str) or not url:
        return False
    base = url.rstrip("/")
    return found.rstrip("/") in (base, f"{base}/v1")


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
        await self._create(session, [key])
        row = await session.scalar(
            select(ChannelConfigRow)
            .where(where(ChannelConfigRow, key))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert row is not None
        return row

    async def _create(self, session: AsyncSession, keys: Sequence[Key]) -> None:
        """The rows at `keys` made where missing, in their order. One that another
        transaction is making, not yet committed, is waited for (a lock has nothing to
        take until then)."""
        now = utcnow()
        await session.execute(
            self._db.insert(ChannelConfigRow)
            .values(
                [
                    {
                        "platform": platform,
                        "server_id": server_id,
                        "channel_id": channel_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for platform, server_id, channel_id in keys
                ]
            )
            .on_conflict_do_nothing(index_elements=["platform", "server_id", "channel_id"])
        )

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

    async def chain_rows(self, session: AsyncSession, ref: ChannelRef) -> list[ChannelConfigRow]:
        """The channel's row and its server's as they are now, nearest first, locked for
        the rest of the transaction (merge takes them).

        Created where missing: a row another transaction is creating (a fresh channel's
        first /proxy set) would not be seen, nor waited for, by a lock on what exists.
        The server's first, as a server-wide change locks it before its channels."""
        keys = chain(ref)
        await self._create(session, keys[::-1])
        found = (
            await session.scalars(
                select(ChannelConfigRow)
                .where(or_(*(where(ChannelConfigRow, key) for key in keys)))
                .order_by(ChannelConfigRow.channel_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).all()
        by_key = {(r.platform, r.server_id, r.channel_id): r for r in found}
        return [by_key[key] for key in keys]

    async def forget_checks(self, session: AsyncSession, server: Key) -> None:
        """A server-wide change to what its channels connect to: their status checks and
        /v1-corrected URLs describe the old endpoint, so they are checked anew (the
        server's own check too, which its channels without an endpoint of their own show)."""
        platform, server_id, _ = server
        rows = and_(ChannelConfigRow.platform == platform, ChannelConfigRow.server_id == server_id)
        await session.execute(
            update(ChannelConfigRow)
            .where(rows)
            .values(
                status_ok=None,
                status_reason=None,
                status_checked_url=None,
                status_kind=None,
                status_step=None,
                status_checked_at=None,
            )
        )
        # A channel (or the server) with its own URL keeps the /v1 fix found for it.
        await session.execute(
            update(ChannelConfigRow)
            .where(rows, ChannelConfigRow.__table__.c.proxy_url.is_(None))
            .values(resolved_url=None)
        )

    def record_status(
        self,
        rows: Sequence[ChannelConfigRow],
        status: StatusCheck | None,
        resolved_url: str | None,
        *,
        server_wide: bool = False,
    ) -> None:
        """A status check's outcome on the channel's row, the first of `rows` (row,
        chain_rows: locked). `server_wide`: a check of the server's endpoint, kept on its
        row (the last of `rows`) for every channel that uses it; the channel's own record,
        of the endpoint it used before, goes."""
        now = utcnow()
        row = rows[-1] if server_wide else rows[0]
        row.status_ok = None if status is None else status.ok
        row.status_reason = None if status is None else clean_text(status.reason)
        row.status_checked_url = None if status is None else status.checked_url
        row.status_kind = None if status is None else (status.kind or None)
        row.status_step = None if status is None else (clean_text(status.step) or None)
        row.status_checked_at = None if status is None else now
        row.resolved_url = resolved_url
        row.updated_at = now
        if server_wide and rows[0] is not row:
            self.record_status(rows[:1], None, None)

    async def scope_values(self, ref: ChannelRef, scope: Scope) -> dict[str, object]:
        """What is explicitly set at `scope` (enums as enums, `stop` as a tuple); a value
        today's range refuses (Field.outside) is not used, so not set as far as anyone
        copies or compares it (written elsewhere, it would be refused)."""
        key = key_of(ref, scope)

        async def read(session: AsyncSession) -> ChannelConfigRow | None:
            return await session.scalar(
                select(ChannelConfigRow).where(where(ChannelConfigRow, key))
            )

        row = await self._db.read("config read", read)
        if row is None:
            return {}
        values: dict[str, object] = {}
        for column, f in REGISTRY.by_key.items():
            value = getattr(row, column)
            if value is not None and not f.outside(value):
                values[column] = f.outward(value)
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
