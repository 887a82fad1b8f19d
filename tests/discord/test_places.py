"""Where a Discord user meets the bot: its slash commands where the bot itself is not (its
app installed by a user, in a group DM or a server the bot was never added to), on the
loopback fake with the real discord.py client."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from bot.core import Core
from bot.types import ChannelRef, Platform
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import running

TOKEN = "loopback.bot.token-places-0123456789"


def _said(fake: FakeDiscord) -> list[str]:
    said = [text for text in fake.originals.values() if text]
    return said + [str(f.get("content", "")) for f in fake.followups]


async def test_commands_are_registered_for_servers_and_dms_with_the_bot_only(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Registered without contexts, the commands followed the portal's defaults: with
    User Install on (a new application's default) they were offered in group DMs and in
    servers the bot was never added to, where it can never chat."""
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with running(core, fake):
            pass
    finally:
        await fake.stop()
    [put] = [c for c in fake.calls if c.method == "PUT" and c.path.endswith("/commands")]
    assert put.body, put
    for command in put.body:
        assert command["integration_types"] == [0], command["name"]  # the server install
        assert command["contexts"] == [0, 1], command["name"]  # a server, a DM with the bot


@pytest.mark.parametrize("where", ["group_dm", "other_server"])
async def test_a_command_where_the_bot_is_not_says_so_and_changes_nothing(
    core: Core, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """Permissions probe: run through a user's own install of the app (registered before,
    or by another version), `/model` in a group DM was taken, its every member an admin
    of a conversation the bot never sees, and `/key set` asked for a key there."""
    caplog.set_level(logging.INFO)
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.slash("model", manager=True, where=where, id="m-large")
            await fake.wait_until(lambda: len(fake.responses) >= 1, 30)
            await fake.slash("key", "set", manager=True, where=where, source="openai")
            await fake.wait_until(lambda: len(fake.responses) >= 2, 30)
            await fake.slash("settings")  # in the bot's own server, as ever
            await fake.wait_until(lambda: len(fake.responses) >= 3, 30)
    finally:
        await fake.stop()
    assert [r["type"] for r in fake.responses] == [4, 4, 4]  # no form asks for a key
    refusal, again, settings = _said(fake)
    assert refusal == again
    assert "not in" in refusal and "Nothing changed" in refusal, refusal
    assert all(int(r["data"].get("flags", 0)) & 64 for r in fake.responses[:2])  # private
    assert settings.startswith("Source: custom")
    if where == "group_dm":
        there = ChannelRef(Platform.DISCORD, str(fake.group_dm_id), "")
    else:
        there = ChannelRef(Platform.DISCORD, str(fake.other_guild_id + 1), str(fake.other_guild_id))
    assert (await core.store.effective_config(there)).model == "m-small"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize("where", ["group_dm", "other_server", "unopened_dm"])
async def test_the_loopback_discord_takes_no_post_where_the_bot_is_not(where: str) -> None:
    """The fake took any channel id within 97 of its DM's as a DM of the bot's: the group
    DM and the other server's channel among them, so a post the bot made there (where
    Discord refuses it) was taken, and the tests above could not see one."""
    fake = FakeDiscord(TOKEN)
    cid = {
        "group_dm": fake.group_dm_id,
        "other_server": fake.other_guild_id + 1,
        "unopened_dm": fake.dm_id + 5,
    }[where]
    await fake.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"{fake.api_url}/channels/{cid}/messages"
            auth = {"Authorization": f"Bot {TOKEN}"}
            async with session.post(url, json={"content": "hi"}, headers=auth) as answer:
                assert answer.status == 404, await answer.text()
    finally:
        await fake.stop()
    assert fake.messages == {}


async def test_a_button_in_another_text_channel_acts_there(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """The fake's button press in a second text channel carried that channel's id but
    #general's partial channel (discord.py reads `interaction.channel` from it): a test
    of 🔄 there would have been told about #general."""
    fake = FakeDiscord(TOKEN, channels=2)  # channel_ids[1]: a second text channel
    second = fake.channel_ids[1]
    await fake.start()
    try:
        async with running(core, fake):
            endpoint.script.chunks = ["First ", "answer."]
            await fake.user_says(f"<@{fake.bot_id}> hi", channel_id=second)
            await fake.wait_until(
                lambda: any(
                    "cc:regen:" in str(m.get("components")) for m in fake.messages.values()
                ),
                30,
            )
            [answer] = [m for m in fake.messages.values() if "cc:regen:" in str(m["components"])]
            assert answer["channel_id"] == str(second)
            regen = next(
                b["custom_id"]
                for row in answer["components"]
                for b in row["components"]
                if str(b.get("custom_id", "")).startswith("cc:regen:")
            )
            endpoint.script.chunks = ["Another ", "answer."]
            await fake.click(int(answer["id"]), regen)
            await fake.wait_until(lambda: "2/2" in json.dumps(answer.get("components")), 30)
    finally:
        await fake.stop()
    assert answer["content"] == "Another answer."
    assert not [m for m in fake.messages.values() if m["channel_id"] == str(fake.channel_id)]


async def test_a_setting_changed_in_a_thread_is_said_to_be_its_channels(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """README: "A thread uses its channel's configuration". A command typed in a thread
    changed the channel and all its threads, but its replies said "this channel" and
    "(here)" as if the thread alone had changed: each now says the thread's channel."""
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with running(core, fake):
            thread = await fake.start_thread("talk")

            async def said(*names: str, **options: str) -> str:
                iid = await fake.slash(*names, manager=True, channel_id=thread, **options)
                return await fake.reply_to(iid)

            set_model = await said("model", id="m-large")
            back = await said("model", id="default")
            key = await said("key", "clear", source="openai")
            denied = await said("access", action="deny", kind="user", id="123")
            settings = await said("settings")
    finally:
        await fake.stop()
    assert set_model == "Model set to m-large.", set_model
    assert back.startswith("This thread's channel now uses the server's"), back
    assert key == "No openai key was stored for this thread's channel.", key
    assert denied.startswith("Rule added: deny user <@123> (in this thread's channel)"), denied
    assert "deny user <@123> (in this thread's channel)" in settings, settings
    assert "Last change: model (in this thread's channel) by" in settings, settings
    # What it changed is the channel's: its threads and the channel itself follow it.
    channel = ChannelRef(Platform.DISCORD, str(fake.channel_id), str(fake.guild_id))
    rules = await core.store.quotas.rules(channel)
    assert [r.subject for r in rules] == ["123"], rules


async def test_a_thread_names_its_channels_things_without_a_double_possessive(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Probe: `/usage` in a thread answered "This thread's channel's usage" (and so did every
    `this {place}'s …` said there); it names them as "the usage of the channel this thread is
    in"."""
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with running(core, fake):
            thread = await fake.start_thread("talk")
            usage = await fake.reply_to(await fake.slash("usage", manager=True, channel_id=thread))
    finally:
        await fake.stop()
    assert usage.startswith("The usage of the channel this thread is in"), usage
