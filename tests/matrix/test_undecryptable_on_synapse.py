"""Encrypted messages the bot cannot read, on a real Synapse: what a member's own client
encrypted is read by the bot alone (the homeserver holds only ciphertext), so nothing
in it has passed any check."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import nio
import pytest
from nio.crypto import OutboundGroupSession
from unpaddedbase64 import encode_base64

from bot.frontends.matrix import decide
from bot.types import ChannelRef, Platform, Role
from tests.matrix.helpers import WAIT, SSEEndpoint, UserClient, bot_answering_from
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


async def _send_raw(
    client: nio.AsyncClient,
    room_id: str,
    plaintext: str,
    session: OutboundGroupSession | None = None,
    relates_to: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """An m.room.encrypted event whose plaintext is `plaintext` as written, encrypted
    with `session` (default: the one the member's client shared with the room); its
    event id and ciphertext. `relates_to`: its relation, in the clear as clients send it."""
    olm = client.olm
    assert olm is not None
    session = session or olm.outbound_group_sessions[room_id]
    ciphertext = session.encrypt(plaintext)
    content: dict[str, Any] = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "sender_key": olm.account.identity_keys["curve25519"],
        "ciphertext": ciphertext,
        "session_id": session.id,
        "device_id": client.device_id,
    }
    if relates_to is not None:
        content["m.relates_to"] = relates_to
    method, path, data = nio.Api.room_send(
        client.access_token, room_id, "m.room.encrypted", content, uuid.uuid4()
    )
    response = await client._send(nio.RoomSendResponse, method, path, data, (room_id,))
    assert isinstance(response, nio.RoomSendResponse), response
    return str(response.event_id), ciphertext


def _unshared() -> OutboundGroupSession:
    """A session the sender's app kept from the bot: its key never reaches it."""
    session = OutboundGroupSession()
    session.shared = True  # with nobody: nio's own check, not the homeserver's
    return session


def _message(room_id: str, body: str) -> str:
    """A text message's plaintext as a client encrypts it."""
    content = {"msgtype": "m.text", "body": body}
    return json.dumps({"type": "m.room.message", "content": content, "room_id": room_id})


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


async def test_a_message_whose_key_never_comes_is_said_once_to_its_sender(
    synapse_server: SynapseServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An encrypted message whose room key never reached the bot (the sender's app kept it
    from the bot's session) was only logged, after 5 minutes: in a direct chat its sender
    heard nothing, ever. Now, once its key has had time to come, they are told once what
    to do; in a group room, only when the message was for the bot (a reply to it)."""
    monkeypatch.setattr(decide, "UNREAD_NOTICE_AFTER", 1.0)  # 60 s in a real room
    caplog.set_level(logging.INFO, logger="bot")
    bot = synapse_server.register("utdbot")
    bob = synapse_server.register("bob")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        async with bot_answering_from(synapse_server, bot, endpoint, tmp_path):
            try:
                dm = await alice.create_room([bot.user_id], encrypted=True, direct=True)
                await alice.wait_joined(dm, bot.user_id)
                after = time.monotonic()
                await alice.send(dm, "hello")
                await alice.reply_to(dm, bot.user_id, after, "the answer to a readable message")

                lost = _unshared()
                after = time.monotonic()
                first, ciphertext = await _send_raw(
                    alice.client, dm, _message(dm, "where is my answer?"), lost
                )
                await _send_raw(alice.client, dm, _message(dm, "and this one?"), lost)
                notice = await alice.reply_to(dm, bot.user_id, after, "the unread notice")
                content = notice.content
                assert content["msgtype"] == "m.notice"
                assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": first}}
                body = str(content["body"])
                assert body.startswith("I could not read your message"), body
                assert "Send it again" in body and "verify" in body, body

                def unread() -> list[str]:
                    return [
                        r.getMessage()
                        for r in caplog.records
                        if r.getMessage().startswith("could not read a message")
                    ]

                await alice.wait_for(lambda: len(unread()) == 2, "both given up on")
                later = time.monotonic()
                await alice.send(dm, "hello again")
                await alice.reply_to(dm, bot.user_id, later, "the next readable message's answer")
                said = [str(s.content["body"]) for s in alice.messages(dm, bot.user_id, after)]
                assert len([b for b in said if b.startswith("I could not read")]) == 1, said

                # A group room: only a message for the bot (a reply to it) gets the notice.
                group = await alice.create_room([bot.user_id, bob.user_id], encrypted=True)
                await alice.wait_joined(group, bot.user_id)
                after = time.monotonic()
                await alice.send(group, f"{bot.user_id}: hi")
                answer = await alice.reply_to(group, bot.user_id, after, "the group's answer")
                lost_here = _unshared()
                after = time.monotonic()
                chatter, _ = await _send_raw(
                    alice.client, group, _message(group, "lunch?"), lost_here
                )
                reply = {"m.in_reply_to": {"event_id": answer.event.event_id}}
                asked, _ = await _send_raw(
                    alice.client, group, _message(group, "why?"), lost_here, relates_to=reply
                )
                told = await alice.reply_to(group, bot.user_id, after, "the group's notice")
                assert told.content["m.relates_to"] == {"m.in_reply_to": {"event_id": asked}}
                later = time.monotonic()
                await alice.send(group, f"{bot.user_id}: still there?")
                await alice.reply_to(group, bot.user_id, later, "the next answer")
                replied = [
                    s.content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
                    for s in alice.messages(group, bot.user_id, after)
                ]
                assert chatter not in replied and replied.count(asked) == 1, replied
            finally:
                await alice.close()
    assert ciphertext not in caplog.text


async def test_a_to_device_message_nested_too_deep_to_read_stops_nothing(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hostile probe: a to-device message encrypted for the bot's device (Olm; anyone may
    claim its one-time key and send one, no room needed) whose JSON is thousands of `[`
    deep made decrypting it raise out of the sync: the Matrix front-end stopped."""
    caplog.set_level(logging.INFO, logger="bot")
    bot = synapse_server.register("olmbot")
    mallory = await UserClient.start(
        synapse_server, synapse_server.register("mallory"), tmp_path / "m"
    )
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        async with bot_answering_from(synapse_server, bot, endpoint, tmp_path):
            try:
                dm = await mallory.create_room([bot.user_id], encrypted=True, direct=True)
                await mallory.wait_joined(dm, bot.user_id)
                after = time.monotonic()
                await mallory.send(dm, "hello before")  # an Olm session with the bot's device
                await mallory.reply_to(dm, bot.user_id, after, "the first answer")
                olm = mallory.client.olm
                assert olm is not None
                [device] = olm.device_store.active_user_devices(bot.user_id)
                session = olm.session_store.get(device.curve25519)
                assert session is not None
                depth = 20_000
                deep = f'{{"type": "m.dummy", "content": {{"x": {"[" * depth}{"]" * depth}}}}}'
                kind, body = session.encrypt(deep).to_parts()
                content = {
                    "algorithm": "m.olm.v1.curve25519-aes-sha2",
                    "sender_key": olm.account.identity_keys["curve25519"],
                    "ciphertext": {device.curve25519: {"type": kind, "body": encode_base64(body)}},
                }
                message = nio.ToDeviceMessage(
                    "m.room.encrypted", bot.user_id, device.device_id, content
                )
                sent = await mallory.client.to_device(message)
                assert isinstance(sent, nio.ToDeviceResponse), sent
                later = time.monotonic()
                await mallory.send(dm, "hello after")
                await mallory.reply_to(dm, bot.user_id, later, "the answer after it")
            finally:
                await mallory.close()
    said = [r.getMessage() for r in caplog.records if r.name.startswith("bot.")]
    unread = [m for m in said if m.startswith("cannot read a to-device message")]
    assert len(unread) == 1 and "RecursionError" in unread[0], said
    assert mallory.user.user_id in unread[0]
