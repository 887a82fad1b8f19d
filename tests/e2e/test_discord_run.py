"""`chatbot run` as its own process against a loopback Discord and a real model server.

Proves the real path: settings from the environment, migrations, login, command
sync, gateway, a streamed answer (first POST, then edits), and a clean SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from bot.store import SecretBox, Store
from bot.types import ChannelConfig, ChannelRef, Platform, Role, Source
from tests.bot_process import BotProcess, bot_env, chatbot_run, keygen
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script, fake_openai
from tests.loopback import serving
from tests.peers.llamacpp import LlamaCppPeer

TOKEN = "loopback.bot.token-0123456789"
# Not shaped like a provider key, so only the front-end's care keeps it out of the logs.
KEY = "custom-key-Q7w8E9r0T1y2U3i4"


async def _asked_and_streaming(fake: FakeDiscord) -> None:
    """A mention asks for a long answer; back once its first text is in the channel."""
    await fake.user_says(f"<@{fake.bot_id}> count for me")
    path = f"/channels/{fake.channel_id}/messages"
    await fake.wait_until(lambda: bool(fake.bot_calls("POST", path)), 60)


def _finished_answers(db: Path) -> list[str]:
    """Answers the bot process has finished writing (read straight from SQLite: no cache)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        query = "SELECT content FROM messages WHERE role = 'assistant' AND state != 'streaming'"
        return [row[0] for row in conn.execute(query)]


async def _answer_stored(db: Path, seconds: float) -> str:
    """The bot stores how an answer ended right before its final edit; wait for that."""
    async with asyncio.timeout(seconds):
        # Another process writes it: nothing to wait on but the database itself.
        while not _finished_answers(db):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    return _finished_answers(db)[0]


@pytest.mark.llamacpp
async def test_chatbot_run_answers_a_mention_by_streaming_and_stops_on_sigterm(
    tmp_path: Path, llamacpp_peer: LlamaCppPeer
) -> None:
    fake = FakeDiscord(TOKEN, rate_limit_edits=1)  # discord.py must wait, not drop the edit
    await fake.start()
    keys = await keygen()
    env = bot_env(
        DISCORD_TOKEN=TOKEN,
        DISCORD_API_URL=fake.api_url,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        DATA_DIR=str(tmp_path / "data"),
        BOT_SECRET_KEYS=keys,
        ALLOW_PRIVATE_ENDPOINTS="true",
        ADMIN_IDS=str(fake.user_id),
        DEFAULT_SOURCE="custom",
        DEFAULT_PROXY_URL=llamacpp_peer.url_v1,
        DEFAULT_MODEL=llamacpp_peer.model,
        DEFAULT_SYSTEM_PROMPT="Answer in one short sentence.",
        LOG_LEVEL="DEBUG",  # discord.py then logs every gateway event, modal submissions too
    )
    bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
    try:
        await bot.wait_ready()
        assert fake.bot_calls("PUT", f"/applications/{fake.app_id}/commands"), "commands synced"
        asked = await fake.user_says(f"<@{fake.bot_id}> Say hello to me.")
        path = f"/channels/{fake.channel_id}/messages"
        await fake.wait_until(lambda: bool(fake.bot_calls("POST", path)), 60)
        answer = await _answer_stored(tmp_path / "data" / "chatbot.db", 120)
        await fake.wait_until(
            lambda: any(
                m["content"].strip() == answer.strip() and "cc:regen:" in repr(m["components"])
                for m in fake.messages.values()
            ),
            60,
        )
        chat_calls = list(fake.calls)
        # /key set: the key travels only inside the modal submission.
        await fake.slash("key", "set", source="custom")
        await fake.wait_until(lambda: any(r.get("type") == 9 for r in fake.responses), 30)
        await fake.submit_modal({"secret:key": KEY})
        await fake.wait_until(lambda: bool(fake.followups), 30)
        code = await bot.stop()
    finally:
        await bot.close()
        await fake.stop()
    log = bot.log
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and TOKEN not in log
    assert "WebSocket Event" in log  # DEBUG logging really was on
    assert [r["type"] for r in fake.responses] == [9, 5]  # modal, then deferred
    assert fake.followups[0]["content"].startswith("Saved the custom key for this channel")
    assert KEY not in log and all(KEY not in repr(c.body) for c in fake.calls)
    calls = [c for c in chat_calls if c.path.startswith(path)]
    posts = [c for c in calls if c.method == "POST"]
    edits = [c for c in calls if c.method == "PATCH"]
    assert len(posts) == 1 and edits, [(c.method, c.path) for c in calls]
    assert fake.limited == 1 and "We are being rate limited" in log
    assert calls[0].method == "POST"  # the first text goes out as a new message, then edits
    assert int(posts[0].body["message_reference"]["message_id"]) == asked
    # "Typing…" shows only when the model is slow to start, and never after the text.
    typing = fake.bot_calls("POST", f"/channels/{fake.channel_id}/typing")
    assert all(t.at < posts[0].at for t in typing), typing
    [shown] = [m["content"] for m in fake.messages.values()]
    # The finished answer and the buttons that replace ⏹ go out in one edit.
    final = edits[-1]
    assert final.body["content"] == shown and "cc:regen:" in repr(final.body["components"])
    assert "cc:stop:" in repr(posts[0].body)
    assert not any("components" in e.body and "content" not in e.body for e in edits)
    # The final edit shows exactly what the model said (as the bot stored it).
    store = await Store.open(
        f"sqlite+aiosqlite:///{tmp_path / 'data' / 'chatbot.db'}",
        SecretBox.from_setting(keys),
        defaults=ChannelConfig.of(source=Source.CUSTOM),
    )
    try:
        ref = ChannelRef(Platform.DISCORD, str(fake.channel_id), str(fake.guild_id))
        history = await store.history(ref, 10)
        stored = await store.resolve_secret(ref, "custom_api_key")
    finally:
        await store.close()
    assert stored is not None and stored.reveal() == KEY
    assert [h.role for h in history] == [Role.USER, Role.ASSISTANT]
    assert history[0].content == "Say hello to me."
    assert shown.strip() == history[1].content.strip() and not history[1].error


