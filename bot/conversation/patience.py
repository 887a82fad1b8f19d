"""How long the end of an answer (its final edit, what it carries) may hold its
conversation while the platform fails it: the one rule of every front-end that edits."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

# Seconds the edits of an answer that has ended may hold its conversation. A platform
# failing them was tried again and again: Discord held the next question ~100 s, Matrix
# for as long as a 429 asked (an hour) or 18 minutes of a homeserver that never answers;
# a stop meanwhile found nothing being written. Past it, the edit is given up, and the
# pacer sends the answer again from where it stuck, in new messages.
END_PATIENCE = 15.0
# Seconds of waits the platform asks for (a rate limit: Discord's Retry-After or a bucket
# spent until its reset, Matrix's retry_after_ms) that an ended answer's edits wait out on
# top of END_PATIENCE, counted from the end of the wait: the platform says when the edit
# goes through, and giving it up meanwhile posted the answer again (its beginning twice).
# A longer wait (Discord has said "2 days", Synapse an hour) is not waited out.
RATE_LIMIT_PATIENCE = 60.0
# Seconds a typing call ("typing…" shown or taken off: a courtesy) may hold an answer or
# its conversation. A platform failing it held them as long as its client waited: Discord
# answering a 429 asking an hour (discord.py sleeps it out), a typing call never answered
# (5 minutes, discord.py's session), a homeserver doing either (nio: an hour, 2 minutes).
TYPING_PATIENCE = 5.0


async def typing_landed(call: asyncio.Future[Any]) -> bool:
    """Wait TYPING_PATIENCE s at most for a typing call under way (`call`: the task making
    it) to land: True when it did. One still under way is left to land or fail by itself,
    never cut (cut inside discord.py's rate limiter, it held the channel's next call 30 s)."""
    done, _ = await asyncio.wait([call], timeout=TYPING_PATIENCE)
    return bool(done)


class Deadline:
    """When the calls of an answer that has ended (its edits, its new messages) stop waiting
    for the platform: none until it ends; set then, it cuts the calls under way too (one the
    pacer's finish waits for).
    END_PATIENCE from the answer's end, or from the end of a wait the platform asked its
    edits for (asked_to_wait), whichever is later."""

    def __init__(self) -> None:
        self.at: float | None = None
        self._open: set[asyncio.Timeout] = set()
        self._ended: float | None = None
        self._asked_until = float("-inf")  # the end of the latest wait asked for
        # Seconds of waits taken since the answer ended (RATE_LIMIT_PATIENCE at most; the
        # stream's own waits are not counted, only what is left of one at its end).
        self._asked = 0.0

    def start(self) -> None:
        """The answer has ended, or (again) goes out anew from where its end stuck: its calls
        from now on wait END_PATIENCE s at most, and the waits asked of them up to
        RATE_LIMIT_PATIENCE. A platform failing the answer sent again too held the
        conversation as long as its client retried (an hour, for a 429 asking one)."""
        self._ended = now = asyncio.get_running_loop().time()
        self._asked = max(0.0, self._asked_until - now)
        self._move()

    def asked_to_wait(self, seconds: float) -> None:
        """The platform asks an edit under this deadline to wait `seconds` before it goes
        through (a rate limit, which its client sleeps out): the patience counts from then."""
        taken = self._asked if self._ended is not None else 0.0
        if seconds <= 0 or taken + seconds > RATE_LIMIT_PATIENCE:
            return  # past it, given up as a failure is (the answer goes out again)
        if self._ended is not None:
            self._asked += seconds
        until = asyncio.get_running_loop().time() + seconds
        self._asked_until = max(self._asked_until, until)
        self._move()

    def _move(self) -> None:
        if self._ended is None:
            return
        self.at = max(self._ended, self._asked_until) + END_PATIENCE
        for timeout in self._open:
            timeout.reschedule(self.at)

    def gave_up(self, failing: str) -> str:
        """What the log says of a call given up at this deadline: the seconds really waited
        (END_PATIENCE, and the rate limits' waits counted on top of it), `failing` it."""
        waited = END_PATIENCE if self.at is None or self._ended is None else self.at - self._ended
        return f"gave up after {waited:.3g} s of {failing}"

    def passed(self, within: float = 0.0) -> bool:
        """The deadline has passed (or will have, `within` s from now)."""
        return self.at is not None and asyncio.get_running_loop().time() + within >= self.at

    @contextlib.asynccontextmanager
    async def bounding(self) -> AsyncIterator[None]:
        """A call cut (TimeoutError) once the deadline passes, set before or during it;
        none begun once it has (cut where it first waits, its request would be out by then:
        an edit the platform made, taken for one it did not, and the answer sent again)."""
        if self.passed():
            raise TimeoutError("the answer's end patience has passed")
        async with asyncio.timeout_at(self.at) as timeout:
            self._open.add(timeout)
            bound = _BOUND.set(self)
            try:
                yield
            finally:
                _BOUND.reset(bound)
                self._open.discard(timeout)


# The deadline of the call under way in this task: discord.py and nio make their HTTP
# requests in the caller's task, so what the platform answers them (a rate limit, seen by
# a hook of the client) finds it here (bounding_call).
_BOUND: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "answer_end_deadline", default=None
)


def bounding_call() -> Deadline | None:
    """The Deadline bounding the call under way in this task, if any."""
    return _BOUND.get()
