"""Questions that carry files (their own, or those of the message they reply to) edited
in Discord (the real discord.py client on simcord)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.types import Role
from tests.discord.conftest import World
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import ref_of

pytestmark = pytest.mark.simcord(settle_timeout=30)


async def questions(world: World, core: Any) -> list[str]:
    stored = await core.store.history(ref_of(world.channel, world.guild), 20)
    return [e.content for e in stored if e.role is Role.USER]


def sent(endpoint: FakeOpenAI) -> list[str]:
    """What the model got in the newest request (system prompt aside)."""
    messages = endpoint.requests[-1]["messages"]
    assert isinstance(messages, list)
    return [str(m["content"]) for m in messages if m["role"] != "system"]


async def test_an_edited_question_that_carried_a_file_keeps_the_files_text(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    """A reply to someone else's file ("@bot what does this say?"), then edited, lost the
    file's text: the model read the edit alone from then on. It keeps its question as it
    was, as one with a file of its own does."""
    notes = await world.admin.send(world.channel, "notes", attachments=[("notes.txt", b"42")])
    replying = await world.member.send(
        world.channel, f"<@{world.bot_id}> what does this say?", reply_to=notes
    )
    attaching = await world.member.send(
        world.channel, f"<@{world.bot_id}> and this?", attachments=[("todo.txt", b"milk")]
    )
    asked = await questions(world, core)
    assert asked == [
        "what does this say?\nnotes.txt\n```\n42\n```",
        "and this?\ntodo.txt\n```\nmilk\n```",
    ]
    await world.member.edit(replying, f"<@{world.bot_id}> what does this file say?")
    await world.member.edit(attaching, f"<@{world.bot_id}> and that?")
    assert await questions(world, core) == asked
    await world.member.send(world.channel, f"<@{world.bot_id}> thanks")
    assert sent(endpoint) == [asked[0], "Hello there!", asked[1], "Hello there!", "thanks"]
