"""Small readers over simcord's world and the core's store, and the real client run against
the loopback fake Discord, shared by the Discord tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import discord
import simcord

from bot.core import Core
from bot.frontends.discord import DiscordOptions, point_at
from bot.frontends.discord.client import ChatClient
from bot.types import ChannelConfig, ChannelRef, Platform, SecretValue
from tests.discord.fake_discord import FakeDiscord


def ref_of(channel: simcord.ChannelHandle, guild: simcord.GuildHandle | None) -> ChannelRef:
    return ChannelRef(
        Platform.DISCORD, channel_id=str(channel.id), server_id=str(guild.id) if guild else ""
    )


async def config_of(
    core: Core, channel: simcord.ChannelHandle, guild: simcord.GuildHandle | None
) -> ChannelConfig:
    return await core.store.effective_config(ref_of(channel, guild))


def bot_messages(channel: simcord.ChannelHandle, bot_id: int) -> list[str]:
    return [m.content for m in channel.history() if m.author.id == bot_id]


def requests(env: simcord.Env, method: str, path_part: str) -> list[simcord.HttpLogEntry]:
    return [r for r in env.http_requests if r.method == method and path_part in r.path]


def reply_text(result: simcord.InteractionResult) -> str:
    """Everything the bot answered to one interaction (response and follow-ups)."""
    parts = [result.response.content] if result.response is not None else []
    parts += [f.content for f in result.followups]
    return "\n".join(parts)


def callback_types(env: simcord.Env, since: int) -> list[int]:
    """Interaction response types the bot sent after request number `since` (5 = deferred)."""
    return [
        int(r.json["type"])
        for r in env.http_requests[since:]
        if r.method == "POST" and r.path.endswith("/callback") and isinstance(r.json, dict)
    ]


@asynccontextmanager
async def running(core: Core, fake: FakeDiscord) -> AsyncIterator[ChatClient]:
    """The bot's Discord client in this process, connected to `fake` (started)."""
    route, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    point_at(fake.api_url, fake.gateway_url)
    client = ChatClient(
        core, DiscordOptions(SecretValue(fake.token), shard_count=1), min_interval=0.05
    )
    task = asyncio.create_task(client.start(fake.token))
    try:
        await asyncio.wait_for(fake.identified.wait(), 30)
        for _ in range(300):
            if client.get_guild(fake.guild_id) is not None:
                break
            await asyncio.sleep(0.02)
        yield client
    finally:
        await client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        discord.http.Route.BASE = route
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
