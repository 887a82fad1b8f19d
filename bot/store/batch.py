"""Serve requests that arrive together in one go: one query or one commit for many callers.

While a batch runs, new requests queue and form the next one, so a burst (hundreds of
channels answering at once) costs a few database round trips instead of hundreds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from bot.store.db import CLOSE_GRACE
from bot.store.errors import StoreUnavailable
from bot.types.place import nowhere

Q = TypeVar("Q")
R = TypeVar("R")


class Batcher(Generic[Q, R]):
    """Runs `run(batch)` over queued requests, at most `most` at a time.

    `run` returns one result per request, in order. When a whole batch fails, each of
    its requests is run alone, so one bad request fails only its own caller.
    """

    def __init__(self, run: Callable[[Sequence[Q]], Awaitable[Sequence[R]]], most: int) -> None:
        self._run = run
        self._most = most
        self._queue: list[tuple[Q, asyncio.Future[R]]] = []
        self._serving: list[tuple[Q, asyncio.Future[R]]] = []  # taken, not yet served
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, request: Q) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((request, done))
        if self._worker is None or self._worker.done():
            # It serves every place's requests: its lines name none (bot.types.place).
            self._worker = asyncio.get_running_loop().create_task(self._work(), context=nowhere())
        return await done

    async def drain(self, patience: float | None = None) -> int:
        """Wait until everything queued so far is served (for closing); with `patience`,
        for so many seconds at most: the requests not served by then (the database
        retrying, down) are given up, their callers told StoreUnavailable; the worker, told
        to stop, gets CLOSE_GRACE more (a database gone silent never answers its rollback)
        and is then left behind. How many."""
        worker = self._worker
        if worker is None:
            return 0
        await asyncio.wait({worker}, timeout=patience)
        if worker.done():
            return 0
        left, self._queue = self._serving + self._queue, []
        worker.cancel()
        await asyncio.wait({worker}, timeout=CLOSE_GRACE)
        if not worker.done():
            self._worker = None  # left behind: what is asked later is not queued behind it
        # Asked while it wound down (its transaction rolled back on the way out): queued
        # behind a worker that is gone, no one would serve them, nor tell their callers.
        left, self._queue = left + self._queue, []
        for _, done in left:
            _fail(done, StoreUnavailable())
        return len(left)

    async def _work(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._most], self._queue[self._most :]
            self._serving = batch
            try:
                results = await self._run([request for request, _ in batch])
            except Exception as err:
                if len(batch) == 1:
                    _fail(batch[0][1], err)
                    continue
                for at, (request, done) in enumerate(batch):
                    self._serving = batch[at:]
                    try:
                        [result] = await self._run([request])
                    except Exception as one:
                        _fail(done, one)
                    else:
                        _resolve(done, result)
            else:
                for (_, done), result in zip(batch, results, strict=True):
                    _resolve(done, result)
            finally:
                self._serving = []


# A caller that gave up waiting (cancelled) leaves a done future: what was done stands.
def _resolve(done: asyncio.Future[R], result: R) -> None:
    if not done.done():
        done.set_result(result)


def _fail(done: asyncio.Future[R], error: BaseException) -> None:
    if not done.done():
        done.set_exception(error)
