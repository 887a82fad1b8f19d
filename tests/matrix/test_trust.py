"""MATRIX_TRUST_DEVICES=verified: unverified devices get no room key, so cannot read the bot."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import nio
import pytest

from tests.matrix.helpers import UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse


@pytest.mark.parametrize("trust", ["unverified", "verified"])
async def test_who_can_read_the_bot_in_an_encrypted_room(
    synapse_server: SynapseServer, tmp_path: Path, trust: str
) -> None:
    bot = synapse_server.register("bot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    try:
        options = bot_options(synapse_server, bot, tmp_path / "store", trust_devices=trust)
        async with running_bot(core, options):
            room_id = await alice.create_room([bot.user_id], encrypted=True)
            await alice.wait_joined(room_id, bot.user_id)
            after = time.monotonic()
            await alice.send(room_id, "!settings")

            def from_bot() -> list[object]:
                return [
                    s.event
                    for s in alice.seen
                    if s.room_id == room_id
                    and s.at >= after
                    and getattr(s.event, "sender", "") == bot.user_id
                    and isinstance(s.event, (nio.RoomMessageNotice, nio.MegolmEvent))
                ]

            answer = (await alice.wait_for(from_bot, "the bot's answer"))[0]
    finally:
        await alice.close()
        await core.close()
    if trust == "unverified":
        assert isinstance(answer, nio.RoomMessageNotice)  # alice's device got the key
    else:
        assert isinstance(answer, nio.MegolmEvent)  # sent, but not for alice's device


async def test_without_e2ee_it_answers_in_plain_rooms_and_never_leaks_into_encrypted_ones(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.frontends.matrix")
    bot = synapse_server.register("bot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    try:
        options = bot_options(synapse_server, bot, tmp_path / "store", e2ee=False)
        async with running_bot(core, options):
            secret_room = await alice.create_room([bot.user_id], encrypted=True)
            plain_room = await alice.create_room([bot.user_id])
            await alice.wait_joined(secret_room, bot.user_id)
            await alice.wait_joined(plain_room, bot.user_id)
            # A client that sends in the clear into an encrypted room: the bot reads it,
            # but must not answer in the clear there.
            path = f"/_matrix/client/v3/rooms/{secret_room}/send/m.room.message/t{time.time_ns()}"
            body = {"msgtype": "m.text", "body": "!settings"}
            await asyncio.to_thread(synapse_server.put, path, body, alice.user.access_token)
            assert "Source:" in await alice.command(plain_room, bot.user_id, "!settings")
            await alice.command(plain_room, bot.user_id, "!help")
            assert alice.messages(secret_room, bot.user_id) == []
            assert "MATRIX_E2EE is off" in caplog.text
    finally:
        await alice.close()
        await core.close()
