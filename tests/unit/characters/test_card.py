"""Reading cards: V2/V3/V1 from PNG and JSON, and every refusal a clear CardError."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest

from bot.characters import MAX_JSON_BYTES, MAX_PNG_BYTES, CardError, Problem, read_card
from bot.characters.png import read_chunks
from tests.unit.characters.samples import b64, chunk, insert_before_iend, png_with, v2, v3


def test_a_sillytavern_v2_png_is_read_with_its_lorebook_and_avatar() -> None:
    data = png_with({"chara": b64(v2())})
    card = read_card(data)
    assert card.spec == "chara_card_v2"
    assert card.name == "Seraphina"
    assert card.description == "{{char}} is a guardian of the forest."
    assert card.alternate_greetings == ("Hello, {{user}}.", "*{{char}} smiles.*")
    assert card.tags == ("fantasy", "guardian")
    assert card.creator == "tester" and card.character_version == "1.2"
    assert json.loads(card.extensions)["world"] == "Glade"
    book = card.character_book
    assert book is not None and book.scan_depth == 2 and book.token_budget == 500
    entry = book.entries[0]
    assert entry.keys == ("glade", "clearing") and entry.id == 0 and entry.selective
    assert entry.position == "before_char" and entry.insertion_order == 100
    assert entry.extension_values["selectiveLogic"] == 0
    # the avatar is the image without the card's chunk, still a PNG Pillow can read
    assert card.image is not None
    assert [c.type for c in read_chunks(card.image)] == [b"IHDR", b"IDAT", b"IEND"]


def test_ccv3_is_preferred_over_chara() -> None:
    data = png_with({"chara": b64(v2()), "ccv3": b64(v3())})
    card = read_card(data)
    assert card.spec == "chara_card_v3"
    assert card.name == "Captain Aurelia Voss" and card.nickname == "Aurelia"
    assert card.display_name == "Aurelia"
    assert card.group_only_greetings == ("Crew, to stations!",)
    extra = json.loads(card.extra)
    assert extra["assets"][0]["uri"] == "ccdefault:" and extra["creation_date"] == 1717000000
    assert card.character_book is not None and card.character_book.entries[0].use_regex


def test_keywords_are_matched_case_insensitively_like_sillytavern() -> None:
    assert read_card(png_with({"CCV3": b64(v3())})).name == "Captain Aurelia Voss"


def test_a_broken_ccv3_falls_back_to_chara() -> None:
    data = png_with({"ccv3": "!!!not base64!!!", "chara": b64(v2())})
    assert read_card(data).name == "Seraphina"


def test_ztxt_and_itxt_chunks_are_read() -> None:
    base = png_with({})
    text = b64(v3()).encode()
    ztxt = chunk(b"zTXt", b"ccv3\0\0" + zlib.compress(text))
    assert read_card(insert_before_iend(base, ztxt)).nickname == "Aurelia"
    itxt = chunk(b"iTXt", b"chara\0\1\0en\0\0" + zlib.compress(b64(v2()).encode()))
    assert read_card(insert_before_iend(base, itxt)).name == "Seraphina"
    plain_itxt = chunk(b"iTXt", b"chara\0\0\0\0\0" + b64(v2()).encode())
    assert read_card(insert_before_iend(base, plain_itxt)).name == "Seraphina"


def test_json_cards_v2_v3_and_a_bom() -> None:
    assert read_card(json.dumps(v2()).encode()).name == "Seraphina"
    assert read_card(b"\xef\xbb\xbf" + json.dumps(v3()).encode()).nickname == "Aurelia"
    assert read_card(json.dumps(v3()).encode()).image is None


def test_base64_with_line_breaks_and_no_padding_is_read() -> None:
    raw = b64(v2()).rstrip("=")
    wrapped = "\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))
    assert read_card(png_with({"chara": wrapped})).name == "Seraphina"


def test_a_v1_card_is_upgraded() -> None:
    flat = {
        "name": "Old Bot",
        "description": "d",
        "personality": "p",
        "scenario": "s",
        "first_mes": "hi",
        "mes_example": "",
        "creatorcomment": "notes",
        "tags": "a, b",
        "talkativeness": 0.5,
        "fav": True,
    }
    card = read_card(json.dumps(flat).encode())
    assert card.spec == "v1"
    assert (card.name, card.first_mes, card.creator_notes) == ("Old Bot", "hi", "notes")
    assert card.tags == ("a", "b")
    assert card.extra == "{}"
    # Kept where SillyTavern's own upgrade keeps them (cards probe: they were dropped).
    assert json.loads(card.extensions) == {"talkativeness": 0.5, "fav": True}


def test_a_preset_given_as_a_card_is_named_for_what_it_is() -> None:
    """Cards probe: it was "JSON but not a character card (no `spec` and no `name`)"."""
    preset = {"temperature": 0.7, "prompts": [{"identifier": "main", "content": "x"}]}
    with pytest.raises(CardError) as err:
        read_card(json.dumps(preset).encode())
    assert str(err.value) == (
        "This is a Chat Completion preset, not a character card; use the preset import."
    )


def test_a_world_info_file_given_as_a_card_is_named_for_what_it_is() -> None:
    """Features probe: SillyTavern's own World Info file (default/content/Eldoria.json,
    entries by uid) was "JSON but not a character card (no `spec` and no `name`)", with
    no word of what it is or what to send instead."""
    world_info = {
        "entries": {"0": {"uid": 0, "key": ["glade"], "content": "A glade.", "position": 0}}
    }
    for lorebook in (world_info, {"name": "Glade", "entries": []}):
        with pytest.raises(CardError) as err:
            read_card(json.dumps(lorebook).encode())
        assert str(err.value) == (
            "This is a lorebook (a SillyTavern World Info file), not a character card, and a "
            "lorebook on its own cannot be imported here: import a card, which carries its "
            "own lorebook."
        )


def test_a_v2_card_without_a_data_name_uses_the_v1_copy() -> None:
    card = v2()
    del card["data"]["name"]
    assert read_card(json.dumps(card).encode()).name == "Seraphina"


def test_fields_a_v2_or_v3_data_lacks_are_the_v1_copys_as_in_sillytavern() -> None:
    """A card whose `data` lacks a field SillyTavern reads from the top level: its
    readFromV2 leaves the V1 copy there, and its prompt uses it. They were empty here."""
    for card in (v2(), v3()):
        for key in ("description", "personality", "scenario", "first_mes", "mes_example"):
            card[key] = f"top {key}"
            del card["data"][key]
        card["tags"] = ["old"]
        card["data"].pop("tags", None)
        card["data"]["scenario"] = None  # null in `data` is there: no text, as in ST
        card["data"]["personality"] = ""  # so is an empty one
        read = read_card(json.dumps(card).encode())
        assert read.description == "top description"
        assert (read.first_mes, read.mes_example) == ("top first_mes", "top mes_example")
        assert (read.scenario, read.personality, read.tags) == ("", "", ("old",))


def test_a_version_or_creator_given_as_a_number_is_read_as_its_text() -> None:
    """Conformance probe: the V2 spec types `character_version` as a number and
    SillyTavern imports such a card; here the whole card was refused ("must be text")."""
    read = read_card(_with(character_version=2, creator=7))
    assert (read.character_version, read.creator) == ("2", "7")
    assert read_card(_with(character_version=1.5)).character_version == "1.5"
    assert read_card(_with(character_version=2.0)).character_version == "2"  # String(2.0)
    assert _refused(_with(character_version=True)).problem is Problem.BAD_FIELD
    assert _refused(_with(creator=["me"])).problem is Problem.BAD_FIELD


def test_newer_v3_minor_versions_are_accepted() -> None:
    card = v3()
    card["spec_version"] = "3.1"
    assert read_card(json.dumps(card).encode()).name == "Captain Aurelia Voss"


def test_missing_and_null_fields_are_empty_and_text_is_cleaned() -> None:
    card: dict[str, object] = {"spec": "chara_card_v2", "spec_version": "2.0"}  # no V1 copies
    card["data"] = {
        "name": "  Nul\x00l  ",
        "description": None,
        "first_mes": "a\r\nb\x07",
        "character_book": None,
    }
    read = read_card(json.dumps(card).encode())
    assert read.name == "Null"
    assert read.description == "" and read.first_mes == "a\nb"
    assert read.character_book is None and read.tags == ()


def test_unknown_fields_are_kept_and_made_storable() -> None:
    card = v3()
    card["data"]["x_app"] = {"k": "v\x00", "deep": [1, {"s": "\ud800"}]}
    extra = json.loads(read_card(json.dumps(card).encode()).extra)
    assert extra["x_app"] == {"k": "v", "deep": [1, {"s": "\ufffd"}]}


def _refused(data: bytes) -> CardError:
    with pytest.raises(CardError) as caught:
        read_card(data)
    message = str(caught.value)
    assert "\n" not in message and message.endswith((".", ")"))
    return caught.value


def test_a_v2_card_from_before_spec_version_opens() -> None:
    """Cards made before the V2 spec's May 8 revision have no `spec_version`; SillyTavern
    opens them, and here they were refused ("must have spec_version 2.0, not nothing")."""
    card = read_card(
        _json({"spec": "chara_card_v2", "data": {"name": "Old", "first_mes": "Hello."}})
    )
    assert (card.name, card.first_mes) == ("Old", "Hello.")


def _json(card: object) -> bytes:
    return json.dumps(card).encode()


def _with(**changes: object) -> bytes:
    card = v2()
    card["data"].update(changes)
    return _json(card)


def _with_entry(**changes: object) -> bytes:
    card = v2()
    card["data"]["character_book"]["entries"][0].update(changes)
    return _json(card)


@pytest.mark.parametrize(
    ("data", "problem", "says"),
    [
        (b"", Problem.NOT_A_CARD, "empty"),
        (b"hello there", Problem.BAD_JSON, "not valid JSON"),
        (b"\x00\x01\x02garbage", Problem.BAD_JSON, "not valid JSON"),
        # UTF-8 with a stray byte (Windows-1252 alone is read: bot.types.encoding).
        (b'{"name": "\xc3\xa9\xe9"}', Problem.BAD_JSON, "not UTF-8 text (bad byte at offset 12)"),
        (b"[1, 2]", Problem.NOT_A_CARD, "not a character card"),
        # A CHARX card (a zip) said "not UTF-8 text" or "not a character card".
        (b"PK\x03\x04\x14\x00{card.json", Problem.NOT_A_CARD, "a zip file (a CHARX card?)"),
        (b'{"foo": 1}', Problem.NOT_A_CARD, "not a character card"),
        (b'{"spec": "lorebook_v3", "data": {}}', Problem.WRONG_VERSION, "lorebook_v3"),
        (b'{"spec": "chara_card_v4", "data": {}}', Problem.WRONG_VERSION, "chara_card_v4"),
        (
            b'{"spec": "chara_card_v2", "spec_version": "1.0", "data": {"name": "x"}}',
            Problem.WRONG_VERSION,
            "2.0",
        ),
        (
            b'{"spec": "chara_card_v3", "spec_version": "two", "data": {"name": "x"}}',
            Problem.WRONG_VERSION,
            "3.x",
        ),
        (
            b'{"spec": "chara_card_v3", "spec_version": "4.0", "data": {"name": "x"}}',
            Problem.WRONG_VERSION,
            "3.x",
        ),
        (b'{"spec": "chara_card_v3", "spec_version": "3.0"}', Problem.BAD_FIELD, "`data`"),
        (b"[" * 100_000 + b"]" * 100_000, Problem.BAD_JSON, "nested too deeply"),
        (b'{"a":' * 33 + b"1" + b"}" * 33, Problem.BAD_JSON, "nested too deeply"),
        (b'"' + b'\\"' * 500_000, Problem.BAD_JSON, "Unterminated string"),
        (b'{"spec": "chara_card_v3", "spec_version": NaN}', Problem.BAD_JSON, "NaN"),
        (b'{"name": "x", "n": ' + b"9" * 5000 + b"}", Problem.BAD_JSON, "5,000 digits long"),
        (b'{"name": "x", "n": 1e999}', Problem.BAD_JSON, "a number out of range (1e999)"),
        # One that would silently be 0, as /params refuses it too.
        (b'{"name": "x", "n": 1e-400}', Problem.BAD_JSON, "a number out of range (1e-400)"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", Problem.NOT_A_CARD, "neither a PNG"),
        (b" " * (MAX_JSON_BYTES + 1), Problem.TOO_LARGE, "at most"),
        (
            _json({"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": "  "}}),
            Problem.BAD_FIELD,
            "no `name`",
        ),
        (_with(name=["Seraphina"]), Problem.BAD_FIELD, "`name` must be text"),
        (_with(description=5), Problem.BAD_FIELD, "`description` must be text"),
        (_with(alternate_greetings=[1]), Problem.BAD_FIELD, "`alternate_greetings`"),
        (_with(tags={"a": 1}), Problem.BAD_FIELD, "`tags` must be a list"),
        (_with(extensions=[]), Problem.BAD_FIELD, "`extensions` must be an object"),
        (_with(character_book=[]), Problem.BAD_FIELD, "`character_book` must be an object"),
        (_with(first_mes="x" * 100_001), Problem.TOO_LARGE, "`first_mes`"),
        (  # the Character's Note goes into every prompt as the other texts do
            _with(extensions={"depth_prompt": {"prompt": "x" * 100_001, "depth": 4}}),
            Problem.TOO_LARGE,
            "`extensions.depth_prompt.prompt` has 100,001 characters; at most 100,000",
        ),
        (_with(tags=["t"] * 501), Problem.TOO_LARGE, "`tags`"),
        (_with_entry(keys=[1]), Problem.BAD_FIELD, "character_book.entries[0].keys"),
        (_with_entry(enabled="yes"), Problem.BAD_FIELD, "character_book.entries[0].enabled"),
        (_with_entry(content=None, insertion_order="1"), Problem.BAD_FIELD, "insertion_order"),
        (_with_entry(priority=True), Problem.BAD_FIELD, "entries[0].priority"),
        (_with_entry(id=[1]), Problem.BAD_FIELD, "entries[0].id"),
        (_with_entry(position=1), Problem.BAD_FIELD, "entries[0].position"),
    ],
)
def test_refusals_are_typed_and_one_line(data: bytes, problem: Problem, says: str) -> None:
    error = _refused(data)
    assert error.problem is problem
    assert says in str(error)
    assert "\n" not in str(error) and "sys." not in str(error)  # no Python advice in chat


def test_a_lorebook_with_too_many_entries_is_refused() -> None:
    card = v2()
    card["data"]["character_book"]["entries"] = [{"keys": [], "content": ""}] * 2001
    assert _refused(_json(card)).problem is Problem.TOO_LARGE


def test_a_lorebook_with_too_many_keys_in_all_is_refused() -> None:
    card = v2()
    entry = {"keys": ["k"] * 200, "content": "c"}
    card["data"]["character_book"]["entries"] = [entry] * 51
    error = _refused(_json(card))
    assert error.problem is Problem.TOO_LARGE and "10,000" in str(error)


PNG = png_with({"chara": b64(v2())})


def _sized(width: int, height: int) -> bytes:
    """A PNG whose header says this size (a card too large to show imports without its
    image: tests/unit/characters/test_png_bombs.py)."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return PNG[:8] + header + PNG[8 + 25 :]  # 25: the IHDR chunk it replaces


