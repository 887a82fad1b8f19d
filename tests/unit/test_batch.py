"""The batcher behind grouped commits and grouped reads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from bot.logfilter import RedactingFilter
from bot.store.batch import Batcher
from bot.store.errors import StoreUnavailable
from bot.types.place import logged_in


class Recorder:
    def __init__(self, bad: set[int] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.bad = bad or set()

    async def run(self, batch: Sequence[int]) -> list[int]:
        self.batches.append(list(batch))
        await asyncio.sleep(0)
        if self.bad & set(batch):
            raise ValueError(f"bad request among {sorted(self.bad & set(batch))}")
        return [n * 10 for n in batch]


async def test_requests_made_together_are_served_together_in_order() -> None:
    rec = Recorder()
    batcher = Batcher(rec.run, most=4)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(10)))
    assert results == [n * 10 for n in range(10)]
    # All ten queued before the worker first ran; it takes them at most 4 a batch.
    assert rec.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_a_bad_request_fails_alone() -> None:
    rec = Recorder(bad={3})
    batcher = Batcher(rec.run, most=10)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(6)), return_exceptions=True)
    assert [r for r in results if not isinstance(r, BaseException)] == [0, 10, 20, 40, 50]
    assert isinstance(results[3], ValueError)
    assert rec.batches[0] == [0, 1, 2, 3, 4, 5]  # tried together, then each alone
    assert [b for b in rec.batches[1:]] == [[0], [1], [2], [3], [4], [5]]


async def test_a_caller_that_gives_up_does_not_disturb_the_others() -> None:
    rec = Recorder()
    batcher = Batcher(rec.run, most=10)
    impatient = asyncio.create_task(batcher.submit(1))
    patient = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == 20
    with pytest.raises(asyncio.CancelledError):
        await impatient
    await batcher.drain()
    assert rec.batches == [[1, 2]]


async def test_a_bounded_drain_waits_for_requests_that_get_through() -> None:
    """A shutdown's drain with patience: what the database takes is served as before."""
    rec = Recorder()
    batcher = Batcher(rec.run, most=2)
    asked = [asyncio.create_task(batcher.submit(n)) for n in range(5)]
    await asyncio.sleep(0)
    assert await batcher.drain(patience=5.0) == 0
    assert [await a for a in asked] == [0, 10, 20, 30, 40]


async def test_a_bounded_drain_gives_up_what_is_still_retrying_and_says_how_many() -> None:
    """Past its patience a drain gives up the batch being tried (a database down: its
    transaction retrying) and those queued behind it; their callers are told the database
    could not be reached. It waited for them for as long as they retried before."""
    tried: list[list[int]] = []

    async def down(batch: Sequence[int]) -> list[int]:
        tried.append(list(batch))
        await asyncio.Event().wait()  # retrying, for longer than a shutdown waits
        raise AssertionError("unreachable")

    batcher = Batcher(down, most=2)
    asked = [asyncio.create_task(batcher.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    gone = asked[1]
    gone.cancel()  # a caller that stopped waiting: its request is still given up
    assert await batcher.drain(patience=0.05) == 3
    assert tried == [[0, 1]]
    for done in (asked[0], asked[2]):
        with pytest.raises(StoreUnavailable):
            await done
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await batcher.drain(patience=0.05) == 0  # nothing left to wait for


async def test_a_request_made_while_a_given_up_batch_winds_down_is_given_up_too() -> None:
    """Review: a request submitted while the cancelled batch still wound down (a
    transaction's rollback on the way out: SQLAlchemy shields the connection's close)
    was queued behind a worker about to end: no worker served it, nor told its caller,
    who waited for ever."""
    rolled_back = asyncio.Event()
    winding_down = asyncio.Event()

    async def down(batch: Sequence[int]) -> list[int]:
        try:
            await asyncio.Event().wait()  # retrying, for longer than a shutdown waits
        except asyncio.CancelledError:
            winding_down.set()
            await rolled_back.wait()
            raise
        raise AssertionError("unreachable")

    batcher = Batcher(down, most=2)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    drain = asyncio.create_task(batcher.drain(patience=0.01))
    await winding_down.wait()
    late = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    rolled_back.set()
    assert await drain == 2
    for asked in (first, late):
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(asked, timeout=5.0)


async def test_a_batch_that_never_winds_down_does_not_hold_the_drain() -> None:
    """A database gone silent never answers the rollback of a batch cancelled past a
    shutdown's patience: the drain waited for it with no limit (as long as the kernel
    took to give up the socket, ~15 minutes). Now its callers are told, and the drain
    returns; a request made later gets a worker of its own."""
    silent = asyncio.Event()

    async def down(batch: Sequence[int]) -> list[int]:
        try:
            await silent.wait()
        except asyncio.CancelledError:
            await silent.wait()  # the rollback the server never answers
            raise
        return list(batch)

    batcher = Batcher(down, most=2)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    async with asyncio.timeout(60):  # guards the run only
        assert await batcher.drain(patience=0.01) == 1
        with pytest.raises(StoreUnavailable):
            await first
        silent.set()  # the network back: the next request is served
        assert await batcher.submit(2) == 2


async def test_a_worker_started_for_one_channel_does_not_name_it_for_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Log probe: the worker serves every channel's reads, but took the place of the one
    whose read started it: a database retry for channel B's read, served after A's,
    said "(in A)". Its lines name no channel (the callers' own lines do)."""
    caplog.set_level(logging.INFO, logger="bot.store")
    caplog.handler.addFilter(RedactingFilter())
    first_served = asyncio.Event()
    go_on = asyncio.Event()

    async def run(batch: Sequence[str]) -> list[str]:
        if batch == ["a"]:
            first_served.set()
            await go_on.wait()
        else:
            logging.getLogger("bot.store").info("database read: StoreBusy, again in 0.1s")
        return list(batch)

    batcher: Batcher[str, str] = Batcher(run, most=4)
    with logged_in("discord:1:A"):
        a = asyncio.ensure_future(batcher.submit("a"))
    await first_served.wait()
    with logged_in("discord:1:B"):
        b = asyncio.ensure_future(batcher.submit("b"))
    await asyncio.sleep(0)
    go_on.set()
    assert await asyncio.gather(a, b) == ["a", "b"]
    [line] = [r.getMessage() for r in caplog.records if "again in" in r.getMessage()]
    assert "discord:1:A" not in line, line
