"""The prompt a card builds: SillyTavern's order, macros, examples, lorebook, greetings."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from bot.characters import (
    CharacterPrompt,
    Macros,
    build_prompt,
    card_from_json,
    example_dialogues,
    greetings,
    macros_for,
    system_without_card,
)
from bot.characters.lorebook import NOT_ANY
from bot.characters.model import Card
from bot.types import ChatMessage, HistoryEntry, Image, Role
from tests.unit.characters.samples import v2, v3

DEFAULT = "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}."
# SillyTavern's current default main prompt (public/scripts/openai.js default_main_prompt)
ST_MAIN = "Write {{char}}'s next reply in a fictional chat between {{charIfNotGroup}} and {{user}}."


def tokens(text: str) -> int:
    return len(text) // 4 + 1


def _card(data: dict[str, Any]) -> Card:
    return card_from_json(json.dumps(data))


def _entries(*entries: dict[str, Any], **book: Any) -> dict[str, Any]:
    card = v2()
    base = {"extensions": {}, "enabled": True, "insertion_order": 10, "content": ""}
    card["data"]["character_book"] = {
        "extensions": {},
        "entries": [{**base, **e} for e in entries],
        **book,
    }
    return card


def _user(text: str) -> ChatMessage:
    return ChatMessage(Role.USER, text, "Bob")


def _bot(text: str) -> ChatMessage:
    return ChatMessage(Role.ASSISTANT, text)


def test_the_exact_prompt_in_sillytavern_order() -> None:
    card = v2()
    card["data"]["character_book"]["entries"] += [
        {
            "keys": ["moon"],
            "content": "{{char}} fears the new moon.",
            "extensions": {},
            "enabled": True,
            "insertion_order": 50,
            "position": "after_char",
        },
        {
            "keys": ["never mentioned"],
            "content": "Always here.",
            "constant": True,
            "extensions": {},
            "enabled": True,
            "insertion_order": 1,
            "position": "after_char",
        },
        {
            "keys": ["glade"],
            "content": "Disabled.",
            "extensions": {},
            "enabled": False,
            "insertion_order": 1,
        },
    ]
    history = [
        _user("Hello?"),
        _bot("You are in my glade, {{user}}."),
        _user("Is the MOON out tonight?"),
    ]
    prompt = build_prompt(
        _card(card),
        history,
        user="Bob",
        estimate=tokens,
        default_system=DEFAULT,
        default_post_history="Be brief.",
    )
    assert prompt.system == (
        "Write Seraphina's next reply in a fictional chat between Seraphina and Bob. "
        "Stay in character as Seraphina.\n\n"
        "The glade is hidden by old magic.\n\n"
        "Seraphina is a guardian of the forest.\n\n"
        "[Seraphina's personality: kind, protective]\n\n"
        "[Circumstances and context of the dialogue: Bob wakes up in Seraphina's glade.]\n\n"
        "Always here.\nSeraphina fears the new moon."
    )
    assert prompt.messages == (
        ChatMessage(Role.SYSTEM, "[Example Chat]"),
        ChatMessage(Role.SYSTEM, "Bob: Who are you?", "example_user"),
        ChatMessage(Role.SYSTEM, "Seraphina: I am Seraphina.", "example_assistant"),
        ChatMessage(Role.SYSTEM, "[Example Chat]"),
        ChatMessage(Role.SYSTEM, "Bob: Where am I?", "example_user"),
        ChatMessage(Role.SYSTEM, "Seraphina: In my glade.\nIt is safe here.", "example_assistant"),
        ChatMessage(Role.SYSTEM, "[Start a new Chat]"),
        _user("Hello?"),
        _bot("You are in my glade, Bob."),
        _user("Is the MOON out tonight?"),
        ChatMessage(Role.SYSTEM, "Reply as Seraphina in under 100 words."),
    )
    assert [e.content for e in prompt.lore.entries] == [
        "Always here.",
        "{{char}} fears the new moon.",
        "The glade is hidden by old magic.",
    ]


def test_without_card_prompts_ours_are_used_and_empty_parts_are_left_out() -> None:
    card = v3()
    card["data"]["character_book"] = None
    prompt = build_prompt(
        _card(card),
        [HistoryEntry(Role.USER, "hi {{char}}", "Ann")],
        user="Ann",
        estimate=tokens,
        default_system=DEFAULT,
        default_post_history="Stay in character, {{user}}.",
    )
    # V3: {{char}} is the nickname
    assert prompt.system == (
        "Write Aurelia's next reply in a fictional chat between Aurelia and Ann.\n\n"
        "Aurelia commands the airship *Meridian*."
    )
    assert prompt.before_history == (ChatMessage(Role.SYSTEM, "[Start a new Chat]"),)
    assert prompt.history == (ChatMessage(Role.USER, "hi Aurelia", "Ann"),)
    assert prompt.after_history == (ChatMessage(Role.SYSTEM, "Stay in character, Ann."),)


def test_original_is_replaced_once_and_a_card_without_it_replaces_ours() -> None:
    card = v3()
    card["data"]["system_prompt"] = "A {{original}} B {{ORIGINAL}}"
    card["data"]["post_history_instructions"] = "Only the card's."
    prompt = build_prompt(
        _card(card), [], user="U", estimate=tokens, default_system="ours", default_post_history="x"
    )
    assert prompt.system == "A ours B\n\nAurelia commands the airship *Meridian*."
    assert "x" not in prompt.after_history[0].content
    assert prompt.after_history[0].content == "Only the card's."


def test_history_images_and_names_are_kept() -> None:
    image = Image("image/png", b"png")
    turn = ChatMessage(Role.USER, "look, <BOT>", "Bob", (image,))
    prompt = build_prompt(_card(v3()), [turn], user="Bob", estimate=tokens)
    assert prompt.history == (ChatMessage(Role.USER, "look, Aurelia", "Bob", (image,)),)


def test_macros_case_insensitive_and_comments() -> None:
    macros = Macros("Sera", "Bob", random.Random(1))
    text = (
        "{{Char}} {{USER}} <bot> <User> <CHAR> {{// hidden}}{{comment: x}}{{unknown}} {{newline}}"
    )
    assert macros(text) == "Sera Bob Sera Bob Sera {{unknown}} \n"


def test_group_macros_are_the_character_outside_group_chats() -> None:
    macros = Macros("Sera", "Bob")
    text = "{{charIfNotGroup}} {{CHARIFNOTGROUP}} {{group}} <charIfNotGroup> <GROUP>"
    assert macros(text) == "Sera Sera Sera Sera Sera"


def test_trim_removes_itself_and_the_line_breaks_around_it() -> None:
    macros = Macros("Sera", "Bob")
    assert macros("{{user}}\n\n{{trim}}\r\n{{char}}") == "BobSera"
    assert macros("a\n{{TRIM}}\n\n{{ trim }}\nb {{noop}}c") == "ab c"
    assert macros("a \r{{trim}} b") == "a \r b"  # only \n and \r\n, as SillyTavern's regex
    assert macros("{{trim}}") == ""
    assert macros("{{user}}", original="x\n{{trim}}") == "Bob"  # no {{original}}: unused
    assert macros("{{original}}\n{{trim}}\n!", original="{{char}}") == "Sera!"


def test_trim_is_linear_on_a_long_run_of_line_breaks() -> None:
    text = "\n" * 300_000 + "x{{trim}}" + "\r\n" * 300_000 + "{{trim}}y"
    started = time.perf_counter()
    assert Macros("S", "U")(text) == "\n" * 300_000 + "xy"
    assert time.perf_counter() - started < 2


def test_sillytaverns_default_main_prompt_with_a_card() -> None:
    prompt = build_prompt(_card(v3()), [], user="Ann", estimate=tokens, default_system=ST_MAIN)
    assert prompt.system.startswith(
        "Write Aurelia's next reply in a fictional chat between Aurelia and Ann.\n\n"
    )


def test_without_a_card_the_system_prompt_gets_sillytaverns_macros() -> None:
    assert system_without_card(ST_MAIN, "Ann") == (
        "Write Assistant's next reply in a fictional chat between Assistant and Ann."
    )
    assert system_without_card("{{char}} and {{user}}", None) == "Assistant and User"
    assert system_without_card("{{char}} and {{user}}", "  ", char="Botty") == "Botty and User"
    text = "{{// for the model}}Be kind to {{user}}.{{newline}}{{random:Yes}}\n{{trim}}\n!"
    assert system_without_card(text, "Ann") == "Be kind to Ann.\nYes!"
    assert system_without_card("{{unknown}} stays", "Ann") == "{{unknown}} stays"
    assert system_without_card("{{// only a comment}}", "Ann") is None
    assert system_without_card("", "Ann") is None and system_without_card(None, "Ann") is None


def test_a_user_name_with_macros_is_not_expanded_again() -> None:
    assert Macros("Sera", "{{char}}")("hi {{user}}") == "hi {{char}}"


def test_a_turns_macros_resolve_as_when_it_was_sent() -> None:
    """Characters probe: SillyTavern resolves a message's macros once, when it is sent
    (sendMessageAsUser: substituteParams); here every build resolved the whole history
    again, so in a shared channel Ada's `{{user}}` became whoever asked last, and a roll
    in an old message changed every turn while the answer to it stayed."""
    history = [
        _user("I am {{user}}, rolling {{roll:1d1000000}} and {{random::x::y::z::w}}"),
        _bot("You rolled well."),
        ChatMessage(Role.USER, "And I am {{user}}.", "Cy"),
    ]
    builds = [
        build_prompt(_card(v3()), history, user=who, estimate=tokens, rng=random.Random(seed))
        for seed, who in enumerate(("Cy", "Dee", "Cy"))
    ]
    first = builds[0].history
    assert first[0].content.startswith("I am Bob, rolling ")
    assert first[2].content == "And I am Cy."
    assert all(b.history == first for b in builds[1:])  # the same roll and pick every time
    roll = first[0].content.split()[4]
    assert roll.isdigit() and 1 <= int(roll) <= 1_000_000
    # Turns without a name (the console's) and answers take whoever asks.
    unnamed = build_prompt(_card(v3()), [_bot("Hi {{user}}")], user="Eve", estimate=tokens)
    assert unnamed.history[0].content == "Hi Eve"


def test_random_pick_and_roll() -> None:
    macros = Macros("Sera", "Bob", random.Random(7))
    picked = macros("{{pick:a,b,c}} {{pick:a,b,c}}")
    assert picked == macros("{{pick:a,b,c}} {{pick:a,b,c}}")  # the same every build
    assert macros("{{random:x\\,y}}") == "x,y"
    assert macros("{{random::one::two}}") in ("one", "two")
    assert 1 <= int(macros("{{roll:d6}}")) <= 6
    assert macros("{{roll:0}}") == "{{roll:0}}"


def test_a_name_with_braces_goes_in_as_it_is_inside_a_random_too() -> None:
    """Names are put in before {{random}} is picked (as SillyTavern does); a name that
    reads like a macro is not one, nor does it end the {{random}} around it."""
    name = "Bob }} {{roll:d6}} {{user}}"
    macros = Macros("Sera", name, random.Random(5))
    assert macros("{{random::<USER>::{{user}}}}|{{user}}") == f"{name}|{name}"
    assert macros("{{pick::a {{char}}::a {{char}}}}{{// {{user}}}}") == "a Sera"


@pytest.mark.parametrize(
    ("formula", "low", "high"),
    [
        ("6", 1, 6),
        ("d20", 1, 20),
        ("1d6", 1, 6),  # SillyTavern's own example
        ("2d6", 2, 12),
        ("2D6+3", 5, 15),
        ("3d4 - 2", 1, 10),
        ("100d1", 100, 100),
    ],
)
def test_dice_rolls_as_sillytavern_writes_them(formula: str, low: int, high: int) -> None:
    macros = Macros("Sera", "Bob", random.Random(3))
    rolls = [int(macros(f"{{{{roll:{formula}}}}}")) for _ in range(200)]
    assert low <= min(rolls) and max(rolls) <= high
    assert low == high or len(set(rolls)) > 1


@pytest.mark.parametrize("formula", ["0d6", "2d0", "101d6", "d", "2d6*3", "1d6+", "x"])
def test_a_roll_not_read_is_left_as_written(formula: str) -> None:
    text = f"{{{{roll:{formula}}}}}"
    assert Macros("Sera", "Bob")(text) == text


def test_an_unclosed_macro_is_left_alone() -> None:
    text = "{{" + "a" * 50_000
    assert Macros("S", "U")(text) == text


def test_example_dialogue_parsing_like_sillytavern() -> None:
    card = v3()
    card["data"]["mes_example"] = (
        "Narration before anyone speaks.\n"
        "{{user}}: one\ncontinued\n{{user}}: still me\n"
        "{{char}}: reply with {{user}}: inside\n"
        "<start>\n"
        "Just prose, no speakers.\n"
        "<START>\n"
    )
    dialogues = example_dialogues(_card(card), macros_for(_card(card), "Bob"))
    assert dialogues == [
        [
            (Role.USER, "Narration before anyone speaks.\n one\ncontinued\nBob: still me"),
            (Role.ASSISTANT, "reply with Bob: inside"),
        ],
        [(Role.SYSTEM, "Just prose, no speakers.")],
    ]


def test_examples_are_dropped_whole_when_over_their_budget() -> None:
    card = _card(v2())
    prompt = build_prompt(card, [], user="Bob", estimate=tokens, examples_budget=20)
    contents = [m.content for m in prompt.before_history]
    assert contents == [
        "[Example Chat]",
        "Bob: Who are you?",
        "Seraphina: I am Seraphina.",
        "[Start a new Chat]",
    ]


def test_greetings_first_then_alternates_with_macros() -> None:
    card = _card(v2())
    assert greetings(card, "Bob") == (
        "*Seraphina kneels beside Bob.* You're awake.",
        "Hello, Bob.",
        "*Seraphina smiles.*",
    )
    empty = v3()
    empty["data"]["first_mes"] = ""
    assert greetings(_card(empty), "Bob") == ()
    assert greetings(card, "  ")[1] == "Hello, User."


# -- lorebook -------------------------------------------------------------------------------


def _lore(card: dict[str, Any], *texts: str, budget: int | None = None) -> list[str]:
    history = [_user(t) for t in texts]
    prompt = build_prompt(_card(card), history, user="Bob", estimate=tokens, lore_budget=budget)
    return [*prompt.lore.before, *prompt.lore.after]


def test_keys_are_case_insensitive_unless_the_entry_says_so() -> None:
    card = _entries(
        {"keys": ["Dragon"], "content": "A"},
        {"keys": ["Dragon"], "content": "B", "case_sensitive": True},
    )
    assert _lore(card, "a dragon!") == ["A"]
    assert _lore(card, "a Dragon!") == ["A", "B"]


def test_only_the_last_scan_depth_messages_are_scanned() -> None:
    card = _entries({"keys": ["sword"], "content": "S"}, scan_depth=1)
    assert _lore(card, "a sword", "nothing") == []
    assert _lore(card, "nothing", "a sword") == ["S"]
    default_depth = _entries({"keys": ["sword"], "content": "S"})
    assert _lore(default_depth, "a sword", "x") == ["S"]  # SillyTavern's default: 2
    assert _lore(default_depth, "a sword", "x", "y") == []


def test_only_the_newest_text_of_a_huge_message_is_scanned() -> None:
    card = _entries({"keys": ["sword"], "content": "S"})
    assert _lore(card, "sword" + "x" * 60_000) == []
    assert _lore(card, "x" * 60_000 + "sword") == ["S"]


def test_selective_entries_need_a_secondary_key() -> None:
    card = _entries(
        {
            "keys": ["king"],
            "secondary_keys": ["crown", "throne"],
            "selective": True,
            "content": "K",
        },
        {
            "keys": ["king"],
            "secondary_keys": ["crown"],
            "selective": True,
            "content": "N",
            "extensions": {"selectiveLogic": 2},  # NOT_ANY
        },
    )
    assert _lore(card, "the king") == ["N"]
    assert _lore(card, "the king on his throne") == ["K", "N"]
    assert _lore(card, "the king and his crown") == ["K"]


def test_insertion_order_sorts_and_the_budget_keeps_the_most_important() -> None:
    card = _entries(
        {"keys": ["a"], "content": "low" * 10, "insertion_order": 1},
        {"keys": ["a"], "content": "high" * 10, "insertion_order": 9},
        {"keys": ["a"], "content": "mid", "insertion_order": 5},
    )
    assert _lore(card, "a") == ["low" * 10, "mid", "high" * 10]
    assert _lore(card, "a", budget=16) == ["mid", "high" * 10]
    with_priority = _entries(
        {"keys": ["a"], "content": "first" * 10, "insertion_order": 1, "priority": 100},
        {"keys": ["a"], "content": "second" * 10, "insertion_order": 9, "priority": 1},
        token_budget=20,
    )
    assert _lore(with_priority, "a") == ["first" * 10]


def test_the_budget_left_out_entries_are_noted() -> None:
    card = _entries({"keys": ["a"], "content": "x" * 400, "comment": "Big one"})
    prompt = build_prompt(_card(card), [_user("a")], user="B", estimate=tokens, lore_budget=10)
    assert prompt.lore.entries == ()
    assert prompt.lore.notes == ("Lorebook entry “Big one” left out: over the token budget.",)


def test_whole_word_matching_when_the_entry_asks() -> None:
    card = _entries({"keys": ["cat"], "content": "C", "extensions": {"match_whole_words": True}})
    assert _lore(card, "a caterpillar") == []
    assert _lore(card, "the cat, sleeping") == ["C"]
    assert _lore(_entries({"keys": ["cat"], "content": "C"}), "a caterpillar") == ["C"]


def test_regex_keys_v3_and_sillytavern_forms() -> None:
    v3_card = _card(v3())
    prompt = build_prompt(v3_card, [_user("the MERIDYAN flies")], user="Bob", estimate=tokens)
    assert [e.content for e in prompt.lore.entries] == ["The Meridian is a brass airship."]
    card = _entries(
        {"keys": ["/\\bsword(s)?\\b/i"], "content": "ST form"},
        {"keys": ["bla+de"], "content": "V3 bare", "use_regex": True},
        {"keys": ["bla+de"], "content": "plain text key"},
    )
    assert _lore(card, "two SWORDS and a blaaade") == ["ST form", "V3 bare"]


def _exported(**entry: Any) -> dict[str, Any]:
    """A lorebook entry as SillyTavern's card export writes it (convertWorldInfoToCharacterBook):
    `use_regex` on every entry, the entry's own settings in `extensions`."""
    ext = {"position": 1, "display_index": 0, "selectiveLogic": 0, "depth": 4}
    ext |= entry.pop("extensions", {})
    return {"use_regex": True, "selective": True, "constant": False, **entry, "extensions": ext}


