"""`chatbot run` as its own process against the loopback Discord: ⏹ pressed while an answer
streams stops it (what arrived is kept, the model's connection is closed) and the answer's
buttons replace ⏹; a stop typed while the first message is being posted ends that one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.bot_process import BotProcess, chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script, fake_openai

TOKEN = "loopback.bot.token-buttons-0123456789"


def _custom_ids(message: dict[str, Any]) -> list[str]:
    return [
        str(button["custom_id"])
        for row in message.get("components", [])
        for button in row.get("components", [])
        if "custom_id" in button
    ]


async def test_stop_pressed_while_streaming_ends_the_answer(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN)
    await fake.start()
    script = Script(chunks=[f"w{i} " for i in range(300)], interval=0.05)  # ~15 s unstopped
    async with fake_openai(script) as endpoint:
        env = await fake.bot_env(tmp_path / "data", endpoint.url_v1)
        bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
        try:
            await bot.wait_ready()
            await fake.user_says(f"<@{fake.bot_id}> count for me")

            def streaming() -> dict[str, Any] | None:
                return next(
                    (m for m in fake.messages.values() if "cc:stop:" in str(_custom_ids(m))),
                    None,
                )

            await fake.wait_until(lambda: streaming() is not None, 60)
            answer = streaming()
            assert answer is not None
            [stop] = _custom_ids(answer)
            assert stop == f"cc:stop:{fake.user_id}"  # the asker's
            await fake.click(int(answer["id"]), stop)
            shown = fake.messages[int(answer["id"])]
            await fake.wait_until(lambda: "cc:regen:" in str(_custom_ids(shown)), 30)
            code = await bot.stop()
        finally:
            await bot.close()
            await fake.stop()
    assert code == 0
    assert [r["type"] for r in fake.responses] == [6]  # acknowledged, nothing said
    assert "Stopped" in shown["content"] and shown["content"].startswith("w0 ")
    assert len(shown["content"]) < len(script.answer)
    assert endpoint.cut_off  # the model's connection was closed
    assert not [i for i in _custom_ids(shown) if i.startswith("cc:stop:")]


async def test_a_stop_left_on_an_older_answer_cannot_stop_someone_elses(
    tmp_path: Path,
) -> None:
    """Hostile probe: a ⏹ left on an older answer (its process killed, or its last edit
    lost) let the member it named stop whatever answer was being written in the channel,
    another member's too; a typed /stop refused them."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script(chunks=["short"])) as (bot, endpoint):
        await fake.user_says(f"<@{fake.bot_id}> hi")

        def olders() -> list[dict[str, Any]]:
            return [m for m in fake.messages.values() if m["content"] == "short"]

        await fake.wait_until(lambda: bool(olders()), 30)
        [older] = olders()
        endpoint.script = Script(chunks=[f"w{i} " for i in range(120)], interval=0.05)
        carol = (fake.user_id + 7, "carol")
        await fake.user_says(f"<@{fake.bot_id}> count for me", by=carol)

        def streaming() -> dict[str, Any] | None:
            return next(
                (m for m in fake.messages.values() if f"cc:stop:{carol[0]}" in _custom_ids(m)),
                None,
            )

        await fake.wait_until(lambda: streaming() is not None, 60)
        answer = streaming()
        assert answer is not None
        carols = f"cc:stop:{carol[0]}"
        # Bob's ⏹ as a killed process left it on his answer.
        stale = f"cc:stop:{fake.user_id}"
        older["components"] = json.loads(json.dumps(answer["components"]).replace(carols, stale))
        await fake.click(int(older["id"]), stale)
        await fake.wait_until(lambda: "cc:regen:" in str(_custom_ids(answer)), 30)
        assert await bot.stop() == 0
    assert answer["content"] == endpoint.script.answer.strip()  # carol's, whole
    [refusal] = fake.responses
    assert refusal["type"] == 4 and int(refusal["data"]["flags"]) & 64  # bob's eyes only
    assert "Only the person who asked or an admin" in refusal["data"]["content"]


