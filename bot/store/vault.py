"""Encrypted secrets: stored per channel or server, resolved along the chain, rotated."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.base import Database, Key, audit_row, key_of, where
from bot.store.models import ChannelConfigRow, SecretRow, utcnow
from bot.store.reads import StoredSecret, TurnReads
from bot.store.secrets import (
    Sealed,
    SecretBox,
    SecretUnreadable,
    associated_data,
    describe_scope,
)
from bot.types import Actor, ChannelRef, Scope, SecretValue, Source


# Secret names the bot stores; a typo must not silently create a new secret.
def api_key_name(source: Source) -> str:
    """The secret name holding a source's API key (`openai_api_key`, …)."""
    return f"{source.value}_api_key"


PROXY_PASSWORD = "proxy_password"
# Every source's API key, and the proxy password: a new source has its key name here.
SECRET_NAMES = frozenset({*map(api_key_name, Source), PROXY_PASSWORD})

Found = tuple[str, SecretValue] | None

# A secret set in a direct chat for that chat itself: its owner's, for their questions.
PERSONAL = "personal"
# …and since the room became a group: not used (as if not set) until set again, or cleared.
HELD = "held"
# Stored before secrets were marked (migration 0014): settled at the bot's next start.
LEGACY = "legacy"


def _check_name(name: str) -> None:
    if name not in SECRET_NAMES:
        raise ValueError(f"unknown secret {name!r}; known: {', '.join(sorted(SECRET_NAMES))}")


async def own_names(session: AsyncSession, key: Key) -> set[str]:
    """The names of the secrets stored at `key` itself (merge's `own_secrets`)."""
    return set(await session.scalars(select(SecretRow.name).where(where(SecretRow, key))))


