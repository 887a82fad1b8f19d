"""Token estimates and the context budget. No tokenizer download: a cheap estimate."""

from __future__ import annotations

from collections.abc import Sequence

from bot.fields import REGISTRY, conversation_room
from bot.providers import ChatRequest
from bot.types import HistoryEntry, Role
from bot.types.text import unicode_pattern

MAX_INPUT_CHARS = 32_000  # the longest message taken as a question (or an edit of one)
_PER_MESSAGE_OVERHEAD = 4
# Marks on a letter: Arabic vowels, Devanagari and Thai vowel signs, accents, Zalgo.
_MARKS = r"\p{M}"


def estimate_tokens(text: str) -> int:
    """Tokens as a small model's tokenizer makes them, mostly rounded up. ASCII goes by
    pieces: a word is one token and one more for every six letters, and more for changes
    of case and between digits and letters inside it; a digit, a symbol or a line end is
    one each, and so is a space before a digit (tokenizers split digits off alone); a
    rule of one symbol (`----`) a few, a run of spaces one in eight; then a twentieth on
    top. Any other character is as many tokens as its UTF-8 bytes (a
    byte-level tokenizer makes no more), and a mark on a letter one more (the letter
    under it becomes a token of its own). Counted with bytes.translate and count: about
    half a millisecond for 32,000 characters.

    Against SmolLM2's tokenizer (small and English-first): English, code, Markdown, JSON,
    number tables, base64, hex and ids come out 1.0–1.3 times the real count (four
    characters a token had counted pasted data at a quarter to a half), and Cyrillic,
    CJK, Thai and emoji more. Words of other Latin-script languages split finer than
    English in such a vocabulary: German, Finnish or Indonesian prose comes out about
    0.65–0.85 of its count there (a larger model's vocabulary splits them far less); set
    /params context below such a model's size when chatting in them.
    """
    raw = text.encode("ascii", "ignore")
    words = raw.translate(_LETTERS)
    kinds = raw.translate(_KINDS)
    tokens = (
        words.count(b" a")
        + words.startswith(b"a")
        + words.count(b"aaaaaa")
        + kinds.count(b"d")
        + kinds.count(b" d")  # a space before a number is a token of its own
        + kinds.count(b"n")
        + kinds.count(b"lU")
        + kinds.count(b"dl")
        + (kinds.count(b"Ul") + kinds.count(b"UU")) // 2
        + kinds.count(b"    ") // 2
    )
    symbols = kinds.count(b"s")
    if symbols * 4 > len(raw):  # much punctuation: a rule of ---- is a token or two
        symbols = max(symbols - 3 * sum(raw.count(rule) for rule in _RULES), symbols // 16)
    tokens += symbols
    tokens += tokens // 20 + _PER_MESSAGE_OVERHEAD
    if len(raw) < len(text):
        tokens += len(text.encode("utf-8", "surrogatepass")) - len(raw)
        tokens += len(unicode_pattern(_MARKS).findall(text))
    return tokens


def _kind(char: str) -> int:
    """An ASCII character's kind for estimate_tokens: lower, Upper, digit, line end (a tab
    too: each is a token), space, or symbol."""
    if char.islower():
        return ord("l")
    if char.isupper():
        return ord("U")
    if char.isdigit():
        return ord("d")
    if char in "\n\r\t":
        return ord("n")
    return ord(" ") if char in " \x0b\x0c" else ord("s")


_KINDS = bytes(_kind(chr(b)) if b < 128 else ord("s") for b in range(256))
_LETTERS = bytes(ord("a") if chr(b).isalpha() and b < 128 else ord(" ") for b in range(256))
_RULES = tuple(bytes([c]) * 4 for c in b"-=_*#~.+/<>|")  # symbols drawn in lines


def trim_history(history: Sequence[HistoryEntry], budget: int) -> list[HistoryEntry]:
    """The newest entries whose estimated tokens fit `budget`, oldest first. When older
    ones are left out, what is kept starts at a question: an answer whose question was
    left out would open the chat with the model's turn, which chat templates that need
    turns to alternate (Gemma's, Mistral's) refuse."""
    kept: list[HistoryEntry] = []
    used = 0
    for entry in reversed(history):
        cost = entry.tokens or estimate_tokens(entry.content)
        if used + cost > budget:
            break
        kept.append(entry)
        used += cost
    if len(kept) < len(history):
        while kept and kept[-1].role is not Role.USER:
            kept.pop()
    kept.reverse()
    return kept


def history_budget(
    context_tokens: int | None, max_tokens: int | None, system_prompt: str | None, new_text: str
) -> int:
    """Tokens left for history once the system prompt, the new turn and the answer fit."""
    _, room = conversation_room(context_tokens, max_tokens)
    fixed = estimate_tokens(new_text) + (estimate_tokens(system_prompt) if system_prompt else 0)
    return max(0, room - fixed)


# What a request's answer may spend at most, by each source's name for it; Claude's
# extended thinking is on top of its max_tokens (its request adds the budget).
_LIMITS = frozenset(REGISTRY.by_name["max_tokens"].wire.values())
_THINKING = frozenset(REGISTRY.by_name["thinking_budget"].wire.values())


def answer_limit(request: ChatRequest) -> int | None:
    """The max_tokens a request sends, where it bounds the answer (None: none is sent,
    or Claude's thinking comes on top of it)."""
    if not _THINKING.isdisjoint(request.options):
        return None
    for name in _LIMITS:
        value = request.options.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None
