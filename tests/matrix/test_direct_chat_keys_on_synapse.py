"""A key set in a direct chat is its owner's: once others are in the room it is not used
for their questions (an admin sets one for the room, as in any group), and the room is
told so once, naming no secret."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]

KEY = "sk-direct-chat-" + "9c2e4b71a0d3f685"
HELD = "set here when this was a direct chat"


async def test_a_direct_chats_key_is_held_once_the_room_is_a_group(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Matrix probe: alice's own key went on paying for bob's questions once she let
    him into her direct chat with the bot, and nobody was told."""
    server = synapse_server
    bot = server.register("dmkeybot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path),
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
        try:
            room = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(room, bot.user_id)
            said = await alice.command(room, bot.user_id, f"!key set custom {KEY}")
            assert "Saved the custom key" in said, said

            async def asked(who: UserClient, words: str) -> str:
                after = time.monotonic()
                await who.send(room, f"{bot.user_id} {words}")
                await who.wait_for(lambda: endpoint.request_for(words), f"{words!r} asked")
                await who.reply_to(room, bot.user_id, after, f"the answer to {words!r}")
                found = endpoint.request_for(words)
                assert found is not None
                return endpoint.auth[endpoint.asked.index(found)]

            assert await asked(alice, "mine alone") == f"Bearer {KEY}"

            await alice.invite(room, bob.user.user_id)
            await bob.join(room)
            after = time.monotonic()
            assert KEY not in await asked(bob, "now a group")
            notices = await bob.wait_for(
                lambda: [
                    s.content["body"]
                    for s in bob.messages(room, bot.user_id, after)
                    if HELD in s.content.get("body", "")
                ],
                "the room to be told",
            )
            (notice,) = notices
            assert "custom key" in notice and "!key clear custom" in notice, notice
            assert f"room:{room}" in notice and KEY not in notice and KEY[-4:] not in notice
            assert KEY not in await asked(alice, "still a group")
            told = [s for s in bob.messages(room, bot.user_id, after) if HELD in str(s.content)]
            assert len(told) == 1  # once
            settings = await alice.command(room, bot.user_id, "!settings")
            assert "API key: held" in settings and KEY[-4:] not in settings, settings
            assert "held (here) by the bot, as the room is no longer a direct chat" in settings, (
                settings
            )

            # An admin sets a key for the room as for any group: from a direct chat.
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(dm, bot.user_id)
            said = await alice.command(dm, bot.user_id, f"!key set custom {KEY} room:{room}")
            assert "Saved the custom key" in said, said
            assert await asked(bob, "for everyone") == f"Bearer {KEY}"
        finally:
            await alice.close()
            await bob.close()
