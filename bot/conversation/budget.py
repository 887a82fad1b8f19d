"""Token estimates and the context budget. No tokenizer download: a cheap estimate."""

from __future__ import annotations

from collections.abc import Sequence

from bot.fields import DEFAULT_CONTEXT_TOKENS
from bot.types import HistoryEntry
from bot.types.text import unicode_pattern

MAX_INPUT_CHARS = 32_000  # the longest message taken as a question (or an edit of one)
DEFAULT_ANSWER_TOKENS = 1024
_PER_MESSAGE_OVERHEAD = 4
# Marks on a letter: Arabic vowels, Devanagari and Thai vowel signs, accents, Zalgo.
_MARKS = r"\p{M}"


def estimate_tokens(text: str) -> int:
    """About 4 ASCII characters per token; any other character as many tokens as its
    UTF-8 bytes (a byte-level tokenizer makes no more), and a mark on a letter one more
    (the letter under it becomes a token of its own).

    Errs on the high side so trimmed requests fit the real context window: a small
    model's vocabulary splits Thai, Cyrillic or an emoji sequence into bytes, and one
    token per character counted half of it. A large model's vocabulary holds many such
    characters whole: conversations in those scripts keep less history than it could
    hold (raise /params context for it).
    """
    ascii_chars = len(text.encode("ascii", "ignore"))
    tokens = (ascii_chars + 3) // 4 + _PER_MESSAGE_OVERHEAD
    if ascii_chars < len(text):
        tokens += len(text.encode("utf-8", "surrogatepass")) - ascii_chars
        tokens += len(unicode_pattern(_MARKS).findall(text))
    return tokens


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
