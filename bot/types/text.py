"""Text as it arrives from people and endpoints, made safe to store, send and show."""

from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import regex


@functools.cache
def unicode_pattern(pattern: str) -> regex.Pattern[str]:
    """A pattern of the `regex` module (graphemes, Unicode scripts and categories, which
    `re` lacks), compiled on first use: the module (~2 MB) loads only in a process whose
    text needs it."""
    import regex

    return regex.compile(pattern)


# NUL breaks PostgreSQL text, other C0/C1 controls break terminals and JSON consumers;
# lone surrogates (undecodable bytes from a terminal) break every encoder after us.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def _span(first: int, last: int) -> str:
    return "".join(map(chr, range(first, last + 1)))


# Characters that show nothing: the ONE table, in parts by what each is, for every rule
# that reads text as it shows: a key, an id or a command as typed (here and in
# commands.parse), a secret in disguise (secrets), a link's text (the Matrix renderer),
# a value quoted back (`quoted`). A character that hides from one rule hides from all;
# where a rule must treat a part otherwise, it says why.
ZERO_WIDTH = "\u200b\u2060\ufeff\u180e"  # space, word joiner, BOM, Mongolian vowel separator
# Zero-width non-joiner and joiner, combining grapheme joiner. Persian, Indic scripts and
# emoji need the first two inside a word or a name (shown_name keeps them there).
JOINERS = "\u200c\u200d\u034f"
# Marks, embeddings, overrides and isolates that set or turn the direction of text.
BIDI_CONTROLS = "\u061c\u200e\u200f" + _span(0x202A, 0x202E) + _span(0x2066, 0x2069)
# The soft hyphen, invisible maths operators, deprecated format controls, Khmer's
# inherent vowels, shorthand and musical format controls: Unicode's other
# default-ignorable characters, which a renderer draws as nothing.
IGNORABLES = (
    "\u00ad\u17b4\u17b5"
    + _span(0x2061, 0x2065)
    + _span(0x206A, 0x206F)
    + _span(0x1BCA0, 0x1BCA3)
    + _span(0x1D173, 0x1D17A)
)
# What changes the look of the character before it: variation selectors (U+FE0F makes
# ❤ the red heart emoji; Mongolian's free ones, the ideographic supplement's) and tag
# characters (a subdivision's flag ends in them; anywhere else they spell text only a
# model reads). Nothing at a text's start; part of its last character at its end.
VARIATION_SELECTORS = (
    _span(0x180B, 0x180D) + "\u180f" + _span(0xFE00, 0xFE0F) + _span(0xE0100, 0xE01EF)
)
TAGS = _span(0xE0000, 0xE007F)
MODIFIERS = VARIATION_SELECTORS + TAGS
# Letters drawn as nothing or as a blank: the Hangul fillers (a blank display name's
# favourite), the halfwidth one, the blank Braille cell. Not spaces to Python either.
BLANK_LETTERS = "\u115f\u1160\u3164\uffa0\u2800"
# Line and paragraph separators: real line breaks where text is shown (str.split()
# takes them as blanks), but as invisible as the rest around a pasted key.
LINE_SEPARATORS = "\u2028\u2029"
# What hides wherever it is: every part but the line separators.
HIDDEN = ZERO_WIDTH + JOINERS + BIDI_CONTROLS + IGNORABLES + MODIFIERS + BLANK_LETTERS
_HIDDEN_CHARS = frozenset(HIDDEN)
# Invisible characters people paste around (or inside) a key or an id without knowing it.
INVISIBLE = HIDDEN + LINE_SEPARATORS


def char_class(chars: str) -> str:
    """`chars` as what goes inside a regular expression's `[…]`, runs as ranges."""
    codes = sorted(set(map(ord, chars)))
    runs: list[str] = []
    i = 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        first, last = re.escape(chr(codes[i])), re.escape(chr(codes[j]))
        runs.append(first if i == j else f"{first}-{last}")
        i = j + 1
    return "".join(runs)


