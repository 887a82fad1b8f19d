"""`chatbot run` against the loopback Discord: a character card or preset sent with no
question is not asked of the model; it is said what it is, and how to import it to
those who may."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script
from tests.integration.test_characters import CARD, ST_DEFAULT
from tests.unit.characters.samples import png_with

TOKEN = "loopback.bot.token-0123456789"
ALICE = (777_000_000_000_000_001, "alice")


def _replies(fake: FakeDiscord, to: int) -> list[str]:
    found: list[dict[str, Any]] = [
        m
        for m in fake.messages.values()
        if str((m.get("message_reference") or {}).get("message_id")) == str(to)
    ]
    return [str(m["content"]) for m in found]


async def test_a_card_or_preset_sent_alone_is_not_asked_of_the_model(tmp_path: Path) -> None:
    """Discord probe: a card attached with only the bot's mention (or in a channel
    answering every message) was answered as a question: the model read the card's JSON
    (a paid call) and the history kept it. Now an admin is told `/character import`
    (or `/preset import`), a member only what it is; with a question it is a question."""
    fake = FakeDiscord(TOKEN)
    card = json.dumps(CARD).encode()
    image = png_with({"chara": base64.b64encode(card).decode()})
    async with chatbot_run(
        tmp_path, fake, Script(chunks=["Seen."]), ADMIN_IDS=str(fake.user_id)
    ) as (bot, model):
        await fake.wait_until(lambda: bool(fake.command_ids), 30)
        mention = f"<@{fake.bot_id}>"
        said: list[str] = []
        for name, kind, data in [
            ("aurelia.png", "image/png", image),
            ("aurelia.json", "application/json", card),
            ("Default.json", "application/json", json.dumps(ST_DEFAULT).encode()),
        ]:
            sent = await fake.user_says(mention, files=[(name, kind, data)])
            await fake.wait_until(lambda sent=sent: bool(_replies(fake, sent)), 60)
            said += _replies(fake, sent)
        # A member, in a channel answering every message: what it is, no command.
        await fake.slash("reply", "mode", mode="always")
        await fake.wait_until(lambda: fake.answered("always"), 30)
        theirs = await fake.user_says(
            "", mention_bot=False, files=[("aurelia.png", "image/png", image)], by=ALICE
        )
        await fake.wait_until(lambda: bool(_replies(fake, theirs)), 60)
        said += _replies(fake, theirs)
        # With a question, it is one.
        asked = await fake.user_says(
            f"{mention} what do you think of this character?",
            files=[("aurelia.json", "application/json", card)],
        )
        await fake.wait_until(lambda: "Seen." in _replies(fake, asked), 60)
        exit_code = await bot.stop()
    assert exit_code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log
    png_card, json_card, preset, members = said
    for hint in (png_card, json_card):
        assert hint.startswith("That is a SillyTavern character card, so I did not send it"), hint
        assert "To make it this channel's character, use /character import with the file" in hint
    assert preset.startswith("That is a SillyTavern Chat Completion preset"), preset
    assert "use /preset import with the file in its `file` option" in preset
    assert members == (
        "That is a SillyTavern character card, so I did not send it to the model.\n"
        "To ask me about it instead, reply to it with your question."
    )
    # The model was asked once: the question, which alone holds a card.
    (request,) = model.requests
    messages = request["messages"]
    assert "Captain Aurelia Voss" in str(messages[-1]["content"])
    assert not any("Aurelia" in str(m["content"]) for m in messages[:-1])


async def test_a_card_sent_with_other_files_is_left_out_of_the_question(tmp_path: Path) -> None:
    """Discord probe: a card attached beside another file, with only the bot's mention,
    was a question like any: the model read the card's JSON with the notes (a card of a
    2 MB lorebook, all of it) and the history kept it. Now the card is left out, the
    other files are the question, and the answer begins by saying so and how to import
    it; with a question, everything is sent, as with a card alone."""
    fake = FakeDiscord(TOKEN)
    card = json.dumps(CARD).encode()
    notes = b"Chapter 1: the airship leaves port at dawn.\n"
    async with chatbot_run(
        tmp_path, fake, Script(chunks=["Seen."]), ADMIN_IDS=str(fake.user_id)
    ) as (bot, model):
        await fake.wait_until(lambda: bool(fake.command_ids), 30)
        mention = f"<@{fake.bot_id}>"
        files = [
            ("aurelia.json", "application/json", card),
            ("notes.txt", "text/plain", notes),
        ]
        bare = await fake.user_says(mention, files=files)
        await fake.wait_until(lambda: any("Seen." in r for r in _replies(fake, bare)), 60)
        asked = await fake.user_says(f"{mention} what do you make of these?", files=files)
        await fake.wait_until(lambda: any("Seen." in r for r in _replies(fake, asked)), 60)
        exit_code = await bot.stop()
    assert exit_code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log
    (answer,) = _replies(fake, bare)
    assert answer.startswith(
        "(The SillyTavern character card among your files was not sent to the model, only "
        "the other files. To make it this channel's character, use /character import with "
        "the file in its `file` option. To ask me about it too, reply to your message with "
        "your question.)\n\nSeen."
    ), answer
    alone, with_question = model.requests
    question = str(alone["messages"][-1]["content"])
    assert "Chapter 1: the airship leaves port at dawn." in question, question
    assert "Aurelia" not in str(alone["messages"]), alone["messages"]
    # Asked with a question, the card is part of it, and the first message's is not.
    messages = with_question["messages"]
    assert "Captain Aurelia Voss" in str(messages[-1]["content"])
    assert not any("Aurelia" in str(m["content"]) for m in messages[:-1])
