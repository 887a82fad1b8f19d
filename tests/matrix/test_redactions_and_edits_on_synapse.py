"""On a real Synapse: an answer removed while it is still being written stops (the
model's connection closes), is forgotten once it ends, and a reaction on it reaches
nothing (🔄 there said "only the newest answer can change"); an edited question is what
the model reads next."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import nio
import pytest

from bot.types import ChannelRef, Platform, Role
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.matrix.test_reactions_on_synapse import react
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse


async def test_an_answer_removed_while_it_streams_stops_and_is_forgotten(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    bot = synapse_server.register("redactbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        async with (
            SSEEndpoint(chunks=60, span=30.0) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path) as core,
        ):
            # Alice made the room: a room-v12 creator may remove anyone's message.
            room = await alice.create_room([bot.user_id])
            await alice.wait_joined(room, bot.user_id)
            mention: dict[str, Any] = {"m.mentions": {"user_ids": [bot.user_id]}}
            after = time.monotonic()
            await alice.send(room, "bot: count slowly", **mention)
            first = await alice.reply_to(room, bot.user_id, after, "the answer's first text")
            answer = str(first.event.event_id)
            removed = await alice.client.room_redact(room, answer)
            assert isinstance(removed, nio.RoomRedactResponse), removed
            await alice.wait_for(lambda: endpoint.asked[0].cut, "the model's connection closed")
            assert time.monotonic() - after < 20  # long before the answer's 30 s
            ref = ChannelRef(Platform.MATRIX, channel_id=room)

            async def turns() -> list[tuple[Role, str]]:
                return [(e.role, e.content) for e in await core.store.history(ref, 10)]

            deadline = time.monotonic() + 30
            while await turns() != [(Role.USER, "bot: count slowly")]:
                assert time.monotonic() < deadline, await turns()
                await asyncio.sleep(0.2)
            # 🔄 on the removed answer: nothing asked, nothing said.
            since = time.monotonic()
            await react(alice, room, answer, "🔄")
            await asyncio.sleep(3)
            assert len(endpoint.asked) == 1
            assert alice.messages(room, bot.user_id, since) == []
    finally:
        await alice.close()


async def test_an_edited_question_is_what_the_model_reads_next(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    bot = synapse_server.register("editbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        async with (
            SSEEndpoint(chunks=3, span=0.3) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path) as core,
        ):
            room = await alice.create_room([bot.user_id])
            await alice.wait_joined(room, bot.user_id)
            ref = ChannelRef(Platform.MATRIX, channel_id=room)
            after = time.monotonic()
            asked = await alice.send(room, f"{bot.user_id}: capital of Austrlia?")
            await alice.reply_to(room, bot.user_id, after, "the answer")
            new = {"msgtype": "m.text", "body": f"{bot.user_id}: capital of Australia?"}
            await alice.send_content(
                room,
                {
                    "msgtype": "m.text",
                    "body": f"* {new['body']}",
                    "m.new_content": new,
                    "m.relates_to": {"rel_type": "m.replace", "event_id": asked},
                },
            )

            async def question() -> str:
                history = await core.store.history(ref, 10)
                return history[0].content if history else ""

            deadline = time.monotonic() + 30
            while await question() != "capital of Australia?":
                assert time.monotonic() < deadline, await question()
                await asyncio.sleep(0.2)
            assert len(endpoint.asked) == 1  # an edit is not asked anew
    finally:
        await alice.close()
