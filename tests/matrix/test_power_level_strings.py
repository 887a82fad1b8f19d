"""Power levels written as strings (`"users": {"@bob:hs": "50"}`), which room versions 1-9
allow and Synapse reads as their numbers (int()). Synapse's client API no longer lets
anyone send them (it validates power levels as integers), so they come from older rooms'
state and other servers over federation: this drives the real MatrixBot, handler and
Core with a sync nio parses as it would parse such a room's (tests/matrix/test_turn_order.py
stands in for the homeserver's calls)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import nio
import pytest

from bot.frontends.matrix.access import power_level, power_levels_of
from bot.frontends.matrix.client import MatrixBot
from bot.frontends.matrix.messages import MessageHandler
from tests.matrix.helpers import make_core
from tests.matrix.test_turn_order import ALICE, BOB, BOT, GROUP, Homeserver, StandInApi, _room

REFUSED = "Only admins of this room can use !model"


def _levels(users: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "type": "m.room.power_levels",
        "state_key": "",
        "event_id": f"$levels{n}",
        "sender": ALICE,
        "origin_server_ts": int(time.time() * 1000),
        "content": {"users": users, "users_default": 0, "events_default": 0},
    }


def _said(n: int, text: str) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": f"$said{n}",
        "sender": BOB,
        "origin_server_ts": int(time.time() * 1000),
        "content": {"msgtype": "m.text", "body": text},
    }


async def test_a_level_written_as_a_string_counts_as_its_number(tmp_path: Path) -> None:
    """nio refused the whole m.room.power_levels event for one level written as a string,
    so the bot kept the levels it had before (every member at 0 in a room it just joined):
    a moderator at "50" could not configure the bot, and a demotion to "0" was not seen."""
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    client = nio.AsyncClient("http://127.0.0.1:9", BOT)
    client.user_id = BOT
    client.rooms[GROUP] = _room(GROUP, {ALICE: 0, BOB: 0})
    hs = Homeserver()
    api = StandInApi(client, hs)
    bot = MatrixBot(client, MessageHandler(core, api, 50), api, ())

    async def sync(n: int, *events: dict[str, Any]) -> None:
        """One sync of the room with `events` in its timeline, as nio hands it over."""
        body = {
            "next_batch": f"s{n}",
            "rooms": {
                "join": {
                    GROUP: {
                        "timeline": {"events": list(events), "limited": False, "prev_batch": "p"},
                        "state": {"events": []},
                    }
                }
            },
        }
        response = nio.SyncResponse.from_dict(body)
        assert isinstance(response, nio.SyncResponse), response
        await client.receive_response(response)
        await bot._on_sync(response, first=False)
        tasks = [t for t in bot._tasks if t.get_name() == "message"]
        for task in tasks:
            await task

    def reply(n: int) -> str:
        return next(s.body for s in hs.sent if s.in_reply_to == f"$said{n}")

    try:
        await sync(1, _levels({ALICE: "100", BOB: "50"}, 1), _said(1, "!model gpt-4o"))
        assert reply(1).startswith("Model set to gpt-4o"), reply(1)
        await sync(2, _levels({ALICE: "100", BOB: "0"}, 2), _said(2, "!model o3"))
        assert reply(2).startswith(REFUSED), reply(2)
        await sync(3, _levels({ALICE: 100, BOB: " 75 "}, 3), _said(3, "!model o3"))
        assert reply(3).startswith("Model set to o3"), reply(3)
        # Not a number at all: no level (the room's default for users), as Synapse has none.
        await sync(4, _levels({ALICE: 100, BOB: "fifty"}, 4), _said(4, "!model o4-mini"))
        assert reply(4).startswith(REFUSED), reply(4)
    finally:
        await bot.close()
        await client.close()
        await core.close()


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (50, 50),
        ("50", 50),
        (" -5 ", -5),
        ("+10", 10),
        ("fifty", None),
        ("", None),
        ("5" * 200, None),  # longer than any level
        (True, None),
        (50.0, None),
        (None, None),
        ([50], None),
    ],
)
def test_a_level_is_read_as_synapse_reads_one(value: object, level: int | None) -> None:
    assert power_level(value) == level


def test_levels_left_out_or_unreadable_take_their_defaults() -> None:
    levels = power_levels_of(
        {"users": {BOB: "50", ALICE: "x"}, "redact": "20", "ban": "lots", "events": []}
    )
    assert levels.users == {BOB: 50}
    assert levels.events == {}
    assert (levels.defaults.redact, levels.defaults.ban) == (20, 50)
    # An event with integers only reads as nio reads it.
    content = {"users": {BOB: 50}, "events": {"m.room.name": 60}, "state_default": 40}
    source = {**_levels({}, 9), "content": content}
    parsed = nio.Event.parse_event(source)
    assert isinstance(parsed, nio.PowerLevelsEvent)
    assert power_levels_of(content) == parsed.power_levels
