"""Character cards (V1/V2/V3, PNG or JSON), their prompt, and SillyTavern presets. Pure."""

from bot.characters.card import (
    MAX_JSON_BYTES,
    MAX_PNG_BYTES,
    card_from_json,
    image_too_large,
    read_card,
)
from bot.characters.export import avatar_png, card_object, export_json, export_png
from bot.characters.kind import SETTINGS_EXTENSIONS, SETTINGS_TYPES, SettingsKind, settings_kind
from bot.characters.lorebook import LoreHits, not_used, unknown_logic
from bot.characters.macros import Macros
from bot.characters.model import Card, CardError, CharacterBook, LoreEntry, Problem
from bot.characters.preset import PresetError, PresetImport, export_preset, parse_preset
from bot.characters.prompt import (
    FORMATS,
    CharacterPrompt,
    build_prompt,
    example_dialogues,
    greetings,
    macros_for,
    macros_without_card,
    system_without_card,
)
from bot.characters.timed import Active, Timers

__all__ = [
    "FORMATS",
    "MAX_JSON_BYTES",
    "MAX_PNG_BYTES",
    "SETTINGS_EXTENSIONS",
    "SETTINGS_TYPES",
    "Active",
    "Card",
    "CardError",
    "CharacterBook",
    "CharacterPrompt",
    "LoreEntry",
    "LoreHits",
    "Macros",
    "PresetError",
    "PresetImport",
    "Problem",
    "SettingsKind",
    "Timers",
    "avatar_png",
    "build_prompt",
    "card_from_json",
    "card_object",
    "example_dialogues",
    "export_json",
    "export_png",
    "export_preset",
    "greetings",
    "image_too_large",
    "macros_for",
    "macros_without_card",
    "not_used",
    "parse_preset",
    "read_card",
    "settings_kind",
    "system_without_card",
    "unknown_logic",
]
