"""When a request's bytes reached a fake server, not when its handler got to run.

A fake's handler runs after aiohttp has parsed the request and the event loop has come
round to the connection's task: when 50 requests arrive at once, the 50th handler starts
after the other 49 have run their first steps. That is the fake's time, not the bot's.
`serve` stamps each connection's bytes as the loop hands them over, before aiohttp
parses them (`FakeOpenAI.received`, `Call.at`); the bench prints both stamps (for the
slowest of 50 they differed by 0.3–0.5 ms on 2026-12-06, bench/RESULTS.md)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web


class _Stamped(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the time its latest bytes arrived."""

    def __init__(self, inner: Any, arrivals: dict[Any, float]) -> None:
        self._inner = inner
        self._arrivals = arrivals

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._arrivals[self._inner] = time.monotonic()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._arrivals.pop(self._inner, None)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class Arrivals:
    """The stamps of a runner's connections; `of(request)` is when its bytes arrived."""

    def __init__(self) -> None:
        self._at: dict[Any, float] = {}
        self._server: asyncio.Server | None = None

    async def serve(self, runner: web.BaseRunner, host: str = "127.0.0.1") -> int:
        """Listen on `host` for `runner` (set up) with every connection stamped; the port."""
        factory = runner.server
        assert factory is not None, "set the runner up first"
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Stamped(factory(), self._at), host, 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def of(self, request: web.BaseRequest) -> float:
        """When `request`'s bytes reached this process (now, if not stamped)."""
        return self._at.get(request.protocol, time.monotonic())

    def close(self) -> None:
        """Stop listening; the runner's cleanup closes the connections."""
        if self._server is not None:
            self._server.close()
