"""A card written back out: V3 JSON, or a PNG carrying `chara` (V2) and `ccv3` (V3)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from bot.characters.model import V2, V3, Card, CardError, CharacterBook, LoreEntry, Problem
from bot.characters.png import (
    PngError,
    is_png,
    placeholder_png,
    read_chunks,
    text_chunk,
    text_of,
    write_chunks,
)

CARD_KEYWORDS = ("chara", "ccv3")
_MAX_CONVERTED_SIDE = 4096  # a non-PNG avatar is decoded to convert it: keep that small


def card_object(card: Card, spec: str = V3) -> dict[str, Any]:
    """The card as a JSON object of `spec` (V3 by default; V2 keeps the same data, as
    SillyTavern writes its `chara` chunk)."""
    return {"spec": spec, "spec_version": "3.0" if spec == V3 else "2.0", "data": _data(card)}


def export_json(card: Card) -> bytes:
    """A V3 JSON file (UTF-8) that SillyTavern and other V3 readers import."""
    return json.dumps(card_object(card), ensure_ascii=False, indent=2).encode("utf-8")


def export_png(card: Card) -> bytes:
    """The card's image (or a plain placeholder) with `chara` and `ccv3` tEXt chunks;
    CardError when the stored image cannot be read."""
    chunks = [c for c in read_chunks(_png(card.image)) if not _is_card_chunk(c)]
    texts = [
        text_chunk("chara", _base64(card_object(card, V2))),
        text_chunk("ccv3", _base64(card_object(card, V3))),
    ]
    return write_chunks([*chunks[:-1], *texts, chunks[-1]])  # before IEND, as ST does


def _base64(value: dict[str, Any]) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _is_card_chunk(chunk: Any) -> bool:
    try:
        text = text_of(chunk, 0)
    except PngError:  # a compressed card chunk too large to read: still a card chunk
        return True
    return text is not None and text[0].lower() in CARD_KEYWORDS


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
    None when there is no image or it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    if image is None:
        return None
    try:
        with Image.open(io.BytesIO(image)) as img:
            if max(img.size) > _MAX_CONVERTED_SIDE * 2:
                return None
            rgba = img.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    crop = min(rgba.size)
    left, top = (rgba.width - crop) // 2, (rgba.height - crop) // 4  # faces sit high
    square = rgba.crop((left, top, left + crop, top + crop)).resize((side, side))
    out = io.BytesIO()
    square.save(out, format="PNG")
    return out.getvalue()
