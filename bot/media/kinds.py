"""What an attachment is, decided from its bytes first, and what the bot accepts."""

from __future__ import annotations

import re
from typing import Literal

from bot.types.encoding import SNIFF_BYTES as _SNIFF_BYTES
from bot.types.encoding import control_share, text_codec
from bot.types.files import display_name

Kind = Literal["image", "text", "pdf", "binary"]

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
ACCEPTED_IMAGES = "JPEG, PNG, GIF or WebP images"
ACCEPTED_FILES = "text, Markdown, source code, JSON, CSV, logs or PDF"
ACCEPTED = f"{ACCEPTED_IMAGES}; {ACCEPTED_FILES} files"

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
    if sample and b"\x00" not in sample and control_share(sample) <= 0.01:
        return MediaError(
            f"{display_name(name)} is not in a text encoding I read (UTF-8, UTF-16 or "
            "Windows-1252); save it as UTF-8 and attach it again."
        )
    return MediaError(
        f"{display_name(name)} looks like a binary file; attach {ACCEPTED_FILES} files, "
        f"or {ACCEPTED_IMAGES}."
    )
