"""What the conversation engine adds, and how it holds up with many channels at once.

Run: .venv/bin/python bench/bench_engine.py [--turns 300] [--channels 1000] [--rounds 1]

1. Overhead (p50/p99): incoming message → the provider receiving the request, and the
   provider sending the last chunk → the sink's final call. Both sides read the same
   CLOCK_MONOTONIC (the server is a child process on this machine), so the numbers
   include loopback transfer, store reads and writes, and the provider layer.
2. Load: N channels each take one turn at once; the endpoint streams 100 chunks over
   2 s per answer. Prints wall time as a ratio of 2 s and the bot process's peak RSS.
3. Reference: the same N streams read with plain httpx + httpx-sse and nothing else
   (no store, no engine, no sink), to show what the HTTP stack alone costs here.
   With --rounds R, R pairs of 2. and 3., alternating which goes first, and the median
   of their CPU ratios.
Targets from the issue: p50 ≤ 1 ms, p99 ≤ 5 ms; ratio ≤ 1.25; RSS ≤ 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import httpx_sse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.app import settle_start_up
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
    Scope,
    Source,
)

MAX_CONNECTIONS = 2000  # the server's own bound: the benchmark cannot run away

SERVER = r"""
import asyncio, json, sys, time

CHUNKS, SPAN = int(sys.argv[1]), float(sys.argv[2])
open_conns = 0

def chunk(text, finish=None):
    body = {"object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    data = f"data: {json.dumps(body)}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(data), data)

async def handle(reader, writer):
    global open_conns
    open_conns += 1
    try:
        while open_conns <= %MAX%:
            head = await reader.readuntil(b"\r\n\r\n")
            received = time.monotonic()
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            gap = SPAN / CHUNKS if CHUNKS else 0
            for i in range(CHUNKS):
                writer.write(chunk("tok "))
                await writer.drain()
                if gap:
                    await asyncio.sleep(gap)
            # The timestamps ride in the answer's last words, where the sink sees them.
            writer.write(chunk(f" @{received:.6f},{time.monotonic():.6f}", "stop"))
            done = b"data: [DONE]\n\n"
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        open_conns -= 1
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
""".replace("%MAX%", str(MAX_CONNECTIONS))


class TimingSink:
    """A front-end stand-in that only notes when the final call came."""

    def __init__(self) -> None:
        self.finished_at = 0.0
        self.updates = 0
        self.answer = ""

    async def typing(self) -> None:
        return None

    async def update(self, answer: str, reasoning: str = "") -> None:
        self.updates += 1

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        self.finished_at = time.monotonic()
        self.answer = answer
        if error:
            raise RuntimeError(f"turn failed: {error}")


def start_server(chunks: int, span: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(chunks), str(span)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


async def make_core(db: str) -> Core:
    await upgrade_to_head(db)
    store = await Store.open(
        db, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of(source=Source.CUSTOM)
    )
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    settle_start_up()  # as `chatbot run` does once it has started
    return Core(store, hub)


async def configure(core: Core, ref: ChannelRef, url: str) -> None:
    await core.store.update_config(
        ref,
        Scope.CHANNEL,
        Actor("bench", "bench", is_channel_admin=True),
        {"proxy_url": url, "resolved_url": url, "model": "bench"},
        action="bench",
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def overhead(turns: int, tmp: Path) -> None:
    proc, url = start_server(chunks=5, span=0.0)
    core = await make_core(f"sqlite+aiosqlite:///{tmp}/overhead.db")
    ref = ChannelRef(Platform.CONSOLE, channel_id="bench")
    await configure(core, ref, url)
    before: list[float] = []
    after: list[float] = []
    actor = Actor("u", "User")
    try:
        for i in range(turns + 20):
            sink = TimingSink()
            start = time.monotonic()
            await core.chat(Incoming(ref, actor, f"question {i}"), sink)
            received, last = map(float, sink.answer.rsplit("@", 1)[1].split(","))
            if i >= 20:  # warm-up: imports, first connection, SQLite page cache
                before.append((received - start) * 1000)
                after.append((sink.finished_at - last) * 1000)
            if i % 50 == 0:
                await core.store.clear_history(ref, actor)
    finally:
        await core.close()
        proc.kill()
    print(f"engine overhead over {turns} turns (ms):")
    print(
        f"  incoming → provider request : p50 {statistics.median(before):.2f}  "
        f"p99 {percentile(before, 0.99):.2f}"
    )
    print(
        f"  last chunk → final sink call : p50 {statistics.median(after):.2f}  "
        f"p99 {percentile(after, 0.99):.2f}"
    )


async def load(channels: int, tmp: Path) -> float:
    """Prints the load numbers; returns the bot process's CPU seconds."""
    proc, url = start_server(chunks=100, span=2.0)
    core = await make_core(f"sqlite+aiosqlite:///{tmp}/load.db")
    refs = [
        ChannelRef(Platform.DISCORD, channel_id=f"c{i}", server_id="g") for i in range(channels)
    ]
    for ref in refs:
        await configure(core, ref, url)
    actor = Actor("u", "User")
    sinks = [TimingSink() for _ in refs]
    try:
        cpu_start = time.process_time()
        start = time.monotonic()
        await asyncio.gather(
            *(
                core.chat(Incoming(ref, actor, "go"), sink)
                for ref, sink in zip(refs, sinks, strict=True)
            )
        )
        wall = time.monotonic() - start
        cpu = time.process_time() - cpu_start
    finally:
        await core.close()
        proc.kill()
    server_cpu = child_cpu(proc)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    updates = sum(s.updates for s in sinks)
    stamps = [tuple(map(float, s.answer.rsplit("@", 1)[1].split(","))) for s in sinks]
    dispatched = max(received for received, _ in stamps) - start
    lag = max(s.finished_at - last for s, (_, last) in zip(sinks, stamps, strict=True))
    print(f"{channels} channels, one turn each, 100 chunks over 2 s:")
    print(f"  wall {wall:.2f} s → ratio {wall / 2.0:.2f} (target ≤ 1.25)")
    print(f"  bot process CPU {cpu:.2f} s ({cpu / wall:.0%} of one core; the rest is the server)")
    print(f"  peak RSS {rss_mb:.0f} MB (target ≤ 300)   sink updates {updates}")
    print(
        f"  last request reached the endpoint {dispatched:.2f} s after the start; "
        f"worst last-chunk → final {lag:.2f} s"
    )
    print(f"  endpoint process CPU {server_cpu:.2f} s (it shares the machine's cores)")
    return cpu


