"""Hints a Discord member or admin reads: each command written as Discord takes it, and
an admin's step said to a member as an admin's."""

from __future__ import annotations

import pytest

from tests.discord.conftest import World
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import bot_messages, reply_text
from tests.discord.test_attachments import png

pytestmark = pytest.mark.simcord(settle_timeout=30)

KEY = "sk-custom-key-0123456789abcdef"


async def test_a_chat_turns_params_hint_names_its_options_as_discord_takes_them(
    world: World,
) -> None:
    """An image the model is not shown said "an admin turns it on with /params vision
    on" (or "/params vision default"): on Discord, whose /params options are all
    optional, that fills none of them. The conversation writes them by name there."""
    await world.member.send(
        world.channel, f"<@{world.bot_id}> what is this?", attachments=[("a.png", png("red"))]
    )
    other = world.guild.create_text_channel("other")  # said once a channel
    await world.admin.slash(other, "params", name="vision", value="off")
    await world.member.send(
        other, f"<@{world.bot_id}> and this?", attachments=[("b.png", png("blue"))]
    )
    [unknown] = [m for m in bot_messages(world.channel, world.bot_id) if "image" in m]
    [off] = [m for m in bot_messages(other, world.bot_id) if "image" in m]
    assert "an admin turns it on with /params name:vision value:on.)" in unknown, unknown
    assert "(/params name:vision value:default: automatic)" in off, off
    assert "/params vision" not in unknown + off


async def test_models_list_says_its_filter_as_discord_takes_it(
    world: World, endpoint: FakeOpenAI
) -> None:
    """A long model list ended "(/models list <text> shows the ids containing it)": on
    Discord the filter is an optional option, which a positional text never fills."""
    endpoint.script.models = [f"model-{i:03}" for i in range(70)]
    await world.admin.slash(world.channel, "models external", state="on")
    said = reply_text(await world.member.slash(world.channel, "models list"))
    assert "… and 10 more (/models list filter:<text> shows the ids containing it)" in said, said


async def test_a_refused_key_is_a_members_to_ask_an_admin_about_not_to_check(
    world: World, endpoint: FakeOpenAI
) -> None:
    """A 401 said "Check the custom key used here." to everyone, members too, who can
    neither see nor set it: that step is now said to an admin alone, and a member is told
    only an admin can fix it."""
    endpoint.script.models_status = 401
    shown = await world.admin.slash(world.channel, "key set", source="custom")
    admin_said = reply_text(await world.admin.submit_modal(shown, {"secret:key": KEY}))
    assert "Check the custom key used here." in admin_said, admin_said
    member_said = reply_text(await world.member.slash(world.channel, "settings"))
    assert "rejected the credentials" in member_said, member_said
    assert "Check the custom key" not in member_said, member_said
    assert "Only an admin can fix that" in member_said, member_said
