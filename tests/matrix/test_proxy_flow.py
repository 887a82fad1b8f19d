"""A room set up on a real Synapse against a key-protected endpoint (the LiteLLM proxy):
the URL first (the check reports the missing key), the key in a direct chat naming the
room, then the model list, the model and a chat answer from the endpoint.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.connection import PROXY_PASSWORD
from bot.core import Core
from bot.store import api_key_name, generate_key
from bot.types import ChannelRef, Platform, Role, Source
from tests.matrix.helpers import UserClient, bot_options, make_core, running_bot
from tests.peers.litellm import LiteLLMPeer
from tests.peers.synapse import MatrixUser, SynapseServer

pytestmark = [pytest.mark.synapse, pytest.mark.litellm]


@dataclass
class World:
    bot: MatrixUser
    core: Core
    db_path: Path
    alice: UserClient  # creates the rooms: an admin of them
    bob: UserClient  # a plain member, so the room is not a direct chat


@pytest.fixture(scope="module")
async def world(
    synapse_server: SynapseServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    base = tmp_path_factory.mktemp("matrix-proxy-flow")
    bot = synapse_server.register("bot")
    db_path = base / "bot.db"
    core = await make_core(f"sqlite+aiosqlite:///{db_path}", generate_key())
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), base / "a")
    bob = await UserClient.start(synapse_server, synapse_server.register("bob"), base / "b")
    try:
        async with running_bot(core, bot_options(synapse_server, bot, base / "store")):
            yield World(bot, core, db_path, alice, bob)
    finally:
        await alice.close()
        await bob.close()
        await core.close()


async def _group_room(w: World) -> str:
    room_id = await w.alice.create_room([w.bot.user_id, w.bob.user.user_id])
    await w.alice.wait_joined(room_id, w.bot.user_id)
    await w.bob.join(room_id)
    return room_id


async def _direct_chat(w: World) -> str:
    dm = await w.alice.create_room([w.bot.user_id], direct=True)
    await w.alice.wait_joined(dm, w.bot.user_id)
    return dm


async def _answers(w: World, room_id: str) -> list[str]:
    history = await w.core.store.history(ChannelRef(Platform.MATRIX, channel_id=room_id), 100)
    return [e.content for e in history if e.role is Role.ASSISTANT]


@pytest.mark.parametrize("secret_form", ["proxy password", "key set custom"])
async def test_custom_endpoint_then_its_key_in_a_dm_then_chat(
    world: World, litellm_peer: LiteLLMPeer, secret_form: str
) -> None:
    w, peer = world, litellm_peer
    bot = w.bot.user_id
    room_id = await _group_room(w)
    ref = ChannelRef(Platform.MATRIX, channel_id=room_id)

    answer = await w.alice.command(room_id, bot, "!source custom")
    assert "Source set to custom" in answer, answer

    answer = await w.alice.command(room_id, bot, f"!proxy set {peer.url}")
    assert f"Endpoint set to {peer.url}." in answer, answer
    assert "Status check failed" in answer and "HTTP 401" in answer, answer
    assert "does not exist" not in answer and not re.search(r"(?<!\d)404(?!\d)", answer), answer
    assert "!proxy password" in answer, answer  # the hint uses Matrix's prefix

    # Typed in the group without the secret, as a newcomer first does: told where to send
    # it (Matrix probe: the usage line had them paste the password into the group).
    answer = await w.alice.command(room_id, bot, f"!{secret_form}")
    assert answer.startswith("I only take keys and passwords in a direct chat with me"), answer
    assert f"room:{room_id}" in answer and "Usage" not in answer, answer

    # The key goes into a direct chat with the bot, naming the room.
    dm = await _direct_chat(w)
    after = time.monotonic()
    sent = await w.alice.send(dm, f"!{secret_form} {peer.master_key} room:{room_id}")
    reply = await w.alice.reply_to(dm, bot, after, "the confirmation in the direct chat")
    body = str(reply.content["body"])
    saved = (
        "Saved the proxy password" if secret_form == "proxy password" else "Saved the custom key"
    )
    assert saved in body and "Status check: OK" in body, body
    assert "deleted your message" in body, body
    assert peer.master_key not in body
    assert (await w.alice.event_content(dm, sent)).get("content") == {}  # redacted
    name = PROXY_PASSWORD if secret_form == "proxy password" else api_key_name(Source.CUSTOM)
    stored = await w.core.store.resolve_secret(ref, name)
    assert stored is not None and stored.reveal() == peer.master_key

    answer = await w.alice.command(room_id, bot, "!models external")
    assert peer.model in answer, answer
    answer = await w.alice.command(room_id, bot, f"!model {peer.model}")
    assert answer.strip() == f"Model set to {peer.model}.", answer

    config = await w.core.store.effective_config(ref)
    assert config.source is Source.CUSTOM and config.model == peer.model
    assert config.proxy_url == peer.url
    assert config.status is not None and config.status.ok

    after = time.monotonic()
    await w.alice.send(room_id, f"{bot}: Hello there.", **{"m.mentions": {"user_ids": [bot]}})
    first = await w.alice.reply_to(room_id, bot, after, "the bot's answer")
    event_id = str(first.event.event_id)
    deadline = time.monotonic() + 60
    while True:
        saved_answers = await _answers(w, room_id)
        if saved_answers and w.alice.shown_text(event_id).strip() == saved_answers[-1].strip():
            break
        assert time.monotonic() < deadline, (w.alice.shown_text(event_id), saved_answers)
        await asyncio.sleep(0.3)
    assert saved_answers == [peer.mock_text]
    assert w.alice.shown_text(event_id).strip() == peer.mock_text
    assert "⚠️" not in w.alice.shown_text(event_id)


@pytest.mark.parametrize(
    ("typed", "line"),
    [
        ("proxy password", "!proxy password <password>"),
        ("key set custom", "!key set <openai|claude|mistral|custom> <key>"),
    ],
)
async def test_a_secret_command_for_a_room_without_its_secret_shows_the_line_with_the_room(
    world: World, typed: str, line: str
) -> None:
    """Matrix probe: `!proxy password room:!group` in a direct chat answered with the usage
    line alone (`!proxy password <password>`); sent as shown, the password was the direct
    chat's own, and the group still had none."""
    w = world
    bot = w.bot.user_id
    room_id = await _group_room(w)
    dm = await _direct_chat(w)
    answer = await w.alice.command(dm, bot, f"!{typed} room:{room_id}")
    assert f"`{line} room:{room_id}`" in answer, answer
    assert answer.startswith("[") and "Missing the" in answer, answer  # names the room
    # A member who may not set it is told that, not how to send it.
    bob_dm = await w.bob.create_room([bot], direct=True)
    await w.bob.wait_joined(bob_dm, bot)
    answer = await w.bob.command(bob_dm, bot, f"!{typed} room:{room_id}")
    assert "Only admins of this room" in answer and "room:" not in answer, answer
    # Another refusal's usage line names the room too.
    answer = await w.alice.command(dm, bot, f"!key set room:{room_id}")
    assert "Missing `source`" in answer, answer
    assert answer.endswith(f"!key set <openai|claude|mistral|custom> <key> room:{room_id}"), answer
