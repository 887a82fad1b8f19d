"""Hostile card PNGs: huge images and junk text chunks cost a look at their headers.

Memory is measured in a child process (Pillow's pixels are not Python allocations, so
tracemalloc does not see them): how far the peak RSS rises while one avatar is made.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.characters import MAX_JSON_BYTES, avatar_png, card_from_json, export_png, read_card
from bot.characters import png as png_module
from bot.characters.png import read_chunks, text_of
from bot.types.limits import MAX_PIXELS
from tests.unit.characters.samples import b64, chunk, insert_before_iend, png_with, v2, v3

ROOT = Path(__file__).resolve().parents[3]
MB = 1024 * 1024
_COLOUR_TYPES = {"RGB": (2, 3), "RGBA": (6, 4), "P": (3, 1)}


def solid_png(width: int, height: int, mode: str = "RGB", *extra: bytes) -> bytes:
    """A one-colour PNG written row by row (never the whole image in memory): `extra`
    chunks go after IHDR (P mode gets a palette with a see-through entry)."""
    colour_type, channels = _COLOUR_TYPES[mode]
    pixel = {"RGB": b"\x5a\x5f\x6b", "RGBA": b"\x5a\x5f\x6b\xc0", "P": b"\x01"}[mode]
    assert len(pixel) == channels
    row = b"\0" + pixel * width
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(row) for _ in range(height)]
    pixels = b"".join(parts) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    palette = []
    if mode == "P":
        palette = [chunk(b"PLTE", b"\0\0\0\x5a\x5f\x6b"), chunk(b"tRNS", b"\0")]
    return b"".join(
        [
            png_module.SIGNATURE,
            chunk(b"IHDR", header),
            *extra,
            *palette,
            chunk(b"IDAT", pixels),
            chunk(b"IEND", b""),
        ]
    )


def card_png(image: bytes) -> bytes:
    return insert_before_iend(image, chunk(b"tEXt", b"chara\0" + b64(v2()).encode()))


def ztxt(keyword: bytes, compressed: bytes) -> bytes:
    return chunk(b"zTXt", keyword + b"\0\0" + compressed)


class Inflations:
    """Counts the zlib inflaters the PNG reader starts (one per chunk it inflates)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = zlib.decompressobj

        def counting(*args: int) -> Any:
            self.count += 1
            return real(*args)

        monkeypatch.setattr(png_module.zlib, "decompressobj", counting)


# -- defect B: junk text chunks ---------------------------------------------------------


def test_text_chunks_with_other_keywords_are_never_inflated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    junk = ztxt(b"x", zlib.compress(b"\0" * MB, 9))  # 1 MB each when inflated
    data = insert_before_iend(png_with({"chara": b64(v2())}), *[junk] * 50)
    inflations = Inflations(monkeypatch)
    assert read_card(data).name == "Seraphina"
    assert inflations.count == 0  # the card is a tEXt chunk; the junk is never opened


@pytest.mark.parametrize(
    "junk",
    [
        zlib.compress(b"A" * (MAX_JSON_BYTES * 3), 9),  # past the cap a card chunk has
        b"not zlib at all",
    ],
    ids=["bomb", "not-zlib"],
)
def test_a_bad_compressed_chunk_of_another_keyword_does_not_stop_the_import(
    junk: bytes,
) -> None:
    data = insert_before_iend(png_with({"chara": b64(v2())}), ztxt(b"x", junk))
    assert read_card(data).name == "Seraphina"


def test_only_the_first_chunk_of_each_card_keyword_is_inflated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = ztxt(b"chara", zlib.compress(b64(v2()).encode()))
    # SillyTavern reads the first: later copies are ignored, so never inflated either
    copies = [ztxt(b"Chara", b"not zlib"), ztxt(b"chara", zlib.compress(b"\0" * MB))] * 20
    data = insert_before_iend(png_with({}), first, *copies)
    inflations = Inflations(monkeypatch)
    assert read_card(data).name == "Seraphina"
    assert inflations.count == 1


def test_the_stored_avatar_is_only_what_shows_the_image() -> None:
    metadata = [
        chunk(b"gAMA", struct.pack(">I", 45455)),
        chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
        chunk(b"tIME", struct.pack(">HBBBBB", 2024, 1, 2, 3, 4, 5)),
        chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\0"),
        chunk(b"tEXt", b"Software\0paint"),
        chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x/>"),
    ]
    junk = ztxt(b"x", zlib.compress(b"\0" * MB, 9))
    original = card_png(insert_before_iend(solid_png(24, 36, "P", *metadata), *[junk] * 20))
    card = read_card(original)
    assert card.image is not None
    assert [c.type for c in read_chunks(card.image)] == [
        b"IHDR",
        b"gAMA",
        b"PLTE",
        b"tRNS",
        b"IDAT",
        b"IEND",
    ]
    assert len(card.image) < 200  # the 20 junk chunks (~20 KB compressed) are gone
    with Image.open(io.BytesIO(card.image)) as img, Image.open(io.BytesIO(original)) as src:
        assert img.mode == "P" and img.info["transparency"] == 0
        assert img.convert("RGBA").tobytes() == src.convert("RGBA").tobytes()


