"""Lorebook regex keys run by `re` only when their worst case is known to be small.

Python's `re` backtracks and has no timeout (and the `regex` module is not installed), so a
card's pattern is read by a small parser first: backreferences, conditionals and nested
or alternated repeats (the exponential shapes) are refused outright, and the remaining
patterns get an upper bound on backtracking steps for a given text length; a search runs
only when that bound fits. Everything else counts as no match, as the V3 spec says of
invalid patterns.
"""

from __future__ import annotations

import functools
import re

MAX_PATTERN_CHARS = 500
MAX_STEPS = 20_000_000  # one search: ~10–70 ms on the worst allowed shapes (0.5–3.3 ns a step)
_JS_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}
_DELIMITED = re.compile(r"/(.+)/([gimsuy]*)", re.DOTALL)
# Inline flags; verbose mode (x) is refused, as it changes what the parser reads:
# `(a+) +` is `(a+)+` to it, and a `#` comment hides the rest of the pattern.
_FLAG_GROUP = re.compile(r"\(\?[aiLmsu]+\)")


_HUGE = 10**12  # a cost this large is refused anyway; bounds the arithmetic
Cost = tuple[int, int, int]


class Unsafe(ValueError):
    """A pattern refused: the message says why."""


@functools.lru_cache(maxsize=10_000)  # a lorebook may hold up to 10,000 keys
def compile_key(key: str, ignore_case: bool, delimited_only: bool) -> SafePattern:
    """A key as a pattern: `/pattern/flags` (SillyTavern's form) or, unless
    `delimited_only`, the bare pattern. Raises Unsafe when refused."""
    found = _DELIMITED.fullmatch(key)
    if found is not None:
        body, flags = found.group(1), found.group(2)
        if re.search(r"(^|[^\\])/", body):  # an unescaped delimiter: not ST's regex form
            raise Unsafe("an unescaped / inside /…/")
        body = body.replace("\\/", "/")
        value = 0
        for flag in flags:
            value |= _JS_FLAGS.get(flag, 0)
    elif delimited_only:
        raise Unsafe("not a /…/ pattern")
    else:
        body, value = key, re.IGNORECASE if ignore_case else 0
    return SafePattern(body, value)


def is_delimited(key: str) -> bool:
    return _DELIMITED.fullmatch(key) is not None


class SafePattern:
    """A compiled pattern and its cost per start position (a polynomial in text length)."""

    def __init__(self, pattern: str, flags: int) -> None:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise Unsafe(f"longer than {MAX_PATTERN_CHARS} characters")
        pattern = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern)  # JavaScript's named groups
        parser = _Parser(pattern)
        self.unbounded, self.bounded, self.width = parser.parse()
        if self.unbounded > 3:
            raise Unsafe("more than 3 open-ended repeats")
        try:
            self.regex = re.compile(pattern, flags)
        except (re.error, OverflowError, RecursionError) as err:
            raise Unsafe(f"not a valid pattern ({err})") from err

    def steps(self, length: int) -> int:
        """Upper bound on the work of one search over `length` characters: from each
        start, every way to match, each walking up to `width` characters more than its
        open-ended repeats do (`(?:[a-z]{50}){300}` has one way, 15,000 characters long)."""
        ways = int((length + 1) ** (self.unbounded + 1)) * self.bounded
        return ways * max(1, self.width)

    def search(self, text: str) -> bool:
        return self.regex.search(text) is not None


