"""What a burst queues on in the provider layer: opening N answers at once.

Run: .venv/bin/python bench/bench_open.py [--streams 50] [--rounds 30]

A child process accepts connections and answers every request with a streamed
response's headers, then nothing. Each round opens N requests at once on fresh
connections through the provider layer's `Transport.open` (build the request, connect,
send, read the headers) and reports this process's CPU for it, per request: the part
of a Discord turn that every mention in a burst pays before its request has left.
Prints the median and lowest over rounds (the first three are warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.providers._http import RequestSpec, Transport
from bot.providers.base import ProviderSettings
from bot.providers.policy import EndpointPolicy

HOLDER = r"""
import asyncio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":")[1]))
            writer.write(HEAD)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        port = int(await holder.stdout.readline())
        settings = ProviderSettings(allow_private_endpoints=True)
        transport = Transport(settings, EndpointPolicy(allow_private=True), asyncio.sleep)
        message = {"role": "user", "content": "a question of some length " * 8}
        spec = RequestSpec(
            "POST",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            "The endpoint",
            {"Authorization": "Bearer sk-bench-0123456789"},
            body={"model": "bench", "stream": True, "messages": [message] * 4},
        )
        per_request: list[float] = []
        for _ in range(args.rounds):
            before = time.thread_time()
            opened = await asyncio.gather(*(transport.open(spec) for _ in range(args.streams)))
            per_request.append((time.thread_time() - before) * 1000 / args.streams)
            for response, _ in opened:
                await response.aclose()
            await transport.aclose()  # the next round connects afresh, as a burst does
        kept = per_request[3:]
        print(
            f"{args.streams} opens at once, CPU per request: median "
            f"{statistics.median(kept):.3f} ms, lowest {min(kept):.3f} ms"
        )
    finally:
        holder.kill()
        await holder.wait()


if __name__ == "__main__":
    uvloop.run(main())