class Vault:
    """Seals on the way in, opens on the way out; values never leave as plain rows."""

    def __init__(
        self,
        db: Database,
        reads: TurnReads,
        box: SecretBox,
        default_secrets: Mapping[str, SecretValue],
    ) -> None:
        self._db = db
        self._reads = reads
        self._box = box
        self._defaults = dict(default_secrets)

    def _open(self, row: SecretRow | StoredSecret) -> SecretValue:
        return self._box.open(
            Sealed(row.key_id, row.nonce, row.ciphertext),
            associated_data(row.platform, row.server_id, row.channel_id, row.name),
            where=describe_scope(row.platform, row.server_id, row.channel_id),
            name=row.name,
        )

    async def apply_set(
        self,
        session: AsyncSession,
        key: Key,
        name: str,
        value: SecretValue,
        actor: Actor,
        *,
        personal: bool = False,
        owner: str | None = None,
    ) -> None:
        """Encrypt and store a secret inside the caller's transaction; audit its name only.
        `personal`: set in a direct chat for that chat (a secret set again loses HELD), by
        its `owner` (default: the actor)."""
        _check_name(name)
        if not value:
            raise ValueError("an empty secret cannot be stored; clear it instead")
        sealed = self._box.seal(value, associated_data(*key, name))
        now = utcnow()
        stmt = self._db.insert(SecretRow).values(
            platform=key[0],
            server_id=key[1],
            channel_id=key[2],
            name=name,
            key_id=sealed.key_id,
            nonce=sealed.nonce,
            ciphertext=sealed.ciphertext,
            direct_chat=PERSONAL if personal else None,
            owner=(owner or actor.id) if personal else None,
            created_at=now,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["platform", "server_id", "channel_id", "name"],
            set_={
                "key_id": stmt.excluded.key_id,
                "nonce": stmt.excluded.nonce,
                "ciphertext": stmt.excluded.ciphertext,
                "direct_chat": stmt.excluded.direct_chat,
                "owner": stmt.excluded.owner,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        await session.execute(stmt)
        session.add(audit_row(key, actor, "secret.set", f"{name} set"))

    async def apply_clear_following(
        self, session: AsyncSession, server: Key, names: Collection[str], actor: Actor
    ) -> int:
        """Inside the caller's transaction: remove `names` from the channels of `server`
        that use its URL (none of their own), audited in each channel. How many channels
        lost one. Their secrets were set for the server's URL, which is moving."""
        platform, server_id, _ = server
        configs = ChannelConfigRow.__table__
        own_url = select(configs.c.channel_id).where(
            configs.c.platform == platform,
            configs.c.server_id == server_id,
            configs.c.channel_id != "",
            configs.c.proxy_url.is_not(None),
        )
        rows = (
            await session.execute(
                select(SecretRow.id, SecretRow.channel_id, SecretRow.name).where(
                    SecretRow.platform == platform,
                    SecretRow.server_id == server_id,
                    SecretRow.channel_id != "",
                    SecretRow.name.in_(sorted(names)),
                    SecretRow.channel_id.not_in(own_url),
                )
            )
        ).all()
        if not rows:
            return 0
        await session.execute(delete(SecretRow).where(SecretRow.id.in_([r.id for r in rows])))
        for row in rows:
            where_ = (platform, server_id, row.channel_id)
            session.add(audit_row(where_, actor, "secret.clear", f"{row.name} cleared"))
        return len({row.channel_id for row in rows})

    async def apply_clear(self, session: AsyncSession, key: Key, name: str, actor: Actor) -> bool:
        """Remove a secret inside the caller's transaction; True (and audited) if there was one."""
        _check_name(name)
        result = await session.execute(
            delete(SecretRow).where(where(SecretRow, key), SecretRow.name == name)
        )
        removed = bool(getattr(result, "rowcount", 0))
        if removed:
            session.add(audit_row(key, actor, "secret.clear", f"{name} cleared"))
        return removed

    async def set(
        self,
        ref: ChannelRef,
        scope: Scope,
        name: str,
        value: SecretValue,
        actor: Actor,
        *,
        personal: bool = False,
        owner: str | None = None,
    ) -> None:
        key = key_of(ref, scope)

        async def work(session: AsyncSession) -> None:
            await self.apply_set(session, key, name, value, actor, personal=personal, owner=owner)

        await self._db.write("secret write", work)
        self._reads.secrets_changed(key)

    async def clear(self, ref: ChannelRef, scope: Scope, name: str, actor: Actor) -> bool:
        key = key_of(ref, scope)

        async def work(session: AsyncSession) -> bool:
            return await self.apply_clear(session, key, name, actor)

        removed = await self._db.write("secret write", work)
        self._reads.secrets_changed(key)
        return removed

    async def effective(self, ref: ChannelRef, name: str) -> Found:
        """(origin, value): channel → server → operator default. SecretUnreadable if sealed
        under a key that is gone."""
        _check_name(name)
        stored = (await self._reads.sealed_secrets(ref)).get(name)
        if stored is not None and stored.direct_chat != HELD:
            return stored.origin, self._open(stored)
        default = self._defaults.get(name)
        if default:
            return "operator", default
        return None

    async def every(self, ref: ChannelRef) -> list[SecretValue]:
        """Every secret stored for this channel and its server, of every name (a server's
        a channel's own replaces, one held since the room became a group), and the
        operator's defaults: those that can be read."""
        found = []
        for stored in (await self._reads.sealed_secrets(ref)).values():
            for row in (stored, stored.shadows):
                if row is not None:
                    with contextlib.suppress(SecretUnreadable):
                        found.append(self._open(row))
        return found + [v for v in self._defaults.values() if v]

    async def at_scope(self, ref: ChannelRef, scope: Scope) -> list[SecretValue]:
        """Every secret stored at `scope` itself (a server's own, whatever a channel of it
        set), opened; one held, or that no key opens, is left out."""
        key = key_of(ref, scope)

        async def work(session: AsyncSession) -> list[SecretRow]:
            found = await session.scalars(select(SecretRow).where(where(SecretRow, key)))
            return [row for row in found if row.direct_chat != HELD]

        values = []
        for row in await self._db.read("secret read", work):
            with contextlib.suppress(SecretUnreadable):
                values.append(self._open(row))
        return values

    async def held(self, ref: ChannelRef) -> list[str]:
        """The names of the channel's secrets held since it became a group."""
        stored = (await self._reads.sealed_secrets(ref)).values()
        return sorted(s.name for s in stored if s.origin == "channel" and s.direct_chat == HELD)

    async def hold_personal(
        self, ref: ChannelRef, actor: Actor, holds: Callable[[str | None], bool]
    ) -> list[str]:
        """Hold the channel's secrets set in it while it was a direct chat whose owner
        `holds` says may no longer pay for it (audited): the names held now, none when
        there were none (or another process held them first)."""
        stored = (await self._reads.sealed_secrets(ref)).values()
        if not any(
            s.origin == "channel" and s.direct_chat == PERSONAL and holds(s.owner) for s in stored
        ):
            return []  # the usual case, read from the cache: no write
        key = key_of(ref, Scope.CHANNEL)

        async def work(session: AsyncSession) -> list[str]:
            rows = (
                await session.scalars(
                    select(SecretRow)
                    .where(where(SecretRow, key), SecretRow.direct_chat == PERSONAL)
                    .order_by(SecretRow.name)
                    .with_for_update()
                )
            ).all()
            rows = [row for row in rows if holds(row.owner)]
            for row in rows:
                row.direct_chat = HELD
                session.add(audit_row(key, actor, "secret.hold", f"{row.name} held"))
            return [row.name for row in rows]

        names = await self._db.write("secret hold", work, reads_first=True)
        self._reads.secrets_changed(key)
        return names

    async def settle_legacy(self, ref: ChannelRef, *, private: bool) -> int:
        """The channel's own secrets an older version stored (LEGACY: where they were set
        is not known), decided by the room as it is at the bot's start: a private direct
        chat's are its owner's (PERSONAL), any other room's are the room's. How many were
        settled (none, the usual case, read from the cache)."""
        stored = (await self._reads.sealed_secrets(ref)).values()
        if not any(s.origin == "channel" and s.direct_chat == LEGACY for s in stored):
            return 0
        key = key_of(ref, Scope.CHANNEL)

        async def work(session: AsyncSession) -> int:
            result = await session.execute(
                update(SecretRow)
                .where(where(SecretRow, key), SecretRow.direct_chat == LEGACY)
                .values(direct_chat=PERSONAL if private else None)
            )
            return int(getattr(result, "rowcount", 0) or 0)

        settled = await self._db.write("secret settle", work)
        self._reads.secrets_changed(key)
        return settled

    async def forget_unreadable(self, actor: Actor) -> list[str]:
        """Delete (audited) the secrets no key of the box opens, so the old key can go:
        what each was and where, never its value."""

        async def work(session: AsyncSession) -> list[str]:
            rows = (
                await session.scalars(select(SecretRow).order_by(SecretRow.id).with_for_update())
            ).all()
            gone: list[str] = []
            for row in rows:
                try:
                    self._open(row)
                except SecretUnreadable as err:
                    gone.append(f"{err.name} of {err.where}")
                    await session.delete(row)
                    key = (row.platform, row.server_id, row.channel_id)
                    session.add(audit_row(key, actor, "secret.forget", f"{row.name} unreadable"))
            return gone

        gone = await self._db.write("key rotation", work, reads_first=True)
        self._reads.secrets.clear()
        self._reads.configs.clear()  # a channel's own secrets decide whose endpoint it uses
        return gone

    async def key_ids(self) -> dict[str, int]:
        """How many stored secrets each key id encrypted."""

        async def work(session: AsyncSession) -> dict[str, int]:
            counted = select(SecretRow.key_id, func.count()).group_by(SecretRow.key_id)
            return {key_id: count for key_id, count in await session.execute(counted)}

        return await self._db.read("key check", work)

    async def rotate(self) -> int:
        """Re-encrypt every secret under the first key in one transaction; all or nothing."""

        async def work(session: AsyncSession) -> int:
            rows = (
                await session.scalars(select(SecretRow).order_by(SecretRow.id).with_for_update())
            ).all()
            # Decrypt everything before writing anything: one unreadable secret aborts.
            opened = [(row, self._open(row)) for row in rows]
            now = utcnow()
            for row, value in opened:
                sealed = self._box.seal(
                    value, associated_data(row.platform, row.server_id, row.channel_id, row.name)
                )
                row.key_id = sealed.key_id
                row.nonce = sealed.nonce
                row.ciphertext = sealed.ciphertext
                row.updated_at = now
            return len(opened)

        count = await self._db.write("key rotation", work, reads_first=True)
        self._reads.secrets.clear()
        return count
