"""What an admin changes while an answer streams in the same channel: a real Core on
SQLite and PostgreSQL, commands run beside the turn as Discord's slash commands run,
against loopback OpenAI-compatible endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import create_async_engine

from bot.core import Core
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.types import (
    Actor,
    ChannelConfig,
    ChannelRef,
    Incoming,
    Platform,
    Reply,
    Source,
    StatusCheck,
)
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai

REF = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
ADMIN = Actor("u1", "Ada", is_channel_admin=True)
SERVER_ADMIN = Actor("u2", "Olga", is_channel_admin=True, is_server_admin=True)
SLOW = Script(chunks=[f"w{i} " for i in range(30)], interval=0.05)


class Sink:
    """Records what a front-end would show."""

    def __init__(self) -> None:
        self.first = asyncio.Event()
        self.final: tuple[str, str | None] | None = None

    async def typing(self) -> None:
        return None

    async def update(self, answer: str, reasoning: str = "") -> None:
        self.first.set()

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        self.final = (answer, error)


async def open_core(database_url: str, proxy_url: str | None = None) -> Core:
    """A Core on `database_url`; `proxy_url`: the operator's DEFAULT_PROXY_URL."""
    await upgrade_to_head(database_url)
    defaults = ChannelConfig.of(source=Source.CUSTOM, model="m", proxy_url=proxy_url)
    box = SecretBox.from_setting(generate_key())
    store = await Store.open(database_url, box, defaults=defaults)
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    return Core(store, hub)


@pytest.fixture
async def core(database_url: str) -> AsyncIterator[Core]:
    core = await open_core(database_url)
    try:
        yield core
    finally:
        await core.close()


@pytest.fixture
async def first() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(Script(chunks=["from A"])) as served:
        yield served


@pytest.fixture
async def second() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(Script(chunks=["from B"])) as served:
        yield served


async def command(core: Core, text: str, actor: Actor = ADMIN) -> Reply:
    return await core.run_text_command(Incoming(REF, actor, text))


async def ask(core: Core, text: str, sink: Sink | None = None) -> Sink:
    sink = sink or Sink()
    await core.chat(Incoming(REF, ADMIN, text), sink)
    return sink


async def bypassed_endpoint(core: Core, endpoint: FakeOpenAI) -> None:
    """A channel on `endpoint` whose last status check failed (a new proxy password its
    model list refused), answering because an admin bypassed the check: the URL proven
    before is kept."""
    assert (await command(core, f"/proxy set {endpoint.url_v1}")).ok
    endpoint.script.models_status = 401
    await command(core, "/proxy password opensesame")
    status = (await core.store.effective_config(REF)).status
    assert status is not None and not status.ok
    assert "chat goes through" in (await command(core, "/connect bypass:on")).text


async def answer_while(core: Core, endpoint: FakeOpenAI, *changes: str) -> Sink:
    """`changes` run while an answer from `endpoint` streams; the answer once it ended."""
    endpoint.script = Script(chunks=SLOW.chunks, interval=SLOW.interval, models_status=401)
    sink = Sink()
    turn = asyncio.create_task(ask(core, "count for me", sink))
    await sink.first.wait()
    assert not turn.done()
    for change in changes:
        reply = await command(core, change)
        assert reply.ok, reply.text
    await turn
    assert sink.final is not None and sink.final[0].startswith("w0 ")
    return sink


async def test_a_proxy_set_while_an_answer_streams_is_where_the_next_one_goes(
    core: Core, first: FakeOpenAI, second: FakeOpenAI
) -> None:
    """The answer that ended after the change recorded 'it answers' for the old URL over
    the new one's check: the next question went to the old server, with the password
    set for the new one."""
    await bypassed_endpoint(core, first)
    await answer_while(core, first, f"/proxy set {second.url_v1}", "/proxy password letmein")
    config = await core.store.effective_config(REF)
    assert config.proxy_url == second.url_v1
    assert config.resolved_url in (None, second.url_v1)
    asked = len(first.requests)
    assert (await ask(core, "and now?")).final == ("from B", None)
    assert len(first.requests) == asked and len(second.requests) == 1
    assert second.authorizations[-1] == "Bearer letmein"
    assert not any("letmein" in sent for sent in first.authorizations)


async def test_a_proxy_cleared_while_an_answer_streams_is_not_asked_again(
    core: Core, first: FakeOpenAI
) -> None:
    await bypassed_endpoint(core, first)
    await answer_while(core, first, "/proxy clear")
    config = await core.store.effective_config(REF)
    assert config.proxy_url is None and config.resolved_url is None
    asked = len(first.requests)
    final = (await ask(core, "and now?")).final
    assert final is not None and "needs an endpoint URL" in final[0]
    assert len(first.requests) == asked


