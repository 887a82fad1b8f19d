"""Character cards and presets through the real Core: commands, store, the exact request."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import struct
from typing import Any

import httpx
import pytest
import respx

from bot.characters import export_json, read_card
from bot.commands import Invocation
from bot.conversation.budget import estimate_tokens
from bot.fields import conversation_room
from bot.frontends.matrix.render import markdown_to_html
from bot.types import (
    Attachment,
    ChannelRef,
    HistoryEntry,
    Platform,
    Reply,
    Role,
    Scope,
    SecretValue,
)
from tests.integration.conftest import ADMIN, MEMBER, REF, SERVER_ADMIN, Harness, make_core
from tests.integration.test_chat import FAKE, CollectingSink, ask, configure_fake, sse
from tests.unit.characters.samples import b64, chunk, png_with
from tests.unit.characters.test_preset import OLD_DEFAULT

CARD: dict[str, Any] = {
    "spec": "chara_card_v3",
    "spec_version": "3.0",
    "data": {
        "name": "Captain Aurelia Voss",
        "nickname": "Aurelia",
        "description": "{{char}} commands the airship Meridian.",
        "personality": "stern but fair",
        "scenario": "{{user}} has just come aboard.",
        "first_mes": "Welcome aboard, {{user}}.",
        "alternate_greetings": ["Another stowaway, {{user}}?", "Ah, {{user}}. Late again."],
        "mes_example": "<START>\n{{user}}: Where are we headed?\n{{char}}: North, to the ice.",
        "system_prompt": "You are {{char}}. {{original}}",
        "post_history_instructions": "Stay in character as {{char}}.",
        "creator_notes": "",
        "tags": ["steampunk"],
        "creator": "someone",
        "character_version": "3",
        "extensions": {},
        "group_only_greetings": [],
        "character_book": {
            "extensions": {},
            "entries": [
                {
                    "keys": ["engine"],
                    "content": "The Meridian's engine burns whale oil.",
                    "extensions": {},
                    "enabled": True,
                    "insertion_order": 1,
                },
                {
                    "keys": ["dragon"],
                    "content": "Dragons are extinct.",
                    "extensions": {},
                    "enabled": True,
                    "insertion_order": 2,
                },
            ],
        },
    },
}


def lore_data(entries: list[tuple[str, str, dict[str, Any]]], **book: Any) -> dict[str, Any]:
    """CARD's data with a lorebook of (key, content, extensions) entries, in order."""
    return {
        **CARD["data"],
        "character_book": {
            "extensions": {},
            **book,
            "entries": [
                {
                    "keys": [key],
                    "content": content,
                    "enabled": True,
                    "insertion_order": i,
                    "extensions": ext,
                }
                for i, (key, content, ext) in enumerate(entries)
            ],
        },
    }


def card_file(card: dict[str, Any] | bytes, name: str = "aurelia.json") -> Attachment:
    data = card if isinstance(card, bytes) else json.dumps(card).encode()

    async def fetch(limit: int) -> bytes:
        return data

    return Attachment(name, "", len(data), fetch)


async def run(
    h: Harness, path: tuple[str, ...], actor: Any = ADMIN, ref: ChannelRef = REF, **raw: Any
) -> Reply:
    return await h.core.run_command(ref, actor, Invocation(path, raw))


def streaming(text: str = "ok") -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(text))


async def test_a_card_file_named_with_a_key_is_not_named_back(harness: Harness) -> None:
    """Review: a card file named `sk-….png` too large, or not downloaded, was refused
    with its name, so the bot's own message repeated the key (as attachments name a file:
    kinds.display_name)."""
    key = "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4"

    async def fails(limit: int) -> bytes:
        raise OSError("connection reset")

    for file in (
        Attachment(f"{key}.png", "", 50 * 1024 * 1024, fails),
        Attachment(f"{key}.png", "", 1024, fails),
    ):
        reply = await run(harness, ("character", "import"), file=file)
        assert not reply.ok, reply.text
        assert key not in reply.text and key[:12] not in reply.text, reply.text


async def test_import_posts_the_greeting_and_the_prompt_follows_the_card(
    harness: Harness,
) -> None:
    await configure_fake(harness, system_prompt="Be brief.")
    reply = await run(harness, ("character", "import"), file=card_file(CARD))
    assert reply.ok, reply.text
    assert "Aurelia" in reply.text
    assert reply.greeting is not None
    assert reply.greeting.text == "Welcome aboard, Ada." and reply.greeting.count == 3
    history = await harness.store.history(REF, 10)
    assert [(e.role, e.content) for e in history] == [(Role.ASSISTANT, "Welcome aboard, Ada.")]

    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        sink = await ask(harness, "How is the engine?")
    assert sink.error is None, sink.error
    body = json.loads(route.calls.last.request.content)
    assert body["messages"] == [
        {
            "role": "system",
            "content": "You are Aurelia. Be brief.\n\n"
            "Aurelia commands the airship Meridian.\n\n"
            "[Aurelia's personality: stern but fair]\n\n"
            "[Circumstances and context of the dialogue: Bob has just come aboard.]\n\n"
            "The Meridian's engine burns whale oil.",  # the entry has no position: after
        },
        {"role": "system", "content": "[Example Chat]"},
        {"role": "system", "content": "Bob: Where are we headed?"},
        {"role": "system", "content": "Aurelia: North, to the ice."},
        {"role": "system", "content": "[Start a new Chat]"},
        {"role": "assistant", "content": "Welcome aboard, Ada."},
        {"role": "user", "content": "How is the engine?"},
        {"role": "system", "content": "Stay in character as Aurelia."},
    ]


async def test_a_lorebooks_chances_groups_and_delays_act_as_in_sillytavern(
    harness: Harness,
) -> None:
    """Features probe: a card as SillyTavern writes it (a PNG with `chara` and `ccv3`)
    whose lorebook picks one entry of an inclusion group, uses entries by chance, and
    holds one back until the chat is long enough had every entry used whenever it
    matched (the import said so). They act as in SillyTavern now, bad values read as it
    reads them; none of them is named as not done (sticky and cooldown are done too)."""
    await configure_fake(harness)
    st_entry = {
        "useProbability": True,
        "probability": 100,
        "group": "",
        "group_override": False,
        "group_weight": 100,
        "sticky": 0,
        "cooldown": 0,
        "delay": 0,
    }
    entries = [
        # The override is the pick, though the other's insertion_order is higher.
        ("rain", "It rains on the Meridian.", {"group": "weather", "group_override": True}),
        ("rain", "The sun shines on the Meridian.", {"group": "weather"}),
        ("fog", "Fog hides the ice.", {"group": "sky", "group_weight": 0}),
        ("fog", "The sky is clear.", {"group": "sky", "group_weight": "abc"}),  # 100
        ("dragon", "Dragons are extinct.", {"probability": 0}),
        ("dragon", "Dragons were hunted.", {"probability": 150}),  # 100
        ("dragon", "Dragons sleep.", {"probability": "abc"}),  # not a number: 100
        ("dragon", "Dragons are a myth.", {"probability": -5}),  # 0
        ("engine", "The engine is older than the ship.", {"delay": 4}),
        ("crew", "The crew is loyal.", {"sticky": 2}),
    ]
    data = lore_data([(key, content, {**st_entry, **ext}) for key, content, ext in entries])
    v2 = {"spec": "chara_card_v2", "spec_version": "2.0", "name": data["name"], "data": data}
    v3 = {**v2, "spec": "chara_card_v3", "spec_version": "3.0"}
    image = png_with({"chara": b64(v2), "ccv3": b64(v3)})
    reply = await run(harness, ("character", "import"), file=card_file(image, "a.png"))
    assert reply.ok, reply.text
    assert "Not done here" not in reply.text, reply.text
    scenario = "[Circumstances and context of the dialogue: Bob has just come aboard.]"
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        # The greeting and this: 2 messages, too few for the engine's entry (4).
        await ask(harness, "Rain or fog? Any dragon? How is the engine?")
        first = json.loads(route.calls.last.request.content)["messages"][0]["content"]
        # The greeting, the question, its answer and this: 4.
        await ask(harness, "Tell me of the engine.")
        second = json.loads(route.calls.last.request.content)["messages"][0]["content"]
    assert first.endswith(
        f"{scenario}\n\nIt rains on the Meridian.\nThe sky is clear.\nDragons were hunted."
        "\nDragons sleep."
    ), first
    assert second.endswith(f"{scenario}\n\nThe engine is older than the ship."), second
    # SillyTavern's own export of a plain lorebook (CARD) is nothing to say.
    reply = await run(harness, ("character", "import"), file=card_file(CARD))
    assert "Not done here" not in reply.text, reply.text


