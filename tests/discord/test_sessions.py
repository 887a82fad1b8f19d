"""A new gateway session (Discord invalidated the old one: READY and the guilds again)
in the middle of a character's answer, with a question waiting behind it: the real
discord.py client in this process, on the loopback Discord."""

from __future__ import annotations

import json

from bot.core import Core
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import running
from tests.discord.test_persona import _answered, _by_webhook, _fake, _import


async def test_a_new_session_loses_no_answer_no_waiting_question_and_no_webhook(
    core: Core, endpoint: FakeOpenAI
) -> None:
    fake = await _fake(manage_webhooks=True)
    endpoint.script.chunks = [f"w{i} " for i in range(20)] + ["end"]
    endpoint.script.interval = 0.1
    try:
        await _import(core, fake)
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> one")
            await fake.wait_until(lambda: bool(_by_webhook(fake)), 30)  # streaming
            await fake.user_says(f"<@{fake.bot_id}> two")  # waits for its turn
            await fake.invalidate_session(resumable=False)
            await fake.wait_until(lambda: fake.identifies == 2 and _answered(fake, 2), 60)
            endpoint.script.interval = 0.0
            await fake.user_says(f"<@{fake.bot_id}> three")  # heard in the new session
            await fake.wait_until(lambda: _answered(fake, 3), 30)
        answers = _by_webhook(fake)
        assert [m["content"] for m in answers] == [endpoint.script.answer] * 3
        assert len(endpoint.requests) == 3
        asked = [json.dumps(r["messages"]) for r in endpoint.requests]
        assert ["one" in a for a in asked] == [True, True, True]  # each asked once, in order
        assert ["two" in a for a in asked] == [False, True, True]
        assert ["three" in a for a in asked] == [False, False, True]
        # One webhook, looked up once: the new session kept what the bot knew of it.
        assert len(fake.webhooks) == 1
        assert len(fake.bot_calls("GET", f"/channels/{fake.channel_id}/webhooks")) == 1
        assert len(fake.bot_calls("POST", f"/channels/{fake.channel_id}/webhooks")) == 1
    finally:
        await fake.stop()
