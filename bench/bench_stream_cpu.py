"""CPU a client spends on one paced answer: the provider layer next to its references.

Run: .venv/bin/python bench/bench_stream_cpu.py [--streams 10]

The loopback model of bench_discord (tests/discord/fake_openai.py: 100 chunks 20 ms
apart after 200 ms) answers one stream at a time; each client runs in a child process
of its own and reports the CPU it used per stream (time.process_time, every thread):

- floor: asyncio streams reading the raw bytes, no HTTP parsing at all;
- httpx + httpx-sse: the plain reference the issue names;
- ProviderHub, tokens read as they come (stream_read_pace=0);
- ProviderHub as the bot runs it (a trickle read once per 0.1 s tick).

A stream's cost here is mostly its wakeups: each one after a quiet spell costs this
virtual machine ~0.2 ms of CPU whatever it does. No target is asserted; it prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.discord.fake_openai import Script, fake_openai

ROOT = Path(__file__).resolve().parents[1]

# Each child defines `async def one()` (one whole answer) in `main`, then runs TIMED.
TIMED = """
    await one()  # warm: imports, the connection
    cpu = time.process_time()
    for _ in range(streams):
        await one()
    print((time.process_time() - cpu) / streams * 1000)
"""

_FLOOR = (
    """
import asyncio, sys, time
from urllib.parse import urlsplit
url, streams = urlsplit(sys.argv[1]), int(sys.argv[2])
body = b'{"model":"m-small","stream":true,"messages":[{"role":"user","content":"hi"}]}'
async def main():
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    async def one():
        writer.write(b"POST /v1/chat/completions HTTP/1.1\\r\\nHost: x\\r\\n"
                     b"Content-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n%s"
                     % (len(body), body))
        while not (await reader.read(65536)).endswith(b"0\\r\\n\\r\\n"):
            pass
"""
    + TIMED
    + """
asyncio.run(main())
"""
)

_HTTPX = (
    """
import asyncio, json, sys, time
import httpx, httpx_sse
url, streams = sys.argv[1], int(sys.argv[2])
body = {"model": "m-small", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
async def main():
    client = httpx.AsyncClient(timeout=30)  # the child ends with main: nothing to close
    async def one():
        async with httpx_sse.aconnect_sse(
            client, "POST", url + "/chat/completions", json=body
        ) as source:
            async for event in source.aiter_sse():
                if event.data != "[DONE]":
                    json.loads(event.data)
"""
    + TIMED
    + """
asyncio.run(main())
"""
)

_OURS = (
    """
import asyncio, sys, time
sys.path.insert(0, sys.argv[4])
from bot.providers import ChatRequest, Endpoint, ProviderHub, ProviderSettings
from bot.types import ChatMessage, Role, Source
url, streams, pace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
async def main():
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, stream_read_pace=pace))
    provider = hub.provider(Endpoint(Source.CUSTOM, proxy_url=url))
    request = ChatRequest(model="m-small", messages=(ChatMessage(Role.USER, "hi"),))
    async def one():
        async for _ in provider.stream_chat(request):
            pass
"""
    + TIMED
    + """
asyncio.run(main())
"""
)


async def child(code: str, *args: str) -> float:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return float(out.decode().strip())


async def main(streams: int) -> None:
    script = Script(chunks=[f"word{i} " for i in range(100)], interval=0.02, first_token=0.2)
    async with fake_openai(script) as sse:
        n = str(streams)
        print(f"one stream at a time, 100 chunks 20 ms apart; CPU per stream, mean of {n}\n")
        rows = [
            ("floor: asyncio streams, raw bytes", _FLOOR, (sse.url_v1, n)),
            ("httpx + httpx-sse (reference)", _HTTPX, (sse.url_v1, n)),
            ("ProviderHub, each token as it comes", _OURS, (sse.url_v1, n, "0", str(ROOT))),
            ("ProviderHub, paced (as the bot runs)", _OURS, (sse.url_v1, n, "0.1", str(ROOT))),
        ]
        for label, code, args in rows:
            print(f"  {label:40s} {await child(code, *args):6.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=10)
    asyncio.run(main(max(1, min(parser.parse_args().streams, 100))))
