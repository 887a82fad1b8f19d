"""`chatbot run` against the loopback Discord: an answer longer than a few messages (a model
that loops) stops adding messages, and comes whole as a file on its last one; ⏩ goes on in
the same messages, a stop files what arrived, deleting the file's message forgets it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from bot.frontends.discord.sink import (
    ANSWER_FILE,
    FILE_ATTACHED,
    FILE_COMING,
    LIMIT,
    MAX_MESSAGES,
)
from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script

TOKEN = "loopback.bot.token-long-answers-0123456789"


def _looping(lines: int) -> list[str]:
    """A model that says the same thing over and over: about 45 characters a line."""
    return [f"Line {i}: and so it goes on and on again.\n" for i in range(lines)] + ["The end."]


def _stored(db: Path) -> list[tuple[str, str]]:
    """(role, content) of every stored turn, straight from SQLite (no process's cache)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return list(conn.execute("SELECT role, content FROM messages ORDER BY id"))


async def _until(check: Any, seconds: float = 60) -> None:
    async with asyncio.timeout(seconds):
        # Another process writes the database: nothing to wait on but the database itself.
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.2)


def _custom_ids(message: dict[str, Any]) -> list[str]:
    return [
        str(button["custom_id"])
        for row in message.get("components", [])
        for button in row.get("components", [])
        if "custom_id" in button
    ]


def _by_bot(fake: FakeDiscord) -> list[dict[str, Any]]:
    bot = str(fake.bot_id)
    return [m for m in fake.messages.values() if m["author"]["id"] == bot]


def _pressable(fake: FakeDiscord, press: str) -> dict[str, Any] | None:
    return next((m for m in _by_bot(fake) if any(press in i for i in _custom_ids(m))), None)


async def test_a_looping_answer_takes_a_few_messages_and_comes_whole_as_a_file(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=_looping(1500), interval=0.001)  # about 68,000 characters
    db = tmp_path / "data" / "chatbot.db"
    posts = f"/channels/{fake.channel_id}/messages"
    async with chatbot_run(tmp_path, fake, script) as (bot, model):
        await fake.user_says(f"<@{fake.bot_id}> say it all")
        await fake.wait_until(lambda: any(m["attachments"] for m in _by_bot(fake)), 90)
        await _until(lambda: len(_stored(db)) == 2 and _stored(db)[1][1] == script.answer)
        pages = _by_bot(fake)
        last = pages[-1]
        # A few messages, not 34: none was posted and removed again.
        assert len(pages) == MAX_MESSAGES
        assert len(fake.bot_calls("POST", posts)) == MAX_MESSAGES
        assert all(len(p["content"]) <= LIMIT for p in pages)
        assert pages[0]["content"].startswith("Line 0: ")
        assert last["content"].endswith(f"\n\n{FILE_ATTACHED}")
        assert not any(FILE_COMING in p["content"] for p in pages)
        # The whole answer, as stored, in one UTF-8 file on the last message (with the
        # buttons): the others carry neither.
        assert fake.attached(last) == {ANSWER_FILE: script.answer.encode()}
        assert [m for m in pages if m["attachments"] or _custom_ids(m)] == [last]
        assert _stored(db) == [("user", "say it all"), ("assistant", script.answer)]

        # ⏩ goes on in the same messages: the new file has all of it, and so does history.
        model.script = Script(chunks=[" And", " one more line."])
        before = len(model.requests)
        cont = next(i for i in _custom_ids(last) if i.startswith("cc:cont:"))
        await fake.click(int(last["id"]), cont)
        whole = f"{script.answer} And one more line."
        await fake.wait_until(lambda: fake.attached(last).get(ANSWER_FILE) == whole.encode(), 60)
        await _until(lambda: _stored(db) == [("user", "say it all"), ("assistant", whole)])
        assert len(model.requests) == before + 1
        assert _by_bot(fake) == pages  # the same five messages, no new one
        assert len(fake.bot_calls("POST", posts)) == MAX_MESSAGES
        assert last["content"].endswith(FILE_ATTACHED)
        assert [a["filename"] for a in last["attachments"]] == [ANSWER_FILE]  # replaced

        # A moderator deletes the message with the file: the answer is forgotten.
        await fake.delete_message(int(last["id"]))
        await _until(lambda: _stored(db) == [("user", "say it all")])
        exit_code = await bot.stop()
    assert exit_code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log, bot.log[-3000:]


async def test_a_stop_while_it_streams_files_what_arrived(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=_looping(3000), interval=0.01)  # about 30 s unstopped
    db = tmp_path / "data" / "chatbot.db"
    async with chatbot_run(tmp_path, fake, script) as (bot, model):
        await fake.user_says(f"<@{fake.bot_id}> say it all")

        def streaming_past_the_pages() -> bool:
            shown = _by_bot(fake)
            return len(shown) == MAX_MESSAGES and FILE_COMING in shown[-1]["content"]

        await fake.wait_until(streaming_past_the_pages, 60)
        last = _by_bot(fake)[-1]
        assert last["content"].endswith(f"\n\n{FILE_COMING}")
        [stop_id] = _custom_ids(last)  # ⏹ on the last message shown
        assert stop_id.startswith("cc:stop:")
        await fake.click(int(last["id"]), stop_id)
        await fake.wait_until(lambda: bool(last["attachments"]), 30)
        await _until(lambda: len(_stored(db)) == 2)
        [(_, asked), (_, answer)] = _stored(db)
        exit_code = await bot.stop()
    assert exit_code == 0, bot.log[-3000:]
    assert model.cut_off  # stopped: the model's connection was closed
    assert asked == "say it all" and answer.startswith("Line 0: ")
    assert len(answer) < len(script.answer)
    assert fake.attached(last) == {ANSWER_FILE: answer.encode()}  # what arrived, whole
    # The last message says it stopped, after the note on the file (not cut off with it).
    assert FILE_ATTACHED in last["content"] and "Stopped" in last["content"]
    assert last["content"].index(FILE_ATTACHED) < last["content"].index("Stopped")
    assert len(_by_bot(fake)) == MAX_MESSAGES


