"""What a busy server does to a long-running bot: floods of commands, many channels.

A real Core (SQLite) and a loopback OpenAI-compatible endpoint that counts requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.providers import _http
from bot.types import ChannelRef, Incoming, Platform, Reply
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai
from tests.integration.conftest import ADMIN, REF, Harness
from tests.loopback import serving


@pytest.fixture
async def endpoint() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(Script(models=["m-small", "m-large"])) as fake:
        yield fake


async def run(h: Harness, text: str, ref: ChannelRef = REF) -> Reply:
    return await h.core.run_text_command(Incoming(ref, ADMIN, text))


async def test_a_flood_of_status_checks_is_one_request_to_the_endpoint(
    harness: Harness, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough that a slow machine does not end it halfway through the test.
    monkeypatch.setattr(_http, "LIST_REUSE_SECONDS", 3600.0)
    assert (await run(harness, f"/proxy set {endpoint.url_v1}")).ok
    asked = len(endpoint.headers)
    # One admin, 100 status checks at once (a script, or a Matrix room's backlog): the
    # endpoint, whose key may be the operator's, was sent 100 model-list requests.
    replies = await asyncio.gather(*(run(harness, "/connect") for _ in range(100)))
    assert all(r.ok and "Status check: OK — 2 models available." in r.text for r in replies)
    for _ in range(20):  # one after another, as a Matrix room runs them
        assert (await run(harness, "/models external")).ok
        assert (await run(harness, "/connect")).ok
    assert len(endpoint.headers) - asked <= 1
    # Other channels on the same endpoint and credentials share it too (an operator's
    # default endpoint, many rooms of one person).
    for i in range(10):
        elsewhere = ChannelRef(Platform.MATRIX, channel_id=f"!r{i}:example.org")
        assert (await run(harness, f"!proxy set {endpoint.url_v1}", elsewhere)).ok
    assert len(endpoint.headers) - asked <= 1
    # Other credentials are another endpoint's answer: asked afresh.
    before = len(endpoint.headers)
    assert (await run(harness, "/proxy password pw-0123456789abcdef")).ok
    assert (await run(harness, "/connect")).ok
    assert len(endpoint.headers) > before
    assert endpoint.authorizations[-1] == "Bearer pw-0123456789abcdef"


async def test_a_status_check_after_the_reuse_window_asks_again(
    harness: Harness, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_http, "LIST_REUSE_SECONDS", 0.0)
    assert (await run(harness, f"/proxy set {endpoint.url_v1}")).ok
    asked = len(endpoint.headers)
    for _ in range(3):
        assert (await run(harness, "/connect")).ok
    assert len(endpoint.headers) - asked == 3
    # A list that changed is seen at once then.
    endpoint.script.models = ["m-new"]
    assert "m-new" in (await run(harness, "/models external")).text


async def test_a_refused_status_check_is_shared_too(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint that refuses the key is not asked a hundred times either (a refused
    key asked again and again is what gets an address blocked)."""
    monkeypatch.setattr(_http, "LIST_REUSE_SECONDS", 3600.0)
    asked: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"error": {"message": "invalid api key"}}, status=401)

    app = web.Application()
    app.router.add_get("/v1/models", refuse)
    async with serving(app) as url:
        await run(harness, "/proxy password pw-0123456789abcdef")
        await run(harness, f"/proxy set {url}/v1")
        before = len(asked)
        replies = await asyncio.gather(*(run(harness, "/connect") for _ in range(50)))
        replies += [await run(harness, "/connect") for _ in range(10)]
        assert all(not r.ok and "Status check failed" in r.text for r in replies)
        assert "pw-0123456789abcdef" not in replies[0].text
        assert len(asked) - before <= 1


async def test_a_server_started_after_a_failed_check_is_checked_at_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listened, so the first check failed; the user starts LM Studio and checks
    again at once. A failed connection was shared for 10 s like an answer, so the second
    check said the server was still unreachable: nothing was reached, nothing to spare."""
    monkeypatch.setattr(_http, "LIST_REUSE_SECONDS", 3600.0)

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "m-up"}]})

    app = web.Application()
    app.router.add_get("/v1/models", listing)
    async with serving(app) as url:
        pass  # the port is free now: nothing listens there yet
    assert (await run(harness, f"/proxy set {url}/v1")).ok
    failed = await run(harness, "/connect")
    assert not failed.ok and "Status check failed" in failed.text, failed.text
    async with serving(app, port=int(url.rsplit(":", 1)[1])):
        checked = await run(harness, "/connect")
        assert checked.ok and "Status check: OK" in checked.text, checked.text
