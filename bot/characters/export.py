"""A card written back out: V3 JSON, or a PNG carrying `chara` (V2) and `ccv3` (V3)."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.characters.model import V2, V3, Card, CardError, CharacterBook, LoreEntry, Problem
from bot.characters.png import (
    PngError,
    is_png,
    placeholder_png,
    read_chunks,
    shown_chunks,
    text_chunk,
    write_chunks,
)
from bot.types.limits import MAX_PIXELS

if TYPE_CHECKING:  # Pillow loads when a card is exported or its avatar made
    from PIL import Image

_MAX_CONVERTED_SIDE = 4096  # a non-PNG avatar is decoded to convert it: keep that small
# Source pixels an avatar converts to RGBA at a time (4 MB): a large image is scaled
# down a band of rows at a time, never copied whole.
_BAND_PIXELS = 1 << 20


Clean = Callable[[str], str]


def card_object(card: Card, spec: str = V3, clean: Clean | None = None) -> dict[str, Any]:
    """The card as a JSON object of `spec` (V3 by default; V2 keeps the same data, as
    SillyTavern writes its `chara` chunk); `clean` is applied to every text in it, the
    names of its keys too (what the card keeps as it came included)."""
    data = _data(card)
    if clean is not None:
        data = _cleaned(data, clean)
    return {"spec": spec, "spec_version": "3.0" if spec == V3 else "2.0", "data": data}


def _cleaned(value: Any, clean: Clean) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [_cleaned(v, clean) for v in value]
    if isinstance(value, dict):
        return {clean(k): _cleaned(v, clean) for k, v in value.items()}
    return value


def export_json(card: Card, clean: Clean | None = None, *, compact: bool = False) -> bytes:
    """A V3 JSON file (UTF-8) that SillyTavern and other V3 readers import; `compact`
    without the indents a person reads it by (the stored copy: indented, a lorebook
    card of 1.8 MB grew past the 2 MB a card is read back within)."""
    layout: dict[str, Any] = {"separators": (",", ":")} if compact else {"indent": 2}
    return json.dumps(card_object(card, V3, clean), ensure_ascii=False, **layout).encode("utf-8")


def export_png(card: Card, clean: Clean | None = None) -> bytes:
    """The card's image (or a plain placeholder) with `chara` and `ccv3` tEXt chunks;
    CardError when the stored image cannot be read. Of the image only what shows it is
    written: no older card chunks, text or metadata (an avatar stored before imports
    dropped them may still carry some)."""
    chunks = shown_chunks(read_chunks(_png(card.image)))
    texts = [
        text_chunk("chara", _base64(card_object(card, V2, clean))),
        text_chunk("ccv3", _base64(card_object(card, V3, clean))),
    ]
    return write_chunks([*chunks[:-1], *texts, chunks[-1]])  # before IEND, as ST does


def _base64(value: dict[str, Any]) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _png(image: bytes | None) -> bytes:
    from PIL import Image, UnidentifiedImageError  # Pillow loads when a card is exported

    if image is None:
        return placeholder_png()
    try:
        if is_png(image):
            read_chunks(image)
            return image
        # Another format stored as the avatar: re-encode it (size checked before decoding).
        with Image.open(io.BytesIO(image)) as img:
            if max(img.size) > _MAX_CONVERTED_SIDE:
                raise CardError(Problem.TOO_LARGE, "The card's image is too large to export.")
            out = io.BytesIO()
            img.convert("RGBA").save(out, format="PNG")
            return out.getvalue()
    except (PngError, UnidentifiedImageError, OSError, ValueError) as err:
        if isinstance(err, CardError):
            raise
        raise CardError(Problem.DAMAGED_PNG, "The card's image cannot be read.") from err


def _data(card: Card) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": card.name,
        "description": card.description,
        "personality": card.personality,
        "scenario": card.scenario,
        "first_mes": card.first_mes,
        "mes_example": card.mes_example,
        "creator_notes": card.creator_notes,
        "system_prompt": card.system_prompt,
        "post_history_instructions": card.post_history_instructions,
        "alternate_greetings": list(card.alternate_greetings),
        "group_only_greetings": list(card.group_only_greetings),
        "tags": list(card.tags),
        "creator": card.creator,
        "character_version": card.character_version,
        "extensions": json.loads(card.extensions),
    }
    if card.nickname:
        data["nickname"] = card.nickname
    if card.character_book is not None:
        data["character_book"] = _book(card.character_book)
    return {**data, **json.loads(card.extra)}


def _book(book: CharacterBook) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if book.name:
        out["name"] = book.name
    if book.description:
        out["description"] = book.description
    if book.scan_depth is not None:
        out["scan_depth"] = book.scan_depth
    if book.token_budget is not None:
        out["token_budget"] = book.token_budget
    out["recursive_scanning"] = book.recursive_scanning
    out["extensions"] = json.loads(book.extensions)
    out["entries"] = [_entry(e) for e in book.entries]
    return {**out, **json.loads(book.extra)}


def _entry(entry: LoreEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "keys": list(entry.keys),
        "content": entry.content,
        "extensions": json.loads(entry.extensions),
        "enabled": entry.enabled,
        "insertion_order": _plain(entry.insertion_order),
        "use_regex": entry.use_regex,
        "constant": entry.constant,
        "selective": entry.selective,
        "secondary_keys": list(entry.secondary_keys),
    }
    if entry.case_sensitive is not None:
        out["case_sensitive"] = entry.case_sensitive
    if entry.position:
        out["position"] = entry.position
    if entry.priority is not None:
        out["priority"] = _plain(entry.priority)
    if entry.id is not None:
        out["id"] = entry.id
    if entry.name:
        out["name"] = entry.name
    if entry.comment:
        out["comment"] = entry.comment
    return {**out, **json.loads(entry.extra)}


def _plain(number: float) -> float | int:
    """10 rather than 10.0, which some readers of integer fields refuse."""
    return int(number) if float(number).is_integer() else number


def avatar_png(image: bytes | None, side: int = 256) -> bytes | None:
    """A small square PNG of the card's image for a profile picture (centre-cropped);
    None when there is no image, it cannot be read, or it has more than MAX_PIXELS (the
    media rule: checked before decoding, a JPEG decoded at 1/2..1/8 scale when that
    still covers `side`). The decode is the only full-size copy held."""
    from PIL import Image, UnidentifiedImageError

    if image is None:
        return None
    try:
        with Image.open(io.BytesIO(image)) as img:
            crop = min(img.size)
            if crop > side * 2:
                scale = side * 2 / crop
                img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
            if img.width * img.height > MAX_PIXELS:
                return None
            img.load()
            square = _square(img, side)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    out = io.BytesIO()
    square.save(out, format="PNG")
    return out.getvalue()


def _square(img: Image.Image, side: int) -> Image.Image:
    """The centre square (faces sit high: a quarter of the rest above it), `side` a side,
    RGBA. Whole blocks of pixels are averaged first (as resize's reducing_gap does), a
    band of rows at a time, so only bands are ever converted to RGBA at full size."""
    from PIL import Image

    crop = min(img.size)
    left, top = (img.width - crop) // 2, (img.height - crop) // 4
    factor = max(1, crop // (side * 2))  # what is left keeps at least twice `side`
    rows = factor * max(1, _BAND_PIXELS // (crop * factor))  # whole blocks per band
    reduced = Image.new("RGBA", (-(-crop // factor), -(-crop // factor)))
    for y in range(0, crop, rows):
        band = img.crop((left, top + y, left + crop, top + min(y + rows, crop)))
        reduced.paste(band.convert("RGBA").reduce(factor), (0, y // factor))
    return reduced.resize((side, side), Image.Resampling.LANCZOS)