def test_sillytavern_exports_read_as_sillytavern_reads_them() -> None:
    """Its exports set use_regex everywhere but SillyTavern reads only `/…/` keys as
    patterns; constant entries, secondary-key logic and the entries' own case and
    whole-word settings apply as in SillyTavern."""
    card = _entries(
        _exported(keys=[], constant=True, content="ALWAYS"),
        _exported(keys=["C++"], content="CPP"),
        _exported(keys=["cat"], content="CAT", extensions={"match_whole_words": True}),
        _exported(keys=["Elf"], content="ELF", extensions={"case_sensitive": True}),
        _exported(
            keys=["dragon"],
            secondary_keys=["peaceful"],
            content="ANGRY",
            extensions={"selectiveLogic": NOT_ANY},
        ),
        _exported(keys=["/drag(on)?s?/i"], content="PATTERN"),
    )
    said = "The peaceful dragon sleeps by the concatenated code of an elf."
    assert _lore(card, said) == ["ALWAYS", "PATTERN"]
    assert _lore(card, "An Elf and a cat write C++; the dragon is hungry.") == [
        "ALWAYS",
        "CPP",
        "CAT",
        "ELF",
        "ANGRY",
        "PATTERN",
    ]


def test_v3_pattern_keys_still_honour_constant_and_secondary_keys() -> None:
    card = _entries(
        {"keys": ["zz+"], "content": "CONSTANT", "use_regex": True, "constant": True},
        {
            "keys": ["dra+gon"],
            "secondary_keys": ["sle+p"],
            "selective": True,
            "content": "BOTH",
            "use_regex": True,
        },
    )
    assert _lore(card, "a draaagon") == ["CONSTANT"]
    assert _lore(card, "a draaagon, sleeeping") == ["CONSTANT", "BOTH"]
    # The entry's own case setting (in its extensions, as SillyTavern keeps it) holds.
    sensitive = _entries(
        {"keys": ["Dra+gon"], "content": "D", "use_regex": True},
        {"keys": ["Dra+gon"], "content": "S", "use_regex": True},
    )
    sensitive["data"]["character_book"]["entries"][1]["extensions"] = {"case_sensitive": True}
    assert _lore(sensitive, "a draaagon") == ["D"]
    assert _lore(sensitive, "a Draaagon") == ["D", "S"]


