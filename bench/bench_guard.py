"""The answer guard: what cleaning a streamed answer of the channel's secrets costs a chunk.

Run: .venv/bin/python bench/bench_guard.py

A channel with a key and a proxy password; 100 chunks of prose with `%` and `&` in it
(characters some forms of a secret start with, so the guard looks at them). Prints the
best of 30 runs, in microseconds a chunk, with every form of the secrets (the guard as it
runs) and, for comparison, without the forms that escape every character.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bot.types.secrets as secrets
from bot.conversation.guard import AnswerGuard

KEY = "sk-proj-Abc123Def456Ghi789Jkl012Mno345"
PASSWORD = "PurpleOtterHunter42"
PROSE = "The quick brown fox jumps over the lazy dog, 50% & more. "
CHUNKS = [PROSE[i % 7 :] for i in range(100)]


def per_chunk() -> float:
    best = float("inf")
    for _ in range(30):
        guard = AnswerGuard([KEY, PASSWORD])
        started = time.perf_counter()
        for chunk in CHUNKS:
            guard.feed(chunk)
        guard.finish()
        best = min(best, time.perf_counter() - started)
    return best / len(CHUNKS) * 1e6


def main() -> None:
    forms = len(secrets.secret_forms(KEY)) + len(secrets.secret_forms(PASSWORD))
    print(f"every form ({forms} forms): {per_chunk():.1f} µs a chunk")
    secrets._every_char_escaped = lambda text: set()  # what it was before them
    secrets.secret_forms.cache_clear()
    forms = len(secrets.secret_forms(KEY)) + len(secrets.secret_forms(PASSWORD))
    print(f"without every-character escapes ({forms} forms): {per_chunk():.1f} µs a chunk")


if __name__ == "__main__":
    main()
