"""The one registry of channel settings: type, range or choices, default, sources, display,
and where each goes in a provider request.

One entry drives how a value is checked (typed by people or written by code), how the
store keeps it (one column each) and merges it along channel → server → operator,
how `/params` and `/settings` show it, and which body field carries it to each source.
Adding a setting is one entry here and one migration. Pure: no I/O, no platform.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from bot.types import ReplyMode, Source
from bot.types.text import (
    MODEL_ID_CHARS,
    PROXY_URL_CHARS,
    QUOTE_CHARS,
    QUOTE_CLOSERS,
    SYSTEM_PROMPT_CHARS,
    TextError,
    apostrophe_at,
    clean_text,
    decimal_hint,
    normalize_text,
    number_text,
    opens_quote,
    out_of_range,
    parse_decimal,
    parse_whole_number,
    quoted,
    range_text,
    refuse_controls,
    switch_value,
)


class FieldError(ValueError):
    """A value a setting does not take; the message says what it does take."""


class Kind(StrEnum):
    TEXT = "text"
    CHOICE = "choice"
    NUMBER = "number"
    INTEGER = "integer"
    SWITCH = "switch"
    LIST = "list"


class Storage(StrEnum):
    """How the store keeps a value (one column per setting)."""

    TEXT = "text"
    SHORT = "short"  # a choice: a few characters
    DOUBLE = "double"
    INTEGER = "integer"
    BIGINT = "bigint"
    BOOLEAN = "boolean"
    JSON = "json"


_STORAGE = {
    Kind.TEXT: Storage.TEXT,
    Kind.CHOICE: Storage.SHORT,
    Kind.NUMBER: Storage.DOUBLE,
    Kind.INTEGER: Storage.INTEGER,
    Kind.SWITCH: Storage.BOOLEAN,
    Kind.LIST: Storage.JSON,
}

# The context window the bot budgets for when `context` is unset (a model's own size is
# not known to it); what `max_tokens` leaves of it is the conversation's room.
DEFAULT_CONTEXT_TOKENS = 8192
DEFAULT_ANSWER_TOKENS = 1024  # an answer's room when max_tokens is unset (a quarter at most)


def conversation_room(context: int | None, max_tokens: int | None) -> tuple[int, int]:
    """(the context size the bot budgets for, what the answer's room leaves of it for the
    system prompt, the history and the new message)."""
    size = context or DEFAULT_CONTEXT_TOKENS
    answer = max_tokens or min(DEFAULT_ANSWER_TOKENS, size // 4)
    return size, size - answer


# What a backslash escapes in a list value: a newline, a tab, itself, a comma or a quote
# (any of QUOTE_CHARS: `\«` is a «, not one that opens).
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", ",": ",", **{q: q for q in QUOTE_CHARS}}


def split_list(text: str) -> list[str]:
    """`END, "a,b", \\nUser:` → ["END", "a,b", "\\nUser:"]: commas split, quotes group.

    Quotes are "…", '…' and the typographic pairs phones and locales type (“…”, „…“,
    «…», 「…」: QUOTE_CLOSERS); an apostrophe inside a word (`don't`, `don’t`) is a
    letter of it. Inside a value `\\n` and `\\t` are a newline and a tab (stop strings
    often need one), `\\,` `\\"` `\\'` `\\\\` the character itself; any other backslash
    stays as typed. Spaces typed around a value are dropped, quoted or escaped ones kept.
    """
    items: list[str] = []
    current: list[tuple[str, bool]] = []  # (character, typed literally: quoted or escaped)
    closers = ""  # what closes the quote open, if one is
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                current.append((_ESCAPES[nxt], True))
            else:  # `\u0000`, `C:\dir`: no escape, both characters as typed
                current += [(char, True), (nxt, True)]
            i += 2
            continue
        if closers:
            if char in closers and not apostrophe_at(text, i):
                closers = ""
            else:
                current.append((char, True))
        elif (
            char in QUOTE_CLOSERS
            and not apostrophe_at(text, i)
            and opens_quote(char, [c for c, _ in current])
        ):
            closers = QUOTE_CLOSERS[char]
        elif char == ",":
            items.append(_trimmed(current))
            current = []
        else:
            current.append((char, False))
        i += 1
    if closers:
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


_SHOWN_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t"}


def _shown_char(text: str, i: int) -> str:
    char = text[i]
    if char in _SHOWN_ESCAPES:
        return _SHOWN_ESCAPES[char]
    return f"\\{char}" if char in QUOTE_CLOSERS and not apostrophe_at(text, i) else char


def _show_item(item: object) -> str:
    """One list item as `split_list` would read it back: a quote in it (but an apostrophe
    inside a word) escaped, so `«` or `"` opens none."""
    text = str(item)
    escaped = "".join(_shown_char(text, i) for i in range(len(text)))
    return f'"{escaped}"' if "," in escaped or escaped != escaped.strip() else escaped


def _and(names: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


@dataclass(frozen=True, slots=True)
class Field:
    """One channel setting."""

    name: str  # what people type (/params <name>) and the key in ChannelConfig.values
    kind: Kind
    help: str
    column: str = ""  # channel_configs column; default: the name
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    max_items: int = 0  # LIST: at most this many
    max_item_chars: int = 0  # LIST: each at most this long
    max_chars: int = 0  # TEXT: at most this long (0: no limit here)
    default: object = None  # when no scope sets it (None: the provider's own)
    # Who uses it (None: every source; by default those `wire` sends it to).
    sources: frozenset[Source] | None = None
    param: bool = False  # set with /params <name>
    # The request body field that carries it, per source (missing: not sent there).
    wire: Mapping[Source, str] = field(default_factory=dict)
    # A source whose accepted range is narrower: the value is clamped into it.
    wire_range: Mapping[Source, tuple[float, float]] = field(default_factory=dict)
    # LIST: a source sent only the first so many items (the rest are kept for others).
    wire_items: Mapping[Source, int] = field(default_factory=dict)
    # A source that takes the value inside an object: how to make it.
    wire_shape: Mapping[Source, Callable[[Any], object]] = field(default_factory=dict)
    storage: Storage | None = None  # default: by kind
    # A value meaning "off here" (SillyTavern's top_k 0, seed -1, reasoning effort auto):
    # stored, it wins over a wider scope's value like any other, and it is never sent.
    # `/params <name> off` sets it.
    off: object = None

    def __post_init__(self) -> None:
        if self.sources is None and self.wire and set(self.wire) != set(Source):
            object.__setattr__(self, "sources", frozenset(self.wire))

    @property
    def key(self) -> str:
        return self.column or self.name

    @property
    def stored_as(self) -> Storage:
        return self.storage or _STORAGE[self.kind]

    def applies_to(self, source: Source) -> bool:
        return self.sources is None or source in self.sources

    def takes(self) -> str:
        """What the setting accepts, e.g. `number 0–2`, `on/off`, `up to 4 strings`."""
        if self.off is not None and self.kind is not Kind.CHOICE:
            return f"{replace(self, off=None).takes()}, or off"
        if self.kind is Kind.SWITCH:
            return "on/off"
        if self.kind is Kind.CHOICE:
            return "/".join(self.choices)
        if self.kind is Kind.LIST:
            return f"up to {self.max_items} comma-separated strings"
        if self.kind is Kind.TEXT:
            return "text"
        kind = "whole number" if self.kind is Kind.INTEGER else "number"
        if self.low is None or self.high is None:
            return f"{kind} {range_text(self.low, self.high)}".rstrip()
        return f"{kind} {number_text(self.low)}–{number_text(self.high)}"

    def sent_in_part(self, value: object) -> str:
        """A sentence naming the sources sent only the first items of this list ("" when
        each gets it whole): said alike by /params and /preset import."""
        if not isinstance(value, list | tuple):
            return ""
        cut: dict[int, list[str]] = {}
        for source in Source:
            first = self.wire_items.get(source)
            if first is not None and len(value) > first:
                cut.setdefault(first, []).append(source.value)
        if not cut:
            return ""
        parts = [
            f"{_and(names)} {'is' if len(names) == 1 else 'are'} sent the first {first}"
            for first, names in sorted(cut.items())
        ]
        whole = [s.value for s in Source if s in self.wire and s not in self.wire_items]
        rest = f" ({_and(whole)} all of them)" if whole else ""
        return (
            f"Of the {len(value)} {self.help}, {'; '.join(parts)}{rest}, as SillyTavern sends them."
        )

    # -- values on the way in ---------------------------------------------------------------

    def parse(self, typed: str) -> object:
        """The value `typed` means; FieldError says what is accepted instead. Free text
        (and a list of it) loses its control characters; a number, a switch or a choice
        typed with one is refused: dropping it would make `1<NUL>0` the number 10."""
        if self.kind in (Kind.TEXT, Kind.LIST):
            text = clean_text(typed).strip()
        else:
            try:
                text = refuse_controls(normalize_text(typed), f"`{self.name}`").strip()
            except TextError as err:
                raise FieldError(str(err)) from None
        if self.off is not None and text.lower() == "off":
            return self.off
        if self.kind is Kind.SWITCH:
            switch = switch_value(text)
            if switch is not None:
                return switch
            raise FieldError(f"{self.name} must be on or off, not {quoted(text, 40)}.")
        if self.kind is Kind.CHOICE:
            if text.lower() in self.choices:
                return text.lower()
            raise FieldError(f"{self.name} must be one of: {', '.join(self.choices)}.")
        if self.kind is Kind.TEXT:
            return self.check(text)
        if self.kind is Kind.LIST:
            items = split_list(text)
            if not items:
                raise FieldError(f"{self.name} needs at least one string (or `default`).")
            return self.check(items)
        number: float | int | None
        whole = self.kind is Kind.INTEGER
        number = parse_whole_number(text) if whole else parse_decimal(text)
        if number is None:
            kind = "a whole number" if whole else "a number"
            hint = decimal_hint(text, whole=whole)
            raise FieldError(f"{self.name} must be {kind}, not {quoted(text, 40)}.{hint}")
        return self.check(number)

    def check(self, value: object) -> object:
        """A value written by code (or parsed): the right type and range, text cleaned."""
        if self.kind is Kind.SWITCH:
            if not isinstance(value, bool):
                raise FieldError(f"{self.name} must be on or off")
            return value
        if self.kind is Kind.CHOICE:
            text = str(value.value if isinstance(value, StrEnum) else value)
            if text not in self.choices:
                raise FieldError(f"{self.name} must be one of: {', '.join(self.choices)}.")
            return text
        if self.kind is Kind.TEXT:
            if not isinstance(value, str):
                raise FieldError(f"{self.name} must be text")
            text = clean_text(value)
            if self.max_chars and len(text) > self.max_chars:
                raise FieldError(f"{self.name} takes at most {self.max_chars:,} characters.")
            return text
        if self.kind is Kind.LIST:
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise FieldError(f"{self.name} must be a list of strings")
            items = [clean_text(item) for item in value if isinstance(item, str)]
            if len(items) != len(value):
                raise FieldError(f"{self.name} must be a list of strings")
            # An empty string (or one of control characters only, which cleaning empties)
            # would be a stop string found at once: every answer would come back empty.
            # (An empty list is a value: none here, whatever the server sets.)
            items = [item for item in items if item]
            if value and not items:
                raise FieldError(f"{self.name} needs at least one string that is not empty")
            if len(items) > self.max_items or any(len(i) > self.max_item_chars for i in items):
                raise FieldError(
                    f"{self.name} takes up to {self.max_items} comma-separated strings of at "
                    f"most {self.max_item_chars} characters."
                )
            return items
        integer = self.kind is Kind.INTEGER
        if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
            raise FieldError(f"{self.name} must be {'a whole number' if integer else 'a number'}")
        if out_of_range(value, self.low, self.high):
            raise FieldError(f"{self.name} must be {range_text(self.low, self.high)}.")
        return value if integer else float(value)

    def fitting(self, items: Sequence[str]) -> tuple[list[str], int]:
        """Of a LIST's `items` (a file's, not typed), those `check` takes: the first
        `max_items` of those not empty and of at most `max_item_chars` (cleaned); and how
        many more there were, left out. A SillyTavern preset has no limit."""
        cleaned = (clean_text(item) for item in items)
        fit = [item for item in cleaned if item and len(item) <= self.max_item_chars]
        kept = fit[: self.max_items]
        return kept, sum(1 for item in items if clean_text(item)) - len(kept)

    # -- values on the way out --------------------------------------------------------------

    def outside(self, stored: object) -> bool:
        """A stored value no longer accepted (an older version took a wider range, or a
        choice since renamed): passed over as unset, never sent, and said where an admin
        looks (bot.commands.scopes.passed_over_notes)."""
        if self.kind is Kind.CHOICE:
            return isinstance(stored, str) and stored not in self.choices
        if isinstance(stored, bool) or not isinstance(stored, int | float):
            return False
        return out_of_range(stored, self.low, self.high)

    def shown_stored(self, stored: object) -> str:
        """A stored value passed over (`outside`), as a note quotes it: a number plainly,
        anything else quoted (cleaned, one short line): it may be anything by now."""
        if isinstance(stored, int | float) and not isinstance(stored, bool):
            return self.show(stored)
        return quoted(str(stored), 40)

    def outward(self, stored: object) -> object:
        """A stored value as the core uses it (a tuple for a list)."""
        if self.kind is Kind.LIST and isinstance(stored, list):
            return tuple(stored)
        return stored

    def show(self, value: object) -> str:
        """A value as people read it (`END, STOP`, `on`, `0.7`, `default`)."""
        if value is None:
            return "default"
        if value == "" and self.kind is Kind.TEXT:
            return "none"
        if self.off is not None and value == self.off and self.kind is not Kind.CHOICE:
            return "off"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, int | float):
            return number_text(value)
        if isinstance(value, list | tuple):
            return ", ".join(_show_item(v) for v in value)
        return str(value)

    def to_wire(self, value: object, source: Source) -> tuple[str, object] | None:
        """(body field, value) carrying this setting to `source`, or None: not sent."""
        name = self.wire.get(source)
        if name is None or value is None or value is False or value == ():
            return None
        if self.off is not None and value == self.off:
            return None
        if isinstance(value, tuple | list):
            first = self.wire_items.get(source)
            return name, list(value if first is None else value[:first])
        narrow = self.wire_range.get(source)
        if narrow is not None and isinstance(value, int | float):
            value = min(narrow[1], max(narrow[0], value))
        shape = self.wire_shape.get(source)
        return name, value if shape is None else shape(value)


def _every(name: str) -> Mapping[Source, str]:
    return MappingProxyType(dict.fromkeys(Source, name))


def _to(name: str, *sources: Source) -> Mapping[Source, str]:
    return MappingProxyType(dict.fromkeys(sources, name))


_PENALTY_SOURCES = (Source.OPENAI, Source.MISTRAL, Source.CUSTOM)


FIELDS: tuple[Field, ...] = (
    Field(
        "source",
        Kind.CHOICE,
        "the chat completion source",
        choices=tuple(s.value for s in Source),
        default=Source.OPENAI.value,
    ),
    Field("model", Kind.TEXT, "the model that answers", max_chars=MODEL_ID_CHARS),
    Field(
        "proxy_url", Kind.TEXT, "reverse proxy or custom endpoint URL", max_chars=PROXY_URL_CHARS
    ),
    Field("resolved_url", Kind.TEXT, "the URL in use after the /v1 fix", max_chars=PROXY_URL_CHARS),
    Field("bypass_status_check", Kind.SWITCH, "chat even when the check fails", default=False),
    Field("show_external_models", Kind.SWITCH, "offer the endpoint's models", default=False),
    Field("system_prompt", Kind.TEXT, "the system prompt", max_chars=SYSTEM_PROMPT_CHARS),
    # SillyTavern's other two prompts of a preset (its `nsfw` and `jailbreak`).
    Field(
        "auxiliary_prompt",
        Kind.TEXT,
        "the auxiliary prompt: after the character's scenario",
        max_chars=SYSTEM_PROMPT_CHARS,
    ),
    Field(
        "post_history_prompt",
        Kind.TEXT,
        "post-history instructions: a system message after the chat",
        max_chars=SYSTEM_PROMPT_CHARS,
    ),
    # SillyTavern's post-history prompt switched off in a preset's prompt order: then
    # neither it nor a character's post_history_instructions is sent (openai.js
    # preparePromptsForChatCompletion replaces only a prompt the order sends).
    Field(
        "post_history_off",
        Kind.SWITCH,
        "post-history instructions switched off: a character's are not sent either",
        default=False,
    ),
    # SillyTavern's Claude "Assistant Prefill": the answer is begun with this text, a last
    # assistant turn Claude writes on from (openai.js sends it for Claude only).
    Field(
        "assistant_prefill",
        Kind.TEXT,
        "Claude's answer begins with this text (not shown)",
        max_chars=SYSTEM_PROMPT_CHARS,
        sources=frozenset({Source.CLAUDE}),
    ),
    # SillyTavern's formats of a card's world info, scenario and personality (a preset's
    # `wi_format`, `scenario_format`, `personality_format`); unset: SillyTavern's default
    # (bot.characters.FORMATS), "": the text as it is (world info) or none.
    Field(
        "wi_format",
        Kind.TEXT,
        "the format of the lorebook's entries before and after the card: {0} is their text",
        max_chars=SYSTEM_PROMPT_CHARS,
    ),
    Field(
        "scenario_format",
        Kind.TEXT,
        "the format of the card's scenario: {{scenario}} is its text",
        max_chars=SYSTEM_PROMPT_CHARS,
    ),
    Field(
        "personality_format",
        Kind.TEXT,
        "the format of the card's personality: {{personality}} is its text",
        max_chars=SYSTEM_PROMPT_CHARS,
    ),
    Field(
        "reply_mode",
        Kind.CHOICE,
        "when the bot answers",
        choices=tuple(m.value for m in ReplyMode),
        default=ReplyMode.MENTION.value,
    ),
    Field(
        "temperature",
        Kind.NUMBER,
        "randomness",
        low=0,
        high=2,
        param=True,
        wire=_every("temperature"),
        wire_range={Source.CLAUDE: (0.0, 1.0)},  # Claude's range is 0–1
    ),
    Field(
        "top_p", Kind.NUMBER, "nucleus sampling", low=0, high=1, param=True, wire=_every("top_p")
    ),
    Field(
        "top_k",
        Kind.INTEGER,
        "sample from the k likeliest tokens",
        low=0,
        high=1000,
        sources=frozenset({Source.CLAUDE, Source.CUSTOM}),
        param=True,
        wire=_to("top_k", Source.CLAUDE, Source.CUSTOM),
        off=0,
    ),
    Field(
        "frequency_penalty",
        Kind.NUMBER,
        "less repetition of frequent tokens",
        low=-2,
        high=2,
        sources=frozenset(_PENALTY_SOURCES),
        param=True,
        wire=_to("frequency_penalty", *_PENALTY_SOURCES),
    ),
    Field(
        "presence_penalty",
        Kind.NUMBER,
        "more new topics",
        low=-2,
        high=2,
        sources=frozenset(_PENALTY_SOURCES),
        param=True,
        wire=_to("presence_penalty", *_PENALTY_SOURCES),
    ),
    Field(
        "reasoning_effort",
        Kind.CHOICE,
        "how long reasoning models think",
        choices=("auto", "minimal", "low", "medium", "high"),
        sources=frozenset({Source.OPENAI, Source.CUSTOM}),
        param=True,
        wire=_to("reasoning_effort", Source.OPENAI, Source.CUSTOM),
        off="auto",  # the model's own
    ),
    Field(
        "thinking_budget",
        Kind.INTEGER,
        "tokens Claude may think first (extended thinking)",
        low=1024,
        high=128_000,
        sources=frozenset({Source.CLAUDE}),
        param=True,
        wire=_to("thinking", Source.CLAUDE),
        wire_shape={Source.CLAUDE: lambda n: {"type": "enabled", "budget_tokens": n}},
    ),
    Field(
        "max_tokens",
        Kind.INTEGER,
        "answer length",
        low=1,
        high=1_000_000,
        param=True,
        # o-series models refuse max_tokens; max_completion_tokens works for all of OpenAI's.
        wire={**_every("max_tokens"), Source.OPENAI: "max_completion_tokens"},
    ),
    Field(
        "context",
        Kind.INTEGER,
        "context size",
        column="context_tokens",
        low=256,
        high=10_000_000,
        param=True,
    ),
    Field(
        "seed",
        Kind.INTEGER,
        "repeatable sampling",
        low=-1,
        high=2**31 - 1,
        param=True,
        storage=Storage.BIGINT,
        off=-1,  # as SillyTavern's -1: no seed
        wire={Source.OPENAI: "seed", Source.CUSTOM: "seed", Source.MISTRAL: "random_seed"},
    ),
    Field(
        "stop",
        Kind.LIST,
        "stop strings",
        max_items=16,
        max_item_chars=100,
        param=True,
        wire={**_every("stop"), Source.CLAUDE: "stop_sequences"},
        # As SillyTavern sends them (openai.js openai_max_stop_strings, line 141; line
        # 1857 for every source but Claude, which gets them all at line 1891): OpenAI
        # refuses more than 4.
        wire_items={s: 4 for s in Source if s is not Source.CLAUDE},
    ),
    Field(
        "reasoning",
        Kind.SWITCH,
        "show the model's reasoning",
        column="show_reasoning",
        default=False,
        param=True,
    ),
    # SillyTavern's "Continue prefill": continuing, the answer so far is sent as the start
    # of Claude's own; off, Claude is asked to go on from it. On here unless set (Claude
    # has always continued so here); SillyTavern's own default is off.
    Field(
        "continue_prefill",
        Kind.SWITCH,
        "continue an answer as Claude's own start (off: ask Claude to go on)",
        default=True,
        sources=frozenset({Source.CLAUDE}),
        param=True,
    ),
    Field(
        "vision",
        Kind.CHOICE,
        "send images to the model (auto: when it is known to see)",
        choices=("auto", "on", "off"),
        default="auto",
        param=True,
        storage=Storage.SHORT,
    ),
    Field(
        "safe_prompt",
        Kind.SWITCH,
        "Mistral's safety prompt",
        column="mistral_safe_prompt",
        default=False,
        sources=frozenset({Source.MISTRAL}),
        param=True,
        wire={Source.MISTRAL: "safe_prompt"},
    ),
)


class Registry:
    """A set of fields and what follows from them; FIELDS' is `REGISTRY`."""

    def __init__(self, fields: Iterable[Field]) -> None:
        self.fields: tuple[Field, ...] = tuple(fields)
        for f in self.fields:
            # Whom /params names a setting for, whom it is sent to: one set of sources.
            if f.wire and set(f.wire) != (f.sources or set(Source)):
                raise ValueError(f"{f.name}: its sources and the sources it is sent to differ")
        self.by_name: Mapping[str, Field] = MappingProxyType({f.name: f for f in self.fields})
        # Which setting a request body field carries (an error naming it names the setting).
        by_wire: dict[str, Field] = {}
        for f in self.fields:
            for sent in set(f.wire.values()):
                if by_wire.setdefault(sent, f) is not f:
                    raise ValueError(f"{sent}: sent for both {by_wire[sent].name} and {f.name}")
        self.by_wire: Mapping[str, Field] = MappingProxyType(by_wire)
        self.by_key: Mapping[str, Field] = MappingProxyType({f.key: f for f in self.fields})
        self.params: tuple[Field, ...] = tuple(f for f in self.fields if f.param)
        self.defaults: Mapping[str, object] = MappingProxyType(
            {f.name: f.default for f in self.fields}
        )

    def checked(self, changes: Mapping[str, object]) -> dict[str, object]:
        """Changes by column, each checked (None unsets); FieldError names a bad one."""
        unknown = sorted(set(changes) - set(self.by_key))
        if unknown:
            raise FieldError(f"unknown setting(s): {', '.join(unknown)}")
        return {
            key: None if value is None else self.by_key[key].check(value)
            for key, value in changes.items()
        }

    def merge(
        self, rows: Sequence[Any], operator: Mapping[str, object]
    ) -> tuple[dict[str, object], dict[str, str], dict[str, tuple[tuple[str, object], ...]]]:
        """(values, origins, passed over): each setting from the nearest row that sets it
        (rows nearest first: channel, server), else the operator's default, else the
        built-in one. A stored value `outside` today's range is passed over, and kept
        with where it is stored (channel, server) in the third, by setting name."""
        values: dict[str, object] = {}
        origins: dict[str, str] = {}
        passed: dict[str, tuple[tuple[str, object], ...]] = {}
        for f in self.fields:
            for row in rows:
                stored = getattr(row, f.key, None)
                if stored is None:
                    continue
                where = "channel" if row.channel_id else "server"
                if f.outside(stored):
                    passed[f.name] = (*passed.get(f.name, ()), (where, stored))
                    continue
                values[f.name] = f.outward(stored)
                origins[f.name] = where
                break
            else:
                if operator.get(f.name) is not None:
                    values[f.name], origins[f.name] = operator[f.name], "operator"
                else:
                    values[f.name], origins[f.name] = f.default, "default"
        return values, origins, passed

    def request_options(self, values: Mapping[str, object], source: Source) -> dict[str, object]:
        """The body fields the settings send to `source` (only those set)."""
        options: dict[str, object] = {}
        for f in self.fields:
            wired = f.to_wire(values.get(f.name), source)
            if wired is not None:
                options[wired[0]] = wired[1]
        return options


REGISTRY = Registry(FIELDS)
PARAMS = REGISTRY.params
BY_NAME = REGISTRY.by_name
PARAM_NAMES: tuple[str, ...] = tuple(f.name for f in PARAMS)

__all__ = [
    "BY_NAME",
    "FIELDS",
    "PARAMS",
    "PARAM_NAMES",
    "REGISTRY",
    "Field",
    "FieldError",
    "Kind",
    "Registry",
    "Storage",
    "TextError",
]
