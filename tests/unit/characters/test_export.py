"""Export to V3 JSON and to a PNG with `chara` and `ccv3`, and back again unchanged."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace

import pytest
from PIL import Image

from bot.characters import CardError, card_from_json, export_json, export_png, read_card
from bot.characters.png import read_chunks, text_of
from tests.unit.characters.samples import b64, png_with, v2, v3


def _texts(png: bytes) -> dict[str, dict[str, object]]:
    found = {}
    for chunk in read_chunks(png):
        text = text_of(chunk, 10**7)
        if text and text[0] in ("chara", "ccv3"):
            found[text[0]] = json.loads(base64.b64decode(text[1]))
    return found


@pytest.mark.parametrize("source", ["v2-png", "v3-png", "v2-json", "v3-json", "v1-json"])
def test_import_export_import_is_the_same_card(source: str) -> None:
    flat = {"name": "Old", "description": "d", "first_mes": "hi", "tags": "a, b"}
    data = {
        "v2-png": png_with({"chara": b64(v2())}),
        "v3-png": png_with({"ccv3": b64(v3()), "chara": b64(v2())}),
        "v2-json": json.dumps(v2()).encode(),
        "v3-json": json.dumps(v3()).encode(),
        "v1-json": json.dumps(flat).encode(),
    }[source]
    card = read_card(data)
    again = read_card(export_png(card))
    assert again.spec == "chara_card_v3"
    assert read_card(export_png(again)) == again  # and again: nothing drifts
    assert again == card  # a JSON card's placeholder image comes back as no image
    assert read_card(export_json(card)) == replace(card, image=None)


def test_the_png_has_v2_and_v3_chunks_before_iend_on_the_same_image() -> None:
    original = png_with({"chara": b64(v2()), "Software": "x"}, size=(40, 30))
    card = read_card(original)
    out = export_png(card)
    types = [c.type for c in read_chunks(out)]
    assert types[0] == b"IHDR" and types[-1] == b"IEND"
    texts = _texts(out)
    assert texts["chara"]["spec"] == "chara_card_v2" and texts["chara"]["spec_version"] == "2.0"
    assert texts["ccv3"]["spec"] == "chara_card_v3" and texts["ccv3"]["spec_version"] == "3.0"
    assert texts["chara"]["data"] == texts["ccv3"]["data"]  # as SillyTavern writes them
    with Image.open(io.BytesIO(out)) as img:
        img.load()
        assert img.size == (40, 30)
        assert set(img.text) == {"chara", "ccv3"}  # other text is not stored or written
        # another reader (Pillow's) finds both cards too
        assert json.loads(base64.b64decode(img.text["ccv3"]))["data"]["name"] == "Seraphina"
        assert json.loads(base64.b64decode(img.text["chara"]))["spec"] == "chara_card_v2"


def test_the_v3_json_has_every_field_sillytavern_reads() -> None:
    data = json.loads(export_json(read_card(json.dumps(v2()).encode())))
    assert data["spec"] == "chara_card_v3" and data["spec_version"] == "3.0"
    body = data["data"]
    for key in (
        "name",
        "description",
        "personality",
        "scenario",
        "first_mes",
        "mes_example",
        "creator_notes",
        "system_prompt",
        "post_history_instructions",
        "alternate_greetings",
        "group_only_greetings",
        "tags",
        "creator",
        "character_version",
        "extensions",
    ):
        assert key in body
    assert body["extensions"]["depth_prompt"]["depth"] == 4
    entry = body["character_book"]["entries"][0]
    assert entry["insertion_order"] == 100 and isinstance(entry["insertion_order"], int)
    assert entry["extensions"]["selectiveLogic"] == 0 and entry["use_regex"] is False


def test_a_card_without_an_image_gets_a_plain_placeholder() -> None:
    card = read_card(json.dumps(v3()).encode())
    out = export_png(card)
    with Image.open(io.BytesIO(out)) as img:
        img.load()
        assert img.size == (400, 600)
    again = read_card(out)
    assert again.name == card.name
    assert again.image is None  # the placeholder is not taken as the card's own image


def test_an_image_that_only_looks_like_the_placeholder_is_kept() -> None:
    same = io.BytesIO()  # the placeholder's size and colour, written by Pillow
    Image.new("RGB", (400, 600), (0x5A, 0x5F, 0x6B)).save(same, format="PNG")
    card = read_card(json.dumps(v3()).encode())
    assert read_card(export_png(replace(card, image=same.getvalue()))).image is not None


def test_a_jpeg_avatar_is_converted_to_png() -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(jpeg, format="JPEG")
    card = card_from_json(json.dumps(v3()), image=jpeg.getvalue())
    assert read_card(export_png(card)).nickname == "Aurelia"


def test_an_unreadable_avatar_is_a_card_error() -> None:
    card = card_from_json(json.dumps(v3()), image=b"not an image")
    with pytest.raises(CardError, match="image cannot be read"):
        export_png(card)


def test_unicode_survives_both_formats() -> None:
    card = v3()
    card["data"]["description"] = "Ära — 東京 🚀 «ok»"
    read = read_card(json.dumps(card).encode())
    assert read_card(export_png(read)).description == "Ära — 東京 🚀 «ok»"
    assert read_card(export_json(read)).description == "Ära — 東京 🚀 «ok»"
