"""Slash commands in different channels at once: `chatbot run` as its own process against
the loopback fake Discord, one channel's endpoint slow to list its models. A command
waiting on it must hold up no command in another channel (a community bot's every
channel would stall behind one slow status check), and channels asking the same
endpoint at once share one request."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script, fake_openai

TOKEN = "loopback.bot.token-concurrent-0123456"


async def test_a_slow_status_check_in_one_channel_holds_up_no_command_in_another(
    tmp_path: Path,
) -> None:
    """Bob runs /connect in #a and #c, whose endpoint (the operator's default) has not
    answered yet, and then /connect, /settings and /models external in #b, which has an
    endpoint of its own: #b's replies all come while #a's and #c's still wait, and once
    the slow endpoint answers, #a and #c get its one answer. The fake matched a reply to
    whichever command was waiting (each took the first shown after it): #b's replies were
    taken as #a's, so a test could not see which command was answered when."""
    fake = FakeDiscord(TOKEN, channels=3)
    a, b, c = fake.channel_id, fake.channel_id + 1, fake.channel_id + 2
    held = asyncio.Event()  # the slow endpoint's model list answers once this is set
    async with (
        fake_openai(Script(models=["m-small"])) as own,
        chatbot_run(tmp_path, fake, Script(models_gate=held)) as (bot, slow),
    ):
        said = await fake.command_says("proxy", "set", url=own.url_v1, channel_id=b)
        assert "Status check: OK — 1 model available." in said, said

        waiting = [
            asyncio.create_task(fake.command_says("connect", channel_id=where)) for where in (a, c)
        ]
        while slow.models_asked < 1:  # noqa: ASYNC110 (a count the endpoint keeps)
            await asyncio.sleep(0.01)
        connected, settings, external = await asyncio.gather(
            fake.command_says("connect", channel_id=b),
            fake.command_says("settings", channel_id=b),
            fake.command_says("models", "external", channel_id=b),
        )
        assert connected.startswith("Status check: OK — 1 model available."), connected
        assert f"Endpoint: {own.url_v1}" in settings, settings
        assert "The endpoint offers: m-small" in external and "m-large" not in external, external
        # #b is answered in full while the slow endpoint still holds #a's and #c's checks.
        assert not any(task.done() for task in waiting), [t.result() for t in waiting if t.done()]

        held.set()
        for answer in await asyncio.gather(*waiting):
            assert answer.startswith("Status check: OK — 2 models available."), answer
        assert slow.models_asked == 1  # #c's check joined #a's request
        await bot.stop()
    assert "Traceback" not in bot.log