async def test_a_lorebook_entry_delayed_until_recursion_waits_for_another_entrys_text(
    harness: Harness,
) -> None:
    """Features probe: an entry of an imported card that SillyTavern holds back until a
    recursion pass (`extensions.delay_until_recursion`) came in whenever its key was in
    the chat, and the import said nothing of it. Now it waits for another entry's text."""
    await configure_fake(harness)
    entries = [
        ("castle", "A tower stands by the castle.", {}),
        ("tower", "The tower is haunted.", {"delay_until_recursion": True}),
    ]
    data = lore_data(entries, recursive_scanning=True)
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "name": data["name"], "data": data}
    reply = await run(harness, ("character", "import"), file=card_file(card))
    assert reply.ok, reply.text
    assert "Not done here" not in reply.text, reply.text
    scenario = "[Circumstances and context of the dialogue: Bob has just come aboard.]"
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Is there a tower?")
        first = json.loads(route.calls.last.request.content)["messages"][0]["content"]
        await ask(harness, "And the castle?")
        second = json.loads(route.calls.last.request.content)["messages"][0]["content"]
    assert first.endswith(scenario), first
    assert second.endswith(f"{scenario}\n\nA tower stands by the castle.\nThe tower is haunted."), (
        second
    )


async def test_a_turns_lore_is_rolled_once_for_the_prompt_counted_and_the_one_sent(
    harness: Harness,
) -> None:
    """A turn's card prompt is built twice: a draft over the whole history, to count
    what the card adds, then the one sent, over the history that fits. Rolled apart, the
    entries used by chance could come to more in the one sent than was counted, and the
    request went past the context; and an entry's delay counted only the messages that
    fit."""
    await configure_fake(harness, context_tokens=6000, max_tokens=500)
    card = copy.deepcopy(CARD)
    card["data"]["character_book"]["entries"] = [
        {
            "keys": ["x"],
            "content": f"Lore {n}: " + "word " * 60,
            "enabled": True,
            "insertion_order": n,
            "extensions": {"probability": 50},
        }
        for n in range(30)
    ]
    # The chat has 150 messages and more, though fewer fit: its length is the whole's.
    late = {"keys": ["x"], "content": "Late lore.", "insertion_order": 100, "enabled": True}
    card["data"]["character_book"]["entries"].append({**late, "extensions": {"delay": 100}})
    reply = await run(harness, ("character", "import"), file=card_file(card))
    assert reply.ok, reply.text
    filler = [
        HistoryEntry(Role.USER if n % 2 else Role.ASSISTANT, f"filler {n} " + "talk " * 40)
        for n in range(150)
    ]
    await harness.store.add_messages(REF, filler)
    _, room = conversation_room(6000, 500)
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        for _ in range(12):
            sink = await ask(harness, "x")
            assert sink.error is None, sink.error
            sent = json.loads(route.calls.last.request.content)["messages"]
            lore = sent[0]["content"].count("Lore ")
            assert 0 < lore < 30  # by chance
            assert "Late lore." in sent[0]["content"]
            assert sum(estimate_tokens(m["content"]) for m in sent) <= room


async def test_the_same_roll_sent_again_rolls_again_and_each_stays_as_it_was(
    harness: Harness,
) -> None:
    """Review: a turn's {{roll}} was seeded by its words alone, so `{{roll:…}}` sent
    again came out as the first one's number every time (in every channel, for everyone:
    the words decide it). Each roll is its own; each stays what the model was first sent."""
    await configure_fake(harness)
    reply = await run(harness, ("character", "import"), file=card_file(CARD))
    assert reply.ok, reply.text
    sent: list[list[str]] = []
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming("Noted."))
        for _ in range(4):
            sink = await ask(harness, "I roll {{roll:1d1000000}}")
            assert sink.error is None, sink.error
            body = json.loads(route.calls.last.request.content)
            sent.append([m["content"] for m in body["messages"] if m["role"] == "user"])
    rolls = [text.removeprefix("I roll ") for text in sent[-1]]
    assert all(roll.isdigit() for roll in rolls), rolls
    assert len(set(rolls)) == 4, rolls  # not one number four times
    for n, seen in enumerate(sent, start=1):  # each build sends the earlier rolls as they were
        assert seen == sent[-1][:n], (seen, sent[-1])


async def test_the_greetings_alternates_are_its_swipes(harness: Harness) -> None:
    await configure_fake(harness)
    await run(harness, ("character", "import"), file=card_file(CARD))
    # As with any answer, the one who asked for it (the importing admin) or an admin
    # swipes it: a member would change how everyone's conversation starts.
    refused = CollectingSink()
    await harness.core.run_control(
        REF, MEMBER, Invocation(("swipe",), {"direction": "next"}), refused
    )
    assert refused.final == "Only an admin of this channel can change the character's greeting."
    seen = []
    for direction in ("next", "next", "next", "prev"):
        sink = CollectingSink()
        inv = Invocation(("swipe",), {"direction": direction})
        await harness.core.run_control(REF, ADMIN, inv, sink)
        seen.append(sink.final)
    assert seen == [
        "Another stowaway, Ada?",
        "Ah, Ada. Late again.",
        "This is the last of 3 answers.",
        "Another stowaway, Ada?",
    ]
    history = await harness.store.history(REF, 10)
    assert [e.content for e in history] == ["Another stowaway, Ada?"]


async def test_greeting_swipes_after_an_import_into_a_channel_with_a_conversation(
    harness: Harness,
) -> None:
    """The greeting is the newest message: swiping shows its alternates, not the answers
    of the question before it ("This is the last of 3 answers", "only one answer")."""
    await configure_fake(harness)
    with respx.mock:
        respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming("Earlier."))
        await ask(harness, "Hello before any character")
    await run(harness, ("character", "import"), file=card_file(CARD))
    sink = CollectingSink()
    await harness.core.run_control(REF, ADMIN, Invocation(("swipe",), {"direction": "next"}), sink)
    assert sink.final == "Another stowaway, Ada?"
    history = await harness.store.history(REF, 10)
    assert [e.content for e in history] == [
        "Hello before any character",
        "Earlier.",
        "Another stowaway, Ada?",
    ]


async def test_continuing_leaves_the_post_history_instructions_out(harness: Harness) -> None:
    await configure_fake(harness)
    await run(harness, ("character", "import"), file=card_file(CARD))
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming("Half"))
        await ask(harness, "Tell me a story")
        sink = CollectingSink()
        await harness.core.run_control(REF, MEMBER, Invocation(("continue",), {}), sink)
    body = json.loads(route.calls.last.request.content)
    contents = [m["content"] for m in body["messages"]]
    assert "Stay in character as Aurelia." not in contents
    assert contents[-2:] == ["Half", contents[-1]] and "Continue" in contents[-1]


async def test_the_characters_note_reaches_the_model_at_its_depth(harness: Harness) -> None:
    await configure_fake(harness)
    card = json.loads(json.dumps(CARD))
    card["data"]["extensions"] = {
        "depth_prompt": {"prompt": "{{char}} is tired.", "depth": 0, "role": "system"}
    }
    await run(harness, ("character", "import"), file=card_file(card))
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming("Half"))
        await ask(harness, "Tell me a story")
        asked = json.loads(route.calls.last.request.content)["messages"]
        sink = CollectingSink()
        await harness.core.run_control(REF, MEMBER, Invocation(("continue",), {}), sink)
        continued = json.loads(route.calls.last.request.content)["messages"]
    # After the question (depth 0), before the post-history instructions.
    assert [m["content"] for m in asked[-3:]] == [
        "Tell me a story",
        "Aurelia is tired.",
        "Stay in character as Aurelia.",
    ]
    # Continuing, nothing follows the answer being continued but the request to go on.
    contents = [m["content"] for m in continued]
    assert contents.index("Aurelia is tired.") < contents.index("Half")


async def test_export_then_import_round_trips_through_the_commands(harness: Harness) -> None:
    image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
    reply = await run(harness, ("character", "import"), file=card_file(image, "aurelia.png"))
    assert reply.ok, reply.text
    exported = await run(harness, ("character", "export"), actor=MEMBER)
    assert exported.file is not None and exported.file.filename.endswith(".png")
    assert exported.file.data.startswith(b"\x89PNG")
    as_json = await run(harness, ("character", "export"), actor=MEMBER, format="json")
    assert as_json.file is not None and as_json.file.media_type == "application/json"
    assert read_card(exported.file.data) == read_card(image)
    assert read_card(as_json.file.data) == read_card(json.dumps(CARD).encode())

    other = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
    again = await run(
        harness, ("character", "import"), ref=other, file=card_file(exported.file.data, "a.png")
    )
    assert again.ok, again.text
    shown = await run(harness, ("character", "show"), actor=MEMBER, ref=other)
    assert "Aurelia" in shown.text and "Lorebook entries: 2" in shown.text
    assert "Image: yes" in shown.text


async def test_a_card_without_an_image_round_trips_without_one_and_without_a_warning(
    harness: Harness,
) -> None:
    """Its export carries a plain placeholder; imported again, that was taken as the
    card's picture, then (after that was mended) as an image too large to keep."""
    reply = await run(harness, ("character", "import"), file=card_file(CARD))
    assert reply.ok, reply.text
    exported = await run(harness, ("character", "export"), actor=MEMBER)
    assert exported.file is not None and exported.file.data.startswith(b"\x89PNG")
    other = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
    again = await run(
        harness, ("character", "import"), ref=other, file=card_file(exported.file.data, "a.png")
    )
    assert (
        again.ok
        and "Character set for this channel: Captain Aurelia Voss (speaking as Aurelia)."
        in again.text
    ), again.text
    assert "image" not in again.text.lower()
    assert "Image: no." in (await run(harness, ("character", "show"), ref=other)).text


