"""Quotas and who may chat on a real Synapse: a refused turn is a notice in the thread
(nothing reaches the model), power-level allow rules ignore the others quietly."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nio
import pytest

from bot.types import ChannelConfig, Source
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]


async def test_refusal_notice_and_power_level_access(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    server = synapse_server
    bot = server.register("limitbot")
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
        carol = await UserClient.start(server, server.register("carol"), tmp_path / "carol")
        try:
            async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
                invite = [bot.user_id, bob.user.user_id, carol.user.user_id]
                room_id = await alice.create_room(invite, power={bob.user.user_id: 10})
                await alice.wait_joined(room_id, bot.user_id)
                await bob.join(room_id)
                await carol.join(room_id)
                for text, expect in [
                    ("!reply mode always", "always"),
                    ("!limits set messages_per_user_minute 1", "set to 1"),
                    ("!access allow level 10", "power level 10 and above"),
                ]:
                    said = await alice.command(room_id, bot.user_id, text)
                    assert expect in said, said
                # Bob (level 10) is answered once, then refused with a notice in reply.
                after = time.monotonic()
                await bob.send(room_id, "first question")
                await bob.reply_to(room_id, bot.user_id, after, "the answer")
                after = time.monotonic()
                asking = await bob.send(room_id, "second question")

                def refusal() -> list[object]:
                    return [
                        s
                        for s in bob.messages(room_id, bot.user_id, after)
                        if isinstance(s.event, nio.RoomMessageNotice)
                        and "messages_per_user_minute" in s.content["body"]
                    ]

                [seen] = await bob.wait_for(refusal, "the refusal notice")
                content = seen.content
                assert content["m.relates_to"]["m.in_reply_to"]["event_id"] == asking
                assert "frees up at" in content["body"]
                assert endpoint.request_for("second question") is None
                # Carol (level 0) is ignored: no answer, nothing sent.
                after = time.monotonic()
                await carol.send(room_id, "carol asks")
                await asyncio.sleep(2)
                assert bob.messages(room_id, bot.user_id, after) == []
                assert endpoint.request_for("carol asks") is None
        finally:
            for user in (alice, bob, carol):
                await user.close()
            await core.close()
