"""Keep a leading `<think>…</think>` block apart from the answer while text streams in.

Reasoning models that write their thoughts into the text (DeepSeek R1, QwQ on local
servers) open the answer with one such block. Only that leading block is reasoning: a
`<think>` later in an answer is text the model meant to show (code, an explanation).
Structured reasoning (`reasoning_content`, Claude's thinking blocks) comes from the
providers as such and never passes through here.
"""

from __future__ import annotations

from bot.types.text import Growing

_OPEN, _CLOSE = "<think>", "</think>"
# Blank lines before a leading block: more than this, and the text is no block's (a
# stream of nothing but blanks was held, and read again, whole, at each piece).
_MOST_LEADING_BLANKS = 4096


class ThinkSplitter:
    """Feed text pieces; read `answer` and `reasoning` at any time.

    A tag may arrive split across pieces, so text that could still become a tag is
    held back until the next piece decides it.
    """

    __slots__ = ("_answer", "_held", "_reasoning", "_state")

    def __init__(self, *, continuing: bool = False) -> None:
        """`continuing`: the text goes on from an answer, so no block can lead it."""
        # Read as they grow (sizes, since): a whole `str` read after each piece would
        # copy it each time.
        self._answer = Growing()
        self._reasoning = Growing()
        self._state = "text" if continuing else "start"  # start → think → gap → text
        self._held = ""

    @property
    def answer(self) -> str:
        return str(self._answer)

    @property
    def reasoning(self) -> str:
        return str(self._reasoning)

    def sizes(self) -> tuple[int, int]:
        """How long the answer and the reasoning are so far."""
        return len(self._answer), len(self._reasoning)

    def since(self, answer: int, reasoning: int) -> tuple[str, str]:
        """The answer and the reasoning added after the first `answer` and `reasoning`
        characters of each (sizes taken before)."""
        return self._answer.since(answer), self._reasoning.since(reasoning)

    def feed(self, piece: str) -> None:
        if self._state == "text":
            self._answer.add(piece)
            return
        if self._state == "gap":  # the blank lines models put after </think>
            piece = piece.lstrip()
            if piece:
                self._state = "text"
                self._answer.add(piece)
            return
        self._held += piece
        if self._state == "start":
            head = self._held.lstrip()
            # The blanks alone are counted (not a tag's start after them): the same text
            # leads with a block or not however it was cut into pieces.
            near = len(self._held) - len(head) <= _MOST_LEADING_BLANKS
            if near and head.startswith(_OPEN):
                self._state = "think"
                self._held = head[len(_OPEN) :]
            elif near and _OPEN.startswith(head):
                return  # maybe the tag is still arriving
            else:
                self._state = "text"
                self._answer.add(self._held)
                self._held = ""
                return
        end = self._held.find(_CLOSE)
        if end >= 0:
            self._reasoning.add(self._held[:end])
            rest = self._held[end + len(_CLOSE) :].lstrip()
            self._held = ""
            self._state = "text" if rest else "gap"
            self._answer.add(rest)
            return
        keep = _partial_tag_suffix(self._held, _CLOSE)
        self._reasoning.add(self._held[: len(self._held) - keep])
        self._held = self._held[len(self._held) - keep :]

    def finish(self) -> None:
        """End of stream: what was held back goes where it was heading."""
        held, self._held = self._held, ""
        if self._state == "think":
            self._reasoning.add(held)
        else:
            self._answer.add(held)


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    if "<" not in text[-(len(tag) - 1) :]:
        return 0  # the usual case, decided without trying every length
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
