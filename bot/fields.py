"""The registry of channel settings people set with /params: type, range, sources, display.

One entry per setting drives how a typed value is checked, how `/params` and
`/settings` show it, and which sources use it. Pure: no I/O, no platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from bot.types import ChannelConfig, Source
from bot.types.text import TextError, clean_text, parse_decimal, parse_integer, shorten


class FieldError(ValueError):
    """A value a setting does not take; the message says what it does take."""


class Kind(StrEnum):
    NUMBER = "number"
    INTEGER = "integer"
    SWITCH = "switch"
    LIST = "list"


SWITCH_ON = ("on", "true", "yes", "1")
SWITCH_OFF = ("off", "false", "no", "0")


def number_text(value: float) -> str:
    """0.7, 12, 10000000: plain notation, never `1e+07`."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def split_list(text: str) -> list[str]:
    """`END, "a,b", \\nUser:` → ["END", "a,b", "\\nUser:"]: commas split, quotes group.

    Inside a value `\\n` and `\\t` are a newline and a tab (stop strings often need one);
    spaces typed around a value are dropped, quoted or escaped ones kept.
    """
    items: list[str] = []
    current: list[tuple[str, bool]] = []  # (character, typed literally: quoted or escaped)
    quote = ""
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            current.append(({"n": "\n", "t": "\t"}.get(nxt, nxt), True))
            i += 2
            continue
        if quote:
            if char == quote:
                quote = ""
            else:
                current.append((char, True))
        elif char in "\"'":
            quote = char
        elif char == ",":
            items.append(_trimmed(current))
            current = []
        else:
            current.append((char, False))
        i += 1
    if quote:
        raise FieldError("A quote is not closed. Close it or remove it.")
    items.append(_trimmed(current))
    return [item for item in items if item]


def _trimmed(chars: list[tuple[str, bool]]) -> str:
    start, end = 0, len(chars)
    while start < end and not chars[start][1] and chars[start][0].isspace():
        start += 1
    while end > start and not chars[end - 1][1] and chars[end - 1][0].isspace():
        end -= 1
    return "".join(char for char, _ in chars[start:end])


@dataclass(frozen=True, slots=True)
class Field:
    """One setting: its /params name, where it is stored, and what it takes."""

    name: str
    column: str  # channel_configs column (and ChannelConfig attribute)
    kind: Kind
    help: str
    low: float | None = None
    high: float | None = None
    max_items: int = 0  # LIST: at most this many
    max_item_chars: int = 0  # LIST: each at most this long
    sources: frozenset[Source] | None = None  # None: every source

    def applies_to(self, source: Source) -> bool:
        return self.sources is None or source in self.sources

    def takes(self) -> str:
        """What the setting accepts, e.g. `0–2`, `on/off`, `up to 4 strings`."""
        if self.kind is Kind.SWITCH:
            return "on/off"
        if self.kind is Kind.LIST:
            return f"up to {self.max_items} comma-separated strings"
        low = "" if self.low is None else number_text(self.low)
        high = "" if self.high is None else number_text(self.high)
        kind = "whole number" if self.kind is Kind.INTEGER else "number"
        return f"{kind} {low}–{high}"

    def parse(self, typed: str) -> object:
        """The value `typed` means; FieldError says what is accepted instead."""
        text = clean_text(typed).strip()
        if self.kind is Kind.SWITCH:
            if text.lower() in SWITCH_ON:
                return True
            if text.lower() in SWITCH_OFF:
                return False
            raise FieldError(f"{self.name} must be on or off, not `{shorten(text, 40)}`.")
        if self.kind is Kind.LIST:
            items = split_list(text)
            if not items:
                raise FieldError(f"{self.name} needs at least one string (or `default`).")
            if len(items) > self.max_items or any(len(i) > self.max_item_chars for i in items):
                raise FieldError(
                    f"{self.name} takes up to {self.max_items} comma-separated strings of at "
                    f"most {self.max_item_chars} characters."
                )
            return items
        number: float | int | None
        if self.kind is Kind.INTEGER:
            number = parse_integer(text)
        else:
            number = parse_decimal(text)
        if number is None:
            kind = "a whole number" if self.kind is Kind.INTEGER else "a number"
            raise FieldError(f"{self.name} must be {kind}, not `{shorten(text, 40)}`.")
        if (self.low is not None and number < self.low) or (
            self.high is not None and number > self.high
        ):
            low, high = number_text(self.low or 0), number_text(self.high or 0)
            raise FieldError(f"{self.name} must be from {low} to {high}.")
        return number

    def show(self, value: object) -> str:
        """A stored value as people read it (`END, STOP`, `on`, `0.7`)."""
        if value is None:
            return "default"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, int | float):
            return number_text(value)
        if isinstance(value, list | tuple):
            return ", ".join(_show_item(v) for v in value)
        return str(value)

    def current(self, config: ChannelConfig) -> object:
        """The effective value of this setting in a channel's config."""
        if hasattr(config.params, self.column):
            return getattr(config.params, self.column)
        return getattr(config, self.column)


def _show_item(item: object) -> str:
    """One list item as `split_list` would read it back."""
    escaped = str(item).replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"' if "," in escaped or escaped != escaped.strip() else escaped


PARAMS: tuple[Field, ...] = (
    Field("temperature", "temperature", Kind.NUMBER, "randomness", low=0, high=2),
    Field("top_p", "top_p", Kind.NUMBER, "nucleus sampling", low=0, high=1),
    Field("max_tokens", "max_tokens", Kind.INTEGER, "answer length", low=1, high=1_000_000),
    Field("context", "context_tokens", Kind.INTEGER, "context size", low=256, high=10_000_000),
    Field("seed", "seed", Kind.INTEGER, "repeatable sampling", low=-(2**31), high=2**31 - 1),
    Field("stop", "stop", Kind.LIST, "stop strings", max_items=4, max_item_chars=100),
    Field("reasoning", "show_reasoning", Kind.SWITCH, "show the model's reasoning"),
    Field(
        "safe_prompt",
        "mistral_safe_prompt",
        Kind.SWITCH,
        "Mistral's safety prompt",
        sources=frozenset({Source.MISTRAL}),
    ),
)
BY_NAME: Mapping[str, Field] = {f.name: f for f in PARAMS}
PARAM_NAMES: tuple[str, ...] = tuple(BY_NAME)

__all__ = ["BY_NAME", "PARAMS", "PARAM_NAMES", "Field", "FieldError", "Kind", "TextError"]
