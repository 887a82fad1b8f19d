"""What the transport relies on in httpx and httpcore: fails loudly when an upgrade moves it.

Only public names are used; each test names the piece of the transport that needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpcore
import httpx
from packaging.requirements import Requirement

from bot.providers._http import (
    _BODY,
    _CLIENT_HEADERS,
    HTTPCORE_ERRORS,
    PoolTransport,
    _Body,
    _body_parts,
)
from bot.providers._network import AsyncioBackend, AsyncioStream

ROOT = Path(__file__).resolve().parents[2]


def shape(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """A signature without annotations: name, kind and default of each parameter."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def accepts(function: Callable[..., Any], *names: str) -> None:
    parameters = inspect.signature(function).parameters
    for name in names:
        assert name in parameters, f"{function.__qualname__} no longer takes {name}="
        assert parameters[name].kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ), f"{function.__qualname__}'s {name} can no longer be passed by name"


def test_httpcore_is_declared_in_the_range_httpx_works_with() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {
        (req := Requirement(line)).name: req.specifier
        for line in project["project"]["dependencies"]
    }
    assert "httpcore" in declared, "the transport imports httpcore: declare it"
    installed = version("httpcore")
    assert declared["httpcore"].contains(installed)
    assert installed.split(".")[0] == "1"  # what httpx 0.28 requires (httpcore==1.*)


def test_the_pool_is_built_with_parameters_httpcore_still_takes() -> None:
    # Transport._new_pool
    accepts(
        httpcore.AsyncConnectionPool,
        "ssl_context",
        "max_connections",
        "max_keepalive_connections",
        "keepalive_expiry",
        "network_backend",
    )
    assert callable(httpcore.AsyncConnectionPool.handle_async_request)
    assert callable(httpcore.AsyncConnectionPool.aclose)
    # Transport.transport_for
    accepts(httpx.create_ssl_context, "trust_env")


def test_a_request_is_built_as_httpxs_client_builds_it() -> None:
    # Transport.request: the headers httpx's client adds, its timeouts' form, and
    # Transport.open: a response from the transport is tied to its request
    assert httpx.Headers(_CLIENT_HEADERS) == httpx.AsyncClient(trust_env=False).headers, (
        "httpx's client adds other headers now: update _http._CLIENT_HEADERS"
    )
    accepts(httpx.Request, "method", "url", "params", "headers", "json", "extensions")
    timeout = httpx.Timeout(connect=1.0, read=2.0, write=3.0, pool=4.0)
    assert timeout.as_dict() == {"connect": 1.0, "read": 2.0, "write": 3.0, "pool": 4.0}
    request = httpx.Request("GET", "https://example.com/v1")
    response = httpx.Response(200)
    response.request = request
    assert response.request is request


def test_requests_and_responses_convert_the_way_httpx_converts_them() -> None:
    # PoolTransport.handle_async_request
    accepts(httpcore.Request, "method", "url", "headers", "content", "extensions")
    accepts(httpcore.URL, "scheme", "host", "port", "target")
    accepts(httpx.Response, "status_code", "headers", "stream", "extensions")
    for name in ("raw_scheme", "raw_host", "port", "raw_path"):
        assert isinstance(inspect.getattr_static(httpx.URL, name), property), name
    core = httpcore.Response(200, headers=[(b"a", b"b")], content=b"", extensions={"x": 1})
    assert (core.status, core.headers, core.extensions) == (200, [(b"a", b"b")], {"x": 1})
    assert core.stream is not None
    assert shape(httpx.AsyncBaseTransport.handle_async_request) == shape(
        PoolTransport.handle_async_request
    )
    assert issubclass(PoolTransport, httpx.AsyncBaseTransport)


def test_every_httpcore_error_a_caller_can_see_is_mapped() -> None:
    # HTTPCORE_ERRORS, as httpx.AsyncHTTPTransport maps them
    raised_inside_the_pool_only = {httpcore.ConnectionNotAvailable}
    exported = {
        value
        for name in httpcore.__all__
        if isinstance(value := getattr(httpcore, name), type) and issubclass(value, Exception)
    }
    assert exported - raised_inside_the_pool_only == set(HTTPCORE_ERRORS), (
        "httpcore's exceptions changed: map the new ones in _http.HTTPCORE_ERRORS"
    )
    for core, mapped in HTTPCORE_ERRORS.items():
        assert getattr(httpx, mapped.__name__) is mapped
        assert mapped.__name__ == core.__name__


def methods(base: type) -> list[str]:
    members = [
        name for name, value in vars(base).items() if callable(value) and not name.startswith("__")
    ]
    assert members, f"{base.__name__} has no methods any more"
    return members


def test_the_network_backend_implements_httpcores_interface_exactly() -> None:
    # _network.AsyncioBackend
    for name in methods(httpcore.AsyncNetworkBackend):
        assert name in vars(AsyncioBackend), f"AsyncNetworkBackend.{name} is new: implement it"
        assert shape(getattr(AsyncioBackend, name)) == shape(
            getattr(httpcore.AsyncNetworkBackend, name)
        ), f"AsyncNetworkBackend.{name} changed its parameters"
        assert inspect.iscoroutinefunction(getattr(AsyncioBackend, name))


def test_the_network_stream_implements_httpcores_interface_exactly() -> None:
    # _network.AsyncioStream
    for name in methods(httpcore.AsyncNetworkStream):
        assert name in vars(AsyncioStream), f"AsyncNetworkStream.{name} is new: implement it"
        base = getattr(httpcore.AsyncNetworkStream, name)
        assert shape(getattr(AsyncioStream, name)) == shape(base), (
            f"AsyncNetworkStream.{name} changed its parameters"
        )
        assert inspect.iscoroutinefunction(getattr(AsyncioStream, name)) == (
            inspect.iscoroutinefunction(base)
        )


async def test_a_response_hands_out_its_network_stream_through_the_public_extension() -> None:
    # Transport.chunks(paced=True) finds the connection to pace through httpcore's
    # documented "network_stream" response extension, passed on by PoolTransport.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:  # keep-alive: the second request comes on the same connection
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = PoolTransport(
        lambda: httpcore.AsyncConnectionPool(network_backend=AsyncioBackend()), 10, 1
    )
    async with server, httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", f"http://127.0.0.1:{port}/") as reply:
            assert isinstance(reply.extensions["network_stream"], AsyncioStream)
            assert await reply.aread() == b"ok"
        # Transport.chunks reads the transport's own body beneath httpx's wrappers: the
        # client hands the transport's extensions on as they are.
        async with client.stream("GET", f"http://127.0.0.1:{port}/") as reply:
            assert isinstance(reply.extensions[_BODY], _Body)
            parts = _body_parts(reply)
            assert [part async for part in parts] == [b"ok"]
            await parts.aclose()
