"""PostgreSQL gone silent (a partition, a failover, a dead VM: packets dropped, the bot's
connections left open) behind a loopback relay, through a real Core.

A stopped server is refused at once; a silent one was never answered, so asyncpg waited
on the socket until the kernel gave up (~15 minutes): a turn, a command and a shutdown
waited that long with no word. Each guard below only keeps a hang from holding the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.core import TurnLimits
from bot.store.migrate import upgrade_to_head
from bot.types import ChannelRef, Incoming, Platform, Role, TurnState
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai
from tests.integration.test_turns import ADMIN, REF, Sink, chat, make_core, rows
from tests.peers.postgres import PostgresDatabase
from tests.relay import Relay

pytestmark = pytest.mark.postgres

GUARD = 150.0  # seconds: far past the bounded waits, far short of the kernel's 15 minutes


@pytest.fixture
async def endpoint() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(Script(chunks=["Hello", " there", "!"])) as fake:
        yield fake


@pytest.fixture
async def relay(postgres_db: PostgresDatabase) -> AsyncIterator[Relay]:
    await upgrade_to_head(postgres_db.url)  # migrations straight, not through the relay
    relay = Relay(postgres_db.server.port)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


async def test_a_turn_on_a_silent_database_says_so_and_the_next_one_is_stored(
    postgres_db: PostgresDatabase, relay: Relay, endpoint: FakeOpenAI
) -> None:
    core = await make_core(relay.url(postgres_db.url), endpoint, TurnLimits())
    try:
        assert (await chat(core, "hello")).final == ("Hello there!", None)
        relay.swallow()
        async with asyncio.timeout(GUARD):
            sink = await chat(core, "still there?")
        assert sink.final is not None, sink.updates
        assert "cannot reach its database" in sink.final[0], sink.final
        assert "Nothing was sent to the model" in sink.final[0], sink.final
        assert len(endpoint.requests) == 1
        relay.heal()
        async with asyncio.timeout(GUARD):
            assert (await chat(core, "back?")).final == ("Hello there!", None)
            stored = [(e.role, e.content, e.state) for e in await rows(core)]
        assert stored == [
            (Role.USER, "hello", TurnState.DONE),
            (Role.ASSISTANT, "Hello there!", TurnState.DONE),
            (Role.USER, "back?", TurnState.DONE),
            (Role.ASSISTANT, "Hello there!", TurnState.DONE),
        ]
    finally:
        relay.heal()
        async with asyncio.timeout(GUARD):
            await core.close()


async def test_a_command_on_a_silent_database_says_nothing_was_saved(
    postgres_db: PostgresDatabase, relay: Relay, endpoint: FakeOpenAI
) -> None:
    core = await make_core(relay.url(postgres_db.url), endpoint, TurnLimits())
    try:
        await core.store.effective_config(REF)  # up and answering before it goes silent
        relay.swallow()
        async with asyncio.timeout(GUARD):
            reply = await core.run_text_command(Incoming(REF, ADMIN, "/model other-model"))
        assert not reply.ok
        assert "cannot reach its database, so nothing was saved" in reply.text, reply.text
        relay.heal()
        async with asyncio.timeout(GUARD):
            assert (await core.store.effective_config(REF)).model == "m"  # nothing changed
            reply = await core.run_text_command(Incoming(REF, ADMIN, "/model other-model"))
            assert reply.ok, reply.text
            assert (await core.store.effective_config(REF)).model == "other-model"
    finally:
        relay.heal()
        async with asyncio.timeout(GUARD):
            await core.close()


async def test_a_shutdown_with_writes_queued_on_a_silent_database_ends(
    postgres_db: PostgresDatabase, relay: Relay, endpoint: FakeOpenAI
) -> None:
    """A turn's answer streams while the database goes silent; then the bot shuts down
    (wind_down, close): the answer ends, and close returns though its writes were never
    taken, saying how many were given up."""
    endpoint.script = Script(chunks=[f"w{i} " for i in range(40)], interval=0.1)
    core = await make_core(relay.url(postgres_db.url), endpoint, TurnLimits())
    other = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
    closed = False
    try:
        sink = Sink()
        turn = asyncio.create_task(chat(core, "count", sink))
        await sink.first.wait()
        relay.swallow()
        # Another channel's turn queues its question behind the silent database.
        other_sink = Sink()
        waiting = asyncio.create_task(core.chat(Incoming(other, ADMIN, "and me?"), other_sink))
        await asyncio.sleep(1.0)
        async with asyncio.timeout(GUARD):
            await core.wind_down(patience=3.0)
            await core.close()
            closed = True
            await asyncio.gather(turn, waiting, return_exceptions=True)
        assert sink.final is not None and sink.final[0].startswith("w0 "), sink.final
    finally:
        relay.heal()
        if not closed:
            async with asyncio.timeout(GUARD):
                await core.close()


async def test_a_shutdown_on_a_silent_database_with_its_connections_idle_ends(
    postgres_db: PostgresDatabase, relay: Relay, endpoint: FakeOpenAI
) -> None:
    """The database goes silent while the bot is idle, its pooled connections open: a
    shutdown's goodbye on each (asyncpg's close) waited for an answer with no limit.
    Now close ends, and what was stored before is there once the network is back."""
    url = relay.url(postgres_db.url)
    core = await make_core(url, endpoint, TurnLimits())
    closed = False
    try:
        assert (await chat(core, "hello")).final == ("Hello there!", None)
        relay.swallow()
        async with asyncio.timeout(GUARD):
            await core.wind_down(patience=1.0)
            await core.close()
            closed = True
    finally:
        relay.heal()
        if not closed:
            async with asyncio.timeout(GUARD):
                await core.close()
    again = await make_core(url, endpoint, TurnLimits())
    try:
        stored = [(e.role, e.content, e.state) for e in await rows(again)]
        assert stored == [
            (Role.USER, "hello", TurnState.DONE),
            (Role.ASSISTANT, "Hello there!", TurnState.DONE),
        ]
    finally:
        await again.close()