def _noted(note: dict[str, Any] | None, *entries: dict[str, Any]) -> Card:
    card = _entries(*entries) if entries else v2()
    card["data"]["extensions"] = {"depth_prompt": note} if note is not None else {}
    card["data"]["post_history_instructions"] = ""
    return _card(card)


def _contents(prompt: CharacterPrompt, *, continuing: bool = False) -> list[str]:
    return [m.content for m in prompt.chat(continuing=continuing)]


def test_the_characters_note_goes_among_the_messages_at_its_depth() -> None:
    """SillyTavern's Character's Note (extensions.depth_prompt) was dropped unsaid."""
    turns = [_user("one"), _bot("two"), _user("three"), _bot("four"), _user("five")]
    note = {"prompt": "Remember, {{char}} fears {{user}}.", "depth": 2, "role": "system"}
    card = _noted(note)
    prompt = build_prompt(card, turns, user="Bob", estimate=tokens)
    said = f"Remember, {card.display_name} fears Bob."
    assert _contents(prompt)[-6:] == ["one", "two", "three", said, "four", "five"]
    [noted] = prompt.notes
    assert noted.role is Role.SYSTEM and noted.content == said
    # Depth 0 follows the newest message; continuing an answer, it goes before it.
    last = build_prompt(
        _noted({**note, "depth": 0, "role": "user"}), turns, user="B", estimate=tokens
    )
    assert _contents(last)[-2] == "five" and last.chat(continuing=False)[-1].role is Role.USER
    assert _contents(last, continuing=True)[-1] == "five"
    # No depth: SillyTavern's 4; an empty note or none at all adds nothing.
    four = build_prompt(_noted({"prompt": "N"}), turns, user="B", estimate=tokens)
    assert _contents(four)[-5:] == ["N", "two", "three", "four", "five"]
    for nothing in ({"prompt": "  ", "depth": 1}, None, {"depth": 1}):
        assert build_prompt(_noted(nothing), turns, user="B", estimate=tokens).in_chat == ()


