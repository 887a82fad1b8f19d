"""Splitting long answers and pacing edits — the part every streaming front-end shares."""

from __future__ import annotations

import asyncio
import gc
import time
from itertools import islice

import pytest
import regex
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.conversation.pacing import (
    MISSING_NOTE,
    STALE_NOTE,
    NotUpdated,
    PacedReply,
    _split,
    fences_closed,
    missing_note,
    split_text,
    stale_note,
)


def test_short_text_is_one_page() -> None:
    assert split_text("hello", 2000) == ["hello"]


def test_split_prefers_newlines_then_spaces_and_never_breaks_words() -> None:
    words = " ".join(f"word{i}" for i in range(600))
    pages = split_text(words, 2000)
    assert all(len(p) <= 2000 for p in pages)
    assert " ".join(pages).split() == words.split()


def test_code_fence_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})" for i in range(400))
    text = f"Here:\n```python\n{code}\n```\nDone."
    pages = split_text(text, 500)
    assert len(pages) > 2
    for page in pages:
        assert len(page) <= 500
        assert page.count("```") % 2 == 0, page
    assert pages[1].startswith("```python\n")
    body = "".join(p.replace("```python\n", "").replace("\n```", "") for p in pages)
    assert all(f"print({i})" in body for i in range(400))


@settings(max_examples=200)
@given(st.text(alphabet="ab \n`", min_size=0, max_size=3000), st.integers(40, 400))
def test_pages_fit_the_limit(text: str, limit: int) -> None:
    pages = split_text(text, limit)
    assert all(len(p) <= limit for p in pages)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab \n\t\u00a0\u3000", max_size=1500), st.integers(20, 200))
@example("\n\n" + "x" * 60, 40)  # an answer opening with blank lines, then a long word
@example("Start." + "\t" * 3000 + "End.", 100)
@example("x\n" + "\t \n" * 1000 + "y", 100)  # a model repeating blank lines
def test_every_page_shows_something_and_nothing_is_lost(text: str, limit: int) -> None:
    """Fuzz probe: blanks before a cut (tabs, no-break spaces, leading blank lines) made
    pages of nothing. Discord refuses an empty message, and the answer's rest was said
    not to fit instead of being posted."""
    pages = split_text(text, limit)
    assert all(len(page) <= limit for page in pages)
    if text.strip():
        assert all(page.strip() for page in pages), pages
    assert "".join("".join(pages).split()) == "".join(text.split())


def _boundaries(text: str) -> set[int]:
    """Offsets between two graphemes (as readers see characters) of `text`."""
    return {m.end() for m in regex.finditer(r"\X", text)} | {0}


@pytest.mark.parametrize(
    "text",
    [
        "สวัสดีครับผมชื่อสมชาย" * 200,  # Thai: no spaces, vowel marks
        "नमस्तेदुनिया" * 400,  # Devanagari conjuncts
        "مَرْحَبًابِكُمْ" * 300,  # Arabic with its vowel marks
        "👨‍👩‍👧‍👦" * 500,  # ZWJ sequences
        "👍🏽🇯🇵🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f" * 300,
        "Z̷̢̛a̸̧l̵g̶o̴" * 400,
    ],
)
def test_a_word_longer_than_a_page_is_cut_between_graphemes(text: str) -> None:
    """A hard cut left an orphan mark on a dotted circle, a family split into a man and
    a page starting with a joiner."""
    pages = split_text(text, 2000)
    assert len(pages) > 1 and "".join(pages) == text
    edges = _boundaries(text)
    offset = 0
    for page in pages[:-1]:
        offset += len(page)
        assert offset in edges, (offset, page[-3:])
        assert len(page) <= 2000


def test_chinese_is_cut_after_a_sentence_or_clause_not_inside_one() -> None:
    text = "这是一个很长的中文句子，没有空格。" * 200
    pages = split_text(text, 2000)
    assert len(pages) > 1 and "".join(pages) == text
    assert all(page.endswith("。") for page in pages[:-1])


def test_pages_fit_a_size_the_platform_counts() -> None:
    """A target may count a page otherwise than in characters (Matrix: bytes of JSON)."""
    text = ("中文**粗体**句子。👍🏽 " * 2000).strip()

    def utf8(page: str) -> int:
        return len(page.encode())

    pages = split_text(text, 6000, utf8)
    assert all(utf8(p) <= 6000 for p in pages) and len(pages) > 5
    assert "".join(pages).replace(" ", "") == text.replace(" ", "")


class RecordingTarget:
    """A platform target that records what it was asked to do, and when."""

    limit = 2000

    def __init__(self, min_interval: float) -> None:
        self.min_interval = min_interval
        self.messages: list[str] = []
        self.edit_times: list[float] = []
        self.first_send_at: float | None = None

    async def send(self, text: str) -> object:
        if self.first_send_at is None:
            self.first_send_at = time.monotonic()
        self.messages.append(text)
        self.edit_times.append(time.monotonic())
        return len(self.messages) - 1

    async def edit(self, handle: object, text: str) -> bool:
        assert isinstance(handle, int)
        self.messages[handle] = text
        self.edit_times.append(time.monotonic())
        return True


