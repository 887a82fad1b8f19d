"""Token estimates and the context budget. No tokenizer download: a cheap estimate."""

from __future__ import annotations

import re
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
    """Tokens as a small model's tokenizer makes them, rounded up. ASCII goes by pieces: a
    word is one token and one more for every six letters, and for each change of case
    inside it; a digit, a symbol, a line's start or a run of spaces is one more each; then
    a twentieth on top. Any other character is as many tokens as its UTF-8 bytes (a
    byte-level tokenizer makes no more), and a mark on a letter one more (the letter under
    it becomes a token of its own).

    Errs on the high side so trimmed requests fit the real context window: against
    SmolLM2's tokenizer, English prose comes out 1.06–1.3 times as many, and pasted data
    (JSON, number tables, base64, hex, ids) no longer less than half as many (four
    characters a token counted a digit table at a quarter). A small model's vocabulary
    splits Thai, Cyrillic or an emoji sequence into bytes; a large model's holds many such
    characters whole: conversations in those scripts keep less history than it could hold
    (raise /params context for it).
    """
    ascii_text = text.encode("ascii", "ignore").decode("ascii")
    tokens = len(_PIECES.findall(ascii_text)) + len(_LONG.findall(ascii_text))
    if not ascii_text.islower():
        tokens += len(_CASE_CHANGES.findall(ascii_text)) + len(_CAPITALS.findall(ascii_text)) // 2
    tokens += tokens // 20 + _PER_MESSAGE_OVERHEAD
    if len(ascii_text) < len(text):
        tokens += len(text.encode("utf-8", "surrogatepass")) - len(ascii_text)
        tokens += len(unicode_pattern(_MARKS).findall(text))
    return tokens


# What a tokenizer makes at least one token of: a word, a digit, a symbol, a line's start
# with its indent, a run of spaces.
_PIECES = re.compile(r"[A-Za-z]+|[0-9]|\n[ \t]*|[ \t]{2,}|[^\sA-Za-z0-9]")
_LONG = re.compile(r"[A-Za-z]{6}")  # one more for every six letters of a word
# Inside a word: lower to upper (camelCase, base64), and upper to lower after another
# letter (HTTPServer); a capital's run (ALL CAPS) one more for every two.
_CASE_CHANGES = re.compile(r"(?<=[a-z])[A-Z]|(?<=[A-Za-z][A-Z])[a-z]")
_CAPITALS = re.compile(r"(?<=[A-Z])[A-Z]")


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
