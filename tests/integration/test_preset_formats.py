"""A preset's formats of a card's world info, scenario and personality (SillyTavern's
`wi_format`, `scenario_format`, `personality_format`) through the real Core: imported,
set with /prompts, exported, and the exact request."""

from __future__ import annotations

import json

import respx

from tests.integration.conftest import MEMBER, Harness
from tests.integration.test_characters import CARD, card_file, run, streaming
from tests.integration.test_chat import FAKE, ask, configure_fake

FORMATS = {
    "temperature": 0.7,
    "wi_format": "<lore>\n{0}\n</lore>{1}",
    "scenario_format": "Scene ({{char}} with {{user}}): {{SCENARIO}}",
    "personality_format": "{{char}} is {{personality}}.",
}


async def system_sent(h: Harness, text: str = "How is the engine?") -> str:
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        sink = await ask(h, text)
    assert sink.error is None, sink.error
    first = json.loads(route.calls.last.request.content)["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


async def test_a_presets_formats_word_the_cards_lore_scenario_and_personality(
    harness: Harness,
) -> None:
    """They were ignored: SillyTavern's defaults were always sent. SillyTavern applies
    them in openai.js preparePromptsForChatCompletion (substituteParams of the scenario
    and personality formats, formatWorldInfo of the entries before and after the card)."""
    await configure_fake(harness)
    await run(harness, ("character", "import"), file=card_file(CARD))
    reply = await run(harness, ("preset", "import"), file=card_file(FORMATS, "f.json"))
    assert reply.ok, reply.text
    assert "wi_format=<lore> {0} </lore>{1}" in reply.text, reply.text
    assert "scenario_format=Scene ({{char}} with {{user}}): {{SCENA…" in reply.text
    assert "Ignored" not in reply.text, reply.text
    assert await system_sent(harness) == (
        "You are Aurelia.\n\n"
        "Aurelia commands the airship Meridian.\n\n"
        "Aurelia is stern but fair.\n\n"
        "Scene (Aurelia with Bob): Bob has just come aboard.\n\n"
        # {0} is the entries' text; another number stays as written (stringFormat).
        "<lore>\nThe Meridian's engine burns whale oil.\n</lore>{1}"
    )
    back = json.loads((await run(harness, ("preset", "export"))).file.data)  # type: ignore[union-attr]
    assert {k: back[k] for k in ("wi_format", "scenario_format", "personality_format")} == {
        k: FORMATS[k] for k in ("wi_format", "scenario_format", "personality_format")
    }
    settings = (await run(harness, ("settings",), MEMBER)).text
    assert "Personality format (this channel): {{char}} is {{personality}}." in settings


async def test_empty_formats_are_sillytaverns_empty_ones(harness: Harness) -> None:
    """An empty scenario or personality format sends none; an empty world info format
    sends the entries as they are (formatWorldInfo)."""
    await configure_fake(harness)
    await run(harness, ("character", "import"), file=card_file(CARD))
    empty = {"wi_format": " ", "scenario_format": "", "personality_format": ""}
    assert (await run(harness, ("preset", "import"), file=card_file(empty, "e.json"))).ok
    assert await system_sent(harness) == (
        "You are Aurelia.\n\nAurelia commands the airship Meridian.\n\n"
        "The Meridian's engine burns whale oil."
    )


async def test_the_formats_are_shown_set_and_reset_with_prompts(harness: Harness) -> None:
    await configure_fake(harness)
    await run(harness, ("character", "import"), file=card_file(CARD))
    listed = (await run(harness, ("prompts",))).text
    # Unset: SillyTavern's defaults, which are what is sent.
    assert "  wi_format (built-in default): {0}" in listed, listed
    assert (
        "  scenario_format (built-in default): [Circumstances and context of the dialogue: "
        "{{scenario}}]" in listed
    ), listed
    assert "format" not in (await run(harness, ("settings",), MEMBER)).text
    said = await run(harness, ("prompts",), name="scenario_format", text="Now: {{scenario}}")
    assert said.ok and said.text == "Scenario format set.", said.text
    assert "Now: Bob has just come aboard." in await system_sent(harness)
    reset = await run(harness, ("prompts",), name="scenario_format", text="default")
    assert reset.text == "This channel now uses the server's (or operator's) scenario format."
    # An empty world info format wraps nothing: said so, not "removed" as if no entries went.
    bare = await run(harness, ("prompts",), name="wi_format", text="none")
    assert bare.text == (
        "World info format removed: a character's lorebook entries go as they are."
    ), bare.text
    sent = await system_sent(harness, "Again")
    assert "[Circumstances and context of the dialogue: Bob has just come aboard.]" in sent