async def test_a_status_check_that_ends_after_a_proxy_set_keeps_the_new_url(
    core: Core, first: FakeOpenAI, second: FakeOpenAI
) -> None:
    """A check of the old URL (a /proxy password's, a /connect, one a turn runs again)
    that ended after another admin's /proxy set wrote its URL and verdict over the new
    one's."""
    assert (await command(core, f"/proxy set {first.url_v1}")).ok
    first.script.models_delay = 0.5
    checking = asyncio.create_task(command(core, "/proxy password opensesame"))
    for _ in range(500):  # until the slow check has reached the old server
        if len(first.authorizations) == 2:
            break
        await asyncio.sleep(0.01)
    assert not checking.done()
    assert (await command(core, f"/proxy set {second.url_v1}")).ok
    await checking
    config = await core.store.effective_config(REF)
    assert config.resolved_url in (None, second.url_v1)
    assert config.status is not None and second.url_v1 in config.status.reason
    asked = len(first.requests)
    assert (await ask(core, "where to?")).final == ("from B", None)
    assert len(first.requests) == asked


@asynccontextmanager
async def held(
    database_url: str, lock: str, setup: tuple[str, ...] = ()
) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """On PostgreSQL, another connection holding `lock` (a statement) in an open
    transaction, once `setup` ran; yields how many of the database's statements wait on
    a lock. SQLite has one writer at a time: nothing is held there (0)."""

    async def none() -> int:
        return 0

    if not database_url.startswith("postgresql"):
        yield none
        return
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as holder, engine.connect() as watcher:
            # Autocommit: pg_stat_activity is read once a transaction.
            watcher = await watcher.execution_options(isolation_level="AUTOCOMMIT")
            for statement in setup:
                await watcher.execute(sql(statement))
            await holder.execute(sql(lock))

            async def waiting() -> int:
                return int(
                    await watcher.scalar(
                        sql(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                    )
                    or 0
                )

            yield waiting
    finally:
        await engine.dispose()


SIBLING = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
# A server-wide change's status reset forgets the /v1 fix of the server's channels that
# use its URL (here c2's) in its last statement: that one waits for an advisory lock.
_SLOW_RESET = (
    "CREATE FUNCTION slow_reset() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END$$",
    "CREATE TRIGGER slow_reset AFTER UPDATE ON channel_configs FOR EACH ROW "
    "WHEN (OLD.resolved_url IS NOT NULL AND NEW.resolved_url IS NULL "
    "AND NEW.channel_id = 'c2') EXECUTE FUNCTION slow_reset()",
)


@pytest.mark.parametrize(
    ("scope", "lock", "setup"),
    [
        # /proxy set waits at its audit row, its channel row written (not yet committed).
        pytest.param("", "LOCK TABLE audit_log IN SHARE MODE", (), id="channel"),
        # It waits at the end of the status reset of the server's channels, its server
        # row written: the reset saw the channels as they were when it began, so a
        # channel row committed meanwhile keeps the check it holds.
        pytest.param(
            " scope:server", "SELECT pg_advisory_xact_lock(4242)", _SLOW_RESET, id="server"
        ),
    ],
)
async def test_the_first_proxy_set_beside_a_check_of_the_operator_url_keeps_the_new_url(
    database_url: str,
    first: FakeOpenAI,
    second: FakeOpenAI,
    scope: str,
    lock: str,
    setup: tuple[str, ...],
) -> None:
    """A channel with no row of its own nor its server's, on the operator's
    DEFAULT_PROXY_URL: a check of that URL writing while the first /proxy set's
    transaction was open found no row to lock on PostgreSQL, and recorded the operator's
    URL as proven, the one the next question went to, over the new one."""
    core = await open_core(database_url, proxy_url=first.url_v1)
    # Another channel of the server, checked before: the operator's URL kept as proven.
    await core.store.record_status(SIBLING, StatusCheck(True, "ok", first.url_v1), first.url_v1)
    first.script.models_delay = 0.5  # the check ends once /proxy set has written
    checking = asyncio.create_task(command(core, "/connect"))
    setting: asyncio.Task[Reply] | None = None
    try:
        for _ in range(500):  # until the check has read the channel and asked the server
            if first.models_asked == 1:
                break
            await asyncio.sleep(0.01)
        async with held(database_url, lock, setup) as waiting:
            setting = asyncio.create_task(
                command(core, f"/proxy set {second.url_v1}{scope}", SERVER_ADMIN)
            )
            # /proxy set waits; the check's write waits behind it (or ended).
            for _ in range(1000):
                if checking.done() or await waiting() == 2:
                    break
                await asyncio.sleep(0.01)
        await checking
        assert (await setting).ok
        config = await core.store.effective_config(REF)
        assert config.proxy_url == second.url_v1
        assert config.resolved_url in (None, second.url_v1)
        assert config.status is not None and config.status.checked_url == second.url_v1
        asked = len(first.requests)
        assert (await ask(core, "where to?")).final == ("from B", None)
        assert len(first.requests) == asked
    finally:
        await asyncio.gather(checking, *([setting] if setting else []), return_exceptions=True)
        await core.close()
