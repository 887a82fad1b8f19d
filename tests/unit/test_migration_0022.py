"""Migration 0022's copy of the file block's shape: it knows what the bot's own function
(bot.media.files.file_block / fenced) folds into a question, and no code block typed by
hand. The upgrade itself, with data: tests/integration/test_migrations.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from bot.media.files import MAX_PDF_PAGES, file_block
from bot.types.text import clean_text
from tests.unit.media.samples import text_pdf

ROOT = Path(__file__).resolve().parents[2]


def _migration() -> ModuleType:
    path = ROOT / "migrations" / "versions" / "0022_files_flag_recomputed.py"
    spec = importlib.util.spec_from_file_location("migration_0022", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


M = _migration()
CODE = "def hello():\n    return 'hi'\n"
MARKDOWN = "# Notes\n\n```py\nprint(1)\n```\n\nand ```` four\n"


def _question(text: str, *blocks: str) -> str:
    """A question's content as the engine makes it: its text, then the files' blocks (no
    text: the first block's leading newline taken off); stored through clean_text."""
    files = "".join(blocks)
    return clean_text(text + files if text else files.lstrip("\n"))


@pytest.mark.parametrize(
    ("name", "data", "budget"),
    [
        ("hello.py", CODE, 10_000),
        ("notes.txt", "the answer is 42\n", 10_000),  # no language: a bare fence
        ("Dockerfile", "FROM python:3.12\n", 10_000),  # a tag from the whole name
        ("src\\Main.RS", "fn main() {}\n", 10_000),  # a path, the extension in capitals
        ("CMakeLists.txt", "project(x)\n", 10_000),
        ("", "nameless\n", 10_000),  # "the attachment"
        ("README.md", MARKDOWN, 10_000),  # fences inside: the block's own are longer
        ("ticks.txt", "`" * 40 + "\n" + "x" * 50, 10_000),
        ("big.log", "line of a log\n" * 2_000, 500),  # cut: the note after the fence
        ("empty cut.json", '{"a": 1}\n' * 100, 20),  # a budget under the framing itself
        ("a" * 120 + ".py", CODE, 10_000),  # the label shortened: the tag from the name
        ("invoice\u202efdp.exe", "MZ text\n", 10_000),  # the label without the override
        ("my notes (draft).yaml", "a: 1\n", 10_000),
    ],
)
def test_a_text_file_the_bot_folds_in_is_found(name: str, data: str, budget: int) -> None:
    block = file_block(data.encode(), name, budget).text
    for content in (_question("", block), _question("review this", block)):
        assert M._BLOCK.search(content), content[-200:]
        assert M._folded(content), content[-200:]
    # The last of several files ends the question.
    other = file_block(b"x = 1\n", "other.py", 10_000).text
    assert M._folded(_question("compare", other, block))
    assert M._folded(_question("compare", block, other))


def test_a_pdf_whose_pages_were_not_all_read_is_found() -> None:
    pages = [f"Page {n} says something" for n in range(1, MAX_PDF_PAGES + 3)]
    block = file_block(text_pdf(pages), "book.pdf", 1_000_000)
    assert block.text.endswith(f"of {MAX_PDF_PAGES + 2} not read]"), block.text[-80:]
    assert M._folded(_question("summarise", block.text))
    cut = file_block(text_pdf(pages), "book.pdf", 40)
    assert cut.cut and M._folded(_question("", cut.text)), cut.text[-120:]


@pytest.mark.parametrize(
    "content",
    [
        "fix this\n```py\nprint(1)\n```",  # a tag people type, never the bot's (python)
        "fix this\n```python\nprint(1)\n```",  # the line above names no .py file
        "```py\nprint(1)\n```",  # a message starting with a fence
        "```\nprint(1)\n```",
        "look at hello.py\n```js\nx()\n```",  # the tag is not the named file's
        "notes.txt\n```\n42\n```\nwhat does it say?",  # text after the closing fence
        "hello.py\n```python\nprint(1)\n```\n",  # a newline after it
        "hello.py\n```python\nprint(1)\n````",  # a closing fence of another length
        "hello.py\n````python\nprint(1)\n```",
        "hello.py\n```python\nprint(```1)\n```",  # a run of the fence's length inside
        "hello.py\n```python print(1)\n```",  # no newline after the tag
        "hello.py\n\n```python\nprint(1)\n```",  # no name right above the fence
        "hello.py\n```python\n```",  # no line of text at all (the bot writes one)
        "```",
        "```\n```",
        "",
        "a picture's question",
        "fix this\n```py\nprint(1)\n```\n[… 12 of 40 characters left out]",
    ],
)
def test_a_code_block_typed_by_hand_is_no_file(content: str) -> None:
    assert not M._folded(content)


def test_a_hostile_content_costs_one_pass() -> None:
    """Fences of every length before the last: the block is tried at one place only (a
    search from every line goes over the rest of the text once for each: seconds for
    this row's 180 KB, hours for a few MB)."""
    runs = "".join(f"x\n{'`' * n}\n" for n in range(600, 3, -1))
    content = runs + "name.txt\n```\nlast\n```"
    assert M._folded(content)
    assert not M._folded(runs + "tail")


def test_a_bare_fence_under_a_line_that_could_name_a_file_is_taken_for_one() -> None:
    """The one shape a hand-typed block shares with a file's: a file called "fix this:"
    with no known type is written so. Such a question keeps its text on an edit, as it
    did after 0021."""
    assert M._folded("fix this:\n```\nprint(1)\n```")
    assert file_block(b"print(1)\n", "fix this:", 10_000).text == "\nfix this:\n```\nprint(1)\n```"
