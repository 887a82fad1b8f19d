"""A crafted PDF (100 pages sharing one large content stream) costs only what the prompt uses."""

from __future__ import annotations

import io
import re
import sys
import zlib
from pathlib import Path
from typing import Any, cast

import pytest
from pypdf import PdfReader, PdfWriter

from bot.conversation.attachments import Refused, prepare
from bot.conversation.engine import ChatEngine
from bot.media import MAX_PDF_CONTENT, MediaError, file_block, files, read_pdf
from bot.types import Attachment
from bot.types.text import MARKDOWN_READ
from tests.unit.media.samples import pdf_file, text_pdf


def shared_stream_pdf(pages: int = 100, runs: int = 20_000) -> bytes:
    """`pages` pages that all draw one FlateDecode stream of `runs` × `BT … (A) Tj ET`."""
    content = zlib.compress(b"BT /F1 12 Tf 72 720 Td (A) Tj ET\n" * runs, 9)
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages))
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(content), content),
        *[page] * pages,
    ]
    return pdf_file(objects)


def attachment(data: bytes, name: str = "report.pdf") -> Attachment:
    async def fetch(limit: int) -> bytes:
        return data

    return Attachment(filename=name, content_type="application/pdf", size=len(data), fetch=fetch)


def test_the_crafted_pdf_is_small_and_its_pages_are_long() -> None:
    data = shared_stream_pdf(pages=3, runs=2_000)
    assert len(data) < 5_000
    assert read_pdf(data, "report.pdf").count("A") == 3 * 2_000


def test_a_file_block_with_a_budget_stops_its_pdf_pages_there() -> None:
    block = file_block(shared_stream_pdf(), "report.pdf", 30_000)
    text = block.text
    assert block.cut  # 20,000 characters a page: the second fills the budget
    assert text.endswith("\n\n[… pages 3–100 of 100 not read]")


async def test_a_turn_reads_only_the_pages_its_text_budget_can_take() -> None:
    prepared = await prepare(
        [attachment(shared_stream_pdf())], max_images=4, max_bytes=2**20, text_budget=10_000
    )
    assert len(prepared.text) <= 10_000
    # Cut as a long text file is, and the pages never read are said too.
    assert re.search(r"\n```\n\[… [\d,]+ of 20,000 characters left out\]", prepared.text)
    assert prepared.text.endswith("\n[… pages 2–100 of 100 not read]")


async def test_two_files_share_the_budget_before_their_pages_are_read() -> None:
    pdf = shared_stream_pdf()
    prepared = await prepare(
        [attachment(pdf, "a.pdf"), attachment(pdf, "b.pdf")],
        max_images=4,
        max_bytes=2**20,
        text_budget=30_000,
    )
    # 15,000 each: one page of each
    assert prepared.text.count("\n[… pages 2–100 of 100 not read]") == 2


def test_the_drawing_commands_read_from_one_pdf_are_bounded() -> None:
    # Pages that draw much and give little text: the text budget alone would read them all.
    runs = MAX_PDF_CONTENT // 10 // len(b"BT /F1 12 Tf 72 720 Td (A) Tj ET\n")
    text = read_pdf(shared_stream_pdf(runs=runs), "report.pdf", max_chars=10**9)
    assert text.endswith("\n\n[… pages 11–100 of 100 not read]")


def test_a_pdf_whose_first_page_draws_too_much_is_refused() -> None:
    runs = MAX_PDF_CONTENT // len(b"BT /F1 12 Tf 72 720 Td (A) Tj ET\n") + 1
    with pytest.raises(MediaError, match=r"report\.pdf is too complex to read"):
        read_pdf(shared_stream_pdf(pages=2, runs=runs), "report.pdf")


async def test_an_ordinary_pdf_is_read_whole_within_the_budget() -> None:
    data = text_pdf([f"Page {n}" for n in range(1, 4)])
    prepared = await prepare([attachment(data)], max_images=4, max_bytes=2**20, text_budget=500)
    assert prepared.text == "\nreport.pdf\n```\nPage 1\n\nPage 2\n\nPage 3\n```"


def test_whitespace_only_pages_do_not_count_as_text_read() -> None:
    data = text_pdf([" ", "Hello"])
    assert read_pdf(data, "report.pdf", max_chars=1).endswith("Hello")


async def test_the_check_when_a_file_is_attached_reads_only_its_first_text() -> None:
    # The console asks before the message is written; the turn then reads what it uses.
    engine = ChatEngine(store=cast(Any, None), hub=cast(Any, None))
    assert await engine.attachment_refusal(attachment(shared_stream_pdf())) is None
    refusal = await engine.attachment_refusal(attachment(text_pdf([" "]), "scan.pdf"))
    assert refusal is not None and "has no text layer" in refusal


