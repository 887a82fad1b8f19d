"""The streaming loop shared by every source: attempts, SSE decoding, partial text."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from typing import Any, Protocol

from bot.providers._errors import malformed
from bot.providers._http import Transport
from bot.providers._sse import SSEEvent, SSEParser
from bot.providers.base import Delta, ProviderError, StreamCut


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
        return json.loads(data)
    except ValueError:
        raise malformed(where, "data that is not JSON") from None


async def stream_deltas(
    transport: Transport,
    url: str,
    *,
    where: str,
    headers: dict[str, str],
    body: dict[str, Any],
    secrets: Iterable[str],
    decoder: Callable[[], StreamDecoder],
    auth_hint: str = "",
) -> AsyncGenerator[Delta, None]:
    """POST `body` and yield deltas; retry only while nothing has been yielded."""
    started = time.monotonic()
    attempt = 0
    headers = {**headers, "accept": "text/event-stream"}
    while True:
        texts: list[str] = []
        try:
            one = _attempt(transport, url, where, headers, body, secrets, decoder(), auth_hint)
            async with aclosing(one) as deltas:
                async for delta in deltas:
                    texts.append(delta.text)
                    yield delta
            return
        except ProviderError as err:
            if texts and not err.partial:
                err.partial = "".join(texts)
            delay = None if texts else transport.retry_delay(attempt, err, started)
            if delay is None:
                raise
            transport.log_retry(where, err, attempt, delay)
            await transport.sleep(delay)
            attempt += 1


async def _attempt(
    transport: Transport,
    url: str,
    where: str,
    headers: dict[str, str],
    body: dict[str, Any],
    secrets: Iterable[str],
    state: StreamDecoder,
    auth_hint: str,
) -> AsyncGenerator[Delta, None]:
    response, deadline = await transport.open(
        "POST",
        url,
        where=where,
        headers=headers,
        secrets=secrets,
        json_body=body,
        auth_hint=auth_hint,
    )
    try:
        ctype = response.headers.get("content-type", "")
        if "json" in ctype:
            # A server that ignores `stream: true` and answers in one piece.
            raw = b"".join([c async for c in transport.chunks(response, deadline, where)])
            for delta in state.on_body(loads(raw, where)):
                yield delta
            return
        if "html" in ctype:
            raise malformed(where, "a web page instead of an event stream")
        parser = SSEParser()
        async with aclosing(transport.chunks(response, deadline, where)) as chunks:
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    for delta in state.on_event(event):
                        yield delta
                if state.done:
                    await transport.drain(chunks)
                    break
            else:
                for event in parser.close():
                    for delta in state.on_event(event):
                        yield delta
        for delta in state.finish():
            yield delta
        if not (state.done or state.complete):
            raise StreamCut(f"{where} ended the stream before the answer was complete. Try again.")
    finally:
        await response.aclose()
