"""simcord drives the real discord.py client; a real Core and a loopback endpoint behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest
import simcord

from bot.core import Core
from bot.frontends.discord import DiscordOptions
from bot.frontends.discord.client import ChatClient
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.types import ChannelConfig, SecretValue, Source
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai

OPERATOR_ID = 424242  # listed in admin_ids, no Discord rights


@pytest.fixture
async def endpoint() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(Script()) as served:
        yield served


async def open_core(tmp_path: Path, endpoint: FakeOpenAI, **options: Any) -> Core:
    """A real Core on SQLite in `tmp_path`, answering from `endpoint`, OPERATOR_ID an
    operator admin; `options` go to Core (a `gate` with operator limits)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    await upgrade_to_head(url)
    defaults = ChannelConfig.of(source=Source.CUSTOM, model="m-small", proxy_url=endpoint.url_v1)
    store = await Store.open(url, SecretBox.from_setting(generate_key()), defaults=defaults)
    # Read each token as it comes: simcord advances its virtual clock only when every task
    # waits on something it recognises, and a socket resting until the next read tick
    # (bot.providers._network) is not one of those. Paced reading is tested on real
    # sockets in tests/unit/test_network.py and through the real `chatbot run` process.
    settings = ProviderSettings(allow_private_endpoints=True, max_retries=0, stream_read_pace=0.0)
    return Core(store, ProviderHub(settings), admin_ids=[str(OPERATOR_ID)], **options)


@pytest.fixture
async def core(tmp_path: Path, endpoint: FakeOpenAI) -> AsyncIterator[Core]:
    core = await open_core(tmp_path, endpoint)
    try:
        yield core
    finally:
        await core.close()


@pytest.fixture
def simcord_bot(core: Core) -> ChatClient:
    return ChatClient(core, DiscordOptions(token=SecretValue("simcord-token"), shard_count=1))


@dataclass
class World:
    env: simcord.Env
    guild: simcord.GuildHandle
    channel: simcord.ChannelHandle
    admin: simcord.MemberActor
    member: simcord.MemberActor
    bot_id: int


@pytest.fixture
def world(simcord_env: simcord.Env) -> World:
    env = simcord_env
    guild = env.create_guild("Test Guild")
    channel = guild.create_text_channel("general")
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    admin = guild.add_member(env.create_user("ada", global_name="Ada"), roles=[mods])
    member = guild.add_member(env.create_user("bob", global_name="Bob"))
    assert env.bot.user is not None
    return World(env, guild, channel, admin, member, env.bot.user.id)