def test_lore_placed_at_a_depth_goes_among_the_messages_as_its_role() -> None:
    card = _noted(
        {"prompt": "NOTE", "depth": 1},
        {
            "keys": ["dragon"],
            "content": "DEEP",
            "extensions": {"position": 4, "depth": 1, "role": 1},
        },
        {"keys": ["dragon"], "content": "AFTER", "extensions": {"position": 1}},
    )
    turns = [_user("hello"), _bot("where?"), _user("a dragon, there")]
    prompt = build_prompt(card, turns, user="B", estimate=tokens)
    assert _contents(prompt)[-4:] == ["where?", "DEEP", "NOTE", "a dragon, there"]
    chat = prompt.chat(continuing=False)
    assert chat[-3].role is Role.USER and chat[-2].role is Role.SYSTEM
    assert "AFTER" in prompt.system and "DEEP" not in prompt.system
    assert prompt.lore.at_depth and not prompt.lore.before


def test_notes_at_one_depth_are_one_message_a_role_in_sillytaverns_order() -> None:
    """SillyTavern joins the notes of one depth and role into one message (its extension
    prompts by key: the author's note's lore, the Character's Note, lore at a depth) and
    puts the roles assistant, user, system."""
    lore = {"keys": ["dragon"], "extensions": {"position": 4, "depth": 1, "role": 0}}
    card = _noted(
        {"prompt": "NOTE", "depth": 1, "role": 0},  # SillyTavern's number for system
        {**lore, "content": "LORE1"},
        {**lore, "content": "LORE2"},
        {**lore, "content": "ASSIST", "extensions": {**lore["extensions"], "role": 2}},
        {"keys": ["dragon"], "content": "AN-BOTTOM", "extensions": {"position": 3}},
        {"keys": ["dragon"], "content": "AN-TOP", "extensions": {"position": 2}},
    )
    turns = [_user(f"t{i}") for i in range(5)] + [_user("a dragon")]
    prompt = build_prompt(card, turns, user="B", estimate=tokens)
    chat = [(m.role, m.content) for m in prompt.chat(continuing=False)]
    assert chat[-8:] == [
        (Role.USER, "t1"),
        # The author's note's place (depth 4, system), its own text empty between them.
        (Role.SYSTEM, "AN-TOP\n\nAN-BOTTOM"),
        (Role.USER, "t2"),
        (Role.USER, "t3"),
        (Role.USER, "t4"),
        (Role.ASSISTANT, "ASSIST"),
        (Role.SYSTEM, "NOTE\nLORE1\nLORE2"),
        (Role.USER, "a dragon"),
    ]