@pytest.mark.parametrize(
    ("data", "problem", "says"),
    [
        (png_with({}), Problem.NOT_A_CARD, "no character card"),
        (png_with({"Comment": "hello"}), Problem.NOT_A_CARD, "no character card"),
        (PNG[:8], Problem.DAMAGED_PNG, "truncated"),
        (PNG[: len(PNG) // 2], Problem.DAMAGED_PNG, "truncated"),
        (PNG[:-12], Problem.DAMAGED_PNG, "truncated"),
        (PNG[:8] + b"\x7f\xff\xff\xff" + PNG[12:], Problem.DAMAGED_PNG, "longer than the file"),
        (PNG[:8] + b"\xff\xff\xff\xff" + PNG[12:], Problem.DAMAGED_PNG, "truncated or damaged"),
        (PNG[:30] + bytes([PNG[30] ^ 0xFF]) + PNG[31:], Problem.DAMAGED_PNG, "checksum"),
        (png_with({"chara": "@@@@"}), Problem.BAD_BASE64, "base64"),
        (png_with({"chara": b64(v2())[:-7] + "*junk*"}), Problem.BAD_BASE64, "base64"),
        (png_with({"chara": b64("not json")}), Problem.BAD_JSON, "not valid JSON"),
        (png_with({"chara": b64('{"name": 1}')}), Problem.NOT_A_CARD, "not a character card"),
        (
            png_with({"chara": base64.b64encode(b"\xc3\xa9\xc3\x28{}").decode()}),
            Problem.BAD_JSON,
            "not UTF-8",
        ),
        (_sized(0, 1), Problem.DAMAGED_PNG, "says 0×1 pixels"),
        (_sized(1, 2**31), Problem.DAMAGED_PNG, "says 1×2147483648 pixels"),
    ],
)
def test_png_refusals(data: bytes, problem: Problem, says: str) -> None:
    error = _refused(data)
    assert error.problem is problem
    assert says in str(error)


def test_a_png_over_the_size_cap_is_refused_before_reading() -> None:
    data = PNG + b"\0" * (MAX_PNG_BYTES)
    assert _refused(data).problem is Problem.TOO_LARGE


def test_a_compressed_text_bomb_stops_at_the_cap() -> None:
    bomb = zlib.compress(b"A" * (MAX_JSON_BYTES * 3), 9)
    data = insert_before_iend(png_with({}), chunk(b"zTXt", b"ccv3\0\0" + bomb))
    error = _refused(data)
    assert error.problem is Problem.DAMAGED_PNG and "inflates past" in str(error)


def test_a_ztxt_that_does_not_inflate_is_refused() -> None:
    data = insert_before_iend(png_with({}), chunk(b"zTXt", b"ccv3\0\0not zlib"))
    assert _refused(data).problem is Problem.DAMAGED_PNG


def test_many_tiny_chunks_are_bounded() -> None:
    data = insert_before_iend(png_with({}), *[chunk(b"tEXt", b"a\0b")] * 100_001)
    assert "too many chunks" in str(_refused(data))


def test_a_name_is_cleaned_of_what_would_disguise_it() -> None:
    """The name becomes a webhook's or a display name: no right-to-left override, NUL or
    zero-width characters in it."""
    card = read_card(_with(name="\u202eevil\x00 \u200bbot", nickname="\u2066Nick\u2069"))
    assert (card.name, card.nickname) == ("evil bot", "Nick")
