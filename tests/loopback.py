"""A small aiohttp server on loopback, for the peers tests write themselves (an endpoint
that refuses, a homeserver route, a CDN that trickles)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serving(
    app: web.Application, *, port: int = 0, shutdown_timeout: float = 60.0
) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 (a free port unless one is given) until the block ends;
    yields its base URL, `http://127.0.0.1:<port>`. `shutdown_timeout`: how long the end
    waits for requests still open (a handler that never answers holds it that long)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
