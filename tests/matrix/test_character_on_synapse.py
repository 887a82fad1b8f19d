"""`!character import` replied to a card file on a real Synapse: the bot's name and avatar
in that room only (m.room.member), the greeting, and the global profile back on clear."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import nio
import pytest

from tests.integration.test_characters import CARD
from tests.matrix.helpers import UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import SynapseServer
from tests.unit.characters.samples import png_with

pytestmark = [pytest.mark.synapse]


async def _member(client: UserClient, room_id: str, user_id: str) -> dict[str, Any]:
    response = await client.client.room_get_state_event(room_id, "m.room.member", user_id)
    assert isinstance(response, nio.RoomGetStateEventResponse), response
    return dict(response.content)


async def _answer(alice: UserClient, room_id: str, bot_id: str, event_id: str, since: float) -> str:
    def answer() -> list[str]:
        return [
            str(s.content["body"])
            for s in alice.messages(room_id, bot_id, since)
            if s.content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
            == event_id
        ]

    found: list[str] = await alice.wait_for(answer, "the answer to the import")
    return found[0]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_a_card_gives_the_bot_a_face_in_one_room(
    synapse_server: SynapseServer, tmp_path: Path, encrypted: bool
) -> None:
    server = synapse_server
    bot = server.register("cardbot")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
            room_id = await alice.create_room([bot.user_id], encrypted=encrypted)
            other_id = await alice.create_room([bot.user_id])
            await alice.wait_joined(room_id, bot.user_id)
            await alice.wait_joined(other_id, bot.user_id)
            before = await _member(alice, room_id, bot.user_id)

            image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
            content = await alice.media_content(
                "m.file", "aurelia.png", image, "image/png", encrypt=encrypted
            )
            since = time.monotonic()
            file_event = await alice.send_content(room_id, content)
            # Sent first, alone, as people do: what it is and how to import it, though no
            # model is chosen here yet ("No model is selected" had pointed elsewhere).
            seen = await alice.reply_to(room_id, bot.user_id, since, "the card's hint")
            hint = str(seen.content["body"])
            assert hint.startswith("That is a SillyTavern character card"), hint
            assert "reply `!character import` to it" in hint, hint
            since = time.monotonic()
            relates = {"m.in_reply_to": {"event_id": file_event}}
            command = await alice.send(room_id, "!character import", **{"m.relates_to": relates})
            text = await _answer(alice, room_id, bot.user_id, command, since)
            # A room of alice and the bot: their direct chat, as the bot calls it.
            assert (
                "Character set for this direct chat: Captain Aurelia Voss (speaking as Aurelia)."
                in text
            ), text

            member = await _member(alice, room_id, bot.user_id)
            assert member["displayname"] == "Aurelia" and member["membership"] == "join"
            avatar = await alice.client.download(mxc=member["avatar_url"])
            assert isinstance(avatar, nio.MemoryDownloadResponse), avatar
            assert avatar.body.startswith(b"\x89PNG")
            # Only that room: elsewhere the bot keeps its own profile.
            assert await _member(alice, other_id, bot.user_id) == before

            greeting = await alice.wait_for(
                lambda: [
                    s
                    for s in alice.messages(room_id, bot.user_id, since)
                    if s.content.get("body", "").startswith("Welcome aboard")
                ],
                "the greeting",
            )
            assert greeting[0].content["body"].startswith("Welcome aboard, alice")
            # "swipe to see the others" named nothing to type or react with on Matrix.
            assert "Its greeting has 3 versions: !swipe next shows the others." in text, text
            swiped = await alice.command(room_id, bot.user_id, "!swipe next")
            assert swiped == "(greeting 2 of 3)", swiped  # not an answer to anything

            cleared = await alice.command(room_id, bot.user_id, "!character clear")
            assert "Removed Aurelia" in cleared, cleared
            restored = await _member(alice, room_id, bot.user_id)
            assert restored.get("displayname") == before.get("displayname")
            assert restored.get("avatar_url") == before.get("avatar_url")
    finally:
        await alice.close()
        await core.close()


async def test_the_name_members_see_addresses_the_bot(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """After an import the room shows the bot as "Aurelia"; "Aurelia, …" without a pill
    went unanswered, as only the bot's own name (which nobody there sees) was looked for."""
    server = synapse_server
    bot = server.register("facebot")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
            room_id = await alice.create_room([bot.user_id, bob.user.user_id])
            await alice.wait_joined(room_id, bot.user_id)
            await bob.join(room_id)
            image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
            content = await alice.media_content("m.file", "aurelia.png", image, "image/png")
            file_event = await alice.send_content(room_id, content)
            since = time.monotonic()
            relates = {"m.in_reply_to": {"event_id": file_event}}
            command = await alice.send(room_id, "!character import", **{"m.relates_to": relates})
            assert "Aurelia" in await _answer(alice, room_id, bot.user_id, command, since)

            def shown_as() -> str:
                room = bob.client.rooms.get(room_id)
                member = room.users.get(bot.user_id) if room is not None else None
                return member.display_name if member is not None else ""

            await bob.wait_for(lambda: shown_as() == "Aurelia", "the bot's name in the room")
            since = time.monotonic()
            asked = await bob.send(room_id, "Aurelia, are you there?")
            answer = await _answer(bob, room_id, bot.user_id, asked, since)
            assert "No model is selected for this room" in answer, answer  # it answered
    finally:
        await alice.close()
        await bob.close()
        await core.close()


