from __future__ import annotations

import pytest

from bot.conversation.budget import (
    estimate_image_tokens,
    estimate_tokens,
    history_budget,
    trim_history,
)
from bot.media import MAX_EDGE
from bot.types import HistoryEntry, Role, Source


def test_estimate_grows_with_text_and_counts_non_latin_higher() -> None:
    assert estimate_tokens("") > 0
    assert estimate_tokens("a" * 400) > estimate_tokens("a" * 40)
    assert estimate_tokens("漢" * 100) > estimate_tokens("a" * 100)


def test_trim_keeps_the_newest_that_fit() -> None:
    history = [HistoryEntry(Role.USER, f"m{i}", tokens=10) for i in range(10)]
    kept = trim_history(history, 35)
    assert [e.content for e in kept] == ["m7", "m8", "m9"]
    assert trim_history(history, 5) == []


def test_a_trimmed_history_starts_at_a_question() -> None:
    """Context probe: trimmed requests opened with the model's turn (its question left
    out), which chat templates that need turns to alternate refuse."""
    history = [
        HistoryEntry(Role.USER if i % 2 == 0 else Role.ASSISTANT, f"m{i}", tokens=10)
        for i in range(10)
    ]
    assert [e.content for e in trim_history(history, 35)] == ["m8", "m9"]
    assert [e.content for e in trim_history(history, 45)] == ["m6", "m7", "m8", "m9"]
    # Nothing left out: a greeting (the character's first answer) still opens the chat.
    greeted = [HistoryEntry(Role.ASSISTANT, "Hello!", tokens=10), *history[:2]]
    assert trim_history(greeted, 100) == greeted


def test_budget_leaves_room_for_system_turn_and_answer() -> None:
    full = history_budget(1000, 100, None, "hi")
    with_system = history_budget(1000, 100, "x" * 400, "hi")
    assert full < 1000 - 100
    assert with_system < full
    assert history_budget(100, 500, None, "hi") == 0


def test_a_continued_answers_tail_starts_at_a_line_or_a_word() -> None:
    """Review: a code answer's tail began mid-line (`…1\\na = 1`), and one that fitted
    whole still lost its first word."""
    from bot.conversation.request import _tail

    code = "\n".join(f"value_{i} = compute({i}, {i * 2})  # step {i}" for i in range(300))
    cut = _tail(HistoryEntry(Role.ASSISTANT, code), 200).content
    assert cut.startswith("…value_") and code.endswith(cut[1:])
    assert estimate_tokens(cut[1:]) <= 200
    prose = " ".join(f"word{i}" for i in range(2000))
    cut = _tail(HistoryEntry(Role.ASSISTANT, prose), 300).content
    assert cut.startswith("…word") and prose.endswith(" " + cut[1:])
    short = HistoryEntry(Role.ASSISTANT, "a whole answer that fits")
    assert (
        _tail(short, 500) == short
        and _tail(HistoryEntry(Role.ASSISTANT, prose), 10).content == prose
    )


@pytest.mark.parametrize(
    ("source", "size", "tokens"),
    [
        # OpenAI's vision guide, "Calculating costs" (detail high, as auto sends these).
        (Source.OPENAI, (1024, 1024), 765),  # scaled to 768×768: 4 tiles
        (Source.OPENAI, (2048, 4096), 1105),  # to 1024×2048, then 768×1536: 6 tiles
        (Source.OPENAI, (MAX_EDGE, 1176), 765),  # a 4:3 photo as sent: 1024×768
        (Source.OPENAI, (MAX_EDGE, 784), 1105),  # 2:1, at 1536×768: 6 tiles
        # Scaled down to a short side of 768 px, never up: 48 tiles (8,245 tokens) were
        # counted for a line of text 100 px high, as if enlarged to 12,042×768.
        (Source.OPENAI, (200, 200), 255),  # one tile
        (Source.OPENAI, (MAX_EDGE, 100), 765),  # 4 tiles in a row
        # Claude's vision guide: about width × height / 750.
        (Source.CLAUDE, (200, 200), 54),
        (Source.CLAUDE, (1000, 1000), 1334),
        (Source.CLAUDE, (1092, 1092), 1590),
        (Source.CLAUDE, (MAX_EDGE, MAX_EDGE), 1600),  # Claude scales it to about 1.15 MP
        # Mistral's vision guide: 720×512 is about 45 × 32 tokens; 1920×1080 is scaled
        # to 1024×576, about 64 × 36; and a break token ends each row.
        (Source.MISTRAL, (720, 512), 32 * (45 + 1)),
        (Source.MISTRAL, (1920, 1080), 36 * (64 + 1)),
        # Elsewhere (local models): a token each 28×28 px, and at least LLaVA's 576.
        (Source.CUSTOM, (MAX_EDGE, 1176), 56 * 42 + 2),
        (Source.CUSTOM, (40, 30), 576 + 2),
    ],
)
def test_an_image_is_estimated_by_its_providers_documented_rule(
    source: Source, size: tuple[int, int], tokens: int
) -> None:
    assert estimate_image_tokens(source, *size) == tokens


def test_trimming_makes_room_for_the_images_an_entry_carries() -> None:
    history = [HistoryEntry(Role.USER, f"m{i}", tokens=10) for i in range(10)]
    assert [e.content for e in trim_history(history, 55)] == ["m5", "m6", "m7", "m8", "m9"]
    with_image = {id(history[8]): 30}  # m8 goes with an image of 30 tokens
    kept = trim_history(history, 55, with_image)
    assert [e.content for e in kept] == ["m8", "m9"]
