"""How `chatbot run` keeps its front-ends: until a stop signal, or until one cannot go on."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import text

from bot import app
from bot.app import _until_stopped, check_default_proxy_url, settle_start_up
from bot.frontends import FrontendError
from bot.settings import Settings, SettingsError, load_settings
from bot.store import Claim, SecretBox, Store, generate_key, migrate
from bot.types import ChannelConfig
from tests.peers.postgres import end_advisory_holders


async def forever(cancelled: list[str], name: str) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.append(name)
        raise


async def test_a_stop_signal_cancels_every_front_end_and_returns() -> None:
    cancelled: list[str] = []

    async def send_sigterm() -> None:
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        await forever(cancelled, "Matrix")

    await _until_stopped({"Discord": forever(cancelled, "Discord"), "Matrix": send_sigterm()})
    assert sorted(cancelled) == ["Discord", "Matrix"]
    # The handlers are gone again: the default action is back for SIGTERM.
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler)


@pytest.mark.parametrize(
    ("ending", "message"),
    [
        (FrontendError("refused the token"), "Discord: refused the token"),
        (RuntimeError("boom"), "Discord stopped after an unexpected error (RuntimeError)"),
        (None, "Discord stopped on its own"),
    ],
)
async def test_a_front_end_that_ends_stops_the_others_with_a_clear_error(
    ending: BaseException | None, message: str
) -> None:
    cancelled: list[str] = []

    async def ends() -> None:
        await asyncio.sleep(0.01)
        if ending is not None:
            raise ending

    with pytest.raises(FrontendError) as err:
        await _until_stopped({"Discord": ends(), "Matrix": forever(cancelled, "Matrix")})
    assert message in str(err.value)
    assert "boom" not in str(err.value)  # the type, never the text of an unexpected error
    assert cancelled == ["Matrix"]


async def test_a_front_end_that_swallows_a_cancel_is_told_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """discord.py reconnects through Python 3.11's wait_for, which can swallow the
    cancellation: shutting down waited for it with no end (seen after a gateway close)."""
    told: list[str] = []

    async def deaf_once() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            told.append("once")  # swallowed, as the race does; waits on
        await forever(told, "again")

    async def send_sigterm() -> None:
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        await forever(told, "Matrix")

    async with asyncio.timeout(30):  # a guard: the old shutdown waited here for good
        assert await _until_stopped({"Discord": deaf_once(), "Matrix": send_sigterm()}) == []
    assert sorted(told) == ["Matrix", "again", "once"]

    # One that never ends is left after STOP_GRACE, by name (the process exits without it).
    monkeypatch.setattr("bot.app.STOP_GRACE", 0.3)
    release = asyncio.Event()

    async def deaf() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    async def signal_soon() -> None:
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        await forever(told, "Matrix")

    try:
        assert await _until_stopped({"Discord": deaf(), "Matrix": signal_soon()}) == ["Discord"]
    finally:
        release.set()
        left = [t for t in asyncio.all_tasks() if t.get_name() == "Discord"]
        await asyncio.gather(*left)


def test_front_ends_and_pdf_reader_load_only_when_used() -> None:
    """matrix-nio, discord.py and pypdf are a third of the process's memory: a bot that
    runs one platform (or never sees a PDF) must not load the others at start."""
    code = (
        "import sys, bot.cli, bot.core\n"
        "print(sorted(m for m in ('nio', 'discord', 'pypdf') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_what_start_up_made_is_left_out_of_later_collections() -> None:
    """`chatbot run` freezes what exists once it has started (the collector's full runs
    then walk only newer objects); garbage start-up left is collected first."""

    class Node:
        other: object = None

    gc.unfreeze()
    node = Node()
    node.other = node  # a cycle: only the collector frees it
    dropped = weakref.ref(node)
    del node
    try:
        settle_start_up()
        assert gc.get_freeze_count() > 10_000  # the modules, classes and the rest
        assert dropped() is None  # start-up's garbage was not frozen with the rest
        assert gc.isenabled()  # later objects are still collected
    finally:
        gc.unfreeze()


@pytest.fixture
def no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the settings a test gives, not those of a stray .env


def proxy_settings(url: str, allow_private: bool = False) -> Settings:
    """Settings as `chatbot` reads them, with this DEFAULT_PROXY_URL (empty: none)."""
    return load_settings(
        **({"default_proxy_url": url} if url else {}), allow_private_endpoints=allow_private
    )


@pytest.mark.usefixtures("no_dotenv")
@pytest.mark.parametrize(
    ("url", "what"),
    [
        (
            "http://localhost:1234/v1/chat/completions",
            "localhost (127.0.0.1) is a loopback address",
        ),
        ("http://127.0.0.1:1234/v1", "127.0.0.1 is a loopback address"),
        ("http://[::1]:8080", "::1 is a loopback address"),
        ("http://0x7f.1/v1", "0x7f.1 (127.0.0.1) is a loopback address"),
        ("http://llm.localhost/v1", "llm.localhost (127.0.0.1) is a loopback address"),
        ("http://10.1.2.3/v1", "10.1.2.3 is a private-network address"),
        ("https://192.168.1.20:8443/v1/models", "192.168.1.20 is a private-network address"),
    ],
)
async def test_a_private_default_proxy_url_stops_the_start_unless_allowed(
    url: str, what: str
) -> None:
    with pytest.raises(SettingsError) as err:
        await check_default_proxy_url(proxy_settings(url))
    assert str(err.value) == (
        f"Setting DEFAULT_PROXY_URL is refused: {what}, and ALLOW_PRIVATE_ENDPOINTS is off. "
        "Fix: set ALLOW_PRIVATE_ENDPOINTS=true, or give DEFAULT_PROXY_URL a public URL."
    )
    await check_default_proxy_url(proxy_settings(url, allow_private=True))


@pytest.mark.usefixtures("no_dotenv")
@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://169.254.169.254/latest",
            "Setting DEFAULT_PROXY_URL is refused: 169.254.169.254 is a link-local or cloud "
            "metadata address, which the bot never contacts.",
        ),
        (
            "http://[::ffff:169.254.169.254]/v1",
            "Setting DEFAULT_PROXY_URL is refused: ::ffff:169.254.169.254 (::ffff:a9fe:a9fe, "
            "which carries 169.254.169.254) is a link-local or cloud metadata address, which "
            "the bot never contacts.",
        ),
        (
            "http://999.1.1.1/v1",
            "Setting DEFAULT_PROXY_URL is invalid: that is not a valid URL (the host is not a "
            "valid IPv4 address; write it as four numbers from 0 to 255 without leading "
            "zeros). Give a full URL such as https://host/v1.",
        ),
        (
            "http://h:99999/v1",
            "Setting DEFAULT_PROXY_URL is invalid: that is not a valid URL (the port must be a "
            "number from 1 to 65535). Give a full URL such as https://host/v1.",
        ),
    ],
)
async def test_a_default_proxy_url_no_setting_allows_is_refused_at_start(
    url: str, message: str
) -> None:
    for allow_private in (False, True):
        with pytest.raises(SettingsError) as err:
            await check_default_proxy_url(proxy_settings(url, allow_private))
        assert str(err.value) == message


@pytest.mark.usefixtures("no_dotenv")
async def test_a_host_name_is_not_looked_up_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS may not be up yet; the name's addresses are vetted when a turn connects."""

    def no_dns(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("looked up at start")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_dns)
    await check_default_proxy_url(proxy_settings("http://model-server.internal:8080/v1"))
    monkeypatch.delenv("DEFAULT_PROXY_URL", raising=False)
    await check_default_proxy_url(proxy_settings(""))