def test_notes_deeper_than_the_chat_go_at_its_start_as_sillytaverns_splice_puts_them() -> None:
    """Common in a new chat (the default depth is 4): each depth past the start goes
    before the one shallower, roles as at any depth."""
    card = _noted(
        {"prompt": "N4", "depth": 4},
        {"keys": ["hi"], "content": "A4", "extensions": {"position": 4, "depth": 4, "role": 2}},
        {"keys": ["hi"], "content": "L6", "extensions": {"position": 4, "depth": 6, "role": 1}},
    )
    prompt = build_prompt(card, [_bot("greeting"), _user("hi")], user="B", estimate=tokens)
    assert _contents(prompt)[-5:] == ["L6", "A4", "N4", "greeting", "hi"]


@pytest.mark.parametrize(
    ("depth", "placed"),
    [
        *[("2", 2), (2.0, 2), (0, 0), (None, 4), ("", 0), (True, 1), ("0x10", 16)],
        *[(-1, None), (2.5, None), (1001, None), ("two", None), ("1_0", None)],
        # Infinity to JavaScript (an OverflowError to Python's float() had failed every turn)
        *[("0x" + "f" * 400, None), ("0b" + "1" * 1100, None), ("0o" + "7" * 400, None)],
    ],
)
def test_a_notes_depth_as_sillytaverns_equality_reads_it(depth: object, placed: int | None) -> None:
    card = _noted({"prompt": "N", "depth": depth})
    prompt = build_prompt(card, [_user("a"), _user("b"), _user("c")], user="B", estimate=tokens)
    assert [d.depth for d in prompt.in_chat] == ([] if placed is None else [placed])


