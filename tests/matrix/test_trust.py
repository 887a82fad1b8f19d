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


async def test_without_e2ee_an_encrypted_message_gets_one_notice_saying_what_to_do(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MATRIX_E2EE=false: a message in an encrypted direct chat had only been logged; its
    sender heard nothing, ever. They are told once (a fixed notice, in the clear: it
    holds nothing of theirs) that the bot does not read encrypted rooms, and what to do.
    Where the bot may not post, nothing is sent and nothing fails: it goes on."""
    caplog.set_level(logging.INFO, logger="bot.frontends.matrix")
    bot = synapse_server.register("plainbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    try:
        options = bot_options(synapse_server, bot, tmp_path / "store", e2ee=False)
        async with running_bot(core, options):
            direct = await alice.create_room([bot.user_id], encrypted=True)
            muted = await alice.create_room([bot.user_id], encrypted=True, power={bot.user_id: -1})
            plain = await alice.create_room([bot.user_id])
            for room_id in (direct, muted, plain):
                await alice.wait_joined(room_id, bot.user_id)
            first = await alice.send(direct, "hello")  # encrypted by alice's client
            told = await alice.wait_for(
                lambda: alice.messages(direct, bot.user_id), "the notice in the encrypted room"
            )
            notice = told[0].content
            assert notice["msgtype"] == "m.notice"
            assert notice["m.relates_to"]["m.in_reply_to"]["event_id"] == first
            assert "encrypted" in notice["body"] and "operator" in notice["body"]
            await alice.send(direct, "are you there?")
            await alice.send(muted, "hello")
            # The bot reads the plain room in the same or a later sync than the above.
            assert "Source:" in await alice.command(plain, bot.user_id, "!settings")
            await alice.command(plain, bot.user_id, "!help")
            assert len(alice.messages(direct, bot.user_id)) == 1  # once, not at each
            assert alice.messages(muted, bot.user_id) == []
            said = [r for r in caplog.records if "may not post in" in r.getMessage()]
            assert len(said) == 1, caplog.text
            # Logged once a room, not at each message (a busy room wrote a line each).
            logged = [r for r in caplog.records if "MATRIX_E2EE is off" in r.getMessage()]
            line = "an encrypted message in {}, but MATRIX_E2EE is off"
            assert sorted(r.getMessage() for r in logged) == sorted(
                line.format(room) for room in (direct, muted)
            ), caplog.text
    finally:
        await alice.close()
        await core.close()


async def test_without_e2ee_a_group_room_is_told_once_whoever_writes_there(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """MATRIX_E2EE=false, an encrypted group room: only a message seen to be for the bot
    (a reply to it, its thread, an always room) got the notice, and a mention, the usual
    way to address it there, is inside the ciphertext: people mentioned it and heard
    nothing. The room is told instead, once, on the first encrypted message whoever sent
    it, in the clear and as no reply to anyone's message in particular."""
    bot = synapse_server.register("plaingroupbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    try:
        options = bot_options(synapse_server, bot, tmp_path / "store", e2ee=False)
        async with running_bot(core, options):
            group = await alice.create_room([bot.user_id, bob.user.user_id], encrypted=True)
            plain = await alice.create_room([bot.user_id])
            await alice.wait_joined(group, bot.user_id)
            await alice.wait_joined(plain, bot.user_id)
            await bob.join(group)
            await alice.wait_joined(group, bob.user.user_id)
            await bob.send(group, "morning all")  # not to the bot: it cannot tell
            told = await alice.wait_for(
                lambda: alice.messages(group, bot.user_id), "the notice in the group room"
            )
            notice = told[0].content
            assert notice["msgtype"] == "m.notice"
            assert "m.relates_to" not in notice  # to the room, not to bob's message
            assert notice["body"].startswith("I cannot read the messages in this room")
            assert "MATRIX_E2EE" in notice["body"]
            mention = {"m.mentions": {"user_ids": [bot.user_id]}}
            await alice.send(group, f"{bot.user_id} are you there?", **mention)
            await bob.send(group, "!help")
            # The bot reads the plain room in the same or a later sync than the above.
            assert "Source:" in await alice.command(plain, bot.user_id, "!settings")
            assert len(alice.messages(group, bot.user_id)) == 1  # once, not at each
    finally:
        await alice.close()
        await bob.close()
        await core.close()
