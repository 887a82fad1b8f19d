"""Turn controls on a real Synapse, in the orders people use them: a reaction while a
regenerate streams, on a long answer's last page, after a restart; what each edit of the
answer says (its m.relates_to, its m.mentions), and what is stored."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nio
import pytest

from bot.store import generate_key
from bot.types import ChannelRef, Platform, Role, TurnState
from tests.integration.test_characters import CARD
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.matrix.test_reactions_on_synapse import react
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse


def texts(user: UserClient, room: str, bot: str, msgtype: str, after: float = 0.0) -> list[str]:
    """The bodies of the bot's messages of `msgtype` (m.text, m.notice) in the room."""
    found = user.messages(room, bot, after)
    return [str(s.content["body"]) for s in found if s.content.get("msgtype") == msgtype]


def mentioning(user_id: str) -> dict[str, Any]:
    """A message's m.mentions naming `user_id` (the bot: addressed to it)."""
    return {"m.mentions": {"user_ids": [user_id]}}


async def answered_in_a_group(
    alice: UserClient, bob: UserClient, bot: str, endpoint: SSEEndpoint
) -> tuple[str, Any]:
    """A room Alice made (its admin) with the bot and Bob, and Bob's first question
    there (`bot: one`) answered to its end: the room and the answer's event."""
    room = await alice.create_room([bot, bob.user.user_id])
    await alice.wait_joined(room, bot)
    await bob.join(room)
    after = time.monotonic()
    question = await bob.send(room, "bot: one", **mentioning(bot))
    answer = (await bob.answer_to(room, bot, question, after, "the answer")).event
    await bob.wait_for(lambda: bool(endpoint.asked) and endpoint.asked[0].ended, "its end")
    return room, answer


async def test_a_reaction_on_an_answer_being_regenerated_acts_once_it_ends(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """⏩ pressed while a 🔄 rewrote the answer (the event showing it growing again) said
    "Only the newest answer can change" and did nothing: the reaction was tied to the
    answer the event showed when it came, which the regenerate then replaced. README: a
    reaction other than ⏹ on an answer still being written acts on it once it ends."""
    bot = synapse_server.register("regenbot")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    try:
        async with (
            SSEEndpoint(chunks=3, span=0.3) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path) as core,
        ):
            room = await bob.create_room([bot.user_id])
            await bob.wait_joined(room, bot.user_id)
            mention: dict[str, Any] = {"m.mentions": {"user_ids": [bot.user_id]}}
            after = time.monotonic()
            await bob.send(room, "bot: count", **mention)
            answer = (await bob.reply_to(room, bot.user_id, after, "the answer")).event.event_id
            await bob.wait_for(lambda: endpoint.asked[0].ended, "the first answer's end")
            endpoint.chunks, endpoint.span = 6, 3.0
            await react(bob, room, answer, "🔄")
            await bob.wait_for(lambda: len(endpoint.asked) == 2, "the regenerate's request")
            await bob.wait_for(lambda: len(bob.edits_of(answer)) >= 2, "its first text")
            await react(bob, room, answer, "⏩")  # the event shows the regenerate growing
            assert not endpoint.asked[1].ended
            endpoint.chunks, endpoint.span = 2, 0.2
            await bob.wait_for(lambda: len(endpoint.asked) == 3, "the continue's request")
            await bob.wait_for(lambda: endpoint.asked[2].ended, "the continue's end")
            await asyncio.sleep(1.0)  # time for a notice the bot should not send
            history = await core.store.history(ChannelRef(Platform.MATRIX, room), 10)
            continued = endpoint.bodies[2]["messages"]
            shown = bob.shown_text(answer)
        notices = texts(bob, room, bot.user_id, "m.notice")
    finally:
        await bob.close()
    regenerated = "".join(SSEEndpoint(6, 0).words()).strip()
    assert notices == []
    # The continue went on from the regenerated answer, and the event shows both.
    assert any(m["role"] == "assistant" and m["content"].strip() == regenerated for m in continued)
    assert shown.strip() == f"{regenerated} w0\nw1"
    assert [(e.role, e.content.strip()) for e in history] == [
        (Role.USER, "bot: count"),
        (Role.ASSISTANT, shown.strip()),
    ]


