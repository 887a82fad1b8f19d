"""The SSE parser: split anywhere, same events; agrees with httpx-sse's decoder."""

from __future__ import annotations

import re

import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder  # an independent reference
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.providers._sse import SSEEvent, SSELineTooLong, SSEParser

# Field text: anything without line breaks (multi-byte characters welcome).
field_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20
)
event_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
newline = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """An event stream with comments and keep-alives, and the events it must give."""
    nl = draw(newline)
    out: list[str] = []
    expected: list[SSEEvent] = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            out.append(f":{draw(field_text)}{nl}")  # comment
        if draw(st.booleans()):
            out.append(nl)  # keep-alive blank line
        name = draw(st.none() | event_name)
        lines = draw(st.lists(field_text, min_size=1, max_size=3))
        if name:
            out.append(f"event: {name}{nl}")
        for line in lines:
            # One space after the colon is dropped by the spec, so a leading space needs it.
            space = " " if line.startswith(" ") else draw(st.sampled_from(["", " "]))
            out.append(f"data:{space}{line}{nl}")
        out.append(nl)
        expected.append(SSEEvent(name or "message", "\n".join(lines)))
    return "".join(out).encode(), expected


def feed_split(data: bytes, cuts: list[int], max_line: int | None = None) -> list[SSEEvent]:
    parser = SSEParser(max_line=max_line)
    events: list[SSEEvent] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        events += parser.feed(data[start:cut])
        start = cut
    return events + parser.close()


@settings(max_examples=300)
@given(stream=streams(), data=st.data())
def test_split_anywhere_gives_the_same_events(
    stream: tuple[bytes, list[SSEEvent]], data: st.DataObject
) -> None:
    raw, expected = stream
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    assert feed_split(raw, cuts) == expected
    assert feed_split(raw, list(range(len(raw)))) == expected  # one byte at a time


@settings(max_examples=200)
@given(stream=streams(), data=st.data())
def test_cap_refuses_exactly_the_streams_with_a_longer_line(
    stream: tuple[bytes, list[SSEEvent]], data: st.DataObject
) -> None:
    raw, expected = stream
    longest = max(len(line) for line in re.split("\r\n|\r|\n", raw.decode()))
    cap = data.draw(st.integers(0, longest + 2))
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    if longest > cap:
        with pytest.raises(SSELineTooLong):
            feed_split(raw, cuts, max_line=cap)
    else:
        assert feed_split(raw, cuts, max_line=cap) == expected


@settings(max_examples=100)
@given(stream=streams(), data=st.data())
def test_progress_only_from_field_lines(
    stream: tuple[bytes, list[SSEEvent]], data: st.DataObject
) -> None:
    """Per feed: progress exactly when a data/event line ended in it (comments never)."""
    raw, _ = stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    parser = SSEParser()
    start = 0
    for cut in [*cuts, len(raw)]:
        parser.feed(raw[start:cut])
        # Lines ended so far, minus those ended before this chunk: any field among them?
        done_now = _ended_lines(raw[:cut])[len(_ended_lines(raw[:start])) :]
        assert parser.take_progress() == any(
            line.startswith(("data", "event")) for line in done_now
        )
        start = cut


def _ended_lines(prefix: bytes) -> list[str]:
    """Lines of `prefix` whose end (CR, LF or CRLF) is inside it."""
    return re.split("\r\n|\r|\n", prefix.decode(errors="ignore"))[:-1]


def reference(raw: bytes) -> list[SSEEvent]:
    lines = SSELineDecoder()
    decoder = SSEDecoder()
    out = []
    for line in [*lines.decode(raw.decode()), *lines.flush()]:
        sse = decoder.decode(line)
        if sse is not None and sse.data:
            out.append(SSEEvent(sse.event, sse.data))
    sse = decoder.decode("")
    if sse is not None and sse.data:
        out.append(SSEEvent(sse.event, sse.data))
    return out


@settings(max_examples=200)
@given(stream=streams())
def test_agrees_with_httpx_sse(stream: tuple[bytes, list[SSEEvent]]) -> None:
    raw, _ = stream
    ours = [e for e in feed_split(raw, []) if e.data]
    assert ours == reference(raw)


def test_bom_and_field_without_colon() -> None:
    parser = SSEParser()
    events = parser.feed("\ufeffdata: a\ndata\nid: 1\nretry: 5\n\n".encode())
    assert events == [SSEEvent("message", "a\n")]


def test_unterminated_last_event_is_kept_at_close() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: x\ndata: tail") == []
    assert parser.close() == [SSEEvent("x", "tail")]


def test_split_utf8_is_reassembled() -> None:
    raw = "data: 😀é\n\n".encode()
    parser = SSEParser()
    events = [e for b in raw for e in parser.feed(bytes([b]))]
    assert events == [SSEEvent("message", "😀é")]
