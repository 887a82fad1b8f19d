"""settings_kind: which files a message of files alone holds for an import, not the model."""

from __future__ import annotations

import base64
import io
import json

from PIL import Image

from bot.characters import export_preset, settings_kind
from tests.integration.test_characters import CARD, ST_DEFAULT
from tests.unit.characters.samples import png_with


def _plain_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "PNG")
    return out.getvalue()


def test_cards_and_presets_are_told_and_other_files_are_not() -> None:
    card = json.dumps(CARD).encode()
    assert settings_kind(png_with({"chara": base64.b64encode(card).decode()})) == "character"
    assert settings_kind(png_with({"CCV3": "not even base64"})) == "character"  # import says why
    assert settings_kind(card) == "character"
    v1 = {"name": "Aurelia", "description": "A captain.", "first_mes": "Hi."}
    assert settings_kind(json.dumps(v1).encode("utf-16")) == "character"
    assert settings_kind(json.dumps({"char_name": "A", "char_greeting": "Hi"}).encode()) == (
        "character"
    )
    assert settings_kind(json.dumps(ST_DEFAULT).encode()) == "preset"
    assert settings_kind(export_preset({"temperature": 0.5})) == "preset"
    # A picture, a package.json, weather data, broken JSON: questions, as before.
    assert settings_kind(_plain_png()) is None
    assert settings_kind(png_with({"Comment": "chara"})) is None
    assert settings_kind(json.dumps({"name": "left-pad", "version": "1.0.0"}).encode()) is None
    assert settings_kind(json.dumps({"temperature": 21.5, "city": "Oslo"}).encode()) is None
    assert settings_kind(b'{"spec": "chara_card_v2", ') is None
    assert settings_kind(b"[1, 2, 3]") is None