async def test_chatbot_run_reads_attachments_from_the_cdn_it_was_given(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN)
    await fake.start()
    picture = io.BytesIO()
    PILImage.new("RGB", (40, 30), "red").save(picture, "PNG")
    code = b"def hello():\n    return 'hi'\n"
    async with fake_openai(Script(chunks=["Seen."])) as model:
        env = await fake.bot_env(tmp_path / "data", model.url_v1, ADMIN_IDS=str(fake.user_id))
        bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
        try:
            await bot.wait_ready()
            await fake.wait_until(lambda: bool(fake.command_ids), 30)
            await fake.slash("params", name="vision", value="on")
            await fake.wait_until(lambda: fake.answered("vision set to on"), 30)
            red = ("red.png", "image/png", picture.getvalue())
            await fake.user_says(f"<@{fake.bot_id}> What colour?", files=[red])
            await fake.wait_until(lambda: _answered(fake, 1), 60)
            await fake.user_says(f"<@{fake.bot_id}>", files=[("hello.py", "text/x-python", code)])
            await fake.wait_until(lambda: _answered(fake, 2), 60)
            exit_code = await bot.stop()
        finally:
            await bot.close()
            await fake.stop()
    assert exit_code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log
    assert "voice will NOT be supported" not in bot.log  # the bot has no voice to miss
    # Each file was fetched once, from the URL Discord put in the message.
    assert [p.rsplit("/", 1)[1] for p in fake.downloads] == ["red.png", "hello.py"]
    first, second = (r["messages"][-1]["content"] for r in model.requests)  # type: ignore[index]
    assert first[0] == {"type": "text", "text": "What colour?"}
    [url] = [p["image_url"]["url"] for p in first if p["type"] == "image_url"]
    kind, _, data = url.partition(";base64,")
    assert kind in ("data:image/png", "data:image/jpeg")
    assert PILImage.open(io.BytesIO(base64.b64decode(data))).size == (40, 30)
    assert second.strip().startswith("hello.py\n```python\ndef hello():")


