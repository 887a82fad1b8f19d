"""Lorebooks as SillyTavern users write them, imported with `chatbot console` and checked
in the request the loopback endpoint records (public/scripts/world-info.js)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.hostile_endpoint import HostileEndpoint
from tests.e2e.test_console_card_files import _run, _sent
from tests.e2e.test_hostile_console import Workspace
from tests.unit.characters.samples import v2


def _entry(keys: list[str], content: str, **extensions: Any) -> dict[str, Any]:
    return {
        "keys": keys,
        "secondary_keys": [],
        "content": content,
        "constant": False,
        "selective": True,
        "insertion_order": 100,
        "enabled": True,
        "position": "after_char",
        "use_regex": True,
        "extensions": {"position": 1, "selectiveLogic": 0, "display_index": 0, **extensions},
    }


def _card(tmp_path: Path, entries: list[dict[str, Any]], **book: Any) -> Path:
    card = v2()
    card["data"]["first_mes"] = "You're awake."
    card["data"]["alternate_greetings"] = []
    card["data"]["character_book"].update(entries=entries, **book)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    return path


def test_a_key_that_is_a_speakers_name_finds_their_messages(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """SillyTavern scans the chat as `Name: message` ("Include Names", on by default), so
    an entry keyed on the character's name, or on `{{user}}`, comes in whenever they
    spoke within the scan depth. Here only the messages' text was scanned: a card's
    entry about its character never came in unless someone wrote the name."""
    entries = [
        _entry(["Seraphina"], "Seraphina's sword is the Sunblade."),
        _entry(["{{user}}"], "{{user}} is a lost traveller."),
        _entry(["Nobody"], "Never sent."),
    ]
    path = _card(tmp_path, entries)
    _run(ws, endpoint, [f"/character import {path}", "Where am I?"])
    system = _sent(endpoint)[0]["content"]
    assert "Seraphina's sword is the Sunblade." in system, system
    assert "Ada is a lost traveller." in system, system
    assert "Never sent." not in system


def test_a_recursive_pass_reads_an_entrys_text_with_its_macros_replaced(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """SillyTavern replaces an activated entry's macros before its text joins the
    recursion buffer: `{{char}}'s sword` there is `Seraphina's sword`, which another
    entry's key finds. The raw `{{char}}'s sword` was scanned here, so the second entry
    never came in."""
    entries = [
        _entry(["forest"], "{{char}}'s sword hangs by the door."),
        _entry(["Seraphina's sword"], "The Sunblade burns the undead."),
    ]
    path = _card(tmp_path, entries, recursive_scanning=True)
    _run(ws, endpoint, [f"/character import {path}", "I walk into the forest."])
    system = _sent(endpoint)[0]["content"]
    assert "Seraphina's sword hangs by the door." in system, system
    assert "The Sunblade burns the undead." in system, system


def test_an_entry_whose_selective_logic_sillytavern_does_not_know_never_comes_in(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """SillyTavern compares an entry's `selectiveLogic` (`?? 0`) with `===` to each of
    its four logics (world-info.js checkWorldInfo): 4, "1" or true is none of them, so
    the entry never comes in by its keys. Here anything unknown was read as AND ANY (and
    true as NOT ALL), so such entries came in whenever a secondary key matched."""

    def selective(content: str, logic: object) -> dict[str, Any]:
        entry = _entry(["forest"], content, selectiveLogic=logic)
        entry["secondary_keys"] = ["night"]
        return entry

    entries = [
        selective("Known logic, sent.", 0),
        selective("Logic four, never sent.", 4),
        selective("Logic as text, never sent.", "0"),
        selective("Logic true, never sent.", True),
        selective("No logic, sent as AND ANY.", None),
    ]
    path = _card(tmp_path, entries)
    run = _run(ws, endpoint, [f"/character import {path}", "The forest at night."])
    system = _sent(endpoint)[0]["content"]
    assert "Known logic, sent." in system and "No logic, sent as AND ANY." in system, system
    assert "never sent" not in system, system
    said = (
        "Never brought in by their keys, as in SillyTavern: 3 lorebook entries whose "
        "`selectiveLogic` is none of 0 (AND ANY), 1 (NOT ALL), 2 (NOT ANY) and 3 (AND ALL)."
    )
    assert said in run.out, run.describe()


def test_an_entry_of_scan_depth_0_scans_nothing_not_even_what_recursion_found(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """SillyTavern's WorldInfoBuffer.get returns no text at all for an entry whose
    `scan_depth` is 0 (`depth <= startDepth`): no message, and not the recursion buffer
    either, so only a constant (or sticky) such entry comes in. Here it still scanned
    what other entries brought in, and came in by their text."""
    entries = [
        _entry(["forest"], "The Sunblade hangs by the door."),
        _entry(["Sunblade"], "Depth 0 by recursion, never sent.", scan_depth=0),
        _entry(["forest"], "Depth 0 by the message, never sent.", scan_depth=0),
        _entry(["Sunblade"], "Default depth by recursion, sent."),
    ]
    path = _card(tmp_path, entries, recursive_scanning=True)
    _run(ws, endpoint, [f"/character import {path}", "I walk into the forest."])
    system = _sent(endpoint)[0]["content"]
    assert "The Sunblade hangs by the door." in system, system
    assert "Default depth by recursion, sent." in system, system
    assert "never sent" not in system, system
