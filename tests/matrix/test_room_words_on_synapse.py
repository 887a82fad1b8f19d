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
    bob = server.register("bob")
    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
            # A group (a room of just alice and the bot is their direct chat: below).
            room_id = await alice.create_room([bot.user_id, bob.user_id])
            await alice.wait_joined(room_id, bot.user_id)

            shown = await alice.command(room_id, bot.user_id, "!help")
            assert "!reset — Forget this room's conversation history." in shown, shown
            assert "channel" not in shown.lower(), shown
            shown = await alice.command(room_id, bot.user_id, "!usage help")
            assert shown.startswith("!usage [scope:me|room]"), shown
            assert "yours or this room's." in shown and "server's" not in shown, shown

            for typed in ("!usage room", "!usage scope:room", "!usage scope:channel"):
                shown = await alice.command(room_id, bot.user_id, typed)
                assert shown.startswith("This room's usage"), (typed, shown)
            shown = await alice.command(room_id, bot.user_id, "!usage scope:rooms")
            assert "Did you mean `room`? Choose one of: me, room." in shown, shown
            shown = await alice.command(room_id, bot.user_id, "!reply mode always scope:room")
            assert shown.startswith("Reply mode: always"), shown
            assert "every message in this room" in shown, shown
            # A room has no server: the scope typed as Discord shows it (a space after its
            # colon) is refused before anything changes, not kept as part of the prompt.
            shown = await alice.command(room_id, bot.user_id, "!system Be brief. scope: server")
            assert "There is no server here" in shown, shown
            shown = await alice.command(room_id, bot.user_id, "!system")
            assert shown == "System prompt: (none)", shown
            await alice.command(room_id, bot.user_id, "!limits set tokens_per_channel_day 5000")
            shown = await alice.command(room_id, bot.user_id, "!limits")
            assert "tokens_per_room_day = 5,000 (room) — tokens a room may spend" in shown, shown
    finally:
        await alice.close()
        await core.close()


async def test_a_direct_chat_is_called_one_and_takes_the_rooms_words(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """In a direct chat with the bot every reply said "this room" ("Params (this room)",
    "This room now uses …", a limit "for this room"), while its other replies call it a
    direct chat. The names people type stay the room's (`!usage room`,
    `tokens_per_room_day`), and `!help`, the command table's words, says "room" as ever."""
    server = synapse_server
    bot = server.register("directwordsbot")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
            room_id = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(room_id, bot.user_id)

            async def said(typed: str) -> str:
                return await alice.command(room_id, bot.user_id, typed)

            shown = await said("!params temperature 0.5")
            assert shown.startswith("temperature set to 0.5."), shown
            shown = await said("!settings")
            assert "Params (this direct chat): temperature=0.5" in shown, shown
            assert "this room" not in shown, shown
            shown = await said("!model default")
            assert shown.startswith("This direct chat now uses the operator's model"), shown
            shown = await said("!reply mode always")
            assert "every message in this direct chat." in shown, shown
            shown = await said("!limits set tokens_per_room_day 5000")
            assert shown.startswith("tokens_per_room_day set to 5,000 for this direct chat"), shown
            shown = await said("!limits")
            assert "tokens_per_room_day = 5,000 (direct chat) — tokens a direct chat" in shown, (
                shown
            )
            assert "5,000 tokens left for this direct chat" in shown, shown
            shown = await said("!usage room")
            assert shown.startswith("This direct chat's usage"), shown
            shown = await said("!usage server")
            assert shown == "There is no server here; !usage room shows this direct chat's usage."
            shown = await said("!help")
            assert "!reset — Forget this room's conversation history." in shown, shown
    finally:
        await alice.close()
        await core.close()
