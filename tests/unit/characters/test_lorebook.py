"""Lorebook key matching on its own (the whole prompt's use of it: test_prompt.py)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bot.characters.lorebook import _whole_word

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