@pytest.mark.usefixtures("no_dotenv")
async def test_a_default_proxy_url_cut_back_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")
    await check_default_proxy_url(proxy_settings("https://api.example.com/v1/"))
    assert caplog.records == []
    await check_default_proxy_url(proxy_settings("https://api.example.com/V1/chat/completions/"))
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "DEFAULT_PROXY_URL is used as https://api.example.com/v1; the bot adds the routes it "
        "needs (/chat/completions, /models) itself"
    )


@pytest.fixture
async def two_processes(postgres_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one migrated PostgreSQL database: two processes' own."""
    await migrate.upgrade(postgres_url)
    box = SecretBox.from_setting(generate_key())
    stores = [await Store.open(postgres_url, box, defaults=ChannelConfig()) for _ in range(2)]
    try:
        yield stores[0], stores[1]
    finally:
        for store in stores:
            await store.close()


async def _until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 - another connection's state: nothing to await
            await asyncio.sleep(0.02)


async def _swallows_one_cancel(cleaned: list[str]) -> None:
    """A front-end that, reconnecting, swallows a cancellation (Python 3.11's wait_for
    can), and takes a moment to close."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cleaned.append("swallowed")
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0.3)
        cleaned.append("closed")


@pytest.mark.postgres
async def test_a_front_end_whose_claim_another_process_took_stops(
    two_processes: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL lets a claim go with the connection that held it (a restart, a dropped
    network): when another process took it meanwhile, this one stops serving, said so,
    rather than both answering every message; even when the front-end swallows one
    cancellation."""
    here, other = two_processes
    monkeypatch.setattr(app, "LEASE_CHECK", 0.1)
    claims = [Claim("matrix @bot:x")]
    taken = other.lease()
    cleaned: list[str] = []
    try:
        serving = asyncio.create_task(
            app._serving(
                here, (claims, "the account @bot:x"), "Matrix", _swallows_one_cancel(cleaned)
            )
        )
        await _until(lambda: here.engine.pool.checkedout() > 0)  # it holds the claim
        assert not await taken.take(claims)
        async with other.engine.connect() as conn:
            # Another process waiting for the claim gets it the moment it is free, before
            # this one's next check.
            lock = text("SELECT pg_advisory_lock(:key)")
            waiting = asyncio.create_task(conn.execute(lock, {"key": claims[0].key}))
            await asyncio.sleep(0.2)
            await end_advisory_holders(other.engine)
            await waiting
            done, _ = await asyncio.wait({serving}, timeout=10)
            assert serving in done
            with pytest.raises(FrontendError, match="another process took over serving"):
                serving.result()
        assert cleaned == ["swallowed", "closed"]
    finally:
        await taken.close()


@pytest.mark.postgres
async def test_a_claim_lapsed_with_its_connection_is_taken_again(
    two_processes: tuple[Store, Store],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    here, other = two_processes
    monkeypatch.setattr(app, "LEASE_CHECK", 0.1)
    caplog.set_level(logging.INFO, logger="bot.app")
    claims = [Claim("matrix @bot:x")]
    taken = other.lease()
    try:
        serving = asyncio.create_task(
            app._serving(here, (claims, "the account @bot:x"), "Matrix", asyncio.Event().wait())
        )
        await _until(lambda: here.engine.pool.checkedout() > 0)
        await end_advisory_holders(other.engine)
        await _until(lambda: "held again" in caplog.text)
        assert "lapsed with a database connection; held again" in caplog.text
        assert not serving.done()
        assert not await taken.take(claims)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
    finally:
        await taken.close()


@pytest.mark.postgres
async def test_a_shutdown_with_the_claims_connection_gone_is_a_clean_stop(
    two_processes: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Letting the claims go on a dead connection raised, so a SIGTERM after a database
    restart read as 'stopped after an unexpected error (InterfaceError)'."""
    here, other = two_processes
    monkeypatch.setattr(app, "LEASE_CHECK", 60.0)  # no check before the shutdown
    claims = [Claim("matrix @bot:x")]
    serving = asyncio.create_task(
        app._serving(here, (claims, "the account @bot:x"), "Matrix", asyncio.Event().wait())
    )
    await _until(lambda: here.engine.pool.checkedout() > 0)
    await end_advisory_holders(other.engine)
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert here.engine.pool.checkedout() == 0