async def test_chatbot_run_shows_typing_only_while_a_slow_model_has_not_started(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script(chunks=["Seen."])) as (bot, model):
        # A first turn warms up (imports, the first connection to the model), which
        # on a loaded machine may take past the half second on its own.
        await fake.user_says(f"<@{fake.bot_id}> hello")
        await fake.wait_until(lambda: _answered(fake, 1), 60)
        warm = len(fake.calls)
        await fake.user_says(f"<@{fake.bot_id}> quick?")
        await fake.wait_until(lambda: _answered(fake, 2), 60)
        quick = fake.calls[warm:]
        model.script.first_token = 1.5
        await fake.user_says(f"<@{fake.bot_id}> slow?")
        await fake.wait_until(lambda: _answered(fake, 3), 60)
        slow = fake.calls[warm + len(quick) :]
        exit_code = await bot.stop()
    assert exit_code == 0, bot.log[-3000:]
    typing = f"/channels/{fake.channel_id}/typing"
    posts = f"/channels/{fake.channel_id}/messages"
    assert not [c for c in quick if c.path == typing]  # it started at once: no call
    typed = [c for c in slow if c.path == typing]
    [posted] = [c for c in slow if c.method == "POST" and c.path == posts]
    assert len(typed) == 1 and typed[0].at < posted.at
    assert "cc:stop:" in repr(posted.body)  # ⏹ came with the first text, typing or not


async def test_an_edit_whose_connection_drops_is_tried_again_and_the_turn_is_recorded(
    tmp_path: Path,
) -> None:
    """A reset connection on an edit went through discord.py as an aiohttp error, which
    the answer's sink did not catch: the turn died with the answer half shown and its
    usage unrecorded."""
    fake = FakeDiscord(TOKEN, drop_edits=2)
    async with chatbot_run(tmp_path, fake, Script(chunks=["Seen", "."], interval=0.3)) as (
        bot,
        _,
    ):
        await fake.user_says(f"<@{fake.bot_id}> hello")
        await fake.wait_until(lambda: _answered(fake, 1), 60)
        exit_code = await bot.stop()
    assert exit_code == 0, bot.log[-3000:]
    assert fake.dropped == 2
    assert "Traceback" not in bot.log and "ERROR" not in bot.log, bot.log[-3000:]
    db = tmp_path / "data" / "chatbot.db"
    assert _finished_answers(db) == ["Seen."]
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        assert conn.execute("SELECT count(*) FROM usage WHERE state = 'settled'").fetchone() == (1,)


async def test_a_typed_key_command_is_answered_when_deleting_it_drops(tmp_path: Path) -> None:
    """`@bot /key set …` typed as chat: the bot deletes the message, which may hold a
    key, and says where commands are. A reset connection on the delete escaped as an
    aiohttp error: the author got no answer at all."""
    fake = FakeDiscord(TOKEN, drop_deletes=5)  # every try of the delete
    admin = str(fake.user_id)  # a member is told only admins may (test_chat.py)
    async with chatbot_run(tmp_path, fake, Script(), ADMIN_IDS=admin) as (bot, model):
        await fake.user_says(f"<@{fake.bot_id}> /key set custom tabby-9f8e7d6c5b4a3210")
        path = f"/channels/{fake.channel_id}/messages"
        await fake.wait_until(lambda: bool(fake.bot_calls("POST", path)), 60)
        exit_code = await bot.stop()
    assert exit_code == 0, bot.log[-3000:]
    assert fake.drop_deletes < 5  # the delete was tried, and its connection cut
    [said] = [m["content"] for m in fake.messages.values()]
    assert "slash commands: type `/key set`" in said
    assert "Delete your message if it held one" in said
    assert not model.requests
    assert "Traceback" not in bot.log and "tabby-9f8e" not in bot.log, bot.log[-3000:]


async def test_reset_during_an_answer_waits_for_it_then_forgets_it_too(tmp_path: Path) -> None:
    """A /reset pressed while an answer streamed forgot the question at once; the answer
    was then saved into the fresh conversation and went to the model with the next one."""
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=[f"w{i} " for i in range(30)], interval=0.1)  # about 3 s
    admin = str(fake.user_id)
    async with chatbot_run(tmp_path, fake, script, ADMIN_IDS=admin) as (bot, model):
        await _asked_and_streaming(fake)
        await fake.slash("reset")
        await fake.wait_until(lambda: _said(fake) is not None, 60)
        assert "w29" in repr(fake.messages)  # the answer ended before the reset ran
        said = _said(fake)
        script.chunks, script.interval = ["ok"], 0.0
        await fake.user_says(f"<@{fake.bot_id}> again")
        await fake.wait_until(lambda: len(model.requests) == 2, 60)
        exit_code = await bot.stop()
    assert exit_code == 0, bot.log[-3000:]
    assert said is not None and said.startswith("Forgot 2 messages"), said
    sent = model.requests[-1]["messages"]
    assert isinstance(sent, list)
    assert [m["content"] for m in sent if m["role"] != "system"] == ["again"], sent