class RefusingTarget(RecordingTarget):
    """Edits are refused once `refuse_after` have gone through (a 429 that never ends)."""

    def __init__(self, refuse_after: int, limit: int = 2000) -> None:
        super().__init__(min_interval=0.0)
        self.limit = limit
        self.refuse_after = refuse_after

    async def edit(self, handle: object, text: str) -> bool:
        if self.refuse_after <= 0:
            return False
        self.refuse_after -= 1
        return await super().edit(handle, text)


@pytest.mark.parametrize("refuse_after", [0, 1])
async def test_a_refused_final_edit_posts_the_rest_of_the_answer(refuse_after: int) -> None:
    """The finished answer's edits were refused: people saw it cut where the refusals
    began, with nothing to say so. The rest now goes out as a new message."""
    target = RefusingTarget(refuse_after)
    reply = PacedReply(target)
    await reply.update("The first words")
    await reply.update("The first words and more")
    await asyncio.sleep(0.05)  # the paced edit goes out (or is refused)
    await reply.finish("The first words and more, to the very end.")
    shown = target.messages[0]
    assert shown.startswith("The first words") and "very end" not in shown
    assert target.messages[1:] == [
        f"⚠️ {STALE_NOTE}\n\nThe first words and more, to the very end."
    ], target.messages


async def test_a_refused_edit_of_a_middle_page_sends_from_there_on() -> None:
    target = RefusingTarget(refuse_after=0, limit=40)
    reply = PacedReply(target)
    words = [f"word{i:02d}" for i in range(12)]
    await reply.update(" ".join(words[:8]))  # two pages: the second is posted whole
    await reply.finish(" ".join(words))
    # The second page is stuck: the answer goes out again from it. The third page was
    # posted on its own before that, its text following the stuck one's with a gap.
    assert target.messages[:2] == ["word00 word01 word02 word03 word04", "word05 word06 word07"]
    tail = "\n".join(target.messages[2:])
    assert tail.startswith(f"⚠️ {STALE_NOTE[:20]}") and "word08 word09" in tail
    assert tail.count("word10") == 1  # once, in the answer sent again
    assert "word00" not in tail  # the first page showed what it should


async def test_the_answer_sent_again_from_a_stuck_page_is_the_text_as_written() -> None:
    """The pages were joined with line breaks: where a page had been cut at a space,
    the answer sent again broke the line in the middle of a sentence."""
    target = RefusingTarget(refuse_after=0, limit=200)
    reply = PacedReply(target)
    words = " ".join(f"word{i:03d}" for i in range(90))  # 720 characters: 4 pages
    await reply.update(words[:300])
    await reply.finish(words)
    # 4 pages, the second stuck where the refusals began: sent again from there on.
    assert target.messages[1].endswith(" word") and target.messages[2].startswith("⚠️")
    note, again = "".join(target.messages[2:]).split("\n\n", 1)
    assert STALE_NOTE in note.replace("\n", " ")
    assert "\n" not in again and "word047 word048" in again  # not "word047\nword048"


async def test_an_edit_that_goes_through_later_leaves_nothing_to_repeat() -> None:
    target = RefusingTarget(refuse_after=0)
    reply = PacedReply(target)
    await reply.update("Half")
    await reply.update("Half and")  # refused: stale for now
    target.refuse_after = 5
    await reply.finish("Half and whole.")
    assert target.messages == ["Half and whole."]


async def test_first_text_goes_out_at_once_then_edits_are_paced() -> None:
    target = RecordingTarget(min_interval=0.2)
    reply = PacedReply(target)
    answer = ""
    started = time.monotonic()
    for i in range(100):
        answer += f"tok{i} "
        await reply.update(answer)
        if i == 0:
            assert target.messages == ["tok0"]  # posted before the next chunk arrives
        await asyncio.sleep(0.01)
    await reply.finish(answer)
    elapsed = time.monotonic() - started
    assert target.messages == [answer.strip()]
    gaps = [b - a for a, b in zip(target.edit_times, target.edit_times[1:], strict=False)]
    assert all(g >= 0.2 - 0.01 for g in gaps), gaps
    assert reply.edits <= elapsed / 0.2 + 1
    assert reply.edits >= 2  # it did stream, not just post at the end


class SlowEditTarget(RecordingTarget):
    """Edits take until `release` is set; records each edit's text and any cut one."""

    def __init__(self) -> None:
        super().__init__(min_interval=0.01)
        self.editing = asyncio.Event()
        self.release = asyncio.Event()
        self.edited: list[str] = []
        self.cut = 0

    async def edit(self, handle: object, text: str) -> bool:
        self.editing.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cut += 1
            raise
        self.edited.append(text)
        return await super().edit(handle, text)


