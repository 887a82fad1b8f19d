"""Lorebook key matching on its own (the whole prompt's use of it: test_prompt.py)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bot.characters.card import card_from_object
from bot.characters.lorebook import _whole_word, not_used
from tests.unit.characters.samples import v2

# Word and non-word characters, ASCII and not, so both sides of every boundary come up.
_CHARS = st.sampled_from([*"ab_1 .+-\n", "é", "ß", "٣", "漢", "😀", "\u0301"])


@given(st.text(_CHARS, min_size=1, max_size=4), st.text(_CHARS, max_size=40))
def test_whole_word_is_sillytaverns_pattern(needle: str, text: str) -> None:
    """SillyTavern's pattern is JavaScript's without the `u` flag: `\\W` is any
    character but ASCII letters, digits and `_` (Python's re.ASCII)."""
    pattern = re.compile(rf"(?:^|\W){re.escape(needle)}(?:$|\W)", re.ASCII)
    assert _whole_word(needle, text) == bool(pattern.search(text))


def test_whole_words_next_to_letters_outside_ascii_as_sillytavern_finds_them() -> None:
    assert _whole_word("魔法", "魔法使いの弟子")  # no spaces in Japanese: found, as in ST
    assert _whole_word("caf", "un café")  # é is no word character to JavaScript's \W
    assert not _whole_word("caf", "cafe")


def test_whole_word_finds_a_later_standalone_one() -> None:
    assert _whole_word("cat", "concatenated cats, then a cat.")
    assert not _whole_word("cat", "concatenated cats")
    assert _whole_word("C++", "I write C++ daily")
    assert not _whole_word("C++", "xC++")


def _entry(content: str, **extensions: object) -> dict[str, object]:
    return {"keys": ["k"], "content": content, "enabled": True, "extensions": extensions}


def test_what_sillytavern_does_with_a_card_that_is_not_done_here_is_named() -> None:
    """Features probe: a card whose lorebook entries SillyTavern uses by chance (30%),
    one of an inclusion group, sticky, or with V3 decorators, or that carries regex
    scripts, was imported without a word: here every such entry is used whenever it
    matches, and the scripts never run."""
    card = v2()
    assert not_used(card_from_object(card)) == ()  # SillyTavern's own export: 100%
    data = card["data"]
    data["extensions"]["regex_scripts"] = [
        {"scriptName": "a", "findRegex": "/x/g"},
        {"scriptName": "b", "disabled": True},
    ]
    data["character_book"]["entries"] = [
        _entry("chance", probability=30, useProbability=True),
        _entry("chance, by default", probability="50"),  # useProbability ?? true
        _entry("not used by chance", probability=30, useProbability=False),
        _entry("sure", probability=None),  # null ?? 100
        _entry("rain", group="weather, mood"),
        _entry("sun", group="weather"),
        _entry("alone", group="lonely"),  # a group of one picks nothing
        _entry("stays", sticky=2, cooldown=0),
        _entry("@@depth 3\n@@activate\n@@role<b>x\nText."),
        {**_entry("off", probability=1, sticky=3), "enabled": False},
    ]
    assert not_used(card_from_object(card)) == (
        "the chance of 2 lorebook entries to be used (here always used when matched)",
        "1 inclusion group (here every entry of a group that matches is used)",
        "the sticky, cooldown or delay of 1 lorebook entry",
        "the lorebook decorators `@@depth`, `@@role`",
        "its 1 regex script",
    )
