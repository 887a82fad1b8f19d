"""The `Store` facade: one object over configuration, secrets, history, model lists, audit,
usage.

Each part has one reason to change (config.py, vault.py, history.py, model_lists.py,
usage.py);
what a chat turn reads is batched and remembered in reads.py. Every database failure
reaches callers as a StoreError (errors.py) whose message can be shown to a user.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from datetime import date, timedelta
from functools import partial
from types import MappingProxyType
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import NullPool

from bot.store.base import Database, Key, key_of
from bot.store.characters import NO_CHARACTER, CharacterPart, StoredCharacter
from bot.store.config import AuditEntry, ConfigPart, checked, merge
from bot.store.db import PG_LONG_READ_SECONDS, PG_STATEMENT_SECONDS, create_engine
from bot.store.history import HistoryPart, Posted
from bot.store.leases import Lease
from bot.store.lore import LorePart
from bot.store.model_lists import ModelLists
from bot.store.quotas import Guarded, QuotaPart
from bot.store.reads import TurnReads
from bot.store.secrets import SecretBox, SecretUnreadable
from bot.store.usage import UsagePart
from bot.store.vault import PERSONAL, SECRET_NAMES, Vault, own_names
from bot.store.waiting import WaitingPart
from bot.types import (
    Actor,
    ChannelConfig,
    ChannelRef,
    HistoryEntry,
    Image,
    ImageRef,
    ModelInfo,
    Platform,
    Scope,
    SecretValue,
    Source,
    StatusCheck,
    UsageBucket,
    UsageQuery,
    UsageRecord,
)

log = logging.getLogger("bot.store")

_NO_SECRETS: Mapping[str, SecretValue] = MappingProxyType({})
# What a channel's status check tested: a server-wide change to one makes its channels' old.
_ENDPOINT = frozenset({"source", "model", "proxy_url"})


# In update_config's result: whether channels that use the server's URL lost secrets.
FOLLOWING_CLEARED = "(channels following the server)"


class Store:
    """Everything the core persists; one engine, one short transaction per operation."""

    def __init__(
        self,
        engine: AsyncEngine,
        box: SecretBox,
        defaults: ChannelConfig,
        default_secrets: Mapping[str, SecretValue],
        long_reads: AsyncEngine | None = None,
    ) -> None:
        """`long_reads`: an engine for the reads that may take a while (usage sums over a
        year, the usage export, housekeeping's survey of every message), if not `engine`."""
        self._db = Database(engine)
        self._long = Database(long_reads) if long_reads is not None else self._db
        self._merge = partial(merge, defaults)
        self._reads = TurnReads(self._db, self._merge)
        self._config = ConfigPart(self._db)
        self._vault = Vault(self._db, self._reads, box, default_secrets)
        self._history = HistoryPart(self._db, self._reads, self._long)
        self._models = ModelLists(self._db)
        self._usage = UsagePart(self._db, self._long)
        self.quotas = QuotaPart(self._db)  # limits, charges and who-may-chat rules
        self._characters = CharacterPart(self._db, self._reads)
        self.waiting = WaitingPart(self._db)  # questions waiting their turn (kill -9)
        self._lore = LorePart(self._db)

    @classmethod
    async def open(
        cls,
        url: str | URL,
        box: SecretBox,
        *,
        defaults: ChannelConfig,
        default_secrets: Mapping[str, SecretValue] = _NO_SECRETS,
    ) -> Store:
        """Connect to an already migrated database (see bot.store.migrate). PostgreSQL:
        a statement the server does not answer in time is given up (PG_STATEMENT_SECONDS,
        and PG_LONG_READ_SECONDS for the long reads, on an engine of their own)."""
        engine = create_engine(url, statement_seconds=PG_STATEMENT_SECONDS)
        if engine.dialect.name != "postgresql":
            return cls(engine, box, defaults, default_secrets)
        long_reads = create_engine(url, statement_seconds=PG_LONG_READ_SECONDS, poolclass=NullPool)
        return cls(engine, box, defaults, default_secrets, long_reads)

    async def close(self, patience: float | None = None) -> None:
        """Close the engine once every queued write is stored. With `patience` (a
        shutdown's): those the database has not taken within so many seconds (it is
        down, its writes retrying) are given up, said in one log line."""
        _, history, usage = await asyncio.gather(
            self._reads.drain(patience),
            self._history.drain(patience),
            self._usage.drain(patience),
        )
        if history or usage:
            log.warning(
                "shutting down without storing %d queued write(s) (history: %d, usage: %d): "
                "the database did not take them in time",
                history + usage,
                history,
                usage,
            )
        # A connection's goodbye waits CLOSE_GRACE at most (a database gone silent).
        for engine in dict.fromkeys([self._db.engine, self._long.engine]):
            await engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        return self._db.engine

    def lease(self) -> Lease:
        """Claims on what a process serves (bot.store.leases): taken with `take`."""
        return Lease(self._db.engine)

    # ---- configuration --------------------------------------------------------------

    async def prefetch(self, ref: ChannelRef, history_limit: int) -> None:
        """Load what a chat turn reads (config, secrets, history) in one round trip, and
        who may chat, the limits and the character card there beside it: a turn whose
        channel is not remembered (new, or quiet for a while) then waits for one round of
        reads before its request, not two or three."""
        await asyncio.gather(
            self._reads.prefetch(ref, history_limit),
            self.quotas.rules(ref),
            self.quotas.limits(ref),
            self._characters.get(ref),
        )

    async def effective_config(self, ref: ChannelRef) -> ChannelConfig:
        """Channel row → server row (when the channel has a server) → defaults, per field."""
        return await self._reads.config(ref)

    async def scope_values(self, ref: ChannelRef, scope: Scope) -> dict[str, object]:
        """What is explicitly set at `scope` (enums as enums, `stop` as a tuple)."""
        return await self._config.scope_values(ref, scope)

    async def update_config(
        self,
        ref: ChannelRef,
        scope: Scope,
        actor: Actor,
        changes: Mapping[str, object],
        *,
        action: str,
        secrets: Mapping[str, SecretValue | None] | None = None,
        personal: bool = False,
        following: Collection[str] = (),
    ) -> dict[str, bool]:
        """Set (None: unset) values at `scope`, and secrets (None: clear), in one transaction.

        All of it is saved and audited, or nothing (StoreError, ValueError). Returns, per
        secret name, whether the secret existed before a clear. `personal`: the secrets
        are set in a direct chat for that chat (Vault.apply_set). `following` (server
        scope): secret names also removed from the server's channels that use its URL;
        how many channels lost one is under FOLLOWING_CLEARED.
        """
        key = key_of(ref, scope)
        cleaned = checked(changes)
        secrets = dict(secrets or {})
        if following and scope is not Scope.SERVER:
            raise ValueError("only a server's change reaches the channels that follow it")
        if not cleaned and not secrets and not following:
            return {}

        connects = scope is Scope.SERVER and (bool(secrets) or not _ENDPOINT.isdisjoint(cleaned))

        async def work(session: AsyncSession) -> dict[str, bool]:
            # Secrets first: the command's own audit row, added last, is the change
            # /settings names (`proxy clear`, not the password it cleared with the URL).
            cleared: dict[str, bool] = {}
            for name, value in secrets.items():
                if value is None:
                    cleared[name] = await self._vault.apply_clear(session, key, name, actor)
                else:
                    await self._vault.apply_set(session, key, name, value, actor, personal=personal)
            if following:
                channels = await self._vault.apply_clear_following(session, key, following, actor)
                cleared[FOLLOWING_CLEARED] = bool(channels)
            if cleaned:
                await self._config.apply(session, key, actor, cleaned, action)
            if connects:
                await self._config.forget_checks(session, key)
            return cleared

        cleared = await self._db.write("config write", work)
        self._reads.configs.drop_scope(key)
        if secrets or following:
            self._reads.secrets.drop_scope(key)  # a server's: its channels' too
        return cleared

    async def carry_over(self, old: ChannelRef, new: ChannelRef, actor: Actor) -> bool:
        """A channel's own settings (who may chat, limits, character, configuration, keys
        and password) copied to a channel with nothing of its own: a Matrix room upgraded
        to a new room goes on as it was. Not the conversation, which starts afresh.
        Whether anything was copied.

        Never over what was set there (after a first copy too: the bot invited again
        copies nothing). Who may chat goes first: a copy a crash cut short leaves the new
        room closed to whom the old one was, if anything."""
        if await self._has_own(new):
            return False
        rules = [rule for rule in await self.quotas.rules(old) if not rule.server_wide]
        for rule in rules:
            await self.quotas.set_rule(new, Scope.CHANNEL, rule, actor)
        limits = (await self.quotas.limits(old)).channel
        for name, value in limits.items():
            await self.quotas.set_limit(new, Scope.CHANNEL, name, value, actor)
        card = await self.character(old, with_image=True)
        if card is not None and card.scope is Scope.CHANNEL:
            await self.set_character(new, Scope.CHANNEL, actor, card.name, card.card, card.image)
        none = card is None and await self.character_turned_off(old)
        if none:
            await self.no_character(new, actor)
        secrets: dict[str, SecretValue] = {}
        for name in sorted(SECRET_NAMES):
            try:
                found = await self.effective_secret(old, name)
            except SecretUnreadable:  # no key opens it: of no use there either
                continue
            if found is not None and found[0] == Scope.CHANNEL.value:
                secrets[name] = found[1]
        # A direct chat's own keys stay its owner's there (held if it becomes a group).
        sealed = await self._reads.sealed_secrets(old)
        personal = {n for n in secrets if sealed[n].direct_chat == PERSONAL}
        values = await self.scope_values(old, Scope.CHANNEL)
        shared = {n: v for n, v in secrets.items() if n not in personal}
        await self.update_config(
            new, Scope.CHANNEL, actor, values, action="carried over", secrets=shared
        )
        for name in sorted(personal):  # still its owner's (not known: whoever copies it)
            await self._vault.set(
                new,
                Scope.CHANNEL,
                name,
                secrets[name],
                actor,
                personal=True,
                owner=sealed[name].owner,
            )
        return bool(rules or limits or card or none or secrets or values)

    async def _has_own(self, ref: ChannelRef) -> bool:
        """Whether anything is set for the channel itself: configuration, who may chat,
        limits, a character (or none), a key or password."""
        if await self.scope_values(ref, Scope.CHANNEL):
            return True
        if any(not rule.server_wide for rule in await self.quotas.rules(ref)):
            return True
        if (await self.quotas.limits(ref)).channel:
            return True
        card = await self.character(ref)
        if (card is not None and card.scope is Scope.CHANNEL) or (
            card is None and await self.character_turned_off(ref)
        ):
            return True
        for name in SECRET_NAMES:
            try:
                found = await self.secret_origin(ref, name)
            except SecretUnreadable:
                return True  # one is stored there, under a key that is gone
            if found is not None and found[0] == Scope.CHANNEL.value:
                return True
        return False

    async def record_status(
        self,
        ref: ChannelRef,
        status: StatusCheck | None,
        resolved_url: str | None,
        *,
        if_still: Callable[[ChannelConfig], bool] | None = None,
    ) -> bool:
        """Store a status check's outcome (None forgets the channel's own); not audited.
        A check of the server's endpoint (ChannelConfig.server_endpoint) is kept on the
        server's row, for every channel that uses that endpoint. `if_still`: asked of the
        channel's config as the write's transaction reads it (its rows locked); False
        writes nothing, as what the outcome describes changed meanwhile (a /proxy set
        while an answer streamed). Whether it was written."""
        key = key_of(ref, Scope.CHANNEL)

        async def work(session: AsyncSession) -> Key | None:
            if status is None and if_still is None:
                row = await self._config.row(session, key)
                self._config.record_status([row], None, resolved_url)
                return key
            rows = await self._config.chain_rows(session, ref)
            own = await own_names(session, key)
            server = await own_names(session, key_of(ref, Scope.SERVER)) if ref.has_server else ()
            config = self._merge(ref, rows, own_secrets=own, server_secrets=server)
            if if_still is not None and not if_still(config):
                return None
            shared = status is not None and config.server_endpoint
            self._config.record_status(rows, status, resolved_url, server_wide=shared)
            return key_of(ref, Scope.SERVER) if shared else key

        written = await self._db.write("status write", work, reads_first=True)
        if written is not None:
            self._reads.configs.drop_scope(written)  # a server's: its channels' too
        return written is not None

    async def audit_entries(self, ref: ChannelRef, limit: int = 50) -> list[AuditEntry]:
        """Changes affecting this channel (its own and its server's), newest first."""
        return await self._config.audit_entries(ref, limit)

    # ---- secrets ----------------------------------------------------------------------

    async def set_secret(
        self,
        ref: ChannelRef,
        scope: Scope,
        name: str,
        value: SecretValue,
        actor: Actor,
        *,
        personal: bool = False,
    ) -> None:
        """Encrypt and store a secret at `scope`; the audit row records only its name.
        `personal`: set in a direct chat for that chat, its owner's (held once the room
        is a group: hold_personal_secrets)."""
        await self._vault.set(ref, scope, name, value, actor, personal=personal)
        if scope is Scope.SERVER:
            await self._forget_checks(ref)

    async def clear_secret(self, ref: ChannelRef, scope: Scope, name: str, actor: Actor) -> bool:
        """Remove a secret at `scope`; True (and audited) when there was one."""
        removed = await self._vault.clear(ref, scope, name, actor)
        if removed and scope is Scope.SERVER:
            await self._forget_checks(ref)
        return removed

    async def _forget_checks(self, ref: ChannelRef) -> None:
        key = key_of(ref, Scope.SERVER)

        async def work(session: AsyncSession) -> None:
            await self._config.forget_checks(session, key)

        await self._db.write("status reset", work)
        self._reads.configs.drop_scope(key)

    async def hold_personal_secrets(
        self, ref: ChannelRef, actor: Actor, holds: Callable[[str | None], bool]
    ) -> list[str]:
        """The channel's secrets set there while it was a direct chat, whose owner `holds`
        says may no longer pay for them, are not used from now on (held, audited). The
        names held now ([] after)."""
        names = await self._vault.hold_personal(ref, actor, holds)
        if names:  # the last status check used them: it no longer says how the room is
            await self.record_status(ref, None, (await self.effective_config(ref)).resolved_url)
        return names

    async def settle_legacy_secrets(self, ref: ChannelRef, *, private: bool) -> int:
        """The channel's own secrets an older version stored: a private direct chat's
        become its owner's (held if it becomes a group), any other room's the room's."""
        return await self._vault.settle_legacy(ref, private=private)

    async def held_secrets(self, ref: ChannelRef) -> list[str]:
        """The names of the channel's own secrets held since it became a group."""
        return await self._vault.held(ref)

    async def resolve_secret(self, ref: ChannelRef, name: str) -> SecretValue | None:
        """The effective secret: channel → server → operator default.

        Raises SecretUnreadable when the stored one cannot be decrypted.
        """
        found = await self._vault.effective(ref, name)
        return None if found is None else found[1]

    async def chain_secrets(self, ref: ChannelRef) -> list[SecretValue]:
        """Every secret stored for this channel and its server, whatever its name, and the
        operator's defaults (those that can be read)."""
        return await self._vault.every(ref)

    async def scope_secrets(self, ref: ChannelRef, scope: Scope) -> list[SecretValue]:
        """The secrets stored at `scope` itself, of every name (those that can be read)."""
        return await self._vault.at_scope(ref, scope)

    async def effective_secret(self, ref: ChannelRef, name: str) -> tuple[str, SecretValue] | None:
        """("channel" | "server" | "operator", value) of the effective secret."""
        return await self._vault.effective(ref, name)

    async def secret_origin(self, ref: ChannelRef, name: str) -> tuple[str, str] | None:
        """("channel" | "server" | "operator", last4) of the effective secret."""
        found = await self._vault.effective(ref, name)
        return None if found is None else (found[0], found[1].last4)

    async def rotate_keys(self) -> int:
        """Re-encrypt every secret under the first key in one transaction; all or nothing."""
        return await self._vault.rotate()

    async def forget_unreadable_secrets(self, actor: Actor) -> list[str]:
        """Delete (audited) the secrets no key opens; which they were, never their values."""
        return await self._vault.forget_unreadable(actor)

    async def secret_key_ids(self) -> dict[str, int]:
        """How many stored secrets each key id encrypted."""
        return await self._vault.key_ids()

    # ---- history ----------------------------------------------------------------------

    async def history(self, ref: ChannelRef, limit: int) -> list[HistoryEntry]:
        """The newest `limit` entries of this channel/thread, oldest first."""
        return await self._history.history(ref, limit)

    async def add_messages(
        self,
        ref: ChannelRef,
        entries: Sequence[HistoryEntry],
        images: Sequence[Image] = (),
        charge: Guarded[Any] | None = None,
        posts: Sequence[Sequence[str]] = (),
    ) -> list[HistoryEntry]:
        """Store new entries at once (all or none), with the bytes of the images they show
        (`entries[i].images` name them); returned with their row ids. With a quota
        `charge` (quotas.guard) it runs first in the same transaction, and a refused one
        stores nothing (an empty list). `posts[i]`: the platform messages showing
        `entries[i]` (see `link_posts`)."""
        if charge is None:
            return await self._history.add(ref, entries, images, posts=posts)
        if charge.held is not None:  # no limit: a row stored with the batch, nothing run
            stored = await self._history.add(ref, entries, images, posts=posts, held=charge.held)
            charge.reserved = charge.held.reserved
            return stored
        return await self._history.add(ref, entries, images, charge.run, charge.order, posts=posts)

    async def link_posts(self, ref: ChannelRef, row_id: int, posts: Sequence[str]) -> None:
        """These platform messages show the stored entry `row_id` (an answer's pages)."""
        await self._history.link(ref, row_id, posts)

    async def posted(
        self, platform: Platform, where: str, posts: Sequence[str], author: str | None = None
    ) -> dict[ChannelRef, Posted]:
        """Conversations in channel or thread `where` with turns these messages show, each
        with the questions among them (`author`'s only, if given) and what the answers
        among them answer."""
        return await self._history.posted(platform, where, posts, author)

    async def unlink_posts(self, ref: ChannelRef, posts: Sequence[str]) -> None:
        """These platform messages show nothing here any more (removed by the bot)."""
        await self._history.unlink(ref, posts)

    async def posts_of(self, ref: ChannelRef, row_id: int) -> list[str]:
        """The platform messages showing stored entry `row_id` here, first to last."""
        return await self._history.posts_of(ref, row_id)

    async def shown_turn(
        self, ref: ChannelRef, post: str
    ) -> list[tuple[HistoryEntry, tuple[str, ...]]]:
        """For thread `ref`, started on platform message `post`: the answer on show there
        and its question, each with the messages showing it; [] when there is none, or
        the thread was reset since."""
        return await self._history.shown_turn(ref, post)

    async def rewrite_question(
        self, ref: ChannelRef, row_id: int, content: str, tokens: int
    ) -> bool:
        """A stored question's text as its asker edited it; False when it is gone."""
        return await self._history.rewrite_question(ref, row_id, content, tokens)

    async def forget_posted(
        self, ref: ChannelRef, posts: Sequence[str], author: str | None = None
    ) -> int:
        """Delete the turns these platform messages show (deleted there): a question with
        its answers, an answer with its alternatives; `author`: only their questions."""
        return await self._history.forget_posted(ref, posts, author)

    async def image_data(self, refs: Sequence[ImageRef]) -> dict[str, Image]:
        """The stored bytes of these images by hash; pruned ones are missing."""
        return await self._history.image_data(refs)

    async def prune_old_messages(self, keep: int, most: int) -> int:
        """Each conversation's messages past its newest `keep` deleted (about `most` at
        most a call); how many."""
        return await self._history.prune_old(keep, most)

    async def prune_images(self, max_bytes: int, max_age: timedelta) -> int:
        """Forget image bytes past `max_age`, then the oldest past `max_bytes` in all."""
        return await self._history.prune_images(max_bytes, max_age)

    async def update_message(
        self, ref: ChannelRef, entry: HistoryEntry, *, final: bool = True
    ) -> None:
        """Rewrite a stored entry by id: a growing answer (final=False), or how it ended."""
        await self._history.update(ref, entry, remember=final)

    async def alternatives(
        self, ref: ChannelRef, question_id: int
    ) -> list[tuple[HistoryEntry, bool]]:
        """Every answer to a question, oldest first, with whether it is the shown one."""
        return await self._history.alternatives(ref, question_id)

    async def show_answer(self, ref: ChannelRef, question_id: int, answer_id: int) -> None:
        """Show this answer of a question (the others become hidden alternatives)."""
        await self._history.show(ref, question_id, answer_id)

    async def forget_answers(self, ref: ChannelRef, row_ids: Sequence[int]) -> int:
        """Delete these answers of this conversation (an answer whose end could not be
        stored, which its asker was told will not be part of the history)."""
        return await self._history.forget_answers(ref, row_ids)

    async def mark_interrupted(self, ref: ChannelRef) -> int:
        """Mark answers of this conversation left half-written by a gone process."""
        return await self._history.mark_interrupted(ref)

    async def clear_history(self, ref: ChannelRef, actor: Actor) -> int:
        """Delete this channel's (or this thread's) stored turns; audited; returns the count."""
        return await self._history.clear(ref, actor)

    async def lore_timers(self, ref: ChannelRef) -> dict[str, Any] | None:
        """This conversation's lorebook timed effects as last stored (bot.characters.timed's
        JSON); None when none were."""
        return await self._lore.get(ref)

    async def set_lore_timers(self, ref: ChannelRef, effects: dict[str, Any]) -> None:
        """Store this conversation's lorebook timed effects (when a prompt is sent)."""
        await self._lore.put(ref, effects)

    # ---- character cards ----------------------------------------------------------------

    async def character(
        self, ref: ChannelRef, *, with_image: bool = False
    ) -> StoredCharacter | None:
        """The channel's card, else its server's (the image only when asked for)."""
        return await self._characters.get(ref, with_image=with_image)

    async def set_character(
        self,
        ref: ChannelRef,
        scope: Scope,
        actor: Actor,
        name: str,
        card: str,
        image: bytes | None,
    ) -> None:
        """Store the card (V3 JSON) and its image at `scope`, replacing one; audited."""
        await self._characters.put(ref, scope, actor, name, card, image)

    async def no_character(self, ref: ChannelRef, actor: Actor) -> None:
        """No character in this channel, whatever its server sets (audited)."""
        await self._characters.put(
            ref, Scope.CHANNEL, actor, "", NO_CHARACTER, None, action="character none"
        )

    async def character_turned_off(self, ref: ChannelRef) -> bool:
        """Whether `/character none` is in force in this channel."""
        return await self._characters.turned_off(ref)

    async def clear_character(self, ref: ChannelRef, scope: Scope, actor: Actor) -> str | None:
        """Remove the card at `scope`; the removed card's name, None when there was none."""
        return await self._characters.clear(ref, scope, actor)

    async def add_greetings(self, ref: ChannelRef, name: str, texts: Sequence[str]) -> int:
        """Store a character's greetings as one answer with its swipes; the shown one's id."""
        return await self._characters.add_greetings(ref, name, texts)

    # ---- model lists ------------------------------------------------------------------

    async def cache_models(
        self, ref: ChannelRef, config: ChannelConfig, models: Sequence[ModelInfo]
    ) -> None:
        """Replace the cached model list of this channel and its source, fetched from the
        endpoint `config` names; the server's endpoint's (ChannelConfig.server_endpoint)
        on the server's row, as its status check is, for every channel that uses it."""
        scope = Scope.SERVER if config.server_endpoint else Scope.CHANNEL
        await self._models.put(ref, config.source, config.proxy_url or "", models, scope)

    async def cached_models(
        self, ref: ChannelRef, config: ChannelConfig, source: Source | None = None
    ) -> list[ModelInfo] | None:
        """The list cached for this channel and `source` (default: the config's), or None
        when none was, or it came from another endpoint URL than the config's (the
        channel's, the server's or the operator's DEFAULT_PROXY_URL moved). On the
        server's endpoint, the newer of the server's list and the channel's own (kept
        before it used that endpoint, or before an upgrade), as with its status check."""
        scopes = (Scope.CHANNEL, Scope.SERVER) if config.server_endpoint else (Scope.CHANNEL,)
        url = config.proxy_url or ""
        return await self._models.get(ref, source or config.source, url, scopes)

    # ---- usage ------------------------------------------------------------------------

    async def record_usage(self, record: UsageRecord, reserved: int | None = None) -> None:
        """Store one provider call's usage (one insert, safe from any number of processes);
        `reserved`: the row a quota charge reserved for it, settled with these counts."""
        await self._usage.record(record, reserved)

    async def retry_usage(self) -> int:
        """Record the usage the database refused before (StoreError: it still does)."""
        return await self._usage.retry()

    async def usage_buckets(self, query: UsageQuery) -> list[UsageBucket]:
        """Token sums per (UTC day, user, model) of the rows the query selects."""
        return await self._usage.buckets(query)

    async def usage_summary(
        self, query: UsageQuery, top_users: int = 0
    ) -> tuple[list[UsageBucket], list[UsageBucket]]:
        """What /usage shows of the rows the query selects: sums per (UTC day, model), and
        per (user, model) of the `top_users` users with the most tokens (UsagePart.summary)."""
        return await self._usage.summary(query, top_users)

    def usage_records(self, since: date) -> AsyncIterator[UsageRecord]:
        """Every usage row from the UTC day `since` on, oldest first (export)."""
        return self._usage.records(since)
