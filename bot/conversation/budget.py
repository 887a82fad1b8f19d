"""Token estimates and the context budget. No tokenizer download: a cheap estimate."""

from __future__ import annotations

from collections.abc import Sequence

from bot.types import HistoryEntry

DEFAULT_CONTEXT_TOKENS = 8192
DEFAULT_ANSWER_TOKENS = 1024
_PER_MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """About 4 ASCII characters per token; other scripts nearer one token per character.

    Errs on the high side so trimmed requests fit the real context window.
    """
    ascii_chars = len(text.encode("ascii", "ignore"))
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars) + _PER_MESSAGE_OVERHEAD


def trim_history(history: Sequence[HistoryEntry], budget: int) -> list[HistoryEntry]:
    """The newest entries whose estimated tokens fit `budget`, oldest first."""
    kept: list[HistoryEntry] = []
    used = 0
    for entry in reversed(history):
        cost = entry.tokens or estimate_tokens(entry.content)
        if used + cost > budget:
            break
        kept.append(entry)
        used += cost
    kept.reverse()
    return kept


def history_budget(
    context_tokens: int | None, max_tokens: int | None, system_prompt: str | None, new_text: str
) -> int:
    """Tokens left for history once the system prompt, the new turn and the answer fit."""
    context = context_tokens or DEFAULT_CONTEXT_TOKENS
    answer = max_tokens or min(DEFAULT_ANSWER_TOKENS, context // 4)
    fixed = estimate_tokens(new_text) + (estimate_tokens(system_prompt) if system_prompt else 0)
    return max(0, context - answer - fixed)
