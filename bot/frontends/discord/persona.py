"""Character channels speak through a channel webhook with the character's name and face.

One webhook per channel, created by the bot (so its messages may carry our buttons) and
reused; its name and avatar follow the card. Without Manage Webhooks the answer is a
normal message that starts with the character's name in bold, and the channel hears once
which permission would change that.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import discord

from bot.core import Core
from bot.frontends.discord.failures import CALL_FAILED
from bot.types import ChannelRef
from bot.types.text import grapheme_end, literal

log = logging.getLogger("bot.discord")

MAX_NAME = 80  # Discord's limit for a webhook's name and a message's username
_FORBIDDEN = re.compile(r"discord|clyde", re.IGNORECASE)  # refused in webhook names
HINT = (
    "(To let {name} answer with its own name and picture here, give me the "
    "Manage Webhooks permission in this channel.)"
)


def webhook_name(name: str) -> str:
    """A name Discord accepts for a webhook (1–80 characters, no "discord" or "clyde")."""
    cleaned = name
    while True:  # `disclydecord` without `clyde` is `discord`: until none is left
        shorter = _FORBIDDEN.sub("", cleaned)
        if shorter == cleaned:
            break
        cleaned = shorter
    cleaned = " ".join(cleaned.split())
    cleaned = cleaned[: grapheme_end(cleaned, MAX_NAME)]  # not inside a flag or an emoji
    return cleaned or "Character"


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who posts an answer: the character through `webhook`, or (no webhook) the bot with
    the character's name in bold; `thread` when the channel is a thread of the webhook's."""

    name: str
    webhook: discord.Webhook | None = None
    thread: discord.Thread | None = None
    hint: str = ""  # said once in a channel where the webhook is not allowed
    on_gone: Callable[[], None] | None = None  # the webhook was deleted: make a new one

    @property
    def prefix(self) -> str:
        return "" if self.webhook is not None else f"**{_plain(self.name)}**\n"


def _plain(name: str) -> str:
    """A card's name (from a public card site) as text in a message: no formatting of
    its own (`a** [x](https://…) **b` is no link), no mention pill."""
    return discord.utils.escape_mentions(literal(name))


class Personas:
    """The webhook of each character channel, created once and reused (per process)."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._hooks: dict[int, tuple[str, discord.Webhook]] = {}  # channel → (version, hook)
        self._told: set[int] = set()
        self.webhook_ids: set[int] = set()  # ours: a reply to their messages is to the bot

    async def speaker(self, channel: discord.abc.Messageable, ref: ChannelRef) -> Speaker | None:
        """Who answers in `channel`: None when it has no character."""
        persona = await self._core.persona(ref)
        if persona is None:
            return None
        if not ref.server_id:
            return Speaker(persona.name)  # a DM has no webhook: its name in bold
        thread = channel if isinstance(channel, discord.Thread) else None
        base = channel.parent if isinstance(channel, discord.Thread) else channel
        if not isinstance(base, discord.TextChannel):
            return Speaker(persona.name)  # forums, voice chats: the plain fallback
        if not base.permissions_for(base.guild.me).manage_webhooks:
            hint = ""
            if base.id not in self._told:
                self._told.add(base.id)
                hint = HINT.format(name=_plain(persona.name))
            return Speaker(persona.name, hint=hint)
        self._told.discard(base.id)
        cached = self._hooks.get(base.id)
        gone = functools.partial(self.forget, base.id)
        if cached is not None and cached[0] == persona.version:
            return Speaker(persona.name, cached[1], thread, on_gone=gone)
        try:
            webhook = await self._webhook(base, ref, persona.version, cached)
        except CALL_FAILED as err:
            log.warning("could not set up the character webhook: %s", type(err).__name__)
            if isinstance(err, discord.NotFound):
                self.forget(base.id)
            return Speaker(persona.name)
        return Speaker(persona.name, webhook, thread, on_gone=gone)

    async def _webhook(
        self,
        channel: discord.TextChannel,
        ref: ChannelRef,
        version: str,
        cached: tuple[str, discord.Webhook] | None,
    ) -> discord.Webhook:
        """This channel's webhook, made to look like the character (one avatar upload)."""
        full = await self._core.persona(ref, avatar=True)
        name = webhook_name(full.name if full else "Character")
        avatar = full.image if full else None
        webhook = cached[1] if cached is not None else await self._find(channel)
        if webhook is None:
            webhook = await channel.create_webhook(name=name, avatar=avatar, reason="character")
        else:
            webhook = await webhook.edit(name=name, avatar=avatar, reason="character")
        self._hooks[channel.id] = (version, webhook)
        self.webhook_ids.add(webhook.id)
        return webhook

    async def _find(self, channel: discord.TextChannel) -> discord.Webhook | None:
        """The webhook this bot made here before (a restart), if it is still there."""
        me = channel.guild.me
        for webhook in await channel.webhooks():
            if webhook.user is not None and webhook.user.id == me.id and webhook.token:
                return webhook
        return None

    async def by_id(self, channel: discord.abc.Messageable, webhook_id: int) -> Speaker | None:
        """Our webhook that posted a message (a button pressed on it), to edit it by."""
        thread = channel if isinstance(channel, discord.Thread) else None
        base = channel.parent if isinstance(channel, discord.Thread) else channel
        if not isinstance(base, discord.TextChannel):
            return None
        cached = self._hooks.get(base.id)
        if cached is not None and cached[1].id == webhook_id:
            return Speaker(cached[1].name or "", cached[1], thread)
        try:
            found = await self._find(base)
        except CALL_FAILED as err:
            log.info("could not look up the character webhook: %s", type(err).__name__)
            return None
        if found is None or found.id != webhook_id:
            return None
        self.webhook_ids.add(found.id)
        return Speaker(found.name or "", found, thread)

    def unsaid(self, channel: discord.abc.Messageable) -> None:
        """The hint `speaker` gave for `channel` was not said (the bot may not post
        there): the next answer there gives it again."""
        base = channel.parent if isinstance(channel, discord.Thread) else channel
        if isinstance(base, discord.TextChannel):
            self._told.discard(base.id)

    def forget(self, channel_id: int) -> None:
        """The webhook was deleted (by someone else): make a new one next time."""
        self._hooks.pop(channel_id, None)
