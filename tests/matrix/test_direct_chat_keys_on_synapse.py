"""A key set in a direct chat is its owner's: once others are in the room it is not used
for their questions (an admin sets one for the room, as in any group), and the room is
told so once, naming no secret."""

from __future__ import annotations

import time
from pathlib import Path

import nio
import pytest

from bot.providers import _http
from bot.store import generate_key
from bot.types import Actor, ChannelRef, Platform, Scope, SecretValue
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]

KEY = "sk-direct-chat-" + "9c2e4b71a0d3f685"
HELD = "set here when this was a direct chat"


async def test_a_direct_chats_key_is_held_once_the_room_is_a_group(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Matrix probe: alice's own key went on paying for bob's questions once she let
    him into her direct chat with the bot, and nobody was told."""
    server = synapse_server
    bot = server.register("dmkeybot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path),
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
        try:
            room = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(room, bot.user_id)
            said = await alice.command(room, bot.user_id, f"!key set custom {KEY}")
            assert "Saved the custom key" in said, said

            async def asked(who: UserClient, words: str) -> str:
                after = time.monotonic()
                await who.send(room, f"{bot.user_id} {words}")
                await who.wait_for(lambda: endpoint.request_for(words), f"{words!r} asked")
                await who.reply_to(room, bot.user_id, after, f"the answer to {words!r}")
                found = endpoint.request_for(words)
                assert found is not None
                return endpoint.auth[endpoint.asked.index(found)]

            assert await asked(alice, "mine alone") == f"Bearer {KEY}"

            await alice.invite(room, bob.user.user_id)
            await bob.join(room)
            after = time.monotonic()
            assert KEY not in await asked(bob, "now a group")
            notices = await bob.wait_for(
                lambda: [
                    s.content["body"]
                    for s in bob.messages(room, bot.user_id, after)
                    if HELD in s.content.get("body", "")
                ],
                "the room to be told",
            )
            (notice,) = notices
            assert "custom key" in notice and "!key clear custom" in notice, notice
            assert f"room:{room}" in notice and KEY not in notice and KEY[-4:] not in notice
            assert KEY not in await asked(alice, "still a group")
            told = [s for s in bob.messages(room, bot.user_id, after) if HELD in str(s.content)]
            assert len(told) == 1  # once
            settings = await alice.command(room, bot.user_id, "!settings")
            assert "API key: held" in settings and KEY[-4:] not in settings, settings
            assert "held (here) by the bot, as the room is no longer a direct chat" in settings, (
                settings
            )

            # An admin sets a key for the room as for any group: from a direct chat.
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(dm, bot.user_id)
            said = await alice.command(dm, bot.user_id, f"!key set custom {KEY} room:{room}")
            assert "Saved the custom key" in said, said
            assert await asked(bob, "for everyone") == f"Bearer {KEY}"
        finally:
            await alice.close()
            await bob.close()


async def test_a_direct_chats_key_is_held_as_others_join_before_anyone_speaks(
    synapse_server: SynapseServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hostile probe: the key was held only when someone spoke in the room itself, so a
    command naming it with room: from another direct chat (`!connect room:…`, by a
    newcomer or its owner) still sent the owner's key; and a newcomer the owner made an
    admin pointed the room at a server of their own and had the key sent there. The
    room is settled as the bot sees someone join."""
    # Each check asks the endpoint, so each is seen sending no key (within 10 s, checks
    # of one URL and credentials share one answer: the flood guard).
    monkeypatch.setattr(_http, "LIST_REUSE_SECONDS", 0.0)
    server = synapse_server
    bot = server.register("heldbot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        SSEEndpoint(chunks=2, span=0.1) as elsewhere,
        bot_answering_from(server, bot, endpoint, tmp_path),
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
        try:
            room = await alice.create_room(
                [bot.user_id], direct=True, power={bob.user.user_id: 100}
            )
            await alice.wait_joined(room, bot.user_id)
            said = await alice.command(room, bot.user_id, f"!key set custom {KEY}")
            assert "Saved the custom key" in said, said
            before = len(endpoint.models_auth)  # its status check, in the direct chat
            after = time.monotonic()
            await alice.invite(room, bob.user.user_id)
            await bob.join(room)
            # Told as the bot sees bob come in, before anyone says a word there.
            await bob.wait_for(
                lambda: [
                    s for s in bob.messages(room, bot.user_id, after) if HELD in str(s.content)
                ],
                "the room to be told",
            )
            dm = await bob.create_room([bot.user_id], direct=True)
            await bob.wait_joined(dm, bot.user_id)
            for command in ("!connect", "!models list"):
                await bob.command(dm, bot.user_id, f"{command} room:{room}")
            own = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(own, bot.user_id)
            await alice.command(own, bot.user_id, f"!connect room:{room}")
            await bob.command(dm, bot.user_id, f"!proxy set {elsewhere.url}/v1 room:{room}")
            await bob.command(dm, bot.user_id, f"!connect room:{room}")
            settings = await bob.command(dm, bot.user_id, f"!settings room:{room}")
        finally:
            await alice.close()
            await bob.close()
    sent = [*endpoint.models_auth[before:], *elsewhere.models_auth]
    assert len(sent) >= 4 and not endpoint.auth and not elsewhere.auth, sent
    assert not any(KEY in header for header in sent), sent
    # bob's URL on another server took the custom key away (it stays with its server).
    assert "API key: not set" in settings and KEY[-4:] not in settings, settings


async def test_a_direct_chats_key_is_held_once_its_owner_left_while_the_bot_was_away(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """A room was judged by its numbers alone: alice invited bob and left while the bot
    was stopped, so at its start the room was two members, "private", and alice's key
    paid for bob's questions. The key knows its owner."""
    server = synapse_server
    bot = server.register("awaybot")
    secrets = generate_key()  # the same at the restart: the key can be read, and is not used
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
        try:
            async with bot_answering_from(server, bot, endpoint, tmp_path, secrets):
                room = await alice.create_room([bot.user_id], direct=True)
                await alice.wait_joined(room, bot.user_id)
                said = await alice.command(room, bot.user_id, f"!key set custom {KEY}")
                assert "Saved the custom key" in said, said
            await alice.invite(room, bob.user.user_id)
            await bob.join(room)
            left = await alice.client.room_leave(room)
            assert isinstance(left, nio.RoomLeaveResponse), left
            async with bot_answering_from(server, bot, endpoint, tmp_path, secrets):
                after = time.monotonic()
                await bob.send(room, f"{bot.user_id} whose key")
                await bob.wait_for(lambda: endpoint.request_for("whose key"), "the question")
                await bob.reply_to(room, bot.user_id, after, "the answer to 'whose key'")
                found = endpoint.request_for("whose key")
                assert found is not None
                assert KEY not in endpoint.auth[endpoint.asked.index(found)]
                told = [s for s in bob.messages(room, bot.user_id, 0) if HELD in str(s.content)]
                assert len(told) == 1 and KEY[-4:] not in str(told[0].content), told
        finally:
            await alice.close()
            await bob.close()


async def test_a_room_named_by_its_name_in_a_key_command_is_refused_and_nothing_stored(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Matrix probe: an admin naming the room by its name (`room:Lounge`, as Element shows
    it) in a direct chat had `!key set custom room:Lounge` store `room:Lounge` as the
    direct chat's key, and with the key before it was told the key had "a space at
    position 36". Both now say how to name a room, and nothing is stored."""
    server = synapse_server
    bot = server.register("bynamebot")
    key = generate_key()
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path, key) as core,
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        try:
            lounge = await alice.create_room([bot.user_id], name="Lounge")
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(lounge, bot.user_id)
            await alice.wait_joined(dm, bot.user_id)
            for line in (
                "!key set custom room:Lounge",
                f"!key set custom {KEY} room:Lounge",
                "!proxy password hunter2-secret room:Lounge",
                f"!proxy set {endpoint.url} room:lounge:synapse.test",
            ):
                said = await alice.command(dm, bot.user_id, line)
                assert said.startswith("`room:` takes a room's id, room:!id"), (line, said)
                assert "Nothing was saved." in said and "space" not in said, said
                assert KEY not in said and "hunter2" not in said, said
            for room in (dm, lounge):
                where = ChannelRef(Platform.MATRIX, room)
                for name in ("custom_api_key", "proxy_password"):
                    assert await core.store.resolve_secret(where, name) is None, (room, name)
            # A prompt may still say room:lobby: text, not a room.
            said = await alice.command(dm, bot.user_id, "!system you are in room:lobby")
            assert said == "System prompt set.", said
        finally:
            await alice.close()


async def test_a_greeting_after_the_password_was_sent_from_a_direct_chat_is_answered(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """README walk: `!proxy password` in the group room says to send it from a direct
    chat with `room:`; the admin does, comes back and says `@bot: Hello!`. That one word
    after the mention was taken for the password the room's command had lacked: not
    answered, and a warning that "the secret is visible in the room history". Once the
    secret came with `room:`, the room's next word is chat again."""
    server = synapse_server
    bot = server.register("greetbot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path) as core,
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
        try:
            room = await alice.create_room([bot.user_id, bob.user.user_id], name="Lounge")
            await bob.join(room)
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(room, bot.user_id)
            await alice.wait_joined(dm, bot.user_id)
            said = await alice.command(room, bot.user_id, "!proxy password")
            assert f"!proxy password … room:{room}" in said, said
            said = await alice.command(dm, bot.user_id, f"!proxy password hunter2-pw room:{room}")
            assert "Saved the proxy password" in said, said
            where = ChannelRef(Platform.MATRIX, room)
            assert await core.store.resolve_secret(where, "proxy_password") is not None

            after = time.monotonic()
            asked = await alice.send(room, f"{bot.user_id}: Hello!")
            answer = await alice.answer_to(room, bot.user_id, asked, after, "the greeting")
            assert "took this for the key or password" not in answer.content["body"], answer
            await alice.wait_for(lambda: endpoint.request_for("Hello!"), "the model asked")
        finally:
            await alice.close()
            await bob.close()


async def test_a_word_after_a_key_command_that_came_with_its_key_is_chat(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Matrix probe: a key command refused with its key in it (typed in a group room, or
    a key too short) armed the "next word is the secret" rule all the same: the admin's
    "Thanks!" after it was deleted as the key and never answered. Only one that came
    without its secret (`!key set custom`) asks for the next word."""
    server = synapse_server
    bot = server.register("thanksbot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path),
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
        try:
            room = await alice.create_room([bot.user_id, bob.user.user_id], name="Lounge")
            await bob.join(room)
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(room, bot.user_id)
            await alice.wait_joined(dm, bot.user_id)

            async def chatted(where: str, words: str) -> None:
                after = time.monotonic()
                await alice.send(where, f"{bot.user_id}: {words}")
                await alice.wait_for(lambda: endpoint.request_for(words), f"{words!r} asked")
                said = [
                    s.content.get("body", "") for s in alice.messages(where, bot.user_id, after)
                ]
                assert not any("took this for the key" in s for s in said), said

            said = await alice.command(room, bot.user_id, "!key set custom hunter2-hunter2")
            assert "only take keys and passwords in a direct chat" in said, said
            await chatted(room, "Thanks!")
            said = await alice.command(dm, bot.user_id, "!key set custom short")
            assert "it takes at least 6" in said, said
            await chatted(dm, "everyone")
            # Without its key, the next word is still taken for it.
            said = await alice.command(dm, bot.user_id, "!key set custom")
            assert "Missing `key`" in said, said
            after = time.monotonic()
            sent = await alice.send(dm, "hunter2-correct-horse")
            body = (await alice.reply_to(dm, bot.user_id, after, "the refusal")).content["body"]
            assert "took this for the key or password" in body, body
            assert endpoint.request_for("hunter2-correct-horse") is None
            assert (await alice.event_content(dm, sent)).get("content") == {}
        finally:
            await alice.close()
            await bob.close()


async def test_the_hint_for_an_old_short_password_is_typeable_from_a_direct_chat(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Matrix probe: a group room's 4-character proxy password an older version stored
    was to be set again "with !proxy password" (refused in a group room, and from a
    direct chat it set the direct chat's own), and removed "with !proxy clear" (from a
    direct chat, the direct chat's). Its hint names the room, as the other hints do."""
    server = synapse_server
    bot = server.register("shortpwbot")
    async with (
        SSEEndpoint(chunks=2, span=0.1) as endpoint,
        bot_answering_from(server, bot, endpoint, tmp_path) as core,
    ):
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
        try:
            room = await alice.create_room([bot.user_id, bob.user.user_id], name="Lounge")
            await bob.join(room)
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(room, bot.user_id)
            await alice.wait_joined(dm, bot.user_id)
            # As an older version stored it (today's !proxy password refuses it).
            where = ChannelRef(Platform.MATRIX, room)
            who = Actor(alice.user.user_id, "alice", is_channel_admin=True)
            await core.store.set_secret(
                where, Scope.CHANNEL, "proxy_password", SecretValue("wq4z"), who
            )
            for place, typed in ((room, "!settings"), (dm, f"!settings room:{room}")):
                said = await alice.command(place, bot.user_id, typed)
                assert "shorter than 6 characters" in said, said
                again = f"!proxy password <password> room:{room} (in a direct chat with me)"
                assert again in said, said
                assert f"!proxy clear room:{room}" in said, said
                assert "wq4z" not in said, said
            # As the hint says it, from the direct chat: the room's password goes.
            said = await alice.command(dm, bot.user_id, f"!proxy clear room:{room}")
            assert await core.store.resolve_secret(where, "proxy_password") is None, said
        finally:
            await alice.close()
            await bob.close()
