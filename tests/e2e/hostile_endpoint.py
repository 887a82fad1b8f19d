"""A hostile OpenAI-compatible endpoint on loopback, for driving the console as a process.

It runs an aiohttp app in a background thread with its own event loop, so a test can
drive `python -m bot console` with plain `subprocess.run`/`Popen` while the endpoint
answers. Each test configures what it does by setting attributes, read per request:

* `models`, or `on_models` (a callable → status, headers, body) for `/v1/models`, or
  `models_stream` (a `Stream` script, sent as a JSON body: a list that stalls midway);
* `on_chat` (same shape) to answer `/v1/chat/completions` (and Claude's `/v1/messages`,
  scripted the same way) without streaming;
* `stream`, a `Stream` script: chunks at an interval, keep-alive comments only, a byte
  drip, an endless stream, a huge answer in many events or in one SSE line;
* chunks may contain `{auth}`, replaced by the request's Authorization header value;
* `slash_redirect`: both routes answer 307 to themselves with a trailing slash, where
  they are served (as FastAPI's `redirect_slashes` does for routes declared with one).

Every request is recorded (method, path, headers as sent, body) in `requests`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

from aiohttp import web

Answer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    raw_headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    def header(self, name: str) -> bytes | None:
        """The raw bytes of a header as the client sent them (first occurrence)."""
        wanted = name.lower().encode()
        return next((v for k, v in self.raw_headers if k.lower() == wanted), None)

    @property
    def authorization(self) -> str | None:
        value = self.header("authorization")
        return None if value is None else value.decode("latin-1")


@dataclass
class Stream:
    """How a streamed /v1/chat/completions answers.

    kind:
      chunks      `chunks`, `interval` seconds apart, then a clean end
      endless     `chunks[0]` again and again, `interval` apart, never ending
      keepalive   only `: ping` comments, `interval` apart, never ending (no text at all)
      drip        `chunks[0]` as one event, then an endless event one byte per `interval`
      huge        `total_chars` of `fill`, `piece_chars` per event, as fast as possible
      single_line `total_chars` of `fill` in a single `data:` line, then a clean end
      raw         `chunks` written as they are (whole SSE lines or any bytes), `interval`
                  apart, then a close with no end of its own
    """

    kind: str = "chunks"
    chunks: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    interval: float = 0.0
    total_chars: int = 0
    piece_chars: int = 64 * 1024
    fill: str = "x"
    usage: dict[str, object] | None = None  # a `chunks` script's last chunk reports it

    @property
    def answer(self) -> str:
        """The full text of a `chunks` script (what a well-behaved bot would show)."""
        return "".join(self.chunks)


def sse_chunk(text: str, finish: str | None = None) -> bytes:
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


_END = sse_chunk("", "stop") + b"data: [DONE]\n\n"


def escaped_forms(value: str) -> dict[str, str]:
    """`value` written the ways an endpoint might echo it back (each one string)."""
    raw = value.encode("latin-1")
    return {
        "raw": value,
        "bytes_repr": repr(raw),
        "json": json.dumps(value, ensure_ascii=True),
        "url_quote": quote(value, safe=""),
        "url_quote_slash": quote(value),
        "url_quote_plus": quote_plus(value),
        "double_repr": repr(repr(raw)),
        "double_json": json.dumps(json.dumps(value)),
        "base64": base64.b64encode(raw).decode(),
        "base64_url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


def echo_auth_401(body_kind: str = "text") -> Callable[[Recorded], Answer]:
    """A 401 whose body repeats the Authorization header in every escaped form."""

    def answer(rec: Recorded) -> Answer:
        forms = escaped_forms(rec.authorization or "")
        text = "invalid credentials: " + " | ".join(f"{k}={v}" for k, v in forms.items())
        if body_kind == "json":
            body = json.dumps({"error": {"message": text, "type": "invalid_api_key"}}).encode()
            return 401, {"Content-Type": "application/json"}, body
        return 401, {"Content-Type": "text/plain"}, text.encode()

    return answer


def redirect(location: str, status: int = 302) -> Callable[[Recorded], Answer]:
    """A redirect whose Location and body both carry `location`."""

    def answer(rec: Recorded) -> Answer:
        return status, {"Location": location}, f"Moved to {location}".encode()

    return answer


def status_only(status: int, message: str = "server error") -> Callable[[Recorded], Answer]:
    def answer(rec: Recorded) -> Answer:
        body = json.dumps({"error": {"message": message, "type": "server_error"}}).encode()
        return status, {"Content-Type": "application/json"}, body

    return answer


class HostileEndpoint:
    """Start with `start()`, stop with `stop()`; `url_v1` is the base to give the bot."""

    def __init__(self) -> None:
        self.models: list[str] = ["m", "m-large"]
        self.on_models: Callable[[Recorded], Answer] | None = None
        self.models_stream: Stream | None = None
        self.on_chat: Callable[[Recorded], Answer] | None = None
        self.stream = Stream()
        self.slash_redirect = False
        self.requests: list[Recorded] = []
        self.port = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_v1(self) -> str:
        return f"{self.url}/v1"

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(("/chat/completions", "/messages"))]

    def authorizations(self) -> list[str | None]:
        return [r.authorization for r in self.requests]

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> HostileEndpoint:
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._setup())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=serve, name="hostile-endpoint", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the hostile endpoint did not start within 30 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)

    async def _setup(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models/", self._models)
        app.router.add_post("/v1/chat/completions/", self._chat)
        # Claude's Messages API, scripted as chat is (`stream` kind "raw" for its events).
        app.router.add_post("/v1/messages", self._chat)
        # Anything else (e.g. a redirect target) is recorded and answered 404.
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # --- handlers ---------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded:
        rec = Recorded(
            request.method, request.path, tuple(request.raw_headers), await request.read()
        )
        self.requests.append(rec)
        return rec

    @staticmethod
    def _answer(answer: Answer) -> web.Response:
        status, headers, body = answer
        return web.Response(status=status, headers=headers, body=body)

    def _to_slash(self, rec: Recorded) -> web.Response | None:
        """The trailing-slash redirect (`slash_redirect`); None where the route is served."""
        slash = rec.path.endswith("/")
        if self.slash_redirect and not slash:
            return web.Response(status=307, headers={"Location": f"{rec.path}/"})
        if slash and not self.slash_redirect:
            return web.Response(status=404, text="not here")
        return None

    async def _models(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        moved = self._to_slash(rec)
        if moved is not None:
            return moved
        if self.on_models is not None:
            return self._answer(self.on_models(rec))
        if self.models_stream is not None:
            return await self._streamed(request, rec, self.models_stream, "application/json")
        data = [{"id": m, "object": "model", "owned_by": "test"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _other(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(status=404, text="not here")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        moved = self._to_slash(rec)
        if moved is not None:
            return moved
        if self.on_chat is not None:
            return self._answer(self.on_chat(rec))
        return await self._streamed(request, rec, self.stream, "text/event-stream")

    async def _streamed(
        self, request: web.Request, rec: Recorded, s: Stream, content_type: str
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        try:
            await self._play(resp, s, rec)
        except (ConnectionError, asyncio.CancelledError, RuntimeError):
            pass  # the bot hung up (as it should, for the endless scripts)
        return resp

    async def _play(self, resp: web.StreamResponse, s: Stream, rec: Recorded) -> None:
        auth = rec.authorization or ""

        def text(chunk: str) -> str:
            return chunk.replace("{auth}", auth)

        if s.kind == "chunks":
            for i, chunk in enumerate(s.chunks):
                if i and s.interval:
                    await asyncio.sleep(s.interval)
                if self._stopping:
                    return
                await resp.write(sse_chunk(text(chunk)))
            if s.usage is not None:
                body = {"id": "c1", "object": "chat.completion.chunk", "choices": []}
                await resp.write(f"data: {json.dumps({**body, 'usage': s.usage})}\n\n".encode())
            await resp.write(_END)
        elif s.kind == "endless":
            while not self._stopping:
                await resp.write(sse_chunk(text(s.chunks[0])))
                await asyncio.sleep(s.interval)
        elif s.kind == "keepalive":
            while not self._stopping:
                await resp.write(b": ping\n\n")
                await asyncio.sleep(s.interval)
        elif s.kind == "drip":
            await resp.write(sse_chunk(text(s.chunks[0])))
            for byte in itertools.cycle(sse_chunk(" drip")):
                if self._stopping:
                    return
                await asyncio.sleep(s.interval)
                await resp.write(bytes([byte]))
        elif s.kind == "huge":
            piece = sse_chunk(s.fill * s.piece_chars)
            full, rest = divmod(s.total_chars, s.piece_chars)
            for _ in range(full):
                if self._stopping:
                    return
                await resp.write(piece)
            if rest:
                await resp.write(sse_chunk(s.fill * rest))
            await resp.write(_END)
        elif s.kind == "raw":
            for i, chunk in enumerate(s.chunks):
                if i and s.interval:
                    await asyncio.sleep(s.interval)
                if self._stopping:
                    return
                await resp.write(text(chunk).encode())
        elif s.kind == "single_line":
            await resp.write(sse_chunk(s.fill * s.total_chars))
            await resp.write(_END)
        else:
            raise ValueError(f"unknown stream kind {s.kind!r}")
