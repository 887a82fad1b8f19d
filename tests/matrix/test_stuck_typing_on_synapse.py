"""A homeserver failing the bot's typing notices (no answer at all, or a 429 asking an
hour, which nio sleeps out), on a real Synapse behind a loopback proxy: "typing…" is a
courtesy, and holds neither the answer nor the room's next question more than
patience.TYPING_PATIENCE (shortened here)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiohttp import web

from bot.conversation import patience
from tests.matrix.helpers import HomeserverProxy, SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse

ANSWER = "The first part and its end."


class FailingTyping(HomeserverProxy):
    """A proxy in front of Synapse that fails every typing notice as told: `mode` "429"
    (M_LIMIT_EXCEEDED asking an hour) or "hang" (no answer until the proxy closes)."""

    def __init__(self, upstream: str, mode: str) -> None:
        super().__init__(upstream)
        self.mode = mode
        self.typings = 0

    async def intercept(self, request: web.Request, body: bytes) -> web.StreamResponse | None:
        if request.method == "PUT" and "/typing/" in request.path:
            self.typings += 1
            if self.mode == "hang":
                await self.closing.wait()
            error = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests"}
            error["retry_after_ms"] = 3_600_000  # type: ignore[assignment]
            return web.json_response(error, status=429)
        return None


@pytest.mark.parametrize("mode", ["429", "hang"])
async def test_a_typing_notice_the_homeserver_never_takes_holds_no_answer(
    synapse_server: SynapseServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """Review of typing10: the answer's first page took "typing…" off before the pages and
    edits after it went out; a homeserver answering that notice with a 429 asking an hour
    (nio sleeps it out, again and again) or not at all (2 minutes of nio's timeouts) held
    the answer's end, and the room's next question, that long. Now a typing notice holds
    them TYPING_PATIENCE at most."""
    monkeypatch.setattr(patience, "TYPING_PATIENCE", 1.0)  # 5 s in production
    bot = synapse_server.register("typing")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        async with (
            SSEEndpoint(chunks=2, span=0.6, text=ANSWER) as endpoint,
            FailingTyping(synapse_server.url, mode) as proxy,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path, via=proxy),
        ):
            room_id = await alice.create_room([bot.user_id])
            await alice.wait_joined(room_id, bot.user_id)
            after = time.monotonic()
            await alice.send(room_id, f"{bot.user_id}: tell me")

            def shown() -> list[str]:
                return [
                    alice.shown_text(str(s.event.event_id))
                    for s in alice.messages(room_id, bot.user_id, after)
                ]

            await alice.wait_for(lambda: ANSWER in shown(), "the answer's end", 30)
            await alice.send(room_id, f"{bot.user_id}: and then")
            await alice.wait_for(lambda: len(endpoint.asked) == 2, "the next question", 30)
            await alice.wait_for(lambda: shown().count(ANSWER) == 2, "the next answer", 30)
    finally:
        await alice.close()
    assert proxy.typings >= 1