def font_map_bomb(fonts: int = 20, entries: int = 99_900, pages: int = 100) -> bytes:
    """Media probe: 22 KB, every page drawing one letter in each of `fonts` fonts that share
    one ToUnicode map of `entries` entries (just under pypdf's limit). pypdf reads the map
    again for every font of every page: ~7.7 s a page, 13 minutes for the file."""
    cmap = (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        b"1 begincodespacerange <00> <FF> endcodespacerange\n"
        + (b"100 beginbfchar\n" + b"<41> <0042>\n" * 100 + b"endbfchar\n") * (entries // 100)
        + b"endcmap CMapName currentdict /CMap defineresource pop end end"
    )
    packed = zlib.compress(cmap, 9)
    draw = b"BT " + b"".join(b"/F%d 12 Tf (A) Tj " % k for k in range(fonts)) + b"ET"
    first_font = 6
    first_page = first_font + fonts
    names = " ".join(f"/F{k} {first_font + k} 0 R" for k in range(fonts))
    kids = " ".join(f"{first_page + i} 0 R" for i in range(pages))
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] "
        b"/Resources << /Font 3 0 R >> /Contents 4 0 R >>"
    )
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 5 0 R >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        f"<< {names} >>".encode(),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(draw), draw),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(packed), packed),
        *[font] * fonts,
        *[page] * pages,
    ]
    return pdf_file(objects)


def test_a_pdf_slower_to_read_than_its_time_is_ended_and_said_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Media probe: the bomb above held the bot's interpreter for minutes (pypdf is pure
    Python), whatever was counted before reading. It is read in a process of its own now,
    ended when its time is up."""
    data = font_map_bomb()
    assert len(data) < 40_000
    monkeypatch.setattr(files, "PDF_SECONDS", 1.0)
    with pytest.raises(MediaError) as err:
        read_pdf(data, "bomb.pdf")
    assert str(err.value) == (
        "bomb.pdf is too complex to read (its first pages take too long or too much memory "
        "before any text); paste its text instead."
    )


def test_pages_read_before_the_time_is_up_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # One quick page, then pages that each take seconds: the first is kept, the rest said.
    quick = text_pdf(["Quick page"])
    slow = font_map_bomb(fonts=20, pages=3)
    writer = PdfWriter()
    for part in (quick, slow):
        writer.append(PdfReader(io.BytesIO(part)))
    out = io.BytesIO()
    writer.write(out)
    monkeypatch.setattr(files, "PDF_SECONDS", 2.0)
    text = read_pdf(out.getvalue(), "mixed.pdf")
    assert text == "Quick page\n\n[… pages 2–4 of 4 not read]"


def test_a_pdf_reader_that_cannot_start_is_said_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Review: an interpreter that cannot import pypdf (a user-site install under `-I`)
    had every PDF called "too complex to read"; one that cannot run raised an OSError."""
    without_site = tmp_path / "python"
    without_site.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    without_site.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(without_site))
    said = "report.pdf cannot be read now: the bot's PDF reader did not start. Paste its text."
    with pytest.raises(MediaError) as err:
        read_pdf(text_pdf(["Hello"]), "report.pdf")
    assert str(err.value) == said
    monkeypatch.setattr(sys, "executable", str(tmp_path / "missing"))
    with pytest.raises(MediaError) as err:
        read_pdf(text_pdf(["Hello"]), "report.pdf")
    assert str(err.value) == said


def test_a_line_the_reader_was_ended_in_the_middle_of_is_no_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Review: a kill in the middle of a long page's line raised JSONDecodeError."""
    cut = tmp_path / "cut_worker.py"
    cut.write_text(
        "import sys\nsys.stdin.buffer.read()\n"
        'print(\'{"total": 3}\')\nprint(\'{"text": "Page one"}\')\n'
        'sys.stdout.write(\'{"text": "Page tw\')\n'
    )
    monkeypatch.setattr(files, "_WORKER", cut)
    assert read_pdf(b"%PDF-1.4", "cut.pdf") == "Page one\n\n[… pages 2–3 of 3 not read]"


async def test_a_file_read_in_a_media_thread_is_named_as_the_console_shows_names() -> None:
    """Read-through: the media threads ran without the task's context, so the console
    (which shows names as they are) got `\\*draft\\*.pdf` in a refusal read there."""
    MARKDOWN_READ.set(False)
    damaged = attachment(b"%PDF-1.7\n" + bytes(range(256)) * 8, "*draft*.pdf")
    with pytest.raises(Refused) as err:
        await prepare([damaged], max_images=4, max_bytes=2**20, text_budget=1_000)
    assert str(err.value).startswith("*draft*.pdf could not be read as a PDF"), err.value
