"""Incremental Server-Sent Events parser: bytes in, events out (no I/O)."""

from __future__ import annotations

import codecs
from typing import NamedTuple


class SSEEvent(NamedTuple):
    event: str
    data: str


class SSEParser:
    """Feed raw body chunks split anywhere (even inside a UTF-8 character or a CRLF)."""

    __slots__ = ("_buf", "_data", "_decoder", "_event", "_started")

    def __init__(self) -> None:
        # SSE is always UTF-8, whatever the content-type says.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._event = ""
        self._data: list[str] = []
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        text = self._buf + text
        # A trailing CR may be the first half of a CRLF: wait for the next chunk.
        if text.endswith("\r"):
            self._buf = text
            return []
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        self._buf = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: a trailing event without its blank line is dispatched anyway."""
        tail = self._buf + self._decoder.decode(b"", final=True)
        self._buf = ""
        events: list[SSEEvent] = []
        if tail:
            tail = tail.replace("\r\n", "\n").replace("\r", "\n")
            for line in tail.split("\n"):
                event = self._line(line)
                if event is not None:
                    events.append(event)
        # Lenient on purpose: some servers close right after the last data line.
        event = self._line("")
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data))
            self._event = ""
            self._data = []
            return event
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None
