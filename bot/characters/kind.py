"""Which SillyTavern file a file is (a character card, a Chat Completion preset), without
importing it: a message of such files alone is no question for the model."""

from __future__ import annotations

from typing import Any, Literal

from bot.characters.card import CARD_KEYWORDS, MAX_JSON_BYTES, json_text, parse_json
from bot.characters.model import V2, V3, CardError
from bot.characters.png import PngError, is_png, keyword_of, read_chunks
from bot.characters.preset import MAX_PRESET_BYTES

SettingsKind = Literal["character", "preset"]  # the command that imports it

# Where such a file can be told at all: what SillyTavern exports, by name or declared type.
SETTINGS_EXTENSIONS = ("png", "json")
SETTINGS_TYPES = ("image/png", "application/json")

# A V1 card's fields beside its name (SillyTavern writes them all), Pygmalion's beside
# `char_name`: a JSON object with only a `name` is many things besides a card.
_V1_FIELDS = ("description", "personality", "scenario", "first_mes", "mes_example")
_PYGMALION_FIELDS = ("char_persona", "char_greeting", "world_scenario", "example_dialogue")
# Keys only a Chat Completion preset has: SillyTavern's exports and ours carry `prompts`
# and `prompt_order`, one from before its prompt manager these prompts and limits.
_PRESET_FIELDS = (
    "prompt_order",
    "openai_max_context",
    "openai_max_tokens",
    "main_prompt",
    "jailbreak_prompt",
    "nsfw_prompt",
)


def settings_kind(data: bytes) -> SettingsKind | None:
    """ "character" for a card (a PNG with a `ccv3` or `chara` chunk, a V1–V3 card's JSON),
    "preset" for a Chat Completion preset's JSON, else None. Whether it imports is the
    import's to say: a card of a version not read here is still a card."""
    if is_png(data):
        try:
            chunks = read_chunks(data)
        except PngError:
            return None  # a damaged picture is refused as one, when it is read
        found = ((keyword_of(chunk) or "").lower() for chunk in chunks)
        return "character" if any(k in CARD_KEYWORDS for k in found) else None
    if len(data) > max(MAX_JSON_BYTES, MAX_PRESET_BYTES) or b"{" not in data[:1024]:
        return None
    try:
        value = parse_json(json_text(data, "file"), "file")
    except CardError:
        return None
    return _json_kind(value) if isinstance(value, dict) else None


def _json_kind(value: dict[str, Any]) -> SettingsKind | None:
    spec = value.get("spec")
    if spec in (V2, V3) or (isinstance(spec, str) and spec.startswith("chara_card")):
        return "character"
    if isinstance(value.get("name"), str) and any(k in value for k in _V1_FIELDS):
        return "character"
    if isinstance(value.get("char_name"), str) and any(k in value for k in _PYGMALION_FIELDS):
        return "character"
    if isinstance(value.get("prompts"), list) or any(k in value for k in _PRESET_FIELDS):
        return "preset"
    return None