async def test_the_end_waits_for_an_edit_under_way_instead_of_cutting_it() -> None:
    """Cut mid-call, an edit may still reach the platform after the final one (and
    discord.py's rate limiter, cut as it woke the next call, held the final edit 30 s)."""
    target = SlowEditTarget()
    reply = PacedReply(target)
    await reply.update("first")  # posted at once
    await reply.update("first and more")  # edited in the background, after min_interval
    await asyncio.wait_for(target.editing.wait(), 5)
    finishing = asyncio.create_task(reply.finish("first and more and the end"))
    await asyncio.sleep(0.05)
    assert not finishing.done()  # it waits for the edit under way
    target.release.set()
    await asyncio.wait_for(finishing, 5)
    assert target.cut == 0
    assert target.edited == ["first and more", "first and more and the end"]
    assert target.messages == ["first and more and the end"]


async def test_an_edit_still_waiting_for_its_turn_is_replaced_by_the_end() -> None:
    target = SlowEditTarget()
    target.min_interval = 0.3
    target.release.set()
    reply = PacedReply(target)
    await reply.update("first")
    await reply.update("first and more")  # its edit waits 0.3 s
    await asyncio.wait_for(reply.finish("first and more and the end"), 5)
    assert target.edited == ["first and more and the end"]


class GoneTarget(RecordingTarget):
    """The first post went out; then the bot was removed (Matrix raises SendFailed)."""

    async def edit(self, handle: object, text: str) -> bool:
        raise ConnectionAbortedError("M_FORBIDDEN: not in room")


async def test_an_edit_failing_in_the_background_ends_the_answer_at_the_next_update() -> None:
    unread: list[dict[str, object]] = []
    gc.collect()  # what earlier tests left for the collector is not this test's to see
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unread.append(context))
    target = GoneTarget(min_interval=0.01)
    reply = PacedReply(target)
    await reply.update("first")
    with pytest.raises(ConnectionAbortedError, match="not in room"):
        for i in range(200):  # the stream goes on until an update fails
            await reply.update(f"first and {i}")
            await asyncio.sleep(0.005)
    assert i < 20, "the answer was streamed on for no one"
    with pytest.raises(ConnectionAbortedError):
        await reply.finish("first and the rest")
    gc.collect()
    await asyncio.sleep(0)
    # No "Task exception was never retrieved" of the edit that failed.
    assert [c for c in unread if isinstance(c.get("exception"), ConnectionAbortedError)] == []
    assert target.messages == ["first"]


class NoticeTarget(RecordingTarget):
    """A platform with its own kind of message for notices (Matrix's m.notice)."""

    def __init__(self) -> None:
        super().__init__(min_interval=0.0)
        self.kinds: list[str] = []
        self.kind = "answer"

    def as_notice(self) -> None:
        self.kind = "notice"

    async def send(self, text: str) -> object:
        self.kinds.append(self.kind)
        return await super().send(text)


async def test_a_notice_is_posted_as_the_targets_notices_are() -> None:
    target = NoticeTarget()
    await PacedReply(target).notice("Ask me something with your message.")
    answered = NoticeTarget()
    await PacedReply(answered).finish("An answer.")
    assert (target.kinds, answered.kinds) == (["notice"], ["answer"])
    assert target.messages == ["Ask me something with your message."]


async def test_long_answer_spills_into_follow_up_messages() -> None:
    target = RecordingTarget(min_interval=0.0)
    reply = PacedReply(target)
    answer = ""
    for i in range(900):
        answer += f"w{i} "
        await reply.update(answer)
    await reply.finish(answer)
    assert len(target.messages) >= 3
    assert all(len(m) <= 2000 for m in target.messages)
    assert " ".join(target.messages).split() == answer.split()


async def test_a_run_of_blanks_longer_than_a_page_posts_no_empty_message() -> None:
    target = RecordingTarget(min_interval=0.0)
    await PacedReply(target).finish("Start." + "\t" * 5000 + " End.")
    assert len(target.messages) == 2 and all(m.strip() for m in target.messages)
    assert target.messages[0] == "Start." and target.messages[1].endswith(" End.")


async def test_error_line_follows_partial_text() -> None:
    target = RecordingTarget(min_interval=0.0)
    reply = PacedReply(target)
    await reply.update("partial answ")
    await reply.finish("partial answ", error="The connection was cut.")
    assert target.messages == ["partial answ\n\n⚠️ The connection was cut."]


