"""Character cards (V1/V2/V3, PNG or JSON), their prompt, and SillyTavern presets. Pure."""

from bot.characters.card import (
    MAX_JSON_BYTES,
    MAX_PNG_BYTES,
    Card,
    CardError,
    CharacterBook,
    LoreEntry,
    Problem,
    card_from_json,
    read_card,
)
from bot.characters.export import card_object, export_json, export_png

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_PNG_BYTES",
    "Card",
    "CardError",
    "CharacterBook",
    "LoreEntry",
    "Problem",
    "card_from_json",
    "card_object",
    "export_json",
    "export_png",
    "read_card",
]
