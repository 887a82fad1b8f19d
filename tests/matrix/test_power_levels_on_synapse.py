"""Who administers a room, as the bot sees it while it runs on a real Synapse: a power
level taken away is gone at once, and a member cannot give themselves one."""

from __future__ import annotations

from pathlib import Path

import nio
import pytest

from bot.types import ChannelRef, Platform
from tests.matrix.helpers import UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]

REFUSED = "Only admins of this room can use !model"


async def test_an_admin_demoted_while_the_bot_runs_configures_no_more(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Element demotes someone to the default level by taking them out of the power
    levels' `users`; nio merged the new levels into the old, so the bot kept the demoted
    moderator at 50 and let them change the room's settings (and keys) until a restart."""
    server = synapse_server
    bot = server.register("levelbot")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
    ref = ChannelRef(Platform.MATRIX, "")
    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
            bob_id = bob.user.user_id
            room_id = await alice.create_room([bot.user_id, bob_id], power={bob_id: 50})
            ref = ChannelRef(Platform.MATRIX, room_id)
            await alice.wait_joined(room_id, bot.user_id)
            await bob.join(room_id)
            said = await bob.command(room_id, bot.user_id, "!model gpt-4o")
            assert said.startswith("Model set to gpt-4o"), said

            levels = await alice.client.room_get_state_event(room_id, "m.room.power_levels")
            assert isinstance(levels, nio.RoomGetStateEventResponse), levels
            content = dict(levels.content)
            content["users"] = {u: v for u, v in content.get("users", {}).items() if u != bob_id}
            put = await alice.client.room_put_state(room_id, "m.room.power_levels", content)
            assert isinstance(put, nio.RoomPutStateResponse), put
            # Sent after the demotion: the bot's sync brings the new levels first.
            said = await bob.command(room_id, bot.user_id, "!model o3")
            assert said.startswith(REFUSED), said

            # Nor can a member forge levels: the homeserver refuses the event, and the
            # bot goes by the levels the room has.
            forged = {**content, "users": {**content["users"], bob_id: 100}}
            put = await bob.client.room_put_state(room_id, "m.room.power_levels", forged)
            assert isinstance(put, nio.RoomPutStateError), put
            said = await bob.command(room_id, bot.user_id, "!model o3-mini")
            assert said.startswith(REFUSED), said
            assert (await core.store.effective_config(ref)).model == "gpt-4o"
            audit = await core.store.audit_entries(ref, 10)
            assert [e.detail for e in audit] == ["model='gpt-4o'"]
    finally:
        await alice.close()
        await bob.close()
        await core.close()
