"""How fast a stop reaches the model's connection.

Run: .venv/bin/python bench/bench_controls.py [--runs 20]

A real Core (SQLite) streams from a raw-socket model server on loopback (a chunk every
50 ms). After the first text arrives, `Core.stop` is called (what `/stop` or Ctrl-C
do); the server stamps the moment its connection is closed (connection_lost). Both
sides read this process's monotonic clock. No target is asserted; it prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.core import Core
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.types import Actor, ChannelConfig, ChannelRef, Incoming, Platform, Source

ADMIN = Actor("u1", "Ada", is_channel_admin=True)


class FirstText:
    def __init__(self) -> None:
        self.seen = asyncio.Event()

    async def typing(self) -> None:
        return None

    async def update(self, answer: str, reasoning: str = "") -> None:
        self.seen.set()

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        self.seen.set()


class Closed(asyncio.Protocol):
    """A streaming model server on a raw socket: it sees a hang-up the moment it happens."""

    closed_at: list[float] = []  # noqa: RUF012 - one server per run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.task: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.task is None and b"\r\n\r\n" in data:
            self.task = asyncio.get_running_loop().create_task(self._stream())

    async def _stream(self) -> None:
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for i in range(400):
            body = {"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}
            data = f"data: {json.dumps(body)}\n\n".encode()
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
            await asyncio.sleep(0.05)

    def connection_lost(self, exc: Exception | None) -> None:
        Closed.closed_at.append(time.monotonic())
        if self.task is not None:
            self.task.cancel()


async def stop_latency(core: Core, ref: ChannelRef) -> float:
    sink = FirstText()
    turn = asyncio.create_task(core.chat(Incoming(ref, ADMIN, "count slowly"), sink))
    await sink.seen.wait()
    before = len(Closed.closed_at)
    pressed = time.monotonic()
    core.stop(ref)
    await turn
    for _ in range(1000):  # connection_lost runs on this loop right after the close
        if len(Closed.closed_at) > before:
            break
        await asyncio.sleep(0.001)
    return (Closed.closed_at[before] - pressed) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    server = await asyncio.get_running_loop().create_server(Closed, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await upgrade_to_head(url)
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, model="m", proxy_url=f"http://127.0.0.1:{port}/v1"
        )
        store = await Store.open(url, SecretBox.from_setting(generate_key()), defaults=defaults)
        core = Core(store, ProviderHub(ProviderSettings(allow_private_endpoints=True)))
        try:
            times = [
                await stop_latency(core, ChannelRef(Platform.CONSOLE, channel_id=f"c{i}"))
                for i in range(args.runs)
            ]
        finally:
            await core.close()
            server.close()
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(f"stop → model connection closed ({args.runs} runs), ms:")
    print(f"  p50 {statistics.median(ordered):.2f}  p95 {p95:.2f}  max {ordered[-1]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