# What no eye sees as typed, by category: control, format, private use, unassigned,
# surrogate; with what HIDDEN holds of other categories (a joiner, a filler, a selector).
_UNSEEN = ("Cc", "Cf", "Co", "Cn", "Cs")


def unseen(char: str) -> bool:
    """Whether `char` is not seen as typed: it hides (HIDDEN), or is a control, a format,
    private-use, unassigned or surrogate code point. What a value quoted back names."""
    return char in _HIDDEN_CHARS or unicodedata.category(char) in _UNSEEN


_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NONZERO = re.compile(r"[1-9]")


class TextError(ValueError):
    """Input that cannot be used; the message says why, for the person who typed it.
    `problem`: the what-is-wrong part alone ("has a space at position 6"), for a caller
    that words the rest itself."""

    def __init__(self, message: str, problem: str = "") -> None:
        super().__init__(message)
        self.problem = problem or message


def untrusted_json(data: str | bytes) -> Any:
    """JSON from outside (a peer, a file, a setting); ValueError when it is not JSON, or
    nested deeper than the parser's stack (a few KB of `[[[[…` raise RecursionError,
    which is no ValueError)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def normalize_text(text: str) -> str:
    """`text` with lone surrogates as U+FFFD and CRLF as LF; control characters kept."""
    if text.isprintable():  # the usual case, decided in one pass
        return text
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _SURROGATES.sub("\ufffd", text)


def clean_text(text: str) -> str:
    """`text` with lone surrogates as U+FFFD, CRLF as LF, and control characters removed.

    Tab and newline stay. Applied where free text enters (chat, prompts, endpoint
    answers), so SQLite and PostgreSQL store exactly the same thing.
    """
    if text.isprintable():
        return text
    return _CONTROLS.sub("", normalize_text(text))


def refuse_controls(text: str, what: str) -> str:
    """`text` unchanged, or TextError naming the first control character in it.

    For a value that names something (an id, a number, a choice, a path): dropping the
    character silently would make it name something else than what was typed."""
    found = _CONTROLS.search(text)
    if found is not None:
        raise TextError(
            f"The {what} has a control character ({describe_char(found.group())}) at position "
            f"{found.start() + 1}. Type it again without it."
        )
    return text


_NO_INVISIBLE = dict.fromkeys(map(ord, INVISIBLE))
# What strip_invisible takes off each edge: blanks (every character str.isspace() knows,
# all below U+3001) and invisible characters; at the end not a modifier, which belongs to
# the character before it (an emoji's U+FE0F, a flag's tags ending a prompt).
_BLANKS = "".join(filter(str.isspace, map(chr, range(0x3001))))
_LEADING = _BLANKS + INVISIBLE
_TRAILING = _BLANKS + "".join(c for c in INVISIBLE if c not in MODIFIERS)


def without_invisible(text: str) -> str:
    """`text` with every invisible character taken out, inside it too (a key or password
    with a zero-width space or a soft hyphen in it reads as itself)."""
    return text.translate(_NO_INVISIBLE)


def lstrip_invisible(text: str) -> str:
    """Leading whitespace (a no-break or an ideographic space too) and invisible
    characters removed, mixed as they may be: what comes before a command's prefix."""
    return text.lstrip(_LEADING)


def strip_invisible(text: str) -> str:
    """Surrounding whitespace and invisible characters (BOM, zero-width, direction marks)
    removed, mixed as they may be."""
    return text.lstrip(_LEADING).rstrip(_TRAILING)


