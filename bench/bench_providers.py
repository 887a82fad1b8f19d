"""The provider layer's own cost over a loopback endpoint, next to raw httpx + httpx-sse.

Run: .venv/bin/python bench/bench_providers.py [--rounds 5]
A stdlib HTTP server in a child process streams N OpenAI-style chunks as fast as it can;
the same requests go once through ProviderHub and once through plain httpx + httpx-sse.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from httpx_sse import aconnect_sse

from bot.providers import ChatRequest, Endpoint, ProviderHub, ProviderSettings
from bot.types import ChatMessage, Role, Source

MAX_CHUNKS = 5000  # the server refuses more: loops stay bounded


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle + delayed ACK add ~40 ms stalls on loopback.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        count = min(int(body.get("max_tokens") or 1), MAX_CHUNKS)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i in range(count):
            finish = "stop" if i == count - 1 else None
            chunk = {
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": finish}],
            }
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client closing a kept-alive connection is not news


def serve() -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def request(chunks: int) -> ChatRequest:
    return ChatRequest(
        model="bench", messages=(ChatMessage(Role.USER, "go"),), options={"max_tokens": chunks}
    )


async def raw_once(client: httpx.AsyncClient, url: str, chunks: int) -> int:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": "go"}],
        "stream": True,
        "max_tokens": chunks,
    }
    got = 0
    async with aconnect_sse(client, "POST", f"{url}/chat/completions", json=body) as source:
        async for event in source.aiter_sse():
            if event.data == "[DONE]":
                continue  # read to the end so the connection goes back to the pool
            content = json.loads(event.data)["choices"][0]["delta"].get("content")
            got += bool(content)
    return got


async def ours_once(hub: ProviderHub, endpoint: Endpoint, chunks: int) -> int:
    got = 0
    async for delta in hub.provider(endpoint).stream_chat(request(chunks)):
        got += bool(delta.text)
    return got


async def measure(url: str, chunks: int, requests: int, rounds: int) -> tuple[float, float]:
    """Best per-request seconds over `rounds` for (ours, raw), interleaved to share drift."""
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True))
    endpoint = Endpoint(Source.CUSTOM, proxy_url=url)
    client = httpx.AsyncClient()
    ours_t: list[float] = []
    raw_t: list[float] = []
    try:
        assert await ours_once(hub, endpoint, chunks) == chunks  # warm both pools
        assert await raw_once(client, url, chunks) == chunks
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(requests):
                await ours_once(hub, endpoint, chunks)
            ours_t.append((time.perf_counter() - start) / requests)
            start = time.perf_counter()
            for _ in range(requests):
                await raw_once(client, url, chunks)
            raw_t.append((time.perf_counter() - start) / requests)
    finally:
        await hub.aclose()
        await client.aclose()
    return statistics.median(ours_t), statistics.median(raw_t)


async def main(rounds: int) -> None:
    child = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        url = f"http://127.0.0.1:{port}/v1"
        print(f"loopback server at {url}; median of {rounds} interleaved rounds\n")
        print(
            f"{'chunks/req':>10} {'requests':>8} {'ours ms/req':>12} {'raw ms/req':>11} "
            f"{'ours µs/chunk':>14} {'raw µs/chunk':>13} {'ratio':>6}"
        )
        results = {}
        for chunks, requests in ((1, 200), (100, 40), (1000, 8)):
            ours, raw = await measure(url, chunks, requests, rounds)
            results[chunks] = (ours, raw)
            print(
                f"{chunks:>10} {requests:>8} {ours * 1e3:>12.3f} {raw * 1e3:>11.3f} "
                f"{ours / chunks * 1e6:>14.1f} {raw / chunks * 1e6:>13.1f} {ours / raw:>6.2f}"
            )
        (o1, r1), (ob, rb) = results[1], results[1000]
        per_request = o1 - r1
        # Per-chunk cost: long streams minus the fixed per-request part.
        ours_chunk = (ob - o1) / 999
        raw_chunk = (rb - r1) / 999
        print()
        print(f"added per request: {per_request * 1e6:.0f} µs ({o1 / r1:.2f}x raw)")
        print(
            f"per streamed chunk: ours {ours_chunk * 1e6:.1f} µs, raw {raw_chunk * 1e6:.1f} µs, "
            f"added {(ours_chunk - raw_chunk) * 1e6:.1f} µs, overhead ratio "
            f"{ours_chunk / raw_chunk:.2f}x"
        )
    finally:
        child.terminate()
        child.wait(timeout=5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.serve:
        serve()
    else:
        asyncio.run(main(max(1, min(args.rounds, 50))))
