from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.conversation.guard import AnswerGuard
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


def test_a_long_think_block_and_hidden_reasoning_grow_in_linear_time() -> None:
    """A model thinking on and on (in a `<think>` block, reasoning not shown: neither cut
    nor posted) until the stream's 64 MB cap: the splitter and the guard added each piece
    with `str +=` on an attribute, copying all of it each time (4 MB in pieces of 100
    characters held the event loop for 40 s). 8 MB here, read as the stream reads it;
    minutes without the rule (Growing), as many pieces as there are without it."""
    split, thought = ThinkSplitter(), AnswerGuard([])
    split.feed("<think>")
    piece = "mull it over " * 8
    for _ in range(80_000):
        sizes = split.sizes()
        split.feed(piece)
        answer, reasoning = split.since(*sizes)
        assert answer == ""
        thought.add(reasoning)
    sizes = split.sizes()
    split.feed("</think>Done.")
    split.finish()
    answer, reasoning = split.since(*sizes)
    thought.add(reasoning)
    assert answer == "Done." and split.answer == "Done."
    assert len(thought) == len(piece) * 80_000 == len(split.reasoning)
    assert thought.finish() == piece * 80_000


def test_a_stream_of_blanks_is_no_think_block_past_a_few_thousand() -> None:
    """Blanks before `<think>` were held (and read again whole) as long as they came."""
    split = ThinkSplitter()
    for _ in range(1_000):
        split.feed("\n" * 10)
    split.feed("<think>x</think>y")
    split.finish()
    assert split.reasoning == "" and split.answer.endswith("<think>x</think>y")
    near = ThinkSplitter()
    near.feed("\n\n<think>x</think>y")
    assert (near.reasoning, near.answer) == ("x", "y")


def test_blanks_before_a_block_decide_alike_however_the_text_is_cut() -> None:
    """Review: the blanks' limit counted a tag's start with them, so 4,095 blank lines
    then `<think>` led with a block when they came in one piece, and were text when a
    piece ended in `<thi` (past 4,096 characters held): the same answer, shown two ways."""
    for blanks in (4_094, 4_096, 4_097):
        text = "\n" * blanks + "<think>x</think>y"
        whole = _run([text])
        for cut in range(blanks - 2, blanks + 9):
            split = _run([text[:cut], text[cut:]])
            assert (split.reasoning, split.answer) == (whole.reasoning, whole.answer), cut
    assert _run(["\n" * 4_096 + "<think>x</think>y"]).reasoning == "x"
    assert _run(["\n" * 4_097 + "<think>x</think>y"]).reasoning == ""


KEY = "sk-guarded-0123456789"


def _streamed(pieces: list[str], secrets: list[str], start: str) -> tuple[str, str]:
    """The splitter and the guards as stream_answer drives them, a piece at a time."""
    split = ThinkSplitter(continuing=bool(start))
    answer, thought = AnswerGuard(secrets), AnswerGuard(secrets)
    answer.resume(start)
    for piece in pieces:
        if piece:
            sizes = split.sizes()
            split.feed(piece)
            new_text, new_thought = split.since(*sizes)
            answer.add(new_text)
            thought.add(new_thought)
    sizes = split.sizes()
    split.finish()
    new_text, new_thought = split.since(*sizes)
    answer.add(new_text)
    thought.add(new_thought)
    return answer.cut(10**9), thought.finish()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="ab \r\n<>/", max_size=6),
            st.sampled_from(["<think>", "</think>", KEY, "\r\n", "\n\n"]),
        ),
        max_size=12,
    ),
    st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    st.booleans(),
    st.sampled_from(["", "Go on ", "so sk-gua"]),
)
def test_an_answer_read_as_it_grows_is_the_answer_read_whole(
    parts: list[str], cuts: list[int], guarded: bool, start: str
) -> None:
    """Review probe: read a piece at a time (sizes, since, add), the answer and the
    reasoning are those of the whole text split, then guarded, in one go: nothing lost,
    doubled or moved, a tag, a key or a CRLF cut anywhere, an answer continued or not."""
    text = "".join(parts)
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    secrets = [KEY] if guarded else []
    whole = ThinkSplitter(continuing=bool(start))
    whole.feed(text)
    whole.finish()
    answer, thought = AnswerGuard(secrets), AnswerGuard(secrets)
    answer.resume(start)
    answer.add(whole.answer)
    thought.add(whole.reasoning)
    assert _streamed(pieces, secrets, start) == (answer.cut(10**9), thought.finish())
