"""The SSE parser's line cap, its progress flag, and huge lines parsed like short ones."""

from __future__ import annotations

import pytest
from httpx_sse._decoders import SSEDecoder  # an independent reference

from bot.providers._sse import DEFAULT_MAX_LINE, SSEEvent, SSELineTooLong, SSEParser


def feed_all(parser: SSEParser, chunks: list[bytes]) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


# ---- the line cap -----------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_line_at_the_cap_passes_and_one_more_character_is_refused(newline: str) -> None:
    value = "x" * 94  # "data: " + 94 = 100 characters
    ok = f"data: {value}{newline}{newline}".encode()
    assert feed_all(SSEParser(max_line=100), [ok]) == [SSEEvent("message", value)]
    with pytest.raises(SSELineTooLong, match="longer than 100 characters"):
        SSEParser(max_line=100).feed(f"data: {value}y{newline}{newline}".encode())


def test_the_cap_counts_characters_not_bytes() -> None:
    value = "é😀" * 47  # 94 characters, 282 bytes
    raw = f"data: {value}\n\n".encode()
    assert feed_all(SSEParser(max_line=100), [raw[i : i + 7] for i in range(0, len(raw), 7)]) == [
        SSEEvent("message", value)
    ]


def test_a_line_without_its_end_is_refused_as_soon_as_it_passes_the_cap() -> None:
    """What waits for a newline never grows much past the cap."""
    parser = SSEParser(max_line=1000)
    assert parser.feed(b"data: " + b"x" * 994) == []  # exactly 1000 held
    with pytest.raises(SSELineTooLong):
        parser.feed(b"x")


def test_close_does_not_raise_for_a_cut_character_after_a_full_line() -> None:
    parser = SSEParser(max_line=100)
    assert parser.feed(b"data: " + b"x" * 94 + b"\xc3") == []  # 100 held, half an "é"
    assert parser.close() == [SSEEvent("message", "x" * 94 + "\ufffd")]


def test_a_long_comment_is_capped_too() -> None:
    parser = SSEParser(max_line=1000)
    with pytest.raises(SSELineTooLong):
        for _ in range(20):
            parser.feed(b": " + b"." * 100)


def test_a_held_line_is_capped_when_its_end_arrives() -> None:
    parser = SSEParser(max_line=1000)
    parser.feed(b"data: " + b"x" * 900)
    with pytest.raises(SSELineTooLong):
        parser.feed(b"x" * 200 + b"\n\n")


def test_default_cap_is_4_mib_and_none_lifts_it() -> None:
    assert DEFAULT_MAX_LINE == 4 * 1024 * 1024
    line = b"data: " + b"x" * DEFAULT_MAX_LINE
    chunks = [line[i : i + 65536] for i in range(0, len(line), 65536)]
    with pytest.raises(SSELineTooLong):
        feed_all(SSEParser(), chunks)
    [event] = feed_all(SSEParser(max_line=None), [*chunks, b"\n\n"])
    assert len(event.data) == DEFAULT_MAX_LINE


def test_line_too_long_is_a_value_error() -> None:
    assert issubclass(SSELineTooLong, ValueError)


# ---- huge lines mean what short ones mean -----------------------------------------

FORMS = ["data: {v}", "data:{v}", "data:  {v}", "data", "event: {v}", ": {v}", "x{v}: 1"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("size", [3, 5000, 200_000])
def test_huge_lines_parse_like_short_ones(form: str, size: int) -> None:
    value = ("ab é" * size)[:size]
    text = f"{form.format(v=value)}\ndata: end\n\n"
    raw = text.encode()
    ours = feed_all(SSEParser(max_line=None), [raw[i : i + 4096] for i in range(0, len(raw), 4096)])
    decoder = SSEDecoder()
    expected = []
    for line in [*text.split("\n"), ""]:
        sse = decoder.decode(line)
        if sse is not None and sse.data:
            expected.append(SSEEvent(sse.event, sse.data))
    assert ours == expected


# ---- progress: keep-alives are not progress ----------------------------------------


def test_comments_and_blank_lines_are_not_progress() -> None:
    parser = SSEParser()
    assert parser.feed(b": ping\n\n: keep-alive\r\n\r\n") == []
    assert not parser.saw_data
    assert parser.take_progress() is False


@pytest.mark.parametrize("line", [b"data: x", b"data", b"event: delta", b"id: 7", b"retry: 100"])
def test_a_field_line_is_progress_until_taken(line: bytes) -> None:
    parser = SSEParser()
    parser.feed(line + b"\n")
    assert parser.saw_data  # peeking does not clear it
    assert parser.saw_data
    assert parser.take_progress() is True
    assert parser.take_progress() is False
    parser.feed(b": ping\n")
    assert parser.take_progress() is False


def test_unknown_fields_and_unfinished_lines_are_not_progress() -> None:
    parser = SSEParser()
    parser.feed(b"foo: bar\n")
    assert parser.take_progress() is False
    parser.feed(b"data: half a li")  # a line dripping in is not progress until it ends
    assert parser.take_progress() is False
    assert parser.feed(b"ne\n\n") == [SSEEvent("message", "half a line")]
    assert parser.take_progress() is True


def test_progress_from_the_tail_at_close() -> None:
    parser = SSEParser()
    parser.feed(b"data: tail")
    assert parser.take_progress() is False
    assert parser.close() == [SSEEvent("message", "tail")]
    assert parser.take_progress() is True
