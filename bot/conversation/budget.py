"""Token estimates and the context budget. No tokenizer download: a cheap estimate."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from bot.fields import REGISTRY, conversation_room
from bot.media import MAX_EDGE, dimensions
from bot.providers import ChatRequest
from bot.types import HistoryEntry, Image, Role, Source
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


def estimate_image_tokens(source: Source, width: int, height: int) -> int:
    """Tokens an image of width×height pixels, as it is sent, takes of a model's context:
    by the provider's documented rule, and for other endpoints by one that errs high for
    the local vision models most run."""
    width, height = max(1, width), max(1, height)
    if source is Source.OPENAI:
        # OpenAI's vision guide, "Calculating costs": detail high (what auto is for all
        # but small images; none is sent here): fitted into 2048×2048, then scaled down
        # until its short side is 768 px (never up: a 200-px image is one tile); 170
        # tokens a 512-px tile it then covers, and 85.
        scale = min(1.0, 2048 / max(width, height))
        scale *= min(1.0, 768 / (min(width, height) * scale))
        tiles = math.ceil(width * scale / 512) * math.ceil(height * scale / 512)
        return 85 + 170 * tiles
    if source is Source.CLAUDE:
        # Claude's vision guide: about width × height / 750 tokens, once an image with a
        # long edge over 1568 px or over about 1,600 tokens (1.15 MP) is scaled down.
        scale = min(1.0, 1568 / max(width, height))
        return math.ceil(min(width * height * scale * scale, 1600 * 750) / 750)
    if source is Source.MISTRAL:
        # Mistral's vision guide: a token each 16×16 px once fitted into 1024×1024
        # (mistral-common's image encoder ends each row with a break token too).
        scale = min(1.0, 1024 / max(width, height))
        rows = math.ceil(height * scale / 16)
        return rows * (math.ceil(width * scale / 16) + 1)
    # Other OpenAI-compatible endpoints serve local models (llama.cpp, LM Studio, Ollama,
    # vLLM), each its own way: Qwen2/2.5-VL a token each 28×28 px, and 2 around them
    # (their model cards: 14-px patches merged 2×2); LLaVA-1.5 576 whatever the size
    # (24×24 patches of a 336-px image); Gemma 3 256. The larger of the first two. More
    # than that: LLaVA-1.6 up to 2,880, Pixtral up to 4,160 (16-px patches to 1024 px).
    return max(576, math.ceil(width / 28) * math.ceil(height / 28)) + 2


def image_tokens(source: Source, images: Iterable[Image]) -> int:
    """estimate_image_tokens for images as they are sent: each one's size read from its
    header (one that cannot be read counted as large as any prepared image)."""
    return sum(
        estimate_image_tokens(source, *(dimensions(i.data) or (MAX_EDGE, MAX_EDGE))) for i in images
    )


def trim_history(
    history: Sequence[HistoryEntry], budget: int, images: Mapping[int, int] | None = None
) -> list[HistoryEntry]:
    """The newest entries whose estimated tokens fit `budget`, oldest first; `images`:
    the tokens of the images that go with an entry, by id(entry). When older ones are
    left out, what is kept starts at a question: an answer whose question was left out
    would open the chat with the model's turn, which chat templates that need turns to
    alternate (Gemma's, Mistral's) refuse."""
    kept: list[HistoryEntry] = []
    used = 0
    images = images or {}
    for entry in reversed(history):
        cost = (entry.tokens or estimate_tokens(entry.content)) + images.get(id(entry), 0)
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