def test_catastrophic_regex_keys_are_refused_and_noted() -> None:
    card = _entries(
        {"keys": ["(a+)+$"], "content": "X", "use_regex": True, "comment": "evil"},
        {"keys": ["/(\\w)\\1/"], "content": "Y"},
        {"keys": ["a*a*a*b"], "content": "Z", "use_regex": True},
        {"keys": ["("], "content": "W", "use_regex": True},
    )
    prompt = build_prompt(_card(card), [_user("a" * 5000 + "!")], user="B", estimate=tokens)
    assert prompt.lore.entries == ()
    notes = "\n".join(prompt.lore.notes)
    assert "“evil”: the key (a+)+$ is not used: a repeat of something that itself repeats" in notes
    assert "backreference" in notes and "could take too long" in notes
    assert "unclosed" in notes


def test_regex_searches_per_prompt_are_capped() -> None:
    entries = [{"keys": [f"/nomatch{i}/"], "content": "R"} for i in range(1_100)]
    prompt = build_prompt(
        _card(_entries(*entries)), [_user("a"), _user("b")], user="B", estimate=tokens
    )
    assert "Lorebook: more than 2,000 regex searches; the rest skipped." in prompt.lore.notes


def test_entries_of_many_scan_depths_share_one_prompts_work() -> None:
    """An entry's own `scan_depth` gives it a window of its own: the work one prompt may
    do is one budget for all windows, not one each (2,000 regex keys of a depth each
    had run for minutes a prompt)."""
    history = [_user("a"), _user("b")]
    searches = [
        {"keys": [f"/nomatch{i}/"], "content": "R", "extensions": {"scan_depth": 2 + i}}
        for i in range(1_100)
    ]
    prompt = build_prompt(_card(_entries(*searches)), history, user="B", estimate=tokens)
    assert "Lorebook: more than 2,000 regex searches; the rest skipped." in prompt.lore.notes
    costly = [  # each search of these fits alone; twenty of them do not
        {"keys": ["/a*b/"], "content": "C", "extensions": {"scan_depth": 1 + i}} for i in range(20)
    ]
    prompt = build_prompt(_card(_entries(*costly)), [_user("a" * 4_000)], user="B", estimate=tokens)
    assert "Lorebook entry “/a*b/”: the key /a*b/ could take too long." in prompt.lore.notes
    dashed = [
        {
            "keys": ["a-"],
            "content": "D",
            "extensions": {"match_whole_words": True, "scan_depth": 1 + i},
        }
        for i in range(1_000)
    ]
    prompt = build_prompt(
        _card(_entries(*dashed)), [_user("xa-" * 10_000)], user="B", estimate=tokens
    )
    assert prompt.lore.notes == (
        "Lorebook: whole-word keys took too long to look for; the rest skipped.",
    )


