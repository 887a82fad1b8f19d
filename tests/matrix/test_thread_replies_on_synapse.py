"""A reply in the main timeline to an answer inside a thread (clients that show threads
flat send these; Element shows them in the main timeline, quoting the answer): answered
where it was sent, from the thread's conversation, which the member means."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from bot.store import generate_key
from bot.types import ChannelRef, Platform, Role
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]


def _asked_with(endpoint: SSEEndpoint, question: str) -> str:
    """The whole request (as JSON) whose last message holds `question`."""
    for body in endpoint.bodies:
        if question in json.dumps(body["messages"][-1]):
            return json.dumps(body["messages"])
    raise AssertionError(f"no request asked {question!r}")


async def test_a_main_timeline_reply_to_a_threaded_answer_continues_its_thread(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Matrix probe: the reply was answered from the room's main conversation, so the
    model never saw the thread it quoted (and answered as if nothing had been said)."""
    server = synapse_server
    bot = server.register("threadreplybot")
    key = generate_key()
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
    try:
        async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
            async with bot_answering_from(server, bot, endpoint, tmp_path, key) as core:
                # A group room: in a direct chat every message is the bot's anyway.
                room_id = await alice.create_room([bot.user_id, bob.user.user_id])
                await bob.join(room_id)
                await alice.wait_joined(room_id, bot.user_id)
                root = await alice.send(room_id, "Fruit talk")
                thread = {
                    "rel_type": "m.thread",
                    "event_id": root,
                    "is_falling_back": True,
                    "m.in_reply_to": {"event_id": root},
                }
                after = time.monotonic()
                await alice.send(
                    room_id, f"{bot.user_id}: my word is PAPAYA", **{"m.relates_to": thread}
                )
                in_thread = await alice.reply_to(room_id, bot.user_id, after, "the thread answer")
                assert in_thread.content["m.relates_to"]["rel_type"] == "m.thread"
                answer_id = in_thread.event.event_id

                # Bob's client shows threads flat: a plain reply to the threaded answer.
                after = time.monotonic()
                asked = await bob.send(
                    room_id,
                    "what was the word?",
                    **{"m.relates_to": {"m.in_reply_to": {"event_id": answer_id}}},
                )
                answer = await bob.answer_to(room_id, bot.user_id, asked, after, "the reply")
                # Where Bob sees it: the main timeline, as a reply to him.
                assert "rel_type" not in answer.content["m.relates_to"], answer.content
                # The model reads the thread the answer was part of.
                assert "PAPAYA" in _asked_with(endpoint, "what was the word?")
                in_its_thread = ChannelRef(Platform.MATRIX, room_id, thread_id=root)
                kept = await core.store.history(in_its_thread, 10)
                assert [e.content for e in kept if e.role is Role.USER][-1] == "what was the word?"
                second = answer.event.event_id
                # Its end stored and tied to its message before the stop (this stop cancels
                # at once, as a crash would: an answer still streaming is not kept).
                for _ in range(200):
                    if await core.store.posted(Platform.MATRIX, room_id, [second]):
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the answer was never stored with its message")

            # After a restart (nothing in memory): a reply to that main-timeline answer
            # still goes on in the thread, as the database says it belongs there.
            async with bot_answering_from(server, bot, endpoint, tmp_path, key):
                after = time.monotonic()
                again = await alice.send(
                    room_id,
                    "and spell it backwards",
                    **{"m.relates_to": {"m.in_reply_to": {"event_id": second}}},
                )
                reply = await alice.answer_to(room_id, bot.user_id, again, after, "the reply")
                assert "rel_type" not in reply.content["m.relates_to"], reply.content
                assert "PAPAYA" in _asked_with(endpoint, "and spell it backwards")
    finally:
        await alice.close()
        await bob.close()
