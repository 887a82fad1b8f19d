"""Discord failing the bot's calls (connections cut, a response lost on its way back), on
the loopback fake with the real discord.py client: an answer none of whose pages could be
posted, a slash command whose response did not get through."""

from __future__ import annotations

import logging

import pytest

from bot.commands import Invocation
from bot.core import Core, split_text
from bot.types import Actor, ChannelRef, Platform
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import running

TOKEN = "loopback.bot.token-failing-0123456789"


def _ref(fake: FakeDiscord) -> ChannelRef:
    return ChannelRef(Platform.DISCORD, str(fake.channel_id), str(fake.guild_id))


def _replies(fake: FakeDiscord) -> list[str]:
    """What the bot said to slash commands: responses with a message, then follow-ups."""
    said = [str(r["data"]["content"]) for r in fake.responses if r.get("type") == 4]
    return said + [str(f.get("content", "")) for f in fake.followups]


def _ran(caplog: pytest.LogCaptureFixture, command: str) -> int:
    return sum(f"ran {command} in" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("lost", ["dropped", "answer lost"])
async def test_a_command_reply_whose_response_failed_still_reaches_the_user(
    core: Core, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture, lost: str
) -> None:
    """The response to a slash command cut on its way (not shown), or shown but its answer
    cut on the way back: the reply was lost (a reply's second page too, sent as a second
    response), and the command done without a word. Now each page is said once, and the
    command ran once."""
    caplog.set_level(logging.INFO, logger="bot")
    member = Actor(str(FakeDiscord.user_id), "bob")
    help_text = (await core.run_command(_ref(FakeDiscord), member, Invocation(("help",), {}))).text
    pages = split_text(help_text, 2000)
    assert len(pages) == 2
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with running(core, fake):
            if lost == "dropped":
                fake.drop_callbacks = 1
            else:
                fake.lose_callbacks = 1
            await fake.slash("help")
            await fake.wait_until(lambda: len(_replies(fake)) >= 2, 30)
            await fake.slash("settings")  # handled after the first reply's pages went
            await fake.wait_until(lambda: len(_replies(fake)) >= 3, 30)
    finally:
        await fake.stop()
    said = [s for s in _replies(fake) if not s.startswith("Source: custom")]
    assert said == pages
    assert _ran(caplog, "/help") == 2  # the one above, and the slash command's once


@pytest.mark.parametrize("lost", ["dropped", "answer lost"])
async def test_a_slow_command_whose_thinking_failed_runs_once_and_says_so(
    core: Core, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture, lost: str
) -> None:
    """ "Thinking…" (the deferral) of a slow command cut on its way: the command was
    cancelled halfway and "something went wrong" said; or shown, its answer lost: the
    reply went as a second response, refused, and "thinking…" stayed. Now the command
    runs once to its end and its reply is said once."""
    caplog.set_level(logging.INFO, logger="bot")
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with running(core, fake):
            if lost == "dropped":
                fake.drop_callbacks = 1
            else:
                fake.lose_callbacks = 1
            await fake.slash("connect", manager=True)
            await fake.wait_until(lambda: bool(_replies(fake)), 30)
            await fake.slash("settings")  # handled after the first reply went
            await fake.wait_until(lambda: len(_replies(fake)) >= 2, 30)
    finally:
        await fake.stop()
    said = [s for s in _replies(fake) if not s.startswith("Source: custom")]
    assert said == ["Status check: OK — 2 models available."]
    assert _ran(caplog, "/connect") == 1
    config = await core.store.effective_config(_ref(fake))
    assert config.status is not None and config.status.ok
