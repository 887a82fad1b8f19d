"""What a character card is once read: frozen values, with unmodelled JSON kept as text."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from bot.types.text import clean_text

V2, V3, V1 = "chara_card_v2", "chara_card_v3", "v1"


class Problem(StrEnum):
    """Why a file was refused."""

    NOT_A_CARD = "not_a_card"
    WRONG_VERSION = "wrong_version"
    TOO_LARGE = "too_large"
    BAD_BASE64 = "bad_base64"
    BAD_JSON = "bad_json"
    BAD_FIELD = "bad_field"
    DAMAGED_PNG = "damaged_png"


class CardError(ValueError):
    """A file refused as a character card; str() is one line for the person who sent it."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


def canonical_json(value: object) -> str:
    """JSON text that compares equal when the values do (sorted keys, no spaces)."""
    return json.dumps(_sanitized(value), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=4096)
def _parsed_object(text: str) -> Mapping[str, Any]:
    # Lorebook scans read entries' extensions on every turn: parse each text once.
    value = json.loads(text)
    return MappingProxyType(value if isinstance(value, dict) else {})


@dataclass(frozen=True, slots=True)
class LoreEntry:
    """One lorebook entry; `extensions` and `extra` are JSON object text kept for export."""

    keys: tuple[str, ...]
    content: str
    enabled: bool = True
    insertion_order: float = 0
    case_sensitive: bool | None = None
    use_regex: bool = False
    constant: bool = False
    selective: bool = False
    secondary_keys: tuple[str, ...] = ()
    position: str = ""  # "before_char", "after_char", or "" when the card says nothing
    priority: float | None = None
    id: int | str | None = None
    name: str = ""
    comment: str = ""
    extensions: str = "{}"
    extra: str = "{}"

    @property
    def extension_values(self) -> Mapping[str, Any]:
        return _parsed_object(self.extensions)


@dataclass(frozen=True, slots=True)
class CharacterBook:
    """A card's lorebook (character_book)."""

    entries: tuple[LoreEntry, ...] = ()
    name: str = ""
    description: str = ""
    scan_depth: int | None = None
    token_budget: int | None = None
    recursive_scanning: bool = False
    extensions: str = "{}"
    extra: str = "{}"
    # Each entry's hash → the first entry with it, worked out from `entries` when first
    # needed (bot.characters.timed.first_by_hash): derived, not part of what the book is.
    hashes: dict[str, int] = field(default_factory=dict, init=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Card:
    """A character card as V3 describes it; JSON text fields keep what we do not model."""

    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    creator_notes: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: tuple[str, ...] = ()
    group_only_greetings: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    creator: str = ""
    character_version: str = ""
    nickname: str = ""
    character_book: CharacterBook | None = None
    extensions: str = "{}"  # data.extensions, JSON object text
    extra: str = "{}"  # other data fields (assets, source, creation_date …), JSON object text
    image: bytes | None = field(default=None, repr=False)  # the PNG without its card chunks
    # What the file was: chara_card_v2, chara_card_v3, or v1 (flat, upgraded on import).
    spec: str = field(default=V3, compare=False)

    @property
    def display_name(self) -> str:
        """What {{char}} means: the V3 nickname when there is one, else the name."""
        return self.nickname or self.name

    @property
    def extension_values(self) -> Mapping[str, Any]:
        return _parsed_object(self.extensions)

    @property
    def depth_prompt(self) -> DepthNote | None:
        """SillyTavern's Character's Note (extensions.depth_prompt): text put among the
        chat messages, `depth` of them from the end, as `role`; None when it has none, or
        a depth SillyTavern would never put it at."""
        note = self.extension_values.get("depth_prompt")
        if not isinstance(note, Mapping) or not isinstance(note.get("prompt"), str):
            return None
        depth = depth_of(note.get("depth"))
        if not note["prompt"].strip() or depth is None:
            return None
        return DepthNote(note["prompt"], depth, role_of(note.get("role")), NOTE_RANK)


DEFAULT_NOTE_DEPTH = 4  # SillyTavern's depth_prompt_depth_default
MAX_NOTE_DEPTH = 1000  # SillyTavern's MAX_INJECTION_DEPTH
# Where notes at one depth and role come in their message, as SillyTavern sorts its
# extension prompts by key: lore around the author's note ("2_floating_prompt"), then
# the Character's Note ("DEPTH_PROMPT"), then lore placed at a depth ("customDepthWI…").
AUTHORS_NOTE_RANK, NOTE_RANK, LORE_RANK = 0, 1, 2


@dataclass(frozen=True, slots=True)
class DepthNote:
    """Text among the chat messages, `depth` from the end (0: after the newest)."""

    text: str
    depth: int
    role: str  # "system", "user" or "assistant"
    rank: int = LORE_RANK  # its place among the notes of its depth and role


def depth_of(value: object, default: int = DEFAULT_NOTE_DEPTH) -> int | None:
    """A depth as SillyTavern reads it: `value ?? default`, then JavaScript's Number()
    compared with each depth from 0 to MAX_NOTE_DEPTH (`"2"` is 2, `""` is 0, `true` is
    1); None for one it never reaches (negative, fractional, past the last, not a
    number)."""
    number = js_number(default if value is None else value)
    if number is None or not number.is_integer() or not 0 <= number <= MAX_NOTE_DEPTH:
        return None
    return int(number)


def js_number(value: object) -> float | None:
    """JavaScript's Number(value) for JSON values; None for NaN and what it gives NaN,
    and for what is Infinity to it."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # a JSON integer of 400 digits: Infinity to JavaScript
            return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return 0.0
    try:
        if text[:2].lower() in ("0x", "0o", "0b"):
            return float(int(text, 0))
        number = float(text) if "_" not in text else math.nan  # Python reads 1_0; JS not
    except ValueError:
        return None
    except OverflowError:  # `0x` and 400 digits: Infinity to JavaScript, a depth never met
        return None
    return number if math.isfinite(number) else None


ROLES = ("system", "user", "assistant")  # SillyTavern's extension_prompt_roles 0, 1, 2


def role_of(value: object) -> str:
    """A note's role by name or SillyTavern's number (compared with `==`: "1" is 1);
    system when it is neither."""
    if isinstance(value, str) and value in ROLES:
        return value
    number = None if isinstance(value, bool) else js_number(value)
    if number is not None and number in (0, 1, 2):
        return ROLES[int(number)]
    return "system"


# -- reading --------------------------------------------------------------------------------


def _sanitized(value: object) -> object:
    """Kept-as-is JSON with text made storable (no NUL, no lone surrogates)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_sanitized(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(str(k)): _sanitized(v) for k, v in value.items()}
    return value
