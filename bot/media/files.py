"""Text and PDF attachments as text for the prompt, and the fenced block that carries it."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.media.kinds import (
    MediaError,
    binary_refusal,
    extension,
    is_pdf,
)
from bot.types.encoding import text_codec, without_padding
from bot.types.files import display_name, file_label
from bot.types.text import clean_text

MAX_PDF_PAGES = 100
# Drawing commands read from one PDF, in all its pages: parsing them is pypdf's slow part
# (~2 s a MB, however little text they give), so a crafted file costs seconds, not minutes.
MAX_PDF_CONTENT = 2 * 2**20
# Entries of a PDF's page tree (its pages and the nodes that group them): pypdf reads them
# all before the first page (~70 µs each), so 90,000 small pages in 13 MB cost 9 s.
MAX_PDF_PAGE_TREE = 10_000
# How long one PDF may take to read, in a process of its own (pdf_worker): what pypdf makes
# of a file cannot be known from its size.
PDF_SECONDS = 15.0
_WORKER = Path(__file__).with_name("pdf_worker.py")
_MAX_LINE = 16 * 2**20  # one page's text as the worker says it: far past any budget
_NO_READER = "{shown} cannot be read now: the bot's PDF reader did not start. Paste its text."

log = logging.getLogger("bot.media")

_BACKTICKS = re.compile(r"`+")
# Cutting at a line end reads better, unless that throws away much of what fits.
_LINE_CUT_SHARE = 0.8
# Characters on each side of a cut kept for the secret checks (Block.edge): a key or a
# password in its longest written forms (`\u0073\u006b…`, six characters each).
_EDGE = 2048

_LANGUAGES = {
    "py": "python", "pyi": "python", "js": "javascript", "mjs": "javascript",
    "cjs": "javascript", "jsx": "jsx", "ts": "typescript", "mts": "typescript",
    "tsx": "tsx", "json": "json", "jsonl": "json", "ndjson": "json", "geojson": "json",
    "csv": "csv", "tsv": "tsv", "md": "markdown", "markdown": "markdown", "yaml": "yaml",
    "yml": "yaml", "toml": "toml", "ini": "ini", "cfg": "ini", "conf": "ini", "xml": "xml",
    "svg": "xml", "html": "html", "htm": "html", "css": "css", "scss": "scss",
    "sass": "sass", "less": "less", "sh": "bash", "bash": "bash", "zsh": "bash",
    "fish": "fish", "ps1": "powershell", "bat": "bat", "cmd": "bat", "c": "c", "h": "c",
    "cpp": "cpp", "cc": "cpp", "cxx": "cpp", "hpp": "cpp", "hh": "cpp", "cs": "csharp",
    "java": "java", "kt": "kotlin", "kts": "kotlin", "go": "go", "rs": "rust",
    "rb": "ruby", "php": "php", "swift": "swift", "sql": "sql", "lua": "lua", "r": "r",
    "pl": "perl", "scala": "scala", "dart": "dart", "hs": "haskell", "ex": "elixir",
    "exs": "elixir", "erl": "erlang", "clj": "clojure", "jl": "julia", "zig": "zig",
    "nim": "nim", "vue": "vue", "svelte": "svelte", "tex": "latex", "rst": "rst",
    "diff": "diff", "patch": "diff", "proto": "protobuf", "graphql": "graphql",
    "gql": "graphql", "nix": "nix", "gradle": "groovy", "groovy": "groovy",
    "tf": "hcl", "hcl": "hcl", "dockerfile": "dockerfile", "cmake": "cmake",
    "asm": "asm", "s": "asm", "vb": "vbnet", "fs": "fsharp", "ml": "ocaml",
    "m": "objectivec", "mm": "objectivec", "el": "elisp", "lisp": "lisp", "scm": "scheme",
}  # fmt: skip
_NAMED = {"dockerfile": "dockerfile", "makefile": "makefile", "gnumakefile": "makefile",
          "cmakelists.txt": "cmake", "jenkinsfile": "groovy"}  # fmt: skip


def read_text_file(data: bytes, name: str) -> str:
    """The text of a text file or a PDF, cleaned; MediaError for binary, empty or unreadable."""
    if is_pdf(data):
        return read_pdf(data, name)
    text = clean_text(_decode(data, name))
    if not text.strip():
        raise MediaError(f"{display_name(name)} is empty.")
    return text


@dataclass(frozen=True, slots=True)
class Block:
    """A file as the message carries it."""

    text: str  # the fenced block
    cut: bool = False  # part of the file was left out (the block's last line says what)
    # Where it was cut, the text on both sides (never sent): a key or password cut in two
    # sends only its start, which no check knows; here it is whole, for them to refuse.
    edge: str = ""


# How much a text takes of a budget: its characters, or its tokens as the prompt counts them.
Measure = Callable[[str], int]


def file_block(data: bytes, name: str, budget: int, measure: Measure = len) -> Block:
    """A text file or PDF as its `fenced` block in `budget` (as `measure` counts it:
    characters unless said); MediaError as `read_text_file`.

    A PDF's pages are read only until the block is full; a last line says which were not.
    """
    if not is_pdf(data):
        return fenced(name, read_text_file(data, name), budget, measure)
    text, unread = _pdf_text(data, name, MAX_PDF_PAGES, budget, measure)
    block = fenced(name, text, budget - measure(unread), measure)
    return Block(block.text + unread, block.cut or bool(unread), block.edge)


def read_pdf(
    data: bytes, name: str, *, max_pages: int = MAX_PDF_PAGES, max_chars: int | None = None
) -> str:
    """The text of the first pages (up to `max_pages`, or until `max_chars` are read).

    A last line says which pages were not read.
    """
    text, unread = _pdf_text(data, name, max_pages, max_chars, len)
    return text + unread  # the text is cleaned, the line is ours


def _pdf_text(
    data: bytes, name: str, max_pages: int, budget: int | None, measure: Measure
) -> tuple[str, str]:
    """The text of the pages read (until `budget` as `measure` counts it is full), and a
    line saying which were not ("" when all were). Read in a process of its own
    (pdf_worker), ended once the budget is full or PDF_SECONDS have passed."""
    shown = display_name(name)
    pages: list[str] = []
    total: int | None = None
    error = ""
    over = False  # stopped early: too much drawing, too much memory, or out of time
    read = 0
    limits = (max_pages, MAX_PDF_CONTENT, MAX_PDF_PAGE_TREE)
    try:
        # Our own interpreter and script, numbers only: the file goes in on stdin. `-P`:
        # not this folder first on its path (its modules are no stdlib's to shadow).
        worker = subprocess.Popen(  # noqa: S603
            [sys.executable, "-P", str(_WORKER), *map(str, limits)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError as err:
        log.error("the PDF reader could not start: %s", type(err).__name__)
        raise MediaError(_NO_READER.format(shown=shown)) from None
    clock = threading.Timer(PDF_SECONDS, worker.kill)
    clock.start()
    try:
        assert worker.stdin is not None and worker.stdout is not None
        with contextlib.suppress(OSError):  # it ended early (a broken pipe): said below
            worker.stdin.write(data)
            worker.stdin.close()
        for raw in iter(lambda: worker.stdout.readline(_MAX_LINE), b""):  # type: ignore[union-attr]
            try:
                line = json.loads(raw)
            except ValueError:  # cut short where its time or memory ran out, or too long
                over = True
                break
            if not isinstance(line, dict):  # never the worker's own: read as cut short
                over = True
                break
            if "error" in line:
                error = str(line["error"])
                break
            if "total" in line:
                total = int(line["total"])
                continue
            if line.get("over"):
                over = True
                break
            pages.append(str(line["text"]))
            read += measure(pages[-1].strip())
            if budget is not None and read >= budget:
                break  # the prompt could use no more: the rest is not read
        else:  # the worker ended: all read, or ended before (its time or memory)
            over = total is None or len(pages) < min(total, max_pages)
    finally:
        clock.cancel()
        worker.kill()
        worker.wait()
        worker.stdout.close()  # type: ignore[union-attr]
    if error == "start":
        log.error("the PDF reader could not start: pypdf cannot be imported by %s", sys.executable)
        raise MediaError(_NO_READER.format(shown=shown))
    if error == "password":
        raise MediaError(
            f"{shown} is protected by a password; save a copy without one and attach it."
        )
    if error == "tree":
        raise MediaError(
            f"{shown} has too many pages (over {MAX_PDF_PAGE_TREE:,}) for me to find its "
            f"first {max_pages}; attach those pages as a smaller PDF, or paste their text."
        )
    if error:
        raise MediaError(
            f"{shown} could not be read as a PDF (it may be damaged); attach it again or "
            "paste its text."
        )
    if not any(page.strip() for page in pages):
        if over:
            raise MediaError(
                f"{shown} is too complex to read (its first pages take too long or too "
                "much memory before any text); paste its text instead."
            )
        raise MediaError(
            f"{shown} has no text layer (a scanned PDF?); scanned PDFs are not read. "
            "Attach the pages as images or paste the text."
        )
    text = clean_text("\n\n".join(page.strip("\n") for page in pages))
    total = total or len(pages)
    if total > len(pages):
        return text, f"\n\n[… pages {len(pages) + 1}–{total} of {total} not read]"
    return text, ""


def language(name: str) -> str:
    """The fence's language tag for a file name (`python` for `x.py`); empty if unknown."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return _NAMED.get(base) or _LANGUAGES.get(extension(base), "")


