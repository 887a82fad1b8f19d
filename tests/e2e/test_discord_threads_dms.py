"""`chatbot run` in threads, a forum's posts and DMs, on the loopback fake Discord (its
THREAD_CREATE / THREAD_UPDATE / THREAD_DELETE, thread and DM channels) as people use them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script

TOKEN = "loopback.bot.token-threads-0123456789"
ZED = (300_000_000_000_000_777, "zed")  # in no server the bot is in


def _posts_in(fake: FakeDiscord, cid: int) -> list[dict[str, Any]]:
    return [m for m in fake.messages.values() if m["channel_id"] == str(cid)]


def _button(message: dict[str, Any], kind: str) -> str:
    ids = [c["custom_id"] for row in message["components"] for c in row["components"]]
    return next(i for i in ids if i.startswith(f"cc:{kind}:"))


async def test_a_thread_keeps_its_own_history_and_follows_its_channel(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN, forum_id=200_000_000_000_000_555)
    async with chatbot_run(tmp_path, fake, Script()) as (bot, model):
        asked = await fake.user_says(f"<@{fake.bot_id}> first in channel")
        await fake.wait_until(lambda: len(_posts_in(fake, fake.channel_id)) == 1, 30)
        await fake.user_says(f"<@{fake.bot_id}> second in channel")
        await fake.wait_until(lambda: len(model.requests) == 2, 30)
        # "Create Thread" on the first question: the thread begins with it and its answer.
        thread = await fake.start_thread("talk", on=asked)
        await fake.user_says(f"<@{fake.bot_id}> in the thread", channel_id=thread)
        await fake.wait_until(lambda: len(model.requests) == 3, 30)
        assert [m["content"] for m in model.requests[-1]["messages"]] == [  # type: ignore[index]
            "first in channel",
            "Hello there!",
            "in the thread",
        ]
        await fake.wait_until(lambda: bool(_posts_in(fake, thread)), 30)
        [answer] = _posts_in(fake, thread)
        await fake.wait_until(lambda: "cc:regen:" in repr(answer["components"]), 30)
        await fake.click(int(answer["id"]), _button(answer, "regen"))
        await fake.wait_until(lambda: len(model.requests) == 4, 30)
        # /reply mode in a thread sets its channel's: a plain message there is answered.
        await fake.slash("reply", "mode", manager=True, channel_id=thread, mode="always")
        await fake.wait_until(lambda: any("always" in t for t in fake.originals.values()), 30)
        await fake.user_says("plain in channel", mention_bot=False)
        await fake.wait_until(lambda: len(model.requests) == 5, 30)
        # An archived thread: its answers cannot change, and say so.
        await fake.wait_until(lambda: "cc:regen:" in repr(answer["components"]), 30)
        await fake.update_thread(thread, archived=True)
        await fake.click(int(answer["id"]), _button(answer, "regen"))
        await fake.wait_until(lambda: "thread is archived" in str(fake.responses), 30)
        # A forum post asked with a mention is answered in the post.
        post = await fake.start_thread("Forum Post", parent=fake.forum_id)
        await fake.user_says(f"<@{fake.bot_id}> forum question", channel_id=post)
        await fake.wait_until(lambda: bool(_posts_in(fake, post)), 30)
        # A thread deleted while the answer streams: the answer stops, nothing is said.
        model.script.chunks, model.script.interval = [f"w{i} " for i in range(40)], 0.2
        other = await fake.start_thread("doomed")
        await fake.user_says(f"<@{fake.bot_id}> long one", channel_id=other)
        await fake.wait_until(lambda: bool(_posts_in(fake, other)), 30)
        await fake.delete_thread(other)
        async with asyncio.timeout(30):  # the model's side: no event of the fake says it
            while not model.cut_off:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    assert len(model.requests) == 7
    assert not fake.dms and "Traceback" not in bot.log


async def test_a_thread_not_in_the_bots_cache_is_a_thread_of_its_channel(tmp_path: Path) -> None:
    """Probe: a thread archived when the bot connected is not among the server's active
    threads it is sent, so discord.py has no thread for a message reopening it, only a
    bare channel id: the bot took that for a channel of its own (none of its channel's
    settings) with no permissions, and told the asker by DM it lacked View Channel in
    `#<thread id>`, answering nothing. It now looks the thread up: answered in the thread,
    with its channel's system prompt and reply mode, and its own history."""
    fake = FakeDiscord(TOKEN)
    old = await fake.start_thread("from last week")  # before the bot connects: not sent
    fake.threads[old]["thread_metadata"]["archived"] = True
    async with chatbot_run(tmp_path, fake, Script()) as (bot, model):
        said = await fake.command_says("system", prompt="You are a pirate.")
        assert said == "System prompt set.", said
        said = await fake.command_says("reply", "mode", mode="always")
        assert "always" in said, said
        await fake.user_says("in the channel", mention_bot=False)
        await fake.wait_until(lambda: len(model.requests) == 1, 30)
        await fake.user_says("back in the old thread", mention_bot=False, channel_id=old)
        await fake.wait_until(lambda: len(model.requests) == 2, 30)
        await fake.wait_until(lambda: bool(_posts_in(fake, old)), 30)
        await fake.user_says("and again", mention_bot=False, channel_id=old)
        await fake.wait_until(lambda: len(model.requests) == 3, 30)
    sent = [[m["content"] for m in r["messages"]] for r in model.requests]  # type: ignore[attr-defined]
    assert sent[1] == ["You are a pirate.", "back in the old thread"], sent
    assert sent[2] == ["You are a pirate.", "back in the old thread", "Hello there!", "and again"]
    assert len(_posts_in(fake, old)) == 2 and not fake.dms, fake.dms
    assert "Traceback" not in bot.log