async def test_questions_waiting_their_turn_at_a_sigterm_are_told_not_asked(
    tmp_path: Path,
) -> None:
    """Restarts probe: the question waiting for the answer a SIGTERM stopped then took
    its turn during the shutdown: the model was asked, its reply failed to post (the
    client was closing), it stayed charged and stored as answered with nothing; the
    next waiting question was lost without a word."""
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=[f"w{i} " for i in range(100)], interval=0.1)  # about 10 s
    async with chatbot_run(tmp_path, fake, script) as (bot, model):
        await _asked_and_streaming(fake)
        waiting = [
            await fake.user_says(f"<@{fake.bot_id}> second question"),
            await fake.user_says(f"<@{fake.bot_id}> third question"),
        ]
        await asyncio.sleep(1)
        exit_code = await bot.stop()
    log = bot.log
    assert exit_code == 0, log[-3000:]
    assert len(model.requests) == 1  # only the answer being written had asked the model
    told = {
        int(m["message_reference"]["message_id"]): m["content"]
        for m in fake.messages.values()
        if m["author"]["id"] == str(fake.bot_id) and "message_reference" in m
    }
    for asked in waiting:
        assert told.get(asked) == (
            "Not answered: the bot is shutting down. Ask again once it is back."
        ), told
    assert any("Stopped: the bot is shutting down" in text for text in told.values()), told
    assert "could not be shown" not in log and "Traceback" not in log, log[-3000:]
    db = tmp_path / "data" / "chatbot.db"
    stored = _stored(db)
    assert [role for role, _ in stored] == ["user", "assistant"], stored
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        assert [row[0] for row in conn.execute("SELECT state FROM usage")] == ["settled"]


async def test_an_answer_cut_by_a_killed_process_is_tied_to_its_message(tmp_path: Path) -> None:
    """Restarts probe: an answer was tied to the messages showing it only when it ended,
    so one a `kill -9` cut was tied to none: deleting it after the restart forgot
    nothing, and the model went on reading it. It is tied as it is saved."""
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=[f"w{i} " for i in range(100)], interval=0.1)  # about 10 s
    await fake.start()
    try:
        async with fake_openai(script) as model:
            env = await fake.bot_env(tmp_path / "data", model.url_v1)
            bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
            try:
                await bot.wait_ready()
                await _asked_and_streaming(fake)
                db = tmp_path / "data" / "chatbot.db"
                async with asyncio.timeout(30):  # its first save (every 2 s)
                    while len(_stored(db)) < 2:  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
                bot.proc.kill()
                await bot.proc.wait()
            finally:
                await bot.close()
            script.chunks, script.interval = ["ok"], 0.0
            bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
            try:
                await bot.wait_ready()
                [cut] = [m for m in fake.messages.values() if m["author"]["id"] == str(fake.bot_id)]
                await fake.delete_message(int(cut["id"]))  # a moderator removes it
                await _until_stored(db, [("user", "count for me")])
                await fake.user_says(f"<@{fake.bot_id}> next")
                await fake.wait_until(lambda: len(model.requests) == 2, 60)
                assert await bot.stop() == 0
            finally:
                await bot.close()
    finally:
        await fake.stop()
    sent = model.requests[-1]["messages"]
    assert isinstance(sent, list)
    # The cut answer is gone: the two questions go as one turn (templates want them to
    # alternate).
    assert sent == [{"role": "user", "content": "count for me\n\nnext"}], sent


def _waiting_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM waiting_turns").fetchone()[0])