async def test_a_reaction_on_a_long_answers_last_page_reaches_the_answer(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """An answer too long for one event is shown in several; 🔄 on its last page, where
    the answer ends and people react, did nothing: only its first event was looked up."""
    bot = synapse_server.register("longbot")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    long = " ".join(f"word{i}" for i in range(3500))  # about 30,000 characters: two events
    try:
        async with (
            SSEEndpoint(chunks=10, span=1.0, text=long) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path) as core,
        ):
            room = await bob.create_room([bot.user_id])
            await bob.wait_joined(room, bot.user_id)
            mention: dict[str, Any] = {"m.mentions": {"user_ids": [bot.user_id]}}
            after = time.monotonic()
            await bob.send(room, "bot: say a lot", **mention)

            def pages() -> list[str]:
                found = bob.messages(room, bot.user_id, after)
                return [s.event.event_id for s in found if s.content.get("msgtype") == "m.text"]

            await bob.wait_for(
                lambda: endpoint.asked and endpoint.asked[0].ended and len(pages()) == 2,
                "two pages",
            )
            first, last = pages()
            await bob.wait_for(
                lambda: (
                    (bob.shown_text(first) + " " + bob.shown_text(last)).split() == long.split()
                ),
                "the whole answer",
            )
            endpoint.text, endpoint.chunks = "A short one.", 2
            await react(bob, room, last, "🔄")
            await bob.wait_for(lambda: len(endpoint.asked) == 2, "the regenerate's request")
            await bob.wait_for(lambda: bob.shown_text(first) == "A short one.", "the new answer")

            def removed() -> list[str]:
                return [
                    s.event.redacts
                    for s in bob.seen
                    if isinstance(s.event, nio.RedactionEvent) and s.event.sender == bot.user_id
                ]

            await bob.wait_for(removed, "the page the new answer does not need removed")
            ref = ChannelRef(Platform.MATRIX, room)
            history = await core.store.history(ref, 10)
            posts = await core.store.posts_of(ref, history[-1].id or 0)
    finally:
        await bob.close()
    # The short answer took the first event; the page it no longer needs was removed.
    assert removed() == [last]
    assert [e.content for e in history] == ["bot: say a lot", "A short one."]
    assert posts == [first]


