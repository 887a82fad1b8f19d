from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.conversation.reasoning import ThinkSplitter


def _run(pieces: list[str]) -> ThinkSplitter:
    s = ThinkSplitter()
    for p in pieces:
        s.feed(p)
    s.finish()
    return s


def test_think_block_is_kept_apart() -> None:
    s = _run(["<think>plan", " it</think>\n\nHello", " there"])
    assert s.reasoning == "plan it"
    assert s.answer == "Hello there"


def test_tag_split_across_pieces() -> None:
    s = _run(["<thi", "nk>x</th", "ink>an", "swer"])
    assert (s.reasoning, s.answer) == ("x", "answer")


def test_only_a_leading_block_is_reasoning() -> None:
    s = _run(["  \n<think>plan</think>Use ", "<think> tags in HTML? <think>x</think>"])
    assert s.reasoning == "plan"
    assert s.answer == "Use <think> tags in HTML? <think>x</think>"
    late = _run(["Hello <think>not a thought</think>"])
    assert (late.answer, late.reasoning) == ("Hello <think>not a thought</think>", "")


def test_an_unfinished_block_is_reasoning_and_plain_text_stays() -> None:
    assert _run(["<think>still thinking"]).reasoning == "still thinking"
    assert _run(["<thin", "g>"]).answer == "<thing>"
    assert _run(["<"]).answer == "<"


def test_lookalike_text_is_not_swallowed() -> None:
    s = _run(["a <thin", "g> b <"])
    assert s.answer == "a <thing> b <"
    assert s.reasoning == ""


@given(
    st.text(alphabet="ab<>/thinkx \n", max_size=40),
    st.text(alphabet="ab<>/thinkx \n", max_size=40),
    st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_any_split_gives_the_same_result(thought: str, answer: str, cuts: list[int]) -> None:
    text = f"<think>{thought.replace('<', '(')}</think>{answer.replace('<', '(')}"
    whole = _run([text])
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    split = _run(pieces)
    assert (split.answer, split.reasoning) == (whole.answer, whole.reasoning)
