"""An answer as it streams, cleaned and without the channel's own secrets in any form.

An endpoint that reflects the Authorization header would otherwise have the bot post
and store the key. Text that might be the start of a secret is held back until the
next piece decides, so not even a prefix of a key is shown.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.types import redact
from bot.types.secrets import joins_word, secret_forms, too_short
from bot.types.text import Growing, clean_text


class AnswerGuard:
    """Feed pieces; `text` is what may be shown and stored so far."""

    __slots__ = (
        "_cr",
        "_firsts",
        "_forms",
        "_long",
        "_longest",
        "_secrets",
        "_short",
        "_starts",
        "_tail",
        "_text",
    )

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(s for s in secrets if s)
        self._forms = tuple(f for s in self._secrets for f in secret_forms(s))
        self._firsts = {f[0] for f in self._forms}
        # Every beginning of every form: whether an answer's end may start a secret is
        # one lookup, not a scan of every form (forms run to ~150 characters each).
        self._starts = frozenset(f[:i] for f in self._forms for i in range(1, len(f) + 1))
        self._longest = max(map(len, self._forms), default=0)
        # A secret an older version took too short (`none`) goes only as a word of its
        # own: a word the answer's end is still writing ("none" before "theless") waits.
        self._short = tuple(s for s in self._secrets if too_short(s) is not None)
        self._long = tuple(s for s in self._secrets if too_short(s) is None)
        self._tail = ""
        self._cr = ""  # a piece's last \r, kept until the next says whether \n follows
        self._text = Growing()  # read whole only when asked (hidden reasoning: at its end)

    @property
    def text(self) -> str:
        return str(self._text)

    def __len__(self) -> int:
        return len(self._text)

    def resume(self, shown: str) -> None:
        """Go on from text already shown (an answer being continued): its end is held
        back again where it may begin a secret, so a secret across the seam is found and
        taken out whole (the start shown before goes with it)."""
        hold = self._held_back(shown) if self._forms else 0
        hold = max(hold, self._open_word(shown))
        self._text = Growing(shown[: len(shown) - hold])
        self._tail = shown[len(shown) - hold :]

    def feed(self, piece: str) -> str:
        """Take the next piece of the answer; returns `text`."""
        self.add(piece)
        return self.text

    def add(self, piece: str) -> None:
        """Take the next piece of the answer."""
        # A CRLF split between two pieces is one line break, as in one piece (clean_text
        # made each half a line break of its own: two where the model wrote one).
        piece = self._cr + piece
        self._cr = "\r" if piece.endswith("\r") else ""
        piece = clean_text(piece[: len(piece) - len(self._cr)])
        if not self._forms:
            self._text.add(piece)
            return
        buf = self._tail + piece
        if self._long:
            # The whole of it: a key whose end the held word holds (`sk-…\\n`, `sk-…%0A`)
            # is found here, not shown in parts, before and after the seam.
            buf = redact(buf, self._long, shapes=False, known=False)
        word = self._open_word(buf)
        if self._short:  # a word still being written is not yet one of its own
            done = redact(buf[: len(buf) - word], self._short, shapes=False, known=False)
            buf = done + buf[len(buf) - word :]
        hold = max(self._held_back(buf), word)
        self._text.add(buf[: len(buf) - hold])
        self._tail = buf[len(buf) - hold :]

    def finish(self) -> str:
        """End of the answer: what was held back was not a secret after all. (Taking out
        a held-back start of one here would tell anyone who has the model repeat their
        guesses whether a guess starts the key.) A whole secret disguised across pieces
        (in another case, a zero-width space between its letters) is taken out here, in
        the answer as it ends and is stored."""
        if self._cr:
            self._cr = ""
            self.add("\n")  # a \r at the very end: a line break, as clean_text makes it
        self._text.add(self._tail)
        self._tail = ""
        if self._forms:
            self._text = Growing(redact(self.text, self._secrets, shapes=False, known=False))
        return self.text

    def cut(self, limit: int) -> str:
        """Keep at most `limit` characters (an answer past the length cap)."""
        self.finish()
        self._text = Growing(self.text[:limit])
        return self.text

    def _open_word(self, buf: str) -> int:
        """Length of the letters and digits `buf` ends with that join a word (joins_word),
        and the `%` or `\\` of an escape among them (`%20none` starts a word), when a short
        secret is kept out only as a word of its own: whether it is one, the next piece
        tells. At most the longest form's (a run of letters longer than that is no prose:
        one with no end, a blob, is not held back whole, each piece scanning it again)."""
        if not self._short:
            return 0
        end, stop = len(buf), max(0, len(buf) - self._longest)
        while end > stop and (buf[end - 1] in "%\\" or joins_word(buf[end - 1])):
            end -= 1
        return len(buf) - end

    def _held_back(self, buf: str) -> int:
        """Length of the longest end of `buf` that begins some form of a secret."""
        window = max(0, len(buf) - self._longest + 1)
        for start in range(window, len(buf)):
            if buf[start] in self._firsts and buf[start:] in self._starts:
                return len(buf) - start
        return 0