def test_wide_regex_keys_are_skipped_not_run_for_seconds() -> None:
    """A card whose keys have a wide fixed-width repeat, against a long message: each
    search would take ~0.5 s on the event loop; all are skipped and noted."""
    wide = {"keys": ["(?:[a-z]{50}){300}b"], "content": "W", "use_regex": True}
    entries = [{**wide, "comment": f"wide {i}"} for i in range(20)]
    prompt = build_prompt(
        _card(_entries(*entries)), [_user("a" * 30_000)], user="B", estimate=tokens
    )
    assert prompt.lore.entries == ()
    assert sum("could take too long" in note for note in prompt.lore.notes) == 20


def test_recursive_scanning_follows_inserted_entries() -> None:
    entries = (
        {"keys": ["castle"], "content": "The castle has a dungeon."},
        {"keys": ["dungeon"], "content": "The dungeon holds a dragon."},
        {"keys": ["dragon"], "content": "The dragon is asleep."},
    )
    assert _lore(_entries(*entries), "the castle") == ["The castle has a dungeon."]
    recursive = _entries(*entries, recursive_scanning=True)
    assert len(_lore(recursive, "the castle")) == 3


def test_decorators_are_stripped_and_activate_rules_followed() -> None:
    card = _entries(
        {"keys": ["x"], "content": "@@depth 4\n@@@instruct_depth 4\nShown."},
        {"keys": ["never"], "content": "@@activate\nAlways."},
        {"keys": ["x"], "content": "@@dont_activate\nNever."},
    )
    assert _lore(card, "x") == ["Shown.", "Always."]


