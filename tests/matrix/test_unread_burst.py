"""A burst of encrypted messages whose room key never comes (MatrixBot._unread_later).

The real MatrixBot, handler and Core, and nio's own Olm machine (its store on disk);
only the homeserver calls are stood in for (tests/matrix/test_turn_order.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nio
import pytest
from nio.crypto import InboundGroupSession, OutboundGroupSession

from bot.frontends.matrix import decide
from bot.frontends.matrix.client import MatrixBot
from bot.frontends.matrix.messages import MessageHandler
from tests.matrix.helpers import make_core
from tests.matrix.test_turn_order import (
    ALICE,
    BOB,
    BOT,
    CAROL,
    DM,
    GROUP,
    Homeserver,
    StandInApi,
    _room,
)

BURST = 40


def _encrypted(event_id: str, session_id: str) -> nio.MegolmEvent:
    """An m.room.encrypted event of a session whose key the bot never got."""
    source = {
        "type": "m.room.encrypted",
        "event_id": event_id,
        "sender": ALICE,
        "origin_server_ts": int(time.time() * 1000),
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "sender_key": "a" * 43,
            "ciphertext": "AwgAEnAcipher",
            "session_id": session_id,
            "device_id": "ALICEDEV",
        },
    }
    event = nio.Event.parse_encrypted_event(source)
    assert isinstance(event, nio.MegolmEvent)
    return event


def _olm_client(tmp_path: Path) -> nio.AsyncClient:
    """The bot's nio client with its own Olm machine (its store on disk); no call made."""
    (tmp_path / "crypto").mkdir()
    client = nio.AsyncClient(
        "http://127.0.0.1:9",
        BOT,
        device_id="BOTDEV",
        store_path=str(tmp_path / "crypto"),
        config=nio.AsyncClientConfig(encryption_enabled=True, max_timeouts=1),
    )
    client.restore_login(BOT, "BOTDEV", "token")  # loads the Olm machine, no call
    assert client.olm is not None
    return client


def _keyed(
    event_id: str, room_id: str, body: str, relates_to: dict[str, Any] | None = None
) -> tuple[nio.MegolmEvent, InboundGroupSession]:
    """An encrypted message of alice's, and the room key that reads it (not given yet).
    `relates_to`: its relation, in the clear as clients send it, and in its plaintext."""
    sender_key = "b" * 43
    session = OutboundGroupSession()
    session.shared = True  # nio's own check: the key is handed over by the test
    key = InboundGroupSession(session.session_key, "c" * 43, sender_key, room_id)
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    clear: dict[str, Any] = {}
    if relates_to is not None:
        content["m.relates_to"] = clear["m.relates_to"] = relates_to
    plain = {"type": "m.room.message", "room_id": room_id, "content": content}
    source = {
        "type": "m.room.encrypted",
        "event_id": event_id,
        "sender": ALICE,
        "origin_server_ts": int(time.time() * 1000),
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "sender_key": sender_key,
            "ciphertext": session.encrypt(json.dumps(plain)),
            "session_id": session.id,
            "device_id": "ALICEDEV",
            **clear,
        },
    }
    event = nio.Event.parse_encrypted_event(source)
    assert isinstance(event, nio.MegolmEvent)
    return event, key


async def _settled(names: tuple[str, ...]) -> None:
    """Until no task of the bot's named one of `names` runs (one may start another)."""
    async with asyncio.timeout(30):
        while waits := [t for t in asyncio.all_tasks() if t.get_name() in names]:
            await asyncio.wait(waits)