async def test_questions_a_killed_process_left_waiting_are_told_after_the_restart(
    tmp_path: Path,
) -> None:
    """Restarts probe: a killed process (`kill -9`, out of memory) lost the questions
    waiting for the answer it was writing, without a word. The next process serving the
    bot replies to each: not answered, ask again."""
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=[f"w{i} " for i in range(100)], interval=0.1)  # about 10 s
    db = tmp_path / "data" / "chatbot.db"
    await fake.start()
    try:
        async with fake_openai(script) as model:
            env = await fake.bot_env(tmp_path / "data", model.url_v1)
            bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
            try:
                await bot.wait_ready()
                await _asked_and_streaming(fake)
                waiting = [
                    await fake.user_says(f"<@{fake.bot_id}> second question"),
                    await fake.user_says(f"<@{fake.bot_id}> third question"),
                ]
                async with asyncio.timeout(30):
                    while _waiting_rows(db) < 2:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                bot.proc.kill()
                await bot.proc.wait()
            finally:
                await bot.close()
            bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
            try:
                await bot.wait_ready()

                def told() -> dict[int, str]:
                    return {
                        int(m["message_reference"]["message_id"]): m["content"]
                        for m in fake.messages.values()
                        if m["author"]["id"] == str(fake.bot_id) and "message_reference" in m
                    }

                await fake.wait_until(lambda: all(w in told() for w in waiting), 30)
                # Each record goes once its notice is posted (Core.told). A stop between
                # the two leaves it to the next process, by design (said twice, never
                # lost), so the stop waits for them: a busy machine's CI stopped between.
                async with asyncio.timeout(30):
                    while _waiting_rows(db):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                assert await bot.stop() == 0
            finally:
                await bot.close()
    finally:
        await fake.stop()
    for asked in waiting:
        assert told()[asked] == (
            "Not answered: the bot stopped before it got to this question. Ask again."
        )
    assert len(model.requests) == 1  # neither was asked, by either process
    assert "Traceback" not in bot.log


async def test_a_key_form_submitted_after_a_restart_is_answered(tmp_path: Path) -> None:
    """Restarts probe: a /key set form opened before a restart and submitted after it
    got no answer (Discord showed "interaction failed") and its key went nowhere."""
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with fake_openai(Script(chunks=["ok"])) as model:
            env = await fake.bot_env(tmp_path / "data", model.url_v1, ADMIN_IDS=str(fake.user_id))
            bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
            try:
                await bot.wait_ready()
                await fake.slash("key", "set", source="custom")
                await fake.wait_until(lambda: any(r.get("type") == 9 for r in fake.responses), 30)
                assert await bot.stop() == 0
            finally:
                await bot.close()
            bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
            try:
                await bot.wait_ready()
                await fake.submit_modal({"secret:key": KEY})
                await fake.wait_until(lambda: len(fake.responses) == 2, 30)
                # And one of this process's forms still works, answered once.
                await fake.slash("key", "set", source="custom")
                await fake.wait_until(lambda: len(fake.responses) == 3, 30)
                await fake.submit_modal({"secret:key": KEY})
                await fake.wait_until(lambda: bool(fake.followups), 30)
                assert await bot.stop() == 0
            finally:
                await bot.close()
    finally:
        await fake.stop()
    gone = fake.responses[1]
    assert gone["type"] == 4 and gone["data"]["content"].startswith(
        "This form is no longer open (the bot restarted since"
    ), gone
    assert gone["data"]["flags"] & 64  # only the one who submitted it sees it
    assert [r["type"] for r in fake.responses] == [9, 4, 9, 5]
    assert fake.followups[0]["content"].startswith("Saved the custom key for this channel")
    assert KEY not in bot.log and "Traceback" not in bot.log


