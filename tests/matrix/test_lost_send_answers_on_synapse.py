"""A send of the bot's that reached Synapse (its event is in the room) but whose answer
never came back: a 5xx after the event was kept, or the connection cut before the answer.
On a real Synapse behind a loopback proxy that forwards the PUT, then loses its answer.
The bot tries again under the same transaction id, which Synapse answers with the event
it already has: the room shows the message, its edit, its redaction once."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nio
import pytest
from aiohttp import web

from tests.matrix.helpers import HomeserverProxy, SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse

ANSWER = "The first part and its end."
NEXT = "And the next one."
KEY = "sk-" + "lostanswer" * 5


def _content(body: bytes) -> dict[str, Any]:
    found = json.loads(body or b"{}")
    return found if isinstance(found, dict) else {}


def answer_posts(request: web.Request, body: bytes) -> bool:
    """The first event of the answer (ANSWER's first chunk, editing nothing)."""
    content = _content(body)
    first = "The first" in str(content.get("body")) and "m.new_content" not in content
    return "/send/m.room.message/" in request.path and first


def edits(request: web.Request, body: bytes) -> bool:
    rel = _content(body).get("m.relates_to", {})
    return "/send/m.room.message/" in request.path and rel.get("rel_type") == "m.replace"


def redactions(request: web.Request, body: bytes) -> bool:
    return "/redact/" in request.path


class LostAnswers(HomeserverProxy):
    """Forwards the bot's PUTs `picked` to Synapse (which keeps them), then loses the
    answer to the first one's tries (its transaction id), `times` at most: `mode` "500"
    answers a 500 instead, "cut" closes the connection without an answer."""

    def __init__(
        self, upstream: str, picked: Callable[[web.Request, bytes], bool], mode: str, times: int
    ) -> None:
        super().__init__(upstream)
        self.picked = picked
        self.mode = mode
        self.times = times
        self.lost = 0
        self.txn_ids: list[str] = []  # of every PUT picked, in order

    async def intercept(self, request: web.Request, body: bytes) -> web.StreamResponse | None:
        if request.method != "PUT" or not self.picked(request, body):
            return None
        self.txn_ids.append(request.path.rsplit("/", 1)[1])
        answer = await self.forward(request, body)
        if self.lost == self.times or self.txn_ids[-1] != self.txn_ids[0]:
            return answer
        self.lost += 1
        if self.mode == "cut":
            assert request.transport is not None
            request.transport.close()
        error = {"errcode": "M_UNKNOWN", "error": "Internal server error"}
        return web.json_response(error, status=500)


@contextlib.asynccontextmanager
async def room_with_bot_behind(
    synapse_server: SynapseServer, tmp_path: Path, proxy: LostAnswers, endpoint: SSEEndpoint
) -> AsyncIterator[tuple[UserClient, str, str]]:
    """Alice, the bot's user id and their room (the bot a moderator), the bot running
    behind `proxy`."""
    bot = synapse_server.register("lostbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    try:
        async with bot_answering_from(synapse_server, bot, endpoint, tmp_path, via=proxy):
            room = await alice.create_room([bot.user_id], power={bot.user_id: 50})
            await alice.wait_joined(room, bot.user_id)
            yield alice, bot.user_id, room
    finally:
        await alice.close()


async def next_answer(alice: UserClient, room: str, bot: str, endpoint: SSEEndpoint) -> None:
    """A second question answered: every event of the first answer came before it."""
    endpoint.text = NEXT
    after = time.monotonic()
    await alice.send(room, f"{bot}: and then?")

    def shown() -> bool:
        return any(
            alice.shown_text(str(m.event.event_id)) == NEXT
            for m in alice.messages(room, bot, after)
        )

    await alice.wait_for(shown, "the next answer")


# aiohttp tries a PUT cut on a reused connection once more itself, nio a cut one three
# times, all under the same id: 8 cuts are past them.
@pytest.mark.parametrize(("mode", "times"), [("500", 1), ("cut", 8)])
async def test_an_answer_whose_send_lost_its_answer_is_shown_once(
    synapse_server: SynapseServer, tmp_path: Path, mode: str, times: int
) -> None:
    """Synapse kept the answer's event, then the bot got a 5xx, or the connection was cut
    (so often that nio gave up): the bot posted the answer again under a new transaction
    id, and the room showed it twice."""
    async with (
        SSEEndpoint(chunks=2, span=0.6, text=ANSWER) as endpoint,
        LostAnswers(synapse_server.url, answer_posts, mode, times) as proxy,
        room_with_bot_behind(synapse_server, tmp_path, proxy, endpoint) as (alice, bot, room),
    ):
        after = time.monotonic()
        await alice.send(room, f"{bot}: tell me")
        await alice.wait_for(lambda: len(proxy.txn_ids) > proxy.lost > 0, "the post tried again")
        await next_answer(alice, room, bot, endpoint)
        shown = [alice.shown_text(str(m.event.event_id)) for m in alice.messages(room, bot, after)]
    assert shown == [ANSWER, NEXT], shown
    assert len(set(proxy.txn_ids)) == 1, proxy.txn_ids


async def test_an_edit_whose_send_lost_its_answer_is_sent_once(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """The answer's edit kept by Synapse, then a 5xx: the same m.replace went out twice."""
    async with (
        SSEEndpoint(chunks=2, span=0.6, text=ANSWER) as endpoint,
        LostAnswers(synapse_server.url, edits, "500", 1) as proxy,
        room_with_bot_behind(synapse_server, tmp_path, proxy, endpoint) as (alice, bot, room),
    ):
        after = time.monotonic()
        await alice.send(room, f"{bot}: tell me")
        first = await alice.reply_to(room, bot, after, "the answer")
        await alice.wait_for(lambda: len(proxy.txn_ids) > 1, "the edit tried again")
        await next_answer(alice, room, bot, endpoint)
        ended = [
            e
            for e in alice.edits_of(str(first.event.event_id))
            if e.content["m.new_content"]["body"] == ANSWER
        ]
    assert alice.shown_text(str(first.event.event_id)) == ANSWER
    assert len(ended) == 1, ended
    assert proxy.txn_ids[0] == proxy.txn_ids[1], proxy.txn_ids


async def test_a_redaction_whose_send_lost_its_answer_is_sent_once(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """A key typed in a group room is taken out; Synapse kept the redaction, then a 5xx:
    the bot redacted the message again, a second redaction event."""
    async with (
        SSEEndpoint(chunks=1, span=0.1, text=ANSWER) as endpoint,
        LostAnswers(synapse_server.url, redactions, "500", 1) as proxy,
        room_with_bot_behind(synapse_server, tmp_path, proxy, endpoint) as (alice, bot, room),
    ):
        after = time.monotonic()
        sent = await alice.send(room, f"!key set openai {KEY}")
        told = await alice.answer_to(room, bot, sent, after, "the refusal")

        def redactions_of_it() -> list[str]:
            return [
                str(s.event.event_id)
                for s in alice.seen
                if isinstance(s.event, nio.RedactionEvent) and s.event.redacts == sent
            ]

        # The notice comes after the redaction (tried again) in the room's order.
        found = await alice.wait_for(redactions_of_it, "the redaction")
    assert "deleted your message" in told.content["body"], told.content
    assert len(proxy.txn_ids) == 2, proxy.txn_ids
    assert len(found) == 1, found
