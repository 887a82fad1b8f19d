"""Lorebook regex keys: the bound `saferegex` puts on a search against the time it takes.

Run: .venv/bin/python bench/bench_regex.py

A key runs only when its bound for the text's length is within MAX_STEPS, and a prompt's
keys together within REGEX_BUDGET. Python's `re` cannot be interrupted, so the bound must
hold: the last column (nanoseconds per step of the bound) must stay small for every
shape, including those the bound refuses (timed here anyway, to show why).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.characters.lorebook import REGEX_BUDGET
from bot.characters.saferegex import MAX_STEPS, SafePattern

CASES = [
    (r"\bdragons?\b", "lorem ipsum " * 4000),
    (r"(?i)captain\s+\w+", "the ship " * 5000),
    (r"a*b", "a" * 4000),
    (r"a*a*b", "a" * 270),
    (r"[a-z]+ing\b", "a" * 2000),
    (r"x[a-z]{1000}y", "x" * 20_000),
    (r"[a-z]{1000}b", "a" * 20_000),
    (r"a*[ab]{100}c", "a" * 2000),
    (r"(?:[a-z]{50}){20}b", "a" * 20_000),
    (r"(?:[a-z]{50}){300}b", "a" * 30_000),
]


def timed(pattern: SafePattern, text: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        pattern.search(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    print(f"MAX_STEPS {MAX_STEPS:,} per search; REGEX_BUDGET {REGEX_BUDGET:,} per prompt")
    print(f"{'pattern':24} {'text':>7} {'bound':>15} {'runs?':>5} {'time':>10} {'ns/step':>8}")
    worst = 0.0
    for source, text in CASES:
        pattern = SafePattern(source, 0)
        bound = pattern.steps(len(text))
        runs = bound <= MAX_STEPS
        seconds = timed(pattern, text, 5 if bound < 10**9 else 1)
        per_step = seconds * 1e9 / bound
        worst = max(worst, per_step)
        print(
            f"{source:24} {len(text):7,} {bound:15,} {'yes' if runs else 'no':>5} "
            f"{seconds * 1000:8.2f} ms {per_step:8.2f}"
        )
    print(
        f"worst {worst:.2f} ns a step: one search at most ~{MAX_STEPS * worst / 1e6:.0f} ms, "
        f"a prompt's searches at most ~{REGEX_BUDGET * worst / 1e9:.2f} s"
    )


if __name__ == "__main__":
    main()
