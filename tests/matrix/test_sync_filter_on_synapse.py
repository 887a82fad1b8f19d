"""What the bot's syncs bring from a real Synapse: its rooms' messages, not everyone's
typing notices and read receipts."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nio
import pytest

from bot.frontends.matrix.api import MatrixApi
from bot.frontends.matrix.client import MatrixBot, client_config
from bot.frontends.matrix.messages import MessageHandler
from bot.frontends.matrix.sink import RatePace
from tests.matrix.helpers import UserClient, make_core
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]


async def test_others_typing_and_read_receipts_are_not_synced(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Every sync brought the typing notices and read receipts of everyone in the bot's
    rooms (and their presence, and account data), parsed by nio on the bot's one event
    loop and never used: in a busy room, most of what it read. The bot's sync filter
    leaves them out; its rooms' messages and commands come as before."""
    bot_user = synapse_server.register("filtered-bot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    client = nio.AsyncClient(synapse_server.url, bot_user.user_id, config=client_config(False))
    client.restore_login(bot_user.user_id, bot_user.device_id, bot_user.access_token)
    api = MatrixApi(client, "unverified", RatePace())
    bot = MatrixBot(client, MessageHandler(core, api, 50), api, ())
    running = asyncio.create_task(bot.run())
    try:
        room_id = await alice.create_room([bot_user.user_id])
        await alice.wait_joined(room_id, bot_user.user_id)
        said = await alice.send(room_id, "hello, everyone")
        await alice.client.room_typing(room_id, typing_state=True, timeout=30_000)
        await alice.client.update_receipt_marker(room_id, said)
        # A command the bot answers: its syncs have reached past the typing and receipt.
        assert "Source:" in await alice.command(room_id, bot_user.user_id, "!settings")
        room = client.rooms[room_id]
        assert room.typing_users == []
        assert room.read_receipts == {}
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await bot.close()
        await client.close()
        await alice.close()
        await core.close()
