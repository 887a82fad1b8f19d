"""An answer too long for MAX_MESSAGES messages whose file cannot go (the real discord.py
client in this process, on the loopback Discord): the last message says so, with the
buttons, and nobody is told the bot may not answer there."""

from __future__ import annotations

import asyncio

import pytest

from bot.conversation.pacing import STALE_NOTE
from bot.core import Core
from bot.frontends.discord import sink
from bot.frontends.discord.sink import (
    ANSWER_FILE,
    FILE_ATTACHED,
    FILE_FAILED,
    FILE_NOT_ALLOWED,
    MAX_MESSAGES,
)
from bot.types import ChannelRef, Platform
from tests.discord.fake_discord import ATTACH_FILES, FakeDiscord
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import running

TOKEN = "loopback.bot.token-long-0123456789"
REF = (Platform.DISCORD, str(FakeDiscord.channel_id), str(FakeDiscord.guild_id))


async def test_without_attach_files_the_last_message_says_the_rest_is_kept(
    core: Core, endpoint: FakeOpenAI
) -> None:
    fake = FakeDiscord(TOKEN, bot_denied=ATTACH_FILES)
    await _long_answer(core, endpoint, fake, FILE_NOT_ALLOWED)
    assert not [c for c in fake.calls if isinstance(c.body, dict) and c.body.get("files")]
    assert fake.dms == []  # it may answer here: no word about a missing permission


async def test_a_file_discord_refuses_is_said_on_the_last_message(
    core: Core, endpoint: FakeOpenAI
) -> None:
    fake = FakeDiscord(TOKEN, refuse_files=True)
    await _long_answer(core, endpoint, fake, FILE_FAILED)
    assert [c for c in fake.calls if isinstance(c.body, dict) and c.body.get("files")]
    assert fake.dms == []


async def _long_answer(core: Core, endpoint: FakeOpenAI, fake: FakeDiscord, note: str) -> None:
    """The pages of an answer too long for MAX_MESSAGES, once settled with `note` last."""
    endpoint.script.chunks = [f"Line {i}: on and on it goes.\n" for i in range(700)]
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> tell me everything")

            def ended() -> bool:  # settled: the buttons on the last message alone
                shown = list(fake.messages.values())
                said = any(note in m["content"] for m in shown)
                return said and [bool(m["components"]) for m in shown][-2:] == [False, True]

            await fake.wait_until(ended, 30)
    finally:
        await fake.stop()
    pages = list(fake.messages.values())
    assert len(pages) == MAX_MESSAGES
    assert pages[-1]["content"].endswith(f"\n\n{note}")
    assert "cc:regen:" in str(pages[-1]["components"])
    assert not any(m["attachments"] for m in pages)


async def test_a_long_answer_whose_edits_fail_once_it_took_all_its_messages_gets_its_file(
    core: Core, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discord failing every edit (the connection cut each time) while an answer too long
    for MAX_MESSAGES streamed, all its messages posted by then: the last kept "The rest
    follows as a file when the answer ends." and no file came (attaching it is an edit,
    failed too); only the log said so. Now one message more follows, the answer sent again
    from the first stuck message, with the file the note promised."""
    monkeypatch.setattr(sink, "RETRY_PAUSE", 0.01)
    endpoint.script.chunks = [f"Line {i}: on and on it goes, and on.\n" for i in range(400)]
    endpoint.script.interval = 0.01  # about 4 s: all five messages are posted meanwhile
    fake = FakeDiscord(TOKEN, drop_edits=1_000_000)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> tell me everything")
            await fake.wait_until(lambda: any(m["attachments"] for m in fake.messages.values()), 30)
            for _ in range(500):  # settled: the answer tied to its messages, the last too
                found = await core.newest_answer_posts(ChannelRef(*REF))
                if found is not None and len(found[1]) == MAX_MESSAGES + 1:
                    break
                await asyncio.sleep(0.02)
    finally:
        await fake.stop()
    *pages, extra = fake.messages.values()
    assert len(pages) == MAX_MESSAGES, [m["content"][:40] for m in pages]
    assert pages[0]["content"].startswith("Line 0: ")
    assert not any(m["attachments"] for m in pages)
    assert extra["content"].startswith(f"⚠️ {STALE_NOTE}\n\nLine 0: ")
    assert extra["content"].endswith(f"\n\n{FILE_ATTACHED}") and len(extra["content"]) <= 2000
    assert fake.attached(extra) == {ANSWER_FILE: endpoint.script.answer.encode()}
