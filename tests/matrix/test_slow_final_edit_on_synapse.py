"""The end of an answer the homeserver is slow to take (its final edit, an m.replace),
on a real Synapse behind a loopback proxy that fails those edits: a 5xx, a 429 asking
for a long wait, or no answer at all. The room's conversation is held a while at most
(the answer's end patience, shortened here), a `!stop` meanwhile says the answer has
ended, and the answer then goes out again in a new message, stored whole."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from aiohttp import web

from bot.conversation import patience
from bot.types import ChannelRef, Platform, TurnState
from tests.matrix.helpers import HomeserverProxy, SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse

ANSWER = "The first part and its end."


class FailingEdits(HomeserverProxy):
    """A proxy in front of Synapse that fails the bot's edits (m.replace sends) as told:
    `mode` "500", "429" (retry_after_ms `wait_ms`), "bare429" (a 429 with no Matrix error,
    as a reverse proxy's rate limit says it) or "hang"; with `posts_taken`, the messages
    the bot posts after that many are refused with a 429 asking an hour; everything else
    passes."""

    def __init__(
        self,
        upstream: str,
        mode: str,
        wait_ms: int = 3_600_000,
        times: int = 1_000,
        posts_taken: int | None = None,
    ) -> None:
        super().__init__(upstream)
        self.times = times  # edits failed at most
        self.mode = mode
        self.wait_ms = wait_ms
        self.failed = 0
        self.posts_taken = posts_taken
        self.posts = 0  # the bot's posts (not edits) that came

    async def intercept(self, request: web.Request, body: bytes) -> web.StreamResponse | None:
        if request.method == "PUT" and "/send/m.room.message/" in request.path:
            content = json.loads(body or b"{}")
            edit = content.get("m.relates_to", {}).get("rel_type") == "m.replace"
            if not edit:
                self.posts += 1
                if self.posts_taken is not None and self.posts > self.posts_taken:
                    error = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests"}
                    error["retry_after_ms"] = 3_600_000  # type: ignore[assignment]
                    return web.json_response(error, status=429)
            if edit and self.failed < self.times:
                self.failed += 1
                if self.mode == "hang":  # until the proxy closes
                    await self.closing.wait()
                if self.mode == "bare429":
                    return web.Response(status=429, text="Too Many Requests")
                if self.mode == "429":
                    error = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests"}
                    error["retry_after_ms"] = self.wait_ms  # type: ignore[assignment]
                    return web.json_response(error, status=429)
                error = {"errcode": "M_UNKNOWN", "error": "Internal server error"}
                return web.json_response(error, status=500)
        return None


@pytest.fixture
def short_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patience, "END_PATIENCE", 2.0)  # 15 s in production
    monkeypatch.setattr(patience, "RATE_LIMIT_PATIENCE", 6.0)  # 60 s in production


@pytest.mark.usefixtures("short_patience")
@pytest.mark.parametrize("mode", ["500", "429", "hang"])
async def test_an_answers_end_the_homeserver_keeps_failing_holds_the_room_a_while(
    synapse_server: SynapseServer, tmp_path: Path, mode: str
) -> None:
    """A homeserver failing the final edit of an answer held the room's conversation:
    ~16 s of 5xx, as long as a 429 asked (an hour, nio sleeping it out again and again),
    18 minutes of one that never answered. The answer stayed shown cut where the failing
    began, nothing said so, and it was stored as cut. Now the edit is given up at the
    answer's end patience: the answer goes out again whole in a new message, is stored
    whole, and the next question is answered; a `!stop` meanwhile says it has ended."""
    bot = synapse_server.register("slowend")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        async with (
            SSEEndpoint(chunks=2, span=0.6, text=ANSWER) as endpoint,
            FailingEdits(synapse_server.url, mode) as proxy,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path, via=proxy) as core,
        ):
            room_id = await alice.create_room([bot.user_id])
            await alice.wait_joined(room_id, bot.user_id)
            after = time.monotonic()
            await alice.send(room_id, f"{bot.user_id}: tell me")
            await alice.wait_for(lambda: proxy.failed, "a failed edit")
            stop = await alice.command(room_id, bot.user_id, "!stop")
            await alice.send(room_id, f"{bot.user_id}: and then")
            # Within the patience and a few seconds more, not the minutes (or hour) before.
            await alice.wait_for(lambda: len(endpoint.asked) == 2, "the next question", 30)

            def pages() -> list[str]:
                return [
                    alice.shown_text(str(s.event.event_id))
                    for s in alice.messages(room_id, bot.user_id, after)
                    if not str(s.content.get("body", "")).startswith("Nothing to stop")
                ]

            await alice.wait_for(lambda: len(pages()) >= 2, "the answer sent again")
            ref = ChannelRef(Platform.MATRIX, channel_id=room_id)
            stored = [(e.content, e.state) for e in await core.store.history(ref, 10)]
    finally:
        await alice.close()
    assert stop.startswith("Nothing to stop: the answer here has ended;")
    stuck, again = pages()[:2]
    assert stuck == "The first part"
    assert "here it is again from there on" in again
    assert again.endswith(ANSWER)
    assert (ANSWER, TurnState.DONE) in stored


@pytest.mark.usefixtures("short_patience")
@pytest.mark.parametrize("mode", ["429", "bare429"])
async def test_a_short_rate_limit_on_the_final_edit_is_waited_out(
    synapse_server: SynapseServer, tmp_path: Path, mode: str
) -> None:
    """The homeserver says when the edit goes through (a 429 of a few seconds, past the
    patience but within RATE_LIMIT_PATIENCE): it is waited out, not given up and the
    answer posted again (its beginning twice). Review of repost10: a bare 429 (no
    M_LIMIT_EXCEEDED, as a reverse proxy in front of the homeserver says it), which nio
    waits out 5 s as it does one saying no retry_after_ms, was not counted as a wait."""
    bot = synapse_server.register("slowend")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        async with (
            SSEEndpoint(chunks=2, span=0.6, text=ANSWER) as endpoint,
            FailingEdits(synapse_server.url, mode, wait_ms=3000, times=1) as proxy,
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

            await alice.wait_for(lambda: ANSWER in shown(), "the answer's end")
            await alice.send(room_id, f"{bot.user_id}: and then")
            await alice.wait_for(lambda: len(endpoint.asked) == 2, "the next question")
    finally:
        await alice.close()
    assert proxy.failed == 1
    assert shown()[0] == ANSWER
    assert not any("here it is again" in text for text in shown())


@pytest.mark.usefixtures("short_patience")
async def test_an_answer_sent_again_the_homeserver_will_not_post_lets_the_room_go(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Review of repost10: the answer sent again after its end was given up had no patience
    at all; a homeserver refusing those posts too (a 429 asking an hour, which nio sleeps
    out again and again) held the room's conversation that long. The answer sent again
    has a patience of its own: given up, the log says the answer is not shown whole, the
    next question is answered, and the answer is stored whole."""
    bot = synapse_server.register("slowend")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        async with (
            SSEEndpoint(chunks=2, span=0.6, text=ANSWER) as endpoint,
            FailingEdits(synapse_server.url, "500", posts_taken=1) as proxy,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path, via=proxy) as core,
        ):
            room_id = await alice.create_room([bot.user_id])
            await alice.wait_joined(room_id, bot.user_id)
            with caplog.at_level(logging.WARNING, logger="bot.frontends.matrix"):
                await alice.send(room_id, f"{bot.user_id}: tell me")
                await alice.wait_for(lambda: proxy.posts >= 2, "the answer sent again")
                await alice.send(room_id, f"{bot.user_id}: and then")
                await alice.wait_for(lambda: len(endpoint.asked) == 2, "the next question", 30)
            ref = ChannelRef(Platform.MATRIX, channel_id=room_id)
            stored = [(e.content, e.state) for e in await core.store.history(ref, 10)]
    finally:
        await alice.close()
    assert (ANSWER, TurnState.DONE) in stored
    said = [r.getMessage() for r in caplog.records if "not shown whole" in r.getMessage()]
    assert any("gave up after" in line for line in said), said
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("bot"))
