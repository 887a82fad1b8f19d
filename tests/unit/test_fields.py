"""The /params registry: what each setting takes, how it is shown."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.fields import (
    BY_NAME,
    PARAMS,
    REGISTRY,
    Field,
    FieldError,
    Kind,
    Registry,
    number_text,
    split_list,
)
from bot.types import Source


@pytest.mark.parametrize(
    ("typed", "items"),
    [
        ("END, STOP", ["END", "STOP"]),
        ('"a,b"', ["a,b"]),
        ('"a,b", END', ["a,b", "END"]),
        ("\\nUser:, ###", ["\nUser:", "###"]),
        ("' spaced '", [" spaced "]),
        ("a,,b,", ["a", "b"]),
        ("a\\,b, \\tX", ["a,b", "\tX"]),
        # No escape: the backslash stays (it was dropped: `\u0000` became `u0000`).
        ("\\u0000, C:\\dir, \\\\", ["\\u0000", "C:\\dir", "\\"]),
        # A phone's smart quotes group as "…" does (they were kept: `“a`, `b”`, `END`).
        ("\u201ca,b\u201d, END", ["a,b", "END"]),
        ("\u201ea,b\u201c, \u00abc,d\u00bb, \u300ce,f\u300d", ["a,b", "c,d", "e,f"]),
        ("\u2018 a,b \u2019, \u00bbc,d\u00ab, \u300ee,f\u300f", [" a,b ", "c,d", "e,f"]),
        ("\u201ca\u00bb,\u201d", ["a\u00bb,"]),  # “ closes only with ” (or „)
        ("\\\u00ab, \\\u201c", ["\u00ab", "\u201c"]),  # escaped: the quote itself
        # An apostrophe inside a word is a letter of it, a phone's (’) as a keyboard's.
        ("don\u2019t, it's", ["don\u2019t", "it's"]),
        ("\u2018rock\u2019n\u2019roll\u2019, 'don't'", ["rock\u2019n\u2019roll", "don't"]),
    ],
)
def test_split_list(typed: str, items: list[str]) -> None:
    assert split_list(typed) == items


def test_a_typographic_quote_inside_a_value_is_part_of_it() -> None:
    """Review: `12”` (inches) opened a quote that never closed."""
    assert split_list("12\u201d, END") == ["12\u201d", "END"]
    assert split_list("a\u00bb, b") == ["a\u00bb", "b"]
    assert split_list(" \u201ca,b\u201d , END") == ["a,b", "END"]


@pytest.mark.parametrize("typed", ['"a,b', "\u201ca,b", "\u00aba,b\u201d", "\u300ca\u300f"])
def test_split_list_unclosed_quote(typed: str) -> None:
    with pytest.raises(FieldError, match="quote"):
        split_list(typed)


@pytest.mark.parametrize(
    "items",
    [["\u00ab", "\u201ca\u201d"], ['a"b', 'x,"y'], ["don't", "\u300c"], ["\u2018q\u2019 ", "\\"]],
)
def test_a_list_shown_reads_back_as_itself(items: list[str]) -> None:
    """A stop string with a quote in it is shown so that typing it back stores it."""
    assert split_list(BY_NAME["stop"].show(tuple(items))) == items


@pytest.mark.parametrize(
    ("name", "typed", "value"),
    [
        ("temperature", "0.7", 0.7),
        ("temperature", "2", 2.0),
        ("max_tokens", "512", 512),
        ("seed", "2147483647", 2**31 - 1),
        # SillyTavern's off values: `off`, or as SillyTavern writes them (cards probe)
        ("seed", "off", -1),
        ("seed", "-1", -1),
        ("top_k", "off", 0),
        ("reasoning_effort", "auto", "auto"),
        ("reasoning_effort", "OFF", "auto"),
        ("stop", '"a,b"', ["a,b"]),
        ("reasoning", "ON", True),
        ("safe_prompt", "off", False),
    ],
)
def test_parse_good(name: str, typed: str, value: object) -> None:
    assert BY_NAME[name].parse(typed) == value


@pytest.mark.parametrize(
    ("name", "typed", "says"),
    [
        ("temperature", "3", "from 0 to 2"),
        ("temperature", "١", "must be a number"),
        ("seed", "0_1", "whole number"),
        ("seed", "2147483648", "from -1 to 2147483647"),
        ("seed", "-2", "from -1 to 2147483647"),
        ("max_tokens", "1.5", "whole number"),
        ("stop", ",".join("abcdefghijklmnopq"), "up to 16"),
        ("reasoning", "maybe", "on or off"),
        ("stop", " , ", "at least one"),
    ],
)
def test_parse_bad_says_what_is_taken(name: str, typed: str, says: str) -> None:
    with pytest.raises(FieldError) as err:
        BY_NAME[name].parse(typed)
    assert says in str(err.value)
    assert "e+" not in str(err.value)


def test_a_range_open_at_one_end_is_worded_as_such() -> None:
    # Command options and settings word a range by the one rule (bot.fields.range_text).
    at_most = replace(BY_NAME["context"], low=None, high=10)
    assert at_most.takes() == "whole number at most 10"
    with pytest.raises(FieldError, match=r"context must be at most 10\."):
        at_most.parse("11")
    at_least = replace(BY_NAME["temperature"], low=1, high=None)
    assert at_least.takes() == "number at least 1"
    with pytest.raises(FieldError, match=r"temperature must be at least 1\."):
        at_least.parse("0.5")
    assert at_least.parse("1e3") == 1000.0


def test_show_and_takes() -> None:
    assert BY_NAME["stop"].show(("END", "STOP")) == "END, STOP"
    assert BY_NAME["stop"].show(("a,b", "\nUser:")) == '"a,b", \\nUser:'
    assert BY_NAME["context"].show(10_000_000) == "10000000"
    assert BY_NAME["temperature"].show(0.70) == "0.7"
    assert BY_NAME["reasoning"].show(True) == "on"
    assert BY_NAME["seed"].takes() == "whole number -1–2147483647, or off"
    assert BY_NAME["seed"].show(-1) == "off" and BY_NAME["top_k"].show(0) == "off"
    assert BY_NAME["reasoning_effort"].show("auto") == "auto"
    assert BY_NAME["system_prompt"].show("") == "none"
    assert BY_NAME["source"].takes() == "openai/claude/mistral/custom"
    assert number_text(1e7) == "10000000"


@pytest.mark.parametrize(
    ("name", "off"), [("seed", -1), ("top_k", 0), ("reasoning_effort", "auto")]
)
def test_a_value_that_means_off_is_never_sent(name: str, off: object) -> None:
    """Cards probe: a channel's preset with top_k 0, seed -1 or effort auto had the
    server's top_k 40, seed 42 and effort medium sent: "off" was stored as unset."""
    field = BY_NAME[name]
    for source in Source:
        assert field.to_wire(off, source) is None