def child_cpu(proc: subprocess.Popen[str]) -> float:
    """CPU seconds the (killed) endpoint process used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


async def reference(channels: int) -> float:
    """Prints the reference numbers; returns its CPU seconds."""
    proc, url = start_server(chunks=100, span=2.0)
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=100)
    client = httpx.AsyncClient(limits=limits, timeout=60.0, trust_env=False)

    async def one() -> int:
        pieces = 0
        body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "go"}]}
        async with httpx_sse.aconnect_sse(
            client, "POST", f"{url}/chat/completions", json=body
        ) as events:
            async for event in events.aiter_sse():
                if event.data == "[DONE]":
                    break
                json.loads(event.data)
                pieces += 1
        return pieces

    try:
        cpu_start = time.process_time()
        start = time.monotonic()
        pieces = await asyncio.gather(*(one() for _ in range(channels)))
        wall = time.monotonic() - start
        cpu = time.process_time() - cpu_start
    finally:
        await client.aclose()
        proc.kill()
    server_cpu = child_cpu(proc)
    print(f"reference: {channels} streams read with plain httpx + httpx-sse, nothing else:")
    print(f"  wall {wall:.2f} s → ratio {wall / 2.0:.2f}; CPU {cpu:.2f} s; events {sum(pieces)}")
    print(f"  endpoint process CPU {server_cpu:.2f} s")
    return cpu


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="load and reference runs in pairs, alternating which goes first; the "
        "machine's drift moves a single pair's CPU ratio by ±0.15",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await overhead(args.turns, Path(tmp))
    ratios: list[float] = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            if n % 2:
                ref_cpu = await reference(args.channels)
                bot_cpu = await load(args.channels, Path(tmp))
            else:
                bot_cpu = await load(args.channels, Path(tmp))
                ref_cpu = await reference(args.channels)
        per_turn, per_stream = bot_cpu / args.channels * 1000, ref_cpu / args.channels * 1000
        ratios.append(per_turn / per_stream)
        print(
            f"CPU per turn: bot {per_turn:.2f} ms, reference {per_stream:.2f} ms per stream "
            f"→ {ratios[-1]:.2f}x (target ≤ 1.2)"
        )
    if args.rounds > 1:
        listed = ", ".join(f"{r:.2f}" for r in ratios)
        median = statistics.median(ratios)
        print(f"CPU ratio over {args.rounds} pairs: median {median:.2f}x ({listed})")


if __name__ == "__main__":
    asyncio.run(main())
