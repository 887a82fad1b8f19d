"""`chatbot run` against the loopback Discord: questions that carry files or images,
edited (while their files are read, or after they were asked)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI, Script

TOKEN = "loopback.bot.token-edited-files-0123456789"


def _png(color: str, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def _answers(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [
        m
        for m in fake.messages.values()
        if m["author"]["id"] == str(fake.bot_id) and m["content"] == "Seen."
    ]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in content if p["type"] == "text")


def _images(content: Any) -> int:
    return 0 if isinstance(content, str) else sum(p["type"] == "image_url" for p in content)


def _questions(tmp_path: Path) -> list[tuple[str, int]]:
    """The stored questions' text and image count (the database `chatbot run` keeps)."""
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "chatbot.db")) as db:
        rows = db.execute("SELECT content, image_count FROM messages WHERE role = 'user'")
        return [(str(text), int(count)) for text, count in rows]


async def _stored(tmp_path: Path, questions: list[tuple[str, int]]) -> None:
    """Once the stored questions are `questions` (an edit is stored apart from any post)."""
    for _ in range(600):  # a database file has no event to wait on
        if _questions(tmp_path) == questions:
            return
        await asyncio.sleep(0.05)
    assert _questions(tmp_path) == questions


def _sent(model: FakeOpenAI, request: int) -> list[Any]:
    """The user messages' contents of one request to the model."""
    return [m["content"] for m in model.requests[request]["messages"] if m["role"] == "user"]


async def test_an_edit_while_the_questions_file_is_read_is_asked(tmp_path: Path) -> None:
    """Probe: a question edited while the bot still downloaded its file was asked with
    its old text, and the edit was lost (the next turn read the old text too): the turn
    had taken the edits waiting for it before the files, and one arriving meanwhile was
    kept for a question that had been stored already. It is asked as edited."""
    fake = FakeDiscord(TOKEN)
    fake.cdn_trickle = 0.2  # 6 parts of 1 KB: the file takes over a second
    notes = ("notes.txt", "text/plain", b"forty-two\n" * 600)
    async with chatbot_run(tmp_path, fake, Script(chunks=["Seen."])) as (bot, model):
        asked = await fake.user_says(f"<@{fake.bot_id}> what does this say?", files=[notes])
        await fake.wait_until(lambda: bool(fake.downloads), 30)
        await fake.user_edits(asked, f"<@{fake.bot_id}> how many lines is this?")
        await fake.wait_until(lambda: len(_answers(fake)) == 1, 60)
        fake.cdn_trickle = 0.0
        await fake.user_says(f"<@{fake.bot_id}> thanks")
        await fake.wait_until(lambda: len(_answers(fake)) == 2, 60)
        assert await bot.stop() == 0
    first = _text(_sent(model, 0)[0])
    assert first.startswith("how many lines is this?\nnotes.txt\n```\nforty-two\n"), first[:80]
    again = _text(_sent(model, 1)[0])
    assert again.startswith("how many lines is this?\nnotes.txt\n```"), again[:80]


async def test_a_picture_asked_alone_then_captioned_is_read_with_its_caption(
    tmp_path: Path,
) -> None:
    """Probe: a picture sent to the bot with no text, then edited to ask about it, kept
    its empty text (an edit of a question with images was kept as it was, though its
    text holds nothing of theirs): the model never read the question. Its text is the
    edit now, and its image stays."""
    fake = FakeDiscord(TOKEN)
    settings = {"ADMIN_IDS": str(fake.user_id)}
    async with chatbot_run(tmp_path, fake, Script(chunks=["Seen."]), **settings) as (bot, model):
        await fake.wait_until(lambda: bool(fake.command_ids), 30)
        await fake.slash("params", name="vision", value="on")
        await fake.wait_until(lambda: fake.answered("vision set to on"), 30)
        red = ("red.png", "image/png", _png("red", (40, 30)))
        asked = await fake.user_says(f"<@{fake.bot_id}>", files=[red])
        await fake.wait_until(lambda: len(_answers(fake)) == 1, 60)
        await fake.user_edits(asked, f"<@{fake.bot_id}> what colour is it?")
        await _stored(tmp_path, [("what colour is it?", 1)])
        await fake.user_says(f"<@{fake.bot_id}> thanks")
        await fake.wait_until(lambda: len(_answers(fake)) == 2, 60)
        assert await bot.stop() == 0
    first = _sent(model, 0)[0]
    assert (_text(first), _images(first)) == ("", 1)
    again = _sent(model, 1)[0]
    assert (_text(again), _images(again)) == ("what colour is it?", 1)
