"""Which text encoding bytes are in: the one rule for an attached text file and a card's or
preset's JSON (UTF-8, UTF-16/32 by a BOM or without one, else Windows-1252). Pure."""

from __future__ import annotations

import codecs
import re
import unicodedata

SNIFF_BYTES = 8192  # a whole file is judged by its start where it must be


_BOMS = (
    # UTF-32 first: its little-endian BOM starts with UTF-16's.
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_UTF8 = codecs.getincrementaldecoder("utf-8")
_HIGH_BYTES = bytes(range(0x80, 0x100))
_TEXT_CONTROLS = "\t\n\r\f\x1b"  # the control characters text holds (\x1b: colours)
_CONTROL_BYTES = bytes(b for b in range(32) if chr(b) not in _TEXT_CONTROLS)
# Unicode categories no text is made of: controls, unassigned, private use, surrogates.
_NOT_TEXT = frozenset(("Cc", "Cn", "Co", "Cs"))
# UTF-16's byte orders: the codec, where a character's high byte is, its line ends.
_UTF16_ORDERS = (
    ("utf-16-le", 1, re.compile(rb"[\n\r]\x00")),
    ("utf-16-be", 0, re.compile(rb"\x00[\n\r]")),
)


def without_padding(data: bytes) -> bytes:
    """`data` without the NUL bytes that pad it when it holds no other: at its end, what
    a crash leaves of a log (its length written, its last blocks not); at its start, what
    copytruncate leaves (the log emptied under a writer that carries on at its old
    offset: the hole before it reads as NULs). Bytes with a NUL inside (UTF-16, a binary)
    as they are."""
    if not (data.startswith(b"\x00") or data.endswith(b"\x00")):
        return data
    body = data.strip(b"\x00")
    return data if b"\x00" in body else body


def text_codec(sample: bytes) -> str | None:
    """The codec to read bytes (a file or its start) as text with, None when they are
    binary. NULs padding their start or end are not counted (without_padding)."""
    for bom, codec in _BOMS:
        if sample.startswith(bom):
            return codec
    body = without_padding(sample)
    if b"\x00" in body:
        return _utf16_without_bom(sample)
    # Padded, it is whole UTF-8: no stray byte is let pass (`MZ\x90` and zeros are the
    # start of a program). Only a start padded alone may end mid-character (a file's
    # first kilobytes, cut).
    padded, whole = len(body) < len(sample), sample.endswith(b"\x00")
    sample = body
    try:
        _UTF8().decode(sample, final=whole or not padded)
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8" if control_share(sample) <= 0.05 else None
    read = sample.decode("utf-8", errors="replace")
    bad = read.count("\ufffd")
    # A few stray bytes among UTF-8's own characters, or a sample cut mid-character, are
    # UTF-8. Legacy text whose few accents are its only bytes past ASCII holds no UTF-8
    # character at all (`G\xe9rard`): read as UTF-8, each accent would be lost.
    ascii_chars = len(sample.translate(None, _HIGH_BYTES))
    utf8 = len(read) - bad - ascii_chars > 0 or _cut_mid_character(sample)
    if not padded and utf8 and bad <= max(1, len(sample) // 200):
        return "utf-8"
    # Legacy Western text (Windows-1252, Latin-1) is invalid UTF-8 but mostly ASCII with
    # almost no control bytes; compressed or machine data is neither.
    high = len(sample) - len(sample.translate(None, _HIGH_BYTES))
    if control_share(sample) <= 0.01 and high <= 0.3 * len(sample):
        return "cp1252"
    return None


def _cut_mid_character(sample: bytes) -> bool:
    """Whole UTF-8 but for a last character cut short (a file's first kilobytes)."""
    try:
        _UTF8().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _utf16_without_bom(sample: bytes) -> str | None:
    """UTF-16 written without its BOM (bytes with a NUL inside), or None.

    Its NULs are halves of characters: the high byte of each ASCII one (in Latin text
    every other byte; in other scripts its line ends, spaces and digits), the low byte
    of a few others (一, the ideographic space). So it holds line ends as whole
    characters, never across two (or, Latin, half its bytes are NULs), and its pairs
    decode strictly to text with almost no control, unassigned or private-use character.
    A program's or an archive's do not: its runs of NULs decode to NUL characters, its
    other bytes to surrogates without a partner, unassigned or private characters.
    Single-byte text holding NULs reads as UTF-16 too (two ASCII letters make an
    ideograph), but nearly all its pairs are two printable ASCII bytes (fewer than four
    in five are in any script's text, even kana), and its NULs beside line ends fall on
    either side of a pair. Read in the wrong order, text's line ends are not line ends.
    """
    even = sample[: len(sample) // 2 * 2]
    head = even[:SNIFF_BYTES]  # a whole file is judged by its start
    printable = range(0x20, 0x7F)
    ascii_pairs = sum(
        1 for i in range(0, len(head), 2) if head[i] in printable and head[i + 1] in printable
    )
    if ascii_pairs > 0.9 * (len(head) // 2):
        return None
    readings: list[tuple[int, int, str]] = []
    for codec, high, line_end in _UTF16_ORDERS:
        ends = [found.start() % 2 for found in line_end.finditer(head)]
        units = even
        if len(units) >= 2 and 0xD8 <= units[len(units) - 2 + high] <= 0xDB:
            units = units[:-2]  # a sample may end between the two halves of a character
        nuls = units[high::2].count(0)
        if nuls < 0.4 * (len(units) // 2) and (not ends or any(ends)):
            continue  # neither Latin text nor lines
        try:
            text = units.decode(codec)
        except UnicodeDecodeError:
            continue
        start = text[: SNIFF_BYTES // 2]
        bad = sum(
            1 for c in start if c not in _TEXT_CONTROLS and unicodedata.category(c) in _NOT_TEXT
        )
        if bad <= 0.01 * len(start):
            readings.append((bad, -nuls, codec))
    return min(readings)[2] if readings else None


def control_share(sample: bytes) -> float:
    return (len(sample) - len(sample.translate(None, _CONTROL_BYTES))) / max(1, len(sample))
