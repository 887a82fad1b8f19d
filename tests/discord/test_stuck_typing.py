"""Discord's typing endpoint failing the bot (a call that never answers, a 429 asking an
hour that discord.py sleeps out), with the real discord.py client on the loopback fake:
"typing…" is a courtesy, and holds neither the answer nor the channel's next question
more than patience.TYPING_PATIENCE (shortened here)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.conversation import patience
from bot.core import Core
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import running

TOKEN = "loopback.bot.token-typing-0123456789"


def _by_bot(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.messages.values() if m["author"]["id"] == str(fake.bot_id)]


@pytest.mark.parametrize("fault", ["hang", "429"])
async def test_a_typing_call_discord_never_answers_holds_no_answer(
    core: Core, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """Review of typing10: the first text of an answer waited for the typing call under
    way to land (so "typing…" never shows over it); a typing call Discord never answered
    (discord.py's session gives up after 5 minutes) or answered with a 429 asking an hour
    (which discord.py sleeps out) held the answer, and every next question in the
    channel, that long. Now it waits TYPING_PATIENCE at most, and the call lands by
    itself; the next answer starts no typing call behind the stuck one."""
    monkeypatch.setattr(patience, "TYPING_PATIENCE", 0.5)  # 5 s in production
    endpoint.script.chunks = ["slow ", "answer"]
    endpoint.script.first_token = 1.0  # "typing…" shows at 0.5 s
    fake = FakeDiscord(TOKEN, typing_retry_after=3600.0 if fault == "429" else 0.0)
    await fake.start()
    if fault == "hang":
        fake.typing_open.clear()  # until the fake stops
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> take your time")
            await fake.wait_until(lambda: fake.typings == 1, 30)
            await fake.wait_until(lambda: len(_by_bot(fake)) == 1, 20)
            await fake.wait_until(lambda: _by_bot(fake)[0]["content"] == "slow answer", 20)
            await fake.user_says(f"<@{fake.bot_id}> and then")
            await fake.wait_until(lambda: len(_by_bot(fake)) == 2, 20)
            await fake.wait_until(lambda: _by_bot(fake)[1]["content"] == "slow answer", 20)
    finally:
        await fake.stop()
    assert fake.typings == 1  # none queued behind the stuck one
