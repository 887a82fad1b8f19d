"""Text and PDF attachments: decoded, refused when binary, fenced and trimmed to a budget."""

from __future__ import annotations

import io
import math
import os
import re
import sqlite3
import struct
import sys
import tempfile
import wave
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from bot.media import MediaError, classify, fenced, language, read_pdf, read_text_file
from bot.media.files import MAX_PDF_PAGE_TREE
from bot.types.text import clean_text
from tests.unit.media.samples import encode, many_pages_pdf, text_pdf


def test_a_utf8_text_file_is_read_and_cleaned() -> None:
    data = "héllo\r\nwörld ✓\x07\n".encode()
    assert read_text_file(data, "notes.txt") == "héllo\nwörld ✓\n"


def test_a_utf8_bom_is_dropped() -> None:
    assert read_text_file(b"\xef\xbb\xbfa,b\n1,2\n", "table.csv") == "a,b\n1,2\n"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_are_read_when_a_bom_says_so(codec: str) -> None:
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}.get(codec, b"")
    data = bom + "Grüße, 世界\n".encode(codec)
    assert read_text_file(data, "windows.log") == "Grüße, 世界\n"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_read(codec: str) -> None:
    """Media probe: it was refused as a binary file (every other byte a NUL)."""
    data = "Notes from the meeting: café, ünïcode — ok.\n".encode(codec) * 30
    assert read_text_file(data, "notes.txt").startswith("Notes from the meeting: café")


# Text with few ASCII characters, so few NULs: CJK (一 and the ideographic space have a NUL
# as their low byte), Cyrillic, Korean, characters outside the BMP.
UTF16_TEXTS = [
    "会議のメモ。明日は晴れるでしょう。\n" * 40,
    "一　二　三　中文文本，你好世界。\r\n" * 40,
    "Привет, мир! Как дела?\n" * 30,
    "한국어 텍스트입니다\n" * 30,
    "😀 emoji\n" * 2000,  # the 8 KB sniffed end between the halves of a 😀
]


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("text", UTF16_TEXTS, ids=range(len(UTF16_TEXTS)))
def test_utf16_without_a_bom_is_read_in_any_script(codec: str, text: str) -> None:
    """Media probe: Japanese, Chinese or Russian notes saved by a Windows tool as UTF-16
    without a BOM were refused as binary files (the old test wanted half the bytes NUL)."""
    data = text.encode(codec)
    assert classify(data, "notes.txt") == "text"
    assert read_text_file(data, "notes.txt") == clean_text(text)


