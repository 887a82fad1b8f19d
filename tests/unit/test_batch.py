"""The batcher behind grouped commits and grouped reads."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bot.store.batch import Batcher


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
