"""Client set-up: sharding, guild-scoped command sync, intents, and a table that does not fit."""

from __future__ import annotations

import discord
import pytest
import simcord

from bot.commands.spec import Command
from bot.core import Core
from bot.frontends import FrontendError
from bot.frontends.discord import DiscordOptions, point_at
from bot.frontends.discord.client import ChatClient
from bot.types import SecretValue
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import bot_messages

TOKEN = SecretValue("simcord-token")


async def test_named_shards_answer_in_the_guilds_they_own(core: Core, endpoint: FakeOpenAI) -> None:
    bot = ChatClient(core, DiscordOptions(TOKEN, shard_count=2, shard_ids=(0, 1)))
    assert isinstance(bot, discord.AutoShardedClient)
    async with simcord.run(bot, settle_timeout=30) as env:
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        guild = env.create_guild("On shard one", shard_id=1)
        channel = guild.create_text_channel("general")
        bob = guild.add_member(env.create_user("bob"))
        await bob.send(channel, f"<@{bot.user.id if bot.user else 0}> hi")
        assert bot.user is not None
        assert bot_messages(channel, bot.user.id) == ["Hello there!"]
        assert bot.get_guild(guild.id) is not None
        assert bot.get_guild(guild.id).shard_id == 1  # type: ignore[union-attr]


async def test_command_guilds_get_the_commands_instead_of_everyone(core: Core) -> None:
    guild_id = 1456074443980811111
    bot = ChatClient(core, DiscordOptions(TOKEN, shard_count=1, command_guilds=(guild_id,)))
    async with simcord.run(bot) as env:
        guild = env.create_guild("Test", id=guild_id)
        channel = guild.create_text_channel("general")
        mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
        ada = guild.add_member(env.create_user("ada"), roles=[mods])
        assert await bot.tree.fetch_commands() == []
        scoped = await bot.tree.fetch_commands(guild=discord.Object(guild_id))
        assert {c.name for c in scoped} == {c.name for c in core.table}
        result = await ada.slash(channel, "settings")
        assert result.response is not None and "Source: custom" in result.response.content


def test_message_content_intent_follows_the_option(core: Core) -> None:
    on = ChatClient(core, DiscordOptions(TOKEN, shard_count=1))
    off = ChatClient(core, DiscordOptions(TOKEN, shard_count=1, message_content=False))
    assert on.intents.message_content and not off.intents.message_content
    assert on.intents.guild_messages and on.intents.dm_messages and not on.intents.members


def test_only_the_events_the_bot_uses_are_asked_for(core: Core) -> None:
    """discord.py's default intents brought every reaction, "is typing", voice state,
    emoji, invite and webhook change of every server to the bot's one event loop, each
    parsed and dropped. What the bot reads: servers (channels, threads, roles,
    permissions), messages in them and in DMs (with edits and deletions), and content
    if the operator allows it. The tests here run on simcord, which delivers only the
    events asked for, as Discord does: chat, threads, DMs, edits and deletions work."""
    bot = ChatClient(core, DiscordOptions(TOKEN, shard_count=1))
    asked = discord.Intents(guilds=True, guild_messages=True, dm_messages=True)
    asked.message_content = True
    assert bot.intents == asked
    for unused in ("typing", "reactions", "voice_states", "members", "presences", "webhooks"):
        assert not getattr(bot.intents, unused), unused


async def test_a_portal_without_the_content_intent_is_refused_at_connect(core: Core) -> None:
    bot = ChatClient(core, DiscordOptions(TOKEN, shard_count=1))
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with simcord.run(bot, approved_intents=discord.Intents.default()):
            pass


def test_a_table_discord_would_refuse_fails_at_start_up(core: Core) -> None:
    core.table = (*core.table, Command("Shout", "uppercase is not allowed"))
    with pytest.raises(FrontendError, match="/Shout: name must be"):
        ChatClient(core, DiscordOptions(TOKEN, shard_count=1))


def test_api_and_gateway_urls_point_discord_py_elsewhere() -> None:
    route, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        point_at("http://127.0.0.1:9/api/v10/", "ws://127.0.0.1:9/gateway")
        assert discord.http.Route.BASE == "http://127.0.0.1:9/api/v10"
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "ws://127.0.0.1:9/gateway"
        point_at("", "")  # empty settings leave discord.py's defaults alone
        assert discord.http.Route.BASE == "http://127.0.0.1:9/api/v10"
    finally:
        discord.http.Route.BASE = route
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
