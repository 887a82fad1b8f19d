"""Slash-command suggestions under the operator's ALLOWED_* lists, through the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core import Core
from bot.types import ModelInfo
from bot.usage.quota import Gate
from tests.discord.conftest import World, open_core
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import ref_of, reply_text

pytestmark = pytest.mark.simcord(settle_timeout=30)


@pytest.fixture
async def core(tmp_path: Path, endpoint: FakeOpenAI) -> AsyncIterator[Core]:
    """The conftest's core, with ALLOWED_USERS naming someone else than everyone here."""
    core = await open_core(tmp_path, endpoint, gate=Gate.of(users=["1"]))
    try:
        yield core
    finally:
        await core.close()


async def test_no_suggestions_outside_the_operators_allowed_users(world: World, core: Core) -> None:
    # Listed while the channel was served (before the operator narrowed ALLOWED_USERS).
    ref = ref_of(world.channel, world.guild)
    config = await core.store.effective_config(ref)
    await core.store.cache_models(ref, config, [ModelInfo("private-finetune")])
    listed = await world.admin.slash(world.channel, "models list")
    assert "private-finetune" not in reply_text(listed)  # refused: not served here
    assert await world.admin.autocomplete(world.channel, "model", "id", "") == []
