"""Chat through the real discord.py client: when the bot answers, and how the answer streams."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import pytest
import simcord
from simcord.enums import ChannelType

from bot.conversation.pacing import STALE_NOTE
from bot.frontends.discord import DiscordOptions
from bot.frontends.discord.client import ChatClient
from bot.frontends.discord.sink import ANSWER_FILE, FILE_ATTACHED, MAX_MESSAGES
from bot.types import Actor, ChannelRef, Platform, ReplyMode, Role, Scope, SecretValue
from tests.discord.conftest import World
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import bot_messages, ref_of, requests

pytestmark = pytest.mark.simcord(settle_timeout=30)


def asked(endpoint: FakeOpenAI) -> list[str]:
    """The last user message of every request the endpoint got."""
    return [str(r["messages"][-1]["content"]) for r in endpoint.requests]  # type: ignore[index]


async def test_a_mention_gets_a_reply_without_the_mention(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    asking = await world.member.send(world.channel, f"<@{world.bot_id}> what is up?")
    answer = world.channel.last_message
    assert answer is not None and answer.author.id == world.bot_id
    assert answer.content == "Hello there!"
    assert answer.reference is not None and answer.reference.message_id == asking.id
    assert asked(endpoint) == ["what is up?"]
    history = await core.store.history(ref_of(world.channel, world.guild), 10)
    assert [(h.role, h.content, h.author) for h in history] == [
        (Role.USER, "what is up?", "Bob"),
        (Role.ASSISTANT, "Hello there!", None),
    ]


async def test_without_a_mention_the_bot_stays_quiet(world: World, endpoint: FakeOpenAI) -> None:
    await world.member.send(world.channel, "just talking among ourselves")
    await world.member.send(world.channel, f"<@{world.member.id}> not the bot")
    assert bot_messages(world.channel, world.bot_id) == []
    assert endpoint.requests == []


async def test_always_channels_answer_every_message(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    await world.admin.slash(world.channel, "reply mode", mode="always")
    await world.member.send(world.channel, "anyone there?")
    assert bot_messages(world.channel, world.bot_id) == ["Hello there!"]


async def test_a_reply_to_the_bot_is_answered(world: World, endpoint: FakeOpenAI) -> None:
    await world.member.send(world.channel, f"<@{world.bot_id}> first")
    answer = world.channel.last_message
    assert answer is not None
    await world.admin.send(world.channel, "and a follow-up", reply_to=answer)
    # Two people in the conversation now: the core names who said what.
    assert asked(endpoint) == ["first", "Ada: and a follow-up"]
    # A reply to someone else's message is not addressed to the bot.
    first = world.channel.history()[0]
    await world.admin.send(world.channel, "me too", reply_to=first)
    assert len(endpoint.requests) == 2


async def test_direct_messages_are_always_answered(
    simcord_env: simcord.Env, endpoint: FakeOpenAI
) -> None:
    user = simcord_env.create_user("dora")
    await user.send_dm("hi in private")
    assert simcord_env.bot.user is not None
    assert bot_messages(user.dm_channel, simcord_env.bot.user.id) == ["Hello there!"]


async def test_bots_are_ignored_even_when_they_mention(world: World, endpoint: FakeOpenAI) -> None:
    other = world.guild.add_member(world.env.create_user("otherbot", bot=True))
    await other.send(world.channel, f"<@{world.bot_id}> hello fellow bot")
    assert endpoint.requests == []
    # Its own answers never start another turn either.
    await world.member.send(world.channel, f"<@{world.bot_id}> once")
    assert len(endpoint.requests) == 1


def _thread(world: World, owner_id: int) -> simcord.ChannelHandle:
    thread = world.env.backend.create_thread(world.channel.id, "talk", owner_id)
    return simcord.ChannelHandle(world.env, world.guild, thread)


async def test_threads_the_bot_started_keep_their_own_history(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    thread = _thread(world, world.bot_id)
    await world.env.settle()
    await world.member.send(thread, "no mention needed here")
    assert bot_messages(thread, world.bot_id) == ["Hello there!"]
    thread_ref = ChannelRef(
        Platform.DISCORD, str(world.channel.id), str(world.guild.id), str(thread.id)
    )
    assert len(await core.store.history(thread_ref, 10)) == 2
    assert await core.store.history(ref_of(world.channel, world.guild), 10) == []


async def test_a_thread_started_on_an_answer_is_spoken_to_the_bot(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    """A question without a mention in a thread made with "Create Thread" on the bot's
    answer: it was ignored (the member owns the thread, and the bot had not talked in it),
    and with one the model read the question alone. A thread started on a member's
    message is not the bot's."""
    await world.member.send(world.channel, f"<@{world.bot_id}> tell me about cats")
    answer = world.channel.last_message
    assert answer is not None and answer.author.id == world.bot_id
    await world.env.settle()  # the answer's pages are tied to it as it ends
    made = world.env.backend.create_thread(
        world.channel.id, "cats", world.member.id, message_id=answer.id
    )
    thread = simcord.ChannelHandle(world.env, world.guild, made)
    await world.member.send(thread, "and kittens?")
    assert bot_messages(thread, world.bot_id) == ["Hello there!"]
    # It starts from the turn it grew from (the model got "and kittens?" alone).
    sent = [(m["role"], m["content"]) for m in endpoint.requests[-1]["messages"]]  # type: ignore[index]
    assert sent[-3:] == [
        ("user", "tell me about cats"),
        ("assistant", "Hello there!"),
        ("user", "and kittens?"),
    ], sent
    await world.member.send(world.channel, "a note of mine")
    mine = world.channel.last_message
    assert mine is not None
    other = world.env.backend.create_thread(
        world.channel.id, "note", world.member.id, message_id=mine.id
    )
    chatter = simcord.ChannelHandle(world.env, world.guild, other)
    asked = len(endpoint.requests)
    await world.member.send(chatter, "just us here")
    await world.member.send(chatter, "still just us")
    assert len(endpoint.requests) == asked and bot_messages(chatter, world.bot_id) == []


