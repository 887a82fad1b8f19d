"""On Matrix the place people chat is a room: `!help` and the command table's words say
so (Platform.place), and the scope typed either way, `room` or `channel`, works."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.matrix.helpers import UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]


async def test_the_commands_say_room_and_take_it(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """`!help` said "this channel's key", "Forget this channel's conversation history",
    and `!usage` offered `scope:me|channel|server`: words from Discord in a Matrix room,
    where replies already said "room". A Matrix user typing what they read
    (`scope:room`) was refused."""
    server = synapse_server
    bot = server.register("roomwordsbot")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
            room_id = await alice.create_room([bot.user_id])
            await alice.wait_joined(room_id, bot.user_id)

            shown = await alice.command(room_id, bot.user_id, "!help")
            assert "!reset — Forget this room's conversation history." in shown, shown
            assert "channel" not in shown.lower(), shown
            shown = await alice.command(room_id, bot.user_id, "!usage help")
            assert shown.startswith("!usage [scope:me|room|server]"), shown
            assert "yours or this room's." in shown and "server's" not in shown, shown

            for typed in ("!usage room", "!usage scope:room", "!usage scope:channel"):
                shown = await alice.command(room_id, bot.user_id, typed)
                assert shown.startswith("This room's usage"), (typed, shown)
            shown = await alice.command(room_id, bot.user_id, "!usage scope:rooms")
            assert "Did you mean `room`? Choose one of: me, room, server." in shown, shown
            shown = await alice.command(room_id, bot.user_id, "!reply mode always scope:room")
            assert shown.startswith("Reply mode: always"), shown
            assert "every message in this room" in shown, shown
            await alice.command(room_id, bot.user_id, "!limits set tokens_per_channel_day 5000")
            shown = await alice.command(room_id, bot.user_id, "!limits")
            assert "tokens_per_room_day = 5,000 (room) — tokens a room may spend" in shown, shown
    finally:
        await alice.close()
        await core.close()
