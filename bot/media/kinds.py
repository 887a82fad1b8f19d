"""What an attachment is, decided from its bytes first, and what the bot accepts."""

from __future__ import annotations

import codecs
import re
import unicodedata
from typing import Literal

from bot.types.files import display_name

Kind = Literal["image", "text", "pdf", "binary"]

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
ACCEPTED_IMAGES = "JPEG, PNG, GIF or WebP images"
ACCEPTED_FILES = "text, Markdown, source code, JSON, CSV, logs or PDF"
ACCEPTED = f"{ACCEPTED_IMAGES}; {ACCEPTED_FILES} files"

_SNIFF_BYTES = 8192
# Starts of binary formats whose first kilobytes can pass the text test (a small ZIP,
# a compressed stream); all have bytes no text starts with.
_BINARY_MAGIC = (
    b"PK\x03\x04",  # zip, docx, xlsx, jar, apk
    b"PK\x05\x06",
    b"\x1f\x8b",  # gzip
    b"\xfd7zXZ\x00",
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!\x1a\x07",
    b"\x28\xb5\x2f\xfd",  # zstd
    b"\x7fELF",
    b"\xcf\xfa\xed\xfe",  # Mach-O
    b"\xca\xfe\xba\xbe",
    b"\x00asm",
    b"SQLite format 3\x00",
    b"\x1a\x45\xdf\xa3",  # Matroska / WebM
    b"\xd0\xcf\x11\xe0",  # old Office documents
)
_IMAGE_EXTENSIONS = frozenset(
    "jpg jpeg jpe jfif png apng gif webp bmp tif tiff heic heif avif ico psd jxl".split()
)


class MediaError(ValueError):
    """An attachment that cannot be used; the message says why, for the person who sent it."""


def extension(name: str) -> str:
    """`py` for `tool.PY`; empty when there is none."""
    base = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    return ext.lower() if dot and stem else ""


def image_format(data: bytes) -> str | None:
    """The image format the bytes announce (`JPEG`, `PNG`, `BMP` …), None when none."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    # "BM" alone starts ordinary words; a real BMP also states its own length.
    if head[:2] == b"BM" and len(head) >= 6 and int.from_bytes(head[2:6], "little") == len(data):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
    if head[:4] == b"8BPS":
        return "PSD"
    if head[:4] == b"\x00\x00\x01\x00" and len(data) > 6 and head[4:6] != b"\x00\x00":
        return "ICO"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "JPEG XL"
    return None


_PDF_HEADER = re.compile(rb"%PDF-[0-9]\.[0-9]")


def is_pdf(data: bytes) -> bool:
    """A PDF's header starts it; PDF readers also accept it after other bytes in the first
    kilobyte (a BOM, an HTTP header, a line of junk), so do we when the file also ends as
    a PDF does (`startxref`, `%%EOF`): a script or a note that mentions `%PDF-` near its
    start is that text, not a damaged PDF."""
    head = data[:1024]
    if head.startswith(b"%PDF-"):
        return True
    tail = data[-2048:]
    return bool(_PDF_HEADER.search(head)) and (b"%%EOF" in tail or b"startxref" in tail)


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
        return "utf-8" if _control_share(sample) <= 0.05 else None
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
    if _control_share(sample) <= 0.01 and high <= 0.3 * len(sample):
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
    head = even[:_SNIFF_BYTES]  # a whole file is judged by its start
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
        start = text[: _SNIFF_BYTES // 2]
        bad = sum(
            1 for c in start if c not in _TEXT_CONTROLS and unicodedata.category(c) in _NOT_TEXT
        )
        if bad <= 0.01 * len(start):
            readings.append((bad, -nuls, codec))
    return min(readings)[2] if readings else None


def _control_share(sample: bytes) -> float:
    return (len(sample) - len(sample.translate(None, _CONTROL_BYTES))) / max(1, len(sample))


def classify(data: bytes, name: str, declared_type: str = "") -> Kind:
    """Image, text, PDF or binary: magic numbers first, then the text test, then the name.

    The declared content type and the extension only decide bytes that say nothing
    themselves, so a mislabelled file goes where its reader gives the clearest refusal.
    """
    if image_format(data):
        return "image"
    if is_pdf(data):
        return "pdf"
    if data.startswith(_BINARY_MAGIC):
        return "binary"
    if text_codec(data[:_SNIFF_BYTES]):
        return "text"
    if named_image(name, declared_type):
        return "image"
    declared = declared_type.split(";", 1)[0].strip().lower()
    if extension(name) == "pdf" or declared == "application/pdf":
        return "pdf"
    return "binary"


_AUDIO_EXTENSIONS = frozenset("mp3 ogg oga opus m4a aac wav flac wma amr".split())
_VIDEO_EXTENSIONS = frozenset("mp4 m4v mov webm mkv avi wmv 3gp".split())


def unread_refusal(name: str, declared_type: str = "") -> MediaError | None:
    """The refusal for a voice message, a song or a video, by what the file says of itself
    (never downloaded to be refused), or None for any other file."""
    ext = extension(name)
    declared = declared_type.split(";", 1)[0].strip().lower()
    if declared.startswith("audio/") or (not declared and ext in _AUDIO_EXTENSIONS):
        what = "audio (a voice message or a recording)"
    elif declared.startswith("video/") or (not declared and ext in _VIDEO_EXTENSIONS):
        what = "a video"
    else:
        return None
    return MediaError(
        f"{display_name(name)} is {what}, which I do not read; attach {ACCEPTED_FILES} "
        f"files, or {ACCEPTED_IMAGES}, or write your question."
    )


def named_image(name: str, declared_type: str = "") -> bool:
    """An image by what a file says of itself (its extension or declared type), before
    or without its bytes. An SVG is XML, read as a text file: not one."""
    ext = extension(name)
    declared = declared_type.split(";", 1)[0].strip().lower()
    if ext == "svg" or declared.startswith("image/svg"):
        return False
    return ext in _IMAGE_EXTENSIONS or declared.startswith("image/")


def binary_refusal(name: str, data: bytes = b"") -> MediaError:
    """The refusal for a file that is neither an image nor text: one whose bytes look like
    text in an encoding not read here (Shift-JIS, GBK …) is told how to save it."""
    sample = data[:_SNIFF_BYTES]
    if sample and b"\x00" not in sample and _control_share(sample) <= 0.01:
        return MediaError(
            f"{display_name(name)} is not in a text encoding I read (UTF-8, UTF-16 or "
            "Windows-1252); save it as UTF-8 and attach it again."
        )
    return MediaError(
        f"{display_name(name)} looks like a binary file; attach {ACCEPTED_FILES} files, "
        f"or {ACCEPTED_IMAGES}."
    )
