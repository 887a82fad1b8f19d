"""Every rule that reads text as it shows takes what shows nothing from the one table in
bot.types.text: a key or an id as typed, a command's start, a secret in disguise, a
link's text in Matrix, a value quoted back. Each rule is judged through its public
function, for every character of every part of the table."""

from __future__ import annotations

import pytest

from bot.commands import TABLE
from bot.commands.parse import parse, plain_prefix
from bot.frontends.matrix.render import markdown_to_html
from bot.types.secrets import REDACTED, holds_key, redact
from bot.types.text import (
    BIDI_CONTROLS,
    BLANK_LETTERS,
    HIDDEN,
    IGNORABLES,
    INVISIBLE,
    JOINERS,
    LINE_SEPARATORS,
    MODIFIERS,
    TAGS,
    VARIATION_SELECTORS,
    ZERO_WIDTH,
    TextError,
    header_safe,
    quoted,
    strip_invisible,
    visible_id,
)

PARTS = {
    "zero width": ZERO_WIDTH,
    "joiners": JOINERS,
    "bidi controls": BIDI_CONTROLS,
    "ignorables": IGNORABLES,
    "variation selectors": VARIATION_SELECTORS,
    "tags": TAGS,
    "blank letters": BLANK_LETTERS,
}
PASSWORD = "Tr0ub4dor3xZ"


def missed(chars: str, caught: object) -> list[str]:
    """The characters of `chars` a rule lets through, as U+XXXX (a short failure)."""
    assert callable(caught)
    return [f"U+{ord(c):04X}" for c in chars if not caught(c)]


def test_the_table_is_its_parts() -> None:
    assert set(HIDDEN) == set("".join(PARTS.values()))
    assert set(INVISIBLE) == set(HIDDEN) | set(LINE_SEPARATORS)
    assert set(MODIFIERS) == set(VARIATION_SELECTORS) | set(TAGS)
    assert not any(c.isspace() for c in HIDDEN)  # a blank is no invisible character


def _key_cleaned(c: str) -> bool:
    return header_safe(f"{c}sk-abc123{c}", "API key") == "sk-abc123"


def _key_refused_or_cleaned(c: str) -> bool:
    """After a key, a modifier belongs to its last character: refused, never kept."""
    try:
        return header_safe(f"{c}sk-abc123{c}", "API key") == "sk-abc123"
    except TextError as err:
        return f"U+{ord(c):04X}" in str(err) and "position 10" in str(err)


def _id_refused(c: str) -> bool:
    try:
        visible_id(f"gpt{c}4o", "model id")
    except TextError as err:
        return f"U+{ord(c):04X}" in str(err) and "position 4" in str(err)
    return False


@pytest.mark.parametrize("part", PARTS, ids=str)
def test_a_key_or_an_id_reads_without_what_shows_nothing(part: str) -> None:
    chars = PARTS[part]
    cleaned = _key_refused_or_cleaned if chars in (VARIATION_SELECTORS, TAGS) else _key_cleaned
    assert missed(chars, cleaned) == []
    assert missed(chars, lambda c: holds_key(f"see sk-proj-A1b2{c}C3d4E5f6G7h8I9")) == []
    assert missed(chars, _id_refused) == []
    assert missed(chars, lambda c: strip_invisible(f" {c}{c} ") == "") == []  # no text


@pytest.mark.parametrize("part", PARTS, ids=str)
def test_a_secret_disguised_with_what_shows_nothing_is_redacted(part: str) -> None:
    def redacted(c: str) -> bool:
        return all(
            redact(f"it is {disguised}.", [PASSWORD], known=False) == f"it is {REDACTED}."
            for disguised in (c.join(PASSWORD), f"Tr0ub{c}4dor3xZ")
        )

    assert missed(PARTS[part], redacted) == []


@pytest.mark.parametrize("part", PARTS, ids=str)
def test_what_shows_nothing_before_a_command_is_taken_off(part: str) -> None:
    def command(c: str) -> bool:
        typed = f"{c}!key set openai sk-x"
        return plain_prefix(typed, "!") == "!key set openai sk-x" and parse(
            f"{c} /source claude", TABLE
        ).raw == {"source": "claude"}

    assert missed(PARTS[part], command) == []


@pytest.mark.parametrize("part", PARTS, ids=str)
def test_a_link_whose_text_hides_another_address_is_written_out(part: str) -> None:
    def written_out(c: str) -> bool:
        return not markdown_to_html(f"[goo{c}gle.com](https://evil.example/x)").startswith("<a")

    assert missed(PARTS[part], written_out) == []


@pytest.mark.parametrize("part", PARTS, ids=str)
def test_a_value_quoted_back_names_what_shows_nothing(part: str) -> None:
    assert missed(PARTS[part], lambda c: f"<U+{ord(c):04X}>" in quoted(f"gpt{c}4")) == []


def test_line_separators_are_invisible_around_a_key_and_breaks_where_text_shows() -> None:
    """Pasted after a key they go; inside a secret they are a line break, as `\\n` is; a
    quoted value and a link's text show them as the break (a blank) they are."""
    for sep in LINE_SEPARATORS:
        assert header_safe(f"sk-abc123{sep}", "API key") == "sk-abc123"
        assert redact(f"Tr0ub4{sep}dor3xZ", [PASSWORD], known=False) == REDACTED
        assert quoted(f"a{sep}b") == "`a b`"
        assert markdown_to_html(f"[google{sep}.com](https://evil.example/x)").startswith("<a")


def test_a_modifier_at_the_end_of_a_text_stays_with_its_character() -> None:
    """A variation selector or a flag's tags end an emoji; a prompt ending in one keeps it."""
    heart = "\u2764\ufe0f"
    england = "\U0001f3f4" + "".join(chr(0xE0000 + ord(c)) for c in "gbeng") + "\U000e007f"
    for emoji in (heart, england):
        assert strip_invisible(f"\u200b be nice {emoji}\u200b ") == f"be nice {emoji}"
        assert parse(f"/system be nice {emoji}", TABLE).raw["prompt"] == f"be nice {emoji}"
