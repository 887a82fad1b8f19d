"""The provider layer alone under many streams at once, next to plain httpx + httpx-sse.

Run: .venv/bin/python bench/bench_transport.py [--streams 1000] [--rounds 3]

bench_engine.py's endpoint (a child process) streams 100 chunks over 2 s per answer.
Each round opens N answers at once on fresh connections, once through ProviderHub
(transport, lanes, network layer, SSE parsing, decoding) and once through a plain
httpx.AsyncClient with httpx-sse; the two alternate so machine load hits both alike.
Prints the wall ratio (of 2 s) and this process's CPU per stream for each, and their
ratio; the median over rounds and, for CPU, the lowest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import httpx_sse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import MAX_CONNECTIONS, start_server

from bot.providers import ChatRequest, Endpoint, ProviderHub, ProviderSettings
from bot.types import ChatMessage, Role, Source

Run = Callable[[str, int], Awaitable[int]]


async def ours(url: str, streams: int) -> int:
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    provider = hub.provider(Endpoint(Source.CUSTOM, proxy_url=url))
    request = ChatRequest(model="bench", messages=(ChatMessage(Role.USER, "go"),))

    async def one() -> int:
        return sum([1 async for delta in provider.stream_chat(request) if delta.text])

    try:
        return sum(await asyncio.gather(*(one() for _ in range(streams))))
    finally:
        await hub.aclose()


async def raw(url: str, streams: int) -> int:
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=100)
    client = httpx.AsyncClient(limits=limits, timeout=60.0, trust_env=False)
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "go"}]}

    async def one() -> int:
        pieces = 0
        async with httpx_sse.aconnect_sse(
            client, "POST", f"{url}/chat/completions", json=body
        ) as events:
            async for event in events.aiter_sse():
                if event.data == "[DONE]":
                    break
                pieces += bool(json.loads(event.data)["choices"][0]["delta"].get("content"))
        return pieces

    try:
        return sum(await asyncio.gather(*(one() for _ in range(streams))))
    finally:
        await client.aclose()


async def timed(run: Run, url: str, streams: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one round."""
    cpu = time.process_time()
    start = time.monotonic()
    got = await run(url, streams)
    wall, cpu = time.monotonic() - start, time.process_time() - cpu
    assert got == streams * 101, got  # 100 chunks and the one carrying the timestamps
    return wall, cpu


async def main(streams: int, rounds: int) -> None:
    proc, url = start_server(chunks=100, span=2.0)
    results: dict[str, list[tuple[float, float]]] = {"ours": [], "raw": []}
    try:
        await timed(ours, url, 10)  # imports and first connections out of the way
        await timed(raw, url, 10)
        for _ in range(rounds):
            results["ours"].append(await timed(ours, url, streams))
            results["raw"].append(await timed(raw, url, streams))
    finally:
        proc.kill()
        proc.wait()
    print(f"{streams} streams at once, 100 chunks over 2 s each; {rounds} alternating rounds")
    print(f"{'':>5} {'wall ratio':>10} {'CPU ms/stream (median)':>23} {'(lowest)':>9}")
    cpu_per: dict[str, tuple[float, float]] = {}
    for name, runs in results.items():
        walls = [w for w, _ in runs]
        cpus = [c / streams * 1000 for _, c in runs]
        cpu_per[name] = (statistics.median(cpus), min(cpus))
        print(
            f"{name:>5} {statistics.median(walls) / 2.0:>10.2f} "
            f"{cpu_per[name][0]:>23.2f} {cpu_per[name][1]:>9.2f}"
        )
    print(
        f"CPU per stream, ours / raw: median {cpu_per['ours'][0] / cpu_per['raw'][0]:.2f}, "
        f"lowest {cpu_per['ours'][1] / cpu_per['raw'][1]:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(max(1, min(args.streams, MAX_CONNECTIONS)), max(1, min(args.rounds, 20))))
