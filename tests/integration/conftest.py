"""A real Core (store on SQLite or PostgreSQL, real provider hub) for command and chat tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.core import Core
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.types import Actor, ChannelConfig, ChannelRef, Platform, Source

ADMIN = Actor("u-admin", "Ada", is_channel_admin=True)
SERVER_ADMIN = Actor("u-owner", "Olga", is_channel_admin=True, is_server_admin=True)
MEMBER = Actor("u-member", "Bob")
OPERATOR = Actor("u-operator", "Opal")  # no platform rights; listed in admin_ids
REF = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")


@dataclass
class Harness:
    core: Core
    store: Store
    url: str


async def make_core(url: str, *, allow_private: bool = True, retries: int = 0) -> Core:
    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of(source=Source.OPENAI)
    )
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=allow_private, max_retries=retries))
    return Core(store, hub, admin_ids=[OPERATOR.id])


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    core = await make_core(url)
    try:
        yield Harness(core, core.store, url)
    finally:
        await core.close()
