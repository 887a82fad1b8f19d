"""The discord.py client: intents, sharding, command sync, and event wiring."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from discord import app_commands

from bot.core import Core, Untold
from bot.frontends import FrontendError
from bot.frontends.discord.chat import ChatHandler, NoAccessNotices
from bot.frontends.discord.commands import build_commands, table_problems
from bot.frontends.discord.controls import ControlButton, Controls
from bot.frontends.discord.failures import CALL_FAILED
from bot.frontends.discord.interactions import CommandRunner, interaction_context
from bot.frontends.discord.logs import install_log_filter
from bot.frontends.discord.persona import Personas
from bot.frontends.discord.sink import MIN_INTERVAL, rate_limit_trace
from bot.types import Platform, failure
from bot.types.place import LOG_PLACE
from bot.types.recent import RecentIds

if TYPE_CHECKING:
    from bot.frontends.discord import DiscordOptions

log = logging.getLogger("bot.discord")

SYNC_STOP_SECONDS = 1.0  # how long a stop waits for a cancelled command sync to end


class _Tree(app_commands.CommandTree["ChatClient"]):
    def __init__(self, client: ChatClient, **options: Any) -> None:
        super().__init__(client, **options)
        # Interactions handled lately: after a resume, Discord may send one again.
        self._recent = RecentIds()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Before every command and autocompletion: none runs twice (a second /reset
        # would forget the turns since the first), none where the bot is not.
        # Each interaction runs in a task of its own (discord.py's CommandTree-invoker):
        # its lines, its command's and its turn's, name its channel.
        LOG_PLACE.set(str(interaction_context(interaction)[0]))
        key = str(interaction.id)
        if key in self._recent:
            log.info("a slash command Discord sent again was not run again")
            return False
        self._recent.add(key)
        return not await self.client.runner.refuse_elsewhere(interaction)

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        # discord.py's default prints a traceback; say what failed, where, and answer the user.
        data: dict[str, Any] = dict(interaction.data or {})
        command_name = str(data.get("name", "?"))
        where = interaction_context(interaction)[0]
        if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
            # Its member's Discord still shows the command as it was registered before.
            log.info(
                "/%s in %s came as Discord had it before the commands were registered anew "
                "(%s): its member was asked to reload Discord",
                command_name,
                where,
                type(error).__name__,
            )
        else:
            log.warning("/%s in %s failed: %s", command_name, where, type(error).__name__)
        command = interaction.type is discord.InteractionType.application_command
        if command and not interaction.response.is_done():
            try:
                await interaction.response.send_message(tree_error_text(error), ephemeral=True)
            except CALL_FAILED as err:
                log.info("could not answer a failed command: %s", type(err).__name__)


def tree_error_text(error: app_commands.AppCommandError) -> str:
    """What to tell someone whose command discord.py could not even hand to us."""
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return (
            "This command changed since Discord last loaded it. Reload Discord (Ctrl+R) "
            "or try again in a minute."
        )
    if isinstance(error, app_commands.TransformerError):
        return "One of the values is not valid here. Check the options and try again."
    return "That did not work. Try again; if it keeps failing, tell the bot's operator."


def intents_for(options: DiscordOptions) -> discord.Intents:
    """What the bot reads, nothing more: servers (their channels, threads, roles and
    permissions), messages in them and in DMs (with their edits and deletions), and
    message content only when the operator turned it on. discord.py's default adds
    typing, reactions, voice states, emoji, invites, webhooks, integrations, scheduled
    events and polls: events the bot never uses, each parsed on its one event loop
    (in a busy server, every reaction and every "is typing" of every member)."""
    return discord.Intents(
        guilds=True,
        guild_messages=True,
        dm_messages=True,
        message_content=options.message_content,
    )


def _failed_sync(where: str, err: discord.HTTPException, kept: str) -> None:
    log.error(
        "could not register the slash commands %s: Discord answered %s (%s). "
        "Meanwhile %s; restart the bot later to register them.",
        where,
        err.status,
        type(err).__name__,
        kept,
    )


class ChatClient(discord.AutoShardedClient):
    """One process, auto-sharded unless options name the shards."""

    def __init__(
        self, core: Core, options: DiscordOptions, *, min_interval: float = MIN_INTERVAL
    ) -> None:
        problems = table_problems(core.table)
        if problems:
            raise FrontendError(
                "the command table does not fit Discord's limits: " + "; ".join(problems)
            )
        sharding: dict[str, Any] = {"shard_count": options.shard_count}
        if options.shard_ids:
            sharding["shard_ids"] = list(options.shard_ids)
        # The bot has no voice: discord.py's warnings that voice libraries are missing
        # (PyNaCl, davey) would be the first lines every operator reads, and mean nothing.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            intents=intents_for(options),
            allowed_mentions=discord.AllowedMentions.none(),  # a model's @everyone stays text
            chunk_guilds_at_startup=False,
            # An ended answer's edits wait out what Discord asks (sink.Deadline).
            http_trace=rate_limit_trace(),
            **sharding,
        )
        install_log_filter()
        self.core = core
        self.command_guilds = options.command_guilds
        # In the servers it is added to and in a DM with it: a user's own install of the
        # app (a new application allows it) would offer them where the bot never chats.
        self.tree = _Tree(
            self,
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True),
            allowed_installs=app_commands.AppInstallationType(guild=True),
        )
        self.runner = CommandRunner(core)
        for command in build_commands(core.table, self.runner.invoke, self.runner.complete):
            self.tree.add_command(command)
        personas = Personas(core)  # one webhook per character channel, shared
        self.chat = ChatHandler(
            core, NoAccessNotices(), min_interval=min_interval, personas=personas
        )
        self.controls = Controls(core, min_interval=min_interval, personas=personas)
        self._own_deletes = self.controls.own_deletes
        self.runner.greet = self.controls.greet
        self.runner.in_place = self.controls.typed
        self._sync: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        """Answer buttons, also on messages from before a restart; then the slash commands,
        registered while the bot connects: Discord failing the sync, refusing a command,
        or asking to wait (a rate limit can last hours) must not keep it from chatting."""
        self.add_dynamic_items(ControlButton)
        self._sync = asyncio.create_task(self.sync_commands(), name="slash command sync")

    async def close(self) -> None:
        if self._sync is not None and not self._sync.done():
            self._sync.cancel()  # waiting out a rate limit, say
            await asyncio.wait({self._sync}, timeout=SYNC_STOP_SECONDS)
        await super().close()

    async def sync_commands(self) -> None:
        """The slash commands: on the listed guilds at once, else globally. A failure is
        logged with what it means for the operator; the commands Discord had stay."""
        if not self.command_guilds:
            synced = await self._synced(None)
            if synced is not None:
                log.info("synced %d global slash commands", synced)
            return
        for guild_id in self.command_guilds:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self._synced(guild)
            if synced is not None:
                log.info("synced %d slash commands to guild %s", synced, guild_id)

    async def _synced(self, guild: discord.Object | None) -> int | None:
        """How many commands were registered (globally, or on `guild`); None: it failed,
        and the log says why and what to do."""
        where = f"in guild {guild.id}" if guild is not None else "globally"
        kept = "the bot chats, and its slash commands stay as Discord last registered them"
        try:
            return len(await self.tree.sync(guild=guild))
        except discord.Forbidden as err:
            if guild is None:
                _failed_sync(where, err, kept)
                return None
            log.error(
                "cannot register commands in guild %s: the bot is not in it or was invited "
                "without the applications.commands scope",
                guild.id,
            )
        except app_commands.CommandSyncFailure as err:
            # Discord's own words name the command and the rule (no secret is in them).
            said = " / ".join(line.strip() for line in str(err).splitlines()).rstrip(".")
            log.error(
                "Discord refused the slash commands %s: %s. Meanwhile %s. This is a fault "
                "in the bot's command table (or a new Discord rule): report this line.",
                where,
                said,
                kept,
            )
        except discord.HTTPException as err:
            _failed_sync(where, err, kept)
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            log.error(
                "could not register the slash commands %s: Discord could not be reached "
                "(%s). Meanwhile %s; restart the bot later to register them.",
                where,
                type(err).__name__,
                kept,
            )
        except Exception as err:  # a bug: one line, and the bot goes on chatting
            log.error("registering the slash commands %s failed: %s", where, failure(err))
        return None

    async def on_ready(self) -> None:
        user = self.user
        log.info(
            "logged in to Discord as %s (%s) in %d guilds, %s shard(s)",
            user,
            user.id if user else "?",
            len(self.guilds),
            self.shard_count,
        )
        if self._sync is not None and not self._sync.done():
            log.warning(
                "Discord has not taken the slash commands yet (it asked the bot to wait, or "
                "failed and is asked again: discord.http's lines say which); the bot chats "
                "meanwhile and logs when they are registered"
            )
        await self._tell_unanswered()

    async def _tell_unanswered(self) -> None:
        """Questions the process before this one left waiting for their turn when it went
        away (`kill -9`): told so in reply, each once (Core.unanswered)."""
        for each in await self.core.unanswered(Platform.DISCORD):
            await self._tell(each)
            await self.core.told(each)

    async def _tell(self, untold: Untold) -> None:
        """As the bot's other own words: a reply, else a link to the question, through the
        character's webhook where the bot may not post as itself."""
        ref = untold.ref
        guild = int(ref.server_id) if ref.server_id else None
        where = int(ref.thread_id or ref.channel_id)
        channel = self.get_channel(where) or self.get_partial_messageable(where, guild_id=guild)
        await self.chat.tell(channel, ref, int(untold.post_id), untold.text)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self.runner.form_gone(interaction)

    async def on_message(self, message: discord.Message) -> None:
        if self.user is not None:
            await self.chat.on_message(message, self.user)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        if self.user is None:
            return
        guild = self.get_guild(payload.guild_id) if payload.guild_id else None
        role = guild.self_role if guild is not None else None
        channel = self.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        await self.chat.on_edit(payload, self.user, channel, role.id if role else None)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self._deleted(payload.channel_id, [payload.message_id])

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self._deleted(payload.channel_id, list(payload.message_ids))

    async def _deleted(self, channel_id: int, message_ids: list[int]) -> None:
        """Deleted in Discord (only those allowed can): the turns they showed are forgotten.
        Pages the bot removed itself (a shorter answer replaced a longer one) are not."""
        posts = [str(i) for i in message_ids if str(i) not in self._own_deletes]
        if posts:
            await self.core.deleted(Platform.DISCORD, str(channel_id), posts)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        # discord.py's default prints a traceback; one line is enough and leaks nothing.
        error = sys.exc_info()[1]
        log.warning("Discord event %s failed: %s", event_method, type(error).__name__)