def test_an_export_carries_the_card_chunks_and_only_what_shows_the_image() -> None:
    """An avatar stored before imports dropped junk still exports without it."""
    junk = [
        ztxt(b"x", zlib.compress(b"\0" * MB, 9)),
        chunk(b"tEXt", b"chara\0old"),
        chunk(b"tEXt", b"Comment\0" + b"x" * 10_000),
        chunk(b"iTXt", b"x\0\0\0\0\0" + b"y" * 10_000),
        chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\0"),
    ]
    stored = insert_before_iend(solid_png(24, 36, "RGB"), *junk * 5)
    out = export_png(card_from_json(json.dumps(v3()), image=stored))
    chunks = read_chunks(out)
    assert [c.type for c in chunks] == [b"IHDR", b"IDAT", b"tEXt", b"tEXt", b"IEND"]
    assert [text_of(c, 10**7) is not None for c in chunks[2:4]] == [True, True]
    assert read_card(out).nickname == "Aurelia"


# -- defect A: an image with more pixels than the bot decodes ---------------------------


@pytest.mark.parametrize("size", [(8192, 8192), (20_000, 20_000), (MAX_PIXELS + 1, 1)])
def test_a_card_whose_image_is_too_large_imports_without_it(size: tuple[int, int]) -> None:
    # Only the header matters: the image data is never decoded (nor must it be valid).
    header = struct.pack(">IIBBBBB", *size, 8, 2, 0, 0, 0)
    image = png_module.SIGNATURE + chunk(b"IHDR", header)
    image += chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    card = read_card(card_png(image))
    assert card.name == "Seraphina" and card.image is None
    with Image.open(io.BytesIO(export_png(card))) as img:  # exported with the placeholder
        assert img.size == (400, 600)


def test_an_image_at_the_cap_is_kept() -> None:
    header = struct.pack(">IIBBBBB", MAX_PIXELS // 4, 4, 8, 2, 0, 0, 0)
    image = png_module.SIGNATURE + chunk(b"IHDR", header)
    image += chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    assert read_card(card_png(image)).image == image


# VmHWM is this process's own peak RSS (ru_maxrss keeps the forking parent's across exec).
_MEASURE = r"""
import re, sys
from pathlib import Path
from bot.characters import avatar_png
from tests.unit.characters.samples import png_with
def peak():
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024
assert avatar_png(png_with({}, size=(600, 900)))  # Pillow's plugins loaded first
data = Path(sys.argv[1]).read_bytes()
before = peak()
out = avatar_png(data)
after = peak()
Path(sys.argv[2]).write_bytes(out or b"")
print(after - before)
"""


def avatar_in_a_child(tmp_path: Path, image: bytes) -> tuple[bytes | None, int]:
    """avatar_png's result in a fresh process, and how far its peak RSS rose (bytes)."""
    source, result = tmp_path / "in.png", tmp_path / "out.png"
    source.write_bytes(image)
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(source), str(result)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    print(f"peak RSS rose {int(run.stdout) / MB:.1f} MB")
    return result.read_bytes() or None, int(run.stdout)


def test_an_avatar_over_the_pixel_cap_is_refused_before_decoding(tmp_path: Path) -> None:
    """The probe's file: 8192×8192 in 216 KB, ~1 GB of peak RSS to make its avatar."""
    image = card_png(solid_png(8192, 8192))
    assert len(image) < 300_000
    out, grew = avatar_in_a_child(tmp_path, image)
    assert out is None
    assert grew < 16 * MB


@pytest.mark.parametrize(("mode", "decoded"), [("RGB", 4), ("RGBA", 4), ("P", 1)])
def test_a_large_avatar_is_scaled_down_without_full_size_copies(
    tmp_path: Path, mode: str, decoded: int
) -> None:
    """Pillow must decode the file at full size (`decoded` bytes a pixel); nothing more
    of that size is held while the square is cut, converted and scaled."""
    width, height = 4000, 4000
    out, grew = avatar_in_a_child(tmp_path, solid_png(width, height, mode))
    assert out is not None
    with Image.open(io.BytesIO(out)) as img:
        assert img.size == (256, 256) and img.mode == "RGBA"
        expected = {"RGB": (90, 95, 107, 255), "RGBA": (90, 95, 107, 192), "P": (90, 95, 107, 255)}
        assert img.getpixel((128, 128)) == expected[mode]
    assert grew < width * height * decoded * 1.25 + 8 * MB


def test_the_avatar_is_the_centre_square_set_high() -> None:
    """A tall image loses a quarter of its extra height above the square, three below;
    colours and transparency survive the scaling in bands."""
    picture = Image.new("RGBA", (2000, 3000), (0, 0, 255, 255))
    picture.paste((255, 0, 0, 255), (0, 250, 2000, 2250))  # the square: rows 250..2250
    picture.paste((0, 0, 0, 0), (0, 250, 1000, 1250))  # its top-left quarter see-through
    raw = io.BytesIO()
    picture.save(raw, format="PNG")
    out = avatar_png(raw.getvalue())
    assert out is not None
    with Image.open(io.BytesIO(out)) as img:
        assert img.size == (256, 256)
        assert img.getpixel((200, 200)) == (255, 0, 0, 255)
        assert img.getpixel((60, 60))[3] == 0
        assert img.getpixel((200, 2)) == (255, 0, 0, 255)  # no blue above the square
        assert img.getpixel((200, 253)) == (255, 0, 0, 255)  # nor below it


def test_a_jpeg_over_the_cap_is_decoded_small_enough_to_pass() -> None:
    """As for images sent to a model: a JPEG decoded at 1/8 scale is 1/64 of the pixels."""
    raw = io.BytesIO()
    Image.new("RGB", (6600, 6100), (10, 200, 30)).save(raw, format="JPEG")
    out = avatar_png(raw.getvalue())
    assert out is not None
    with Image.open(io.BytesIO(out)) as img:
        assert img.size == (256, 256)
        pixel = img.getpixel((128, 128))
        assert isinstance(pixel, tuple)
        assert all(abs(got - want) < 4 for got, want in zip(pixel, (10, 200, 30, 255), strict=True))
