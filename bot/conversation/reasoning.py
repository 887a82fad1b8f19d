"""Keep `<think>…</think>` reasoning apart from the answer while text streams in."""

from __future__ import annotations

_OPEN, _CLOSE = "<think>", "</think>"


class ThinkSplitter:
    """Feed text pieces; read `answer` and `reasoning` at any time.

    A tag may arrive split across pieces, so a tail that could begin a tag is held
    back until the next piece decides it.
    """

    def __init__(self) -> None:
        self.answer = ""
        self.reasoning = ""
        self._inside = False
        self._held = ""

    def feed(self, piece: str) -> None:
        text = self._held + piece
        self._held = ""
        while text:
            tag = _CLOSE if self._inside else _OPEN
            at = text.find(tag)
            if at >= 0:
                self._emit(text[:at])
                self._inside = not self._inside
                text = text[at + len(tag) :]
                continue
            keep = _partial_tag_suffix(text, tag)
            self._emit(text[: len(text) - keep])
            self._held = text[len(text) - keep :]
            break

    def finish(self) -> None:
        """End of stream: whatever was held back is plain text after all."""
        held, self._held = self._held, ""
        self._emit(held)

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self._inside:
            self.reasoning += text
        else:
            # Models put a newline or two after </think>; don't start the answer with them.
            self.answer += text.lstrip("\n") if not self.answer else text


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    if "<" not in text[-(len(tag) - 1) :]:
        return 0  # the usual case, decided without trying every length
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