async def test_dms_answer_every_message_with_the_dms_own_key(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script()) as (bot, model):
        await fake.user_says("hi in a DM", channel_id=fake.dm_id, mention_bot=False)
        await fake.wait_until(lambda: len(model.requests) == 1, 30)
        await fake.slash("key", "set", where="dm", source="custom")
        await fake.wait_until(lambda: any(r.get("type") == 9 for r in fake.responses), 30)
        await fake.submit_modal({"secret:key": "dm-key-ABCDEFGH12345678"}, where="dm")
        await fake.wait_until(lambda: bool(fake.followups), 30)
        assert "for this DM" in fake.followups[-1]["content"]
        await fake.user_says("with my key", channel_id=fake.dm_id, mention_bot=False)
        await fake.wait_until(lambda: len(model.requests) == 2, 30)
        # Someone in no server the bot is in: their own DM, without Bob's key or history.
        await fake.user_says("a stranger", channel_id=fake.dm_id, mention_bot=False, by=ZED)
        await fake.wait_until(lambda: len(model.requests) == 3, 30)
        await asyncio.sleep(0.5)
    # No key, the status check and Bob's DM with his key, the stranger's DM without it.
    assert model.authorizations[-3:] == ["Bearer dm-key-ABCDEFGH12345678"] * 2 + [""]
    assert [m["content"] for m in model.requests[-1]["messages"]] == ["a stranger"]  # type: ignore[index]
    assert "Traceback" not in bot.log


async def test_allowed_users_keeps_others_out_of_dms(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script(), ALLOWED_USERS=str(ZED[0])) as (_, model):
        await fake.user_says("let me in", channel_id=fake.dm_id, mention_bot=False)
        await fake.user_says("listed", channel_id=fake.dm_id, mention_bot=False, by=ZED)
        await fake.wait_until(lambda: len(model.requests) == 1, 30)
        await fake.slash("settings", where="dm")
        await fake.wait_until(lambda: bool(fake.originals), 30)
    assert [m["content"] for m in model.requests[0]["messages"]] == ["listed"]  # type: ignore[index]
    assert "does not serve" in next(iter(fake.originals.values()))


