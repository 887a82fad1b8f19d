"""On a real Synapse: a command typed in Discord's and the console's `/` form (`bot: /key
set custom <key>`, `/model x`) is not chat. Element stops unknown `/` commands in its
composer, but other clients (and Element after a leading space) send them: the key, of no
provider's shape, went to the model and into the history."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot.types import ChannelRef, Platform, Role
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse

SECRET = "tabby-1a2b3c4d5e6f7788"  # no provider's shape: only the command says it is a key


async def test_a_command_in_discords_form_is_not_chat_and_its_key_is_taken_out(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    bot = synapse_server.register("slashbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    try:
        async with (
            SSEEndpoint(chunks=3, span=0.3) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path) as core,
        ):
            me = bot.user_id
            room = await alice.create_room([me, bob.user.user_id], power={me: 50})
            await alice.wait_joined(room, me)
            await bob.join(room)
            ref = ChannelRef(Platform.MATRIX, channel_id=room)
            mention: dict[str, Any] = {"m.mentions": {"user_ids": [me]}}

            async def turns() -> list[tuple[Role, str]]:
                return [(e.role, e.content) for e in await core.store.history(ref, 20)]

            # A key command: taken out of the room, said where commands and keys go.
            after = time.monotonic()
            sent = await alice.send(room, f"{me}: /key set custom {SECRET}", **mention)
            body = (await alice.reply_to(room, me, after, "the key's notice")).content["body"]
            assert "start with `!`" in body and "direct chat" in body, body
            assert f"room:{room}" in body and "I deleted your message" in body, body
            assert SECRET not in body, body
            assert (await alice.event_content(room, sent)).get("content") == {}  # redacted
            # Any other command: said how to type it here, left in the room.
            after = time.monotonic()
            sent = await alice.send(room, f"{me}: /model gpt-4o", **mention)
            body = (await alice.reply_to(room, me, after, "the command's notice")).content["body"]
            assert "`!model" in body and "deleted" not in body, body
            assert (await alice.event_content(room, sent)).get("content") != {}
            assert endpoint.asked == [] and await turns() == []

            # A `/` before a word no command has is chat, as before.
            after = time.monotonic()
            asked = await alice.send(room, f"{me}: /shrug is it raining?", **mention)
            await alice.reply_to(room, me, after, "the answer")
            await alice.wait_for(lambda: endpoint.asked, "the question asked")
            assert endpoint.request_for("/shrug is it raining?") is not None

            # An edit that turns the question into a key command: taken out, not kept.
            new = {"msgtype": "m.text", "body": f"{me}: /key set custom {SECRET}"}
            after = time.monotonic()
            edit = await alice.send_content(
                room,
                {
                    "msgtype": "m.text",
                    "body": f"* {new['body']}",
                    "m.new_content": new,
                    "m.relates_to": {"rel_type": "m.replace", "event_id": asked},
                },
            )
            body = (await alice.reply_to(room, me, after, "the edit's notice")).content["body"]
            assert "That edit holds what looks like a key" in body and SECRET not in body, body
            assert (await alice.event_content(room, edit)).get("content") == {}
            # One into any other command is not the question from now on either.
            new = {"msgtype": "m.text", "body": f"{me}: /model gpt-4o"}
            await alice.send_content(
                room,
                {
                    "msgtype": "m.text",
                    "body": f"* {new['body']}",
                    "m.new_content": new,
                    "m.relates_to": {"rel_type": "m.replace", "event_id": asked},
                },
            )
            await asyncio.sleep(1.5)
            questions = [text for role, text in await turns() if role is Role.USER]
            assert questions == ["/shrug is it raining?"], questions
            assert not any(SECRET in str(body) for body in endpoint.bodies)
    finally:
        await alice.close()
        await bob.close()
