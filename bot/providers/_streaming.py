"""The streaming loop shared by every source: attempts, SSE decoding, partial text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import Any, Protocol

import httpx

from bot.providers._errors import (
    body_detail,
    error_from_kind,
    malformed,
    unexpected_body,
    unknown_format,
)
from bot.providers._http import MAX_BODY, RequestSpec, Transport
from bot.providers._sse import SSEEvent, SSELineTooLong, SSEParser
from bot.providers.base import (
    Delta,
    EmptyStream,
    MalformedResponse,
    ProviderError,
    ProviderTimeout,
    StreamCut,
    joined,
)
from bot.providers.convert import continuation_gap
from bot.types.text import untrusted_json

# Far above any real answer (MAX_ANSWER_CHARS stops the text sooner); bounds what a
# runaway endpoint can make the bot read.
MAX_STREAM_BYTES = 64 * 1024 * 1024


class StreamDecoder(Protocol):
    """Per-attempt state turning one source's events into deltas."""

    @property
    def done(self) -> bool:
        """The server said the answer is over: stop reading."""

    @property
    def complete(self) -> bool:
        """Enough arrived that a clean end of stream is not a cut."""

    def on_event(self, event: SSEEvent) -> list[Delta]: ...

    def on_body(self, body: Any) -> list[Delta]: ...

    def finish(self) -> list[Delta]: ...


def loads(data: str | bytes, where: str) -> Any:
    try:
        return untrusted_json(data)
    except ValueError:
        raise unknown_format(where, "an answer", "data that is not JSON") from None


async def stream_deltas(
    transport: Transport, spec: RequestSpec, decoder: Callable[[], StreamDecoder]
) -> AsyncGenerator[Delta, None]:
    """POST `spec` and yield deltas; retry only while nothing has been yielded."""
    started = time.monotonic()
    attempt = 0
    spec = replace(spec, headers={**spec.headers, "accept": "text/event-stream"})
    while True:
        texts: list[str] = []
        try:
            async with aclosing(_attempt(transport, spec, decoder())) as deltas:
                async for delta in deltas:
                    if delta.text or delta.reasoning or delta.finish_reason:
                        texts.append(delta.text)  # a usage-only delta is no answer yet
                    yield delta
            return
        except ProviderError as caught:
            caught.without(spec.secrets)  # an error event may echo what was sent
            err = caught
            if texts and not err.partial:
                err.partial = "".join(texts)
            elif isinstance(err, ProviderTimeout) and err.midway and not texts:
                # Bytes came (Claude's `message_start`, a role-only chunk), no answer.
                err = transport.timeout_error(
                    TimeoutError(), spec.where, first=False, answered=False
                )
            delay = None if texts else transport.retry_delay(attempt, err, started)
            if delay is None:
                if err is caught:
                    raise
                raise err from None
            transport.log_retry(spec.where, err, attempt, delay)
            await transport.sleep(delay)
            attempt += 1


async def _attempt(
    transport: Transport, spec: RequestSpec, state: StreamDecoder
) -> AsyncGenerator[Delta, None]:
    response, deadline = await transport.open(spec)
    where = spec.where
    try:
        ctype = response.headers.get("content-type", "")
        if "json" in ctype:
            # A server that ignores `stream: true` and answers in one piece. The answer's
            # own deadline bounds it: one that keeps the connection alive with spaces
            # while the model writes is not cut sooner.
            raw = await transport.read_limited(response, deadline, MAX_BODY, where, timed=False)
            for delta in state.on_body(loads(raw, where)):
                yield delta
            return
        if "html" in ctype:
            raise malformed(where, "a web page instead of an event stream")
        async for delta in _events(transport, response, deadline, spec, state):
            yield delta
        for delta in state.finish():
            yield delta
        if not (state.done or state.complete):
            raise StreamCut(_CUT.format(where=where))
    finally:
        await response.aclose()