async def test_a_card_with_the_command_as_its_caption_is_imported(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Matrix probe: a card sent with `!character import` as its caption (Element X, and
    Element, write a caption under a file) ran the command without its own file: "No file
    came with the command". The caption's file is the command's."""
    server = synapse_server
    bot = server.register("cardbot")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
            room_id = await alice.create_room([bot.user_id], encrypted=True)
            await alice.wait_joined(room_id, bot.user_id)
            content = await alice.media_content(
                "m.file",
                "aurelia.json",
                json.dumps(CARD).encode(),
                "application/json",
                encrypt=True,
                caption="!character import",
            )
            since = time.monotonic()
            file_event = await alice.send_content(room_id, content)
            text = await _answer(alice, room_id, bot.user_id, file_event, since)
    finally:
        await alice.close()
        await core.close()
    assert text.startswith("Character set for this direct chat: Captain Aurelia Voss"), text


async def test_a_card_that_cannot_be_downloaded_is_said_and_its_name_forges_no_log_line(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Matrix probe: `!character import` replied to a file whose link is broken, named with
    a line break and a line of its own: the log wrote the name as it came, so a member
    could add a line of their choosing to the operator's log. It names the file as the
    reply does, on one line."""
    server = synapse_server
    bot = server.register("cardbot")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    forged = "2026-01-01 00:00:00,000 ERROR bot.store: the database was deleted"
    caplog.set_level("INFO", logger="bot")
    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
            room_id = await alice.create_room([bot.user_id])
            await alice.wait_joined(room_id, bot.user_id)
            name = f"card.png\n{forged}"
            content = {"msgtype": "m.file", "body": name, "filename": name, "url": "mxc://"}
            file_event = await alice.send_content(room_id, content)
            since = time.monotonic()
            relates = {"m.in_reply_to": {"event_id": file_event}}
            command = await alice.send(room_id, "!character import", **{"m.relates_to": relates})
            text = await _answer(alice, room_id, bot.user_id, command, since)
    finally:
        await alice.close()
        await core.close()
    assert text == f"Could not download card.png {forged}; try again.", text
    logged = [r.getMessage() for r in caplog.records if "could not fetch" in r.getMessage()]
    assert logged and all("\n" not in line for line in logged), logged


async def test_a_reaction_on_a_greeting_whose_post_fails_stops_waiting(
    synapse_server: SynapseServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """🔄 on a greeting's first page while its next page is posted waits for the greeting
    to end. Its post failing with anything but SendFailed (an error nio raised, say) left
    it ending never: the reaction waited until shutdown. Now it stops waiting, and says
    in the log that there was nothing to do."""
    caplog.set_level(logging.INFO, logger="bot.frontends.matrix")
    server = synapse_server
    bot = server.register("failgreetbot")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    long_greeting = "Welcome aboard, {{user}}. " + "The engines hum below deck. " * 2000
    card = {**CARD, "data": {**CARD["data"], "first_mes": long_greeting}}
    first_page = asyncio.Event()
    release = asyncio.Event()
    failed: list[str] = []
    send = nio.AsyncClient.room_send

    async def room_send(
        client: nio.AsyncClient, room_id: str, kind: str, content: Any, **kw: Any
    ) -> Any:
        text = content.get("body", "") if isinstance(content, dict) else ""
        if client.user_id == bot.user_id and content.get("msgtype") == "m.text":
            if text.startswith("Welcome aboard"):
                first_page.set()
            elif first_page.is_set():  # the greeting's next page
                await release.wait()
                failed.append(text[:20])
                raise RuntimeError("a stand-in for an error nio raised")
        return await send(client, room_id, kind, content, **kw)

    monkeypatch.setattr(nio.AsyncClient, "room_send", room_send)

    def reactions() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name() == "reaction" and not t.done()]

    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
            room_id = await alice.create_room([bot.user_id])
            await alice.wait_joined(room_id, bot.user_id)
            content = await alice.media_content(
                "m.file", "card.json", json.dumps(card).encode(), "application/json"
            )
            file_event = await alice.send_content(room_id, content)
            relates = {"m.in_reply_to": {"event_id": file_event}}
            await alice.send(room_id, "!character import", **{"m.relates_to": relates})
            [page] = await alice.wait_for(
                lambda: [
                    s
                    for s in alice.messages(room_id, bot.user_id)
                    if s.content.get("body", "").startswith("Welcome aboard")
                ],
                "the greeting's first page",
            )
            reaction = {
                "m.relates_to": {
                    "rel_type": "m.annotation",
                    "event_id": page.event.event_id,
                    "key": "🔄",
                }
            }
            response = await alice.client.room_send(
                room_id, "m.reaction", reaction, ignore_unverified_devices=True
            )
            assert isinstance(response, nio.RoomSendResponse), response
            await alice.wait_for(reactions, "the bot to take the reaction")
            release.set()  # the next page fails
            await alice.wait_for(lambda: not reactions(), "the reaction to stop waiting", 30.0)
            assert len(failed) == 1  # the greeting's second page, while the reaction waited
            assert "nothing done" in caplog.text
    finally:
        release.set()
        await alice.close()
        await core.close()
