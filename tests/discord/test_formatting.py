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


async def test_reasoning_longer_than_a_message_stays_hidden_on_every_page(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Shown reasoning is a spoiler before the answer. Longer than a message, its `||`
    opened on the first page and closed on the last: Discord showed both as raw `||`
    and every word of the reasoning in the clear. Each page now closes the spoiler it
    holds and the next opens it again."""
    result = await world.admin.slash(world.channel, "params", name="reasoning", value="on")
    assert result.response is not None and "reasoning set to on" in result.response.content
    steps = [f"Step {i}: weigh option {i} against the others, then go on.\n\n" for i in range(60)]
    endpoint.script.chunks = ["<think>", *steps, "</think>", "The answer is 42."]
    await world.member.send(world.channel, f"<@{world.bot_id}> think hard")
    pages = bot_messages(world.channel, world.bot_id)
    assert len(pages) >= 2 and all(len(p) <= 2000 for p in pages)
    assert pages[0].startswith("||💭 Step 0: ")
    for page in pages:
        hidden, _, shown = page.rpartition("||")
        # Each page's reasoning between one pair of marks, nothing of it after them.
        assert page.startswith("||") and hidden.count("||") == 1, page
        assert "Step" not in shown, page
    assert pages[-1].endswith("||\n\nThe answer is 42.")
    said = " ".join(p.replace("||", " ").replace("💭", " ") for p in pages).split()
    assert said == " ".join([*steps, "The answer is 42."]).split()
