"""The slots messages' files are read in: a few at once, one of each sender's."""

from __future__ import annotations

import asyncio

from bot.conversation.attachments import ReadingSlots


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_sender_holds_one_slot_and_the_others_go_on() -> None:
    slots = ReadingSlots(2)
    reading: list[str] = []
    done = asyncio.Event()

    async def read(sender: str, name: str) -> None:
        async with slots.reading(sender):
            reading.append(name)
            await done.wait()

    tasks = [asyncio.create_task(read("mallory", f"m{n}")) for n in range(3)]
    await _settle()
    tasks.append(asyncio.create_task(read("bob", "b")))
    tasks.append(asyncio.create_task(read("carol", "c")))  # both slots taken: waits
    await _settle()
    assert reading == ["m0", "b"]
    done.set()
    await asyncio.gather(*tasks)
    assert sorted(reading) == ["b", "c", "m0", "m1", "m2"]


async def test_a_cancelled_reader_or_waiter_gives_its_turn_on() -> None:
    slots = ReadingSlots(1)
    release = asyncio.Event()
    reading: list[str] = []

    async def read(sender: str) -> None:
        async with slots.reading(sender):
            reading.append(sender)
            await release.wait()

    first = asyncio.create_task(read("a"))
    await _settle()
    waiter = asyncio.create_task(read("b"))
    last = asyncio.create_task(read("c"))
    await _settle()
    waiter.cancel()
    first.cancel()  # a turn stopped while its files download
    await _settle()
    assert reading == ["a", "c"]
    release.set()
    await asyncio.gather(first, waiter, last, return_exceptions=True)
    assert waiter.cancelled() and first.cancelled()
    async with asyncio.timeout(5):  # nothing left held
        async with slots.reading("a"):
            pass
