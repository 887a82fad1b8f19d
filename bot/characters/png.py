"""PNG chunks read and written by hand: bounded, CRC-checked, text chunks decoded by us.

Pillow's text handling is not used on these files: a card's PNG comes from anyone, and
this reader only walks chunk headers, so a lying length, a huge size or a zlib bomb
costs nothing. Text is inflated only from a chunk whose keyword the caller wants.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")
MAX_CHUNKS = 100_000  # real images have tens; IDAT split small stays far below this
# What a viewer needs to show the image as it is: pixels, palette, transparency and
# colour space. Everything else (text, EXIF, times, animation frames) is not kept.
SHOWN_TYPES = frozenset(
    (b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"cICP")
)
_MAX_DIMENSION = 2**31 - 1  # the PNG spec's limit for a width or a height


class PngError(ValueError):
    """A file that is not a PNG, or a damaged one; the message says which."""


@dataclass(frozen=True, slots=True)
class Chunk:
    type: bytes
    data: bytes


def is_png(data: bytes) -> bool:
    return data.startswith(SIGNATURE)


def read_chunks(data: bytes) -> list[Chunk]:
    """Every chunk up to IEND; PngError when the file is truncated, lies or is damaged."""
    if not is_png(data):
        raise PngError("This file is not a PNG image.")
    chunks: list[Chunk] = []
    pos = len(SIGNATURE)
    while True:
        if len(chunks) >= MAX_CHUNKS:
            raise PngError("The PNG has too many chunks.")
        if pos + 8 > len(data):
            raise PngError("The PNG is truncated (it ends before its IEND chunk).")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length + 4
        if length > 2**31 - 1 or end > len(data):
            raise PngError("The PNG is truncated or damaged (a chunk is longer than the file).")
        if not kind.isalpha() or not kind.isascii():
            raise PngError("The PNG is damaged (a chunk has an invalid name).")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(kind + body) != crc:
            raise PngError(f"The PNG is damaged (the {kind.decode()} chunk fails its checksum).")
        chunks.append(Chunk(kind, body))
        pos = end
        if kind == b"IEND":
            break
    if chunks[0].type != b"IHDR" or len(chunks[0].data) != 13:
        raise PngError("The PNG is damaged (it does not start with an image header).")
    width, height = image_size(chunks)
    if not (0 < width <= _MAX_DIMENSION and 0 < height <= _MAX_DIMENSION):
        raise PngError(f"The PNG is damaged (its image header says {width}×{height} pixels).")
    return chunks


def image_size(chunks: list[Chunk]) -> tuple[int, int]:
    """(width, height) from the IHDR chunk of what read_chunks returned."""
    width, height = struct.unpack(">II", chunks[0].data[:8])
    return width, height


def shown_chunks(chunks: Iterable[Chunk]) -> list[Chunk]:
    """The chunks that show the image (SHOWN_TYPES), in their order: no text, no metadata."""
    return [chunk for chunk in chunks if chunk.type in SHOWN_TYPES]


def keyword_of(chunk: Chunk) -> str | None:
    """The keyword of a tEXt/zTXt/iTXt chunk, read without inflating anything; None for
    other chunks and for a text chunk without a valid keyword."""
    if chunk.type not in TEXT_TYPES:
        return None
    end = chunk.data.find(b"\0", 0, 80)
    if end < 1:
        return None
    return chunk.data[:end].decode("latin-1")


def text_of(chunk: Chunk, max_bytes: int) -> tuple[str, bytes] | None:
    """(keyword, raw text bytes) of a tEXt/zTXt/iTXt chunk, None for others or bad ones;
    PngError when it inflates past `max_bytes` (decompression stops there). Check
    keyword_of first: this inflates a compressed chunk whatever its keyword."""
    name = keyword_of(chunk)
    if name is None:
        return None
    rest = chunk.data[len(name) + 1 :]
    if chunk.type == b"tEXt":
        return name, rest
    if chunk.type == b"zTXt":
        if not rest or rest[0] != 0:
            return None
        return name, _inflate(rest[1:], max_bytes)
    # iTXt: compression flag, method, language tag NUL, translated keyword NUL, text
    if len(rest) < 2:
        return None
    flag, method, tail = rest[0], rest[1], rest[2:]
    _lang, sep1, tail = tail.partition(b"\0")
    _translated, sep2, text = tail.partition(b"\0")
    if not (sep1 and sep2) or flag not in (0, 1) or (flag and method != 0):
        return None
    return name, _inflate(text, max_bytes) if flag else text


def _inflate(data: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as err:
        raise PngError("The PNG is damaged (a compressed text chunk does not inflate).") from err
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise PngError(f"A text chunk of the PNG inflates past {max_bytes:,} bytes.")
    return out


def write_chunks(chunks: Iterable[Chunk]) -> bytes:
    parts = [SIGNATURE]
    for chunk in chunks:
        crc = zlib.crc32(chunk.type + chunk.data)
        parts.append(struct.pack(">I4s", len(chunk.data), chunk.type) + chunk.data)
        parts.append(struct.pack(">I", crc))
    return b"".join(parts)


def text_chunk(keyword: str, text: str) -> Chunk:
    """A tEXt chunk; `text` must be Latin-1 (base64 is)."""
    return Chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + text.encode("latin-1"))


@functools.cache
def placeholder_png(width: int = 400, height: int = 600, rgb: bytes = b"\x5a\x5f\x6b") -> bytes:
    """A plain one-colour PNG (SillyTavern's default avatar is 400×600), the same bytes
    every time: a card imported with it has no image of its own."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\0" + rgb * width
    pixels = zlib.compress(row * height, 9)
    return write_chunks([Chunk(b"IHDR", header), Chunk(b"IDAT", pixels), Chunk(b"IEND", b"")])
