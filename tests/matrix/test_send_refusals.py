"""How the bot takes a homeserver's refusal of a send: asked again only when asking
again can help. A loopback server answers the client-server API's send as told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nio
import pytest
from aiohttp import web

from bot.frontends.matrix.api import MatrixApi
from bot.frontends.matrix.sink import RatePace, SendFailed
from tests.loopback import serving


class Homeserver:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body
        self.sends = 0

    async def send(self, request: web.Request) -> web.Response:
        self.sends += 1
        return web.json_response(self.body, status=self.status)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Homeserver, str]]:
    server = Homeserver(400, {})
    app = web.Application()
    app.router.add_put("/_matrix/client/v3/rooms/{room}/send/{type}/{txn}", server.send)
    async with serving(app) as url:
        yield server, url


async def _send(url: str) -> MatrixApi:
    client = nio.AsyncClient(url, "@bot:example.org")
    client.access_token = "syt_loopback_token"
    return MatrixApi(client, "unverified", RatePace())


@pytest.mark.parametrize(
    "body",
    [
        {"errcode": "M_UNKNOWN", "error": "Invalid relation"},  # Synapse's many 400s
        {"errcode": "M_FORBIDDEN", "error": "You are not in this room"},
    ],
)
async def test_a_refusal_is_not_asked_again(served: tuple[Homeserver, str], body: Any) -> None:
    """A 400 `M_UNKNOWN` was taken as passing: sent four more times over ~7 s, each
    refused the same way, while the answer waited."""
    server, url = served
    server.status, server.body = (400 if body["errcode"] == "M_UNKNOWN" else 403), body
    api = await _send(url)
    try:
        with pytest.raises(SendFailed) as err:
            await api.send("!room:example.org", {"msgtype": "m.text", "body": "hi"})
    finally:
        await api.client.close()
    assert server.sends == 1
    assert body["errcode"] in str(err.value)


async def test_a_server_error_is_asked_again(served: tuple[Homeserver, str]) -> None:
    server, url = served
    server.status, server.body = 500, {"errcode": "M_UNKNOWN", "error": "Internal error"}
    api = await _send(url)
    try:
        with pytest.raises(SendFailed):
            await api.send("!room:example.org", {"msgtype": "m.text", "body": "hi"})
    finally:
        await api.client.close()
    assert server.sends > 1


async def test_whose_an_event_is_is_asked_once() -> None:
    """A thread's root is looked up at every message in that thread until the bot talks
    there: an event found to be someone else's was asked of the homeserver every time."""
    asked: list[str] = []

    async def event(request: web.Request) -> web.Response:
        asked.append(request.match_info["event"])
        return web.json_response(
            {
                "type": "m.room.message",
                "event_id": request.match_info["event"],
                "sender": "@alice:example.org",
                "origin_server_ts": 1,
                "content": {"msgtype": "m.text", "body": "a thread of Alice's"},
            }
        )

    app = web.Application()
    app.router.add_get("/_matrix/client/v3/rooms/{room}/event/{event}", event)
    async with serving(app) as url:
        api = await _send(url)
        try:
            for _ in range(3):
                assert not await api.is_own_event("!room:example.org", "$alices")
        finally:
            await api.client.close()
    assert asked == ["$alices"]
