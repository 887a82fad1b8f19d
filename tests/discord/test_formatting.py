"""How an answer's Markdown reads on Discord, page by page, through the real discord.py
client: every message the bot posts or edits renders as the whole answer means it."""

from __future__ import annotations

import re

import pytest

from tests.discord.conftest import World
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import bot_messages

pytestmark = pytest.mark.simcord(settle_timeout=30)


def shown_texts(world: World, start: int) -> list[str]:
    """The content of every post and edit of the channel's messages since request `start`."""
    path = f"/channels/{world.channel.id}/messages"
    return [
        str(r.json["content"])
        for r in world.env.http_requests[start:]
        if r.method in ("POST", "PATCH")
        and r.path.startswith(path)
        and isinstance(r.json, dict)
        and "content" in r.json
    ]


def fence_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if re.match(r"\s*```", line)]


async def test_code_streams_and_ends_as_a_code_block_with_the_error_after_it(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Discord shows an unclosed fence as raw backticks: a code block streamed as
    "```python" and plain text until its closing fence came, and an answer cut off inside
    one (an error, ⏹, the length cap) kept it so for good, the error line read as code."""
    code = [f"print({i})\n" for i in range(30)]
    endpoint.script.chunks = ["Here you go:\n```python\n", *code, "print('never sent')\n```\n"]
    endpoint.script.interval = 0.1  # a paced edit or two while the block is open
    endpoint.script.fail_after = len(code) + 1  # cut off inside the block
    start = len(world.env.http_requests)
    await world.member.send(world.channel, f"<@{world.bot_id}> write some code")
    shown = shown_texts(world, start)
    assert len(shown) >= 2, shown
    for text in shown:  # every version of the message: the block closed
        assert len(fence_lines(text)) % 2 == 0, text
    [final] = bot_messages(world.channel, world.bot_id)
    body, _, error = final.partition("\n```\n\n⚠️ ")
    assert body == endpoint.script.answer.rstrip("\n")
    assert "overloaded" in error and "```" not in error
