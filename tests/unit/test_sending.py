"""Requests opened at once take turns until each is on the wire (bot/providers/_sending.py).

In a burst, the turns whose questions were stored in one commit open their requests at
the same moment; without the queue every one of them left at the end, together.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.providers._http import RequestSpec
from bot.providers._sending import SendQueue, on_the_wire
from tests.unit.test_network import lenient_transport, read_request, response, serve

LONG = 60.0  # a patience no test reaches: only the events decide


async def test_the_next_request_goes_once_the_one_before_is_on_the_wire() -> None:
    queue = SendQueue(LONG)
    said: list[str] = []
    wire = asyncio.Event()

    async def first() -> None:
        async with queue.turn():
            said.append("first in")
            await wire.wait()
            said.append("first on the wire")
            on_the_wire()
            await asyncio.sleep(0)  # the answer is awaited here, the queue moves on
            said.append("first reads")

    async def second() -> None:
        async with queue.turn():
            said.append("second in")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    for _ in range(5):
        await asyncio.sleep(0)
    assert said == ["first in"]  # the second waits, however often the loop comes round
    wire.set()
    await asyncio.gather(*tasks)
    assert said == ["first in", "first on the wire", "second in", "first reads"]


async def test_leaving_without_reaching_the_network_lets_the_next_go() -> None:
    """A request refused before it was sent (a URL the bot cannot use, an error)."""
    queue = SendQueue(LONG)

    async def refused() -> None:
        async with queue.turn():
            raise ValueError("no host")

    with pytest.raises(ValueError, match="no host"):
        await refused()
    async with asyncio.timeout(5), queue.turn():
        pass


async def test_a_cancelled_request_lets_the_next_go() -> None:
    queue = SendQueue(LONG)
    entered = asyncio.Event()

    async def held() -> None:
        async with queue.turn():
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(held())
    await entered.wait()
    task.cancel()
    async with asyncio.timeout(5), queue.turn():
        pass
    assert task.cancelled()


async def test_a_request_waiting_on_something_else_lets_the_next_go_after_its_patience() -> None:
    """Not the network (another lock, a full pool): the others go on without it."""
    queue = SendQueue(patience=0.01)
    stuck = asyncio.Event()
    inside = asyncio.Event()

    async def slow() -> None:
        async with queue.turn():
            inside.set()
            await stuck.wait()

    task = asyncio.create_task(slow())
    await inside.wait()
    async with asyncio.timeout(5), queue.turn():
        assert not task.done()  # still waiting, and the next one is through
    stuck.set()
    await task
    async with asyncio.timeout(5), queue.turn():  # given back once, not twice
        pass


async def test_a_request_waits_for_the_ones_before_it_a_bounded_time() -> None:
    """On an event loop busy with other work (many answers streaming), each request held
    its pass for a few iterations of milliseconds each, and a burst queued behind one
    another: 50 left ~6 times slower than together. Now one waits for the ones before it
    at most `most_wait` (by default), however long they hold (here, for ever), then goes."""
    queue = SendQueue(patience=LONG)
    stuck = asyncio.Event()
    inside = asyncio.Event()

    async def slow() -> None:
        async with queue.turn():
            inside.set()
            await stuck.wait()

    task = asyncio.create_task(slow())
    await inside.wait()
    async with asyncio.timeout(5):
        async with queue.turn():
            on_the_wire()  # went without a pass: gives back nothing
        assert not task.done()
    stuck.set()
    await task
    async with asyncio.timeout(5), queue.turn():  # the pass was given back once
        inside.clear()
        follower = asyncio.create_task(slow())
        await asyncio.sleep(0)
        assert not inside.is_set()  # and is held again: the next one waits its turn
    await inside.wait()
    await follower


async def test_on_the_wire_outside_a_turn_or_twice_changes_nothing() -> None:
    queue = SendQueue(LONG)
    on_the_wire()
    async with queue.turn():
        on_the_wire()
        on_the_wire()
    async with asyncio.timeout(5), queue.turn():
        pass


async def test_requests_opened_at_once_leave_one_after_another() -> None:
    """Through the transport, on kept-alive connections: the first request is answered
    before the others leave. Without the queue, each of httpcore's yields sent every
    request to the back of the loop's queue, and they left in groups."""
    count = 40  # ten of the transport's lanes of four connections
    arrived = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal arrived
        while True:
            try:
                await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            arrived += 1
            writer.write(response(b"ok"))
            await writer.drain()

    server, port = await serve(handler)
    transport = lenient_transport()
    url = f"http://127.0.0.1:{port}/"

    async def get() -> int:
        """How many requests the server had when this one's answer came."""
        answer, _ = await transport.open(RequestSpec("GET", url, where="test", headers={}))
        seen = arrived
        try:
            await answer.aread()
        finally:
            await answer.aclose()
        return seen

    try:
        await asyncio.gather(*(get() for _ in range(count)))  # connections kept alive
        arrived = 0
        seen = await asyncio.gather(*(get() for _ in range(count)))
        assert arrived == count
        # Answered before a third had left. Without the queue: one request of each lane
        # (10) had left before any was answered, then the next of each.
        assert seen[0] <= 2, seen
    finally:
        await transport.aclose()
        server.close()
