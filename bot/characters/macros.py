"""SillyTavern's macros: {{char}}, {{user}}, <BOT>, <USER>, {{original}}, {{trim}}, comments,
random picks."""

from __future__ import annotations

import itertools
import random
import re
import zlib
from dataclasses import dataclass, field

# Case-insensitive. `[^{}]` stops a scan at the next brace, so an unclosed `{{` costs at
# most up to the next one: linear on any text.
_MACRO = re.compile(r"\{\{([^{}]{0,4000})\}\}", re.IGNORECASE)
# What SillyTavern replaces before the rest (macros.js evaluateMacros: the legacy <USER>
# forms, {{newline}}, {{noop}}, then the names), so a name inside {{random::…}},
# {{pick::…}} or a {{// comment}} is the name there too.
_FIRST = re.compile(
    r"<(bot|user|char|charifnotgroup|group)>"
    r"|\{\{\s*(user|char|charifnotgroup|group|newline|noop|original)\s*\}\}",
    re.IGNORECASE,
)
_ORIGINAL = re.compile(r"\{\{\s*original\s*\}\}", re.IGNORECASE)
_TRIM = re.compile(r"\{\{\s*trim\s*\}\}", re.IGNORECASE)
_BREAKS = re.compile(r"(?:\r?\n)*")
# {{group}} and {{charIfNotGroup}} name a group chat's members, else the character: we
# have no group chats (several people talking to one character is not one).
_CHAR = ("char", "charifnotgroup", "group")
# {{roll:6}}, {{roll:d6}}, {{roll:1d6}}, {{roll:2d6+3}}: dice notation as SillyTavern's
# roller reads it (count, sides, modifier), the count kept small.
_ROLL = re.compile(r"(?:([0-9]{0,3})d)?([0-9]{1,7})(?:\s*([+-])\s*([0-9]{1,7}))?", re.IGNORECASE)
_MOST_DICE = 100
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_SILENT = ("//", "comment:", "hidden_key:")


@dataclass(frozen=True, slots=True)
class Macros:
    """What the macros stand for in one prompt: the character, the person, a random source."""

    char: str
    user: str
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __call__(self, text: str, original: str | None = None) -> str:
        """`text` with macros replaced; `{{original}}` becomes `original` (its first use
        only, as SillyTavern does), and macros inside `original` are resolved too."""
        if "{" not in text and "<" not in text:
            return text
        if original is not None:
            first = _ORIGINAL.search(text)
            if first is not None:
                text = text[: first.start()] + original + text[first.end() :]
        text = _trimmed(text)
        # A name goes in as it is, but its braces (someone called `{{roll:d6}}`) are held
        # apart as characters the text lacks, so the second pass reads no macro in it
        # and none ends inside it.
        names = self.user + self.char
        braced = ("{" in names or "}" in names) and _FIRST.search(text) is not None
        opening, closing = _unused_chars(text + names) if braced else ("", "")
        held = str.maketrans({"{": opening, "}": closing}) if opening else {}
        text = _FIRST.sub(lambda m: self._first(m).translate(held), text)
        if "{{" in text:
            seen: dict[str, int] = {}
            text = _MACRO.sub(lambda m: self._one(m, seen), text)
        return text.replace(opening, "{").replace(closing, "}") if opening else text

    def _first(self, match: re.Match[str]) -> str:
        name = (match.group(1) or match.group(2)).lower()
        if name == "user":
            return self.user
        if name in _CHAR or name == "bot":
            return self.char
        # {{newline}}, {{noop}}, {{original}} past its first (SillyTavern's is empty)
        return "\n" if name == "newline" else ""

    def _one(self, match: re.Match[str], seen: dict[str, int]) -> str:
        body = match.group(1)
        name = body.strip().lower()
        if name.startswith(_SILENT):
            return ""
        head, _, rest = body.partition(":")  # a :: list's items keep their spaces
        head = head.strip().lower()
        if head.startswith("roll "):  # SillyTavern's roll takes a space for its colon
            head, rest = "roll", body.strip()[5:]
        if head in ("random", "pick") and rest:
            items = _choices(rest)
            if head == "random":
                return self.rng.choice(items)
            # pick: the same choice every time this prompt is built
            nth = seen[body] = seen.get(body, -1) + 1
            return items[zlib.crc32(f"{self.char}\0{body}\0{nth}".encode()) % len(items)]
        if head == "roll":
            rolled = self._roll(rest.strip())
            if rolled is not None:
                return str(rolled)
        return match.group(0)  # not ours: left as written

    def _roll(self, formula: str) -> int | None:
        found = _ROLL.fullmatch(formula)
        if found is None:
            return None
        count_text, sides_text, sign, modifier = found.groups()
        count, sides = int(count_text or 1), int(sides_text)
        if not 0 < count <= _MOST_DICE or sides <= 0:
            return None
        total = sum(self.rng.randint(1, sides) for _ in range(count))
        if modifier is not None:
            total += int(modifier) if sign == "+" else -int(modifier)
        return total


def _unused_chars(text: str) -> tuple[str, str]:
    """Two private-use characters that are not in `text`, to hold `{` and `}` apart
    ("" for both in a text holding nearly all of them: names' braces then go in as they
    are, as SillyTavern puts them)."""
    candidates = map(chr, range(0xE000, 0xF900))
    first = [c for c in itertools.islice(candidates, 8) if c not in text]  # almost always
    if len(first) < 2:
        present = set(text)
        first += [c for c in candidates if c not in present][: 2 - len(first)]
    return (first[0], first[1]) if len(first) >= 2 else ("", "")


def _choices(rest: str) -> list[str]:
    if rest.startswith(":"):  # {{random::a::b}}
        return rest[1:].split("::")
    # Split on commas, each item trimmed (SillyTavern's randomReplace); `\,` is a comma.
    return [item.strip().replace("\\,", ",") for item in _UNESCAPED_COMMA.split(rest)]


def _trimmed(text: str) -> str:
    """`{{trim}}` removed with the line breaks on both sides of it, as SillyTavern's
    `(?:\\r?\\n)*{{trim}}(?:\\r?\\n)*` does (here linear on any run of breaks)."""
    parts = _TRIM.split(text)
    if len(parts) == 1:
        return text
    out = []
    for i, part in enumerate(parts):
        leading = _BREAKS.match(part)
        start = leading.end() if i > 0 and leading is not None else 0
        end = len(part)
        if i < len(parts) - 1:
            while end > start and part[end - 1] == "\n":
                end -= 2 if end - 1 > start and part[end - 2] == "\r" else 1
        out.append(part[start:end])
    return "".join(out)
