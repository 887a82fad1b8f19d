"""README's quick start as the walks run it: its fenced blocks, by kind."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
PLACEHOLDER = re.compile(r"<[^<>]+>")


@dataclass(frozen=True)
class QuickStart:
    shell: list[str]  # the ```sh lines
    typed: list[str]  # the ```text lines: typed in the console, one a line
    settings: list[dict[str, str]]  # each ```ini block: NAME → value, as written


def quick_start() -> QuickStart:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"^## Quick start\n(.*?)^## ", text, re.S | re.M)
    assert found, "README has no '## Quick start' section"
    shell: list[str] = []
    typed: list[str] = []
    settings: list[dict[str, str]] = []
    for kind, body in re.findall(r"^```(\w+)\n(.*?)^```$", found.group(1), re.S | re.M):
        lines = [line for line in body.splitlines() if line.strip()]
        if kind == "sh":
            shell += lines
        elif kind == "text":
            typed += lines
        elif kind == "ini":
            settings.append(dict(line.split("=", 1) for line in lines))
        else:
            raise AssertionError(f"a ```{kind} block in the quick start: no walk runs it")
    return QuickStart(shell, typed, settings)


def settings_for(prefix: str) -> dict[str, str]:
    """The quick start's `.env` lines whose names start with `prefix` (one block)."""
    [block] = [b for b in quick_start().settings if all(n.startswith(prefix) for n in b)]
    return block