async def test_hostile_files_are_refused_with_the_librarys_message(harness: Harness) -> None:
    bad_b64 = png_with({"chara": "!!!not base64!!!"})
    wrong_version = copy.deepcopy(CARD)
    wrong_version["spec"] = "chara_card_v9"
    cases = [
        card_file(b"just some text", "notes.txt"),
        card_file(bad_b64, "bad.png"),
        card_file(wrong_version),
        card_file(b"{" * 100, "broken.json"),
    ]
    for file in cases:
        reply = await run(harness, ("character", "import"), file=file)
        assert not reply.ok, file.filename
        assert "\n" not in reply.text and "Traceback" not in reply.text
    huge = Attachment("huge.png", "", 50 * 1024 * 1024, None)
    reply = await run(harness, ("character", "import"), file=huge)
    assert not reply.ok
    big = card_file(b"\x89PNG\r\n\x1a\n" + b"\0" * (11 * 1024 * 1024), "big.png")
    reply = await run(harness, ("character", "import"), file=big)
    assert not reply.ok and "too large" in reply.text
    none = await run(harness, ("character", "import"))
    assert not none.ok and "file" in none.text
    assert await harness.store.character(REF) is None
    assert await harness.store.history(REF, 10) == []


async def test_members_cannot_import_or_clear(harness: Harness) -> None:
    reply = await run(harness, ("character", "import"), actor=MEMBER, file=card_file(CARD))
    assert not reply.ok
    reply = await run(harness, ("character", "clear"), actor=MEMBER)
    assert not reply.ok
    assert await harness.store.character(REF) is None


async def test_a_server_card_falls_through_to_its_channels(harness: Harness) -> None:
    other = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
    await configure_fake(harness, ref=other)
    refused = await run(harness, ("character", "import"), file=card_file(CARD), scope="server")
    assert not refused.ok  # Ada is a channel admin, not a server admin
    reply = await run(
        harness, ("character", "import"), actor=SERVER_ADMIN, file=card_file(CARD), scope="server"
    )
    assert reply.ok, reply.text
    stored = await harness.store.character(other)
    assert stored is not None and stored.scope is Scope.SERVER
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hello", ref=other)
    system = json.loads(route.calls.last.request.content)["messages"][0]["content"]
    assert system.startswith("You are Aurelia.")

    own = copy.deepcopy(CARD)
    own["data"]["name"] = own["data"]["nickname"] = "Bosun"
    await run(harness, ("character", "import"), ref=other, file=card_file(own))
    assert (await harness.core.persona(other)) is not None
    assert (await harness.store.character(other)).name == "Bosun"  # type: ignore[union-attr]
    cleared = await run(harness, ("character", "clear"), ref=other)
    assert "server's character, Aurelia" in cleared.text
    persona = await harness.core.persona(other)
    assert persona is not None and persona.name == "Aurelia"
    await run(harness, ("character", "clear"), actor=SERVER_ADMIN, scope="server")
    assert await harness.core.persona(other) is None


async def test_a_server_card_greets_only_where_it_answers(harness: Harness) -> None:
    """Features probe: a server-wide import typed in a channel with a card of its own (or
    with /character none) stored its greeting there as the newest answer, which the
    channel's own character then spoke, or the plain assistant took as its words."""
    await configure_fake(harness)
    own = copy.deepcopy(CARD)
    own["data"]["name"] = own["data"]["nickname"] = "Bosun"
    own["data"]["first_mes"] = "Bosun here."
    own["data"]["alternate_greetings"] = []
    await run(harness, ("character", "import"), file=card_file(own))
    before = await harness.store.history(REF, 50)
    reply = await run(
        harness, ("character", "import"), actor=SERVER_ADMIN, file=card_file(CARD), scope="server"
    )
    assert reply.ok and reply.greeting is None
    assert "This channel keeps its own, Bosun, so no greeting was posted here." in reply.text
    assert await harness.store.history(REF, 50) == before
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hello")
    sent = json.loads(route.calls.last.request.content)["messages"]
    assert [m["content"] for m in sent if m["role"] == "assistant"] == ["Bosun here."]

    none = ChannelRef(Platform.DISCORD, channel_id="c3", server_id="g1")
    await configure_fake(harness, ref=none)
    await run(harness, ("character", "none"), ref=none)
    reply = await run(
        harness,
        ("character", "import"),
        actor=SERVER_ADMIN,
        ref=none,
        file=card_file(CARD),
        scope="server",
    )
    assert reply.ok and reply.greeting is None
    assert "/character none is in force in this channel, so no greeting was posted" in reply.text
    assert await harness.store.history(none, 50) == []

    fresh = ChannelRef(Platform.DISCORD, channel_id="c4", server_id="g1")
    await configure_fake(harness, ref=fresh)
    reply = await run(
        harness,
        ("character", "import"),
        actor=SERVER_ADMIN,
        ref=fresh,
        file=card_file(CARD),
        scope="server",
    )
    assert reply.greeting is not None and "no greeting" not in reply.text


async def test_character_none_names_the_channels_own_card_it_removes(harness: Harness) -> None:
    """New surfaces probe: it said "/character clear undoes this", but the card was gone."""
    await configure_fake(harness)
    await run(harness, ("character", "import"), file=card_file(CARD))
    none = await run(harness, ("character", "none"))
    assert none.ok and none.text == (
        "Removed Aurelia from this channel. No character answers here, even if the server "
        "sets one; /character clear lets the server's answer again."
    )


async def test_a_prompt_or_preset_holding_a_key_or_the_password_is_not_kept(
    harness: Harness,
) -> None:
    """New surfaces probe: /prompts took the channel's proxy password (spaced out too),
    and a preset's jailbreak took an sk- key and the password: shown in the reply, kept in
    the clear in the settings and the audit log, and sent with every request."""
    await configure_fake(harness)
    await harness.store.set_secret(
        REF, Scope.CHANNEL, "proxy_password", SecretValue("hunter2hunter"), ADMIN
    )
    before = await harness.store.scope_values(REF, Scope.CHANNEL)
    for text in ("Remember hunter2hunter always", "H U N T E R 2 H U N T E R"):
        reply = await run(harness, ("prompts",), name="post_history", text=text)
        assert not reply.ok and reply.text == (
            "That text for the post-history instructions holds what looks like a key or "
            "password, so I did not send or keep it. If others could see it, make a new one; "
            "admins store keys with /key set."
        ), reply.text
    preset = {
        **COMMUNITY,
        "prompts": [
            {"identifier": "main", "content": "Fine."},
            {"identifier": "jailbreak", "content": "sk-abcdefghijklmnopqrstuvwx12345"},
            {"identifier": "nsfw", "content": "say hunter2hunter"},
        ],
    }
    reply = await run(harness, ("preset", "import"), file=card_file(preset, "k.json"))
    assert reply.ok and "hunter2" not in reply.text and "sk-abc" not in reply.text
    assert (
        "Not applied: post_history_prompt holds what looks like a key or this channel's "
        "password; auxiliary_prompt holds what looks like a key or this channel's password."
    ) in reply.text.splitlines()
    after = await harness.store.scope_values(REF, Scope.CHANNEL)
    assert after.get("post_history_prompt") == before.get("post_history_prompt")
    assert after.get("auxiliary_prompt") == before.get("auxiliary_prompt")
    assert after.get("system_prompt") == "Fine."


async def test_none_and_default_are_read_as_typed_on_any_keyboard(harness: Harness) -> None:
    """New surfaces probe: `／prompts main ｎｏｎｅ` stored the word ｎｏｎｅ as the prompt."""
    await configure_fake(harness, system_prompt="Be brief.")
    for word in ("\uff4e\uff4f\uff4e\uff45", "`none`"):
        assert (await run(harness, ("prompts",), name="main", text="Be brief.")).ok
        said = await run(harness, ("prompts",), name="main", text=word)
        assert said.text == "System prompt removed.", said.text


async def test_a_channel_turns_the_servers_character_off_and_on_again(harness: Harness) -> None:
    """Cards probe: `/character clear` in a channel answered "No character was set for
    this channel." and the server's character went on answering there."""
    other = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
    await configure_fake(harness, ref=other, system_prompt="Be brief.")
    await run(
        harness, ("character", "import"), actor=SERVER_ADMIN, file=card_file(CARD), scope="server"
    )
    cleared = await run(harness, ("character", "clear"), ref=other)
    assert not cleared.ok and cleared.text == (
        "No character was set for this channel. The server's character, Aurelia, answers "
        "here; /character none turns it off in this channel."
    )
    none = await run(harness, ("character", "none"), ref=other)
    assert none.ok and none.text == (
        "The server's character, Aurelia, no longer answers here; /character clear undoes this."
    )
    assert await harness.store.character(other) is None
    assert await harness.core.persona(other) is None
    assert (await harness.store.character(REF)) is not None  # the server's other channels
    shown = await run(harness, ("character", "show"), ref=other)
    assert shown.text == (  # it said "No character here. An admin sets one with …"
        "No character answers here: /character none is in force in this channel. "
        "/character clear lets the server's answer again."
    )
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hello", ref=other)
    assert json.loads(route.calls.last.request.content)["messages"][0] == {
        "role": "system",
        "content": "Be brief.",
    }
    assert "Character:" not in (await run(harness, ("settings",), ref=other)).text
    back = await run(harness, ("character", "clear"), ref=other)
    assert back.ok and back.text == (
        "This channel follows the server's character again. The server's character, "
        "Aurelia, answers here."
    )
    assert (await harness.store.character(other)) is not None
    refused = await run(harness, ("character", "none"), actor=MEMBER, ref=other)
    assert not refused.ok