async def test_after_a_restart_an_admins_regenerate_stays_the_askers_to_swipe(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """After a restart `!regenerate` posts the new answer as a new message (README). Typed
    by a room admin for a member's question, that message was taken as the admin's: the
    member who asked reacted ◀ on it and nothing happened (reactions by anyone but the
    asker or an admin are ignored without a word)."""
    bot = synapse_server.register("restartbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    key = generate_key()
    try:
        async with SSEEndpoint(chunks=3, span=0.3) as endpoint:
            async with bot_answering_from(synapse_server, bot, endpoint, tmp_path, key):
                room, _ = await answered_in_a_group(alice, bob, bot.user_id, endpoint)
            endpoint.chunks = 5
            async with bot_answering_from(synapse_server, bot, endpoint, tmp_path, key) as core:
                after = time.monotonic()
                typed = await alice.send(room, "!regenerate")  # Alice is the room's creator
                new = (await bob.answer_to(room, bot.user_id, typed, after, "!regenerate")).event
                await bob.wait_for(
                    lambda: "(answer 2 of 2)" in texts(bob, room, bot.user_id, "m.notice"),
                    "the count",
                )
                await react(bob, room, new.event_id, "◀️")
                first = "".join(SSEEndpoint(3, 0).words()).strip()
                await bob.wait_for(
                    lambda: bob.shown_text(new.event_id).strip() == first, "the first answer"
                )
                history = await core.store.history(ChannelRef(Platform.MATRIX, room), 10)
    finally:
        await alice.close()
        await bob.close()
    assert len(endpoint.asked) == 2  # the swipe asked nobody
    assert [e.content.strip() for e in history] == ["bot: one", first]


async def test_every_edit_of_an_answer_mentions_whom_it_answers(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """An answer in a group room mentions its asker; an edit's new content replaces all of
    the event's, its m.mentions too. A 🔄's edits mentioned nobody, and a `!regenerate`
    typed by an admin mentioned the admin: the answer to Bob's question stopped being
    one that mentions Bob (a client highlights it by what the newest content says)."""
    bot = synapse_server.register("mentionbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    try:
        async with (
            SSEEndpoint(chunks=2, span=0.2, text="A **bold** answer.") as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path),
        ):
            room, answer = await answered_in_a_group(alice, bob, bot.user_id, endpoint)
            before = len(bob.edits_of(answer.event_id))
            endpoint.text = "Another **bold** one."
            await react(bob, room, answer.event_id, "🔄")
            await bob.wait_for(lambda: len(endpoint.asked) == 2, "the regenerate")
            await bob.wait_for(
                lambda: bob.shown_text(answer.event_id) == "Another **bold** one.", "its text"
            )
            after = time.monotonic()
            await alice.send(room, "!regenerate")  # Alice made the room: an admin
            await bob.wait_for(
                lambda: "(answer 3 of 3)" in texts(bob, room, bot.user_id, "m.notice", after),
                "the typed regenerate's end",
            )
            edits = [s.content for s in bob.edits_of(answer.event_id)[before:]]
    finally:
        await alice.close()
        await bob.close()
    assert answer.source["content"]["m.mentions"] == {"user_ids": [bob.user.user_id]}
    assert len(edits) >= 2
    for edit in edits:
        new = edit["m.new_content"]
        assert new["m.mentions"] == {"user_ids": [bob.user.user_id]}, edit
        assert edit["m.mentions"] == {}  # nobody is notified again
        assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": answer.event_id}
        assert "m.relates_to" not in new
    assert edits[-1]["m.new_content"]["formatted_body"] == "Another <strong>bold</strong> one."
    assert edits[-1]["formatted_body"] == "* Another <strong>bold</strong> one."


async def test_swipe_reactions_in_their_text_presentation(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """◀ and ▶ are text symbols that clients send as emoji (U+FE0F after them), bare, or
    as picked from a symbol viewer in their text form (U+FE0E after them): that last
    form did nothing."""
    bot = synapse_server.register("swipebot")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    try:
        async with (
            SSEEndpoint(chunks=1, span=0.1, text="First.") as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path),
        ):
            room = await bob.create_room([bot.user_id])
            await bob.wait_joined(room, bot.user_id)
            after = time.monotonic()
            await bob.send(room, "bot: one", **{"m.mentions": {"user_ids": [bot.user_id]}})
            answer = (await bob.reply_to(room, bot.user_id, after, "the answer")).event.event_id
            await bob.wait_for(lambda: endpoint.asked and endpoint.asked[0].ended, "its end")
            endpoint.text = "Second."
            await react(bob, room, answer, "🔄")
            await bob.wait_for(lambda: bob.shown_text(answer) == "Second.", "the regenerate")
            await react(bob, room, answer, "◀\ufe0e")
            await bob.wait_for(lambda: bob.shown_text(answer) == "First.", "the first again")
            await react(bob, room, answer, "▶\ufe0e")
            await bob.wait_for(lambda: bob.shown_text(answer) == "Second.", "the second again")
    finally:
        await bob.close()
    assert len(endpoint.asked) == 2


async def test_an_answer_removed_while_it_is_rewritten_gets_no_edit_after(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """An admin removes the bot's answer while a 🔄 rewrites it (or while it is first
    written): it stops, as README says, but its last words and "Stopped: the answer was
    deleted" still went out as an m.replace of the removed event, a new event holding
    the text the removal was to take out of the room's history."""
    bot = synapse_server.register("removedbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    try:
        async with (
            SSEEndpoint(chunks=2, span=0.2) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path),
        ):
            room, shown = await answered_in_a_group(alice, bob, bot.user_id, endpoint)
            answer = shown.event_id
            edits = len(bob.edits_of(answer))
            # One word every 10 s: no edit is under way as it is removed.
            endpoint.chunks, endpoint.span = 3, 30.0
            await react(bob, room, answer, "🔄")
            await bob.wait_for(lambda: len(bob.edits_of(answer)) > edits, "the regenerate's text")
            await alice.client.room_redact(room, answer)
            await bob.wait_for(lambda: endpoint.asked[1].cut, "the regenerate stopped")
            # And an answer removed while it is first written.
            after = time.monotonic()
            question = await bob.send(room, "bot: two", **mentioning(bot.user_id))
            second = (await bob.answer_to(room, bot.user_id, question, after, "two")).event.event_id
            await alice.client.room_redact(room, second)
            await bob.wait_for(lambda: endpoint.asked[2].cut, "the second answer stopped")
            await asyncio.sleep(2.0)  # time for the edits the bot should not send

            def after_removal(event_id: str) -> list[str]:
                """The edits of `event_id` the timeline has after its removal."""
                at = next(
                    i
                    for i, s in enumerate(bob.seen)
                    if isinstance(s.event, nio.RedactionEvent) and s.event.redacts == event_id
                )
                return [
                    s.content["m.new_content"]["body"]
                    for s in bob.seen[at:]
                    if s.replaces == event_id
                ]

            late = after_removal(answer) + after_removal(second)
    finally:
        await alice.close()
        await bob.close()
    assert late == []


async def test_reactions_of_someone_who_may_not_chat_here_are_ignored_quietly(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Bob asked, then an admin denied him the room: each reaction of his on his old
    answer made the bot say "You may not chat here" in the room, a notice per reaction
    (taken away and added again: as many as he liked). README: someone not allowed is
    ignored quietly, so the bot cannot be used to spam; a typed command is answered."""
    bot = synapse_server.register("denybot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    try:
        async with (
            SSEEndpoint(chunks=2, span=0.2) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path),
        ):
            room, shown = await answered_in_a_group(alice, bob, bot.user_id, endpoint)
            answer = shown.event_id
            denied = await alice.command(room, bot.user_id, f"!access deny user {bob.user.user_id}")
            assert "Rule added" in denied, denied
            after = time.monotonic()
            for key in ("🔄", "⏩", "▶️"):
                await react(bob, room, answer, key)
            typed = await bob.send(room, "!regenerate")  # a command: answered, as any is
            said = await bob.answer_to(room, bot.user_id, typed, after, "!regenerate")
            await asyncio.sleep(2.0)  # time for the notices the bot should not send
            # Alice's "Rule added" may reach Bob's sync after `after` on a busy machine.
            seen = texts(bob, room, bot.user_id, "m.notice", after)
            notices = [n for n in seen if not n.startswith("Rule added")]
    finally:
        await alice.close()
        await bob.close()
    assert notices == [said.content["body"]]
    assert "may not chat here" in notices[0]
    assert len(endpoint.asked) == 1


async def test_swipe_pressed_twice_quickly_on_a_greeting_shows_the_one_after_the_next(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """▶ pressed twice in a row on a character's greeting (by two admins, or ▶ in both its
    forms): the second, tied to the greeting the event showed when it came, found the first
    had swiped it away and said "Only the newest answer can change". An answer's swipes
    act on the event as it shows when their turn comes; a greeting's now do too."""
    bot = synapse_server.register("greetswipebot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        async with (
            SSEEndpoint(chunks=1, span=0.1) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path) as core,
        ):
            room = await alice.create_room([bot.user_id])
            await alice.wait_joined(room, bot.user_id)
            content = await alice.media_content(
                "m.file", "card.json", json.dumps(CARD).encode(), "application/json"
            )
            file_event = await alice.send_content(room, content)
            relates = {"m.in_reply_to": {"event_id": file_event}}
            await alice.send(room, "!character import", **{"m.relates_to": relates})
            [greeting] = await alice.wait_for(
                lambda: [
                    s.event.event_id
                    for s in alice.messages(room, bot.user_id)
                    if s.content.get("body", "").startswith("Welcome aboard")
                ],
                "the greeting",
            )
            after = time.monotonic()
            await react(alice, room, greeting, "▶️")
            await react(alice, room, greeting, "▶\ufe0e")
            await alice.wait_for(
                lambda: (
                    alice.shown_text(greeting).endswith(". Late again.")
                    or texts(alice, room, bot.user_id, "m.notice", after)
                ),
                "the third one, or a notice",
            )
            await asyncio.sleep(1.0)  # time for a notice the bot should not send
            notices = texts(alice, room, bot.user_id, "m.notice", after)
            shown = alice.shown_text(greeting)
            history = await core.store.history(ChannelRef(Platform.MATRIX, room), 10)
    finally:
        await alice.close()
    assert notices == []
    assert shown.startswith("Ah, alice") and shown.endswith(". Late again."), shown
    assert history[-1].content == shown


async def test_an_admins_regenerate_of_a_members_answer_is_the_members_to_stop(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Alice (the room's admin) reacts 🔄 on Bob's answer: the new answer is still Bob's,
    so his ⏹ stops it; Carol's ⏹ (neither the asker nor an admin) is ignored."""
    bot = synapse_server.register("adminregenbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), tmp_path / "b")
    carol = await UserClient.start(synapse_server, synapse_server.register("carol"), tmp_path / "c")
    try:
        async with (
            SSEEndpoint(chunks=2, span=0.2) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path) as core,
        ):
            room, shown = await answered_in_a_group(alice, bob, bot.user_id, endpoint)
            answer = shown.event_id
            await alice.invite(room, carol.user.user_id)
            await carol.join(room)
            await alice.wait_joined(room, carol.user.user_id)
            edits = len(bob.edits_of(answer))
            endpoint.chunks, endpoint.span = 40, 40.0  # a word a second
            await react(alice, room, answer, "🔄")
            await bob.wait_for(lambda: len(endpoint.asked) == 2, "the regenerate's request")
            await bob.wait_for(lambda: len(bob.edits_of(answer)) > edits, "its first text")
            await react(carol, room, answer, "⏹️")
            await asyncio.sleep(2.0)  # time for a stop that should not come
            carol_stopped = bool(endpoint.asked[1].cut or endpoint.asked[1].ended)
            await react(bob, room, answer, "⏹️")
            await bob.wait_for(lambda: endpoint.asked[1].cut, "Bob's stop")
            history = await core.store.history(ChannelRef(Platform.MATRIX, room), 10)
    finally:
        await alice.close()
        await bob.close()
        await carol.close()
    assert not carol_stopped
    assert history[-1].state is TurnState.STOPPED, history[-1]
