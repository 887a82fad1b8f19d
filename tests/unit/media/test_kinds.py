"""What an attachment is: the bytes decide, the name and declared type only break ties."""

from __future__ import annotations

import html
import io
import os
import zipfile

import pytest
from PIL import Image

from bot.frontends.matrix.render import markdown_to_html
from bot.media import classify, named_image, unread_refusal
from bot.types.files import display_name, file_label
from bot.types.text import literal
from tests.unit.media.samples import encode, text_pdf

NOISE = bytes(b | 0x80 for b in os.urandom(4096))  # no magic, no NUL, not UTF-8


def zipped() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.txt", "hello")
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_images_are_found_by_their_bytes_whatever_the_name(fmt: str) -> None:
    data = encode(Image.new("RGB", (8, 8)), fmt)
    assert classify(data, "notes.txt", "text/plain") == "image"


@pytest.mark.parametrize(
    ("data", "name", "declared", "kind"),
    [
        (text_pdf(["hi"]), "x.txt", "", "pdf"),
        (b"junk before\n" + text_pdf(["hi"]), "x", "", "pdf"),
        (b"\xef\xbb\xbf" + text_pdf(["hi"]), "x.txt", "", "pdf"),  # a BOM before it
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\n\r\n" + text_pdf(["hi"]),
            "x",
            "",
            "pdf",
        ),
        # A script or a note that mentions the header near its start is text.
        (b'def is_pdf(f):\n    return f.read(5) == b"%PDF-"\n', "is_pdf.py", "", "text"),
        (b"# Notes\nEvery PDF starts with %PDF-1.7\n", "notes.md", "", "text"),
        (zipped(), "doc.txt", "text/plain", "binary"),
        (b"\x7fELF\x02\x01\x01" + bytes(100), "run", "", "binary"),
        (b"print('hi')\n", "photo.png", "image/png", "text"),
        (b"BMW and Audi\n", "cars.txt", "", "text"),
        ("ünïcödé text".encode() * 1000, "big.md", "", "text"),
        (b"a" + "ü".encode() * 5000, "cut-at-8k.txt", "", "text"),  # sample cut mid-character
        (b"\xff\xfeh\x00i\x00", "w.txt", "", "text"),
        (NOISE, "photo.png", "", "image"),
        (NOISE, "x.bin", "image/webp; q=1", "image"),
        (NOISE, "paper.PDF", "", "pdf"),
        (NOISE, "x.bin", "application/pdf", "pdf"),
        (NOISE, "blob", "application/octet-stream", "binary"),
        (os.urandom(4096), "blob.dat", "", "binary"),
    ],
)
def test_classify(data: bytes, name: str, declared: str, kind: str) -> None:
    assert classify(data, name, declared) == kind


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # showed as "invoiceexe.pdf"
        ("re\u200bport.pdf", "report.pdf"),
        ("two\nlines.txt", "two lines.txt"),
        ("\x00\x1b[2J.txt", "[2J.txt"),
        ("", "the attachment"),
        ("\u200b", "the attachment"),
        ("a" * 500 + ".txt", "a" * 99 + "…"),
    ],
)
def test_a_file_name_is_shown_as_it_reads(name: str, shown: str) -> None:
    assert file_label(name) == shown
    assert display_name(name) == literal(shown)


@pytest.mark.parametrize(
    "name",
    [
        "[Verify your account](https://evil.example/login).png",
        "**URGENT** <@123> ~~x~~ ||y|| `z`.exe",
        "# heading.txt",
    ],
)
def test_a_file_name_makes_no_markdown_in_the_bots_own_message(name: str) -> None:
    """A member's file name quoted in a refusal is no link, bold, mention or heading
    (Discord reads the backslashes; so does the Matrix renderer)."""
    shown = display_name(name)
    assert markdown_to_html(shown) == html.escape(name, quote=False)
    assert file_label(name) == name  # the prompt names the file as it is


@pytest.mark.parametrize(
    ("name", "declared", "image"),
    [
        ("photo.HEIC", "", True),  # counted before download as read after it (two lists
        ("scan.tiff", "application/octet-stream", True),  # had disagreed: 5 against 16)
        ("x.bin", "image/png; charset=binary", True),
        ("icon.svg", "image/svg+xml", False),  # XML: a text file
        ("icon.png", "image/svg+xml", False),
        ("notes.txt", "text/plain", False),
    ],
)
def test_an_image_by_its_name_is_one_list(name: str, declared: str, image: bool) -> None:
    assert named_image(name, declared) is image


@pytest.mark.parametrize(
    ("name", "declared", "said"),
    [
        ("voice-message.ogg", "audio/ogg", "audio"),
        ("memo.m4a", "", "audio"),
        ("clip.mp4", "video/mp4; codecs=avc1", "a video"),
        ("clip.webm", "", "a video"),
        ("notes.ogg", "text/plain", None),  # what it says it is, it is read as
        ("photo.png", "image/png", None),
    ],
)
def test_audio_and_video_are_refused_by_what_they_say_they_are(
    name: str, declared: str, said: str | None
) -> None:
    refusal = unread_refusal(name, declared)
    if said is None:
        assert refusal is None
    else:
        assert refusal is not None and f"is {said}" in str(refusal), refusal