async def test_allowed_servers_keeps_dms_out_and_the_log_says_why(tmp_path: Path) -> None:
    """Probe: with ALLOWED_SERVERS set, a DM from a member of the listed server went
    unanswered with "not allowed to chat there" in the log, which named no list (the
    member may chat in the server) and sent operators hunting through the channel's
    /access rules. A DM is in no server: only ADMIN_IDS chat there, as README says, and
    the log line says that is why."""
    fake = FakeDiscord(TOKEN)
    settings = {"ALLOWED_SERVERS": str(fake.guild_id), "ADMIN_IDS": str(ZED[0])}
    async with chatbot_run(tmp_path, fake, Script(), LOG_LEVEL="DEBUG", **settings) as (bot, model):
        await fake.user_says("hi in a DM", channel_id=fake.dm_id, mention_bot=False)
        await fake.user_says(f"<@{fake.bot_id}> hi in the server")
        await fake.wait_until(lambda: len(model.requests) == 1, 30)
        await fake.user_says("the operator", channel_id=fake.dm_id, mention_bot=False, by=ZED)
        await fake.wait_until(lambda: len(model.requests) == 2, 30)
        said = await fake.command_says("settings", where="dm", manager=False)
        assert "does not serve this place" in said, said
    asked = [r["messages"][-1]["content"] for r in model.requests]  # type: ignore[index]
    assert asked == ["hi in the server", "the operator"], asked
    why = (
        f"ignored {fake.user_id} in discord:-:{fake.dm_id}: not allowed to chat there (a DM "
        "is in no server, and ALLOWED_SERVERS is set: only ADMIN_IDS chat in DMs)"
    )
    assert why in bot.log, [line for line in bot.lines if "ignored" in line]


async def test_a_burst_in_a_thread_not_cached_looks_it_up_once(tmp_path: Path) -> None:
    """Probe: messages reopening a thread discord.py has not cached, before Discord's
    THREAD_UPDATE reached the bot, each come with a bare channel: each looked the thread
    up again while the first lookup was still under way (a burst of 4, 4 calls), and a
    lookup Discord failed was believed for a minute (the thread's next messages were
    taken for a channel of their own: unanswered). One lookup now serves every message
    that waits on it; one that failed serves its waiters too (a mention among them hears
    why by DM), and the next message asks again."""
    fake = FakeDiscord(TOKEN)
    old, failing = await fake.start_thread("from last week"), await fake.start_thread("flaky")
    for thread in (old, failing):
        fake.threads[thread]["thread_metadata"]["archived"] = True
    async with chatbot_run(tmp_path, fake, Script()) as (bot, model):
        said = await fake.command_says("reply", "mode", mode="always")
        assert "always" in said, said

        def lookups(tid: int) -> int:
            return len(fake.bot_calls("GET", f"/channels/{tid}"))

        async def burst(thread: int, fails: int) -> None:
            # Reopened by members' messages that reach the bot before Discord's word that
            # the thread is open again (this fake sends none for them).
            fake.threads[thread]["thread_metadata"]["archived"] = False
            fake.thread_fetches_open.clear()
            fake.fail_thread_fetches = fails
            for i in range(4):
                await fake.user_says(f"burst {i}", mention_bot=i == 3, channel_id=thread)
            await fake.wait_until(lambda: lookups(thread) >= 1, 30)
            await asyncio.sleep(1)  # the rest of the burst reaches the bot meanwhile
            fake.thread_fetches_open.set()

        await burst(old, 0)
        await fake.wait_until(lambda: len(_posts_in(fake, old)) == 4, 30)
        await burst(failing, 1)
        await fake.wait_until(lambda: bool(fake.dms), 30)
        # The failed lookup is not believed for the next message: it asks again.
        await fake.user_says("once more", mention_bot=False, channel_id=failing)
        await fake.wait_until(lambda: len(_posts_in(fake, failing)) == 1, 30)
        await asyncio.sleep(0.5)
    assert (lookups(old), lookups(failing)) == (1, 2)
    assert len(model.requests) == 5, [r["messages"] for r in model.requests]  # type: ignore[index]
    [dm] = fake.dms
    assert "Discord failed when I looked this thread up" in dm["content"], dm
    assert f"could not look up channel {failing}" in bot.log
    assert "Traceback" not in bot.log
