"""`chatbot console`: a card and a preset imported from a path, the card exported next to
where the console runs, and a path that is not a file refused."""

from __future__ import annotations

import json
from pathlib import Path

from bot.characters import read_card
from bot.store import generate_key
from tests.e2e.test_console import console
from tests.integration.test_characters import CARD, PRESET


def test_console_imports_and_exports_by_path(tmp_path: Path) -> None:
    card = tmp_path / "aurelia.json"
    card.write_text(json.dumps(CARD))
    preset = tmp_path / "preset.json"
    preset.write_text(json.dumps(PRESET))
    done = console(
        tmp_path,
        [
            f"/character import {tmp_path / 'missing.png'}",
            f"/character import {card}",
            "/character show",
            "/character export",
            f'/preset import "{preset}"',
            "/settings",
        ],
        BOT_SECRET_KEYS=generate_key(),
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "Cannot read" in out and "missing.png" in out
    assert "Character set for this channel: Aurelia." in out
    assert "Aurelia: Welcome aboard," in out  # the greeting, after the reply
    assert "Lorebook entries: 2" in out
    exported = tmp_path / "Captain_Aurelia_Voss.png"
    assert f"Saved {exported}" in out
    assert read_card(exported.read_bytes()).name == "Captain Aurelia Voss"
    assert "Preset applied to this channel: temperature=0.65" in out
    assert "Traceback" not in done.stderr
