"""Reads a PDF's text in a process of its own, within limits of CPU time and memory.

pypdf's extraction is pure Python and a crafted file can make it slow beyond any
budget counted in advance (a 22 KB file whose 20 fonts share one large ToUnicode map
took 7.7 s a page), and while it runs it holds the bot's interpreter. Here it holds only
this process, which the bot ends when the answer needs no more pages or its time is up.

Run as a script (`python -P pdf_worker.py MAX_PAGES MAX_CONTENT MAX_TREE`) with the PDF
on stdin. It imports only the standard library and pypdf, so it needs nothing of the bot
on its path. It writes JSON lines: first `{"total": N}` or `{"error": KIND}` (KIND:
`password`, `tree`, `damaged`, or `start`: pypdf cannot be imported), then one
`{"text": …}` a page as it is read, or `{"over": true}` when the drawing read reaches
MAX_CONTENT bytes (or its memory runs out).
"""

from __future__ import annotations

import io
import json
import sys

CPU_SECONDS = 20  # the kernel ends the process past this (the bot's wall clock is later)
MEMORY_BYTES = 2 * 2**30  # address space: what a decompression bomb may take at most


def _limit() -> None:
    try:
        import resource
    except ImportError:  # Windows: the caller's clock alone ends a slow read
        return
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 1))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def _say(line: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def extract(data: bytes, max_pages: int, max_content: int, max_tree: int) -> None:
    try:
        from pypdf import PasswordType, PdfReader, apply_configuration
        from pypdf.errors import LimitReachedError
    except ImportError:
        _say({"error": "start"})
        return

    try:
        reader = PdfReader(io.BytesIO(data))
        # Many PDFs are encrypted only to restrict printing, with an empty user password.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            _say({"error": "password"})
            return
        try:
            # Counting the pages reads the whole page tree, however few are read after.
            with apply_configuration(page_tree_maximum_entries=max_tree):
                total = len(reader.pages)
        except LimitReachedError:
            _say({"error": "tree"})
            return
        _say({"total": total})
        content = 0
        for number in range(min(total, max_pages)):
            page = reader.pages[number]
            drawn = page.get_contents()  # inflated, not parsed (the parse is the slow part)
            content += len(drawn.get_data()) if drawn is not None else 0
            if content > max_content:
                _say({"over": True})
                return
            _say({"text": page.extract_text()})
    except MemoryError:  # past MEMORY_BYTES: a file built to inflate
        _say({"over": True})
    except Exception:  # pypdf raises many types on damaged files; all mean "cannot read"
        _say({"error": "damaged"})


def main() -> None:
    _limit()
    max_pages, max_content, max_tree = (int(a) for a in sys.argv[1:4])
    extract(sys.stdin.buffer.read(), max_pages, max_content, max_tree)


if __name__ == "__main__":
    main()
