"""`chatbot run` against the loopback Discord: a /stop while a turn is still prepared (its
file downloading from a slow CDN, the model not yet asked) stops it, for the asker or an
admin only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script

TOKEN = "loopback.bot.token-stopprep-0123456789"
NOTES = ("notes.txt", "text/plain", b"line of notes\n" * 300)  # ~4 KB: ~2 s trickled
STOPPED_BEFORE = "Stopped before the answer began."


def _by_bot(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.messages.values() if m["author"]["id"] == str(fake.bot_id)]


async def test_a_stop_while_the_file_is_read_sends_and_charges_nothing(tmp_path: Path) -> None:
    """Race probe: /stop after the mention was taken, before the first token, said "No
    answer is being written here"; then the answer arrived anyway."""
    fake = FakeDiscord(TOKEN, cdn_trickle=0.5)
    async with chatbot_run(tmp_path, fake, Script(chunks=["an answer"])) as (bot, endpoint):
        asked = await fake.user_says(f"<@{fake.bot_id}> read this", files=[NOTES])
        await fake.wait_until(lambda: fake.cdn_open > 0, 30)  # the turn is prepared
        await fake.slash("stop")
        await fake.wait_until(lambda: bool(fake.responses), 30)
        await fake.wait_until(lambda: bool(_by_bot(fake)), 30)
        assert await bot.stop() == 0
    [stop] = fake.responses
    assert int(stop["data"]["flags"]) & 64  # the stopper's eyes only
    assert stop["data"]["content"] == "Stopped the answer."
    [said] = _by_bot(fake)
    assert STOPPED_BEFORE in said["content"] and "an answer" not in said["content"]
    assert str(said["message_reference"]["message_id"]) == str(asked)  # the reply to it
    assert "cc:retry:" in str(said.get("components"))  # asked again with 🔁
    assert endpoint.requests == []  # the model was never asked
    db = tmp_path / "data" / "chatbot.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        stored = conn.execute("SELECT role, state, error FROM messages").fetchall()
        usage = conn.execute("SELECT count(*) FROM usage").fetchone()
    assert stored == [("user", "failed", STOPPED_BEFORE)]
    assert usage == (0,)  # nothing charged


async def test_a_stop_while_the_file_is_read_is_refused_to_another_member(
    tmp_path: Path,
) -> None:
    """Race probe: while a turn was prepared any member's /stop got past the check."""
    fake = FakeDiscord(TOKEN, cdn_trickle=0.5)
    async with chatbot_run(tmp_path, fake, Script(chunks=["carol's answer"])) as (bot, _):
        carol = (fake.user_id + 7, "carol")
        await fake.user_says(f"<@{fake.bot_id}> read this", files=[NOTES], by=carol)
        await fake.wait_until(lambda: fake.cdn_open > 0, 30)
        await fake.slash("stop")  # bob's, who is no admin
        await fake.wait_until(lambda: bool(fake.responses), 30)

        def answered() -> bool:
            return any(m["content"] == "carol's answer" for m in _by_bot(fake))

        await fake.wait_until(answered, 30)
        assert await bot.stop() == 0
    [refusal] = fake.responses
    assert int(refusal["data"]["flags"]) & 64
    assert "Only the person who asked or an admin" in refusal["data"]["content"]


async def test_a_question_deleted_while_its_file_is_read_is_not_asked(tmp_path: Path) -> None:
    """Race probe: a mention deleted right after it was sent (its file still downloading)
    was asked all the same, and answered in reply to a message that was gone: the deletion
    looked for the stored question, not stored yet."""
    fake = FakeDiscord(TOKEN, cdn_trickle=0.5)
    async with chatbot_run(tmp_path, fake, Script(chunks=["an answer"])) as (bot, endpoint):
        asked = await fake.user_says(f"<@{fake.bot_id}> read this", files=[NOTES])
        await fake.wait_until(lambda: fake.cdn_open > 0, 30)  # the turn is prepared
        await fake.delete_message(asked)

        for _ in range(600):  # the turn ends once the download does (its log line)
            if "deleted while its turn was prepared" in bot.log or endpoint.requests:
                break
            await asyncio.sleep(0.05)
        assert await bot.stop() == 0
    assert endpoint.requests == []  # the model was never asked
    assert _by_bot(fake) == []  # nothing shown: the question is gone
    db = tmp_path / "data" / "chatbot.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        stored = conn.execute("SELECT count(*) FROM messages").fetchone()
        usage = conn.execute("SELECT count(*) FROM usage").fetchone()
    assert (stored, usage) == ((0,), (0,))
    assert "Traceback" not in bot.log, bot.log[-3000:]


def _waiting_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM waiting_turns").fetchone()[0])


async def test_a_question_held_behind_a_command_is_its_askers_to_stop(tmp_path: Path) -> None:
    """A mention sent while /character import runs in its channel (the card still
    downloading) waits for it in the conversation's turn order: the asker's /stop reaches
    it there, and it is never asked."""
    fake = FakeDiscord(TOKEN, cdn_trickle=0.5)
    card = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {"name": "Zed", "description": "A patient guide. " * 200, "first_mes": ""},
    }
    body = json.dumps(card).encode()  # ~3.5 KB: ~2 s trickled
    db = tmp_path / "data" / "chatbot.db"
    async with chatbot_run(tmp_path, fake, Script(chunks=["an answer"])) as (bot, endpoint):
        await fake.slash(
            "character",
            "import",
            manager=True,
            files={"file": ("zed.json", "application/json", body)},
        )
        await fake.wait_until(lambda: fake.cdn_open > 0, 30)  # the command holds the turn order
        asked = await fake.user_says(f"<@{fake.bot_id}> are you there?")
        for _ in range(600):  # waiting behind the command, and recorded so
            if _waiting_rows(db):
                break
            await asyncio.sleep(0.05)
        assert _waiting_rows(db) == 1 and fake.cdn_open > 0  # the command still runs
        await fake.slash("stop")
        await fake.wait_until(
            lambda: any(STOPPED_BEFORE in m["content"] for m in _by_bot(fake)), 30
        )
        assert await bot.stop() == 0
    stop = next(r for r in fake.responses if "question waiting" in str(r["data"].get("content")))
    assert stop["data"]["content"] == "Stopped your question waiting here: it will not be answered."
    assert int(stop["data"]["flags"]) & 64  # the stopper's eyes only
    [said] = [m for m in _by_bot(fake) if STOPPED_BEFORE in m["content"]]
    assert str(said["message_reference"]["message_id"]) == str(asked)
    assert endpoint.requests == []  # never asked
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        stored = conn.execute("SELECT count(*) FROM messages").fetchone()
    assert stored == (0,) and _waiting_rows(db) == 0