async def test_usage_posts_its_chart_as_a_file(tmp_path: Path) -> None:
    """`/usage` through `chatbot run`: the reply carries the chart as a PNG upload (the
    loopback Discord read only JSON bodies, so this path could not be tried)."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script(chunks=["ok"])) as (bot, _model):
        await fake.user_says(f"<@{fake.bot_id}> hello")
        await fake.wait_until(lambda: "ok" in [m["content"] for m in fake.messages.values()], 60)
        await asyncio.sleep(0.5)  # its usage row, written as the turn ends
        await fake.slash("usage")
        await fake.wait_until(lambda: _said(fake) is not None, 60)
        exit_code = await bot.stop()
    assert exit_code == 0, bot.log[-3000:]
    said = _said(fake)
    assert said is not None and "tokens" in said, said
    [upload] = [r for r in fake.responses + fake.followups if r.get("files")]
    [chart] = upload["files"]
    assert chart["filename"].endswith(".png") and chart["size"] > 1000, chart
    assert "Traceback" not in bot.log, bot.log[-3000:]


def _stored(db: Path) -> list[tuple[str, str]]:
    """(role, content) of every stored turn, straight from SQLite (no process's cache)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return list(conn.execute("SELECT role, content FROM messages ORDER BY id"))


async def _until_stored(db: Path, turns: list[tuple[str, str]], seconds: float = 60) -> None:
    async with asyncio.timeout(seconds):
        # Another process writes it: nothing to wait on but the database itself.
        while _stored(db) != turns:  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def test_deleted_messages_leave_the_history(tmp_path: Path) -> None:
    """Through `chatbot run`: a question its author deletes is not sent to the model again;
    an answer a moderator deletes while it streams stops (the model's connection closes),
    is not edited again, and is forgotten."""
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=["Noted."])
    db = tmp_path / "data" / "chatbot.db"
    async with chatbot_run(tmp_path, fake, script) as (bot, model):
        private = await fake.user_says(f"<@{fake.bot_id}> my PIN is 4711")
        await _until_stored(db, [("user", "my PIN is 4711"), ("assistant", "Noted.")])
        await fake.delete_message(private)
        await _until_stored(db, [])

        script.chunks, script.interval = [f"w{i} " for i in range(30)], 0.1  # about 3 s
        posts = f"/channels/{fake.channel_id}/messages"
        await fake.user_says(f"<@{fake.bot_id}> count for me")
        await fake.wait_until(lambda: len(fake.bot_calls("POST", posts)) == 2, 60)
        bot_id = str(fake.bot_id)
        answer = max(m for m, body in fake.messages.items() if body["author"]["id"] == bot_id)
        await fake.delete_message(answer)
        deleted_at = time.monotonic()
        async with asyncio.timeout(60):
            while not model.cut_off:  # noqa: ASYNC110 - the model's side: nothing to await
                await asyncio.sleep(0.1)
        await _until_stored(db, [("user", "count for me")])
        await asyncio.sleep(1)  # what the bot would still do after the answer ended
        exit_code = await bot.stop()
    assert exit_code == 0, bot.log[-3000:]
    sent = model.requests[-1]["messages"]
    assert isinstance(sent, list) and "4711" not in repr(sent)
    edits = fake.bot_calls("PATCH", f"/channels/{fake.channel_id}/messages/{answer}")
    assert len([c for c in edits if c.at > deleted_at]) <= 1  # the one that found it gone
    assert len(model.ended) == 1  # the first answer only: the second never ran to its end
    assert bot.log.count("an answer message was deleted while it streamed") == 1


def _said(fake: FakeDiscord) -> str | None:
    """What the bot answered to the first slash command: at once, or after "thinking…"."""
    for response in fake.responses:
        if response.get("type") == 4:
            return str(response["data"]["content"])
    return str(fake.followups[0]["content"]) if fake.followups else None


def _answered(fake: FakeDiscord, count: int) -> bool:
    """The bot has posted `count` answers and finished each (its last edit says "Seen.")."""
    answers: list[dict[str, Any]] = list(fake.messages.values())
    return len(answers) >= count and all(m["content"] == "Seen." for m in answers)


async def _run_until_exit(tmp_path: Path, fake: FakeDiscord, token: str) -> tuple[int, str]:
    env = bot_env(
        DISCORD_TOKEN=token,
        DISCORD_API_URL=fake.api_url,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        DATA_DIR=str(tmp_path / "data"),
        BOT_SECRET_KEYS=await keygen(),
    )
    async with await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord") as bot:
        code = await bot.wait_exit()
    return code, bot.log


