"""Incremental Server-Sent Events parser: bytes in, events out (no I/O)."""

from __future__ import annotations

import codecs
from typing import NamedTuple

DEFAULT_MAX_LINE = 4 * 1024 * 1024  # characters; a real chunk line is a few KB
# Events that only keep the connection alive, as a comment does: Anthropic's `ping`,
# which it may send for as long as the connection lasts.
KEEPALIVE_EVENTS = frozenset({"ping"})


class SSEEvent(NamedTuple):
    event: str
    data: str


class SSELineTooLong(ValueError):
    """A line of the stream is longer than the parser's `max_line`."""


class SSEParser:
    """Feed raw body chunks split anywhere (even inside a UTF-8 character or a CRLF)."""

    __slots__ = (
        "_after_cr",
        "_data",
        "_decoder",
        "_event",
        "_max_line",
        "_pending",
        "_pending_len",
        "_progress",
        "_started",
    )

    def __init__(self, max_line: int | None = DEFAULT_MAX_LINE) -> None:
        # SSE is always UTF-8, whatever the content-type says.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max_line = max_line
        # The unfinished last line, in pieces: joining on every feed is quadratic.
        self._pending: list[str] = []
        self._pending_len = 0
        self._after_cr = False  # the last line ended in CR: an LF next is its other half
        self._event = ""
        self._data: list[str] = []
        self._started = False
        self._progress = False

    @property
    def saw_data(self) -> bool:
        """True if a field line (data, event, id, retry) of an event that is not a
        keep-alive (KEEPALIVE_EVENTS) ended since the last take_progress()."""
        return self._progress

    def take_progress(self) -> bool:
        """Return saw_data and clear it; keep-alives (comments, blank lines, a `ping`
        event) never set it."""
        progress, self._progress = self._progress, False
        return progress

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by this chunk; raises SSELineTooLong past `max_line`."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._after_cr:
            self._after_cr = False
            if text.startswith("\n"):
                text = text[1:]
        if "\r" in text:
            # A CR ends its line at once; remember it so a following LF is not a 2nd end.
            self._after_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        tail = lines.pop()
        held = self._pending_len
        if lines and self._pending:
            self._pending.append(lines[0])
            lines[0] = "".join(self._pending)
            self._pending.clear()
            self._pending_len = 0
        # No line can be longer than this text plus what was held: usually no check.
        if self._max_line is not None and held + len(text) > self._max_line:
            for line in lines:
                self._check_length(len(line))
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        if tail:
            self._hold(tail)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: a trailing event without its blank line is dispatched anyway.

        Never raises SSELineTooLong: feed() held at most `max_line` characters, and a cut
        UTF-8 sequence adds one replacement character at most.
        """
        self._pending.append(self._decoder.decode(b"", final=True))
        tail = "".join(self._pending)
        self._pending.clear()
        self._pending_len = 0
        events: list[SSEEvent] = []
        if tail:
            event = self._line(tail)
            if event is not None:
                events.append(event)
        # Lenient on purpose: some servers close right after the last data line.
        event = self._line("")
        if event is not None:
            events.append(event)
        return events

    def _hold(self, piece: str) -> None:
        """Keep the start of a line until its end arrives, no longer than allowed."""
        self._pending.append(piece)
        self._pending_len += len(piece)
        self._check_length(self._pending_len)

    def _check_length(self, length: int) -> None:
        if self._max_line is not None and length > self._max_line:
            self._pending.clear()  # the stream is given up: free what it sent
            self._pending_len = 0
            raise SSELineTooLong(f"an event stream line is longer than {self._max_line} characters")

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
        if len(line) < 4096:
            name, colon, value = line.partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
        else:  # a huge value: copied once, not twice
            end = line.find(":")
            if end < 0:
                name, value = line, ""
            else:
                skip = 2 if line.startswith(" ", end + 1) else 1
                name, value = line[:end], line[end + skip :]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name != "id" and name != "retry":
            return None  # unknown fields are ignored, and are not progress either
        if self._event not in KEEPALIVE_EVENTS:
            self._progress = True
        return None
