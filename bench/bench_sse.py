"""The SSE parser alone: one huge data line, and a typical chat stream.

Run: .venv/bin/python bench/bench_sse.py [--rounds 3] [--parser path/to/_sse.py]
--parser times another copy of the parser (e.g. an older version) with the same inputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHUNK = 16 * 1024
MB = 1024 * 1024


def load_parser(path: str | None) -> Callable[[], Any]:
    """A factory for parsers without a line cap, from this tree or from `path`."""
    parser_class: Any
    if path is None:
        from bot.providers._sse import SSEParser as parser_class
    else:
        spec = importlib.util.spec_from_file_location("bench_sse_other", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        parser_class = module.SSEParser
    return lambda: parser_class(max_line=None)


def chunked(raw: bytes, size: int) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def best_of(rounds: int, run: Callable[[], int], expected: int) -> float:
    times: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        got = run()
        times.append(time.perf_counter() - start)
        assert got == expected, (got, expected)
    return min(times)


def parse_all(new: Callable[[], Any], chunks: list[bytes]) -> int:
    parser = new()
    count = 0
    for chunk in chunks:
        count += len(parser.feed(chunk))
    return count + len(parser.close())


def chat_stream(events: int) -> list[bytes]:
    """One event per write, as an OpenAI-style server sends them."""
    out: list[bytes] = []
    for i in range(events):
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "bench",
            "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}],
        }
        out.append(f"data: {json.dumps(chunk)}\n\n".encode())
    out.append(b"data: [DONE]\n\n")
    return out


def main(rounds: int, path: str | None) -> None:
    new = load_parser(path)
    print(f"parser: {path or 'bot/providers/_sse.py'}; best of {rounds}\n")
    print(f"{'input':<44} {'seconds':>9} {'MB/s':>8}")
    for size in (5, 10, 20):
        raw = b"data: " + b"x" * (size * MB) + b"\n\n"
        chunks = chunked(raw, CHUNK)
        seconds = best_of(rounds, partial(parse_all, new, chunks), 1)
        label = f"one {size} MB data line, 16 KiB chunks"
        print(f"{label:<44} {seconds:>9.3f} {len(raw) / MB / seconds:>8.1f}")
    events = 10_000
    per_event = chat_stream(events)
    whole = b"".join(per_event)
    for label, chunks in (
        (f"{events} chat chunks, one event per feed", per_event),
        (f"{events} chat chunks, 16 KiB feeds", chunked(whole, CHUNK)),
    ):
        seconds = best_of(rounds, partial(parse_all, new, chunks), events + 1)
        print(
            f"{label:<44} {seconds:>9.3f} {len(whole) / MB / seconds:>8.1f}"
            f"   ({seconds / (events + 1) * 1e6:.2f} µs/event)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parser", help="path of another _sse.py to time instead")
    args = parser.parse_args()
    main(max(1, min(args.rounds, 20)), args.parser)
