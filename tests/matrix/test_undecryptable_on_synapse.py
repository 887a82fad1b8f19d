"""Encrypted messages the bot cannot read, on a real Synapse: what a member's own client
encrypted is read by the bot alone (the homeserver holds only ciphertext), so nothing
in it has passed any check."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import nio
import pytest

from bot.types import ChannelRef, Platform, Role
from tests.matrix.helpers import WAIT, SSEEndpoint, bot_answering_from
from tests.peers.synapse import MatrixUser, SynapseServer

pytestmark = pytest.mark.synapse


async def _client(server: SynapseServer, user: MatrixUser, store: Path) -> nio.AsyncClient:
    """A member's E2EE client that syncs only when told (a client that read what it sends
    here would fail on it as the bot had)."""
    await asyncio.to_thread(store.mkdir, parents=True, exist_ok=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    client = nio.AsyncClient(server.url, user.user_id, store_path=str(store), config=config)
    client.restore_login(user.user_id, user.device_id, user.access_token)
    await client.sync(timeout=0, full_state=True)
    return client


async def _send_raw(client: nio.AsyncClient, room_id: str, plaintext: str) -> None:
    """An m.room.encrypted event whose plaintext is `plaintext` as written, encrypted
    with the session the member's client shared with the room."""
    olm = client.olm
    assert olm is not None
    session = olm.outbound_group_sessions[room_id]
    content = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "sender_key": olm.account.identity_keys["curve25519"],
        "ciphertext": session.encrypt(plaintext),
        "session_id": session.id,
        "device_id": client.device_id,
    }
    method, path, data = nio.Api.room_send(
        client.access_token, room_id, "m.room.encrypted", content, uuid.uuid4()
    )
    response = await client._send(nio.RoomSendResponse, method, path, data, (room_id,))
    assert isinstance(response, nio.RoomSendResponse), response


def _joined(client: nio.AsyncClient, room_id: str, user_id: str) -> bool:
    room = client.rooms.get(room_id)
    member = room.users.get(user_id) if room is not None else None
    return member is not None and not member.invited


async def test_a_message_nested_too_deep_to_read_stops_nothing(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hostile probe: an encrypted message whose JSON is thousands of `[` deep (within an
    event's 64 KiB) made decrypting it raise out of the sync: the Matrix front-end
    stopped, and with it the bot."""
    caplog.set_level(logging.INFO, logger="bot")
    bot = synapse_server.register("deepbot")
    mallory = synapse_server.register("mallory")
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        async with bot_answering_from(synapse_server, bot, endpoint, tmp_path) as core:
            client = await _client(synapse_server, mallory, tmp_path / "mallory")
            try:
                created = await client.room_create(
                    is_direct=True,
                    preset=nio.RoomPreset.trusted_private_chat,
                    invite=[bot.user_id],
                    initial_state=[
                        {
                            "type": "m.room.encryption",
                            "state_key": "",
                            "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                        }
                    ],
                )
                assert isinstance(created, nio.RoomCreateResponse), created
                room_id = created.room_id
                ref = ChannelRef(Platform.MATRIX, channel_id=room_id)

                async def answered(n: int) -> None:
                    deadline = time.monotonic() + WAIT
                    while True:
                        history = await core.store.history(ref, 50)
                        if len([e for e in history if e.role is Role.ASSISTANT]) >= n:
                            return
                        assert time.monotonic() < deadline, "no answer"
                        await asyncio.sleep(0.2)

                deadline = time.monotonic() + WAIT
                while not _joined(client, room_id, bot.user_id):
                    assert time.monotonic() < deadline, "the bot never joined"
                    await client.sync(timeout=500)

                async def say(text: str) -> None:
                    content = {"msgtype": "m.text", "body": text}
                    sent = await client.room_send(
                        room_id, "m.room.message", content, ignore_unverified_devices=True
                    )
                    assert isinstance(sent, nio.RoomSendResponse), sent

                await say("hello before")
                await answered(1)
                depth = 20_000
                deep = '{"type": "m.room.message", "content": {"msgtype": "m.text", "body": "x", '
                deep += f'"x": {"[" * depth}{"]" * depth}}}, "room_id": "{room_id}"}}'
                await _send_raw(client, room_id, deep)
                await say("hello after")
                await answered(2)
                history = await core.store.history(ref, 50)
                questions = [e.content for e in history if e.role is Role.USER]
                assert questions == ["hello before", "hello after"]
                said = [r.getMessage() for r in caplog.records if r.name.startswith("bot.")]
                unread = [m for m in said if m.startswith("cannot read an encrypted message")]
                assert len(unread) == 1 and "RecursionError" in unread[0], said
                assert not [m for m in said if "no room key yet" in m], said
            finally:
                await client.close()