def real_binaries() -> list[object]:
    """Files of the kinds people attach by mistake, made by their own tools."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("a.txt", "hello " * 200)
        # Stored, not compressed: UTF-16 text inside, between the archive's headers.
        zipped.writestr("b.txt", "会議のメモ\n".encode("utf-16-le") * 200, zipfile.ZIP_STORED)
    sound = io.BytesIO()
    with wave.open(sound, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(
            b"".join(struct.pack("<h", int(3000 * math.sin(i / 10))) for i in range(20_000))
        )
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder, "t.db"))
        db.execute("CREATE TABLE t (x TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [(f"row {i}",) for i in range(500)])
        db.commit()
        db.close()
        database = Path(folder, "t.db").read_bytes()
    noise = Image.effect_noise((64, 64), 40).convert("RGB")
    return [
        pytest.param(b"\x7fELF\x02\x01\x01" + bytes(9) + os.urandom(4096), id="elf"),
        pytest.param(Path(sys.executable).resolve().read_bytes()[:65_536], id="python"),
        pytest.param(archive.getvalue(), id="zip"),
        pytest.param(encode(noise, "PNG"), id="png"),
        pytest.param(encode(noise, "BMP"), id="bmp"),
        pytest.param(encode(noise, "JPEG"), id="jpeg"),
        pytest.param(sound.getvalue(), id="wav"),
        pytest.param(sound.getvalue()[44:], id="pcm"),  # 16-bit samples, no header
        pytest.param(database, id="sqlite"),
        # Single-byte text holding NULs: two ASCII letters read as UTF-16 make an ideograph.
        pytest.param(b"".join(b"./src/m%d/file.py\x00" % i for i in range(300)), id="print0"),
        pytest.param(b"".join(b"record %d\x00\n" % i for i in range(300)), id="nul-ended"),
        pytest.param(b"line ok\n" * 100 + b"\x00" + b"line ok\n" * 100, id="one-nul"),
    ]


@pytest.mark.parametrize("data", real_binaries())
def test_real_binaries_are_still_refused_as_text(data: bytes) -> None:
    with pytest.raises(MediaError, match=r"looks like a binary file"):
        read_text_file(data, "not-text.txt")


@pytest.mark.parametrize("codec", ["shift_jis", "gbk", "euc-kr"])
def test_text_in_an_encoding_not_read_is_told_how_to_save_it(codec: str) -> None:
    """Media probe: Japanese text in Shift-JIS was "a binary file"."""
    data = "会議のメモ。明日は晴れるでしょう。\n".encode(codec, errors="replace") * 40
    with pytest.raises(MediaError) as caught:
        read_text_file(data, "memo.txt")
    assert str(caught.value) == (
        "memo.txt is not in a text encoding I read (UTF-8, UTF-16 or Windows-1252); save "
        "it as UTF-8 and attach it again."
    )


def test_windows_1252_text_is_read_not_refused() -> None:
    data = "Café crème, naïve façade — déjà vu.\n".encode("cp1252") * 20
    assert read_text_file(data, "old.txt").startswith("Café crème, naïve façade — déjà vu.\n")


def test_a_few_stray_bytes_do_not_make_text_binary() -> None:
    data = b"x" * 2000 + "ü".encode()[:1]  # cut in the middle of a character
    assert read_text_file(data, "cut.log") == "x" * 2000 + "\ufffd"


@pytest.mark.parametrize(
    "data",
    [
        b"ELF\x00\x01\x02 plain words and a NUL",
        b"a long line of ordinary words with a single NUL\x00 in the middle of it",
        bytes(b for b in os.urandom(8192) if b != 0),  # no NUL, but machine data
        b"\x01\x02\x03\x04\x05\x06 mostly controls \x07\x08\x0e\x0f" * 10,
    ],
)
def test_binary_files_are_refused_clearly(data: bytes) -> None:
    with pytest.raises(MediaError) as caught:
        read_text_file(data, "program.bin")
    assert str(caught.value) == (
        "program.bin looks like a binary file; attach text, Markdown, source code, JSON, "
        "CSV, logs or PDF files, or JPEG, PNG, GIF or WebP images."
    )


def test_a_log_padded_with_nuls_by_a_crash_is_read_without_them() -> None:
    """Media probe: a log whose end a crash left as NUL bytes (its length written, its
    last blocks not) was refused as a binary file."""
    log = b"".join(b"2026-01-02 10:00:%02d worker ok\n" % i for i in range(60))
    for padding in (1, 4096, 200_000):  # within the first 8 KB sniffed, and past them
        data = log + bytes(padding)
        assert classify(data, "app.log") == "text"
        assert read_text_file(data, "app.log") == log.decode()
    with pytest.raises(MediaError, match=r"crash\.log is empty"):
        read_text_file(bytes(4096), "crash.log")


def test_a_log_whose_start_copytruncate_left_as_nuls_is_read() -> None:
    """Media probe: a log rotated by logrotate's copytruncate starts with NULs (emptied
    under a writer that carries on at its old offset: the hole reads as zeros) and was
    refused as a binary file."""
    log = b"".join(b"2026-01-02 10:00:%02d worker ok\n" % i for i in range(60))
    for hole in (1, 4096, 200_000):  # within the first 8 KB sniffed, and past them
        data = bytes(hole) + log
        assert classify(data, "app.log") == "text"
        assert read_text_file(data, "app.log") == log.decode()
    assert read_text_file(bytes(100) + log + bytes(100), "app.log") == log.decode()
    # The 8 KB sniffed may end inside a character: only its start was padded.
    cjk = "".join(f"10:00:{i % 60:02d} 工作进程正常\n" for i in range(2000)).encode()
    for hole in range(8000, 8028):  # one line's length: every place in it
        assert classify(bytes(hole) + cjk, "app.log") == "text"
    assert read_text_file(bytes(8000) + cjk, "app.log") == cjk.decode()


@pytest.mark.parametrize(
    "data",
    [
        bytes(b for b in os.urandom(8192) if b) + bytes(4096),  # machine data, then zeros
        b"\x7fELF\x02\x01\x01" + bytes(100) + b"code" + bytes(64),
        b"a line with a NUL\x00 inside, and padding after it\n" + bytes(512),
        b"MZ\x90\x00" + bytes(200),  # a program's first bytes, then zeros
        bytes(512) + b"MZ\x90",  # zeros, then a program's first bytes
        bytes(4096) + bytes(b for b in os.urandom(8192) if b),  # zeros, then machine data
        bytes(64) + b"MZ\x90" + bytes(64),
        # Formats that start with NULs: an MP4 video, a TrueType font.
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + os.urandom(4096),
        b"\x00\x01\x00\x00\x00\x0e\x00\x80\x00\x03\x00\x60" + os.urandom(4096),
    ],
)
def test_a_binary_is_still_refused_padded_or_not(data: bytes) -> None:
    with pytest.raises(MediaError, match=r"looks like a binary file"):
        read_text_file(data, "program.bin")


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(MediaError, match=r"empty\.txt is empty"):
        read_text_file(b"\n\n", "empty.txt")


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("tool.py", "python"),
        ("src/App.TSX", "tsx"),
        ("data.json", "json"),
        ("table.csv", "csv"),
        ("README.md", "markdown"),
        ("ci.yml", "yaml"),
        ("Dockerfile", "dockerfile"),
        ("server.log", ""),
        ("notes.txt", ""),
        (".bashrc", ""),
    ],
)
def test_the_fence_language_comes_from_the_name(name: str, tag: str) -> None:
    assert language(name) == tag


def test_source_code_is_fenced_under_its_name() -> None:
    code = "def f():\n    return 1\n"
    assert fenced("tool.py", code, 1000).text == "\ntool.py\n```python\ndef f():\n    return 1\n```"


def test_the_fence_is_longer_than_any_backtick_run_inside() -> None:
    text = "Example:\n````js\nconsole.log(`hi`)\n````\n"
    block = fenced("README.md", text, 1000).text
    assert block.startswith("\nREADME.md\n`````markdown\n")
    assert block.endswith("\n`````")
    assert text.rstrip("\n") in block


def test_a_long_file_is_trimmed_with_the_numbers_left_out() -> None:
    text = "".join(f"line {i:05d}\n" for i in range(2000))  # 22,000 characters
    total = len(text.rstrip("\n"))
    block = fenced("server.log", text, 5000).text
    assert len(block) <= 5000
    match = re.search(r"\n\[… ([\d,]+) of ([\d,]+) characters left out\]$", block)
    assert match is not None
    left, of = (int(group.replace(",", "")) for group in match.groups())
    assert of == total == 21_999
    body = block.split("```\n", 1)[1].rsplit("\n```", 1)[0]
    assert len(body) + left == total
    assert body.endswith("\nline 00" + body.rsplit("\nline 00", 1)[1])  # whole lines only
    assert text.startswith(body + "\n")


def test_a_budget_smaller_than_the_framing_keeps_only_the_note() -> None:
    block = fenced("a.txt", "x" * 50, 10).text
    assert block == "\na.txt\n```\n\n```\n[… 50 of 50 characters left out]"


def test_a_single_long_line_is_cut_where_the_budget_ends() -> None:
    block = fenced("min.js", "a" * 10_000, 300).text
    # 22 heading, 4 closing fence, 41 for the widest note ("10,000 of 10,000"): 233 kept.
    note = "\n[… 9,767 of 10,000 characters left out]"
    assert block == "\nmin.js\n```javascript\n" + "a" * 233 + "\n```" + note
    assert block.endswith("of 10,000 characters left out]")


def test_a_text_pdf_is_read() -> None:
    data = text_pdf(["Hello from page one", "And page two"])
    assert read_pdf(data, "report.pdf") == "Hello from page one\n\nAnd page two"
    assert read_text_file(data, "report.pdf") == "Hello from page one\n\nAnd page two"


def test_only_the_first_pages_of_a_long_pdf_are_read() -> None:
    data = text_pdf([f"Page {n}" for n in range(1, 6)])
    assert read_pdf(data, "book.pdf", max_pages=2) == (
        "Page 1\n\nPage 2\n\n[… pages 3–5 of 5 not read]"
    )


def test_a_pdf_with_a_page_tree_too_large_to_walk_is_refused() -> None:
    """pypdf reads every page's entry before the first (9 s for 90,000 small pages in a
    13 MB file, the event loop stalled meanwhile); the pages read stay 100 however many."""
    assert read_pdf(many_pages_pdf(MAX_PDF_PAGE_TREE - 10), "long.pdf").endswith(
        f"[… pages 101–{MAX_PDF_PAGE_TREE - 10} of {MAX_PDF_PAGE_TREE - 10} not read]"
    )
    with pytest.raises(MediaError) as err:
        read_pdf(many_pages_pdf(MAX_PDF_PAGE_TREE + 1), "crafted.pdf")
    assert str(err.value) == (
        f"crafted.pdf has too many pages (over {MAX_PDF_PAGE_TREE:,}) for me to find its first "
        "100; attach those pages as a smaller PDF, or paste their text."
    )


def test_pdf_pages_stop_once_enough_text_is_read() -> None:
    data = text_pdf([f"Page {n} " + "x" * 20 for n in range(1, 11)])
    assert read_pdf(data, "book.pdf", max_chars=50) == (
        f"Page 1 {'x' * 20}\n\nPage 2 {'x' * 20}\n\n[… pages 3–10 of 10 not read]"
    )


def test_a_scanned_pdf_is_refused() -> None:
    out = io.BytesIO()
    Image.new("RGB", (600, 800), "white").save(out, "PDF")
    with pytest.raises(MediaError, match=r"scan\.pdf has no text layer.*scanned PDFs are not read"):
        read_text_file(out.getvalue(), "scan.pdf")


def encrypted(user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(["Top secret"]))))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_password_protected_pdf_is_refused() -> None:
    data = encrypted("hunter2")
    assert b"Top secret" not in data
    with pytest.raises(MediaError, match=r"locked\.pdf is protected by a password"):
        read_pdf(data, "locked.pdf")


def test_a_pdf_encrypted_only_against_printing_is_read() -> None:
    assert read_pdf(encrypted(""), "restricted.pdf") == "Top secret"


def test_a_damaged_pdf_is_refused() -> None:
    with pytest.raises(MediaError, match=r"bad\.pdf could not be read as a PDF"):
        read_pdf(b"%PDF-1.7\n" + os.urandom(2000), "bad.pdf")


def test_a_huge_file_is_never_measured_whole_for_a_small_budget() -> None:
    """Review: an 18 MB file was measured whole, then ~25 times over halves of it (1.5 s
    of a turn's thread); the measured starts now stay near what the budget can hold."""
    text = "The quick brown fox jumps over the lazy dog. 12345\n" * 200_000  # 10 MB
    seen: list[int] = []

    def tokens(part: str) -> int:
        seen.append(len(part))
        return len(part) // 4

    block = fenced("big.txt", text, 3_000, tokens)
    assert block.cut and tokens(block.text) <= 3_000
    assert max(seen) < 100_000 and len(seen) < 40


def test_a_fence_outruns_the_backticks_of_what_is_kept_not_of_the_whole_file() -> None:
    """Quadratic-hunt probe: the fence was one longer than the file's longest run of
    backticks, kept text or not: a file of 1,000,000 backticks cut to a budget of 1,000
    characters was a block of 2,000,000 (its fences), far past the turn's budget."""
    block = fenced("ticks.txt", "`" * 1_000_000, 1000)
    assert block.cut and len(block.text) <= 1000, len(block.text)
    kept = block.text.split("\n")[3]  # label, fence, the kept run, fence, note
    assert block.text.split("\n")[2] == "`" * (len(kept) + 1)
    # A long run past what is kept does not make the fence long.
    late = fenced("notes.md", "hello\n" * 1000 + "`" * 100_000, 500)
    assert "\n```markdown\n" in late.text and len(late.text) <= 500
    # What is kept still cannot close the fence early.
    inside = fenced("a.md", "x ````` y\n" * 3, 1000).text
    assert "\n``````markdown\n" in inside and inside.endswith("\n``````")
