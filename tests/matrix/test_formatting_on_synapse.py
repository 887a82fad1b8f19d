"""How a model's Markdown reaches other people's clients through the real Synapse: the
formatted_body of the answer's final version, as Element renders it."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

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


async def final_version(
    synapse_server: SynapseServer, tmp_path: Path, answer: str, name: str
) -> dict[str, Any]:
    """The content of the bot's answer `answer` as it shows at last to a member of the
    room (its first event's, or its last edit's new content)."""
    bot = synapse_server.register(name)
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    (tmp_path / "bot").mkdir()
    try:
        async with (
            SSEEndpoint(chunks=3, span=0.2, text=answer) as endpoint,
            bot_answering_from(synapse_server, bot, endpoint, tmp_path / "bot"),
        ):
            room = await alice.create_room([bot.user_id])
            await alice.wait_joined(room, bot.user_id)
            since = time.monotonic()
            await alice.send(
                room, f"{bot.user_id}: well?", **{"m.mentions": {"user_ids": [bot.user_id]}}
            )
            first = await alice.reply_to(room, bot.user_id, since, "the answer")
            await alice.wait_for(
                lambda: alice.shown_text(first.event.event_id) == answer, "the whole answer"
            )
            edits = alice.edits_of(first.event.event_id)
            final: dict[str, Any] = edits[-1].content["m.new_content"] if edits else first.content
    finally:
        await alice.close()
    assert final["body"] == answer
    return final


async def test_a_nested_list_keeps_its_depth_in_the_html_clients_show(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """An answer with any Markdown goes as HTML, where the spaces that nest a list's items
    fold to nothing: every item showed at the same depth, the nesting lost."""
    final = await final_version(synapse_server, tmp_path, ANSWER, "listbot")
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


MARKDOWN = (
    "## Tips ##\n"
    "**Pack *light*, not heavy** and ***never*** `rm -rf` my_config_file; ||a twist||\n"
    "---\n"
    "Done."
)


async def test_a_models_markdown_reaches_clients_as_the_tags_element_draws(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Review: `**a *b* c**` showed its `**` raw, `***x***` a stray `*` either side, a
    `||spoiler||` as Discord writes one was shown to all, bars and all, and a heading or
    a rule went as the `#`s and dashes they were written with."""
    final = await final_version(synapse_server, tmp_path, MARKDOWN, "markdownbot")
    assert final["formatted_body"] == (
        "<h2>Tips</h2>"
        "<strong>Pack <em>light</em>, not heavy</strong> and "
        "<em><strong>never</strong></em> <code>rm -rf</code> my_config_file; "
        "<span data-mx-spoiler>a twist</span><br>"
        "<hr>"
        "Done."
    )
