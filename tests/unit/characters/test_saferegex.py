"""Lorebook regex keys: common patterns run, exponential and backtracking shapes do not."""

from __future__ import annotations

import re

import pytest

from bot.characters.saferegex import MAX_STEPS, SafePattern, Unsafe, compile_key


@pytest.mark.parametrize(
    "pattern",
    [
        r"\b(sword|blade)s?\b",
        r"(?i)dragon",
        r"[a-z]+ing\b",
        r"colou?r",
        r"(?:ha){2,5}",
        r"x(?=.*y)",
        r"(?<name>abc)",  # JavaScript's named group, read as Python's
        r"\d{4}-\d{2}",
        r"[\]\\]",
        r"a{,3}b",
        r"lit{eral",
    ],
)
def test_ordinary_patterns_run(pattern: str) -> None:
    safe = SafePattern(pattern, 0)
    assert safe.steps(2_000) <= MAX_STEPS


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a+)+$", "itself repeats"),
        (r"(a|aa)*b", "alternates"),
        (r"(?:x*)*", "itself repeats"),
        (r"(\w)\1", "backreference"),
        (r"(?P<q>a)(?P=q)", "backreference"),
        (r"(a)?(?(1)b|c)", "conditional"),
        (r".*.*.*.*x", "more than 3 open-ended"),
        (r"a**", "repeat of a repeat"),
        (r"(", "unclosed"),
        (r"a)", "unbalanced"),
        (r"[abc", "unclosed ["),
        (r"a{5000}", "over 1000"),
        ("(" * 30 + ")" * 30, "nested more than 20"),
        ("x" * 501, "longer than 500"),
        # Verbose mode: Python reads `(a+) +` as `(a+)+`, and a `#` comment hid the rest
        # from the parser; both froze the process for hours on 40 a's.
        (r"(?x)(a+) +$", "verbose mode"),
        ("(?x)#[\n(a+)+$#]", "verbose mode"),
        (r"(?x:(a+) +)$", "verbose mode"),
        (r"(?ix)(a+) +$", "verbose mode"),
        (r"(?i-x:a)", "verbose mode"),
    ],
)
def test_dangerous_or_broken_patterns_are_refused(pattern: str, why: str) -> None:
    with pytest.raises(Unsafe, match=re.escape(why)):
        SafePattern(pattern, 0)


def test_cost_grows_with_text_so_long_texts_skip_quadratic_patterns() -> None:
    safe = SafePattern(r"a*a*b", 0)
    assert safe.steps(100) <= MAX_STEPS < safe.steps(1_000)


def test_sillytavern_delimited_keys_and_flags() -> None:
    assert compile_key("/Sword/i", False, True).search("a SWORD")
    assert not compile_key("/Sword/", True, True).search("a SWORD")
    assert compile_key("/a\\/b/", False, True).search("a/b")
    with pytest.raises(Unsafe):
        compile_key("/a/b/", False, True)  # an unescaped delimiter
    with pytest.raises(Unsafe):
        compile_key("plain", False, True)
    assert compile_key("Plain", True, False).search("PLAIN")


@pytest.mark.parametrize(
    ("pattern", "length"),
    [
        (r"(?:[a-z]{50}){300}b", 30_000),  # one way to match, 15,000 characters long
        (r"a*[ab]{100}c", 2_000),  # each of a*'s ways walks 100 more
        (r"x[a-z]{1000}y", 20_000),
    ],
)
def test_a_long_fixed_width_repeat_costs_its_width(pattern: str, length: int) -> None:
    """A repeat with one way to match still reads its whole width from every start:
    these took 0.04–0.7 s a search and counted as ~length steps."""
    safe = SafePattern(pattern, 0)
    assert safe.steps(length) > MAX_STEPS
    assert safe.width >= 100


def test_width_adds_along_a_sequence_and_takes_the_widest_alternative() -> None:
    assert SafePattern(r"ab[cd]{3}", 0).width == 5
    assert SafePattern(r"abc|d{10}", 0).width == 10
    assert SafePattern(r"(?i)x*(?#note)y", 0).width == 1  # flags, comments read nothing