async def test_a_bad_token_stops_the_bot_with_a_fix(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        code, err = await _run_until_exit(tmp_path, fake, "not-the-right-token")
    finally:
        await fake.stop()
    assert code == 1
    assert "Discord refused the bot token" in err and "DISCORD_TOKEN" in err
    assert "Traceback" not in err and "not-the-right-token" not in err


async def test_a_refused_message_content_intent_says_how_to_fix_it(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN, allow_message_content=False)
    await fake.start()
    try:
        code, err = await _run_until_exit(tmp_path, fake, TOKEN)
    finally:
        await fake.stop()
    assert code == 1
    assert "Message Content" in err and "DISCORD_MESSAGE_CONTENT=false" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("slow", "said"),
    [
        (2.0, "Status check: OK"),  # within the shutdown's patience: it ends and says so
        (600.0, "Not done: the bot is shutting down. Run it again once it is back."),
    ],
)
async def test_a_status_check_running_at_a_sigterm_ends_and_replies(
    tmp_path: Path, slow: float, said: str
) -> None:
    """Restarts probe: `/connect` against a slow endpoint showed "thinking…", a SIGTERM
    came, and no reply ever followed: the shutdown let answers end, not commands (and,
    hostile probe, one slower than its patience was cut without a word)."""
    from aiohttp import web

    async def models(request: web.Request) -> web.Response:
        await asyncio.sleep(slow)  # a slow endpoint, or one that never answers
        return web.json_response({"object": "list", "data": [{"id": "m-small"}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    fake = FakeDiscord(TOKEN)
    # A short end: the never-answering handler goes too.
    async with serving(app, shutdown_timeout=0.5) as url:
        await fake.start()
        try:
            env = await fake.bot_env(tmp_path / "data", f"{url}/v1", ADMIN_IDS=str(fake.user_id))
            bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
            try:
                await bot.wait_ready()
                await fake.slash("connect")
                await fake.wait_until(lambda: any(r.get("type") == 5 for r in fake.responses), 30)
                code = await bot.stop()  # while the check waits for the endpoint
            finally:
                await bot.close()
        finally:
            await fake.stop()
    assert code == 0, bot.log[-3000:]
    assert fake.followups, bot.log[-3000:]
    assert fake.followups[0]["content"].startswith(said), fake.followups
    assert "Traceback" not in bot.log


async def test_sigterm_while_the_gateway_reconnects_still_stops_the_process(
    tmp_path: Path,
) -> None:
    """A stop signal right after Discord closed the gateway (a reconnect) left the process
    running for good: discord.py's reconnect did not end on cancel, and shutting down
    waited for it without a limit; a second signal did nothing."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script()) as (bot, _):
        await fake.drop_gateway()
        bot.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(bot.proc.wait(), 60)  # a guard, not a measured time
        assert rc == 0, bot.log
        assert "stopped" in bot.log and "Traceback" not in bot.log, bot.log
        assert "did not end when told to" not in bot.log  # told again, it ended


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
async def test_a_stop_signal_during_an_answer_ends_it_as_a_stop_says_so_and_records_it(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """A stop signal closed the model call and the store under the answer: the channel
    kept it cut with a live ⏹, the row blamed the endpoint ("cut the connection"), and
    its usage was sometimes lost. SIGHUP (the terminal `./scripts/run.sh` ran in closed)
    killed the process outright: the answer cut, no note, no row, no usage."""
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=[f"w{i} " for i in range(80)], interval=0.15)
    async with chatbot_run(tmp_path, fake, script) as (bot, _):
        await _asked_and_streaming(fake)
        code = await bot.stop(sig)
    assert code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log, bot.log[-3000:]
    [shown] = [m for m in fake.messages.values() if m["content"].startswith("w0 ")]
    assert "⚠️ Stopped: the bot is shutting down" in shown["content"], shown["content"]
    assert "cc:stop:" not in repr(shown["components"])  # ⏹ gone; the ended answer's own
    db = tmp_path / "data" / "chatbot.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        [(state, error, content)] = conn.execute(
            "SELECT state, error, content FROM messages WHERE role = 'assistant'"
        ).fetchall()
        usage = conn.execute("SELECT output_tokens > 0, error FROM usage").fetchall()
    assert state == "stopped" and error.startswith("Stopped: the bot is shutting down"), error
    assert "cut the connection" not in error
    assert content.strip() in shown["content"]  # what was shown is what was kept
    assert usage == [(1, 0)]  # the call is recorded, and a stop is no error


async def test_a_hangup_does_not_stop_a_bot_started_with_nohup(tmp_path: Path) -> None:
    """`nohup ./scripts/run.sh &`, then the SSH session closed: the bot's own SIGHUP
    handler (a stop, for a terminal closed under it) replaced the ignore nohup asked for."""
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with fake_openai(Script()) as model:
            env = await fake.bot_env(tmp_path / "data", model.url_v1)
            bot = await BotProcess.start(tmp_path, env, "logged in to Discord", nohup=True)
            try:
                await bot.wait_ready()
                bot.proc.send_signal(signal.SIGHUP)
                await fake.user_says(f"<@{fake.bot_id}> still there?")
                await fake.wait_until(lambda: _answered_with(fake, "Hello there!"), 60)
                assert bot.proc.returncode is None, bot.log[-3000:]
                assert await bot.stop() == 0
            finally:
                await bot.close()
    finally:
        await fake.stop()


def _answered_with(fake: FakeDiscord, text: str) -> bool:
    return any(m["content"] == text for m in fake.messages.values())


def _streaming_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        query = "SELECT count(*) FROM messages WHERE role = 'assistant' AND state = 'streaming'"
        return int(conn.execute(query).fetchone()[0])


@pytest.mark.parametrize("saved", [False, True], ids=["at-first-text", "after-a-save"])
async def test_a_stop_button_a_killed_process_left_is_taken_away_when_pressed(
    tmp_path: Path, saved: bool
) -> None:
    """After a SIGKILL mid-answer and a restart, the cut answer kept its ⏹ for good:
    pressing it said "No answer is being written here." and left it there."""
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=[f"w{i} " for i in range(200)], interval=0.1)
    async with chatbot_run(tmp_path, fake, script) as (bot, model):
        await _asked_and_streaming(fake)
        if saved:  # the answer so far is stored (every 2 s), still marked as being written
            db = tmp_path / "data" / "chatbot.db"
            await fake.wait_until(lambda: _streaming_rows(db) == 1, 30)
        bot.proc.kill()
        await bot.proc.wait()
        env = await fake.bot_env(tmp_path / "data", model.url_v1)
        again = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
        try:
            await again.wait_ready()
            [cut] = [m for m in fake.messages.values() if "cc:stop:" in repr(m["components"])]
            [stop_id] = re.findall(r"cc:stop:\d+", repr(cut["components"]))
            await fake.click(int(cut["id"]), stop_id)
            await fake.wait_until(
                lambda: "cut off when the bot restarted" in str(fake.followups), 30
            )
            assert not cut["components"], cut["components"]  # the ⏹ is gone
            assert cut["content"].startswith("w0")  # the text stays as it was
        finally:
            await again.close()


async def test_webhook_and_interaction_tokens_stay_out_of_the_debug_log(tmp_path: Path) -> None:
    """At LOG_LEVEL=DEBUG discord.py logs every webhook call with its URL, token and all:
    the character's channel webhook (whose token posts into the channel as it, for good)
    and each interaction's (a reply as the bot for 15 minutes) were in the log whole."""
    from tests.integration.test_characters import CARD
    from tests.unit.characters.samples import png_with

    card = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
    fake = FakeDiscord(TOKEN, manage_webhooks=True)
    async with chatbot_run(tmp_path, fake, Script(chunks=["Aye", "."]), LOG_LEVEL="DEBUG") as (
        bot,
        _model,
    ):
        await fake.slash(
            "character", "import", manager=True, files={"file": ("a.png", "image/png", card)}
        )
        await fake.wait_until(lambda: "Character set" in str(fake.followups), 30)
        await fake.user_says(f"<@{fake.bot_id}> hello captain")
        await fake.wait_until(
            lambda: any(
                m.get("webhook_id") and m["content"] == "Aye." for m in fake.messages.values()
            ),
            30,
        )
        assert await bot.stop() == 0
    [hook] = fake.webhooks.values()
    log = bot.log
    assert f"/webhooks/{hook['id']}/" in log  # discord.py did log its webhook calls
    assert hook["token"] not in log
    tokens = [
        call.path.split("/")[3] for call in fake.calls if call.path.startswith("/interactions/")
    ]
    assert tokens and not [t for t in tokens if t in log]


async def test_a_command_from_a_discord_not_reloaded_is_logged_with_its_place(
    tmp_path: Path,
) -> None:
    """A member whose Discord still shows a command as it was before an upgrade changed
    it: the log said only "WARNING … a slash command failed: CommandSignatureMismatch",
    naming no command or channel and sounding like a fault of the bot."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script()) as (bot, _model):
        await fake.slash("model", manager=True, name="m-large")  # the option is `id` now
        await fake.wait_until(lambda: "Reload Discord" in str(fake.responses), 30)
        assert await bot.stop() == 0
    [line] = [line for line in bot.lines if "CommandSignatureMismatch" in line]
    where = f"discord:{fake.guild_id}:{fake.channel_id}"
    assert " INFO " in line and f"/model in {where} came as Discord had it before" in line
