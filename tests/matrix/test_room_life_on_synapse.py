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