def fenced(name: str, text: str, budget: int, measure: Measure = len) -> Block:
    """`text` as a fenced block headed by the file name, within `budget` as `measure`
    counts it (characters unless said; the turn counts tokens).

    Trimmed text ends with a note of how much was left out. Only a budget smaller than
    the heading, fences and note themselves gives a longer result (the note, no text).
    """
    text = clean_text(text).rstrip("\n")
    label, tag = file_label(name), language(name)

    def framed(upto: int, note: str = "") -> str:
        # The fence outruns the backticks of what is kept, not of the whole file: a file
        # of one long run of them had fences of its length around any start of it.
        longest = max((len(run) for run in _BACKTICKS.findall(text, 0, upto)), default=0)
        fence = "`" * max(3, longest + 1)
        return f"\n{label}\n{fence}{tag}\n{text[:upto]}\n{fence}{note}"

    total = len(text)
    # A start that fits, doubled until one does not: a 20 MB file against a budget of
    # thousands is measured over a few times the budget's length, never whole.
    reach = min(total, max(1, budget))
    while reach < total and measure(framed(reach)) <= budget:
        reach = min(total, reach * 2)
    if reach == total and measure(whole := framed(total)) <= budget:
        return Block(whole)
    widest = _note(total, total)
    # The longest start that fits (what a text measures grows with it).
    keep, over = 0, reach
    while keep < over:
        middle = (keep + over + 1) // 2
        if measure(framed(middle, widest)) <= budget:
            keep = middle
        else:
            over = middle - 1
    line_end = text.rfind("\n", 0, keep + 1)
    if line_end > 0 and line_end >= keep * _LINE_CUT_SHARE:
        keep = line_end
    edge = text[max(0, keep - _EDGE) : keep + _EDGE]
    return Block(framed(keep, _note(total - keep, total)), True, edge)


def _note(left_out: int, total: int) -> str:
    return f"\n[… {left_out:,} of {total:,} characters left out]"


def _decode(data: bytes, name: str) -> str:
    codec = text_codec(data)
    if codec is None:
        raise binary_refusal(name, data)
    if codec in ("utf-8", "utf-8-sig", "cp1252"):  # in UTF-16, a NUL may be half a character
        data = without_padding(data)
    return data.decode(codec, errors="replace")
