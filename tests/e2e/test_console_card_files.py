"""Cards and presets as people download them, imported with `chatbot console` (a path) and
checked in what the console shows and in the request the loopback endpoint records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.hostile_endpoint import HostileEndpoint
from tests.e2e.test_hostile_console import Run, Workspace
from tests.unit.characters.samples import b64, png_with, v2

ASKER = "Ada"  # the console's user: the account name it runs under


def _run(ws: Workspace, endpoint: HostileEndpoint, lines: list[str]) -> Run:
    setup = ["/source custom", f"/proxy set {endpoint.url_v1}", "/model m", "/connect bypass:on"]
    run = ws.run([*setup, *lines, "/help"], LOGNAME=ASKER, USER=ASKER)
    run.assert_survived()
    assert "Traceback" not in run.out + run.err, run.describe()
    return run


def _sent(endpoint: HostileEndpoint) -> list[dict[str, Any]]:
    """The messages of the last chat request."""
    [*_, last] = endpoint.chat_requests()
    messages: list[dict[str, Any]] = json.loads(last.body)["messages"]
    return messages


def test_names_inside_a_random_pick_or_comment_are_replaced_as_sillytavern_does(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """SillyTavern replaces {{user}}, {{char}} and <USER> before it picks a {{random}} or
    drops a {{// comment}}: a card's `{{random::Hi {{user}}::Hey {{user}}}}` greeting
    came out as `{{random::Hi Ada::Hey Ada}}`, braces and all, and a `<USER>` inside one
    reached the model as `<USER>`."""
    card = v2()
    card["data"].update(
        first_mes="{{random::Hi {{user}}!::Hi {{user}}!}} {{// {{char}} waves}}I am {{char}}.",
        alternate_greetings=[],
        description="{{char}} likes {{pick::<USER>::<USER>}} and {{random:{{user}},{{user}}}}.",
    )
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    run = _run(ws, endpoint, [f"/character import {path}", "hello"])
    assert "Seraphina: Hi Ada! I am Seraphina." in run.out, run.describe()
    system = _sent(endpoint)[0]["content"]
    assert "Seraphina likes Ada and Ada." in system, system
    assert "{{" not in system and "<USER>" not in system, system


def test_a_random_list_split_on_commas_is_trimmed_and_a_roll_may_take_a_space(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """`{{random:red, blue}}` gave " blue", its space kept ("a  blue dress"), where
    SillyTavern trims each item of a comma list; `{{roll 20}}`, which SillyTavern rolls
    as `{{roll:20}}`, stayed as written."""
    card = v2()
    card["data"].update(
        description="{{char}} wears a {{random: red , red}} dress and a {{pick:blue,  blue}} "
        "hat, rolls {{roll 1}} and keeps {{random::  spaced  ::  spaced  }}.",
    )
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    _run(ws, endpoint, [f"/character import {path}", "hello"])
    system = _sent(endpoint)[0]["content"]
    expected = "Seraphina wears a red dress and a blue hat, rolls 1 and keeps   spaced  ."
    assert expected in system, system


def test_a_lorebook_card_under_the_json_limit_is_kept(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """A 1.8 MB card (1,500 entries) was refused as "too large to store": the stored
    copy was indented, 2.2 MB, past the 2 MB the README promises a JSON card."""
    card = v2()
    card["data"]["character_book"]["entries"] = [
        {
            "id": i,
            "keys": [f"place{i}x"],
            "secondary_keys": [],
            "comment": f"Place {i}",
            "content": f"Place {i} is a town of the north. " * 28,
            "constant": False,
            "selective": False,
            "insertion_order": 100,
            "enabled": True,
            "position": "after_char",
            "extensions": {"position": 1, "depth": 4, "probability": 100},
        }
        for i in range(1500)
    ]
    path = tmp_path / "world.json"
    path.write_text(json.dumps(card))
    assert 1_700_000 < path.stat().st_size < 2 * 1024 * 1024
    run = _run(ws, endpoint, [f"/character import {path}", "/character show", "Is place1234x far?"])
    assert "Character set for this channel: Seraphina." in run.out, run.describe()
    assert "Lorebook entries: 1500." in run.out, run.describe()
    assert "Place 1234 is a town of the north." in _sent(endpoint)[0]["content"]


def test_macros_in_stop_strings_are_replaced_as_sillytavern_does(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """A stop string `\\n{{user}}:` (what SillyTavern users write, and its macros on by
    default: power-user.js getCustomStoppingStrings) went out as typed, so the model was
    never stopped where it began to speak for the person."""
    preset = tmp_path / "preset.json"
    stop = ["\n{{user}}:", "{{char}}:", "\n\n"]
    preset.write_text(json.dumps({"temperature": 0.7, "stop": stop}))
    card = tmp_path / "card.json"
    card.write_text(json.dumps(v2()))
    lines = [f"/preset import {preset}", "hi", f"/character import {card}", "hi again"]
    _run(ws, endpoint, lines)
    alone, with_card = (json.loads(r.body)["stop"] for r in endpoint.chat_requests())
    assert alone == ["\nAda:", "Assistant:", "\n\n"]
    assert with_card == ["\nAda:", "Seraphina:", "\n\n"]


def test_a_presets_switched_off_card_sections_are_named_as_still_sent(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """SillyTavern's Default preset with Chat Examples, World Info (before), Char
    Personality and Scenario switched off in its prompt order: SillyTavern sends none
    of them, this bot sends them all, and the import said nothing about it."""
    default = tmp_path / "Default.json"
    default.write_text(json.dumps(_default_preset(), indent=4))
    preset = _default_preset()
    for order in preset["prompt_order"]:
        for entry in order["order"]:
            if entry["identifier"] in ("dialogueExamples", "worldInfoBefore", "scenario"):
                entry["enabled"] = False
        order["order"] = [e for e in order["order"] if e["identifier"] != "charPersonality"]
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(preset, indent=4))
    run = _run(ws, endpoint, [f"/preset import {path}", f"/preset import {default}"])
    off, as_is = run.out.split("Preset applied", 2)[1:]
    said = (
        "Sent here all the same (this bot has no switch for them), though the preset's "
        "prompt order switches them off (or leaves them out): World Info (before), Char "
        "Personality, Scenario, Chat Examples."
    )
    assert said in off, run.describe()
    assert "Sent here all the same" not in as_is, run.describe()


# SillyTavern's default prompt order (default/content/presets/openai/Default.json): its
# prompts and markers, enhanceDefinitions off.
_ORDER = (
    "main",
    "worldInfoBefore",
    "personaDescription",
    "charDescription",
    "charPersonality",
    "scenario",
    "enhanceDefinitions",
    "nsfw",
    "worldInfoAfter",
    "dialogueExamples",
    "chatHistory",
    "jailbreak",
)
_PROMPTS = {"main": "Write {{char}}'s next reply.", "nsfw": "", "jailbreak": ""}


def _default_preset() -> dict[str, Any]:
    """Shaped like SillyTavern's Default.json: its prompts, markers and two orders."""
    prompts: list[dict[str, Any]] = [
        {"identifier": i, "name": i, "system_prompt": True, "role": "system", "content": text}
        for i, text in _PROMPTS.items()
    ]
    prompts.append(
        {"identifier": "enhanceDefinitions", "name": "Enhance Definitions", "content": "x"}
    )
    prompts += [
        {"identifier": i, "name": i, "system_prompt": True, "marker": True}
        for i in _ORDER
        if i not in _PROMPTS and i != "enhanceDefinitions"
    ]
    order = [{"identifier": i, "enabled": i != "enhanceDefinitions"} for i in _ORDER]
    return {
        "temperature": 1,
        "openai_max_context": 4095,
        "prompts": prompts,
        "prompt_order": [
            {"character_id": 100000, "order": order},
            {"character_id": 100001, "order": json.loads(json.dumps(order))},
        ],
    }


def test_a_card_and_a_preset_saved_as_utf16_are_read(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """A card or preset edited in Windows Notepad and saved as "Unicode" (UTF-16 with its
    byte order mark) was refused as "not UTF-8 text"; one without the mark as "not valid
    JSON (Expecting property name…)", which it is."""
    card, bare = tmp_path / "card.json", tmp_path / "bare.json"
    card.write_bytes(json.dumps(v2(), ensure_ascii=False).encode("utf-16"))
    bare.write_bytes(json.dumps(v2(), ensure_ascii=False).encode("utf-16-le"))
    preset = tmp_path / "preset.json"
    preset.write_bytes(json.dumps({"temperature": 0.8}).encode("utf-16"))
    lines = [f"/character import {card}", f"/character import {bare}", f"/preset import {preset}"]
    run = _run(ws, endpoint, lines)
    assert run.out.count("Character set for this channel: Seraphina.") == 2, run.describe()
    assert "Preset applied to this channel: temperature=0.8." in run.out, run.describe()


def test_a_pygmalion_json_card_is_read_as_sillytavern_reads_it(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """The JSON of Pygmalion's Gradio UI and of Character.AI exporters (`char_name`,
    `char_persona`, `char_greeting`, `world_scenario`, `example_dialogue`), which
    SillyTavern imports (src/endpoints/characters.js importFromJson), was refused as
    "not a character card (no `spec` and no `name`)"."""
    card = {
        "char_name": "Marlowe",
        "char_persona": "{{char}} is a tired private eye.",
        "char_greeting": "*{{char}} looks up.* What do you want, {{user}}?",
        "world_scenario": "A rainy night in 1947.",
        "example_dialogue": "{{user}}: Busy?\n{{char}}: Always.",
    }
    path = tmp_path / "marlowe.json"
    path.write_text(json.dumps(card))
    run = _run(ws, endpoint, [f"/character import {path}", "hello"])
    assert "Character set for this channel: Marlowe." in run.out, run.describe()
    assert "Marlowe: *Marlowe looks up.* What do you want, Ada?" in run.out, run.describe()
    sent = _sent(endpoint)
    system = sent[0]["content"]
    assert "Marlowe is a tired private eye." in system, system
    assert "[Circumstances and context of the dialogue: A rainy night in 1947.]" in system
    assert {"role": "system", "content": "Marlowe: Always."} in sent, sent


def _order_preset(path: Path, jailbreak_on: bool) -> Path:
    """A preset of current SillyTavern shape: both global orders, the post-history prompt
    (`jailbreak`) empty and on or off in them."""
    order = [
        {"identifier": "main", "enabled": True},
        {"identifier": "chatHistory", "enabled": True},
        {"identifier": "jailbreak", "enabled": jailbreak_on},
    ]
    preset = {
        "temperature": 0.7,
        "prompts": [
            {"identifier": "main", "content": "Write."},
            {"identifier": "jailbreak", "content": ""},
        ],
        "prompt_order": [
            {"character_id": 100000, "order": order},
            {"character_id": 100001, "order": order},
        ],
        "extensions": {"regex_scripts": []},
    }
    path.write_text(json.dumps(preset))
    return path


def test_a_preset_switching_post_history_off_drops_the_cards_as_sillytavern_does(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """A preset whose post-history prompt is switched off in its order still had the
    card's `post_history_instructions` sent after the chat; SillyTavern replaces only a
    post-history prompt its order sends (openai.js preparePromptsForChatCompletion), so
    it sends none. One left on but empty is still replaced by the card's."""
    card = tmp_path / "card.json"
    card.write_text(json.dumps(v2()))
    off = _order_preset(tmp_path / "off.json", jailbreak_on=False)
    on = _order_preset(tmp_path / "on.json", jailbreak_on=True)
    run = _run(
        ws,
        endpoint,
        [
            f"/character import {card}",
            f"/preset import {off}",
            "/prompts post_history",
            "hello",
            f"/preset import {on}",
            "hello again",
            f"/preset import {off}",
            "/prompts post_history Stay brief.",
            "and again",
        ],
    )
    assert "a character's are not sent either" in run.out, run.describe()
    assert "Post-history instructions: off (a character's post-history instructions too)" in (
        run.out
    ), run.describe()
    switched_off, left_on, typed = (
        json.loads(r.body)["messages"][-1] for r in endpoint.chat_requests()
    )
    assert switched_off == {"role": "user", "content": "hello"}, switched_off
    instructions = {"role": "system", "content": "Reply as Seraphina in under 100 words."}
    assert left_on == typed == instructions


def test_a_preset_with_more_than_four_stop_strings_sends_the_first_four(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """A preset with six custom stopping strings was refused ("stop takes up to 4"),
    though SillyTavern keeps them all and sends OpenAI and custom endpoints the first
    4 (openai.js openai_max_stop_strings), Claude every one."""
    preset = tmp_path / "preset.json"
    stop = ["\n{{user}}:", "\n{{char}}:", "###", "<END>", "</s>", "[INST]"]
    preset.write_text(json.dumps({"temperature": 0.7, "custom_stopping_strings": json.dumps(stop)}))
    run = _run(ws, endpoint, [f"/preset import {preset}", "hi", "/params stop a, b, c, d, e"])
    assert "Not applied" not in run.out, run.describe()
    [request] = endpoint.chat_requests()
    assert json.loads(request.body)["stop"] == ["\nAda:", "\nAssistant:", "###", "<END>"]
    # The import says which sources get only 4 of them, as /params does: one wording.
    cut = "openai, mistral and custom are sent the first 4 (claude all of them), as SillyTavern"
    assert f"Of the 6 stop strings, {cut}" in run.out, run.describe()
    assert f"Of the 5 stop strings, {cut}" in run.out, run.describe()


def test_a_stop_string_its_macros_empty_is_not_sent_nor_counted_in_the_four(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """Guard: SillyTavern drops empty stop strings before it replaces their macros
    (power-user.js getCustomStoppingStrings), so `{{noop}}` goes out as "" and takes one
    of OpenAI's 4. Here one emptied by its macros is dropped before the first 4 are
    taken: an empty stop string would end every answer at once."""
    preset = tmp_path / "preset.json"
    stop = ["{{noop}}", "{{// note}}", "{{trim}}", "\n{{user}}:", "A", "B", "C", "D"]
    preset.write_text(json.dumps({"temperature": 0.7, "custom_stopping_strings": json.dumps(stop)}))
    _run(ws, endpoint, [f"/preset import {preset}", "hi"])
    [request] = endpoint.chat_requests()
    assert json.loads(request.body)["stop"] == ["\nAda:", "A", "B", "C"]


def test_a_preset_with_more_stop_strings_than_kept_here_imports_what_fits(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """A preset with 20 custom stopping strings was refused whole ("has more than 16
    strings"), though SillyTavern keeps any number (power-user.js
    getCustomStoppingStrings; openai.js sends OpenAI the first 4, Claude all). Now the
    first 16 that fit (at most 100 characters each) are kept, the rest named as left out,
    and the preset's other settings are applied."""
    preset = tmp_path / "preset.json"
    stop = ["\n{{user}}:", "x" * 150, *(f"<stop{i}>" for i in range(18))]
    preset.write_text(json.dumps({"temperature": 0.7, "custom_stopping_strings": json.dumps(stop)}))
    run = _run(ws, endpoint, [f"/preset import {preset}", "/params stop", "hi"])
    assert "Preset applied to this channel: temperature=0.7, stop=" in run.out, run.describe()
    said = (
        "Kept in part: stop, 16 of its 20 strings (this bot takes the first 16 of at most "
        "100 characters each)."
    )
    assert said in run.out, run.describe()
    assert "Not applied" not in run.out, run.describe()
    assert "<stop13>, <stop14>  (" in run.out and "<stop15>" not in run.out, run.describe()
    [request] = endpoint.chat_requests()
    assert json.loads(request.body)["stop"] == ["\nAda:", "<stop0>", "<stop1>", "<stop2>"]


def test_a_preset_whose_stop_strings_hold_a_key_is_refused_them(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """Probe: a preset's prompts holding a key or this channel's key were refused, its
    stop strings were not (a list, not a text): an OpenAI key and the channel's own
    custom key among them were stored in the clear, shown whole by /params stop and
    /settings, and sent with every request. They are refused as a typed one is."""
    key = "sk-proj-" + "A1b2C3d4E5f6G7h8" * 3
    own = "my-own-custom-key-123456"
    for i, stop in enumerate((["\n{{user}}:", key], ["\n{{user}}:", own])):
        preset = tmp_path / f"preset{i}.json"
        preset.write_text(
            json.dumps({"temperature": 0.7, "custom_stopping_strings": json.dumps(stop)})
        )
    run = _run(
        ws,
        endpoint,
        [
            f"/key set custom {own}",
            f"/preset import {tmp_path / 'preset0.json'}",
            f"/preset import {tmp_path / 'preset1.json'}",
            "/params stop",
            "/settings",
            "hi",
        ],
    )
    said = "stop holds what looks like a key or this channel's password"
    assert run.out.count(said) == 2, run.describe()
    assert key not in run.out and own not in run.out, run.describe()
    [request] = endpoint.chat_requests()
    body = json.loads(request.body)
    raw = request.body.decode()
    assert "stop" not in body and key not in raw and own not in raw, body


def test_a_card_and_a_preset_saved_as_windows_1252_are_read(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """A card or preset an old Windows editor saved (Windows-1252: `Café`, curly quotes,
    `€`) was refused as "not UTF-8 text (bad byte at offset …)"; it is read as an
    attached text file is, by the one codec rule (bot.types.encoding)."""
    card = v2()
    card["data"]["description"] = (
        "{{char}} runs a caf\u00e9 and says \u201chello\u201d for 5 \u20ac."
    )
    card_path = tmp_path / "card.json"
    card_path.write_bytes(json.dumps(card, ensure_ascii=False).encode("cp1252"))
    preset = {
        "temperature": 0.7,
        "prompts": [{"identifier": "main", "content": "Na\u00efve \u2019tone\u2019."}],
    }
    preset_path = tmp_path / "preset.json"
    preset_path.write_bytes(json.dumps(preset, ensure_ascii=False).encode("cp1252"))
    run = _run(
        ws, endpoint, [f"/character import {card_path}", f"/preset import {preset_path}", "hi"]
    )
    assert "Character set for this channel: Seraphina." in run.out, run.describe()
    assert "system_prompt=Na\u00efve \u2019tone\u2019." in run.out, run.describe()
    system = _sent(endpoint)[0]["content"]
    assert "Seraphina runs a caf\u00e9 and says \u201chello\u201d for 5 \u20ac." in system, system
    assert system.startswith("Na\u00efve \u2019tone\u2019."), system


def test_a_card_given_to_the_preset_import_is_named_a_card(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """SillyTavern ships its cards as PNG (default_Seraphina.png). Given to `/preset
    import`, such a card was refused as "The preset is not UTF-8 text (bad byte at offset
    0)", and a V1 card's JSON as "not a Chat Completion preset", where `/character import`
    of a preset names it a preset and the command to use."""
    png, flat = tmp_path / "seraphina.png", tmp_path / "v1.json"
    png.write_bytes(png_with({"chara": b64(v2())}))
    flat.write_text(json.dumps({k: v2()["data"][k] for k in ("name", "description", "first_mes")}))
    run = _run(ws, endpoint, [f"/preset import {png}", f"/preset import {flat}"])
    said = "This is a character card, not a preset; use the character import."
    assert run.out.count(said) == 2, run.describe()
    assert "UTF-8" not in run.out and "Preset applied" not in run.out, run.describe()