async def test_a_stop_typed_while_the_first_message_is_posted_ends_that_message(
    tmp_path: Path,
) -> None:
    """Cut mid-post, the posted message was lost to the answer: it kept a live ⏹ and the
    answer was posted again (not as a reply), 30 s later when discord.py's rate limiter
    was cut too; the channel's next answer waited as long."""
    fake = FakeDiscord(TOKEN, hold_posts=1.0)
    script = Script(chunks=[f"w{i} " for i in range(300)], interval=0.05)
    async with chatbot_run(tmp_path, fake, script) as (bot, endpoint):
        posts = f"/channels/{fake.channel_id}/messages"
        await fake.user_says(f"<@{fake.bot_id}> count for me")
        await fake.wait_until(lambda: bool(fake.bot_calls("POST", posts)), 60)
        await fake.slash("stop")

        def by_bot() -> list[dict[str, Any]]:
            return [m for m in fake.messages.values() if m["author"]["id"] == str(fake.bot_id)]

        def ended() -> bool:
            return any("cc:regen:" in str(_custom_ids(m)) for m in by_bot())

        await fake.wait_until(ended, 20)
        [answer] = by_bot()
        assert answer["content"].startswith("w0") and "Stopped" in answer["content"]
        assert answer.get("message_reference")  # still the reply to the question
        assert not [i for i in _custom_ids(answer) if i.startswith("cc:stop:")]
        # The channel's next answer is not held back.
        fake.hold_posts = 0.0
        endpoint.script = Script(chunks=["next"])
        await fake.user_says(f"<@{fake.bot_id}> again")
        await fake.wait_until(lambda: any(m["content"] == "next" for m in by_bot()), 20)
        assert await bot.stop() == 0