async def test_reasoning_is_shown_as_a_spoiler_only_when_given() -> None:
    target = RecordingTarget(min_interval=0.0)
    reply = PacedReply(target)
    await reply.finish("42", reasoning="think hard")
    assert target.messages == ["||💭 think hard||\n\n42"]


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], list[float]]:
    """([now], waits): time passes only when the pacer sleeps, and each sleep is kept."""
    now = [100.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(round(seconds, 3))
        now[0] += seconds

    monkeypatch.setattr("bot.conversation.pacing.asyncio.sleep", sleep)
    return now, waits


async def test_the_final_edit_keeps_only_the_targets_final_interval(
    fake_time: tuple[list[float], list[float]],
) -> None:
    now, waits = fake_time
    target = RecordingTarget(min_interval=1.0)
    target.final_interval = 0.25  # type: ignore[attr-defined]
    reply = PacedReply(target, clock=lambda: now[0])
    await reply.update("one")
    now[0] += 0.1
    await reply.finish("one two three")
    assert waits == [0.15]  # 0.25 after the post, not the full second
    assert target.messages == ["one two three"]

    plain = RecordingTarget(min_interval=1.0)  # no final_interval: the usual pace
    waits.clear()
    reply = PacedReply(plain, clock=lambda: now[0])
    await reply.update("one")
    now[0] += 0.1
    await reply.finish("one two")
    assert waits == [0.9]


async def test_with_an_edit_budget_the_final_edit_waits_only_when_it_is_spent(
    fake_time: tuple[list[float], list[float]],
) -> None:
    """Discord: 5 writes per 5 s. A short answer's last edit goes out at once; one that
    used the whole budget waits until its oldest write leaves the window."""
    now, waits = fake_time
    target = RecordingTarget(min_interval=1.0)
    target.edit_budget = (5, 5.0)  # type: ignore[attr-defined]
    reply = PacedReply(target, clock=lambda: now[0])
    await reply.update("one")  # posted at 100.0
    now[0] += 0.1
    await reply.finish("one two")  # 1 write in the window: at once
    assert waits == []

    long = RecordingTarget(min_interval=1.0)
    long.edit_budget = (5, 5.0)  # type: ignore[attr-defined]
    reply = PacedReply(long, clock=lambda: now[0])
    start = now[0]
    # Tasks other tests left on the loop are not the pacer's to wait for (one never ends).
    others = asyncio.all_tasks()
    await reply.update("w0")  # the post
    for i in range(1, 5):  # four edits a second apart: the budget is spent
        now[0] += 1.0
        await reply.update(f"w0 w{i}")
        # The pacer's own task makes the edit (asyncio.sleep is the fake here).
        await asyncio.gather(*(asyncio.all_tasks() - others))
    assert len(long.edit_times) == 5 and now[0] == start + 4.0
    waits.clear()
    await reply.finish("w0 w1 w2 w3 w4 done")
    assert waits == [1.0]  # until the post, the oldest of the five, leaves the window
    assert long.messages == ["w0 w1 w2 w3 w4 done"]


class FlakyTarget(RecordingTarget):
    """Posting the second page fails once (a 503 from the platform: `send` gives None)."""

    def __init__(self) -> None:
        super().__init__(min_interval=0.0)
        self.failed = False

    async def send(self, text: str) -> object:
        if len(self.messages) == 1 and not self.failed:
            self.failed = True
            return None
        return await super().send(text)


async def test_a_page_that_failed_to_post_is_posted_again_in_order() -> None:
    """A failed post of page 2 left a hole: page 1, then page 3, 2,000 characters gone."""
    target = FlakyTarget()
    reply = PacedReply(target)
    text = " ".join(f"w{i:04d}" for i in range(900))  # ~5,400 characters: three pages
    await reply.update(text[:1500])
    await reply.update(text)
    await reply.finish(text)
    assert target.failed and len(target.messages) == 3, target.messages
    assert " ".join(target.messages).split() == text.split()


class ShrinkingTarget(RecordingTarget):
    """Its pages get shorter after the first post (a webhook gone: a name goes in front)."""

    def __init__(self) -> None:
        super().__init__(min_interval=0.0)

    async def send(self, text: str) -> object:
        handle = await super().send(text)
        self.limit = 1900
        return handle


async def test_pages_are_split_again_when_the_target_shrinks_them_meanwhile() -> None:
    target = ShrinkingTarget()
    reply = PacedReply(target)
    text = " ".join(f"w{i:04d}" for i in range(700))
    await reply.finish(text)
    assert all(len(m) <= 1900 for m in target.messages[1:]), [len(m) for m in target.messages]
    assert max(len(m) for m in target.messages) <= 2000


class BrokenTarget(RecordingTarget):
    """Nothing after the first page can be posted (Discord keeps refusing)."""

    def __init__(self) -> None:
        super().__init__(min_interval=0.0)

    async def send(self, text: str) -> object:
        return None if self.messages else await super().send(text)


async def test_an_end_that_cannot_be_posted_is_said_on_the_page_before() -> None:
    target = BrokenTarget()
    reply = PacedReply(target)
    text = " ".join(f"w{i:04d}" for i in range(900))
    await reply.finish(text)
    [page] = target.messages
    assert len(page) <= 2000 and page.endswith("⚠️ " + MISSING_NOTE)


async def test_the_notes_on_a_greeting_say_greeting() -> None:
    """A target showing a character's greeting (its `what`): the notes said "answer"."""
    broken = BrokenTarget()
    broken.what = "greeting"  # type: ignore[attr-defined]
    await PacedReply(broken).finish(" ".join(f"w{i:04d}" for i in range(900)))
    [page] = broken.messages
    assert page.endswith("⚠️ " + missing_note("greeting"))
    assert "this greeting could not" in page and "answer" not in page
    refusing = RefusingTarget(refuse_after=0)
    refusing.what = "greeting"  # type: ignore[attr-defined]
    reply = PacedReply(refusing)
    await reply.update("Welcome")
    await reply.finish("Welcome aboard.")
    assert refusing.messages == ["Welcome", f"⚠️ {stale_note('greeting')}\n\nWelcome aboard."]
    assert "greeting above" in refusing.messages[1]


class ReusingTarget(RecordingTarget):
    """Its first send goes into a message of an answer shown before, whose edits are
    refused while `refusing` (kept, showing that answer): NotUpdated."""

    def __init__(self) -> None:
        super().__init__(min_interval=0.0)
        self.messages = ["the answer before"]
        self.reused = False
        self.refusing = True

    async def send(self, text: str) -> object:
        if not self.reused:
            self.reused = True
            return NotUpdated(0)
        return await super().send(text)

    async def edit(self, handle: object, text: str) -> bool:
        return not (handle == 0 and self.refusing) and await super().edit(handle, text)


async def test_a_message_kept_but_not_updated_is_stale_as_a_refused_edit() -> None:
    """🔄 into an answer's old message whose edit was refused: the pacer took it for
    updated, and the old answer stood as if it were the new one, nothing said. Now it is
    a page whose edit was refused: tried again, then the answer sent again from it."""
    target = ReusingTarget()
    reply = PacedReply(target)
    await reply.update("The new answer")
    await reply.finish("The new answer")  # the same text: tried again all the same
    assert target.messages == ["the answer before", f"⚠️ {STALE_NOTE}\n\nThe new answer"]


def test_a_tilde_fence_is_closed_with_tildes_and_an_early_newline_makes_no_tiny_page() -> None:
    """`~~~` was closed with ``` (no longer a fence), and the one newline near the start
    of a page of words cut it there: a first page of 13 characters."""
    pages = split_text("intro\n~~~\n" + "q " * 1500, 2000)
    assert len(pages) == 2 and len(pages[0]) > 1000, [len(p) for p in pages]
    assert pages[0].endswith("\n~~~") and pages[1].startswith("~~~\n")
    assert all(len(p) <= 2000 for p in pages)


def test_a_page_does_not_end_inside_a_markdown_link() -> None:
    """A page ended with `[リンク 54` and the next began `の説明](https://…)`: the cut fell
    on a space inside the link's text, and neither page showed the link."""
    text = " ".join(f"[リンク {i} の説明](https://example.com/{i})" for i in range(300))
    pages = split_text(text, 2000)
    assert len(pages) > 3 and " ".join(pages) == text
    link = r"\[リンク \d+ の説明\]\(https://example\.com/\d+\)"
    for page in pages:
        assert len(page) <= 2000 and regex.fullmatch(f"{link}( {link})*", page), page[-40:]


@pytest.mark.parametrize(
    "item",
    [
        "`code {} here`",
        "**bold {} words**",
        "*some {} emphasis*",
        "_more {} emphasis_",
        "__underlined {} words__",
        "~~struck {} words~~",
        "||hidden {} words||",
        "[see {} here](https://example.com/a_(b)/{})",
        "https://example.com/検索、結果/{}",  # a bare address, with a clause end inside
        "**bold with `code {}` and *more* inside**",
    ],
)
def test_a_page_does_not_end_inside_a_markdown_span(item: str) -> None:
    text = " ".join(item.format(i, i) for i in range(400))
    head, tail = item.split("{}")[0], item.split("{}")[-1]
    for limit in (700, 1000, 1500, 2000):  # pages ending at different places in a span
        pages = split_text(text, limit)
        assert len(pages) > 3 and " ".join(pages) == text
        for page in pages:
            assert len(page) <= limit
            assert page.startswith(head) and page.endswith(tail), (page[:20], page[-20:])


def test_a_word_too_long_for_a_page_is_cut_before_an_address_that_follows_it() -> None:
    text = "x" * 1500 + "https://example.com/" + "y" * 600 + " end"
    pages = split_text(text, 2000)
    assert pages == ["x" * 1500, text[1500:]]


def test_a_span_longer_than_half_a_page_is_cut_as_before() -> None:
    """Only a span a cut outside it is near is kept whole: a page is not cut short
    before one that a page could not hold anyway."""
    text = "Intro: **" + " ".join(f"bold{i}" for i in range(800)) + "** done"
    pages = split_text(text, 2000)
    assert len(pages) > 2 and len(pages[0]) > 1900
    assert " ".join(pages) == text


def test_a_fence_inside_a_longer_fence_neither_closes_nor_reopens_it() -> None:
    """A ````md fence holding a ```py one was cut with no fence closed or reopened: any
    fence line toggled, whatever its length. Only ```` (or more, nothing after) ends it."""
    code = "\n".join(f"print({i})" for i in range(300))
    words = " ".join(f"word{i}" for i in range(400))
    text = f"intro\n````md\n# Title\n```py\n{code}\n```\n{words}\n````\nafter"
    pages = split_text(text, 2000)
    assert len(pages) > 3
    for page in pages:
        assert len(page) <= 2000
    for page in pages[:-1]:
        assert page.endswith("\n````"), page[-20:]
    for page in pages[1:]:
        assert page.startswith("````md\n"), page[:20]
    assert pages[-1].endswith("\n````\nafter")
    inside = "\n".join(p.removeprefix("````md\n").removesuffix("\n````") for p in pages)
    assert all(f"print({i})\n" in inside for i in range(300))
    assert all(f"word{i}" in inside for i in range(400))


@pytest.mark.parametrize("marker", ["````", "~~~~~"])
def test_a_long_fence_is_closed_and_reopened_with_its_own_marker_and_loses_no_text(
    marker: str,
) -> None:
    inner = "~~~" if marker.startswith("~") else "```"
    lines = [f"line {i:04d} " + "z" * 40 for i in range(200)]
    body = "\n".join([*lines[:100], inner, "not a closing line", *lines[100:]])
    text = f"{marker}text\n{body}\n{marker}"
    pages = split_text(text, 500)
    assert len(pages) > 10
    for page in pages:
        assert len(page) <= 500 and page.startswith(f"{marker}text\n"), page[:10]
        assert page.endswith(f"\n{marker}"), page[-10:]
    shown = [page.split("\n")[1:-1] for page in pages]
    assert [line for page in shown for line in page] == body.split("\n")


def test_a_backtick_line_with_backticks_after_it_is_no_fence() -> None:
    """CommonMark: a backtick fence's info string has no backtick (```a``` is text)."""
    text = "```not a fence```\n" + " ".join(f"w{i}" for i in range(600))
    pages = split_text(text, 1000)
    assert len(pages) > 2 and not any(page.startswith("```\n") for page in pages)
    assert "\n".join(pages).count("```") == 2


@settings(max_examples=200)
@given(st.text(alphabet="ab \n`~*_|[]()h:/。", min_size=0, max_size=3000), st.integers(40, 400))
def test_pages_of_markdown_fit_the_limit_and_keep_the_words(text: str, limit: int) -> None:
    pages = split_text(text, limit)
    assert all(len(p) <= limit for p in pages)
    if "`" not in text and "~" not in text:  # no fence added: the words are all there
        assert "".join("".join(pages).split()) == "".join(text.split())


def test_a_fence_line_longer_than_a_page_is_reopened_with_its_marker_alone() -> None:
    """Text run on after a ``` (a page long, no line break) was reopened whole on every
    page: the pages never got past it (the split ran on for ever)."""
    text = "```" + "x" * 2500 + "\nprint(1)\n```\ndone"
    pages = [page for page, _ in islice(_split(text, 2000), 10)]
    assert len(pages) == 2 and all(len(p) <= 2000 for p in pages)
    assert pages[1].startswith("```\n") and pages[1].endswith("print(1)\n```\ndone")
    assert "".join(pages).count("x") == 2500


@pytest.mark.parametrize("marker", ["`", "~"])
@pytest.mark.parametrize("count", [249, 251, 992, 1000, 1007, 1999, 2000, 2500])
def test_a_fence_marker_of_hundreds_of_characters_never_stalls_the_split(
    marker: str, count: int
) -> None:
    """Hostile probe: an answer opening with ~1,000 backticks made every page that run
    of backticks again (the split never ended, the bot froze and memory grew): each page
    reopened as much as it took. Such a run is text, and every page moves on."""
    text = marker * count + "\n" + "y " * 1500
    pages = [page for page, _ in islice(_split(text, 2000), 50)]
    assert len(pages) < 10 and all(len(p) <= 2000 for p in pages), len(pages)
    assert "".join(pages).count("y") == 1500


def test_pages_move_on_under_a_size_that_counts_more_than_characters() -> None:
    """The same on Matrix, whose limit is an event's size: a fence's pages always take
    some of what is left."""
    text = "`" * 11_000 + "\n" + "y " * 20_000
    pages = [page for page, _ in islice(_split(text, 22_000, lambda t: len(t.encode())), 50)]
    assert len(pages) < 10 and "".join(pages).count("y") == 20_000


class CappedTarget(RecordingTarget):
    """A platform that shows an answer in at most three messages (Discord: the rest as a
    file)."""

    max_pages = 3

    def clipped_note(self, final: bool) -> str:
        return "(the rest comes as a file)" if not final else "(the rest is in the file)"


async def test_a_capped_target_gets_its_first_pages_the_last_saying_so_and_the_error() -> None:
    target = CappedTarget(min_interval=0.0)
    reply = PacedReply(target)
    answer = "```python\n"
    for i in range(2000):
        answer += f"print({i})\n"
        await reply.update(answer)
        assert len(target.messages) <= 3
    await asyncio.sleep(0.05)  # the paced edit of the newest text
    assert reply.clipped and target.messages[-1].endswith("\n\n(the rest comes as a file)")
    await reply.finish(answer, error="Stopped by Bob.")
    assert len(target.messages) == 3 and all(len(m) <= 2000 for m in target.messages)
    *earlier, last = target.messages
    assert earlier == split_text(answer, 2000)[:2]
    # The fence the cut is inside is closed before the note: the note is no code.
    assert last.endswith("\n```\n\n(the rest is in the file)\n\n⚠️ Stopped by Bob.")
    assert last.startswith("```python\n") and reply.clipped


async def test_a_capped_target_shows_an_answer_that_fits_as_it_is() -> None:
    target = CappedTarget(min_interval=0.0)
    reply = PacedReply(target)
    answer = " ".join(f"w{i}" for i in range(900))  # two pages
    await reply.update(answer)
    await reply.finish(answer, error="Cut.")
    assert not reply.clipped
    assert target.messages == split_text(f"{answer}\n\n⚠️ Cut.", 2000)


async def test_a_capped_target_keeps_the_start_of_an_error_as_long_as_a_page() -> None:
    """Review: the note and the error line were kept whole on the last page, the answer
    given what was left: an error near a page's size left under 20 characters, and the
    final edit raised ValueError (the answer never showed how it ended)."""
    target = CappedTarget(min_interval=0.0)
    reply = PacedReply(target)
    answer = "word " * 3_000
    await reply.update(answer)
    error = "The endpoint said: " + "x" * 2_500
    await reply.finish(answer, error=error)
    assert len(target.messages) == 3 and all(len(m) <= 2000 for m in target.messages)
    last = target.messages[-1]
    assert last.startswith("word ") and last.endswith("x…")
    assert "(the rest is in the file)\n\n⚠️ The endpoint said: x" in last


class CappedRefusingTarget(CappedTarget, RefusingTarget):
    """At most three messages, and edits refused after `refuse_after`."""


WORDS = " ".join(f"word{i:03d}" for i in range(200))  # 1,600 characters: 9 pages of 200


async def test_an_answer_sent_again_from_a_stuck_page_keeps_to_the_cap() -> None:
    """The answer sent again from a stuck page took as many messages again as the cap:
    four of three here, the last saying the rest was in the file."""
    target = CappedRefusingTarget(refuse_after=0, limit=200)
    reply = PacedReply(target)
    await reply.update(WORDS[:20])
    await reply.finish(WORDS, error="Stopped by Bob.")
    assert len(target.messages) == 3 and all(len(m) <= 200 for m in target.messages)
    stuck, *again = target.messages
    assert stuck == WORDS[:20]
    # From the stuck page on, in the two messages left: the note on the file, the error.
    assert again[0].startswith(f"⚠️ {STALE_NOTE}\n\nword000 word001")
    assert again[-1].endswith("\n\n(the rest is in the file)\n\n⚠️ Stopped by Bob.")
    assert reply.clipped  # the whole answer goes as the note says


async def test_an_answer_with_no_message_left_gets_one_more_for_the_rest() -> None:
    """All the cap's messages posted, then their edits refused: nothing more was posted,
    the last left saying the rest would come (as a file), which never could. Now one
    message more: the answer sent again from the stuck page, ending with the note on the
    rest (Discord posts the file with it)."""
    target = CappedRefusingTarget(refuse_after=0, limit=400)
    reply = PacedReply(target)
    await reply.update(WORDS[:1100])  # three pages, all posted
    assert len(target.messages) == 3
    await reply.finish(WORDS)
    assert target.messages[:3] == split_text(WORDS[:1100], 400)
    [again] = target.messages[3:]
    stuck = split_text(WORDS, 400)[2]  # the first two pages were whole when posted
    assert again.startswith(f"⚠️ {STALE_NOTE}\n\n{stuck[:15]}") and len(again) <= 400
    assert again.endswith("\n\n(the rest is in the file)")
    assert reply.clipped


async def test_a_short_answer_sent_again_in_the_messages_left_is_not_cut() -> None:
    """A stuck page of an answer that fits the messages left is sent again whole: no
    note on a file, none made."""
    target = CappedRefusingTarget(refuse_after=0, limit=200)
    reply = PacedReply(target)
    await reply.update(WORDS[:20])
    await reply.finish(WORDS[:200])
    again = f"⚠️ {STALE_NOTE}\n\n{WORDS[:200].rstrip()}"
    assert target.messages == [WORDS[:20], *split_text(again, 200)]  # two messages
    assert not reply.clipped


async def test_a_message_kept_but_not_updated_that_takes_the_next_edit_is_not_sent_again() -> None:
    target = ReusingTarget()
    reply = PacedReply(target)
    await reply.update("The new answer")
    target.refusing = False
    await reply.finish("The new answer")  # the same text, tried again: it goes through
    assert target.messages == ["The new answer"]


async def test_a_fence_left_open_is_shown_closed_and_the_error_line_after_it() -> None:
    """Discord shows an unclosed fence as raw backticks: while a block streams, and for
    good in an answer cut off inside one, whose error line then read as code. A fence
    with nothing in it yet waits; a marker the splitter takes for text is left alone."""
    target = RecordingTarget(min_interval=0.0)
    reply = PacedReply(target)
    await reply.update("Sure:\n```python")
    assert target.messages == ["Sure:"]
    await reply.update("Sure:\n```python\nprint(1)")
    await asyncio.sleep(0.05)  # the paced edit
    assert target.messages == ["Sure:\n```python\nprint(1)\n```"]
    await reply.finish("Sure:\n```python\nprint(1)\n", error="Stopped by Bob.")
    assert target.messages == ["Sure:\n```python\nprint(1)\n```\n\n⚠️ Stopped by Bob."]
    assert fences_closed("````md\n```py\nx\n```", 250) == "````md\n```py\nx\n```\n````"
    assert fences_closed("```py", 250) == "```py"  # all there is
    assert fences_closed("a\n```\nb\n```", 250) == "a\n```\nb\n```"
    long = "`" * 300 + "\nx"
    assert fences_closed(long, 250) == long


def test_a_spoiler_cut_is_ended_on_its_page_and_opened_again_on_the_next() -> None:
    """Discord's `||` spoiler (shown reasoning) longer than a page showed its marks raw
    and its text in the clear. A `||` in code, or one nothing ends, is text: no marks
    are added for it; a fence inside a spoiler is closed before the spoiler ends."""
    text = "||💭 " + "a secret thought. " * 30 + "||\n\nThe answer."
    pages = split_text(text, 200)
    assert len(pages) > 2 and all(len(p) <= 200 for p in pages)
    assert all(p.startswith("||") and p.count("||") == 2 for p in pages)
    assert pages[-1].endswith("||\n\nThe answer.")
    assert " ".join(p.replace("||", "") for p in pages).split() == text.replace("||", "").split()
    for plain in ("a || b is or. " + "word " * 60, "`a || b` " + "word " * 60 + "`c || d`"):
        assert " ".join(split_text(plain, 200)).split() == plain.split()
    fenced = "||thought\n```py\n" + "x = 1\n" * 40 + "```\nmore||\n\nanswer"
    first, second = split_text(fenced, 200)
    assert first.endswith("x = 1\n```\n||") and second.startswith("||\n```py\nx = 1")
    assert second.endswith("```\nmore||\n\nanswer")


@settings(max_examples=200)
@given(st.text(alphabet="ab \n`|", min_size=0, max_size=3000), st.integers(40, 400))
def test_pages_with_spoilers_fit_the_limit(text: str, limit: int) -> None:
    assert all(len(p) <= limit for p in split_text(text, limit))


async def test_a_fence_the_shown_reasoning_leaves_open_does_not_take_the_answer_in() -> None:
    """Shown reasoning is cut at its length, often inside a code block. Closing the fence
    left open at the end of the whole text put the closing ``` after the answer: the answer
    showed as that block's code, and the spoiler's closing `||` as code too. The answer's
    own open fence is still closed, before the error line."""
    thought = "Plan: write it.\n```python\ndef f():\n    return 1"
    target = RecordingTarget(min_interval=0.0)
    reply = PacedReply(target)
    await reply.update("Use **f()**.", thought)
    assert target.messages == [f"||💭 {thought}||\n\nUse **f()**."]
    await reply.finish("Use f():\n```python\nf()", thought, error="Stopped by Bob.")
    assert target.messages == [
        f"||💭 {thought}||\n\nUse f():\n```python\nf()\n```\n\n⚠️ Stopped by Bob."
    ]
