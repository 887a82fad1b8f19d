"""`chatbot run` against the loopback Discord failing or holding the final edit of an
answer: the conversation is held for a bounded time (the answer then goes out again in a
new message), and a /stop meanwhile says what is going on."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script

TOKEN = "loopback.bot.token-slowedit-0123456789"
SCRIPT = Script(chunks=["The first part", " and its end."], interval=0.3)


def _by_bot(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.messages.values() if m["author"]["id"] == str(fake.bot_id)]


def _stored(tmp_path: Path) -> list[tuple[str, str, str]]:
    db = tmp_path / "data" / "chatbot.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT role, state, content FROM messages ORDER BY id").fetchall()
    return [(str(r), str(s), str(c)) for r, s, c in rows]


async def test_a_final_edit_discord_keeps_failing_holds_the_conversation_a_while_only(
    tmp_path: Path,
) -> None:
    """Review: Discord answering 500 to the final edit held the conversation ~100 s
    (discord.py tries a 500 five times in 25 s, and our retries made that four calls);
    the next question waited silently all that time. Now the edit is given up within
    the answer's end patience, and the answer goes out again in a new message."""
    fake = FakeDiscord(TOKEN, fail_edits=1000)  # every edit fails with a 500
    async with chatbot_run(tmp_path, fake, SCRIPT) as (bot, _):
        await fake.user_says(f"<@{fake.bot_id}> tell me")
        await fake.wait_until(lambda: bool(fake.bot_calls("PATCH", "/channels/")), 30)
        await fake.user_says(f"<@{fake.bot_id}> and then?")

        def both_answered() -> bool:
            return sum("The first part" in m["content"] for m in _by_bot(fake)) >= 3

        await fake.wait_until(both_answered, 60)
        edits_before_the_next = len(fake.bot_calls("PATCH", "/channels/"))
        assert await bot.stop() == 0
    # One discord.py call at most (its own five tries), not four of them.
    assert edits_before_the_next <= 5, edits_before_the_next
    first, again, *_ = _by_bot(fake)
    assert first["content"] == "The first part"  # as streamed: its edit never landed
    assert "here it is again from there on" in again["content"]
    assert again["content"].endswith("The first part and its end.")
    stored = _stored(tmp_path)
    assert ("assistant", "done", "The first part and its end.") in stored
    assert "Traceback" not in bot.log, bot.log[-3000:]


async def test_a_stop_while_the_final_edit_is_held_says_the_answer_is_written(
    tmp_path: Path,
) -> None:
    """Review: a /stop while Discord held the final edit said "No answer is being written
    here" (the stream had ended) though the answer's end was still on its way."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, SCRIPT) as (bot, _):
        fake.edits_open.clear()
        await fake.user_says(f"<@{fake.bot_id}> tell me")
        await fake.wait_until(lambda: bool(fake.bot_calls("PATCH", "/channels/")), 30)
        await fake.slash("stop")
        await fake.wait_until(lambda: bool(fake.responses), 30)
        fake.edits_open.set()
        await fake.wait_until(
            lambda: any(m["content"].endswith("its end.") for m in _by_bot(fake)), 30
        )
        assert await bot.stop() == 0
    [stop] = fake.responses
    assert int(stop["data"]["flags"]) & 64  # the stopper's eyes only
    said = stop["data"]["content"]
    assert said.startswith("Nothing to stop: the answer here has ended"), said
    assert ("assistant", "done", "The first part and its end.") in _stored(tmp_path)