async def test_a_first_message_that_failed_to_post_is_posted_again_as_the_reply(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord(TOKEN, drop_posts=1)
    script = Script(chunks=[f"w{i} " for i in range(40)], interval=0.05)
    async with chatbot_run(tmp_path, fake, script) as (bot, _):
        await fake.user_says(f"<@{fake.bot_id}> count for me")

        def done() -> bool:
            return any(m["content"] == script.answer.strip() for m in fake.messages.values())

        await fake.wait_until(done, 30)
        assert await bot.stop() == 0
    [answer] = [m for m in fake.messages.values() if m["author"]["id"] == str(fake.bot_id)]
    assert answer.get("message_reference")  # the reply to the question, as a first post is


async def test_typing_under_way_lands_before_the_first_text(tmp_path: Path) -> None:
    """ "Typing…" that reached Discord after the text would show over an answer already
    there (and a typing call cut mid-way could hold the channel's next one)."""
    fake = FakeDiscord(TOKEN, hold_typing=1.0)
    script = Script(chunks=["slow ", "answer"], first_token=0.8)  # typing shows at 0.5 s
    async with chatbot_run(tmp_path, fake, script) as (bot, _):
        await fake.user_says(f"<@{fake.bot_id}> take your time")

        def done() -> bool:
            return any(m["content"] == "slow answer" for m in fake.messages.values())

        await fake.wait_until(done, 30)
        assert await bot.stop() == 0
    [typing] = fake.bot_calls("POST", f"/channels/{fake.channel_id}/typing")
    [post] = fake.bot_calls("POST", f"/channels/{fake.channel_id}/messages")
    assert post.at - typing.at >= 0.9  # after the typing call was answered


async def test_a_second_process_for_the_same_bot_waits_for_the_first(tmp_path: Path) -> None:
    """Two processes serving one bot on one database answered every message twice (the
    history holding each question twice), and neither log said a word."""
    fake = FakeDiscord(TOKEN)
    await fake.start()
    async with fake_openai(Script(chunks=["one answer"])) as endpoint:
        env = await fake.bot_env(tmp_path / "data", endpoint.url_v1)
        (tmp_path / "b").mkdir()
        try:
            async with await BotProcess.start(
                tmp_path, env, ready_marker="logged in to Discord"
            ) as first:
                await first.wait_ready()
                async with await BotProcess.start(
                    tmp_path / "b", env, ready_marker="waiting for it to stop"
                ) as second:
                    await second.wait_ready()
                    assert "another process serves this Discord bot on this database" in (
                        second.log
                    )
                    await fake.user_says(f"<@{fake.bot_id}> hello")
                    await fake.wait_until(
                        lambda: any(m["content"] == "one answer" for m in fake.messages.values()),
                        30,
                    )
                    assert await first.stop() == 0
                    for _ in range(150):  # its next try finds the bot free (every 5 s)
                        if "logged in to Discord" in second.log:
                            break
                        await asyncio.sleep(0.1)
                    assert "the other process stopped; starting" in second.log, second.log
                    assert "logged in to Discord" in second.log
                    assert await second.stop() == 0
        finally:
            await fake.stop()
    assert len(endpoint.requests) == 1  # one process asked the model


def _streaming_answer_posts(db: Path) -> list[str]:
    """The messages tied to an answer still being written, straight from SQLite."""
    query = (
        "SELECT posts.post_id FROM posts JOIN messages ON messages.id = posts.message_id "
        "WHERE messages.role = 'assistant' AND messages.state = 'streaming'"
    )
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return [row[0] for row in conn.execute(query)]


async def test_a_regenerate_a_killed_process_cut_stays_tied_to_its_message(
    tmp_path: Path,
) -> None:
    """Restarts probe: a 🔄 killed (`kill -9`) while its new answer streamed left that
    answer tied to no message (a first answer is tied as it is saved; a regenerate only
    at its end). After the restart the channel's message showed the cut answer, but a
    typed /continue found no message showing it and posted the continued answer as a new
    reply (in no message's ids either), leaving the cut one with its dead ⏹."""
    fake = FakeDiscord(TOKEN)
    db = tmp_path / "data" / "chatbot.db"
    async with chatbot_run(tmp_path, fake, Script(chunks=["first answer"])) as (bot, model):
        await fake.user_says(f"<@{fake.bot_id}> hello")

        def answers() -> list[dict[str, Any]]:
            return [m for m in fake.messages.values() if m["author"]["id"] == str(fake.bot_id)]

        await fake.wait_until(lambda: "cc:regen:" in str([_custom_ids(m) for m in answers()]), 30)
        [answer] = answers()
        [regen] = [i for i in _custom_ids(answer) if i.startswith("cc:regen:")]
        model.script = Script(chunks=[f"w{i} " for i in range(200)], interval=0.05)
        await fake.click(int(answer["id"]), regen)
        async with asyncio.timeout(30):  # its first save (every 2 s)
            while not _streaming_answer_posts(db):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        bot.proc.kill()
        await bot.proc.wait()
        assert _streaming_answer_posts(db) == [answer["id"]]
        model.script = Script(chunks=[" and more"])
        env = await fake.bot_env(tmp_path / "data", model.url_v1)
        async with await BotProcess.start(
            tmp_path, env, ready_marker="logged in to Discord"
        ) as again:
            await again.wait_ready()
            await fake.slash("continue")
            await fake.wait_until(lambda: len(model.requests) == 3, 30)
            await fake.wait_until(lambda: "cc:regen:" in str(_custom_ids(answer)), 30)
            # The typer's "Done" follows the answer's last edit: stopped before it, the
            # bot had nobody left to say it to.
            await fake.wait_until(lambda: "Done: the answer above" in str(fake.followups), 30)
            assert await again.stop() == 0
    assert [m["id"] for m in answers()] == [answer["id"]]  # no second answer beside it
    assert answer["content"].startswith("w0 ") and answer["content"].endswith(" and more")
    assert not [i for i in _custom_ids(answer) if i.startswith("cc:stop:")]
    assert "Done: the answer above changed (answer 2 of 2)." in str(fake.followups)
    assert [r["type"] for r in fake.responses] == [6, 5]  # the press; the typed "thinking…"
