"""`!usage` on a real Synapse: the text as a notice, then the chart as an m.image (in an
encrypted room, uploaded encrypted: the homeserver holds only ciphertext)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import nio
import pytest
from nio.crypto import decrypt_attachment

from bot.types import UsageRecord
from tests.matrix.helpers import UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_usage_posts_its_chart(
    synapse_server: SynapseServer, tmp_path: Path, encrypted: bool
) -> None:
    server = synapse_server
    bot = server.register("usagebot")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
            room_id = await alice.create_room([bot.user_id], encrypted=encrypted)
            await alice.wait_joined(room_id, bot.user_id)
            await core.store.record_usage(
                UsageRecord(
                    at=datetime.now(UTC),
                    platform="matrix",
                    server_id="",
                    channel_id=room_id,
                    thread_id="",
                    user_id=alice.user.user_id,
                    source="custom",
                    model="smollm2",
                    input_tokens=120,
                    output_tokens=30,
                )
            )
            text = await alice.command(room_id, bot.user_id, "!usage week")
            # A room of alice and the bot: their direct chat, as the bot calls it.
            assert "This direct chat's usage" in text and "150 tokens" in text, text
            kinds = (nio.RoomEncryptedImage,) if encrypted else (nio.RoomMessageImage,)
            [seen] = await alice.wait_for(
                lambda: [
                    s for s in alice.seen if s.room_id == room_id and isinstance(s.event, kinds)
                ],
                "the chart",
            )
            event = seen.event
            assert event.body == "usage-channel-week.png"
            response = await alice.client.download(mxc=event.url)
            assert isinstance(response, nio.MemoryDownloadResponse), response
            data = response.body
            if encrypted:
                assert not data.startswith(PNG)  # the homeserver has only ciphertext
                data = decrypt_attachment(data, event.key["k"], event.hashes["sha256"], event.iv)
            assert data.startswith(PNG)
    finally:
        await alice.close()
        await core.close()