async def test_member_threads_follow_the_parent_channel_configuration(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    thread = _thread(world, world.member.id)
    await world.env.settle()
    await world.member.send(thread, "quiet in mention mode")
    assert endpoint.requests == []
    await core.store.update_config(
        ref_of(world.channel, world.guild),
        Scope.CHANNEL,
        Actor(str(world.admin.id), "Ada", is_channel_admin=True),
        {"reply_mode": ReplyMode.ALWAYS.value},
        action="test",
    )
    await world.member.send(thread, "now the parent says always")
    assert bot_messages(thread, world.bot_id) == ["Hello there!"]


async def test_a_thread_the_bot_talks_in_needs_no_mention_after_the_first(
    world: World, endpoint: FakeOpenAI
) -> None:
    thread = _thread(world, world.member.id)
    other = _thread(world, world.member.id)
    await world.env.settle()
    await world.member.send(thread, f"<@{world.bot_id}> join us")
    await world.member.send(thread, "and this, without a mention")
    assert asked(endpoint) == ["join us", "and this, without a mention"]
    await world.member.send(other, "a thread it never spoke in")
    assert len(endpoint.requests) == 2


async def test_a_long_stream_posts_once_then_edits_at_a_steady_pace(
    world: World, endpoint: FakeOpenAI
) -> None:
    endpoint.script.chunks = [f"w{i} " for i in range(100)]
    endpoint.script.interval = 0.02  # 100 chunks over about 2 s
    start = len(world.env.http_requests)
    await world.member.send(world.channel, f"<@{world.bot_id}> count for me")
    made = world.env.http_requests[start:]
    path = f"/channels/{world.channel.id}/messages"
    posts = [r for r in made if r.method == "POST" and r.path == path]
    edits = [r for r in made if r.method == "PATCH" and r.path.startswith(path + "/")]
    assert len(posts) == 1
    # About one edit per second over 2 s plus the final one; never one per chunk.
    assert 1 <= len(edits) <= 5
    final = bot_messages(world.channel, world.bot_id)
    assert final == [endpoint.script.answer.strip()]


async def test_the_final_edit_brings_the_whole_answer_with_its_buttons(
    world: World, endpoint: FakeOpenAI
) -> None:
    """A stream that paused before its end had its whole text shown by a paced edit; the
    end then changed nothing of the text, and the buttons went out in an edit of their
    own, without it (the e2e run saw it when the machine was busy). The final edit
    always carries the whole answer: one that lost an earlier edit still shows it all."""
    endpoint.script.chunks = ["Howdy", " there!", ""]
    endpoint.script.interval = 1.5  # the paced edit (1 s apart) shows it all before the end
    start = len(world.env.http_requests)
    await world.member.send(world.channel, f"<@{world.bot_id}> hi")
    path = f"/channels/{world.channel.id}/messages/"
    edits = [
        r.json
        for r in world.env.http_requests[start:]
        if r.method == "PATCH" and r.path.startswith(path) and isinstance(r.json, dict)
    ]
    assert len(edits) >= 2, edits  # a paced edit, then the final one
    assert all("content" in e for e in edits), edits
    assert edits[-1]["content"] == "Howdy there!" and "cc:regen:" in repr(edits[-1])
    assert bot_messages(world.channel, world.bot_id) == ["Howdy there!"]


async def test_answers_past_2000_characters_continue_in_new_messages(
    world: World, endpoint: FakeOpenAI
) -> None:
    endpoint.script.chunks = [f"sentence number {i} goes here. " for i in range(150)]
    await world.member.send(world.channel, f"<@{world.bot_id}> talk a lot")
    pages = bot_messages(world.channel, world.bot_id)
    assert len(pages) >= 3 and all(len(p) <= 2000 for p in pages)
    assert " ".join(pages).split() == endpoint.script.answer.split()


async def test_a_fault_mid_stream_keeps_the_text_and_adds_a_short_error_line(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    endpoint.script.fail_after = 2
    await world.member.send(world.channel, f"<@{world.bot_id}> try")
    [shown] = bot_messages(world.channel, world.bot_id)
    partial, _, error = shown.partition("\n\n")
    assert partial == "Hello there"
    assert error.startswith("⚠️") and "overloaded" in error and "Traceback" not in error
    history = await core.store.history(ref_of(world.channel, world.guild), 10)
    assert history[-1].content == "Hello there" and history[-1].error


async def test_forbidden_on_send_is_said_once_and_the_bot_keeps_going(
    world: World, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    env = world.env
    path = f"/channels/{world.channel.id}/messages"
    env.inject_error("POST", path, status=403, code=50013, message="Missing Permissions", times=2)
    await world.member.send(world.channel, f"<@{world.bot_id}> hello?")
    await world.member.send(world.channel, f"<@{world.bot_id}> hello??")
    dms = world.member.user.dm_channel.history()
    assert len(dms) == 1 and "Send Messages" in dms[0].content
    warnings = [r for r in caplog.records if "cannot post in channel" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    # The turn ended as a turn, not as an UnboundLocalError in the sink.
    assert not [
        r for r in caplog.records if "turn in" in r.getMessage() and "failed" in r.getMessage()
    ]
    assert bot_messages(world.channel, world.bot_id) == []
    # The fault is gone: the bot answers again in the same channel.
    await world.member.send(world.channel, f"<@{world.bot_id}> now?")
    assert bot_messages(world.channel, world.bot_id) == ["Hello there!"]


@pytest.mark.parametrize(
    ("code", "message", "said"),
    [
        (50001, "Missing Access", "missing the View Channel permission"),
        (50083, "Thread is archived", "the thread is archived"),
    ],
)
async def test_an_edit_refused_mid_answer_says_why_once(
    world: World, endpoint: FakeOpenAI, code: int, message: str, said: str
) -> None:
    endpoint.script.chunks = [f"w{i} " for i in range(60)]
    endpoint.script.interval = 0.02  # first text posted, then edits over about a second
    path = f"/channels/{world.channel.id}/messages/*"
    world.env.inject_error("PATCH", path, status=403, code=code, message=message, times=None)
    await world.member.send(world.channel, f"<@{world.bot_id}> count for me")
    dms = world.member.user.dm_channel.history()
    assert len(dms) == 1 and said in dms[0].content
    assert "Send Messages" not in dms[0].content
    # Blocked: the rest of the answer is not tried edit after edit.
    edits = [
        r
        for r in world.env.http_requests
        if r.method == "PATCH" and r.path.startswith(f"/channels/{world.channel.id}/messages/")
    ]
    assert len(edits) == 1


async def test_an_edit_refused_in_a_private_thread_says_to_add_the_bot_back(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Taken out of a private thread, the bot's edits there are refused with Missing
    Access: the DM said it lacked View Channel, which it has; the thread lets in only
    its members."""
    endpoint.script.chunks = [f"w{i} " for i in range(60)]
    endpoint.script.interval = 0.02
    made = world.env.backend.create_thread(
        world.channel.id, "secret plans", world.member.id, type=ChannelType.PRIVATE_THREAD
    )
    thread = simcord.ChannelHandle(world.env, world.guild, made)
    path = f"/channels/{made.id}/messages/*"
    world.env.inject_error("PATCH", path, status=403, code=50001, message="Missing Access")
    await world.member.send(thread, f"<@{world.bot_id}> count for me")
    dms = world.member.user.dm_channel.history()
    assert len(dms) == 1, [d.content for d in dms]
    said = dms[0].content
    assert "no longer a member of that private thread" in said and "mention me in it" in said
    assert "View Channel" not in said, said


async def test_an_answer_whose_edits_are_refused_goes_out_whole_in_a_new_message(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Discord refused every edit (a 429 that never ended, say): people were left with
    the answer's first words and nothing to say so."""
    endpoint.script.chunks = [f"w{i} " for i in range(30)]
    endpoint.script.interval = 0.02
    path = f"/channels/{world.channel.id}/messages/*"
    world.env.inject_error("PATCH", path, status=400, code=50035, times=None)
    await world.member.send(world.channel, f"<@{world.bot_id}> count for me")
    first, *rest = bot_messages(world.channel, world.bot_id)
    assert first.startswith("w0") and "w29" not in first
    assert rest == [f"⚠️ {STALE_NOTE}\n\n{endpoint.script.answer.strip()}"], rest


async def test_a_long_answer_whose_edits_are_refused_keeps_to_its_messages(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Every edit refused (50035, say) while an answer too long for MAX_MESSAGES streamed:
    its messages as first posted, then the whole answer sent again from the first of
    them, took ten messages, two saying a file was attached that never was. Now the
    answer sent again takes the messages left, its last carrying the file (posted with
    it: attaching is an edit, refused too)."""
    endpoint.script.chunks = [f"Line {i}: on and on it goes, and on.\n" for i in range(300)]
    endpoint.script.interval = 0.02
    path = f"/channels/{world.channel.id}/messages/*"
    world.env.inject_error("PATCH", path, status=400, code=50035, times=None)
    await world.member.send(world.channel, f"<@{world.bot_id}> count for me")
    shown = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert len(shown) == MAX_MESSAGES, [m.content[:40] for m in shown]
    again = next(i for i, m in enumerate(shown) if m.content.startswith("⚠️"))
    stuck, last = shown[:again], shown[-1]
    assert 0 < again < MAX_MESSAGES and stuck[0].content.startswith("Line 0:")
    assert not any(FILE_ATTACHED in m.content or m.attachments for m in shown[:-1])
    # Sent again from the first stuck message, as far as the messages left go.
    assert shown[again].content.startswith(f"⚠️ {STALE_NOTE}\n\nLine 0:")
    assert last.content.endswith(f"\n\n{FILE_ATTACHED}")
    [file] = last.attachments
    assert file.filename == ANSWER_FILE
    assert world.env.backend.cdn.get(file.url) == endpoint.script.answer.encode()


async def test_a_channel_the_bot_may_not_post_in_costs_no_model_call(
    world: World, endpoint: FakeOpenAI
) -> None:
    me = world.guild.me
    assert me is not None
    locked = world.guild.create_text_channel(
        "locked", overwrites={me: discord.PermissionOverwrite(send_messages=False)}
    )
    await world.env.settle()
    await world.member.send(locked, f"<@{world.bot_id}> hi")
    await world.member.send(locked, f"<@{world.bot_id}> hi again")
    assert endpoint.requests == []
    dms = world.member.user.dm_channel.history()
    assert len(dms) == 1 and "Send Messages" in dms[0].content
    assert requests(world.env, "POST", f"/channels/{locked.id}/messages") == []


async def test_without_read_history_the_answer_is_posted_plainly(
    world: World, endpoint: FakeOpenAI
) -> None:
    me = world.guild.me
    assert me is not None
    room = world.guild.create_text_channel(
        "no-history", overwrites={me: discord.PermissionOverwrite(read_message_history=False)}
    )
    await world.env.settle()
    await world.member.send(room, f"<@{world.bot_id}> hi")
    answer = room.last_message
    assert answer is not None and answer.content == "Hello there!" and answer.reference is None


async def test_without_the_content_intent_only_mentions_are_read(
    core: Any, endpoint: FakeOpenAI
) -> None:
    options = DiscordOptions(SecretValue("t"), shard_count=1, message_content=False)
    bot = ChatClient(core, options)
    async with simcord.run(bot, settle_timeout=30) as env:
        guild = env.create_guild()
        channel = guild.create_text_channel("general")
        bob = guild.add_member(env.create_user("bob"))
        await core.store.update_config(
            ref_of(channel, guild),
            Scope.CHANNEL,
            Actor("1", "Ada", is_channel_admin=True),
            {"reply_mode": ReplyMode.ALWAYS.value},
            action="test",
        )
        await bob.send(channel, "unreadable without the intent")
        assert endpoint.requests == []
        assert bot.user is not None
        await bob.send(channel, f"<@{bot.user.id}> but this one arrives")
        assert asked(endpoint) == ["but this one arrives"]


async def test_commands_in_a_thread_configure_its_parent_channel(world: World, core: Any) -> None:
    thread = _thread(world, world.member.id)
    await world.env.settle()
    result = await world.admin.slash(thread, "model", id="m-large")
    assert result.response is not None and "Model set to m-large" in result.response.content
    assert (await core.store.effective_config(ref_of(world.channel, world.guild))).model == (
        "m-large"
    )


async def test_a_rate_limited_edit_is_retried_not_dropped(
    world: World, endpoint: FakeOpenAI
) -> None:
    endpoint.script.chunks = [f"w{i} " for i in range(30)]
    endpoint.script.interval = 0.05  # 1.5 s: at least one paced edit before the final one
    world.env.inject_error(
        "PATCH", f"/channels/{world.channel.id}/messages/*", status=429, message="Slow down"
    )
    await world.member.send(world.channel, f"<@{world.bot_id}> go")
    assert bot_messages(world.channel, world.bot_id) == [endpoint.script.answer.strip()]
    edits = requests(world.env, "PATCH", f"/channels/{world.channel.id}/messages/")
    assert len(edits) >= 2  # the refused one, then the retry that went through


async def test_a_message_holding_a_key_is_refused_and_deleted(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    """Not sent, not kept, and not left in the channel where the bot may delete it."""
    key = "sk-proj-" + "Zq8" * 8
    await world.member.send(world.channel, f"<@{world.bot_id}> here is my key {key} use it")
    [said] = bot_messages(world.channel, world.bot_id)
    assert "looks like a key or password" in said and key not in said
    deletes = requests(world.env, "DELETE", f"/channels/{world.channel.id}/messages/")
    assert len(deletes) == 1, deletes
    assert all(key not in m.content for m in world.channel.history())
    assert endpoint.requests == []
    assert await core.store.history(ref_of(world.channel, world.guild), 10) == []


async def test_a_key_the_bot_may_not_delete_is_left_to_its_author_with_a_word(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Permissions probe: without Manage Messages the delete was refused quietly; the
    key stayed in the channel, and nobody was asked to delete it."""
    me = world.guild.me
    assert me is not None
    room = world.guild.create_text_channel(
        "no-manage", overwrites={me: discord.PermissionOverwrite(manage_messages=False)}
    )
    await world.env.settle()
    key = "sk-proj-" + "Zq8" * 8
    await world.member.send(room, f"<@{world.bot_id}> here is my key {key} use it")
    said = bot_messages(room, world.bot_id)
    assert len(said) == 2 and "looks like a key or password" in said[0], said
    assert said[1].startswith("I could not delete your message (I need the Manage Messages")
    assert all(key not in text for text in said)
    assert endpoint.requests == []


async def test_a_command_typed_into_a_mention_is_not_chat(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    """Discord takes commands as slash commands only. `@bot ／key set custom <key>` was
    chat: a key no pattern knows went to the model and into the history in plain text."""
    secret = "tabby-9f8e7d6c5b4a3210"
    await world.admin.send(world.channel, f"<@{world.bot_id}> \uff0fkey set custom {secret}")
    [said] = bot_messages(world.channel, world.bot_id)
    assert "slash commands: type `/key set`" in said and "asked for privately" in said
    assert "I deleted your message" in said or "Delete your message" in said
    assert secret not in said
    await world.admin.send(world.channel, f"<@{world.bot_id}> /model gpt-4o")
    hint = bot_messages(world.channel, world.bot_id)[-1]
    assert "type `/model`" in hint and "privately" not in hint
    assert endpoint.requests == []
    assert await core.store.history(ref_of(world.channel, world.guild), 10) == []
    # A slash that names no command is chat as ever.
    await world.member.send(world.channel, f"<@{world.bot_id}> /shrug what now?")
    assert asked(endpoint) == ["/shrug what now?"]


async def test_a_command_typed_as_on_matrix_is_not_chat(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    """The README's Matrix form pasted into a mention (`!key set custom <key>`, `!model x`),
    as the console now refuses it: it was chat, the key (no provider's shape) sent to the
    model and kept in the history in plain text."""
    secret = "tabby-1a2b3c4d5e6f7788"
    await world.admin.send(world.channel, f"<@{world.bot_id}> !key set custom {secret}")
    [said] = bot_messages(world.channel, world.bot_id)
    assert "slash commands: type `/key set`" in said and "asked for privately" in said
    assert "I deleted your message" in said, said
    assert all(secret not in m.content for m in world.channel.history())
    await world.admin.send(world.channel, f"<@{world.bot_id}> !model gpt-4o")
    hint = bot_messages(world.channel, world.bot_id)[-1]
    assert "type `/model`" in hint and "privately" not in hint
    assert endpoint.requests == []
    assert await core.store.history(ref_of(world.channel, world.guild), 10) == []
    # A `!` that names no command is chat as ever.
    await world.member.send(world.channel, f"<@{world.bot_id}> !wow what now?")
    assert asked(endpoint) == ["!wow what now?"]
    # Nor one a typo away from a command's name (`/hey` is read as `/key`, `!hey` is not):
    # the message was taken for a key command and deleted.
    await world.member.send(world.channel, f"<@{world.bot_id}> !hey there, !see this")
    assert asked(endpoint) == ["!wow what now?", "!hey there, !see this"]


async def test_a_command_a_member_may_not_run_says_so_not_where_to_find_it(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    """Discord hides the admins' commands from everyone else (Manage Server by default):
    `@bot /model x` from a member was told to "pick it from the menu", where it is not."""
    await world.member.send(world.channel, f"<@{world.bot_id}> /model gpt-4o")
    [said] = bot_messages(world.channel, world.bot_id)
    assert said.startswith("Only admins of this channel can use /model ("), said
    assert "menu" not in said
    secret = "tabby-5e6f7a8b9c0d1e2f"
    await world.member.send(world.channel, f"<@{world.bot_id}> /key set custom {secret}")
    said = bot_messages(world.channel, world.bot_id)[-1]
    assert said.startswith("Only admins of this channel can use /key set ("), said
    assert "asked for privately" not in said and "I deleted your message" in said
    assert all(secret not in m.content for m in world.channel.history())
    # A command open to everyone: where it is.
    await world.member.send(world.channel, f"<@{world.bot_id}> /settings")
    said = bot_messages(world.channel, world.bot_id)[-1]
    assert "type `/settings` and pick it from the menu" in said
    assert "applications.commands" in said  # what to do when it is not there
    assert endpoint.requests == []
    assert await core.store.history(ref_of(world.channel, world.guild), 10) == []


async def test_a_key_command_typed_without_a_mention_is_taken_out_of_the_channel(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    """`/key set custom <key>` sent as a message without mentioning the bot (its slash
    command was not in the menu) stayed in the channel for everyone to read, and nobody
    said a word: the admin believed the key stored. Other messages not for the bot stay
    unanswered, a command without a key too."""
    secret = "tabby-0f1e2d3c4b5a6978"
    await world.admin.send(world.channel, f"/key set custom {secret}")
    [said] = bot_messages(world.channel, world.bot_id)
    assert "slash commands: type `/key set`" in said and "I deleted your message" in said
    assert all(secret not in m.content for m in world.channel.history())
    await world.admin.send(world.channel, "/proxy password tabby-77aa88bb99cc00dd")
    said = bot_messages(world.channel, world.bot_id)[-1]
    assert "type `/proxy password`" in said and "I deleted your message" in said
    await world.member.send(world.channel, "/model gpt-4o")
    await world.member.send(world.channel, "just talking")
    assert len(bot_messages(world.channel, world.bot_id)) == 2
    assert endpoint.requests == []
    ref = ref_of(world.channel, world.guild)
    assert await core.store.resolve_secret(ref, "custom_api_key") is None


async def test_a_slash_and_dashes_alone_is_chat_not_a_crash(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    """`/-_-` (a face), `/_` or `/ -` names no command: the message handler failed on it
    (IndexError) and the bot said nothing; an edit to one was not taken either."""
    await world.admin.slash(world.channel, "reply mode", mode="always")
    await world.member.send(world.channel, "/-_-")
    await world.member.send(world.channel, f"<@{world.bot_id}> /_")
    assert asked(endpoint) == ["/-_-", "/_"]
    assert bot_messages(world.channel, world.bot_id) == ["Hello there!"] * 2
    question = world.channel.history()[0]
    await world.member.edit(question, "/ -")
    await world.env.settle()
    history = await core.store.history(ref_of(world.channel, world.guild), 10)
    assert history[0].content == "/ -"


async def test_send_taken_mid_answer_says_so_on_the_last_page_shown(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    """Send Messages taken while a long answer's second page was due: the first page
    ended mid-answer with its buttons and no word of the rest (editing its own message
    needs no Send Messages, but the bot stopped editing once a post was refused)."""
    from simcord.backend.models.channel import Overwrite

    from bot.conversation.pacing import MISSING_NOTE
    from tests.discord.fake_openai import Script

    endpoint.script = Script(chunks=[f"word{i} " * 30 for i in range(20)], interval=0.2)
    backend = world.env.backend
    deny = discord.Permissions(send_messages=True).value

    class TakenAfterTheRequest(list[Any]):  # Send Messages goes 0.6 s into the answer
        def append(self, request: Any) -> None:
            super().append(request)

            async def later() -> None:
                await asyncio.sleep(0.6)
                overwrite = Overwrite(target_id=world.bot_id, type=1, allow=0, deny=deny)  # type: ignore[arg-type]
                backend.set_overwrite(world.channel.id, overwrite)

            asyncio.get_running_loop().create_task(later())

    endpoint.requests = TakenAfterTheRequest()
    backend.create_message(world.channel.id, world.member.id, f"<@{world.bot_id}> long one")
    await world.env.settle()
    [page] = bot_messages(world.channel, world.bot_id)
    assert page.endswith(MISSING_NOTE) and len(page) <= 2000, page[-200:]
    stored = (await core.store.history(ref_of(world.channel, world.guild), 5))[-1]
    assert stored.content.strip().endswith("word19")  # kept whole, as the note says


@pytest.mark.parametrize("kind", ["thread", "forum post"])
async def test_a_thread_the_bot_may_not_post_in_names_the_channel_to_change(
    world: World, endpoint: FakeOpenAI, kind: str
) -> None:
    """Permissions probe: Send Messages in Threads denied on a channel, a member's thread
    (or forum post) in it mentions the bot. The DM said "I can't answer in #plans … grants
    it in the channel's permissions": a thread has no permissions of its own, and which
    channel it is in was not said."""
    from simcord.backend.models.channel import Overwrite

    guild = world.guild
    parent = guild.create_forum_channel("ideas") if kind == "forum post" else world.channel
    deny = discord.Permissions(send_messages_in_threads=True).value
    overwrite = Overwrite(target_id=world.bot_id, type=1, allow=0, deny=deny)  # type: ignore[arg-type]
    world.env.backend.set_overwrite(parent.id, overwrite)
    made = world.env.backend.create_thread(parent.id, "plans", world.member.id)
    thread = simcord.ChannelHandle(world.env, guild, made)
    await world.env.settle()
    await world.member.send(thread, f"<@{world.bot_id}> hi")
    assert bot_messages(thread, world.bot_id) == [] and endpoint.requests == []
    [dm] = [m.content for m in world.member.user.dm_channel.history()]
    assert dm == (
        f"I can't answer in #plans (a thread in #{parent.name}) on {guild.name}: I'm missing "
        "the Send Messages in Threads permission there. A server admin grants it in the "
        "permissions of the thread's channel."
    )
    # Another thread (post) there: the same fix, not said again.
    other = world.env.backend.create_thread(parent.id, "more plans", world.member.id)
    await world.env.settle()
    await world.member.send(simcord.ChannelHandle(world.env, guild, other), f"<@{world.bot_id}> hi")
    assert len(world.member.user.dm_channel.history()) == 1