def test_a_field_is_named_for_the_sources_it_is_sent_to() -> None:
    """Review: `wire` without `sources` had /params name min_p for every source while only
    custom endpoints were sent it (the seed, never sent to Claude, was named for it)."""
    min_p = Field("min_p", Kind.NUMBER, "x", low=0, high=1, wire={Source.CUSTOM: "min_p"})
    assert min_p.sources == {Source.CUSTOM} and not min_p.applies_to(Source.OPENAI)
    assert not BY_NAME["seed"].applies_to(Source.CLAUDE)
    both = replace(min_p, sources=frozenset({Source.CUSTOM, Source.OPENAI}))
    with pytest.raises(ValueError, match="min_p: its sources and the sources it is sent to"):
        Registry([*REGISTRY.fields, both])


def test_source_only_fields() -> None:
    safe = BY_NAME["safe_prompt"]
    assert safe.applies_to(Source.MISTRAL) and not safe.applies_to(Source.OPENAI)
    # Whom a parameter is named for and whom it is sent to are the same sources.
    for f in PARAMS:
        value = f.high if f.high is not None else (f.choices[-1] if f.choices else True)
        sent = {source for source in Source if f.to_wire(value, source) is not None}
        assert not f.wire or sent == {s for s in Source if f.applies_to(s)}, f.name
    assert BY_NAME["top_k"].applies_to(Source.CLAUDE) and BY_NAME["top_k"].applies_to(Source.CUSTOM)
    assert not BY_NAME["thinking_budget"].applies_to(Source.OPENAI)
    assert not BY_NAME["reasoning_effort"].applies_to(Source.CLAUDE)


def test_stop_strings_go_to_each_source_as_sillytavern_sends_them() -> None:
    """Claude gets every stop string; the others the first 4 (openai.js
    openai_max_stop_strings), OpenAI refusing more."""
    stop = BY_NAME["stop"].parse("a, b, c, d, e, f")
    assert BY_NAME["stop"].to_wire(stop, Source.CLAUDE) == ("stop_sequences", list("abcdef"))
    for source in (Source.OPENAI, Source.MISTRAL, Source.CUSTOM):
        assert BY_NAME["stop"].to_wire(stop, source) == ("stop", list("abcd"))
