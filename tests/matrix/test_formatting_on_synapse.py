"""How a model's Markdown reaches other people's clients through the real Synapse: the
formatted_body of the answer's final version, as Element renders it."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import pytest

from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse

ANSWER = "**Plan**\n- Pack\n  - tent\n    - pegs\n  - stove\n- Walk `north`\n\tthen rest"


def shown(formatted: str) -> list[str]:
    """The lines a client shows of `formatted`: HTML folds blanks at a line's start to
    nothing (a no-break space is kept)."""
    text = html.unescape(re.sub(r"<(?!br>)[^>]*>", "", formatted).replace("&nbsp;", "\0"))
    return [re.sub(r"^[ \t\n]+", "", line).replace("\0", " ") for line in text.split("<br>")]


async def test_a_nested_list_keeps_its_depth_in_the_html_clients_show(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """An answer with any Markdown goes as HTML, where the spaces that nest a list's items
    fold to nothing: every item showed at the same depth, the nesting lost."""
    bot = synapse_server.register("listbot")
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
                room, f"{bot.user_id}: a plan?", **{"m.mentions": {"user_ids": [bot.user_id]}}
            )
            first = await alice.reply_to(room, bot.user_id, since, "the answer")
            await alice.wait_for(
                lambda: alice.shown_text(first.event.event_id) == ANSWER, "the whole answer"
            )
            edits = alice.edits_of(first.event.event_id)
            final = edits[-1].content["m.new_content"] if edits else first.content
    finally:
        await alice.close()
    assert final["body"] == ANSWER
    assert "<strong>Plan</strong>" in final["formatted_body"]
    assert shown(final["formatted_body"]) == [
        "Plan",
        "- Pack",
        "  - tent",
        "    - pegs",
        "  - stove",
        "- Walk north",
        "    then rest",
    ]
