"""What a process that went away left unanswered, said by the Discord front-end as the
next one starts (the records a killed `chatbot run` leaves; its restart is tested on
the real process in tests/e2e/test_discord_run.py)."""

from __future__ import annotations

from typing import Any

import discord
import simcord
from simcord.backend.models.channel import Overwrite

from bot.core import Core
from bot.types import ChannelRef, Platform
from tests.discord.conftest import World

SERVED = "this-bot"


async def _left(core: Core, ref: ChannelRef, posts: list[str]) -> None:
    core.serve(Platform.DISCORD, SERVED)
    for post in posts:
        await core.store.waiting.add(ref, post, SERVED, "a-killed-process")


async def test_without_read_message_history_it_is_said_with_a_link(world: World, core: Any) -> None:
    """Review: the notice was always a reply, which Discord refuses without Read Message
    History; it failed (logged), its record was deleted, and the asker was never told."""
    asked = await world.member.send(world.channel, "a question left waiting")
    no_history = discord.Permissions(read_message_history=True).value
    overwrite = Overwrite(target_id=world.bot_id, type=1, allow=0, deny=no_history)  # type: ignore[arg-type]
    world.env.backend.set_overwrite(world.channel.id, overwrite)
    await world.env.settle()
    ref = ChannelRef(Platform.DISCORD, str(world.channel.id), server_id=str(world.guild.id))
    await _left(core, ref, [str(asked.id)])

    await world.env.bot._tell_unanswered()  # type: ignore[attr-defined]
    await world.env.settle()

    [said] = [m for m in world.channel.history() if m.author.id == world.bot_id]
    link = f"https://discord.com/channels/{world.guild.id}/{world.channel.id}/{asked.id}"
    assert said.content == (
        f"Not answered: the bot stopped before it got to this question. Ask again. ({link})"
    )
    assert await core.unanswered(Platform.DISCORD) == []


async def test_with_read_message_history_it_is_a_reply(world: World, core: Any) -> None:
    asked = await world.member.send(world.channel, "a question left waiting")
    ref = ChannelRef(Platform.DISCORD, str(world.channel.id), server_id=str(world.guild.id))
    await _left(core, ref, [str(asked.id)])

    await world.env.bot._tell_unanswered()  # type: ignore[attr-defined]
    await world.env.settle()

    [said] = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert (
        said.content == "Not answered: the bot stopped before it got to this question. Ask again."
    )
    assert said.reference is not None and said.reference.message_id == asked.id


async def test_in_a_thread_archived_meanwhile_it_is_still_said(world: World, core: Any) -> None:
    """A thread archived while the bot was down is not in discord.py's cache: the notice
    was judged by a partial channel's permissions (none at all), so it was only logged
    ("could not say something in channel …") and its record deleted. Posting there is
    what unarchives it; the reply goes out as it did before the restart notice moved."""
    made = world.env.backend.create_thread(world.channel.id, "talk", world.member.id)
    thread = simcord.ChannelHandle(world.env, world.guild, made)
    await world.env.settle()
    asked = await world.member.send(thread, "a question left waiting")
    world.env.backend.edit_channel(made.id, {}, thread_metadata={"archived": True})
    await world.env.settle()
    assert world.env.bot.get_channel(made.id) is None  # gone from the cache
    ref = ChannelRef(Platform.DISCORD, str(world.channel.id), str(world.guild.id), str(made.id))
    await _left(core, ref, [str(asked.id)])

    await world.env.bot._tell_unanswered()  # type: ignore[attr-defined]
    await world.env.settle()

    [said] = [m for m in thread.history() if m.author.id == world.bot_id]
    assert (
        said.content == "Not answered: the bot stopped before it got to this question. Ask again."
    )
    assert said.reference is not None and said.reference.message_id == asked.id
    assert await core.unanswered(Platform.DISCORD) == []
