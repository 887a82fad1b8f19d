"""Shared fixtures: a respx router that lets nothing escape, hubs with a recorded sleep."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest
import respx

from bot.providers import EndpointPolicy, ProviderHub, ProviderSettings

# Names the fake resolver knows; anything else "does not resolve". No real DNS, ever.
FAKE_DNS = {
    "proxy.example.net": ["93.184.216.34"],
    "llm.example.com": ["93.184.216.35"],
    "inside.example.com": ["10.0.0.5"],
}


async def fake_resolver(host: str, port: int) -> list[str]:
    try:
        return FAKE_DNS[host]
    except KeyError:
        raise OSError(f"unknown host {host}") from None


class RecordingStream(httpx.AsyncByteStream):
    """A response body fed chunk by chunk; records whether the client closed it."""

    def __init__(
        self,
        chunks: Iterable[bytes | BaseException | float | asyncio.Event],
    ) -> None:
        self.chunks = list(chunks)
        self.closed = False
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for item in self.chunks:
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, float):
                await asyncio.sleep(item)  # a stall; only ever cut short by a timeout
                continue
            if isinstance(item, asyncio.Event):
                await item.wait()
                continue
            self.sent += 1
            yield item

    async def aclose(self) -> None:
        self.closed = True


def sse_response(
    *chunks: bytes | BaseException | float | asyncio.Event,
    content_type: str = "text/event-stream",
) -> tuple[httpx.Response, RecordingStream]:
    stream = RecordingStream(chunks)
    return httpx.Response(200, stream=stream, headers={"content-type": content_type}), stream


def sse_bytes(events: Iterable[tuple[str | None, Any]], newline: str = "\n") -> bytes:
    """Encode (event name, data) pairs; dict data becomes JSON."""
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        head = f"event: {name}{newline}" if name else ""
        out.append(f"{head}data: {text}{newline}{newline}")
    return "".join(out).encode()


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def openai_chunk(
    content: str | None = None, finish: str | None = None, **delta: Any
) -> dict[str, Any]:
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
    }


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    # assert_all_mocked: any request without a route fails instead of leaving the machine.
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        yield mock


class Sleeps(list[float]):
    async def __call__(self, delay: float) -> None:
        self.append(delay)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def make_hub(sleeps: Sleeps) -> AsyncIterator[Callable[..., ProviderHub]]:
    hubs: list[ProviderHub] = []

    def make(allow_private: bool = False, **settings: Any) -> ProviderHub:
        hub = ProviderHub(
            ProviderSettings(**settings),
            policy=EndpointPolicy(allow_private=allow_private, resolver=fake_resolver),
            sleep=sleeps,
        )
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.aclose()