class _Parser:
    """Python regex syntax read just far enough to bound backtracking."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.depth = 0

    def parse(self) -> Cost:
        cost = self.alternation()
        if self.i != len(self.p):
            raise Unsafe("unbalanced parentheses")
        return cost

    # A cost is (unbounded repeats, product of bounded choices, width): text length n
    # gives at most n**unbounded * bounded ways to match from one start, and each way
    # reads at most `width` characters besides what the unbounded repeats read.
    def alternation(self) -> Cost:
        unbounded, bounded, width = self.sequence()
        while self.peek() == "|":
            self.i += 1
            u, b, w = self.sequence()
            unbounded, bounded, width = max(unbounded, u), bounded + b, max(width, w)
        return unbounded, bounded, width

    def sequence(self) -> Cost:
        unbounded, bounded, width = 0, 1, 0
        while self.peek() not in ("", "|", ")"):
            u, b, w = self.item()
            unbounded, bounded, width = unbounded + u, min(bounded * b, _HUGE), width + w
        return unbounded, bounded, width

    def item(self) -> Cost:
        inner = self.atom()
        low, high = self.quantifier()
        if high == 1 and low == 1:
            return inner
        unbounded, bounded, width = inner
        if (unbounded, bounded) != (0, 1):
            raise Unsafe("a repeat of something that itself repeats or alternates")
        if high < 0:
            return 1, 1, 0  # what it reads counts in the text length's factor
        return 0, high - low + 1, min(width * high, _HUGE)

    def atom(self) -> Cost:
        char = self.p[self.i]
        self.i += 1
        if char == "\\":
            if self.i >= len(self.p):
                raise Unsafe("ends with a backslash")
            escaped = self.p[self.i]
            self.i += 1
            if escaped in "123456789" or escaped == "g":
                raise Unsafe("a backreference")
            return 0, 1, 1
        if char == "[":
            self.char_class()
            return 0, 1, 1
        if char == "(":
            return self.group()
        if char in "*+?":
            raise Unsafe("a repeat with nothing to repeat")
        return 0, 1, 1

    def char_class(self) -> None:
        if self.peek() == "^":
            self.i += 1
        if self.peek() == "]":
            self.i += 1
        while self.i < len(self.p) and self.p[self.i] != "]":
            self.i += 2 if self.p[self.i] == "\\" else 1
        if self.i >= len(self.p):
            raise Unsafe("an unclosed [")
        self.i += 1

    def group(self) -> Cost:
        rest = self.p[self.i :]
        if rest.startswith(("?P=", "?(")):
            raise Unsafe("a backreference or a conditional")
        if re.match(r"\?[aiLmsux-]*x", rest):
            raise Unsafe("verbose mode (?x)")
        flags = _FLAG_GROUP.match(self.p, self.i - 1)
        if flags is not None:  # (?i) and the like: no text of its own
            self.i = flags.end()
            return 0, 1, 0
        if rest.startswith("?#"):
            end = self.p.find(")", self.i)
            if end < 0:
                raise Unsafe("an unclosed comment")
            self.i = end + 1
            return 0, 1, 0
        prefix = re.match(r"\?(?::|=|!|<=|<!|P<\w+>|[aiLmsu-]+:)", rest)
        if prefix is not None:
            self.i += prefix.end()
        elif rest.startswith("?"):
            raise Unsafe("an unknown group")
        self.depth += 1
        if self.depth > 20:
            raise Unsafe("groups nested more than 20 deep")
        cost = self.alternation()
        self.depth -= 1
        if self.peek() != ")":
            raise Unsafe("an unclosed (")
        self.i += 1
        return cost

    def quantifier(self) -> tuple[int, int]:
        """(min, max) of the repeat after an atom, max -1 for unbounded; (1, 1) if none."""
        char = self.peek()
        if char in ("*", "+", "?"):
            self.i += 1
            bounds = {"*": (0, -1), "+": (1, -1), "?": (0, 1)}[char]
        else:
            found = re.match(r"\{([0-9]*)(,?)([0-9]*)\}", self.p[self.i :])
            if found is None or not (found.group(1) or found.group(3)):
                return 1, 1  # a literal brace
            self.i += found.end()
            low = int(found.group(1) or 0)
            high = int(found.group(3)) if found.group(3) else (low if not found.group(2) else -1)
            if low > 1000 or high > 1000:
                raise Unsafe("a repeat count over 1000")
            bounds = (low, high)
        if self.peek() in ("?", "+"):  # lazy or possessive: no more paths than greedy
            self.i += 1
        if self.peek() in ("*", "+", "?", "{") and re.match(r"[*+?]|\{[0-9]", self.p[self.i :]):
            raise Unsafe("a repeat of a repeat")
        return bounds

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""
