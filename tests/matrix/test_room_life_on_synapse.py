"""A room's life on a real Synapse as its members shape it: names they give it, and the
ids they paste to say who may chat there."""

from __future__ import annotations

from pathlib import Path

import nio
import pytest

from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]


async def test_a_hostile_room_name_is_shown_short_and_turns_no_reply_around(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Matrix probe: a room named with a right-to-left override and 10,000 characters
    (Synapse takes both) was put whole before every reply about it in a direct chat
    (`!settings room:…`): a 10,388-character reply, the bot's own words after the name
    turned around."""
    server = synapse_server
    bot = server.register("namebot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path),
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        try:
            room = await alice.create_room([bot.user_id])
            await alice.wait_joined(room, bot.user_id)
            name = "\u202e<b>x</b> [y](https://evil.example)\n" + "B" * 10_000
            put = await alice.client.room_put_state(room, "m.room.name", {"name": name})
            assert isinstance(put, nio.RoomPutStateResponse), put
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(dm, bot.user_id)
            said = await alice.command(dm, bot.user_id, f"!settings room:{room}")
            label, _, rest = said.partition("] ")
            assert rest.startswith("Source:"), said[:300]
            assert "\u202e" not in said and "\n" not in label, label
            assert len(label) < 120 and label.startswith("[") and "…" in label, label
            assert "https://evil.example" not in label or "\\[y\\]" in label, label
            assert len(said) < 2000, len(said)
        finally:
            await alice.close()


async def test_access_takes_a_matrix_id_in_the_forms_people_paste_it(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Matrix probe: `!access deny user` with the link a client's "Share" or "Copy link"
    gives (matrix.to, matrix:u/) was refused as "not a Matrix user id", and with the id
    in capitals (`@BOB:SERVER`) it was taken as a rule that names nobody: Bob, "denied",
    went on chatting."""
    server = synapse_server
    bot = server.register("accessbot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path),
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
        try:
            room = await alice.create_room([bot.user_id, bob.user.user_id])
            await alice.wait_joined(room, bot.user_id)
            await bob.join(room)
            b = bob.user.user_id
            local, host = b[1:].split(":", 1)
            for typed in [
                f"https://matrix.to/#/{b}",
                f"https://matrix.to/#/%40{local}%3A{host}?via={host}",
                f"matrix:u/{local}:{host}?action=chat",
                f"<{b}>",
                b.upper(),
            ]:
                said = await alice.command(room, bot.user_id, f"!access deny user {typed}")
                assert said.startswith(f"Rule added: deny user {b} (here)"), (typed, said)
                said = await alice.command(room, bot.user_id, f"!access remove user {b}")
                assert said.startswith("Removed"), (typed, said)
            # Someone not in the room keeps the id as typed.
            said = await alice.command(room, bot.user_id, f"!access deny user @Nobody:{host}")
            assert f"deny user @Nobody:{host}" in said, said
        finally:
            await alice.close()
            await bob.close()
