"""What an admin changes while an answer streams in the same channel: a real Core on
SQLite and PostgreSQL, commands run beside the turn as Discord's slash commands run,
against loopback OpenAI-compatible endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.core import Core
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.types import Actor, ChannelConfig, ChannelRef, Incoming, Platform, Reply, Source
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai

REF = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
ADMIN = Actor("u1", "Ada", is_channel_admin=True)
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


@pytest.fixture
async def core(database_url: str) -> AsyncIterator[Core]:
    await upgrade_to_head(database_url)
    defaults = ChannelConfig.of(source=Source.CUSTOM, model="m")
    box = SecretBox.from_setting(generate_key())
    store = await Store.open(database_url, box, defaults=defaults)
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    core = Core(store, hub)
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


async def command(core: Core, text: str) -> Reply:
    return await core.run_text_command(Incoming(REF, ADMIN, text))


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
