"""Character Card V1/V2/V3 from a PNG or a JSON file, checked field by field."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from bot.characters.model import (
    V1,
    V2,
    V3,
    Card,
    CardError,
    CharacterBook,
    LoreEntry,
    Problem,
    canonical_json,
)
from bot.characters.png import (
    Chunk,
    PngError,
    image_size,
    is_png,
    keyword_of,
    placeholder_png,
    read_chunks,
    shown_chunks,
    text_of,
    write_chunks,
)
from bot.types.encoding import text_codec
from bot.types.limits import MAX_PIXELS
from bot.types.text import clean_text, parse_decimal, shown_name

MAX_PNG_BYTES = 10 * 1024 * 1024
MAX_JSON_BYTES = 2 * 1024 * 1024  # lorebook-heavy cards reach ~1 MB; the store keeps this
MAX_TEXT_CHARS = 100_000  # one field: description, first_mes, a greeting, an entry …
MAX_NAME_CHARS = 200
MAX_ITEMS = 500  # greetings, tags, sources
MAX_SHORT_CHARS = 1_000  # a tag, a key, a creator, a version
MAX_ENTRIES = 2_000
MAX_KEYS = 200
MAX_BOOK_KEYS = 10_000  # all entries together: each is looked for in the chat every turn
MAX_DEPTH = 32  # JSON nesting: real cards stay under 8
CARD_KEYWORDS = ("ccv3", "chara")  # a PNG's card chunks (any case), V3 read first


# Fields the model holds; anything else in `data` is kept verbatim for export.
_TEXT_FIELDS = (
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
)
_SHORT_FIELDS = ("creator", "character_version")
_KNOWN = {
    "name",
    "nickname",
    *_TEXT_FIELDS,
    *_SHORT_FIELDS,
    "alternate_greetings",
    "group_only_greetings",
    "tags",
    "character_book",
    "extensions",
}
_ENTRY_KNOWN = {
    "keys",
    "content",
    "extensions",
    "enabled",
    "insertion_order",
    "case_sensitive",
    "use_regex",
    "constant",
    "name",
    "priority",
    "id",
    "comment",
    "selective",
    "secondary_keys",
    "position",
}
_BOOK_KNOWN = {
    "name",
    "description",
    "scan_depth",
    "token_budget",
    "recursive_scanning",
    "extensions",
    "entries",
}


def read_card(data: bytes) -> Card:
    """A card from a PNG (`ccv3` chunk preferred over `chara`) or JSON file's bytes.
    Raises CardError (never anything else) with a one-line reason."""
    if not data:
        raise CardError(Problem.NOT_A_CARD, "The file is empty; send a card's PNG or JSON.")
    if is_png(data):
        return _from_png(data)
    if data.startswith(b"PK\x03\x04"):  # a zip: CHARX, the V3 spec's packaged form
        raise CardError(
            Problem.NOT_A_CARD,
            "This is a zip file (a CHARX card?), which I do not read: export the card as PNG "
            "or JSON and send that.",
        )
    if len(data) > MAX_JSON_BYTES:
        raise CardError(
            Problem.TOO_LARGE,
            f"The card is {_size(len(data))}; a JSON card may be at most {_size(MAX_JSON_BYTES)}.",
        )
    if b"{" not in data[:64] and not _is_utf8(data):
        # A photo, a zip, a damaged download: not text with an encoding problem.
        raise CardError(
            Problem.NOT_A_CARD,
            f"This file is not a character card: neither a PNG with one in it nor JSON. {_EXPORT}",
        )
    return card_from_json(data)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def card_from_json(data: bytes | str, image: bytes | None = None) -> Card:
    """A card from JSON text; `image` becomes its avatar."""
    text = json_text(data, "card") if isinstance(data, bytes) else data
    if len(text) > MAX_JSON_BYTES:
        raise CardError(Problem.TOO_LARGE, f"The card is larger than {_size(MAX_JSON_BYTES)}.")
    value = parse_json(text, "card")
    return card_from_object(value, image)


def _from_png(data: bytes) -> Card:
    if len(data) > MAX_PNG_BYTES:
        raise CardError(
            Problem.TOO_LARGE,
            f"The PNG is {_size(len(data))}; a card image may be at most {_size(MAX_PNG_BYTES)}.",
        )
    try:
        chunks = read_chunks(data)
        found: dict[str, bytes] = {}
        for chunk in chunks:
            # Only the first chunk of each card keyword is ever inflated: junk text
            # chunks, however many, cost a look at their keyword and no more.
            keyword = (keyword_of(chunk) or "").lower()
            if keyword in CARD_KEYWORDS and keyword not in found:
                text = text_of(chunk, MAX_JSON_BYTES * 2)
                if text is not None:
                    found[keyword] = text[1]
    except PngError as err:
        raise CardError(Problem.DAMAGED_PNG, str(err)) from err
    if not found:
        raise CardError(
            Problem.NOT_A_CARD,
            "This PNG has no character card in it (no `ccv3` or `chara` text chunk): a picture "
            "saved from a page, or one an editor saved again, loses it. Send the PNG the card "
            "was exported as.",
        )
    image = _avatar(chunks)
    first: CardError | None = None
    for keyword in CARD_KEYWORDS:  # V3 first, as the V3 spec and SillyTavern read them
        if keyword not in found:
            continue
        try:
            return card_from_json(_unbase64(found[keyword], keyword), image)
        except CardError as err:
            first = first or err
    assert first is not None
    raise first


def _avatar(chunks: list[Chunk]) -> bytes | None:
    """The image as it is shown, without the card, text or metadata chunks; None when it
    has more pixels than any image the bot decodes (the card is kept, not its image), or
    when it is the plain placeholder an export gives a card without an image."""
    if _too_many_pixels(chunks):
        return None
    image = write_chunks(shown_chunks(chunks))
    return None if image == placeholder_png() else image


def _too_many_pixels(chunks: list[Chunk]) -> bool:
    width, height = image_size(chunks)
    return width * height > MAX_PIXELS


def image_too_large(data: bytes) -> bool:
    """A PNG card whose image read_card did not keep for its size (its other reason for
    no image, the placeholder of an export, is no image of the card's own)."""
    try:
        return is_png(data) and _too_many_pixels(read_chunks(data))
    except PngError:
        return False


def _unbase64(raw: bytes, keyword: str) -> bytes:
    compact = re.sub(rb"\s+", b"", raw)
    if len(compact) > MAX_JSON_BYTES * 4 // 3 + 4:
        raise CardError(Problem.TOO_LARGE, f"The card is larger than {_size(MAX_JSON_BYTES)}.")
    compact += b"=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as err:
        raise CardError(
            Problem.BAD_BASE64,
            f"The PNG's `{keyword}` chunk is not valid base64, so the card cannot be read.",
        ) from err


def json_text(data: bytes, what: str) -> str:
    """A JSON file's text: UTF-8 with or without a BOM, or UTF-16/32 as Windows Notepad
    saves "Unicode" (json.detect_encoding: by the BOM, else by the NULs of its first
    characters), or Windows-1252 as an old editor saves it, read as an attached text
    file is (bot.types.encoding); CardError names the first byte that does not decode."""
    encoding = json.detect_encoding(data)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        if encoding == "utf-8" and text_codec(data) == "cp1252":
            # Accents and typographic quotes of a legacy editor (`Caf\xe9`, `\x93Hi\x94`):
            # SillyTavern reads the file as UTF-8 and shows each as U+FFFD.
            return data.decode("cp1252", errors="replace")
        name = encoding.upper().replace("-SIG", "")[:6]  # UTF-8, UTF-16, UTF-32
        raise CardError(
            Problem.BAD_JSON, f"The {what} is not {name} text (bad byte at offset {err.start})."
        ) from err


# What a file that holds no card is told to do instead.
_EXPORT = "Export the character as a card (PNG or JSON) and send that file."
_MAX_NUMBER_CHARS = 100  # no card or preset field needs a longer number


def parse_json(text: str, what: str) -> Any:
    """JSON with nesting, NaN/Infinity and huge numbers refused; CardError says why."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not a JSON number")

    def integer(digits: str) -> int:
        if len(digits) > _MAX_NUMBER_CHARS:  # before int(), whose own limit says too much
            raise ValueError(f"a number {len(digits):,} digits long")
        return int(digits)

    def real(digits: str) -> float:
        # As /params reads a number: one a float cannot hold (1e400, or 1e-400, which
        # would silently be 0) is refused.
        number = parse_decimal(digits) if len(digits) <= _MAX_NUMBER_CHARS else None
        if number is None:
            shown = digits[:20] + ("…" if len(digits) > 20 else "")
            raise ValueError(f"a number out of range ({shown})")
        return number

    try:
        # json's C scanner stops runaway nesting itself (RecursionError near 1000 levels).
        value = json.loads(text, parse_constant=refuse, parse_int=integer, parse_float=real)
    except json.JSONDecodeError as err:
        raise CardError(
            Problem.BAD_JSON,
            f"The {what} is not valid JSON ({err.msg}: line {err.lineno} column {err.colno}). "
            "Send the file as it was exported, not edited or cut short.",
        ) from err
    except RecursionError as err:
        raise CardError(Problem.BAD_JSON, f"The {what} JSON is nested too deeply.") from err
    except ValueError as err:
        raise CardError(Problem.BAD_JSON, f"The {what} is not valid JSON ({err}).") from err
    if _depth(value) > MAX_DEPTH:
        raise CardError(Problem.BAD_JSON, f"The {what} JSON is nested too deeply.")
    return value


def _depth(value: object) -> int:
    """How deep lists and objects nest, without recursion (what follows recurses)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def card_from_object(value: object, image: bytes | None = None) -> Card:
    """A card from parsed JSON: V2 and V3 as they are, V1 (flat, no spec) upgraded."""
    if not isinstance(value, dict):
        raise CardError(Problem.NOT_A_CARD, f"The file is JSON but not a character card. {_EXPORT}")
    spec = value.get("spec")
    if spec is None:
        if any(key in value for key in _PRESET_KEYS) and "first_mes" not in value:
            raise CardError(
                Problem.NOT_A_CARD,
                "This is a Chat Completion preset, not a character card; use the preset import.",
            )
        if isinstance(value.get("entries"), dict | list) and "first_mes" not in value:
            raise CardError(
                Problem.NOT_A_CARD,
                "This is a lorebook (a SillyTavern World Info file), not a character card, "
                "and a lorebook on its own cannot be imported here: import a card, which "
                "carries its own lorebook.",
            )
        if "data" not in value and isinstance(value.get("name"), str):
            return _card(_v1_as_data(value), V1, image)
        if "data" not in value and isinstance(value.get("char_name"), str):
            return _card(_v1_as_data(_pygmalion_as_v1(value)), V1, image)
        raise CardError(
            Problem.NOT_A_CARD,
            f"The file is JSON but not a character card (no `spec` and no `name`). {_EXPORT}",
        )
    if spec == V2:
        version = value.get("spec_version")
        # Cards of the V2 spec's first weeks have none (it came with its May 8 revision);
        # SillyTavern reads any card with a `spec` (src/endpoints/characters.js
        # importFromJson, line 593), so they open there.
        if version not in (None, "2.0", 2, 2.0):
            raise CardError(
                Problem.WRONG_VERSION,
                f"A chara_card_v2 card must have spec_version 2.0, not {_shown(version)}.",
            )
    elif spec == V3:
        _check_v3_version(value.get("spec_version"))
    else:
        raise CardError(
            Problem.WRONG_VERSION,
            f"This is a {_shown(spec)} file; only character cards (chara_card_v2 or "
            "chara_card_v3) can be imported.",
        )
    data = value.get("data")
    if not isinstance(data, dict):
        raise CardError(Problem.BAD_FIELD, "The card's `data` must be an object.")
    if not data.get("name") and isinstance(value.get("name"), str):
        data = {**data, "name": value["name"]}  # SillyTavern falls back to the V1 copy too
    # A field `data` lacks keeps the V1 copy beside it, which SillyTavern's prompt then
    # reads (src/endpoints/characters.js readFromV2, lines 290-335: a field undefined in
    # `data` leaves the top-level one), for V2 and V3 alike. Null in `data` is no text.
    kept = {k: value[k] for k in _V1_KEPT if k not in data and k in value}
    return _card({**data, **kept}, str(spec), image)


# The fields readFromV2 maps from `data` to the top level (besides the name, above, and
# talkativeness and fav, which it never takes from the top level).
_V1_KEPT = ("description", "personality", "scenario", "first_mes", "mes_example", "tags")


def _check_v3_version(version: object) -> None:
    # The V3 spec asks readers not to refuse other 3.x versions: compare as a float.
    try:
        number = float(version) if isinstance(version, str | int | float) else math.nan
    except ValueError:
        number = math.nan
    if isinstance(version, bool) or not 3.0 <= number < 4.0:
        raise CardError(
            Problem.WRONG_VERSION,
            f"A chara_card_v3 card must have spec_version 3.x, not {_shown(version)}.",
        )


def _v1_as_data(flat: dict[str, Any]) -> dict[str, Any]:
    """SillyTavern's V1 upgrade: the flat fields, `creatorcomment` as the creator notes,
    `talkativeness` and `fav` kept in `extensions` as SillyTavern keeps them."""
    data = {k: flat[k] for k in ("name", *_TEXT_FIELDS, *_SHORT_FIELDS) if k in flat}
    if "creatorcomment" in flat and "creator_notes" not in flat:
        data["creator_notes"] = flat["creatorcomment"]
    if "tags" in flat:
        data["tags"] = flat["tags"]
    kept = {k: flat[k] for k in ("talkativeness", "fav") if k in flat}
    if kept:
        data["extensions"] = kept
    return data


# Pygmalion's Gradio JSON (Character.AI exporters write it too) → the V1 fields, as
# SillyTavern maps them (src/endpoints/characters.js importFromJson, "gradio json").
_PYGMALION = {
    "char_name": "name",
    "char_persona": "description",
    "char_greeting": "first_mes",
    "world_scenario": "scenario",
    "example_dialogue": "mes_example",
}


def _pygmalion_as_v1(flat: dict[str, Any]) -> dict[str, Any]:
    """A Pygmalion card's fields under their V1 names; of its others the creator, its
    notes and tags are read as V1's, a V1 name it maps is not (nor a personality:
    SillyTavern's is empty)."""
    ignored = {*_PYGMALION, *_PYGMALION.values(), "personality"}
    others = {k: v for k, v in flat.items() if k not in ignored}
    return {**others, **{_PYGMALION[k]: v for k, v in flat.items() if k in _PYGMALION}}


# Keys of a SillyTavern Chat Completion preset: a file with one and no card fields is one.
_PRESET_KEYS = ("prompts", "prompt_order", "openai_max_context", "temperature")


def _card(data: dict[str, Any], spec: str, image: bytes | None) -> Card:
    name = shown_name(_text(data, "name", MAX_NAME_CHARS))
    if not name:
        raise CardError(Problem.BAD_FIELD, "The card has no `name`.")
    texts = {key: _text(data, key, MAX_TEXT_CHARS) for key in _TEXT_FIELDS}
    shorts = {
        key: _text(_numbers_as_text(data, key), key, MAX_SHORT_CHARS) for key in _SHORT_FIELDS
    }
    book = data.get("character_book")
    extensions = data.get("extensions")
    note = extensions.get("depth_prompt") if isinstance(extensions, dict) else None
    if isinstance(note, dict) and isinstance(note.get("prompt"), str):
        _text(note, "prompt", MAX_TEXT_CHARS, "extensions.depth_prompt")  # the Character's Note
    return Card(
        name=name,
        nickname=shown_name(_text(data, "nickname", MAX_NAME_CHARS)),
        alternate_greetings=_strings(data, "alternate_greetings", MAX_TEXT_CHARS, lenient=True),
        group_only_greetings=_strings(data, "group_only_greetings", MAX_TEXT_CHARS),
        tags=_strings(data, "tags", MAX_SHORT_CHARS, lenient=True, comma=True),
        character_book=None if book is None else _book(book),
        extensions=_object(data, "extensions"),
        extra=canonical_json({k: v for k, v in data.items() if k not in _KNOWN}),
        image=image,
        spec=spec,
        **texts,
        **shorts,
    )


def _numbers_as_text(data: dict[str, Any], key: str) -> dict[str, Any]:
    """`data` with a number at `key` as the text JavaScript's String() makes of it: the V2
    spec types `character_version` as a number, and SillyTavern shows and exports either
    kind as it came (`2`, `1.5`), so a card is not refused for it."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return data
    shown = str(int(value)) if float(value).is_integer() and abs(value) < 1e21 else str(value)
    return {**data, key: shown}


def _book(book: object) -> CharacterBook:
    where = "character_book"
    if not isinstance(book, dict):
        raise _wrong(where, "an object")
    entries = book.get("entries", [])
    if not isinstance(entries, list):
        raise _wrong(f"{where}.entries", "a list")
    if len(entries) > MAX_ENTRIES:
        raise CardError(
            Problem.TOO_LARGE, f"The lorebook has {len(entries)} entries; at most {MAX_ENTRIES}."
        )
    read = tuple(_entry(e, f"{where}.entries[{i}]") for i, e in enumerate(entries))
    keys = sum(len(e.keys) + len(e.secondary_keys) for e in read)
    if keys > MAX_BOOK_KEYS:
        raise CardError(
            Problem.TOO_LARGE, f"The lorebook has {keys:,} keys; at most {MAX_BOOK_KEYS:,}."
        )
    return CharacterBook(
        entries=read,
        name=_text(book, "name", MAX_SHORT_CHARS, where),
        description=_text(book, "description", MAX_TEXT_CHARS, where),
        scan_depth=_count(book, "scan_depth", where),
        token_budget=_count(book, "token_budget", where),
        recursive_scanning=_flag(book, "recursive_scanning", where) is True,
        extensions=_object(book, "extensions", where),
        extra=canonical_json({k: v for k, v in book.items() if k not in _BOOK_KNOWN}),
    )


def _entry(entry: object, where: str) -> LoreEntry:
    if not isinstance(entry, dict):
        raise _wrong(where, "an object")
    keys = _strings(entry, "keys", MAX_SHORT_CHARS, where, lenient=True, comma=True)
    secondary = _strings(entry, "secondary_keys", MAX_SHORT_CHARS, where, lenient=True, comma=True)
    if len(keys) > MAX_KEYS or len(secondary) > MAX_KEYS:
        raise CardError(Problem.TOO_LARGE, f"`{where}` has more than {MAX_KEYS} keys.")
    ident = entry.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, int | str)):
        raise _wrong(f"{where}.id", "a number or text")
    position = entry.get("position")
    if position is not None and not isinstance(position, str):
        raise _wrong(f"{where}.position", "text")
    return LoreEntry(
        keys=keys,
        content=_text(entry, "content", MAX_TEXT_CHARS, where),
        enabled=_flag(entry, "enabled", where) is not False,
        insertion_order=_number(entry, "insertion_order", where) or 0,
        case_sensitive=_flag(entry, "case_sensitive", where),
        use_regex=_flag(entry, "use_regex", where) is True,
        constant=_flag(entry, "constant", where) is True,
        selective=_flag(entry, "selective", where) is True,
        secondary_keys=secondary,
        position=clean_text(position or "")[:40],
        priority=_number(entry, "priority", where),
        id=ident if not isinstance(ident, str) else clean_text(ident[:MAX_SHORT_CHARS]),
        name=_text(entry, "name", MAX_SHORT_CHARS, where),
        comment=_text(entry, "comment", MAX_TEXT_CHARS, where),
        extensions=_object(entry, "extensions", where),
        extra=canonical_json({k: v for k, v in entry.items() if k not in _ENTRY_KNOWN}),
    )


# -- field checks: missing or null is the empty value, a wrong type names the field ---------


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _wrong(path: str, expected: str) -> CardError:
    return CardError(Problem.BAD_FIELD, f"The card's `{path}` must be {expected}.")


def _text(obj: Mapping[str, Any], key: str, limit: int, where: str = "") -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _wrong(_path(where, key), "text")
    if len(value) > limit:
        raise CardError(
            Problem.TOO_LARGE,
            f"The card's `{_path(where, key)}` has {len(value):,} characters; at most {limit:,}.",
        )
    return clean_text(value)


def _strings(
    obj: Mapping[str, Any],
    key: str,
    limit: int,
    where: str = "",
    *,
    lenient: bool = False,
    comma: bool = False,
) -> tuple[str, ...]:
    """A list of strings; `lenient` also takes one string (SillyTavern does), split on
    commas when `comma` (tags typed as `a, b`)."""
    value = obj.get(key)
    path = _path(where, key)
    if value is None:
        return ()
    if isinstance(value, str) and lenient:
        value = [v.strip() for v in value.split(",")] if comma else [value]
        value = [v for v in value if v]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong(path, "a list of strings")
    if len(value) > MAX_ITEMS:
        raise CardError(Problem.TOO_LARGE, f"The card's `{path}` has more than {MAX_ITEMS} items.")
    if any(len(v) > limit for v in value):
        raise CardError(
            Problem.TOO_LARGE, f"An item of the card's `{path}` is over {limit:,} characters."
        )
    return tuple(clean_text(v) for v in value)


def _flag(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise _wrong(_path(where, key), "true or false")
    return value


def _number(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _wrong(_path(where, key), "a number")
    if abs(value) > 1e15:
        raise _wrong(_path(where, key), "a number of sensible size")
    return value


def _count(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = _number(obj, key, where)
    if value is None:
        return None
    if value < 0:
        raise _wrong(_path(where, key), "zero or more")
    return int(value)


def _object(obj: Mapping[str, Any], key: str, where: str = "") -> str:
    value = obj.get(key)
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise _wrong(_path(where, key), "an object")
    return canonical_json(value)


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else "none"
    return text if len(text) <= 40 else text[:39] + "…"


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"
