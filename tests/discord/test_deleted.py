"""Messages deleted in Discord leave the bot's history (the real discord.py client on simcord):
a question deleted by its author, an answer deleted by a moderator, many at once; pages
the bot removes itself (a shorter answer replacing a longer one) forget nothing."""

from __future__ import annotations

from typing import Any

import discord
import pytest
import simcord

from bot.types import Role
from tests.discord.conftest import World
from tests.discord.fake_openai import FakeOpenAI, Script
from tests.discord.helpers import ref_of
from tests.discord.test_controls import buttons, the_id

pytestmark = pytest.mark.simcord(settle_timeout=30)


async def history(world: World, core: Any) -> list[tuple[Role, str]]:
    stored = await core.store.history(ref_of(world.channel, world.guild), 20)
    return [(e.role, e.content) for e in stored]


def sent(endpoint: FakeOpenAI) -> list[str]:
    """What the model got in the newest request (system prompt aside)."""
    messages = endpoint.requests[-1]["messages"]
    assert isinstance(messages, list)
    return [str(m["content"]) for m in messages if m["role"] != "system"]


def moderator(world: World) -> simcord.MemberActor:
    """A member who may delete others' messages (Manage Messages)."""
    mods = world.guild.create_role("Mods", permissions=discord.Permissions(manage_messages=True))
    return world.guild.add_member(world.env.create_user("mo", global_name="Mo"), roles=[mods])


def bot_pages(world: World) -> list[discord.Message]:
    return [m for m in world.channel.history() if m.author.id == world.bot_id]


async def test_a_question_its_author_deletes_is_forgotten_with_its_answer(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    private = await world.member.send(world.channel, f"<@{world.bot_id}> my PIN is 4711")
    await world.member.send(world.channel, f"<@{world.bot_id}> what is 2+2?")
    assert len(await history(world, core)) == 4
    await world.member.delete(private)
    assert await history(world, core) == [
        (Role.USER, "what is 2+2?"),
        (Role.ASSISTANT, "Hello there!"),
    ]
    await world.member.send(world.channel, f"<@{world.bot_id}> and then?")
    assert not any("4711" in text for text in sent(endpoint))
    assert sent(endpoint) == ["what is 2+2?", "Hello there!", "and then?"]


async def test_an_answer_a_moderator_deletes_is_forgotten_and_the_question_stays(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    endpoint.script = Script(chunks=["something ", "rude"])
    await world.member.send(world.channel, f"<@{world.bot_id}> say something")
    [answer] = bot_pages(world)
    await moderator(world).delete(answer)
    assert await history(world, core) == [(Role.USER, "say something")]


async def test_a_bulk_delete_forgets_every_turn_it_took(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    first = await world.member.send(world.channel, f"<@{world.bot_id}> one")
    second = await world.member.send(world.channel, f"<@{world.bot_id}> two")
    await world.member.send(world.channel, f"<@{world.bot_id}> three")
    world.env.backend.bulk_delete_messages(world.channel.id, [first.id, second.id])
    await world.env.settle()
    assert await history(world, core) == [(Role.USER, "three"), (Role.ASSISTANT, "Hello there!")]


async def test_pages_the_bot_removes_itself_forget_nothing(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    endpoint.script = Script(chunks=["a" * 1500, "\n\n" + "b" * 1500, "\n\n" + "c" * 1500])
    await world.member.send(world.channel, f"<@{world.bot_id}> a long one")
    pages = bot_pages(world)
    assert len(pages) == 3
    endpoint.script = Script(chunks=["short"])
    await world.member.click(pages[-1], custom_id=the_id(pages[-1], "regen"))
    now = bot_pages(world)
    assert [m.content for m in now] == ["short"]  # two pages removed by the bot
    assert await history(world, core) == [(Role.USER, "a long one"), (Role.ASSISTANT, "short")]
    assert "2/2" in [label for label, _ in buttons(now[-1]).values()]
    # The page left is tied to the new answer too: deleting it forgets both answers.
    await moderator(world).delete(now[0])
    assert await history(world, core) == [(Role.USER, "a long one")]


async def test_an_edited_question_is_what_the_model_reads_next(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    asking = await world.member.send(world.channel, f"<@{world.bot_id}> capital of Austrlia?")
    await world.member.edit(asking, f"<@{world.bot_id}> capital of Australia?")
    assert (await history(world, core))[0] == (Role.USER, "capital of Australia?")
    await world.member.send(world.channel, f"<@{world.bot_id}> and its population?")
    assert sent(endpoint) == ["capital of Australia?", "Hello there!", "and its population?"]


async def test_an_edit_that_writes_a_key_in_is_taken_out(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    key = "sk-proj-" + "q" * 24
    asking = await world.member.send(world.channel, f"<@{world.bot_id}> use my key please")
    await world.member.edit(asking, f"<@{world.bot_id}> use my key {key} please")
    # Deleted by the bot, which forgets the question with it; no key kept anywhere.
    assert all(m.id != asking.id for m in world.channel.history())
    said = [m.content for m in world.channel.history() if m.author.id == world.bot_id]
    held = (  # whose: the message is gone by the time it is said
        f"<@{world.member.user.id}> That edit holds what looks like a key or password, so I "
        "did not send or keep it. "
    )
    assert any(
        text.startswith(held) and "admins store keys with /key set. I deleted your message" in text
        for text in said
    ), said
    assert await history(world, core) == []
    assert key not in repr(endpoint.requests)