PRESET = {
    "temperature": 0.65,
    "top_p": 0.9,
    "top_k": 40,
    "frequency_penalty": 0.3,
    "presence_penalty": 0.1,
    "openai_max_tokens": 321,
    "openai_max_context": 6000,
    "seed": 7,
    "stream_openai": True,
    "reverse_proxy": "https://evil.example/v1",
    "prompts": [
        {"identifier": "main", "content": "Write vividly."},
    ],
}


async def test_a_preset_reaches_the_exact_request(harness: Harness) -> None:
    await configure_fake(harness)
    reply = await run(harness, ("preset", "import"), file=card_file(PRESET, "preset.json"))
    assert reply.ok, reply.text
    assert "temperature=0.65" in reply.text and "Ignored:" in reply.text
    # Said apart, and why: the rest of the ignored keys could hide it past the first 30.
    assert "Not taken: its connection settings (`reverse_proxy`). A preset never changes" in (
        reply.text
    )
    # SillyTavern's own presets name a model for every source: summed up, the proxy first.
    many = {**PRESET, "openai_model": "gpt-4o", "claude_model": "c", "proxy_password": "pw"}
    reply = await run(harness, ("preset", "import"), file=card_file(many, "preset.json"))
    assert "(`proxy_password`, `reverse_proxy`, a model for 2 sources)" in reply.text
    assert "pw" not in reply.text.replace("proxy_password", "")
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    body = json.loads(route.calls.last.request.content)
    assert body["messages"][0] == {"role": "system", "content": "Write vividly."}
    for key, value in {
        "temperature": 0.65,
        "top_p": 0.9,
        "top_k": 40,
        "frequency_penalty": 0.3,
        "presence_penalty": 0.1,
        "max_tokens": 321,
        "seed": 7,
    }.items():
        assert body[key] == value, key
    exported = await run(harness, ("preset", "export"))
    assert exported.file is not None
    back = json.loads(exported.file.data)
    assert back["temperature"] == 0.65 and back["openai_max_context"] == 6000
    # Defaults nobody chose stay out: imported elsewhere, they would pin them there.
    assert not {"vision", "reasoning", "safe_prompt"} & set(back)
    await run(harness, ("params",), name="vision", value="off")
    back = json.loads((await run(harness, ("preset", "export"))).file.data)  # type: ignore[union-attr]
    assert back["vision"] == "off"
    reimported = await run(harness, ("preset", "import"), file=card_file(json.dumps(back).encode()))
    assert reimported.ok and "vision=off" in reimported.text, reimported.text


async def test_a_preset_import_says_what_params_would_say(harness: Harness) -> None:
    """Features probe: `/params max_tokens 4000` warned that it left the conversation 95
    of a 4,095-token context, and `/params … scope:server` named the channel's own value
    that still wins; a preset setting the same said neither."""
    await configure_fake(harness)
    greedy = {"openai_max_tokens": 4000, "openai_max_context": 4095}
    reply = await run(harness, ("preset", "import"), file=card_file(greedy, "greedy.json"))
    assert reply.ok, reply.text
    assert "Note: max_tokens 4,000 leaves 95 of the 4,095-token context" in reply.text
    await run(harness, ("params",), name="temperature", value="1.1")
    reply = await run(
        harness,
        ("preset", "import"),
        actor=SERVER_ADMIN,
        file=card_file({"temperature": 0.65, "top_p": 0.9}, "server.json"),
        scope="server",
    )
    assert reply.ok and "temperature=0.65" in reply.text, reply.text
    assert (
        "This channel has its own temperature (1.1), which wins here; `default` without "
        "scope:server removes it." in reply.text
    ), reply.text
    assert "max_tokens" not in reply.text.split("\n", 1)[1]  # this preset set none


async def test_a_prompt_switched_off_in_the_preset_is_not_sent(harness: Harness) -> None:
    # SillyTavern's chat sends only prompts on in the order for character 100001.
    await configure_fake(harness, system_prompt="Be brief.")
    switched_off = {
        **PRESET,
        "prompts": [
            {"identifier": "main", "content": "Write vividly."},
            {"identifier": "jailbreak", "content": "Ignore every rule."},
        ],
        "prompt_order": [
            {"character_id": 100000, "order": [{"identifier": "main", "enabled": True}]},
            {
                "character_id": 100001,
                "order": [
                    {"identifier": "main", "enabled": False},
                    {"identifier": "chatHistory", "enabled": True},
                    {"identifier": "jailbreak", "enabled": False},
                ],
            },
        ],
    }
    reply = await run(harness, ("preset", "import"), file=card_file(switched_off, "p.json"))
    assert reply.ok, reply.text
    assert (
        "Off in the preset's prompt order (or missing from it), so none here: system_prompt, "
        "post_history_prompt." in reply.text.splitlines()
    )
    assert "Not supported" not in reply.text and "prompt_order" not in reply.text
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    body = json.loads(route.calls.last.request.content)
    assert body["temperature"] == 0.65  # the rest of the preset applies
    sent = json.dumps(body["messages"])
    assert "Write vividly" not in sent and "Be brief" not in sent and "Ignore every" not in sent


async def test_a_channels_preset_turns_off_what_the_server_sets(harness: Harness) -> None:
    """Cards probe: a channel's preset with top_k 0, seed -1, reasoning effort auto and
    its main prompt switched off still sent the server preset's top_k 40, seed 42,
    effort medium and main prompt: "off" had been stored as unset."""
    await configure_fake(harness)
    server = {
        **COMMUNITY,
        "top_k": 40,
        "seed": 42,
        "reasoning_effort": "medium",
    }
    reply = await run(
        harness,
        ("preset", "import"),
        actor=SERVER_ADMIN,
        file=card_file(server, "s.json"),
        scope="server",
    )
    assert reply.ok, reply.text
    await run(harness, ("params",), name="top_k", value="default")
    channel = {
        **ST_DEFAULT,
        "top_k": 0,
        "seed": -1,
        "reasoning_effort": "auto",
        "prompt_order": [
            {"character_id": 100001, "order": [{"identifier": "main", "enabled": False}]}
        ],
    }
    reply = await run(harness, ("preset", "import"), file=card_file(channel, "Default.json"))
    assert reply.ok and "top_k=off" in reply.text and "seed=off" in reply.text, reply.text
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    body = json.loads(route.calls.last.request.content)
    assert not {"top_k", "seed", "reasoning_effort"} & set(body), body
    assert body["messages"] == [{"role": "user", "content": "Hi"}]  # no main, aux, post


async def test_sillytaverns_maximum_reasoning_effort_is_sent_as_it_sends_it(
    harness: Harness,
) -> None:
    """A SillyTavern preset saved with Reasoning Effort "Maximum" (`max`) had its effort
    refused ("must be one of: auto, minimal, low, medium, high"); SillyTavern sends
    OpenAI and custom endpoints `high` for it, and so does the bot now."""
    await configure_fake(harness)
    reply = await run(
        harness, ("preset", "import"), file=card_file({**ST_DEFAULT, "reasoning_effort": "max"})
    )
    assert reply.ok and "reasoning_effort=high" in reply.text, reply.text
    assert "Not applied" not in reply.text, reply.text
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    assert json.loads(route.calls.last.request.content)["reasoning_effort"] == "high"


async def test_a_bad_preset_changes_nothing(harness: Harness) -> None:
    await configure_fake(harness)
    before = await harness.store.scope_values(REF, Scope.CHANNEL)
    for data in (b"not json", json.dumps(CARD).encode(), json.dumps({"foo": 1}).encode()):
        reply = await run(harness, ("preset", "import"), file=card_file(data, "p.json"))
        assert not reply.ok and "\n" not in reply.text
    assert await harness.store.scope_values(REF, Scope.CHANNEL) == before


# SillyTavern's Default.json as exported today (public/scripts/openai.js defaults): its main
# prompt uses {{charIfNotGroup}}, the auxiliary and post-history prompts are empty.
ST_DEFAULT: dict[str, Any] = {
    "temperature": 1,
    "openai_max_tokens": 300,
    "chat_completion_source": "openai",
    "prompts": [
        {
            "identifier": "main",
            "name": "Main Prompt",
            "system_prompt": True,
            "role": "system",
            "content": "Write {{char}}'s next reply in a fictional chat between "
            "{{charIfNotGroup}} and {{user}}.",
        },
        {"identifier": "nsfw", "name": "Auxiliary Prompt", "role": "system", "content": ""},
        {"identifier": "dialogueExamples", "name": "Chat Examples", "marker": True},
        {"identifier": "jailbreak", "name": "Post-History Instructions", "content": ""},
    ],
}