async def test_an_answer_that_takes_a_new_page_as_it_ends_has_its_buttons_there_only(
    tmp_path: Path,
) -> None:
    """Turn-controls probe: an answer whose last words took a second message as it ended
    showed its 🔄 ⏩ on the first message for a moment (the final edit of the message that
    was the newest, then the new one posted with them, then the first's taken off). A 🔄
    pressed there was taken for a one-message answer: the new answer went into the first
    message and the second kept the old answer's end, with live buttons, for good."""
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=[f"w{i:04d} " for i in range(400)])  # 2,400 characters at once
    async with chatbot_run(tmp_path, fake, script) as (bot, _):
        await fake.user_says(f"<@{fake.bot_id}> tell me a long one")

        def settled() -> bool:
            pages = _by_bot(fake)
            return len(pages) == 2 and not pages[0]["components"]

        await fake.wait_until(lambda: _pressable(fake, "cc:regen:") is not None, 30)
        await fake.wait_until(settled, 30)
        assert await bot.stop() == 0
    first, last = _by_bot(fake)
    assert any("cc:regen:" in i for i in _custom_ids(last))
    to_first = [c for c in fake.calls if c.path.endswith(f"/messages/{first['id']}")]
    assert to_first and all("cc:regen:" not in repr(c.body) for c in to_first)


async def test_a_regenerate_pressed_as_the_answer_takes_its_last_page_replaces_every_page(
    tmp_path: Path,
) -> None:
    """Turn-controls probe: a 🔄 pressed on the message an answer took as it ended, before
    the bot had tied that message to the answer (a moment, longer while Discord holds the
    post), was taken for an answer of that one message: the new answer went into it, and
    the first message kept the old answer's start above it, for good."""
    fake = FakeDiscord(TOKEN)
    script = Script(chunks=[f"w{i:04d} " for i in range(400)])  # 2,400 characters at once
    async with chatbot_run(tmp_path, fake, script) as (bot, model):
        await fake.user_says(f"<@{fake.bot_id}> tell me a long one")
        await fake.wait_until(lambda: len(_by_bot(fake)) == 1, 30)
        fake.hold_posts = 1.0  # the last page is on show; the bot hears so a second later
        async with asyncio.timeout(30):
            while (last := _pressable(fake, "cc:regen:")) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        [regen] = [i for i in _custom_ids(last) if i.startswith("cc:regen:")]
        model.script = Script(chunks=["A short one."])
        await fake.click(int(last["id"]), regen)
        await fake.wait_until(lambda: len(model.requests) == 2, 30)
        await fake.wait_until(lambda: [m["content"] for m in _by_bot(fake)] == ["A short one."], 30)
        assert await bot.stop() == 0
    [shown] = _by_bot(fake)
    assert shown.get("message_reference")  # the first page, the reply to the question
    assert any(i.startswith("cc:prev:") for i in _custom_ids(shown))


async def test_a_second_regenerate_pressed_while_the_first_runs_leaves_no_page_behind(
    tmp_path: Path,
) -> None:
    """Review: 🔄 pressed twice on a one-message answer (its asker and an admin, or a
    double click). A change for Matrix let the second run once the first ended; Discord
    finds the pages a press rewrites as it is pressed (one, then), so the second's short
    answer went into the first message only and the second kept the first regenerate's
    end, with live buttons, for good. On Discord the second press is refused, to its
    presser alone, as one on an answer no longer shown; the first's answer stays whole."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script(chunks=["Short."])) as (bot, model):
        await fake.user_says(f"<@{fake.bot_id}> say something")
        await fake.wait_until(lambda: _pressable(fake, "cc:regen:") is not None, 30)
        shown = _pressable(fake, "cc:regen:")
        assert shown is not None
        [regen] = [i for i in _custom_ids(shown) if i.startswith("cc:regen:")]
        long = [f"w{i:04d} " for i in range(400)]
        model.script = Script(chunks=long, first_token=1.5)
        await fake.click(int(shown["id"]), regen)
        await fake.wait_until(lambda: len(model.requests) == 2, 30)
        responded = len(fake.responses) + len(fake.followups)
        await fake.click(int(shown["id"]), regen)  # while the first is still to answer
        model.script = Script(chunks=["Short again."])

        def settled() -> bool:
            pressable = [m for m in _by_bot(fake) if _custom_ids(m)]
            return len(pressable) == 1 and "w0399" in pressable[0]["content"]

        await fake.wait_until(settled, 30)
        await asyncio.sleep(1.0)  # a second regenerate would have been asked by now
        assert len(model.requests) == 2
        said = [*fake.responses, *fake.followups][responded:]
        assert any("Only the newest answer" in str(r) for r in said), said
        assert await bot.stop() == 0
    pages = [m["content"] for m in _by_bot(fake)]
    assert len(pages) == 2, pages
    assert " ".join(pages).split() == [c.strip() for c in long], pages