def describe_char(char: str) -> str:
    """`U+200B ZERO WIDTH SPACE`: a character named so people can find it."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


# Quotes that group words in a typed command or list value, each with what closes it:
# ASCII, and the typographic pairs phones and locales type (iOS and Android turn `"` into
# “…”; German „…“, Polish „…”, Swedish ”…”, French «…», Danish »…«, Japanese 「…」『…』).
# An opening quote closes only with its own closers. ’ opens nothing: it is a phone's
# apostrophe (`don’t`), and closes only ‘ or ‚.
QUOTE_CLOSERS: dict[str, str] = {
    '"': '"',
    "'": "'",
    "\u201c": "\u201d\u201e",  # “…” (English), “…„
    "\u201e": "\u201c\u201d",  # „…“ (German, Czech), „…” (Polish, Hungarian)
    "\u201d": "\u201d",  # ”…” (Swedish, Finnish)
    "\u2018": "\u2019\u201a",  # ‘…’, ‘…‚
    "\u201a": "\u2018\u2019",  # ‚…‘, ‚…’
    "\u00ab": "\u00bb",  # «…»
    "\u00bb": "\u00ab",  # »…«
    "\u300c": "\u300d",  # 「…」
    "\u300e": "\u300f",  # 『…』
}
QUOTE_CHARS = "".join(sorted(set("".join(QUOTE_CLOSERS) + "".join(QUOTE_CLOSERS.values()))))
_APOSTROPHES = "'\u2019"


# What joins a named option to its value: `bypass:on`, or `bypass=on` as Discord shows it.
NAME_SEPARATORS = (":", "=")


def opens_quote(quote: str, before: Sequence[str]) -> bool:
    """Whether `quote` opens a quote after `before`, what its value holds so far: "…" and
    '…' anywhere, as a shell reads them; a typographic one only where a value begins
    (nothing before it but spaces, or `name:`, `name=`), so `12”` (inches) or `5»` stays
    as typed."""
    if quote in "\"'":
        return True
    typed = "".join(before).strip()
    return not typed or typed.endswith(NAME_SEPARATORS)


def apostrophe_at(text: str, i: int) -> bool:
    """`text[i]` is an apostrophe inside a word (`don't`, `don’t`, `80’s`): a letter of
    it, never a quote that opens or closes."""
    return (
        text[i] in _APOSTROPHES
        and 0 < i < len(text) - 1
        and text[i - 1].isalnum()
        and text[i + 1].isalnum()
    )


# Quotes a pasted key or password comes wrapped in (from a JSON file, a shell line, a
# chat app that curled them, a keyboard of another language: «…», „…“, 「…」), each with
# what closes it: around a whole value they are never part of it.
_WRAPPING_QUOTES = {**QUOTE_CLOSERS, "`": "`", "\u2019": "\u2019"}  # and Swedish ’…’


def unwrapped(text: str) -> str:
    """`text` with its edges cleaned and one pair of quotes around it all removed
    (`…`, "…", '…', “…”, «…», „…“, 「…」 …): a value copied from a chat message or a page
    keeps them, and they are never part of a key, a model id or a user id."""
    value = strip_invisible(text)
    if len(value) > 2 and value[-1] in _WRAPPING_QUOTES.get(value[0], ""):
        value = strip_invisible(value[1:-1])
    return value


def unmarked(text: str) -> str:
    """`text` with its edges cleaned and one `<…>` around it all removed: how the usage
    lines mark a placeholder (`/model <id>`, copied with the value typed inside it), and
    Discord's link without a preview (`<https://…>`). Never part of a key, a model id or
    a URL (a Discord mention, `<@123>`, is: ids of people and roles do not go through it)."""
    value = strip_invisible(text)
    if len(value) > 2 and value[0] == "<" and value[-1] == ">":
        value = strip_invisible(value[1:-1])
    return value


def header_safe(text: str, what: str) -> str:
    """A value that can travel in an HTTP header (visible ASCII only), edges cleaned:
    invisible characters, one pair of quotes or `<…>` around it (unmarked) and a `Bearer `
    before it removed.

    Raises TextError naming the first character that cannot, and its position.
    """
    value = unmarked(unwrapped(text))
    if value[:7].lower() == "bearer ":  # copied with its header's scheme, from a curl line
        value = unwrapped(value[7:])
    if not value:
        raise TextError(f"The {what} is empty.", "is empty")
    for position, char in enumerate(value, 1):
        if not "!" <= char <= "~":
            shown = "a space" if char == " " else describe_char(char)
            problem = f"has {shown} at position {position}"
            raise TextError(
                f"The {what} {problem}, which cannot be sent to an endpoint. Copy the {what} "
                "again without it.",
                problem,
            )
    return value


def visible_id(text: str, what: str, *, name: bool = False) -> str:
    """An identifier (model id, URL) with its edges cleaned and nothing invisible inside;
    `name`: a name (a Discord role's), whose words have spaces between them and whose
    emoji their hidden parts (❤️, 👩‍🚀)."""
    value = strip_invisible(text)
    if not value:
        raise TextError(f"The {what} is empty.")
    kept = _emoji_parts(value) if name else set()
    for position, char in enumerate(value, 1):
        if name and (char == " " or position - 1 in kept):
            continue
        if char == " ":
            raise TextError(
                f"The {what} has a space at position {position}. Type it again without it."
            )
        if char == "\ufffd":  # what bytes that were not UTF-8 were read as
            raise TextError(
                f"The {what} has a character that was not valid text (U+FFFD) at position "
                f"{position}. Type it again."
            )
        if char.isspace() or unseen(char):
            raise TextError(
                f"The {what} has an invisible character ({describe_char(char)}) at position "
                f"{position}. Type it again without it."
            )
    return value


_ZWJ = "\u200d"  # joins emoji (👩‍🚀) or an Indic conjunct: kept between what it joins
_ZWNJ = "\u200c"  # keeps two letters apart in Persian or Hindi (نیک‌نام): kept between them
# A subdivision's flag (🏴󠁧󠁢󠁥󠁮󠁧󠁿): tag characters, invisible anywhere else (where they can
# spell hidden text to a model), kept only inside one.
_FLAG_TAGS = re.compile("\U0001f3f4[\U000e0020-\U000e007e]{1,16}\U000e007f")


def shown_name(text: str) -> str:
    """A name to show as someone's (a character's webhook or display name): clean text on
    one line, without format characters such as a right-to-left override that would
    turn the text after it around, or zero-width characters that fake another name."""
    if text.isprintable() and text == " ".join(text.split()):  # the usual name, in one pass
        return text
    clean = clean_text(text)
    flags = {i for m in _FLAG_TAGS.finditer(clean) for i in range(m.start(), m.end())}
    kept = "".join(
        " " if c.isspace() else c  # a newline parts words as a space does
        for i, c in enumerate(clean)
        if c == _ZWJ
        or c.isspace()
        or unicodedata.category(c) not in ("Cf", "Cc")
        or i in flags
        or (c == _ZWNJ and _between_letters(clean, i))
    )
    kept = " ".join(kept.split())
    if _ZWJ not in kept:
        return kept
    # A joiner joins two visible characters, never Latin, Greek or Cyrillic letters (or
    # digits), where it would only fake another name; alone, at an edge or doubled it
    # joins nothing.
    joined = "".join(c for i, c in enumerate(kept) if c != _ZWJ or _joins(kept, i))
    return " ".join(joined.split())


def _joins(text: str, i: int) -> bool:
    if not 0 < i < len(text) - 1:
        return False
    sides = (text[i - 1], text[i + 1])
    return not any(c.isspace() or c == _ZWJ or (c.isalnum() and ord(c) < 0x0590) for c in sides)


def _between_letters(text: str, i: int) -> bool:
    """Letters on both sides, of scripts that join them (Hebrew onwards: not Latin, whose
    look-alike names a zero-width character would help fake)."""
    if not 0 < i < len(text) - 1:
        return False
    return all(c.isalpha() and ord(c) >= 0x0590 for c in (text[i - 1], text[i + 1]))


MODEL_ID_CHARS = 200  # the longest model id `/model` takes
PROXY_URL_CHARS = 2000  # the longest proxy or endpoint URL a channel keeps
SYSTEM_PROMPT_CHARS = 8000  # the longest system prompt a channel (or the operator) sets

# What an id may hold and still be shown bare: no character that Discord's or Matrix's
# markdown reads (`[x](https://…)` would be a link in the bot's voice, `*` or `~` would
# format, `<@…>` would mention).
_PLAIN_ID = re.compile(r"[A-Za-z0-9._:/@+=,-]+")


def shown_id(text: str) -> str:
    """A model id (typed, stored, or listed by an endpoint) as a reply shows it: as it is
    when it is plain, else quoted (a code span, which no markdown reads)."""
    return text if _PLAIN_ID.fullmatch(text) else quoted(text, MODEL_ID_CHARS)


def choosable_model_id(text: str) -> bool:
    """A model id `/model` would take as it is: visible, no longer than MODEL_ID_CHARS."""
    try:
        return len(text) <= MODEL_ID_CHARS and visible_id(text, "model id") == text
    except TextError:
        return False


def parse_integer(text: str) -> int | None:
    """`42`, `-7`, `+3`: ASCII digits only (no `0_1`, no other scripts' digits); else None."""
    value = text.strip()
    return int(value) if _INTEGER.fullmatch(value) else None


# A whole number with its thousands grouped, by one separator throughout: commas (`1,000`,
# `10,000,000`) or spaces, plain or as phones and French or German text type them
# (no-break U+00A0, narrow no-break U+202F, thin U+2009). A dot is no such separator: in
# English `1.000` is one, in German a thousand (decimal_hint asks which).
_GROUPED_WHOLE = re.compile(
    r"[+-]?[0-9]{1,3}(?P<sep>[, \u00a0\u202f\u2009])[0-9]{3}(?:(?P=sep)[0-9]{3})*"
)
_GROUP_SEPARATORS = re.compile(r"[, \u00a0\u202f\u2009]")
_DOT_GROUPED = re.compile(r"[+-]?[0-9]{1,3}(?:\.[0-9]{3})+")
_WHOLE_DIGITS = 4000  # int() refuses a longer run of digits (Python's conversion limit)


def parse_whole_number(text: str) -> int | None:
    """A whole number as people type it, wherever one is asked for (`/params max_tokens`,
    `/limits set`): `42`, `-7`, `+3`, or grouped by thousands (`1,000`, `1 000`,
    `10,000,000`); ASCII digits only (no `0_1`, no other scripts' digits). None for
    anything else: `1.000` and `1,5` too, which decimal_hint explains."""
    value = text.strip()
    if _GROUPED_WHOLE.fullmatch(value):
        value = _GROUP_SEPARATORS.sub("", value)
    if len(value) > _WHOLE_DIGITS:
        return None
    return parse_integer(value)


_DECIMAL_COMMA = re.compile(r"[+-]?[0-9]*,[0-9]+")
# Signs typed for a minus (a word processor's or a phone's): the minus sign U+2212, dashes,
# fullwidth and small hyphen-minus; and other scripts' separators, as ASCII.
MINUSES = "\u2212\u2010\u2011\u2012\u2013\u2014\ufe63\uff0d"
_NUMBER_MARKS = {
    **dict.fromkeys(map(ord, MINUSES), "-"),
    ord("\uff0b"): "+",  # FULLWIDTH PLUS SIGN
    ord("\u066b"): ".",  # ARABIC DECIMAL SEPARATOR
    ord("\uff0e"): ".",  # FULLWIDTH FULL STOP
    ord("\u066c"): ",",  # ARABIC THOUSANDS SEPARATOR
    ord("\uff0c"): ",",  # FULLWIDTH COMMA
}


def decimal_hint(text: str, *, whole: bool = False) -> str:
    """What to say after refusing a number as typed (`whole`: where a whole number is asked
    for): `0,7` (many keyboards write decimals so), `1.000` (a thousand in German), digits
    of another script (`١٠٠`) or a minus that is no `-` (`−0.5`, `–1`), or one past what a
    float holds (`1e400`, or `1e-400`, which would be 0)."""
    value = text.strip()
    ascii_value = _ascii_number(value)
    if ascii_value != value:
        return _ascii_hint(value, ascii_value, whole=whole)
    if _DOT_GROUPED.fullmatch(value) and (whole or value.count(".") > 1):
        # Never taken as 1 or as 1000 unasked: which one is meant, the one who typed knows.
        dots = "dot separates" if value.count(".") == 1 else "dots separate"
        return f" If the {dots} thousands, write {_echo(value.replace('.', ''))}."
    if _DECIMAL_COMMA.fullmatch(value):
        return "" if whole else f" Write decimals with a dot: {_echo(value.replace(',', '.'))}."
    if _DECIMAL.fullmatch(value):
        number = parse_decimal(value)
        if number is None:
            far = "too large" if math.isinf(float(value)) else "too close to 0 to be told from it"
            return f" It is {far}."
        # A number, refused where a whole one is asked for: `1e3` is one in other words.
        if not number.is_integer():
            return ""
        return f" Write it in digits: {int(number)}." if abs(number) < 1e16 else " It is too large."
    return ""


ECHO_CHARS = 60  # what a reply quotes back of a typed value, at most


def _echo(number: str) -> str:
    """A number a hint writes back, no longer than any echo of what was typed."""
    return shorten(number, ECHO_CHARS)


def _other_digit(char: str) -> bool:
    return not char.isascii() and unicodedata.decimal(char, None) is not None


def _ascii_number(text: str) -> str:
    """`text` with other scripts' digits (`١`, `５`), minus signs and dashes (`−`, `–`) and
    separators (`٫`) as the ASCII ones they stand for."""
    marked = text.translate(_NUMBER_MARKS)
    return "".join(str(unicodedata.decimal(c)) if _other_digit(c) else c for c in marked)


def _ascii_hint(typed: str, ascii_value: str, *, whole: bool) -> str:
    """What to say of a number typed with other scripts' digits or signs: how to write it,
    and what it then is if it is one. Never read as typed: numbers take ASCII digits only,
    as the README says (a digit of another script can look like another digit)."""
    shown: str | None
    if whole or "\u066c" in typed:  # an Arabic thousands separator is no decimal comma
        number = parse_whole_number(ascii_value)
        shown = None if number is None else str(number)
    else:
        dotted = (
            ascii_value.replace(",", ".") if _DECIMAL_COMMA.fullmatch(ascii_value) else ascii_value
        )
        shown = dotted.strip() if parse_decimal(dotted) is not None else None
    wanted = []
    if any(map(_other_digit, typed)):
        wanted.append("the digits 0-9")
    if any(c in MINUSES for c in typed):
        wanted.append("a - sign")
    if "." in (shown or ascii_value) and "." not in typed:
        wanted.append("a dot for decimals")
    *others, last = wanted or ["ASCII characters"]  # `1，000`: a fullwidth comma alone
    written = (
        f" Write it with {', '.join(others)} and {last}" if others else f" Write it with {last}"
    )
    return f"{written}: {_echo(shown)}." if shown is not None else f"{written}."


def parse_decimal(text: str) -> float | None:
    """`0.7`, `.5`, `1e-3`: ASCII only; None for anything else, and for a number a float
    cannot hold: too large (infinite), or so near 0 that it would silently become 0."""
    value = text.strip()
    if not _DECIMAL.fullmatch(value):
        return None
    number = float(value)
    mantissa = value.lower().partition("e")[0]
    if math.isinf(number) or (number == 0 and _NONZERO.search(mantissa)):
        return None
    return number


_BACKTICKS = re.compile(r"`+")


def quoted(text: str, limit: int = ECHO_CHARS) -> str:
    """A typed value quoted back in a reply: one line, at most `limit` characters, in a
    code span no backtick inside it can close early (a longer fence, as Discord and
    Matrix read it), so `a`b` cannot spill its rest out as formatting. Characters that
    show nothing or turn the text around (zero-width, right-to-left override, NUL and
    other controls) are named, `<U+202E>`, so the reply reads as written and says what
    was typed."""
    one_line = " ".join(normalize_text(text).split())
    kept = _emoji_parts(one_line)
    visible = "".join(
        f"<U+{ord(c):04X}>" if unseen(c) and i not in kept else c for i, c in enumerate(one_line)
    )
    shown = shorten(visible, limit)
    if not shown:
        return "(nothing)"
    fence = "`" * (max(map(len, _BACKTICKS.findall(shown)), default=0) + 1)
    pad = " " if shown[0] == "`" or shown[-1] == "`" else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


_EMOJI_STYLE = "\ufe0e\ufe0f"  # text and emoji presentation selectors
_KEYCAP_BASES = frozenset("0123456789#*")
# A subdivision's flag (England's): 🏴, its code in tag letters, the cancel tag. Tags
# elsewhere hide ASCII text (a prompt smuggled into a name) and stay named.
_TAG_FLAG = re.compile("\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,6}\U000e007f")


def _emoji_parts(text: str) -> set[int]:
    """Where `text`'s hidden characters are part of an emoji it shows, so `quoted` keeps
    them as typed: one presentation selector after a symbol (❤️, and a keycap's 1️⃣), a
    zero-width joiner between two symbols (👨‍👩‍👧, 🏳️‍🌈), a subdivision flag's tags (England's).
    Anywhere else they stay named (`gpt<U+FE0F>4`, `❤️<U+FE0F>`): they only disguise."""
    kept = {i for flag in _TAG_FLAG.finditer(text) for i in range(flag.start() + 1, flag.end())}
    after = ""  # "symbol", or "styled" (a symbol and its selector)
    for i, c in enumerate(text):
        keycap = text[i - 1 : i] in _KEYCAP_BASES and text[i + 1 : i + 2] == "\u20e3"
        if i in kept:
            after = ""
        elif c in _EMOJI_STYLE and (after == "symbol" or (c == "\ufe0f" and keycap)):
            kept.add(i)
            after = "styled"
        elif c == "\u200d" and after and _symbol(text[i + 1 : i + 2]):
            kept.add(i)
            after = ""
        else:
            after = "symbol" if _symbol(c) else ""
    return kept


def _symbol(char: str) -> bool:
    """A pictograph or a skin tone (most emoji are category So; the tones are Sk, with
    the caret, the backtick and the accents, which draw no emoji)."""
    return bool(char) and (unicodedata.category(char) == "So" or char in _SKIN_TONES)


_SKIN_TONES = frozenset(map(chr, range(0x1F3FB, 0x1F400)))  # Fitzpatrick 1-2 to 6


# What Discord's or Matrix's markdown reads in a name: emphasis, code, spoilers, links
# and mentions anywhere; `_` where it starts or ends a word (`my_notes` is no emphasis);
# a quote, heading or list at the start; and the backslash itself.
_MARKDOWN = re.compile(r"[\\`*~|\[\]<]|(?<![^\W_])_|_(?![^\W_])|^[#>-]")
# Whether what the bot says here is read as markdown (Discord, Matrix): the console sets
# it off for its process, whose terminal shows text as it is.
MARKDOWN_READ: ContextVar[bool] = ContextVar("markdown_read", default=True)


def literal(text: str) -> str:
    """A name from outside (a file's, a character card's) inside the bot's own sentence:
    each character markdown would read escaped with a backslash (which Discord and the
    Matrix renderer honour), so it shows as written: `[Log in](https://…)` is no link in
    the bot's voice, `**x**` no bold, `<@1>` no mention pill. As it is where no markdown
    is read (MARKDOWN_READ)."""
    if not MARKDOWN_READ.get():
        return text
    return _MARKDOWN.sub(lambda m: "\\" + m.group(), text)


def grapheme_end(text: str, room: int, minimum: int = 0) -> int:
    """The last grapheme boundary at or before `room`, past `minimum` (else `room`)."""
    cut = room
    # A boundary is found from a little before (a cluster is a few dozen characters at
    # most), so a long page is not segmented whole.
    start = max(minimum, room - 256)
    for match in unicode_pattern(r"\X").finditer(text, start, min(len(text), room + 64)):
        if match.end() > room:
            break
        cut = match.end()
    return cut if cut > minimum else room


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, with `…` where it was cut (between two graphemes: not
    inside a flag, an emoji with its skin tone, or a letter with its marks)."""
    if len(text) <= limit:
        return text
    return text[: grapheme_end(text, max(0, limit - 1))] + "…"


def seconds_in_words(seconds: int) -> str:
    """A wait as people say it: `42 s`, `12 min`, `26 h 5 min`, `more than 2 days`."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds <= _HOURS_SAID:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    # A server's `Retry-After: 99999999999` was "27777777 h 46 min": past two days the
    # count says nothing a person can use.
    return "more than 2 days"


_HOURS_SAID = 48 * 3600


# Words for a switch, typed in chat or in .env (`y`, `t`: as .env files often write them).
SWITCH_ON = ("on", "true", "yes", "1", "y", "t")
SWITCH_OFF = ("off", "false", "no", "0", "n", "f")


def switch_value(text: str) -> bool | None:
    """What a switch typed as `text` means (`on`, `No`, `1` …); None: not a switch word."""
    lowered = text.lower()
    if lowered in SWITCH_ON:
        return True
    if lowered in SWITCH_OFF:
        return False
    return None


def out_of_range(number: float, low: float | None, high: float | None) -> bool:
    return (low is not None and number < low) or (high is not None and number > high)


def range_text(low: float | None, high: float | None) -> str:
    """`from 0 to 2`, `at least 1`, `at most 10`: a range as messages word it."""
    low_text = "" if low is None else number_text(low)
    high_text = "" if high is None else number_text(high)
    if low_text and high_text:
        return f"from {low_text} to {high_text}"
    return f"at least {low_text}" if low_text else f"at most {high_text}"


def number_text(value: float) -> str:
    """0.7, 12, 10000000: plain notation, never `1e+07`."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


class Growing:
    """A text that grows at its end (an answer as it streams), in time linear in what is
    added. `str +=` on an attribute copies the whole text each time (CPython extends in
    place only a local variable's): 4 MB of a model's hidden reasoning in pieces of 100
    characters held the event loop for 40 s, and a stream may bring 64 MB."""

    __slots__ = ("_parts", "_size")

    def __init__(self, text: str = "") -> None:
        self._parts = [text] if text else []
        self._size = len(text)

    def add(self, piece: str) -> None:
        if piece:
            self._parts.append(piece)
            self._size += len(piece)

    def __len__(self) -> int:
        return self._size

    def __str__(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def since(self, start: int) -> str:
        """What was added after the first `start` characters: read from the end, so as
        long as what was added since, however long the whole."""
        need = self._size - max(start, 0)
        if need <= 0:
            return ""
        last = self._parts[-1]
        if len(last) >= need:  # the usual case: one piece since
            return last if len(last) == need else last[len(last) - need :]
        found: list[str] = []
        index = len(self._parts)
        while need > 0:
            index -= 1
            part = self._parts[index]
            if len(part) >= need:
                found.append(part[len(part) - need :])
                break
            found.append(part)
            need -= len(part)
        return "".join(reversed(found))