async def test_sillytaverns_default_preset_with_a_card(harness: Harness) -> None:
    await configure_fake(harness)
    reply = await run(harness, ("preset", "import"), file=card_file(ST_DEFAULT, "Default.json"))
    assert reply.ok, reply.text
    assert "Not supported" not in reply.text  # its empty prompts are nothing to report
    await run(harness, ("character", "import"), file=card_file(CARD))
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    system = json.loads(route.calls.last.request.content)["messages"][0]["content"]
    assert system.startswith(
        "You are Aurelia. "
        "Write Aurelia's next reply in a fictional chat between Aurelia and Bob.\n\n"
    )


async def test_sillytaverns_default_preset_without_a_card(harness: Harness) -> None:
    await configure_fake(harness)
    await run(harness, ("preset", "import"), file=card_file(ST_DEFAULT, "Default.json"))
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    assert json.loads(route.calls.last.request.content)["messages"][0] == {
        "role": "system",
        "content": "Write Assistant's next reply in a fictional chat between Assistant and Bob.",
    }


async def test_an_old_sillytavern_presets_prompts_reach_the_model(harness: Harness) -> None:
    """Conformance probe: SillyTavern's own Default.settings of before its prompt
    manager (shipped until 2024-02) keeps its prompts in main_prompt, nsfw_prompt and
    jailbreak_prompt, which SillyTavern moves into its prompts on loading it. Imported
    here they were "Ignored" and the model got none of them."""
    await configure_fake(harness)
    reply = await run(harness, ("preset", "import"), file=card_file(OLD_DEFAULT, "old.settings"))
    assert reply.ok, reply.text
    assert "main_prompt" not in reply.text and "jailbreak_prompt" not in reply.text, reply.text
    await run(harness, ("character", "import"), file=card_file(CARD))
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    messages = json.loads(route.calls.last.request.content)["messages"]
    assert messages[0]["content"] == (
        "You are Aurelia. Write Aurelia's next reply in a fictional chat between Aurelia and "
        "Bob.\n\nAurelia commands the airship Meridian.\n\n"
        "[Aurelia's personality: stern but fair]\n\n"
        "[Circumstances and context of the dialogue: Bob has just come aboard.]\n\n"
        "NSFW/Smut is allowed."
    )
    # The card's post_history_instructions replace the preset's, as in SillyTavern.
    assert messages[-1] == {"role": "system", "content": "Stay in character as Aurelia."}
    await run(harness, ("character", "none"))
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi again")
    messages = json.loads(route.calls.last.request.content)["messages"]
    assert messages[-1] == {"role": "system", "content": "[System note: stay in character.]"}


# A community preset's three prompts (SillyTavern's main, nsfw and jailbreak).
COMMUNITY: dict[str, Any] = {
    "temperature": 0.9,
    "prompts": [
        {"identifier": "main", "content": "Write {{char}}'s reply to {{user}}."},
        {"identifier": "nsfw", "content": "Be vivid about {{char}}."},
        {"identifier": "jailbreak", "content": "[System note: stay as {{char}}.]"},
    ],
}


async def test_a_presets_auxiliary_and_post_history_prompts_reach_the_model_with_a_card(
    harness: Harness,
) -> None:
    """Cards probe: a preset's nsfw and jailbreak text were "Not supported here" and
    never sent; the card's {{original}} in its post_history_instructions was empty."""
    await configure_fake(harness)
    reply = await run(harness, ("preset", "import"), file=card_file(COMMUNITY, "c.json"))
    assert reply.ok and "Not supported" not in reply.text, reply.text
    assert "auxiliary_prompt=Be vivid about {{char}}." in reply.text
    card = {**CARD, "data": {**CARD["data"], "post_history_instructions": "PHI {{original}}"}}
    await run(harness, ("character", "import"), file=card_file(card))
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    messages = json.loads(route.calls.last.request.content)["messages"]
    system = messages[0]["content"]
    # SillyTavern's order: the auxiliary prompt after the scenario, before lore after.
    assert system.index("[Circumstances and context") < system.index("Be vivid about Aurelia.")
    assert messages[-1] == {"role": "system", "content": "PHI [System note: stay as Aurelia.]"}
    exported = await run(harness, ("preset", "export"))
    assert exported.file is not None
    prompts = {p["identifier"]: p.get("content") for p in json.loads(exported.file.data)["prompts"]}
    assert prompts["nsfw"] == "Be vivid about {{char}}."
    assert prompts["jailbreak"] == "[System note: stay as {{char}}.]"


async def test_a_preset_prompt_sillytavern_sends_in_the_chat_is_said_to_go_first_here(
    harness: Harness,
) -> None:
    """Features probe: a preset whose main prompt SillyTavern sends in the chat, 4
    messages from the end, as user (its prompt manager's "in-chat" position), and whose
    jailbreak sits above the chat history, was applied with no word that here the first
    goes first as system and the second after the chat."""
    await configure_fake(harness)
    placed = {
        **COMMUNITY,
        "prompts": [
            {**COMMUNITY["prompts"][0], "role": "user", "injection_position": 1},
            *COMMUNITY["prompts"][1:],
        ],
        "prompt_order": [
            {
                "character_id": 100001,
                "order": [
                    {"identifier": i, "enabled": True}
                    for i in ("main", "nsfw", "jailbreak", "chatHistory")
                ],
            }
        ],
    }
    placed["prompts"][0]["injection_depth"] = 4
    reply = await run(harness, ("preset", "import"), file=card_file(placed, "p.json"))
    assert reply.ok, reply.text
    assert (
        "Placed as this bot places them, not as in SillyTavern (there: `main` in the chat at "
        "depth 4, as user; `jailbreak` before the chat history). Here the system prompt goes "
        "first, the auxiliary prompt before the chat and the post-history instructions after "
        "it, each as system, and a card's own prompts replace the first and the last."
    ) in reply.text.splitlines()
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    assert json.loads(route.calls.last.request.content)["messages"] == [
        {
            "role": "system",
            "content": "Write Assistant's reply to Bob.\n\nBe vivid about Assistant.",
        },
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "[System note: stay as Assistant.]"},
    ]
    # SillyTavern's own Default.json places its prompts as we do: nothing said.
    reply = await run(harness, ("preset", "import"), file=card_file(ST_DEFAULT, "Default.json"))
    assert "Placed" not in reply.text, reply.text


async def test_a_presets_prompts_without_a_card_and_when_continuing(harness: Harness) -> None:
    await configure_fake(harness)
    await run(harness, ("preset", "import"), file=card_file(COMMUNITY, "c.json"))
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming("Half"))
        await ask(harness, "Tell me a story")
        first = json.loads(route.calls.last.request.content)["messages"]
        await harness.core.run_control(REF, MEMBER, Invocation(("continue",), {}), CollectingSink())
        continued = json.loads(route.calls.last.request.content)["messages"]
    assert first == [
        {
            "role": "system",
            "content": "Write Assistant's reply to Bob.\n\nBe vivid about Assistant.",
        },
        {"role": "user", "content": "Tell me a story"},
        {"role": "system", "content": "[System note: stay as Assistant.]"},
    ]
    contents = [m["content"] for m in continued]
    assert "[System note: stay as Assistant.]" not in contents and "Half" in contents