def test_empty_content_and_no_book_insert_nothing() -> None:
    assert _lore(_entries({"keys": ["x"], "content": "   "}), "x") == []
    card = v3()
    card["data"].pop("character_book")
    assert _lore(card, "x") == []


def test_a_role_too_large_for_a_number_is_system_as_sillytavern_reads_it() -> None:
    huge = "0x" + "f" * 400
    card = _noted(
        {"prompt": "N", "depth": 1, "role": huge},
        {"keys": ["hi"], "content": "L", "extensions": {"position": 4, "depth": huge}},
        {"keys": ["hi"], "content": "R", "extensions": {"position": 4, "depth": 0, "role": huge}},
    )
    prompt = build_prompt(card, [_user("a"), _user("hi")], user="B", estimate=tokens)
    assert sorted((d.text, d.depth, d.role) for d in prompt.in_chat) == [
        ("N", 1, "system"),
        ("R", 0, "system"),
    ]


def test_whole_word_keys_that_come_up_everywhere_but_never_alone_are_bounded() -> None:
    """2,000 entries of short whole-word keys over a long text where they are found
    everywhere, never alone: 49 s of one prompt, built twice a turn. Keys of ASCII word
    characters are looked up among the text's words; others stop after a budget, noted."""
    words = [{"keys": ["a", "ab", "b"], "content": "W", "extensions": {"match_whole_words": True}}]
    prompt = build_prompt(
        _card(_entries(*words * 2_000)), [_user("ab" * 15_000)], user="B", estimate=tokens
    )
    assert prompt.lore.entries == () and prompt.lore.notes == ()
    dashed = [{"keys": ["a-"], "content": "D", "extensions": {"match_whole_words": True}}]
    prompt = build_prompt(
        _card(_entries(*dashed * 2_000)), [_user("xa-" * 10_000)], user="B", estimate=tokens
    )
    assert prompt.lore.entries == ()
    assert prompt.lore.notes == (
        "Lorebook: whole-word keys took too long to look for; the rest skipped.",
    )


def test_a_format_names_a_long_field_or_the_lore_once_however_often_it_is_written() -> None:
    """A format is up to 8,000 characters, set by a channel's admin or a preset: {0} or
    {{personality}} written 600 times each copied the lore's or the card's long text
    600 times into the prompt (hundreds of megabytes, built on the bot's one event
    loop). Each is the text at its first place, as {{original}} is, and nothing after."""
    card = _entries({"keys": ["moon"], "content": "L" * 20_000, "constant": True})
    card["data"]["personality"] = "P" * 20_000
    prompt = build_prompt(
        _card(card),
        [_user("moon?")],
        user="Bob",
        estimate=tokens,
        wi_format="<lore>{0}</lore>" + "{0}" * 2_000,
        personality_format="[{{personality}}]" + "{{PERSONALITY}}" * 500,
        scenario_format="",
    )
    assert len(prompt.system) < 45_000, len(prompt.system)
    assert "<lore>" + "L" * 20_000 + "</lore>" in prompt.system
    assert "[" + "P" * 20_000 + "]" in prompt.system
