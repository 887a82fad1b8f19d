"""The Matrix front-end against a real Synapse: a nio user client talks to run_matrix."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nio
import pytest

from bot.core import Core
from bot.store import generate_key
from bot.types import ChannelRef, Platform, Role, TurnState
from tests.matrix.helpers import (
    Seen,
    UserClient,
    bot_options,
    make_core,
    start_bot,
    stop_bot,
)
from tests.peers.llamacpp import LlamaCppPeer
from tests.peers.synapse import MatrixUser, SynapseServer

pytestmark = [pytest.mark.synapse, pytest.mark.llamacpp]

KEY = "sk-matrix-test-" + "4f9a1c77e2d3b5a6"


@dataclass
class World:
    server: SynapseServer
    bot: MatrixUser
    core: Core
    key: str  # the store's encryption key: the same after a restart
    db_path: Path
    store_dir: Path
    alice: UserClient  # creates the rooms: a room-v12 creator, not in power_levels.users
    bob: UserClient  # a plain member
    task: asyncio.Task[None] | None = None

    @property
    def db_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.db_path}"

    async def start(self) -> None:
        self.task = await start_bot(self.core, bot_options(self.server, self.bot, self.store_dir))

    async def restart(self) -> None:
        """Stop the bot and its core, then start both again on the same files."""
        assert self.task is not None
        await stop_bot(self.task)
        await self.core.close()
        self.core = await make_core(self.db_url, self.key)
        await self.start()


@pytest.fixture(scope="module")
async def world(
    synapse_server: SynapseServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    base = tmp_path_factory.mktemp("matrix-bot")
    bot = synapse_server.register("bot")
    db_path = base / "bot.db"
    key = generate_key()
    core = await make_core(f"sqlite+aiosqlite:///{db_path}", key)
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), base / "alice")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), base / "bob")
    world = World(synapse_server, bot, core, key, db_path, base / "store", alice, bob)
    try:
        await world.start()
        yield world
    finally:
        if world.task is not None:
            await stop_bot(world.task)
        await alice.close()
        await bob.close()
        await world.core.close()


async def _room_with_bot(w: World, **kw: Any) -> str:
    room_id = await w.alice.create_room([w.bot.user_id, w.bob.user.user_id], **kw)
    await w.alice.wait_joined(room_id, w.bot.user_id)
    await w.bob.join(room_id)
    return room_id


async def _configure(w: World, room_id: str, llama: LlamaCppPeer) -> None:
    bot = w.bot.user_id
    assert "custom" in await w.alice.command(room_id, bot, "!source custom")
    # The root URL without /v1: the bot finds /v1 itself and says so.
    answer = await w.alice.command(room_id, bot, f"!proxy set {llama.url}")
    assert f"{llama.url}/v1" in answer, answer
    answer = await w.alice.command(room_id, bot, "!models external")
    assert llama.model in answer, answer
    answer = await w.alice.command(room_id, bot, f'!model "{llama.model}"')
    assert llama.model in answer, answer


async def _answers(w: World, room_id: str, thread: str = "", *, ended: bool = False) -> list[str]:
    """The answers stored here; `ended`: none while the newest is still being written (its
    text saved as it grows matches what is shown before its end is stored)."""
    ref = ChannelRef(Platform.MATRIX, channel_id=room_id, thread_id=thread)
    history = await w.core.store.history(ref, 100)
    answers = [e for e in history if e.role is Role.ASSISTANT]
    if ended and answers and answers[-1].state is TurnState.STREAMING:
        return []
    return [e.content for e in answers]


async def ask(w: World, who: UserClient, room_id: str, text: str, **extra: object) -> Answer:
    """Ask the bot; wait until the turn is saved and the client shows its final text."""
    before = len(await _answers(w, room_id))
    after = time.monotonic()
    asked = await who.send(room_id, text, **extra)

    def answer_to_it() -> Seen | None:
        # The bot's notice for an earlier command can reach this client after `after`.
        for seen in who.messages(room_id, w.bot.user_id, after):
            replied = seen.content.get("m.relates_to", {}).get("m.in_reply_to", {})
            if replied.get("event_id") in (None, asked):
                return seen
        return None

    first: Seen = await who.wait_for(answer_to_it, "the bot's first answer event")
    event_id = str(first.event.event_id)
    saved: list[str] = []

    async def done() -> bool:
        # Ended, not only shown: a restart right after would cut an answer whose end is
        # not stored yet (and the next answer would begin with a note saying so).
        saved[:] = await _answers(w, room_id, ended=True)
        return len(saved) > before and who.shown_text(event_id) == saved[-1].strip()

    deadline = time.monotonic() + 120
    while not await done():
        assert time.monotonic() < deadline, (who.shown_text(event_id), saved[-1:])
        await asyncio.sleep(0.3)
    return Answer(asked, first, event_id, who.shown_text(event_id), len(who.edits_of(event_id)))


@dataclass
class Answer:
    asked: str
    first: Seen
    event_id: str
    text: str
    edits: int


# --- tests, in the order a user meets the bot --------------------------------------


async def test_joins_on_invite_and_runs_commands_from_the_table(
    world: World, llamacpp_peer: LlamaCppPeer
) -> None:
    w = world
    room_id = await _room_with_bot(w)
    room = w.alice.client.rooms[room_id]
    assert room.room_version == "12"  # alice is a creator, not in power_levels.users
    assert w.alice.user.user_id not in room.power_levels.users
    bot = w.bot.user_id

    help_text = await w.alice.command(room_id, bot, "!help")
    for name in ("!source", "!model", "!proxy set", "!models external", "!key set"):
        assert name in help_text, name
    # Matrix has no private form: the steps say how a key is given here, for this room.
    assert f"!key set openai <key> room:{room_id}  (sent in a direct chat" in help_text, help_text
    assert "collected privately" not in help_text and "asked for privately" not in help_text
    assert "/swipe" not in help_text
    assert "Did you mean `model`?" in await w.alice.command(room_id, bot, "!modle x")
    # A command after the bot's name (as a client's pill puts it) runs; an emote never does.
    assert await w.alice.command(room_id, bot, f"{bot}: !help") == help_text
    since = time.monotonic()
    emote = await w.alice.send(room_id, "!help", msgtype="m.emote")
    assert "Did you mean `model`?" in await w.alice.command(room_id, bot, "!modle y")
    replies = [s.content.get("m.relates_to", {}) for s in w.alice.messages(room_id, bot, since)]
    assert not [r for r in replies if r.get("m.in_reply_to", {}).get("event_id") == emote]
    await _configure(w, room_id, llamacpp_peer)

    refused = await w.bob.command(room_id, bot, "!model other")
    assert "Only admins" in refused, refused
    config = await w.core.store.effective_config(ChannelRef(Platform.MATRIX, room_id))
    assert config.model == llamacpp_peer.model  # bob changed nothing


async def test_answers_when_mentioned_by_streaming_edits(
    world: World, llamacpp_peer: LlamaCppPeer
) -> None:
    w = world
    room_id = await _room_with_bot(w)
    await _configure(w, room_id, llamacpp_peer)
    bot = w.bot.user_id

    # Not addressed in a `mention` room: no answer.
    quiet_since = time.monotonic()
    await w.alice.send(room_id, "just talking among ourselves")
    answer = await ask(
        w,
        w.alice,
        room_id,
        f"{bot}: Count from one to twenty in words.",
        **{"m.mentions": {"user_ids": [bot]}},
    )
    assert len(w.alice.messages(room_id, bot, quiet_since)) == 1  # only the one answer
    assert answer.text.strip()
    assert answer.first.content["m.relates_to"]["m.in_reply_to"]["event_id"] == answer.asked
    for edit in w.alice.edits_of(answer.event_id):
        assert edit.content["m.new_content"]["msgtype"] == "m.text"

    # A reply to the bot's answer is addressed too, and continues the same history.
    follow = await ask(
        w,
        w.alice,
        room_id,
        "And backwards?",
        **{"m.relates_to": {"m.in_reply_to": {"event_id": answer.event_id}}},
    )
    assert follow.text.strip()
    assert len(await _answers(w, room_id)) == 2


async def test_answers_everything_in_an_always_room(
    world: World, llamacpp_peer: LlamaCppPeer
) -> None:
    w = world
    room_id = await _room_with_bot(w)
    await _configure(w, room_id, llamacpp_peer)
    assert "always" in await w.alice.command(room_id, w.bot.user_id, "!reply mode always")
    answer = await ask(w, w.bob, room_id, "Name a colour.")  # no mention, not a reply
    assert answer.text.strip()
    # `/me waves hello` (m.emote) is an action: it went to the model as words said to it.
    waved = await ask(w, w.bob, room_id, "waves hello", msgtype="m.emote")

    async def last_question() -> str:
        history = await w.core.store.history(ChannelRef(Platform.MATRIX, room_id), 10)
        return [e.content for e in history if e.role is Role.USER][-1]

    assert await last_question() == "*waves hello*"
    # Edited, it is still an action.
    new = {"msgtype": "m.emote", "body": "waves goodbye"}
    await w.bob.send_content(
        room_id,
        {
            "msgtype": "m.emote",
            "body": "* waves goodbye",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": waved.asked},
        },
    )
    deadline = time.monotonic() + 30
    while await last_question() != "*waves goodbye*":
        assert time.monotonic() < deadline, await last_question()
        await asyncio.sleep(0.2)


async def test_answers_in_the_thread_it_was_asked_in(
    world: World, llamacpp_peer: LlamaCppPeer
) -> None:
    w = world
    bot = w.bot.user_id
    room_id = await _room_with_bot(w)
    await _configure(w, room_id, llamacpp_peer)
    root = await w.alice.send(room_id, "A thread about numbers")
    thread = {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }
    after = time.monotonic()
    await w.alice.send(room_id, f"{bot}: name a prime number", **{"m.relates_to": thread})
    answer = await w.alice.reply_to(room_id, bot, after, "the answer in the thread")
    rel = answer.content["m.relates_to"]
    assert rel["rel_type"] == "m.thread" and rel["event_id"] == root

    async def saved() -> bool:
        return bool(await _answers(w, room_id, thread=root))

    deadline = time.monotonic() + 120
    while not await saved():  # history belongs to the thread, not the room
        assert time.monotonic() < deadline
        await asyncio.sleep(0.3)
    assert await _answers(w, room_id) == []

    # After a restart the thread is still one the bot talks in: no mention needed.
    await w.restart()
    after = time.monotonic()
    await w.alice.send(room_id, "and another one?", **{"m.relates_to": thread})
    again = await w.alice.reply_to(room_id, bot, after, "an answer after the restart")
    assert again.content["m.relates_to"]["event_id"] == root

    # "Reply in thread" under one of the bot's answers, with no mention: a thread started
    # on the bot's own message is spoken to it (it was ignored).
    answer = await ask(
        w, w.alice, room_id, f"{bot}: name an even number", **{"m.mentions": {"user_ids": [bot]}}
    )
    on_answer = {
        **thread,
        "event_id": answer.event_id,
        "m.in_reply_to": {"event_id": answer.event_id},
    }
    after = time.monotonic()
    await w.bob.send(room_id, "why that one?", **{"m.relates_to": on_answer})
    reply = await w.bob.reply_to(room_id, bot, after, "the answer in a thread on its answer")
    assert reply.content["m.relates_to"]["event_id"] == answer.event_id
    # The thread starts from the turn it grew from: that question and answer come first.
    ref = ChannelRef(Platform.MATRIX, channel_id=room_id, thread_id=answer.event_id)
    started = [e.content for e in await w.core.store.history(ref, 10)][:3]
    assert started[:2] == ["name an even number", answer.text], started
    assert started[2] == "why that one?", started


async def test_key_in_a_group_room_is_refused_and_redacted(world: World) -> None:
    w = world
    bot = w.bot.user_id
    # The bot may redact here (moderator)…
    room_id = await _room_with_bot(w, power={bot: 50})
    after = time.monotonic()
    sent = await w.alice.send(room_id, f"!key set openai {KEY}")
    reply = await w.alice.reply_to(room_id, bot, after, "the refusal")
    body = reply.content["body"]
    assert "direct chat" in body and "deleted your message" in body, body
    assert KEY not in body
    content = await w.alice.event_content(room_id, sent)
    assert content.get("content") == {}, content  # redacted
    assert "redacted_because" in content.get("unsigned", {})

    # A CJK keyboard's `！` is the prefix too: the key is not chatted to a model.
    after = time.monotonic()
    sent = await w.alice.send(room_id, f"\uff01key set openai {KEY}")
    reply = await w.alice.reply_to(room_id, bot, after, "the refusal of ！key")
    assert "direct chat" in reply.content["body"] and KEY not in reply.content["body"]
    assert (await w.alice.event_content(room_id, sent)).get("content") == {}
    # So is all of it typed in fullwidth, and a look-alike (Cyrillic `кеу`) of the command:
    # the first went to the model as chat, the second stayed in the room unflagged.
    for typed in ("！ｋｅｙ　ｓｅｔ　ｏｐｅｎａｉ　", "!кеу set openai "):
        after = time.monotonic()
        sent = await w.alice.send(room_id, typed + KEY)
        reply = await w.alice.reply_to(room_id, bot, after, f"the refusal of {typed}")
        assert KEY not in reply.content["body"], reply.content
        assert (await w.alice.event_content(room_id, sent)).get("content") == {}

    # …and not here: it says so and asks the user to delete the key.
    room2 = await _room_with_bot(w)
    answer = await w.alice.command(room2, bot, f"!key set openai {KEY}")
    assert "could not delete your message" in answer and "Delete it yourself" in answer
    assert not await w.core.store.resolve_secret(
        ChannelRef(Platform.MATRIX, room_id), "openai_api_key"
    )


async def test_a_public_room_with_one_member_is_no_place_for_a_key(world: World) -> None:
    """Just alice and the bot so far, but anyone may join and read back: not a direct
    chat (the key was taken, and stayed in a history later members read)."""
    w = world
    bot = w.bot.user_id
    room_id = await w.alice.create_room([bot], name="Team AI (colleagues join Monday)")
    await w.alice.wait_joined(room_id, bot)
    rules = await w.alice.client.room_put_state(
        room_id, "m.room.join_rules", {"join_rule": "public"}
    )
    assert isinstance(rules, nio.RoomPutStateResponse), rules
    answer = await w.alice.command(room_id, bot, f"!key set openai {KEY}")
    assert "direct chat" in answer and KEY not in answer, answer
    ref = ChannelRef(Platform.MATRIX, room_id)
    assert not await w.core.store.resolve_secret(ref, "openai_api_key")
    # The bot (power 0) could not take it out: the warning a group room gets, since
    # whoever joins reads it back. It said a direct chat's calm "in a direct chat only
    # you can … if you do not want the secret in this chat's history", in the same reply
    # that called the room no direct chat.
    assert "Delete it yourself now" in answer, answer
    assert "only you can" not in answer, answer


async def test_a_chat_message_holding_a_key_is_refused_and_redacted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Not only commands: a question to the bot with a key in it is taken out of the room
    where the bot may, as the README says of any message that may hold one."""
    caplog.set_level(logging.INFO)
    w = world
    bot = w.bot.user_id
    mention = {"m.mentions": {"user_ids": [bot]}}
    for room_id, where in (
        (await _room_with_bot(w, power={bot: 50}), "a group room"),
        (await w.alice.create_room([bot], direct=True), "a direct chat"),
    ):
        await w.alice.wait_joined(room_id, bot)
        after = time.monotonic()
        sent = await w.alice.send(room_id, f"bot: here is my key {KEY} please use it", **mention)
        refused, deleted, *_ = await w.alice.wait_for(
            lambda: (found := w.alice.messages(room_id, bot, after))[1:] and found,  # noqa: B023
            f"the refusal and the deletion in {where}",
        )
        assert "looks like a key or password" in refused.content["body"], refused.content
        assert refused.content["msgtype"] == "m.notice"  # no answer: other bots leave it
        assert "deleted your message" in deleted.content["body"], deleted.content
        assert (await w.alice.event_content(room_id, sent)).get("content") == {}, where
    assert KEY not in caplog.text