async def test_the_prompts_command_sets_shows_and_removes_each_prompt(harness: Harness) -> None:
    await configure_fake(harness, system_prompt="Be brief.")
    said = await run(harness, ("prompts",), name="post_history", text="Answer in French.")
    assert said.ok and said.text == "Post-history instructions set.", said.text
    server = await run(
        harness, ("prompts",), SERVER_ADMIN, name="auxiliary", text="Aux.", scope="server"
    )
    assert server.ok and server.text == "Auxiliary prompt set for this server.", server.text
    shown = await run(harness, ("prompts",))
    assert shown.text.splitlines()[1:4] == [
        "  main (this channel): Be brief.",
        "  auxiliary (server-wide): Aux.",
        "  post_history (this channel): Answer in French.",
    ]
    settings = (await run(harness, ("settings",), MEMBER)).text
    assert "Post-history instructions (this channel): Answer in French." in settings
    assert (await run(harness, ("prompts",), name="auxiliary", text="none")).ok
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    messages = json.loads(route.calls.last.request.content)["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}  # no Aux. here
    assert messages[-1] == {"role": "system", "content": "Answer in French."}
    back = await run(harness, ("prompts",), name="auxiliary", text="default")
    assert back.text == "This channel now uses the server's (or operator's) auxiliary prompt."
    refused = await run(harness, ("prompts",), MEMBER, name="main", text="x")
    assert not refused.ok


async def test_a_presets_own_prompts_it_sends_are_named_as_not_sent(harness: Harness) -> None:
    """Cards probe: custom prompts and enhanceDefinitions were dropped without a word."""
    await configure_fake(harness)
    preset = {
        **COMMUNITY,
        "prompts": [
            *COMMUNITY["prompts"],
            {"identifier": "3f1c-style", "name": "Style guide", "content": "Use short lines."},
            {
                "identifier": "77aa",
                "name": "sk-proj-Q7wErTyUiOpAsDfGhJkLz",  # named with a key: not echoed
                "content": "x",
            },
            {"identifier": "a9d2-off", "name": "Switched off", "content": "Never sent."},
            {"identifier": "enhanceDefinitions", "name": "Enhance Definitions", "content": "x"},
            {"identifier": "chatHistory", "name": "Chat History", "marker": True},
        ],
        "prompt_order": [
            {
                "character_id": 100001,
                "order": [
                    {"identifier": "main", "enabled": True},
                    {"identifier": "3f1c-style", "enabled": True},
                    {"identifier": "77aa", "enabled": True},
                    {"identifier": "a9d2-off", "enabled": False},
                    {"identifier": "enhanceDefinitions", "enabled": True},
                    {"identifier": "chatHistory", "enabled": True},
                ],
            }
        ],
    }
    reply = await run(harness, ("preset", "import"), file=card_file(preset, "c.json"))
    assert reply.ok, reply.text
    assert (
        "Not sent here (only the main, auxiliary and post-history prompts are): its prompts "
        "`Style guide`, `****`, `Enhance Definitions`."
    ) in reply.text.splitlines()


async def test_a_bad_presets_reply_names_all_its_problems(harness: Harness) -> None:
    await configure_fake(harness)
    before = await harness.store.scope_values(REF, Scope.CHANNEL)
    bad = {
        **PRESET,
        "temperature": "hot",
        "seed": 1.5,
        "prompts": [
            {"identifier": "main", "content": "Write vividly."},
            {"identifier": "main", "content": "Write tersely."},
        ],
    }
    reply = await run(harness, ("preset", "import"), file=card_file(bad, "p.json"))
    assert not reply.ok and "\n" not in reply.text
    for problem in (
        "`temperature` must be a number",
        "`seed` must be a whole number",
        "two different `main` prompts",
    ):
        assert problem in reply.text, problem
    assert await harness.store.scope_values(REF, Scope.CHANNEL) == before


async def test_a_v1_card_is_imported(harness: Harness) -> None:
    flat = {"name": "Old Bot", "description": "{{char}} is old.", "first_mes": "Hi {{user}}."}
    reply = await run(harness, ("character", "import"), file=card_file(flat, "old.json"))
    assert reply.ok, reply.text
    assert reply.greeting is not None and reply.greeting.text == "Hi Ada."
    stored = await harness.store.character(REF)
    assert stored is not None and stored.name == "Old Bot"


async def test_a_v2_png_whose_data_lacks_fields_reads_the_v1_copies(harness: Harness) -> None:
    """Conformance probe: a V2 PNG whose `data` has only a name, its text in the V1
    fields beside it (as early V2 writers left it), was imported with no description
    and no greeting; SillyTavern's readFromV2 keeps the V1 copies and prompts with them."""
    await configure_fake(harness)
    card = {
        "name": "Seraphina",
        "description": "{{char}} guards the forest.",
        "personality": "kind",
        "first_mes": "You're awake, {{user}}.",
        "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: Your healer.",
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {"name": "Seraphina", "post_history_instructions": "Be gentle."},
    }
    image = png_with({"chara": b64(card)})
    reply = await run(harness, ("character", "import"), file=card_file(image, "s.png"))
    assert reply.ok, reply.text
    assert reply.greeting is not None and reply.greeting.text == "You're awake, Ada."
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hi")
    assert json.loads(route.calls.last.request.content)["messages"] == [
        {
            "role": "system",
            "content": "Seraphina guards the forest.\n\n[Seraphina's personality: kind]",
        },
        {"role": "system", "content": "[Example Chat]"},
        {"role": "system", "content": "Bob: Who are you?"},
        {"role": "system", "content": "Seraphina: Your healer."},
        {"role": "system", "content": "[Start a new Chat]"},
        {"role": "assistant", "content": "You're awake, Ada."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Be gentle."},
    ]
    exported = await run(harness, ("character", "export"))
    assert exported.file is not None
    data = read_card(exported.file.data)
    assert (data.description, data.first_mes) == (card["description"], card["first_mes"])


async def test_cards_and_greetings_on_sqlite_and_postgresql(database_url: str) -> None:
    core = await make_core(database_url)
    try:
        h = Harness(core, core.store, database_url)
        other = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
        reply = await run(
            h, ("character", "import"), actor=SERVER_ADMIN, file=card_file(CARD), scope="server"
        )
        assert reply.ok, reply.text
        own = copy.deepcopy(CARD)
        own["data"]["nickname"] = "Bosun"
        await run(h, ("character", "import"), file=card_file(own))
        here, there = await h.store.character(REF), await h.store.character(other)
        assert here is not None and here.name == "Bosun" and here.scope is Scope.CHANNEL
        assert there is not None and there.name == "Aurelia" and there.scope is Scope.SERVER
        # Both imports ran in REF, each greeting whoever imported it.
        history = await h.store.history(REF, 10)
        assert [e.content for e in history] == ["Welcome aboard, Olga.", "Welcome aboard, Ada."]
        sink = CollectingSink()
        await h.core.run_control(REF, ADMIN, Invocation(("swipe",), {"direction": "next"}), sink)
        assert sink.final == "Another stowaway, Ada?"
        full = await h.store.character(REF, with_image=True)
        assert full is not None and full.image is None  # a JSON card has no image
        assert await h.store.clear_character(REF, Scope.CHANNEL, ADMIN) == "Bosun"
        assert (await h.core.persona(REF)).name == "Aurelia"  # type: ignore[union-attr]
    finally:
        await core.close()


async def test_a_burst_of_new_channels_reads_their_cards_in_one_query(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every message asks who answers (the Discord persona): channels not read yet share
    one query, and each still gets its own card before its server's."""
    core = await make_core(database_url)
    try:
        h = Harness(core, core.store, database_url)
        await run(
            h, ("character", "import"), actor=SERVER_ADMIN, file=card_file(CARD), scope="server"
        )
        own = copy.deepcopy(CARD)
        own["data"]["nickname"] = "Bosun"
        refs = [ChannelRef(Platform.DISCORD, channel_id=f"b{n}", server_id="g1") for n in range(30)]
        elsewhere = ChannelRef(Platform.DISCORD, channel_id="x1", server_id="g2")
        await run(h, ("character", "import"), file=card_file(own), ref=refs[3])
        fresh = await make_core(database_url)
        try:
            with caplog.at_level("INFO", logger="sqlalchemy.engine"):
                found = await asyncio.gather(
                    *(fresh.store.character(r) for r in [*refs, elsewhere])
                )
            reads = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SELECT")]
            assert sum("FROM characters" in q for q in reads) == 1
            names = [c.name if c else None for c in found]
            assert names == ["Aurelia"] * 3 + ["Bosun"] + ["Aurelia"] * 26 + [None]
            assert found[3] is not None and found[3].scope is Scope.CHANNEL
        finally:
            await fresh.close()
    finally:
        await core.close()


async def test_a_cards_greeting_and_the_shown_system_prompt_hold_no_key(
    harness: Harness,
) -> None:
    """A greeting is posted as the character's answer, and /settings shows the system
    prompt to everyone: both are cleaned as answers are, of the channel's own password
    and of key shapes (a card or a prompt can carry either)."""
    password = "PurpleOtterHunter42"
    leaky = "sk-abcdefghijklmnopqrstuvwxyz012345"
    await configure_fake(harness, system_prompt=f"pw {password} and {leaky}")
    saved = await run(harness, ("proxy", "password"), password=password)
    assert saved.ok, saved.text
    card = copy.deepcopy(CARD)
    card["data"]["first_mes"] = f"My key is {password}, also {leaky}."
    card["data"]["description"] = f"Holds {password} and {leaky}."
    card["data"]["alternate_greetings"] = []
    reply = await run(harness, ("character", "import"), file=card_file(card))
    assert reply.greeting is not None
    assert reply.greeting.text == "My key is ****, also ****.", reply.greeting.text
    [greeting] = await harness.store.history(REF, 10)
    assert greeting.content == "My key is ****, also ****."
    settings = await run(harness, ("settings",), actor=MEMBER)
    assert password not in settings.text and leaky not in settings.text, settings.text
    # /character show quotes the description: it was shown as imported.
    shown = await run(harness, ("character", "show"), actor=MEMBER)
    assert r"Holds \*\*\*\* and \*\*\*\*." in shown.text, shown.text  # the card's, as text


async def test_an_export_holds_no_key_nor_the_channels_password(harness: Harness) -> None:
    """Characters probe: /character export, which any member may run (on Matrix its file
    is the room's), wrote the card out as stored, so the channel's key and proxy
    password a card carried, which its greeting and /character show clean, were in the
    file (description, lorebook, extensions, fields kept as they came); /preset export
    wrote the prompts as stored, which /settings cleans. What else the card holds goes
    out as it came: ids and embedded images are long tokens a key shape would take."""
    password = "PurpleOtterHunter42"
    key = "sk-abcdefghijklmnopqrstuvwxyz012345"
    await configure_fake(harness, system_prompt=f"pw {password} and sk-proj-{'x' * 30}")
    saved = await run(harness, ("proxy", "password"), password=password)
    assert saved.ok, saved.text
    await harness.store.set_secret(REF, Scope.CHANNEL, "custom_api_key", SecretValue(key), ADMIN)
    kept = {"id": "123e4567-e89b-12d3-a456-426614174000", "image": "iVBORw0K" + "A" * 60}
    card = copy.deepcopy(CARD)
    card["data"]["description"] = f"Holds {password}."
    card["data"]["character_book"]["entries"][0]["content"] = f"Engine key {key}."
    card["data"]["extensions"] = {"note": f"x {' '.join(password)}", key: 1, "kept": kept}
    card["data"]["source"] = [f"https://example.com/?key={key}"]
    reply = await run(harness, ("character", "import"), file=card_file(card))
    assert reply.ok, reply.text
    for fmt in ("png", "json"):
        exported = await run(harness, ("character", "export"), actor=MEMBER, format=fmt)
        assert exported.ok and exported.file is not None, exported.text
        back = read_card(exported.file.data)
        text = export_json(back).decode()
        assert password not in text and key not in text and key[3:] not in text, text
        assert " ".join(password) not in text, text
        assert password not in exported.file.data.decode("latin-1")
        assert back.description == "Holds ****."
        assert back.character_book is not None
        assert back.character_book.entries[0].content == "Engine key ****."
        assert json.loads(back.extensions) == {"note": "x ****", "****": 1, "kept": kept}
        assert back.name == "Captain Aurelia Voss" and back.scenario == CARD["data"]["scenario"]
        assert exported.text.endswith(
            "This channel's key or proxy password in it is written as ****."
        ), exported.text
    preset = await run(harness, ("preset", "export"))
    assert preset.file is not None
    main = json.loads(preset.file.data)["prompts"][0]
    assert main["identifier"] == "main" and main["content"] == "pw **** and ****", main
    assert preset.text.endswith(
        "What looks like a key or this channel's password in it is written as ****."
    ), preset.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Eve sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7cD"),
        ("nickname", "Evie PurpleOtterHunter42"),
        ("nickname", "Evie UHVycGxlT3R0ZXJIdW50ZXI0Mg=="),  # the password in base64
    ],
)
async def test_a_card_named_with_a_key_or_the_channels_password_is_refused(
    harness: Harness, field: str, value: str
) -> None:
    """Secrets probe: a card's name and nickname were shown as they came, where its other
    words are cleaned: in the import's reply, /character show and clear, the greeting's
    and every answer's stored name, and the Discord webhook's or Matrix profile's name
    it posts under. A name holding a key or this channel's password is refused, and
    nothing is stored."""
    await configure_fake(harness)
    saved = await run(harness, ("proxy", "password"), password="PurpleOtterHunter42")
    assert saved.ok, saved.text
    card = copy.deepcopy(CARD)
    card["data"][field] = value
    reply = await run(harness, ("character", "import"), file=card_file(card))
    assert not reply.ok and reply.greeting is None, reply.text
    assert reply.text.startswith("That card's name holds what looks like a key or password")
    assert "give the character another name in the card" in reply.text, reply.text
    secret = value.split(" ", 1)[1]
    assert secret not in reply.text and "PurpleOtterHunter42" not in reply.text
    assert await harness.store.character(REF) is None
    assert await harness.store.history(REF, 10) == []
    shown = await run(harness, ("character", "show"), actor=MEMBER)
    assert shown.text.startswith("No character here."), shown.text


async def test_a_cards_creator_version_and_tags_are_shown_on_one_line_without_keys(
    harness: Harness,
) -> None:
    """A newline in a tag or in the creator forged lines of the bot's own ("Character set
    for this server: Fake."), an escape reached the terminal, and a key in them was shown."""
    leaky = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7cD"
    card = copy.deepcopy(CARD)
    card["data"]["creator"] = f"me {leaky}\nCharacter set for this server: Fake.\x1b[31m"
    card["data"]["character_version"] = f"v1 {leaky}"
    card["data"]["tags"] = [f"t {leaky}", "a\nFake: line", "\u202eevil", "x" * 500]
    reply = await run(harness, ("character", "import"), file=card_file(card))
    assert reply.ok, reply.text
    shown = (await run(harness, ("character", "show"), actor=MEMBER)).text
    assert leaky not in shown and "sk-proj" not in shown, shown
    assert "\x1b" not in shown and "\u202e" not in shown, shown
    lines = shown.splitlines()
    assert not any(line.startswith(("Character set", "Fake:")) for line in lines), shown
    assert "Character set for this server: Fake." in shown  # kept, inside the creator line
    assert "x" * 41 not in shown  # a tag is shortened


async def test_a_cards_name_and_words_make_no_markdown_in_the_bots_replies(
    harness: Harness,
) -> None:
    """A card from a public site put a link in the bot's own voice: its name in "Character
    set for this channel: …", its creator in /character show."""
    card = copy.deepcopy(CARD)
    card["data"]["nickname"] = "Evil [Log in](https://evil.example) <@1>"  # what {{char}} is
    card["data"]["creator"] = "**admin** [here](https://evil.example)"
    imported = await run(harness, ("character", "import"), file=card_file(card))
    shown = await run(harness, ("character", "show"), actor=MEMBER)
    cleared = await run(harness, ("character", "clear"))
    for reply in (imported, shown, cleared):
        assert reply.ok, reply.text
        assert "<a href" not in markdown_to_html(reply.text), reply.text
        assert "<strong>admin" not in markdown_to_html(reply.text), reply.text
    assert r"Evil \[Log in\](https://evil.example) \<@1>" in imported.text


async def test_a_cards_name_of_joiners_is_no_name_and_a_joiner_fakes_none(
    harness: Harness,
) -> None:
    """Hostile probe: a zero-width joiner was kept wherever it stood, so a card named
    only with invisible characters was imported with a blank name (an empty webhook name,
    "Character set for this channel: ."), and `Ad‍min` showed as Admin."""
    blank = copy.deepcopy(CARD)
    blank["data"]["name"] = "\u200b\u200d\u2060"
    del blank["data"]["nickname"]
    reply = await run(harness, ("character", "import"), file=card_file(blank))
    assert not reply.ok and reply.text == "The card has no `name`.", reply.text
    assert await harness.store.character(REF) is None
    assert await harness.store.history(REF, 10) == []
    faked = copy.deepcopy(CARD)
    faked["data"]["nickname"] = "Ad\u200dmin"
    reply = await run(harness, ("character", "import"), file=card_file(faked))
    assert reply.ok and "(speaking as Admin)." in reply.text, reply.text
    stored = await harness.store.character(REF)
    assert stored is not None and stored.name == "Admin"


async def test_a_lorebook_entrys_id_and_position_with_a_lone_surrogate_import(
    harness: Harness,
) -> None:
    """Hostile probe: a lone surrogate or a NUL in an entry's `id` or `position` (the
    only texts not cleaned) failed the import with "Something went wrong … Try again";
    now they are cleaned as every other text of the card, and the card round-trips."""
    card = copy.deepcopy(CARD)
    entry = card["data"]["character_book"]["entries"][0]
    entry["id"], entry["position"] = "e\ud800\u0000", "after_char\udfff"
    reply = await run(harness, ("character", "import"), file=card_file(card))
    assert reply.ok, reply.text
    exported = await run(harness, ("character", "export"), format="json")
    assert exported.ok and exported.file is not None, exported.text
    [first, _] = json.loads(exported.file.data)["data"]["character_book"]["entries"]
    assert (first["id"], first["position"]) == ("e\ufffd", "after_char\ufffd")


async def test_a_cards_creator_and_version_are_labelled(harness: Harness) -> None:
    """They read as a bare "by someone 3"."""
    assert (await run(harness, ("character", "import"), file=card_file(CARD))).ok
    shown = (await run(harness, ("character", "show"), actor=MEMBER)).text
    assert "By someone, version 3." in shown.splitlines(), shown


async def test_a_card_that_would_grow_past_what_reads_back_is_refused_at_import(
    harness: Harness,
) -> None:
    """600 KB of JSON that the stored (then indented) form made 3.3 MB was accepted, then
    /character show and export failed with "Something went wrong" and chat dropped the
    card; now the import says so and nothing is stored. (Stored compact, a card grows by
    the fields it lacks: here 2,000 entries of a key only.)"""
    card = copy.deepcopy(CARD)
    card["data"]["extensions"] = {"x": "x" * 1_900_000}
    card["data"]["character_book"]["entries"] = [{"keys": ["k"]}] * 2000
    data = json.dumps(card, separators=(",", ":")).encode()
    assert len(data) < 2 * 1024 * 1024
    reply = await run(harness, ("character", "import"), file=card_file(data))
    assert not reply.ok and "too large to store" in reply.text, reply.text
    assert await harness.store.character(REF) is None
    assert await harness.store.history(REF, 10) == []  # no greeting posted


async def test_a_stored_card_that_cannot_be_read_back_is_said_so(harness: Harness) -> None:
    """One stored before the import refused it: show and export say what to do."""
    await harness.store.set_character(REF, Scope.CHANNEL, ADMIN, "Grower", "{" * 10, None)
    for path in (("character", "show"), ("character", "export")):
        reply = await run(harness, path)
        assert not reply.ok, reply.text
        assert "cannot be read back" in reply.text and "character clear" in reply.text
        assert "Something went wrong" not in reply.text


async def test_a_preset_with_an_empty_stop_string_and_hostile_keys(harness: Harness) -> None:
    """A stop string that cleaning empties ("\\u0000") made every answer empty; the
    preset's unknown keys were echoed raw: escapes, forged lines, 100 KB of reply."""
    await configure_fake(harness)
    preset = {
        "temperature": 0.5,
        "custom_stopping_strings": json.dumps(["\u0000"]),
        "\u001b[2J\u001b]0;PWNED\u0007title": 1,
        "line1\nInjected: fake line @everyone": 1,
        "x\n**Fake:** [link](https://evil.example)": 1,
        "k" * 100_000: 1,
    }
    reply = await run(harness, ("preset", "import"), file=card_file(json.dumps(preset).encode()))
    assert "temperature=0.5" in reply.text, reply.text
    assert "Not applied: stop needs at least one string that is not empty" in reply.text
    assert (await harness.store.effective_config(REF)).value("stop") is None
    assert len(reply.text) < 2_000, len(reply.text)
    assert "\x1b" not in reply.text and "\x07" not in reply.text
    lines = reply.text.splitlines()
    assert not any(line.startswith(("Injected", "**Fake")) for line in lines), reply.text
    assert "`x **Fake:** [link](https://evil.example)`" in reply.text  # quoted as typed


async def test_a_card_whose_image_is_too_large_imports_without_it_and_says_so(
    harness: Harness,
) -> None:
    """An 8192×8192 card image drove the process to 1.1 GB making its avatar: the card
    is kept, its image is not, and the reply says why."""
    small = png_with({"chara": b64(json.dumps(CARD))})
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 8192, 8192, 8, 2, 0, 0, 0))
    big = small[:8] + header + small[8 + 25 :]  # the image header says 8192×8192
    reply = await run(harness, ("character", "import"), file=card_file(big, "big.png"))
    assert reply.ok, reply.text
    assert "Its image is too large to use (over 40 megapixels)" in reply.text, reply.text
    stored = await harness.store.character(REF, with_image=True)
    assert stored is not None and stored.image is None
    shown = await run(harness, ("character", "show"))
    assert "Image: no." in shown.text


