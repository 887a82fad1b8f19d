"""Reactions on the bot's answer on a real Synapse: 🔄 and ◀ by the asker become m.replace
edits of the original answer event; a reaction by someone else is ignored quietly."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nio
import pytest

from bot.types import ChannelConfig, ChannelRef, Platform, Source
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse


async def react(user: UserClient, room_id: str, event_id: str, key: str) -> None:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
    response = await user.client.room_send(
        room_id, "m.reaction", content, ignore_unverified_devices=True
    )
    assert isinstance(response, nio.RoomSendResponse), response


async def test_reactions_replace_the_answer_and_others_are_ignored(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    bot = synapse_server.register("reactbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    carol = await UserClient.start(synapse_server, synapse_server.register("carol"), tmp_path / "c")
    async with SSEEndpoint(chunks=6, span=0.3) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        try:
            async with running_bot(core, bot_options(synapse_server, bot, tmp_path / "store")):
                room = await alice.create_room([bot.user_id, bob.user.user_id, carol.user.user_id])
                await alice.wait_joined(room, bot.user_id)
                await bob.join(room)
                await carol.join(room)
                mention: dict[str, Any] = {"m.mentions": {"user_ids": [bot.user_id]}}
                await bob.send(room, "bot: tell me", **mention)
                first_answer = endpoint.answer()

                def answers() -> list[str]:
                    found = bob.messages(room, bot.user_id)
                    return [s.event.event_id for s in found if s.content.get("msgtype") == "m.text"]

                [answer] = await bob.wait_for(answers, "the answer")

                def shows(text: str) -> bool:
                    return bob.shown_text(answer).strip() == text

                await bob.wait_for(lambda: shows(first_answer), "the whole answer")
                await bob.wait_for(lambda: endpoint.asked[0].ended, "the stream's end")

                # Carol neither asked nor administers the room: quietly nothing.
                await react(carol, room, answer, "🔄")
                await asyncio.sleep(1.0)
                endpoint.chunks = 3  # the regenerated answer differs from the first
                await react(bob, room, answer, "🔄")
                second_answer = endpoint.answer()
                await bob.wait_for(lambda: shows(second_answer), "the regenerated answer")
                edits = len(bob.edits_of(answer))
                # ◀ (sent with the emoji presentation selector, as many clients do).
                await react(bob, room, answer, "◀️")
                await bob.wait_for(lambda: shows(first_answer), "the first answer again")
                assert len(bob.edits_of(answer)) > edits
                await asyncio.sleep(1.0)  # time for anything the bot should not have done
                final = answers()
        finally:
            history = await core.store.history(ChannelRef(Platform.MATRIX, room), 10)
            await core.close()
            await alice.close()
            await bob.close()
            await carol.close()
    assert len(endpoint.asked) == 2  # Carol's 🔄 asked nobody
    # One answer event throughout: every change is an m.replace of it, nothing new posted.
    assert final == [answer]
    assert not [
        s
        for s in bob.messages(room, bot.user_id)
        if s.content.get("msgtype") == "m.notice"  # no word to Carol either
    ]
    last = bob.edits_of(answer)[-1].content
    assert last["m.relates_to"] == {"rel_type": "m.replace", "event_id": answer}
    # The history continues from the answer shown.
    assert [e.content.strip() for e in history][-1] == first_answer


async def test_a_reaction_while_the_answer_is_written_acts_on_that_answer(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Busy-room probe: 🔄 on an answer still being written ran as "regenerate the newest
    turn" once its turn came. A question sent meanwhile was the newest by then: its answer
    was regenerated into the first answer's event (the reply to the first question then
    showed the answer to the second), and the store tied it there. Now the reaction waits
    for its answer to end and acts on it alone."""
    bot = synapse_server.register("busybot")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    async with SSEEndpoint(chunks=10, span=4.0) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        try:
            async with running_bot(core, bot_options(synapse_server, bot, tmp_path / "store")):
                room = await bob.create_room([bot.user_id])
                await bob.wait_joined(room, bot.user_id)
                mention: dict[str, Any] = {"m.mentions": {"user_ids": [bot.user_id]}}

                def answers() -> list[str]:
                    found = bob.messages(room, bot.user_id)
                    return [s.event.event_id for s in found if s.content.get("msgtype") == "m.text"]

                def notices() -> list[str]:
                    found = bob.messages(room, bot.user_id)
                    return [
                        s.content["body"] for s in found if s.content.get("msgtype") == "m.notice"
                    ]

                await bob.send(room, "bot: one", **mention)
                [first] = await bob.wait_for(answers, "the first answer's first text")
                await bob.send(room, "bot: two", **mention)  # waits for the first answer
                await react(bob, room, first, "🔄")
                reacted = time.monotonic()
                await bob.wait_for(lambda: notices(), "why the first answer did not change")
                assert reacted < endpoint.asked[0].ended  # it came while the answer streamed
                assert "Only the newest answer can change" in notices()[0]
                second = (await bob.wait_for(lambda: answers()[1:], "the second answer"))[0]
                await bob.wait_for(lambda: endpoint.asked[1].ended, "the second stream's end")

                # Nothing asked meanwhile: the answer it was on is regenerated once it ends.
                endpoint.chunks = 4
                await bob.send(room, "bot: three", **mention)
                third = (await bob.wait_for(lambda: answers()[2:], "the third answer"))[0]
                await react(bob, room, third, "🔄")
                assert not endpoint.asked[2].ended  # still being written
                await bob.wait_for(lambda: len(endpoint.asked) == 4, "the regenerated third")
                await bob.wait_for(lambda: bob.edits_of(third) and endpoint.asked[3].ended, "end")
                await asyncio.sleep(1.0)  # time for anything the bot should not have done
                shown = {e: bob.shown_text(e).strip() for e in (first, second, third)}
        finally:
            ref = ChannelRef(Platform.MATRIX, room)
            history = await core.store.history(ref, 10)
            posts = {e.id: await core.store.posts_of(ref, e.id or 0) for e in history}
            await core.close()
            await bob.close()
    asked = [json.loads(a.question) for a in endpoint.asked]
    assert asked == ["bot: one", "bot: two", "bot: three", "bot: three"]
    assert [e.content for e in history if e.role.value == "user"] == [
        "bot: one",
        "bot: two",
        "bot: three",
    ]
    assert shown[first] == shown[second] == "".join(SSEEndpoint(10, 0).words()).strip()
    assert shown[third] == endpoint.answer()
    # Each event shows the answer stored for it, and only that one.
    assert [(e.reply_to, posts[e.id]) for e in history if e.role.value == "assistant"] == [
        (history[0].id, [first]),
        (history[2].id, [second]),
        (history[4].id, [third]),
    ]