async def _events(
    transport: Transport,
    response: httpx.Response,
    deadline: float,
    spec: RequestSpec,
    state: StreamDecoder,
) -> AsyncGenerator[Delta, None]:
    """Deltas of an event stream, within the size caps and the idle limit.

    Keep-alives (comments, Claude's `ping` events) and a line dripping in byte by byte
    are not progress: only a complete line of another event resets the idle clock, or a
    stream could hold a turn forever.
    Before the first one, comments (a proxy's "processing") may go on as long as a first
    byte may take. A body with no event at all is read as the error or page it is.
    """
    where = spec.where
    parser = SSEParser()
    clock = asyncio.get_running_loop().time
    idle = transport.settings.idle_timeout
    progress = clock()
    started = False  # an event line has come (not a keep-alive's)
    evented = False  # an event has come, a keep-alive's too: the body is an event stream
    head = b""  # the body's start, while no event line has come
    size = 0
    async with aclosing(transport.chunks(response, deadline, where, paced=True)) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_STREAM_BYTES:
                raise malformed(where, f"more than {MAX_STREAM_BYTES // 2**20} MB in one answer")
            if not started and len(head) < _HEAD_BYTES:
                head += chunk[: _HEAD_BYTES - len(head)]
            try:
                events = parser.feed(chunk)
            except SSELineTooLong:
                raise malformed(where, "a line of the event stream is too long") from None
            evented = evented or bool(events)
            if parser.take_progress():
                progress, started = clock(), True
            elif clock() - progress > (idle if started else transport.settings.first_byte_timeout):
                raise transport.timeout_error(TimeoutError(), where, first=not started)
            # What one read brought goes on as one delta: every layer above, down to the
            # front-end's sink, then runs once a read instead of once an event.
            batch: list[Delta] = []
            try:
                for event in events:
                    batch += state.on_event(event)
            except ProviderError:
                if batch:  # the text before an error event is shown, as it arrived
                    yield joined(batch)
                raise
            if batch:
                yield joined(batch)
            if state.done:
                await transport.drain(chunks)
                return
        try:
            for event in parser.close():
                for delta in state.on_event(event):
                    yield delta
        except MalformedResponse:  # an event cut short by the connection's end
            raise StreamCut(_CUT.format(where=where)) from None
    lines = head.removeprefix(b"\xef\xbb\xbf").splitlines()
    said = b"\n".join(line for line in lines if not line.startswith(b":"))
    if not (started or evented) and not (state.done or state.complete) and said.strip():
        raise _not_a_stream(said, spec)  # comments alone (a proxy's pings) are no body
    if not started and not head.strip():
        raise EmptyStream(f"{where} ended the answer's stream with nothing in it.")


_HEAD_BYTES = 4096
_CUT = "{where} ended the stream before the answer was complete. Try again."


def _not_a_stream(head: bytes, spec: RequestSpec) -> ProviderError:
    """A body that held no event: an error said in JSON (a 200 some proxies send), a web
    page, or text (`unexpected_body`)."""
    where = spec.where
    try:
        untrusted_json(head)
        text = False
    except ValueError:  # a page, or text
        text = True
    message, kind = body_detail(head)
    if message or kind:  # its echo of a secret taken out before the text is cut
        err = error_from_kind(None, kind, message, where=where, secrets=spec.secrets)
        # Text that names no kind of error ("OK", a proxy's words) is said as the text
        # it is: the URL may be wrong. One that does (the context is full) is that error.
        if not (text and err.kind == ProviderError.kind):
            return err
    if text:
        return unexpected_body(where, head, "an event stream", spec.secrets)
    return malformed(where, "a body with no event in it")


async def continuing(
    deltas: AsyncGenerator[Delta, None], before: str
) -> AsyncGenerator[Delta, None]:
    """The stream of an answer asked to go on from `before` (no prefill), its first text
    given the space it left out after it (`continuation_gap`)."""
    async with aclosing(deltas):
        async for delta in deltas:
            if delta.text:
                yield delta._replace(text=continuation_gap(before, delta.text) + delta.text)
                break
            yield delta
        async for delta in deltas:
            yield delta