async def test_a_redacted_message_leaves_the_history(
    world: World, llamacpp_peer: LlamaCppPeer
) -> None:
    """A member removes their own question; the room's creator (above every power level
    in room v12) removes the bot's answer: the model never reads either again."""
    w = world
    bot = w.bot.user_id
    room_id = await _room_with_bot(w)
    await _configure(w, room_id, llamacpp_peer)
    assert "always" in await w.alice.command(room_id, bot, "!reply mode always")
    private = await ask(w, w.bob, room_id, "My PIN is 4711. Reply with OK.")
    colour = await ask(w, w.bob, room_id, "Name a colour.")
    ref = ChannelRef(Platform.MATRIX, room_id)

    async def turns() -> list[tuple[Role, str]]:
        return [(e.role, e.content) for e in await w.core.store.history(ref, 50)]

    async def until(check: Any, what: str) -> None:
        deadline = time.monotonic() + 30
        while not check(await turns()):
            assert time.monotonic() < deadline, (what, await turns())
            await asyncio.sleep(0.2)

    assert isinstance(
        await w.bob.client.room_redact(room_id, private.asked), nio.RoomRedactResponse
    )
    await until(lambda now: len(now) == 2, "the question and its answer forgotten")
    assert (await turns())[0] == (Role.USER, "Name a colour.")
    # Bob may not remove the bot's answer (the homeserver refuses); the creator may.
    refused = await w.bob.client.room_redact(room_id, colour.event_id)
    assert isinstance(refused, nio.RoomRedactError), refused
    done = await w.alice.client.room_redact(room_id, colour.event_id)
    assert isinstance(done, nio.RoomRedactResponse), done
    await until(lambda now: len(now) == 1, "the answer forgotten")
    assert await turns() == [(Role.USER, "Name a colour.")]


