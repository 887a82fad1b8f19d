"""Requests opened at once leave one after another, not all at the end.

Opening a request yields to the event loop a few times before its bytes leave:
httpcore's locks yield once each, and a new connection waits for its connect. In a burst,
the turns whose questions were stored in one commit are ready at the same moment; each
yield puts a turn at the back of the loop's queue, so they advance step by step together
and every request leaves at the end of the burst's work. Their first tokens then come
back together, and the first posts queue behind one another (bench/RESULTS.md, issue 12:
the slowest channel's first text ~13 ms later in a burst of 50).

`SendQueue.turn()` lets one request at a time through, from building it to the moment it
first waits on the network (`on_the_wire()`, which the network layer calls when it starts
to connect, and when it waits for an answer with the request written). A request that
waits on anything else for longer than `patience` lets the next one go, so a slow step
never holds the others back longer than that; and none waits for the ones before it
longer than `most_wait` (on a busy event loop each holds its pass for a few long
iterations), so taking turns never delays a request by more than that.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

_PATIENCE = 0.01  # s: one request's CPU is ~0.5 ms; past this it is waiting on something
# The longest one request waits for the ones before it. Each holds its pass for a few of
# the event loop's iterations (httpcore's yields): on a loop busy with other work (many
# answers streaming) an iteration takes milliseconds, and a burst queued behind one
# another had left ~6 times slower than together (50 requests, 3 ms an iteration: the
# last answered after 505 ms, not 87). Past this, a request goes without its turn.
_MOST_WAIT = 0.05


class _Pass:
    """One request's hold on the queue; given back once (by whichever comes first)."""

    __slots__ = ("_lock", "_timer")

    def __init__(self, lock: asyncio.Lock, patience: float) -> None:
        self._lock: asyncio.Lock | None = lock
        self._timer = asyncio.get_running_loop().call_later(patience, self.release)

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            self._timer.cancel()
            lock.release()


# The pass of the request this task is opening (tasks it starts inherit it: one of them
# waiting on the network lets the next request go too, which is only sooner).
_HOLDING: contextvars.ContextVar[_Pass | None] = contextvars.ContextVar(
    "send_queue_pass", default=None
)


def on_the_wire() -> None:
    """The request this task is opening now waits on the network: the next one may go."""
    held = _HOLDING.get()
    if held is not None:
        held.release()


class SendQueue:
    """Requests take turns from their making to the network (FIFO)."""

    def __init__(self, patience: float = _PATIENCE, most_wait: float = _MOST_WAIT) -> None:
        self._lock = asyncio.Lock()
        self._patience = patience
        self._most_wait = most_wait

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._most_wait):
                await self._lock.acquire()
        except TimeoutError:  # the ones before it are slow to leave: it goes meanwhile
            yield
            return
        held = _Pass(self._lock, self._patience)
        token = _HOLDING.set(held)
        try:
            yield
        finally:
            _HOLDING.reset(token)
            held.release()
