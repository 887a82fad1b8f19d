"""A crafted PDF (100 pages sharing one large content stream) costs only what the prompt uses."""

from __future__ import annotations

import re
import zlib
from typing import Any, cast

import pytest
from pypdf import PageObject

from bot.conversation.attachments import prepare
from bot.conversation.engine import ChatEngine
from bot.media import MAX_PDF_CONTENT, MediaError, file_block, read_pdf
from bot.types import Attachment
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


@pytest.fixture
def extracted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many pages pypdf was asked for the text of."""
    calls: list[int] = []
    original = PageObject.extract_text

    def counting(self: PageObject, *args: object, **kwargs: object) -> str:
        calls.append(1)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PageObject, "extract_text", counting)
    return calls


def attachment(data: bytes, name: str = "report.pdf") -> Attachment:
    async def fetch(limit: int) -> bytes:
        return data

    return Attachment(filename=name, content_type="application/pdf", size=len(data), fetch=fetch)


def test_the_crafted_pdf_is_small_and_its_pages_are_long() -> None:
    data = shared_stream_pdf(pages=3, runs=2_000)
    assert len(data) < 5_000
    assert read_pdf(data, "report.pdf").count("A") == 3 * 2_000


def test_a_file_block_with_a_budget_stops_its_pdf_pages_there(extracted: list[int]) -> None:
    block = file_block(shared_stream_pdf(), "report.pdf", 30_000)
    text = block.text
    assert block.cut
    assert len(extracted) == 2  # 20,000 characters a page: the second fills the budget
    assert text.endswith("\n\n[… pages 3–100 of 100 not read]")


async def test_a_turn_reads_only_the_pages_its_text_budget_can_take(extracted: list[int]) -> None:
    prepared = await prepare(
        [attachment(shared_stream_pdf())], max_images=4, max_bytes=2**20, text_budget=10_000
    )
    assert len(extracted) == 1
    assert len(prepared.text) <= 10_000
    # Cut as a long text file is, and the pages never read are said too.
    assert re.search(r"\n```\n\[… [\d,]+ of 20,000 characters left out\]", prepared.text)
    assert prepared.text.endswith("\n[… pages 2–100 of 100 not read]")


async def test_two_files_share_the_budget_before_their_pages_are_read(
    extracted: list[int],
) -> None:
    pdf = shared_stream_pdf()
    prepared = await prepare(
        [attachment(pdf, "a.pdf"), attachment(pdf, "b.pdf")],
        max_images=4,
        max_bytes=2**20,
        text_budget=30_000,
    )
    assert len(extracted) == 2  # 15,000 each: one page of each
    assert prepared.text.count("not read]") == 2


def test_the_drawing_commands_read_from_one_pdf_are_bounded(extracted: list[int]) -> None:
    # Pages that draw much and give little text: the text budget alone would read them all.
    runs = MAX_PDF_CONTENT // 10 // len(b"BT /F1 12 Tf 72 720 Td (A) Tj ET\n")
    text = read_pdf(shared_stream_pdf(runs=runs), "report.pdf", max_chars=10**9)
    assert len(extracted) == 10
    assert text.endswith("\n\n[… pages 11–100 of 100 not read]")


def test_a_pdf_whose_first_page_draws_too_much_is_refused(extracted: list[int]) -> None:
    runs = MAX_PDF_CONTENT // len(b"BT /F1 12 Tf 72 720 Td (A) Tj ET\n") + 1
    with pytest.raises(MediaError, match=r"report\.pdf is too complex to read"):
        read_pdf(shared_stream_pdf(pages=2, runs=runs), "report.pdf")
    assert extracted == []


async def test_an_ordinary_pdf_is_read_whole_within_the_budget() -> None:
    data = text_pdf([f"Page {n}" for n in range(1, 4)])
    prepared = await prepare([attachment(data)], max_images=4, max_bytes=2**20, text_budget=500)
    assert prepared.text == "\nreport.pdf\n```\nPage 1\n\nPage 2\n\nPage 3\n```"


def test_whitespace_only_pages_do_not_count_as_text_read(extracted: list[int]) -> None:
    data = text_pdf([" ", "Hello"])
    assert read_pdf(data, "report.pdf", max_chars=1).endswith("Hello")
    assert len(extracted) == 2


async def test_the_check_when_a_file_is_attached_reads_only_its_first_text(
    extracted: list[int],
) -> None:
    # The console asks before the message is written; the turn then reads what it uses.
    engine = ChatEngine(store=cast(Any, None), hub=cast(Any, None))
    assert await engine.attachment_refusal(attachment(shared_stream_pdf())) is None
    assert len(extracted) == 1
    refusal = await engine.attachment_refusal(attachment(text_pdf([" "]), "scan.pdf"))
    assert refusal is not None and "has no text layer" in refusal