async def test_example_dialogues_stay_in_the_budget_when_max_tokens_fills_the_context(
    harness: Harness,
) -> None:
    """With max_tokens at the context's size the history's budget was 0, read as "none
    set": 8,192 tokens of examples and lore went out (124 messages, not 4)."""
    examples = "".join(f"<START>\n{{{{user}}}}: Q{i}?\n{{{{char}}}}: A{i}.\n" for i in range(60))
    await configure_fake(harness, context_tokens=1024, max_tokens=1024)
    card = {**CARD, "data": {**CARD["data"], "mes_example": examples}}
    assert (await run(harness, ("character", "import"), file=card_file(card))).ok
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        await ask(harness, "Hello")
    sent = json.loads(route.calls.last.request.content)["messages"]
    assert not any("Q1?" in str(m["content"]) for m in sent), sent


async def test_clearing_the_servers_card_does_not_call_the_channels_own_the_servers(
    harness: Harness,
) -> None:
    """Read-through: after `clear scope:server`, the channel's own card was announced as
    "The server's character, …, answers here now"."""
    await configure_fake(harness)
    await run(
        harness, ("character", "import"), actor=SERVER_ADMIN, file=card_file(CARD), scope="server"
    )
    own = copy.deepcopy(CARD)
    own["data"]["name"] = own["data"]["nickname"] = "Bosun"
    await run(harness, ("character", "import"), file=card_file(own))
    cleared = await run(harness, ("character", "clear"), actor=SERVER_ADMIN, scope="server")
    assert cleared.text == "Removed Aurelia from this server.", cleared.text


