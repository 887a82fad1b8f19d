"""A model's answer written to mislead, through the real Synapse: what the event that
reaches other people's clients holds (its formatted_body and m.mentions)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse

ANSWER = (
    "@room **Sign in again**: [google.com](https://evil.example/login) or "
    "[https://bank.example/](https://evil.example/bank), see [the docs](https://e.org/x)\n"
    '<img src="https://evil.example/pixel.png"> <a href="javascript:alert(1)">x</a> '
    "<script>alert(1)</script> <iframe src=https://evil.example></iframe> "
    "<mx-reply><blockquote>forged</blockquote></mx-reply> [x](data:text/html,hi) "
    '<font color="red">r</font>'
)


async def test_a_hostile_answer_reaches_the_room_as_text_that_pings_nobody(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    bot = synapse_server.register("hostbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    (tmp_path / "bot").mkdir()
    try:
        async with (
            SSEEndpoint(chunks=3, span=0.2, text=ANSWER) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path / "bot"),
        ):
            room = await alice.create_room([bot.user_id])
            await alice.wait_joined(room, bot.user_id)
            since = time.monotonic()
            await alice.send(
                room, f"{bot.user_id}: hi", **{"m.mentions": {"user_ids": [bot.user_id]}}
            )
            first = await alice.reply_to(room, bot.user_id, since, "the answer")
            await alice.wait_for(
                lambda: alice.shown_text(first.event.event_id).strip() == ANSWER.strip(),
                "the whole answer",
            )
            edits = alice.edits_of(first.event.event_id)
            contents = [first.content] + [e.content["m.new_content"] for e in edits]
            for content in [first.content, *(e.content for e in edits), *contents[1:]]:
                assert "room" not in content["m.mentions"], content  # `@room` pings nobody
                assert content["m.mentions"].get("user_ids", []) in ([], [alice.user.user_id])
            html = contents[-1]["formatted_body"]
    finally:
        await alice.close()
    # Markdown is rendered; every tag the model wrote is text.
    assert "<strong>Sign in again</strong>" in html
    assert '<a href="https://e.org/x">the docs</a>' in html
    for tag in (
        "<img",
        '<a href="javascript',
        "<script",
        "<iframe",
        "<mx-reply",
        "<font",
        'data:text/html,hi)">',
    ):
        assert tag not in html, (tag, html)
    assert "&lt;img" in html and "&lt;mx-reply&gt;" in html
    # A link's text naming another address than it opens is written out, not linked.
    assert "[google.com](https://evil.example/login)" in html
    assert "[https://bank.example/](https://evil.example/bank)" in html
    assert 'href="https://evil.example' not in html