async def test_a_burst_whose_keys_never_come_is_tried_once_each_after_its_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each message still unread after UNREAD_NOTICE_AFTER tried to decrypt every message
    waiting: a burst of N (a busy room the bot's session gets no keys for, a backlog
    after a restart, a hostile sender) made N×N attempts at once, each logging two of
    nio's warnings, with the event loop held meanwhile. Now each tries its own."""
    monkeypatch.setattr(decide, "UNREAD_NOTICE_AFTER", 0.2)
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    client = _olm_client(tmp_path)
    client.rooms[DM] = _room(DM, {ALICE: 0})
    hs = Homeserver()
    api = StandInApi(client, hs)
    bot = MatrixBot(client, MessageHandler(core, api, 50), api, ())
    tries: list[str] = []
    decrypt = client.decrypt_event

    def counted(event: nio.MegolmEvent) -> Any:
        tries.append(event.event_id)
        return decrypt(event)

    monkeypatch.setattr(client, "decrypt_event", counted)

    async def request_room_key(event: nio.MegolmEvent) -> None:  # the homeserver's part
        return None

    monkeypatch.setattr(client, "request_room_key", request_room_key)
    try:
        for i in range(BURST):  # as one sync hands them over
            bot._on_event(DM, _encrypted(f"$u{i}", f"lost-session-{i}"))
        await _settled(("unread message",))
        told = [s for s in hs.sent if str(s.content.get("body", "")).startswith("I could not")]
        assert len(told) == 1, hs.sent  # one notice for all of them
        assert not bot._undecrypted  # its sender was told: none waits any more
        assert len(tries) <= 2 * BURST, f"{len(tries)} decryption attempts for {BURST}"
    finally:
        await bot.close()
        await client.close()
        await core.close()


async def test_a_key_come_in_a_sync_not_acted_on_yet_is_used_when_the_wait_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message is tried again at the end of its wait: its key came meanwhile, with no
    sync after it to act on it. It is read and answered; its sender is told nothing."""
    monkeypatch.setattr(decide, "UNREAD_NOTICE_AFTER", 0.2)
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    client = _olm_client(tmp_path)
    olm = client.olm
    assert olm is not None
    client.rooms[DM] = _room(DM, {ALICE: 0})
    hs = Homeserver()
    api = StandInApi(client, hs)
    bot = MatrixBot(client, MessageHandler(core, api, 50), api, ())

    async def request_room_key(event: nio.MegolmEvent) -> None:
        return None

    monkeypatch.setattr(client, "request_room_key", request_room_key)
    event, key = _keyed("$late", DM, "hi")
    try:
        bot._on_event(DM, event)
        assert len(bot._undecrypted) == 1
        olm.inbound_group_store.add(key)
        await _settled(("unread message", "message"))
        assert not bot._undecrypted
        said = [str(s.content.get("body", "")) for s in hs.sent]
        # Read and answered as any message: this room has no model yet.
        assert said == [said[0]] and said[0].startswith("No model is selected"), said
    finally:
        await bot.close()
        await client.close()
        await core.close()


async def test_a_key_that_comes_while_the_notice_is_decided_gets_an_answer_and_no_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deciding the unread notice waits (here: whether the message replies to the bot,
    asked of the homeserver). Its key came meanwhile and the next sync read the message
    with it: it was answered, and its sender was told it could not be read, both. The
    decision and the end of the wait are one step now: answered, nothing else said."""
    monkeypatch.setattr(decide, "UNREAD_NOTICE_AFTER", 0.2)
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    client = _olm_client(tmp_path)
    olm = client.olm
    assert olm is not None
    client.rooms[GROUP] = _room(GROUP, {ALICE: 0, BOB: 100, CAROL: 0})
    hs = Homeserver(bot_events={"$answer"})  # the bot's, not remembered: looked up
    reply = {"m.in_reply_to": {"event_id": "$answer"}}
    event, key = _keyed("$late", GROUP, "and then?", relates_to=reply)
    came: list[str] = []

    class KeyDuringLookup(StandInApi):
        async def is_own_event(self, room_id: str, event_id: str) -> bool:
            if not came:  # the first lookup: the notice's
                came.append(event_id)
                olm.inbound_group_store.add(key)  # the key comes in a to-device message …
                bot._retry_undecrypted()  # … and the sync that brought it reads what waits
            return await super().is_own_event(room_id, event_id)

    api = KeyDuringLookup(client, hs)
    bot = MatrixBot(client, MessageHandler(core, api, 50), api, ())

    async def request_room_key(event: nio.MegolmEvent) -> None:
        return None

    monkeypatch.setattr(client, "request_room_key", request_room_key)
    try:
        bot._on_event(GROUP, event)
        await _settled(("unread message", "message"))
        assert came == ["$answer"]  # the key came while the notice was being decided
        assert not bot._undecrypted
        said = [str(s.content.get("body", "")) for s in hs.sent]
        # Read and answered as any message: this room has no model yet.
        assert len(said) == 1 and said[0].startswith("No model is selected"), said
    finally:
        await bot.close()
        await client.close()
        await core.close()
