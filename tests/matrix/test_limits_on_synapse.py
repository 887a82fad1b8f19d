"""Quotas and who may chat on a real Synapse: a refused turn is a notice in the thread
(nothing reaches the model), power-level allow rules ignore the others quietly."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import nio
import pytest

from bot.types import ChannelConfig, ChannelRef, Platform, Source
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
                # Carol picked from the client's mention list: her name in the body, her
                # id only in the pill's link (it was refused as "not a Matrix user id").
                carol_id = carol.user.user_id
                pill = f'<a href="https://matrix.to/#/{carol_id}">carol</a>'
                said = await alice.command(
                    room_id,
                    bot.user_id,
                    "!access deny user carol",
                    format="org.matrix.custom.html",
                    formatted_body=f"!access deny user {pill}",
                )
                assert said.startswith("Rule added") and carol_id in said, said
        finally:
            for user in (alice, bob, carol):
                await user.close()
            await core.close()


async def test_a_bot_that_may_no_longer_post_does_not_ask_the_model(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An admin lowered the bot's power level below what posting takes: every mention
    still asked (and paid for) the model, and stored an answer nobody saw."""
    server = synapse_server
    bot = server.register("mutedbot")
    caplog.set_level(logging.WARNING, logger="bot.matrix")
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        try:
            async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
                room_id = await alice.create_room([bot.user_id])
                await alice.wait_joined(room_id, bot.user_id)
                assert "always" in await alice.command(room_id, bot.user_id, "!reply mode always")
                after = time.monotonic()
                await alice.send(room_id, "while it may post")
                answer = await alice.reply_to(room_id, bot.user_id, after, "the answer")
                levels = await alice.client.room_get_state_event(room_id, "m.room.power_levels")
                assert isinstance(levels, nio.RoomGetStateEventResponse), levels
                content = dict(levels.content)
                content["users"] = {**content.get("users", {}), bot.user_id: -1}
                await alice.client.room_put_state(room_id, "m.room.power_levels", content)
                await asyncio.sleep(1)  # the bot's sync brings the new levels
                for text in ("after it was muted", "and again"):
                    await alice.send(room_id, text)
                # Room admin probe: the turn controls still asked the model, and commands
                # ran without a word (a !reset forgot the conversation unseen).
                asked = len(endpoint.asked)
                await alice.send(room_id, "!regenerate")
                await alice.send(room_id, "!reset")
                regenerate = {"rel_type": "m.annotation", "event_id": answer.event.event_id}
                await alice.client.room_send(
                    room_id, "m.reaction", {"m.relates_to": {**regenerate, "key": "🔄"}}
                )
                await asyncio.sleep(3)
                assert endpoint.request_for("after it was muted") is None
                assert endpoint.request_for("and again") is None
                assert len(endpoint.asked) == asked
                said = [r for r in caplog.records if "may not post in" in r.getMessage()]
                assert len(said) == 1, caplog.text  # once, not at every message
                ref = ChannelRef(Platform.MATRIX, room_id)
                assert len(await core.store.history(ref, 10)) == 2  # not reset
        finally:
            await alice.close()
            await core.close()
