"""A room upgraded to a new room (its tombstone names the new one) goes on as it was set
up there: its model, who may chat and its limits come along; the conversation does not.
A room that only claims to continue another (its create event, which whoever creates a
room writes) gets nothing of it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import nio
import pytest

from bot.types import ChannelRef, Platform, Scope
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]


async def upgrade(server: SynapseServer, user: UserClient, room_id: str) -> str:
    """POST /rooms/{id}/upgrade, as Element's "upgrade this room" does: the new room's id."""
    create = await user.client.room_get_state_event(room_id, "m.room.create")
    assert isinstance(create, nio.RoomGetStateEventResponse), create
    version = create.content.get("room_version", "1")
    url = f"{server.url}/_matrix/client/v3/rooms/{room_id}/upgrade"
    headers = {"Authorization": f"Bearer {user.client.access_token}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"new_version": version}, headers=headers) as r:
            body = await r.json()
            assert r.status == 200, body
    return str(body["replacement_room"])


async def test_an_upgraded_room_keeps_its_settings_and_a_claimed_one_gets_none(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Matrix probe: after an upgrade the new room answered with the operator's defaults,
    and its `!access` rules were gone: a closed room was open to everyone."""
    server = synapse_server
    bot = server.register("upgradebot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path),
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        carol = server.register("carol")
        try:
            old = await alice.create_room([bot.user_id])
            await alice.wait_joined(old, bot.user_id)
            for text, expect in [
                ("!model upgraded-model", "upgraded-model"),
                (f"!access deny user {carol.user_id}", carol.user_id),
                ("!limits set messages_per_user_minute 3", "set to 3"),
            ]:
                said = await alice.command(old, bot.user_id, text)
                assert expect in said, said

            new = await upgrade(server, alice, old)
            after = time.monotonic()
            await alice.invite(new, bot.user_id)
            await alice.wait_joined(new, bot.user_id)

            def notice() -> list[object]:
                return [
                    s
                    for s in alice.messages(new, bot.user_id, after)
                    if "continues the one it was upgraded from" in s.content["body"]
                ]

            await alice.wait_for(notice, "the notice in the new room")
            # A room that names `old` as its predecessor, which `old` does not name.
            claimed = await alice.client.room_create(
                invite=[bot.user_id], predecessor={"room_id": old, "event_id": "$x"}
            )
            assert isinstance(claimed, nio.RoomCreateResponse), claimed
            await alice.wait_joined(claimed.room_id, bot.user_id)
            shown = await alice.command(new, bot.user_id, "!settings")
            assert "Model: upgraded-model" in shown, shown
            assert carol.user_id in shown, shown  # who may chat
            assert "messages_per_user_minute = 3" in await alice.command(
                new, bot.user_id, "!limits"
            )
            other = await alice.command(claimed.room_id, bot.user_id, "!settings")
            assert "upgraded-model" not in other and carol.user_id not in other, other
        finally:
            await alice.close()


async def test_a_tombstone_sent_by_a_member_who_is_no_admin_carries_nothing(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Review: sending a tombstone takes what the room's power levels say, which may be
    less than configuring the bot takes. A member allowed to tombstone but no admin made
    a room of their own the successor, and would have had its keys."""
    server = synapse_server
    bot = server.register("tombbot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path) as core,
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        mallory = await UserClient.start(server, server.register("mallory"), tmp_path / "m")
        try:
            made = await alice.client.room_create(
                invite=[bot.user_id, mallory.user.user_id],
                power_level_override={"events": {"m.room.tombstone": 0}},
            )
            assert isinstance(made, nio.RoomCreateResponse), made
            old = made.room_id
            await alice.wait_joined(old, bot.user_id)
            await mallory.join(old)
            said = await alice.command(old, bot.user_id, "!model secret-model")
            assert "secret-model" in said, said

            theirs = await mallory.client.room_create(
                invite=[bot.user_id], predecessor={"room_id": old, "event_id": "$x"}
            )
            assert isinstance(theirs, nio.RoomCreateResponse), theirs
            put = await mallory.client.room_put_state(
                old, "m.room.tombstone", {"body": "moved", "replacement_room": theirs.room_id}
            )
            assert isinstance(put, nio.RoomPutStateResponse), put  # the room allows it
            await mallory.wait_joined(theirs.room_id, bot.user_id)
            shown = await mallory.command(theirs.room_id, bot.user_id, "!settings")
            assert "secret-model" not in shown, shown
            assert (
                await core.store.scope_values(
                    ChannelRef(Platform.MATRIX, channel_id=theirs.room_id), Scope.CHANNEL
                )
                == {}
            )
        finally:
            await alice.close()
            await mallory.close()


async def test_the_bot_in_the_new_room_before_the_tombstone_carries_over_when_it_comes(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Hostile probe: invited to the new room before the old one was tombstoned, the bot
    carried nothing over, and nothing happened when the tombstone came."""
    server = synapse_server
    bot = server.register("earlybot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path) as core,
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        try:
            old = await alice.create_room([bot.user_id])
            await alice.wait_joined(old, bot.user_id)
            assert "early-model" in await alice.command(old, bot.user_id, "!model early-model")
            made = await alice.client.room_create(
                invite=[bot.user_id], predecessor={"room_id": old, "event_id": "$x"}
            )
            assert isinstance(made, nio.RoomCreateResponse), made
            new = made.room_id
            await alice.wait_joined(new, bot.user_id)
            ref = ChannelRef(Platform.MATRIX, channel_id=new)
            assert await core.store.scope_values(ref, Scope.CHANNEL) == {}  # no tombstone yet
            put = await alice.client.room_put_state(
                old, "m.room.tombstone", {"body": "moved", "replacement_room": new}
            )
            assert isinstance(put, nio.RoomPutStateResponse), put

            async def carried() -> bool:
                return await core.store.scope_values(ref, Scope.CHANNEL) != {}

            for _ in range(100):
                if await carried():
                    break
                await asyncio.sleep(0.1)
            assert await core.store.scope_values(ref, Scope.CHANNEL) == {"model": "early-model"}
        finally:
            await alice.close()