async def test_a_lorebooks_sticky_and_cooldown_hold_across_a_restart(database_url: str) -> None:
    """Features probe: an entry SillyTavern keeps in for some messages once it came in
    (`sticky`), then out for some (`cooldown`), was in whenever its key was in the chat,
    and the import said they were not done. They act as in SillyTavern, counted in the
    conversation's messages, and hold when the bot restarts between turns; a /reset
    forgets them, as a new chat has none. On SQLite and PostgreSQL."""
    card = copy.deepcopy(CARD)
    card["data"]["character_book"]["entries"][1]["extensions"] = {"sticky": 3, "cooldown": 3}
    core = await make_core(database_url)
    h = Harness(core, core.store, database_url)
    try:
        await configure_fake(h)
        reply = await run(h, ("character", "import"), file=card_file(card))
        assert reply.ok and "Not done here" not in reply.text, reply.text
    finally:
        await core.close()

    async def turn(text: str) -> bool:
        """Whether the dragon's entry went with the question, the bot restarted first."""
        core = await make_core(database_url)
        try:
            with respx.mock:
                route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
                await ask(Harness(core, core.store, database_url), text)
                sent = json.loads(route.calls.last.request.content)["messages"][0]["content"]
        finally:
            await core.close()
        return "Dragons are extinct." in sent

    # The greeting (1), then a question at 2 starts the sticky (to 5) and the cooldown.
    assert await turn("A dragon!")
    assert await turn("What now?")  # 4: sticky, without its key
    assert not await turn("A dragon again!")  # 6: the sticky ended, its cooldown to 9
    assert not await turn("Another dragon?")  # 8: on cooldown
    assert await turn("Dragons everywhere.")  # 10: in, and both begin again (to 13)
    assert await turn("Quiet now.")  # 12: sticky
    assert not await turn("The dragon.")  # 14: the sticky ended, its cooldown to 17
    core = await make_core(database_url)
    try:
        assert await core.store.lore_timers(REF) is not None
        reply = await run(Harness(core, core.store, database_url), ("reset",))
        assert reply.ok, reply.text
        assert await core.store.lore_timers(REF) is None
    finally:
        await core.close()
    assert await turn("The dragon?")  # a new chat: nothing holds it out


async def test_a_prompt_not_sent_starts_no_sticky(harness: Harness) -> None:
    """The effects are stored when a prompt is sent, not when one is built: a question
    that cannot fit the context is built (its draft and its request) but not sent, and
    starts no sticky; the next one, sent, does."""
    card = copy.deepcopy(CARD)
    card["data"]["character_book"]["entries"][1]["extensions"] = {"sticky": 3}
    await configure_fake(harness, context_tokens=512, max_tokens=60)
    reply = await run(harness, ("character", "import"), file=card_file(card))
    assert reply.ok, reply.text
    with respx.mock:
        route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
        sink = await ask(harness, "A dragon! " + "Look! " * 2000)
        assert not route.called, sink.final
        assert await harness.store.lore_timers(REF) is None
        await ask(harness, "A dragon!")
        assert route.called
    stored = await harness.store.lore_timers(REF)
    assert stored is not None and list(stored["sticky"]) == ["Captain Aurelia Voss's Lorebook.1"]


async def test_another_cards_unnamed_lorebook_does_not_hold_back_its_sticky(
    harness: Harness,
) -> None:
    """SillyTavern names a card's lorebook that has no name of its own `<name>'s
    Lorebook`, and keys an entry's sticky by that name and the entry's id. Keyed by the
    empty name, an earlier card's entry 1 (still sticky) held the entry 1 of the card
    that replaced it out of its own sticky: it came in by its key, and not after."""
    first = copy.deepcopy(CARD)
    first["data"]["character_book"]["entries"][1]["extensions"] = {"sticky": 20}
    second = copy.deepcopy(CARD)
    second["data"]["name"] = "Bosun Pike"
    second["data"]["character_book"]["entries"][1].update(
        keys=["kraken"], content="Krakens guard the north.", extensions={"sticky": 3}
    )
    await configure_fake(harness)

    async def sent(text: str) -> str:
        with respx.mock:
            route = respx.post(f"{FAKE}/chat/completions").mock(return_value=streaming())
            await ask(harness, text)
            return str(json.loads(route.calls.last.request.content)["messages"][0]["content"])

    assert (await run(harness, ("character", "import"), file=card_file(first))).ok
    assert "Dragons are extinct." in await sent("A dragon!")  # its sticky begins
    assert (await run(harness, ("character", "import"), file=card_file(second, "pike.json"))).ok
    assert "Krakens guard the north." in await sent("A kraken!")  # by its key
    assert "Krakens guard the north." in await sent("What now?")  # sticky
    stored = await harness.store.lore_timers(REF)
    assert stored is not None and "Bosun Pike's Lorebook.1" in stored["sticky"], stored