async def test_a_secret_sent_on_its_own_after_the_command_that_lacked_it_is_not_chatted(
    world: World, llamacpp_peer: LlamaCppPeer
) -> None:
    """`!key set custom` without its key fails; a person then pastes the key, or a proxy
    password no pattern would know, as the next message. In a direct chat every message
    is chat: it must not go to the model or into the history."""
    w = world
    bot = w.bot.user_id
    dm = await w.alice.create_room([bot], direct=True)
    await w.alice.wait_joined(dm, bot)
    # `!help` here says the key goes here (it named this direct chat as `room:!…`).
    help_text = await w.alice.command(dm, bot, "!help")
    assert "!key set openai <key>  (sent here: this direct chat's own; for a group room" in (
        help_text
    ), help_text
    assert f"room:{dm}" not in help_text, help_text
    await _configure(w, dm, llamacpp_peer)
    missing = await w.alice.command(dm, bot, "!key set custom")
    assert "Saved" not in missing, missing

    secret = "hunter2-correct-horse"
    after = time.monotonic()
    sent = await w.alice.send(dm, secret)
    body = (await w.alice.reply_to(dm, bot, after, "the refusal of the secret")).content["body"]
    assert "took this for the key or password" in body and secret not in body, body
    assert "I deleted your message" in body, body
    assert (await w.alice.event_content(dm, sent)).get("content") == {}  # redacted
    history = await w.core.store.history(ChannelRef(Platform.MATRIX, dm), 50)
    assert history == []

    # Only the one message after it: the next is chat again.
    answer = await ask(w, w.alice, dm, "Say hello.")
    assert answer.text.strip()
    history = await w.core.store.history(ChannelRef(Platform.MATRIX, dm), 50)
    assert history[0].content == "Say hello."


