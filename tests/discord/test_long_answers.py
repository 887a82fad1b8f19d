"""An answer too long for MAX_MESSAGES messages whose file cannot go (the real discord.py
client in this process, on the loopback Discord): the last message says so, with the
buttons, and nobody is told the bot may not answer there."""

from __future__ import annotations

from bot.core import Core
from bot.frontends.discord.sink import FILE_FAILED, FILE_NOT_ALLOWED, MAX_MESSAGES
from tests.discord.fake_discord import ATTACH_FILES, FakeDiscord
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import running

TOKEN = "loopback.bot.token-long-0123456789"


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
