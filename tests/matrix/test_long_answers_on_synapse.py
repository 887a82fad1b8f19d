"""Long answers in scripts other than English reach a real Synapse whole, in an encrypted
room: every page and every edit stays under the homeserver's 64 KiB, however many bytes
a character takes (Chinese edits were refused with M_TOO_LARGE at about 10,900 of them)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest

from bot.types import ChannelRef, Platform, Role
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse

# Chinese with **bold** (HTML too), emoji sequences, a Hindi line: ~14,000 characters.
SENTENCE = "这是一个**很长**的中文句子，没有空格。👨‍👩‍👧‍👦👍🏽🇯🇵 नमस्ते दुनिया।\n"
ANSWER = (SENTENCE * 300).strip()


async def test_a_long_answer_in_chinese_and_emoji_arrives_whole(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.frontends.matrix")
    bot = synapse_server.register("longbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        async with (
            SSEEndpoint(chunks=40, span=4.0, text=ANSWER) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path) as core,
        ):
            room_id = await alice.create_room([bot.user_id], encrypted=True)
            await alice.wait_joined(room_id, bot.user_id)
            after = time.monotonic()
            await alice.send(room_id, f"{bot.user_id}: a long one please")
            ref = ChannelRef(Platform.MATRIX, channel_id=room_id)

            def shown() -> str:
                pages = alice.messages(room_id, bot.user_id, after)
                return "".join(alice.shown_text(str(p.event.event_id)) for p in pages)

            async def saved() -> list[str]:
                history = await core.store.history(ref, 10)
                return [e.content for e in history if e.role is Role.ASSISTANT]

            def bare(text: str) -> str:  # pages are cut at white space, which goes
                return re.sub(r"\s+", "", text)

            deadline = time.monotonic() + 120
            while not await saved() or bare(shown()) != bare(ANSWER):
                assert time.monotonic() < deadline, (len(shown()), len(ANSWER))
                await asyncio.sleep(0.5)
            pages = alice.messages(room_id, bot.user_id, after)
            assert await saved() == [ANSWER]
    finally:
        await alice.close()
    assert len(pages) > 1  # it needed several pages
    assert "M_TOO_LARGE" not in caplog.text and "too large" not in caplog.text
    assert "M_TOO_LARGE" not in synapse_server.log_text()