async def test_an_edit_that_writes_a_key_in_is_redacted(world: World) -> None:
    """Edits are never run, but one that writes a key into a group room stayed there."""
    w = world
    bot = w.bot.user_id
    room_id = await _room_with_bot(w, power={bot: 50})
    original = await w.alice.send(room_id, "hello everyone")
    after = time.monotonic()
    edit = await w.alice.send(
        room_id,
        f"* !key set openai {KEY}",
        **{
            "m.new_content": {"msgtype": "m.text", "body": f"!key set openai {KEY}"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        },
    )
    body = (await w.alice.reply_to(room_id, bot, after, "the edit's notice")).content["body"]
    assert "That edit holds what looks like a key or password" in body, body
    assert "an edit is never run as a command" in body and KEY not in body, body
    assert (await w.alice.event_content(room_id, edit)).get("content") == {}  # redacted
    # The same after the bot's name (a command addressed to it), with a key of no known
    # shape: only the command says it is one.
    after = time.monotonic()
    named = f"{bot}: !key set custom plainsecret99"
    edit = await w.alice.send(
        room_id,
        f"* {named}",
        **{
            "m.new_content": {"msgtype": "m.text", "body": named},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        },
    )
    body = (await w.alice.reply_to(room_id, bot, after, "the named edit's notice")).content["body"]
    assert "That edit holds what looks like a key" in body and "plainsecret99" not in body, body
    assert (await w.alice.event_content(room_id, edit)).get("content") == {}
    # An emote is no command, but one that spells a key command is taken out, not run.
    after = time.monotonic()
    emote = await w.alice.send(room_id, "!key set custom plainsecret98", msgtype="m.emote")
    body = (await w.alice.reply_to(room_id, bot, after, "the emote's refusal")).content["body"]
    assert "an emote is never run as a command" in body and "plainsecret98" not in body, body
    assert (await w.alice.event_content(room_id, emote)).get("content") == {}
    # A key in chat, and one only in the fallback other clients show: taken out too,
    # with no word about commands.
    for fallback, new in ((f"* my key {KEY}", f"my key {KEY}"), (f"* my key {KEY}", "hi")):
        after = time.monotonic()
        edit = await w.alice.send(
            room_id,
            fallback,
            **{
                "m.new_content": {"msgtype": "m.text", "body": new},
                "m.relates_to": {"rel_type": "m.replace", "event_id": original},
            },
        )
        body = (await w.alice.reply_to(room_id, bot, after, "the notice")).content["body"]
        assert "I did not send or keep it" in body and "command" not in body, body
        assert (await w.alice.event_content(room_id, edit)).get("content") == {}
    # A plain edit of a message the bot never kept is still nothing to it.
    after = time.monotonic()
    await w.alice.send(
        room_id,
        "* hello all",
        **{
            "m.new_content": {"msgtype": "m.text", "body": "hello all"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        },
    )
    await asyncio.sleep(1.0)
    assert w.alice.messages(room_id, bot, after) == []


async def test_a_turn_control_from_a_direct_chat_for_another_room_is_refused(
    world: World,
) -> None:
    """`!regenerate room:!group` from a DM asked the model, then could not edit the
    group's answer from the DM: charged, retried for a minute, never shown."""
    w = world
    bot = w.bot.user_id
    group = await _room_with_bot(w)
    dm = await w.alice.create_room([bot], direct=True)
    await w.alice.wait_joined(dm, bot)
    for control in ("!regenerate", "!continue", "!stop"):
        answer = await w.alice.command(dm, bot, f"{control} room:{group}")
        assert f"Send {control} in the room of the answer" in answer, answer


async def test_key_in_a_direct_chat_is_stored_for_the_named_room_and_redacted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    w = world
    bot = w.bot.user_id
    group = await _room_with_bot(w)
    dm = await w.alice.create_room([bot], direct=True)
    await w.alice.wait_joined(dm, bot)

    after = time.monotonic()
    sent = await w.alice.send(dm, f"!key set openai {KEY} room:{group}")
    reply = await w.alice.reply_to(dm, bot, after, "the key confirmation")
    body = reply.content["body"]
    assert "Saved the openai key" in body and "deleted your message" in body, body
    assert KEY not in body
    assert (await w.alice.event_content(dm, sent)).get("content") == {}
    stored = await w.core.store.resolve_secret(ChannelRef(Platform.MATRIX, group), "openai_api_key")
    assert stored is not None and stored.reveal() == KEY

    # A key typed where the source goes is a bad value: the error must not quote it.
    misplaced = await w.alice.command(dm, bot, f"!key set {KEY} openai room:{group}")
    assert "holds what looks like a key or password" in misplaced, misplaced
    assert KEY not in misplaced, misplaced

    # An alias without its server was read as the key's last word ("a space at …").
    after = time.monotonic()
    sent = await w.alice.send(dm, f"!key set custom {KEY} room:#ops")
    said = await w.alice.wait_for(
        lambda: [s.content["body"] for s in w.alice.messages(dm, bot, after)], "the refusal"
    )
    assert any("A room alias needs its server" in body for body in said), said
    assert not any(KEY in body for body in said), said
    assert (await w.alice.event_content(dm, sent)).get("content") == {}  # redacted

    # bob may not set keys for alice's room, even from his own direct chat, which his
    # client made without giving the bot any power: no alarm about a room of two.
    bob_dm = await w.bob.create_room([bot])  # a room of two, the bot at power 0
    await w.bob.wait_joined(bob_dm, bot)
    refused = await w.bob.command(bob_dm, bot, f"!key set claude {KEY}x room:{group}")
    assert "Only admins" in refused, refused
    assert "in a direct chat only you can" in refused and "⚠️" not in refused, refused

    assert KEY not in caplog.text
    # The key is nowhere in the database files in plain text.
    for path in (w.db_path, w.db_path.with_name(w.db_path.name + "-wal")):
        if path.exists():
            assert KEY.encode() not in path.read_bytes(), path


async def test_encrypted_room_survives_a_restart(world: World, llamacpp_peer: LlamaCppPeer) -> None:
    w = world
    bot = w.bot.user_id
    room_id = await _room_with_bot(w, encrypted=True)
    assert w.alice.client.rooms[room_id].encrypted
    await _configure(w, room_id, llamacpp_peer)
    first = await ask(w, w.alice, room_id, f"{bot}: Say hello.")
    assert first.text.strip()
    assert isinstance(first.first.event, nio.RoomMessageText)  # decrypted by alice
    path = f"/_matrix/client/v3/rooms/{room_id}/event/{first.event_id}"
    raw = await asyncio.to_thread(w.server.get, path, w.alice.user.access_token)
    assert raw["type"] == "m.room.encrypted"  # what the homeserver holds
    session_before = (w.store_dir / "session.json").read_text()
    device_id = json.loads(session_before)["device_id"]
    devices_before = w.server.devices(bot)
    assert device_id in devices_before

    # Restart: a new Core on the same database, the same store_dir.
    await w.restart()
    assert (w.store_dir / "session.json").read_text() == session_before
    assert w.server.devices(bot) == devices_before  # logged in as the same device

    second = await ask(w, w.alice, room_id, f"{bot}: Say goodbye.")
    assert second.text.strip()
    assert isinstance(second.first.event, nio.RoomMessageText)
    assert len(await _answers(w, room_id)) == 2  # the history from before the restart
