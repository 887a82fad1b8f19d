"""Streaming into chat messages: split at the platform's limit, pace the edits.

Shared by every front-end that shows an answer by posting then editing a message.
"""

from __future__ import annotations

import asyncio
import re
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from bot.types.text import grapheme_end, shorten

# A fence line: its marker (three or more of one character) and what follows (the info
# string, such as a language, on an opening line; nothing on a closing one).
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")


# What a page's length counts: characters, unless a platform says (counting each
# character at least once: a text longer than the limit never fits).
Size = Callable[[str], int]


def split_text(text: str, limit: int, size: Size = len) -> list[str]:
    """Pages of at most `limit` (characters, or what `size` counts), cut at a paragraph,
    a line, a word or a sentence end where possible, else between two characters as
    readers see them (never inside an emoji sequence or a letter with its marks).

    A code fence open at a cut is closed on that page and reopened (with its
    language) on the next, and so is a `||` spoiler, so every page renders as the
    author meant.
    """
    return [page for page, _ in _split(text, limit, size)] or [""]


def _split(text: str, limit: int, size: Size = len) -> Iterator[tuple[str, str]]:
    """split_text's pages, each with the text from its start on (a fence it reopens
    included): what a page and all after it say, as written, not as pages joined."""
    if limit < 20:
        raise ValueError("limit too small to split sensibly")
    rest = text
    reopen = ""
    posted = False
    last_mark = text.rfind(_SPOILER)  # a spoiler open at a cut before it ends after it
    while rest:
        body = reopen + rest
        if len(body) <= limit and size(body) <= limit:  # a size counts each character
            if body.strip() or not posted:
                yield body, body
            return
        # Leave room for what we might have to add: a closing ```, or the longer marker of
        # the fence open at the cut, and the end of a spoiler open there (then cut again,
        # a little earlier).
        closing = "\n```"
        while True:
            room = _fit(body, limit - size(closing), size)
            cut = _cut_point(body, room, minimum=len(reopen) + 1)
            fence = _open_fence(body[:cut])
            if fence is not None and size(fence[1]) > limit // 8:
                # A marker too long to close and reopen on every page (hundreds of
                # backticks): text, not a fence, or no page would hold more than it.
                fence = None
            # Open, and ended after the cut (without an end, Discord shows `||` as text).
            ends = last_mark >= len(text) - len(body) + cut  # the rest ends the text
            spoiler = _SPOILER if ends and _spoiler_open(body[:cut]) else ""
            needed = ("\n" + fence[1] if fence is not None else "") + spoiler
            if len(needed) <= len(closing):
                break
            closing = needed
        page = body[:cut]
        kept = ""
        if fence is not None:
            opening, marker = fence
            # Closed with its own marker: a `~~~` fence does not end at a ```, a ````
            # one not at a ``` (which it may hold).
            kept = page.rstrip("\n")
            kept = kept[: _fit(kept, limit - size("\n" + marker + spoiler), size)]
        if fence is not None and len(kept) > len(reopen):  # the page takes some of the rest
            # A spoiler around the block ends after it, on a line of its own (Matrix
            # would read "```||" as code), and opens again before it.
            page = kept + "\n" + marker + ("\n" + spoiler if spoiler else "")
            # A fence line too long to repeat (text run on after the ```, say) is
            # reopened with its marker alone: whole, it would fill the next page.
            fenced = (opening if size(opening) <= limit // 4 else marker) + "\n"
            reopen = (spoiler + "\n" if spoiler else "") + fenced
            rest = body[len(kept) :].lstrip("\n")  # from where the page's text ends
        else:
            page = page.rstrip()
            rest = body[cut:].lstrip(" \n")
            if not page:
                # Only blanks before the cut (a run of tabs or no-break spaces, or the
                # blank lines an answer opens with): no page. An empty message is
                # refused (Discord), and the rest of the answer went unposted.
                reopen = ""
                continue
            if spoiler and rest.startswith(_SPOILER):  # cut right before its end
                rest, spoiler = rest[len(_SPOILER) :].lstrip(" \n"), ""
                page += _SPOILER
            # A spoiler open at the cut (the reasoning Discord shows hidden) ends on this
            # page and opens again on the next: else each page showed it with a raw `||`.
            page += spoiler
            reopen = spoiler
        posted = True
        yield page, body


_SPOILER = "||"
# What hides a spoiler's marks: a code span or fence (`||` in code is text).
_SPOILER_MARKS = re.compile(r"\|\||`+")


def _spoiler_open(page: str) -> bool:
    """Whether `page` ends inside a `||` spoiler opened outside code, as Discord reads
    them (the first `||` after an opening one ends it). Linear: each code span or fence
    is skipped to the next run of as many backticks, found once."""
    marks = [m.group() for m in _SPOILER_MARKS.finditer(page)]
    following: list[int | None] = [None] * len(marks)
    seen: dict[int, int] = {}
    for i in range(len(marks) - 1, -1, -1):
        mark = marks[i]
        if mark[0] == "`":
            following[i] = seen.get(len(mark))
            seen[len(mark)] = i
    inside = False
    i = 0
    while i < len(marks):
        mark = marks[i]
        if mark == _SPOILER:
            inside = not inside
        elif not inside:
            after = following[i]
            if after is not None:
                i = after  # a code span or fence: its `||` are text
            elif len(mark) >= 3:
                return False  # a fence open to the cut: code, whatever precedes it
        i += 1
    return inside


def _fit(text: str, budget: int, size: Size) -> int:
    """How many characters of `text` fit in `budget` (at least one; a few less than
    would, when `size` is not len: each measure may cost a rendering, so the guess
    shrinks in proportion instead of searching)."""
    count = max(1, min(len(text), budget))  # no character measures less than one
    if size is len:
        return count
    sample = text[: min(count, 2048)]  # what a character costs here, as a first guess
    count = max(1, min(count, budget * len(sample) // max(1, size(sample))))
    while count > 1:
        measured = size(text[:count])
        if measured <= budget:
            break
        count = max(1, min(count - 1, count * budget * 97 // (measured * 100)))
    return count


# Where a sentence or clause ends in scripts written without spaces (CJK), and the
# ideographic space: a page may end after one as after a space.
_CLAUSE_ENDS = (" ", "\u3000", "。", "！", "？", "，", "、", "；", "：", "．", "｡", "､")


def _between(mark: str) -> str:
    """A span between two `mark`s (`**bold**`), not starting or ending with a space.
    Its text scans once, to the next mark: no search back, whatever the line holds."""
    m, c = re.escape(mark), re.escape(mark[0])
    inner = f"[^{c}\\n]" if len(mark) == 1 else f"(?:[^{c}\\n]|{c}(?!{c}))"
    return f"{m}(?![\\s{c}]){inner}*+(?<![\\s{c}]){m}"


# What a cut inside would break, on one line: a Markdown link (its text and address
# shown as neither), an inline code span, a bare address, a bold, italic, struck,
# underlined or spoiler span (`_` not inside a word: snake_case is no emphasis). Each
# begins with a character of its own, so a search skips the other characters at once.
_SPAN = re.compile(
    "|".join(
        (
            *(f"{ticks}[^`\\n]++{ticks}" for ticks in ("```", "``", "`")),
            r"\[[^\[\]\n]*+\]\((?:[^()\s]|\([^()\s]*+\))*+\)",
            r"https?://[^\s<>]++",
            *(_between(mark) for mark in ("**", "__", "~~", "||", "*")),
            r"_(?<!\w_)(?![\s_])[^_\n]*+(?<![\s_])_(?!\w)",
        )
    )
)


def _cut_point(text: str, room: int, minimum: int) -> int:
    """Where to end a page: a paragraph, a line or a word end, the first of those in
    the page's second half; only then one earlier (one early newline would make a page
    of a few characters); else in the middle of one very long word, between two of
    its graphemes (an emoji with its skin tone, a letter with its marks).

    A word end inside a link, a code span or a bold one (a Markdown span, at most half
    a page long) is passed over for one outside it; only a page with none outside is
    cut inside one, as it would be without spans."""
    window = text[:room]
    # A word end is looked for only where no line end was found: on the page's last
    # line, whose spans (none goes on to the next line) are found once one is.
    line = window.rfind("\n") + 1
    spans: list[tuple[int, int]] | None = None
    for floor in (max(minimum, room // 2), minimum):
        for sep in ("\n\n", "\n"):
            at = window.rfind(sep)
            if at >= floor:
                return at + 1
        at = max(window.rfind(sep) for sep in _CLAUSE_ENDS)
        while at >= floor:
            if spans is None:
                spans = _spans(text, line, room)
            span = _around(spans, at + 1)
            if span is None:
                return at + 1
            at = max(window.rfind(sep, floor, span[0]) for sep in _CLAUSE_ENDS)
    at = max(window.rfind(sep) for sep in _CLAUSE_ENDS)
    if at >= minimum:
        return at + 1  # every word end is inside a span: cut as without them
    span = _around(_spans(text, line, room) if spans is None else spans, room)
    if span is not None and span[0] > minimum:
        return grapheme_end(text, span[0], minimum)  # a long word ends before the span
    return grapheme_end(text, room, minimum)


def _spans(text: str, start: int, room: int) -> list[tuple[int, int]]:
    """Where the Markdown spans from `start` on begin and end, in order, those the text
    of a page cut near `room` may end inside (read past it, for one that ends after)."""
    longest = max(1, room // 2)
    return [
        match.span()
        for match in _SPAN.finditer(text, start, room + longest)
        if match.start() < room and match.end() - match.start() <= longest
    ]


def _around(spans: list[tuple[int, int]], cut: int) -> tuple[int, int] | None:
    """The span a page ending at `cut` would end inside, if any."""
    i = bisect_right(spans, (cut, cut)) - 1
    # Spans do not overlap: only the last to begin before the cut may hold it.
    return spans[i] if i >= 0 and spans[i][0] < cut < spans[i][1] else None


def fences_closed(text: str, longest: int) -> str:
    """`text` with a code fence it leaves open at its end closed: Discord shows an
    unclosed fence as raw backticks (all the while a code block streams, and for good
    when the answer is cut off in it), and a line added after the answer (an error, a
    note) would read as code. A marker longer than `longest` is text, as when splitting.
    A fence with nothing in it yet is left out (closed, Discord shows its language as its
    code), unless it is all there is."""
    found = _open_fence_at(text)
    if found is None or len(found[2]) > longest:
        return text
    start, _, marker = found
    shown = text.rstrip()
    if "\n" not in shown[start:]:  # nothing after its opening line
        return shown[:start].rstrip() or text
    return f"{shown}\n{marker}"


def _open_fence(page: str) -> tuple[str, str] | None:
    """The opening line (```lang) and marker (```) of a fence left open at the end of
    `page`, if any. As CommonMark reads them: a fence ends only at a line of its own
    character, at least as many of it, and nothing else (a ```py line inside a ````md
    fence is its text); a backtick fence's language has no backtick."""
    found = _open_fence_at(page)
    return None if found is None else found[1:]


def _open_fence_at(page: str) -> tuple[int, str, str] | None:
    """_open_fence's opening line and marker, after where that line starts."""
    opening: tuple[int, str, str] | None = None
    start = 0
    for line in page.split("\n"):
        at, start = start, start + len(line) + 1
        match = _FENCE.match(line)
        if match is None:
            continue
        marker, info = match.group(1), match.group(2).strip()
        if opening is None:
            if not (marker[0] == "`" and "`" in info):
                opening = (at, marker + info, marker)
        elif marker[0] == opening[2][0] and len(marker) >= len(opening[2]) and not info:
            opening = None
    return opening


class MessageTarget(Protocol):
    """What a front-end gives the pacer: post and edit messages in one place."""

    limit: int  # characters per message (or what an optional `size(text)` counts)
    min_interval: float  # seconds between two edits of one message
    # Optional `final_interval`: seconds the last edit must keep from the one before
    # (default min_interval). Lower lets the finished answer show at once where the
    # platform's limit has room for one more edit. Or optional `edit_budget`: (writes,
    # seconds) the platform allows; the last edit then goes out at once while the
    # writes of the trailing window leave room, else as soon as they do.

    # Optional `post_ids() -> list[str]`: the platform's ids of the messages it posted.

    # Optional `max_pages`: the most messages one answer may take (a platform whose
    # messages are short). A longer one shows its first pages, the last of them ending
    # with `clipped_note(final)` (what becomes of the rest; `final`: the answer has
    # ended) and the error, if any; PacedReply.clipped says it was cut so.

    # Optional `what`: what the messages show, in the notes the pacer adds ("answer",
    # the default; "greeting").

    # Optional `ended()`: called as the answer's end begins to be shown (PacedReply.finish):
    # from then on its edits and posts hold the conversation a while at most
    # (patience.Deadline); called again as it goes out anew from where its end stuck
    # (_post_stale), which gets a patience of its own.

    # Optional `pages`: set by the pacer before it shows a text, to how many messages
    # that text takes in all; a target that marks the last (with buttons, say) marks a
    # message that more follow (its final edit, made before the page after it is posted)
    # with nothing.

    async def send(self, text: str) -> object:
        """Post `text`; its handle, None when it could not be posted (said in the log),
        or NotUpdated for a message kept from an answer shown before whose edit to
        `text` was refused."""
        ...

    async def edit(self, handle: object, text: str) -> bool:
        """Make `handle` show `text`; False when the platform would not (said in its log)."""
        ...


def spoiler_reasoning(answer: str, reasoning: str) -> str:
    """Default rendering of shown reasoning: a spoiler block before the answer."""
    thought = reasoning.strip()
    if not thought:
        return answer
    return f"||💭 {thought}||\n\n{answer}" if answer else f"||💭 {thought}||"


@dataclass(frozen=True, slots=True)
class NotUpdated:
    """What a target's send gives for a message of an answer shown before that it took
    for the new text (🔄, ⏩) but could not edit: kept, still showing the old text. The
    pacer treats it as a refused edit of that page."""

    handle: object


def missing_note(what: str) -> str:
    """What the last page posted says when the rest of `what` could not be posted."""
    return (
        f"The rest of this {what} could not be posted here; the whole {what} is kept in "
        "the conversation."
    )


def stale_note(what: str) -> str:
    """What opens `what` sent again from a page whose edit was refused (not always right
    after that page: pages posted after it, or the old message 🔄 could not change, may
    stand between)."""
    return f"Part of the {what} above could not be updated, so here it is again from there on:"


MISSING_NOTE = missing_note("answer")
STALE_NOTE = stale_note("answer")


class PacedReply:
    """A ReplySink that posts the first text at once, then edits no faster than allowed.

    Each update replaces the whole answer; the newest text wins, intermediate ones
    are skipped when they arrive faster than the target may edit. An update is rendered
    when it goes out, not as it comes: a model writing its reasoning a line a piece had
    it rendered whole at each piece (100 KB of it, shown in Matrix as a quote, held the
    loop for 110 s in all), though only one in hundreds was ever shown.
    """

    def __init__(
        self,
        target: MessageTarget,
        *,
        render: Callable[[str, str], str] = spoiler_reasoning,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target = target
        self._size: Size = getattr(target, "size", len)
        self._render = render
        self._clock = clock
        self._handles: list[object] = []
        self._shown: list[str] = []
        self._stale: set[int] = set()  # pages whose newest edit the platform refused
        self._last_edit = -1e9
        self._writes: deque[float] = deque(maxlen=16)  # when posts and edits went out
        self._latest = ""
        self._unrendered: tuple[str, str] | None = None  # the newest update, if not _latest
        self._flush_task: asyncio.Task[None] | None = None
        self._flushing = False  # the flush task's edits are under way (its wait is over)
        self._lock = asyncio.Lock()
        self._ending = ""  # the error line the finished text ends with, if any
        self.sends = 0
        self.edits = 0
        # The text shown last needed more pages than the target's max_pages.
        self.clipped = False

    def posts(self) -> list[str]:
        """The platform messages showing the answer so far (ReplySink's optional posts)."""
        ids = getattr(self._target, "post_ids", None)
        return [] if ids is None else list(ids())

    async def typing(self) -> None:
        typing = getattr(self._target, "typing", None)
        if typing is not None:
            await typing()

    async def update(self, answer: str, reasoning: str = "") -> None:
        self._unrendered = (answer, reasoning)
        if not self._handles:
            if self._rendered().strip():
                await self._sync()  # the first text goes out at once
            return
        if self._flush_task is None or self._flush_task.done():
            self._raise_failed_flush()
            self._flush_task = asyncio.create_task(self._flush_later())

    async def notice(self, text: str) -> None:
        """`text` for the person instead of an answer: posted as the target posts notices
        (when it has its own kind for them and nothing was posted yet)."""
        as_notice = getattr(self._target, "as_notice", None)
        if as_notice is not None and not self._handles:
            as_notice()
        await self.finish(text)

    def _raise_failed_flush(self) -> None:
        """An edit made in the background failed as the first post would have (the bot was
        removed from the room, say): it fails this update as the post's failure would, so
        the answer ends there, not streamed on for no one (and no task is left holding
        an error nobody reads)."""
        task, self._flush_task = self._flush_task, None
        if task is not None and task.done() and not task.cancelled():
            failed = task.exception()
            if failed is not None:
                raise failed

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        ended = getattr(self._target, "ended", None)
        if ended is not None:  # its edits, one under way too, hold the conversation a while
            ended()
        task = self._flush_task
        if task is not None and not task.done():
            if self._flushing:
                # Its edit is under way, and lands first. Cut mid-call, it could reach the
                # platform after the final edit (on another connection) and leave the
                # answer shown short; and discord.py's rate limiter, cut while it wakes
                # the next call, kept the final edit waiting 30 s.
                await asyncio.wait([task])
            else:
                task.cancel()  # still waiting for its turn: the final edit replaces it
                self._flush_task = None
        self._raise_failed_flush()
        text = self._render(self._closed(answer), reasoning)
        self._ending = f"\n\n⚠️ {error.rstrip()}" if error and text.strip() else ""
        if error:
            text = f"{text}{self._ending}" if text.strip() else f"⚠️ {error}"
        self._latest, self._unrendered = text.rstrip(), None
        await self._sync(final=True)

    def _rendered(self) -> str:
        """The newest text as it is shown (rendered now if it came since)."""
        if self._unrendered is not None:
            answer, reasoning = self._unrendered
            self._latest = self._render(self._closed(answer), reasoning).rstrip()
            self._unrendered = None
        return self._latest

    def _closed(self, answer: str) -> str:
        """`answer` as shown: a fence it leaves open closed (one whose marker the splitter
        would close and reopen on every page). The answer alone, before the reasoning is
        put in front of it: a fence the shown reasoning leaves open (cut at its length)
        was closed after the answer, which then showed as that fence's code (Discord: in
        the reasoning's spoiler, its `||` code too)."""
        return fences_closed(answer, self._target.limit // 8)

    async def _flush_later(self) -> None:
        wait = self._last_edit + self._target.min_interval - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        self._flushing = True
        try:
            await self._sync()
        finally:
            self._flushing = False

    async def _sync(self, *, final: bool = False) -> None:
        """Make the posted messages show the latest text (sends for new pages, edits)."""
        async with self._lock:
            if not final and not self._rendered().strip():
                return  # an update of nothing shows nothing
            interval = self._final_interval() if final else self._target.min_interval
            # Again when the target's page size changed meanwhile, and at the end when a
            # page could not be posted: no later sync would post it.
            for _ in range(3):
                limit = self._target.limit
                pages = self._paged(self._rendered(), limit, final=final)
                interval = await self._pages(pages, interval, final=final)
                if self._target.limit == limit and not (final and None in self._handles):
                    break
            if final and None in self._handles:
                await self._say_missing()
            elif final and self._stale:
                await self._post_stale()

    async def _say_missing(self) -> None:
        """The end of the answer could not be posted: the page before it says so."""
        missing = self._handles.index(None)
        if missing == 0:
            return  # nothing could be posted: the target says why (a permission, say)
        note = f"\n\n⚠️ {missing_note(self._what())}"
        page = self._shown[missing - 1]
        text = page[: _fit(page, self._target.limit - self._size(note), self._size)] + note
        await self._target.edit(self._handles[missing - 1], text)
        self._shown[missing - 1] = text

    async def _post_stale(self) -> None:
        """The finished answer's edit was refused (a rate limit that did not end, say):
        what the stale page and those after it should show goes out as new messages, so
        no one is left reading the answer cut where the refusals began.

        In the messages the target's max_pages leaves, if it has one: cut short there, the
        last ends with the target's note on the rest (the whole answer as a file). An
        answer that took them all gets one message more: its last said the rest would
        follow (as a file), and could not be changed to carry it."""
        first = min(self._stale)
        self._stale.clear()
        ended = getattr(self._target, "ended", None)
        if ended is not None:  # its posts wait no longer than the edits it follows did
            ended()
        cap: int | None = getattr(self._target, "max_pages", None)
        room = None if cap is None else max(1, cap - len(self._handles))
        pages = _split(self._latest, self._target.limit, self._size)
        _, rest = next(islice(pages, first, None), ("", ""))
        again = f"⚠️ {stale_note(self._what())}\n\n{rest}"
        clipped = self.clipped  # cut before, or now: the rest goes as the note says
        stale = self._paged(again, self._target.limit, final=True, cap=room)
        self._tell_pages(len(self._handles) + len(stale))
        for page in stale:
            handle = await self._target.send(page)
            if handle is None or isinstance(handle, NotUpdated):
                break  # the target said why; a message kept unchanged shows none of it
            self.sends += 1
        self.clipped = clipped or self.clipped

    def _paged(self, text: str, limit: int, *, final: bool, cap: int | None = None) -> list[str]:
        """The pages `text` is shown in: at most `cap`, else the target's max_pages, if
        it has one (only as many as that are split: a model that loops writes 100,000
        characters, and each sync would split them all). Cut short, the last page ends
        with the target's note on the rest, and the error line (which would be cut off
        with it)."""
        if cap is None:
            cap = getattr(self._target, "max_pages", None)
        if cap is None:
            return split_text(text, limit, self._size)
        split = list(islice(_split(text, limit, self._size), cap + 1))
        self.clipped = len(split) > cap
        if not self.clipped:
            return [page for page, _ in split] or [""]
        ending = self._ending if self._ending and text.endswith(self._ending) else ""
        body = text[: len(text) - len(ending)]
        split = list(islice(_split(body, limit, self._size), cap))
        last = len(split) - 1  # cap - 1, unless the error line alone made it overflow
        note: Callable[[bool], str] = getattr(self._target, "clipped_note", lambda _: "")
        tail = f"\n\n{note(final)}{ending}"
        if self._size(tail) > limit // 2:  # an error line near a page's size: its start
            tail = f"\n\n{note(final)}{shorten(ending, limit // 4)}"
        page = split_text(split[last][1], limit - self._size(tail), self._size)[0]
        return [*(page for page, _ in split[:last]), page.rstrip() + tail]

    async def _pages(self, pages: list[str], interval: float, *, final: bool = False) -> float:
        """Post or edit each page in order; returns the interval the next edit keeps.

        A page the target could not post (None) is posted again at the next sync, and
        the pages after it wait for it: a failed post must not leave a hole in the middle
        of an answer, its text jumping from the page before to the page after."""
        self._tell_pages(len(pages))
        for i, page in enumerate(pages):
            if final and self._stale and i >= len(self._handles):
                # A page before could not be updated: the rest goes out from there on
                # (_post_stale), not these pages, which would leave a gap before them.
                break
            if i >= len(self._handles) or self._handles[i] is None:
                handle = await self._target.send(page)
                if isinstance(handle, NotUpdated):  # kept, showing an earlier answer
                    handle = handle.handle
                    self._stale.add(i)
                if i < len(self._handles):
                    self._handles[i], self._shown[i] = handle, page
                else:
                    self._handles.append(handle)
                    self._shown.append(page)
                self.sends += 1
                self._wrote()
                if handle is None:
                    break
            elif page != self._shown[i] or i in self._stale:
                wait = self._last_edit + interval - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                if await self._target.edit(self._handles[i], page):
                    self._shown[i] = page
                    self._stale.discard(i)
                else:
                    self._stale.add(i)  # the next sync tries again; the last one says so
                self.edits += 1
                self._wrote()
                interval = self._target.min_interval  # only one edit skips the pace
        return interval

    def _what(self) -> str:
        return str(getattr(self._target, "what", "answer"))

    def _tell_pages(self, count: int) -> None:
        """How many messages the text shown now takes in all (MessageTarget's `pages`)."""
        if hasattr(self._target, "pages"):
            setattr(self._target, "pages", count)  # noqa: B010 (optional in the protocol)

    def _wrote(self) -> None:
        self._last_edit = self._clock()
        self._writes.append(self._last_edit)

    def _final_interval(self) -> float:
        """Seconds the final edit keeps from the write before it."""
        budget = getattr(self._target, "edit_budget", None)
        if budget is None:
            return float(getattr(self._target, "final_interval", self._target.min_interval))
        count, window = int(budget[0]), float(budget[1])
        recent = [at for at in self._writes if at > self._clock() - window]
        if len(recent) < count:
            return 0.0  # room in the platform's budget: the finished answer shows at once
        return recent[-count] + window - self._last_edit  # when the oldest leaves the window
