"""With Synapse's default rc_message for the bot, a long streamed answer still arrives whole."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from pathlib import Path

import pytest

from bot.types import ChannelConfig, ChannelRef, Platform, Role, Source
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import DEFAULT_MESSAGE_BURST, SynapseServer

pytestmark = pytest.mark.synapse


async def test_rate_limited_bot_loses_no_edit(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.frontends.matrix")
    bot = synapse_server.register("limitedbot", rate_limited=True)  # Synapse's default limit
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    # 100 chunks over 14 s, after the bot's burst is spent: every event it tries may
    # meet a 429, and the stream outlasts several retry_after waits.
    async with SSEEndpoint(chunks=100, span=14.0) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        try:
            async with running_bot(core, bot_options(synapse_server, bot, tmp_path / "store")):
                room_id = await alice.create_room([bot.user_id])
                await alice.wait_joined(room_id, bot.user_id)
                await _spend_the_burst(synapse_server, bot.access_token, room_id)

                after = time.monotonic()
                await alice.send(room_id, f"{bot.user_id}: stream please")
                first = await alice.reply_to(room_id, bot.user_id, after, "the first event")
                ref = ChannelRef(Platform.MATRIX, channel_id=room_id)

                async def saved() -> list[str]:
                    history = await core.store.history(ref, 10)
                    return [e.content for e in history if e.role is Role.ASSISTANT]

                deadline = time.monotonic() + 150
                while not await saved() or alice.shown_text(first.event.event_id) != (
                    endpoint.answer()
                ):
                    assert time.monotonic() < deadline, alice.shown_text(first.event.event_id)
                    await asyncio.sleep(0.5)
        finally:
            await core.close()
            await alice.close()
    assert [a.strip() for a in await saved()] == [endpoint.answer()]
    assert len(alice.edits_of(first.event.event_id)) >= 2  # it streamed, not just sent once
    # The homeserver really refused some of the bot's events, and the bot waited them out.
    assert "rate-limits the bot" in caplog.text
    assert " 429 " in synapse_server.log_text() or "M_LIMIT_EXCEEDED" in synapse_server.log_text()


async def _spend_the_burst(server: SynapseServer, token: str, room_id: str) -> None:
    """Send as the bot's own account until Synapse says 429: the bucket is then empty."""
    room = urllib.parse.quote(room_id)
    for n in range(DEFAULT_MESSAGE_BURST + 5):
        path = f"/_matrix/client/v3/rooms/{room}/send/m.room.notice/burn{n}-{time.time_ns()}"
        try:
            await asyncio.to_thread(
                server.put, path, {"msgtype": "m.notice", "body": "burn"}, token
            )
        except OSError as err:  # urllib's HTTPError: the 429 we wanted
            if getattr(err, "code", 0) == 429:
                return
            raise
    raise AssertionError("Synapse never rate-limited the bot user")
