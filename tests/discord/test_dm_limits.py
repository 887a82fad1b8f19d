"""The operator's limits in a DM (simcord): its one person is its admin, so a limit they
could lift there would hold for nobody."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import simcord
from simcord.backend.models import User

from bot.core import Core
from bot.types import Actor, Scope, limits
from bot.usage.quota import Gate
from tests.discord.conftest import OPERATOR_ID, World, open_core
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import bot_messages, ref_of, reply_text, requests

pytestmark = pytest.mark.simcord(settle_timeout=30)


@pytest.fixture
async def core(tmp_path: Path, endpoint: FakeOpenAI) -> AsyncIterator[Core]:
    """The conftest's core, with the operator's LIMIT_MESSAGES_PER_USER_MINUTE=1."""
    core = await open_core(tmp_path, endpoint, gate=Gate.of({"messages_per_user_minute": 1}))
    try:
        yield core
    finally:
        await core.close()


async def test_the_operators_limit_holds_in_a_dm_whatever_its_user_sets(
    world: World, endpoint: FakeOpenAI, core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a DM anyone is its admin: `/limits set messages_per_user_minute off` (or a
    higher value) lifted the operator's LIMIT_* there, and everyone could chat past it on
    the operator's key. It now holds in every DM (a lower value may be set); a server
    channel's admins still replace it for their channel."""
    monkeypatch.setattr(limits, "REFUSAL_SECONDS", 0.3)  # 15 s in production
    dora = world.env.create_user("dora")
    for value, word in (("off", "not off"), ("5", "not a higher one")):
        said = reply_text(
            await dora.slash("limits", action="set", name="messages_per_user_minute", value=value)
        )
        assert said == (
            "The operator's messages_per_user_minute of 1 holds in every DM: here you can set "
            f"a lower one, {word}. Nothing changed."
        ), said
    shown = reply_text(await dora.slash("limits"))
    assert "messages_per_user_minute = 1 (operator default)" in shown, shown
    # An `off` stored before (as this version refuses to store it) lifts nothing either.
    actor = Actor(str(dora.id), "dora", is_channel_admin=True)
    ref = ref_of(dora.dm_channel, None)
    await core.store.quotas.set_limit(ref, Scope.CHANNEL, "messages_per_user_minute", None, actor)
    await dora.send_dm("one")
    await dora.send_dm("two")
    assert len(endpoint.requests) == 1
    [refused] = _refusals(world, dora.dm_channel.id)
    assert refused.startswith("Limit reached: messages_per_user_minute"), refused
    assert "only the bot's operator can change it (LIMIT_MESSAGES_PER_USER_MINUTE)" in refused
    assert bot_messages(dora.dm_channel, world.bot_id)[0] == "Hello there!"
    # Lower is theirs to set.
    said = reply_text(
        await dora.slash("limits", action="set", name="messages_per_user_minute", value="0")
    )
    assert said.startswith("messages_per_user_minute set to 0 for this DM."), said
    # A server channel's admins replace the operator's default there, as before.
    said = reply_text(
        await world.admin.slash(
            world.channel, "limits", action="set", name="messages_per_user_minute", value="off"
        )
    )
    assert said == "messages_per_user_minute is off for this channel.", said
    await world.member.send(world.channel, f"<@{world.bot_id}> one")
    await world.member.send(world.channel, f"<@{world.bot_id}> two")
    assert len(endpoint.requests) == 3


async def test_a_dm_limit_equal_to_the_operators_is_said_as_the_operators(
    world: World, endpoint: FakeOpenAI, core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DM may set the operator's own value (it is no higher): the two then tie, and the
    refusal named the DM's, "an admin of this DM can raise it with /limits set …", which
    the DM is refused. The operator's holds as much: said as only theirs to change."""
    monkeypatch.setattr(limits, "REFUSAL_SECONDS", 0.3)  # 15 s in production
    dora = world.env.create_user("dora")
    said = reply_text(
        await dora.slash("limits", action="set", name="messages_per_user_minute", value="1")
    )
    assert said == (
        "messages_per_user_minute set to 1 for this DM. Here the operator default of 1 holds."
    ), said
    await dora.send_dm("one")
    await dora.send_dm("two")
    assert len(endpoint.requests) == 1
    [refused] = _refusals(world, dora.dm_channel.id)
    assert "only the bot's operator can change it (LIMIT_MESSAGES_PER_USER_MINUTE)" in refused, (
        refused
    )
    # What the refusal would have advised is refused.
    said = reply_text(
        await dora.slash("limits", action="set", name="messages_per_user_minute", value="2")
    )
    assert said.endswith("not a higher one. Nothing changed."), said


async def test_limits_in_a_dm_tells_an_operator_admin_the_operators_limit_holds(
    world: World,
) -> None:
    """Someone in ADMIN_IDS is a server admin everywhere, so /limits in their DM offered
    `/limits set <name> <value|off|default>` bare, and `off` is then refused there: it
    says the operator's limit holds in every DM, as it does to anyone else's."""
    user = User(id=OPERATOR_ID, name="opal")
    world.env.backend.users[user.id] = user
    opal = simcord.UserHandle(world.env, user)
    shown = reply_text(await opal.slash("limits"))
    assert shown.endswith(
        "The operator's messages_per_user_minute holds in every DM: here you can set it "
        "lower, not off or higher."
    ), shown
    said = reply_text(
        await opal.slash("limits", action="set", name="messages_per_user_minute", value="off")
    )
    assert said.endswith("not off. Nothing changed."), said


def _refusals(world: World, channel_id: int) -> list[str]:
    """The limit refusals the bot posted in a channel."""
    return [
        str(r.json.get("content"))
        for r in requests(world.env, "POST", f"/channels/{channel_id}/messages")
        if isinstance(r.json, dict) and "Limit reached" in str(r.json.get("content"))
    ]
