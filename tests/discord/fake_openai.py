"""A tiny OpenAI-compatible endpoint on loopback that streams a scripted answer.

Used by the Discord tests and bench: exact chunk counts and timing, and an
optional error mid-stream, which a real model cannot promise.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.discord.arrival import Arrivals


@dataclass
class Script:
    """What the next answers look like."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    interval: float = 0.0  # seconds between chunks
    first_token: float = 0.0  # seconds before the first chunk
    fail_after: int | None = None  # send an error event after this many chunks
    models: list[str] = field(default_factory=lambda: ["m-small", "m-large"])
    models_status: int = 200  # another status: /v1/models refuses with it (a failed check)
    models_delay: float = 0.0  # seconds /v1/models takes to answer
    models_gate: asyncio.Event | None = None  # when given, /v1/models answers once it is set

    @property
    def answer(self) -> str:
        return "".join(self.chunks if self.fail_after is None else self.chunks[: self.fail_after])


@dataclass
class FakeOpenAI:
    url_v1: str
    script: Script
    requests: list[dict[str, object]]
    cut_off: list[float] = field(default_factory=list)  # when a reader hung up mid-answer
    arrived: list[float] = field(default_factory=list)  # monotonic time of each request
    # When each request's bytes reached this process (`arrived` is when its handler ran).
    received: list[float] = field(default_factory=list)
    ended: dict[int, float] = field(default_factory=dict)  # request index → answer sent
    # The Authorization header of every request, models and chat alike ("" when none).
    authorizations: list[str] = field(default_factory=list)
    # Every request's headers, lower-cased names (models and chat alike).
    headers: list[dict[str, str]] = field(default_factory=list)
    models_asked: int = 0  # /v1/models requests that arrived (status checks, model lists)


def _chunk(text: str, finish: str | None = None) -> bytes:
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


@asynccontextmanager
async def fake_openai(script: Script | None = None) -> AsyncIterator[FakeOpenAI]:
    """Serve /v1/models and streaming /v1/chat/completions on 127.0.0.1."""
    state = FakeOpenAI("", script or Script(), [])

    async def models(request: web.Request) -> web.Response:
        state.models_asked += 1
        state.authorizations.append(request.headers.get("Authorization", ""))
        state.headers.append({k.lower(): v for k, v in request.headers.items()})
        await asyncio.sleep(state.script.models_delay)
        if state.script.models_gate is not None:
            await state.script.models_gate.wait()
        if state.script.models_status != 200:
            refused = {"error": {"message": "refused", "type": "invalid_request_error"}}
            return web.json_response(refused, status=state.script.models_status)
        data = [{"id": m, "object": "model", "owned_by": "test"} for m in state.script.models]
        return web.json_response({"object": "list", "data": data})

    async def completions(request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        received = arrivals.of(request)
        state.authorizations.append(request.headers.get("Authorization", ""))
        state.headers.append({k.lower(): v for k, v in request.headers.items()})
        body = await request.json()
        index = len(state.requests)  # `arrived` and `requests` stay in step
        state.requests.append(body)
        state.arrived.append(arrived)
        state.received.append(received)
        s = state.script
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        # Chunks keep to the script's clock (first token, then one every interval from
        # the request's arrival), so a loaded event loop here does not stretch the answer.
        loop = asyncio.get_running_loop()
        start = received  # loop.time() is time.monotonic()
        try:
            await asyncio.sleep(start + s.first_token - loop.time())
            for i, text in enumerate(s.chunks):
                if s.fail_after is not None and i == s.fail_after:
                    error = {
                        "error": {"message": "the model is overloaded", "type": "server_error"}
                    }
                    await resp.write(f"data: {json.dumps(error)}\n\n".encode())
                    return resp
                if i and s.interval:
                    await asyncio.sleep(start + s.first_token + i * s.interval - loop.time())
                await resp.write(_chunk(text))
            await resp.write(_chunk("", "stop"))
            await resp.write(b"data: [DONE]\n\n")
            state.ended[index] = time.monotonic()
        except ConnectionResetError:  # the reader hung up: nothing more to send
            state.cut_off.append(time.monotonic())
        except asyncio.CancelledError:
            state.cut_off.append(time.monotonic())
            raise
        return resp

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    arrivals = Arrivals()
    port = await arrivals.serve(runner)
    state.url_v1 = f"http://127.0.0.1:{port}/v1"
    try:
        yield state
    finally:
        arrivals.close()
        await runner.cleanup()
