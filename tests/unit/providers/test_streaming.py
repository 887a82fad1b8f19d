"""Streaming: awkward chunk boundaries, event kinds, cuts, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx
import pytest
import respx

from bot.providers import (
    BadRequest,
    ChatRequest,
    ContextTooLong,
    Delta,
    EmptyStream,
    Endpoint,
    MalformedResponse,
    Overloaded,
    ProviderHub,
    ProviderTimeout,
    StreamCut,
    Usage,
)
from bot.types import ChatMessage, Role, SecretValue, Source

from .conftest import openai_chunk, split_every, sse_bytes, sse_response

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
CLAUDE_URL = "https://api.anthropic.com/v1/messages"
REQUEST = ChatRequest(model="m", messages=(ChatMessage(Role.USER, "hi"),))
OPENAI = Endpoint(Source.OPENAI, api_key=SecretValue("sk-stream-test-01"))
CLAUDE = Endpoint(Source.CLAUDE, api_key=SecretValue("sk-ant-stream-test-01"))
TEXT = "Grüße 😀 — naïve café ✓"


def awkward_openai_stream() -> bytes:
    """CRLF lines, comments, blank keep-alives, multi-byte text, usage chunk, [DONE]."""
    parts = [": keep-alive\r\n\r\n", "\r\n"]
    pieces = ["Grüße ", "😀 — ", "naïve café ✓"]
    parts.append(sse_bytes([(None, openai_chunk(role="assistant"))], "\r\n").decode())
    for piece in pieces:
        parts.append(sse_bytes([(None, openai_chunk(piece))], "\r\n").decode())
        parts.append(": ping\r\n\r\n")
    parts.append(sse_bytes([(None, openai_chunk(finish="stop"))], "\r\n").decode())
    usage = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
    parts.append(sse_bytes([(None, usage), (None, "[DONE]")], "\r\n").decode())
    return "".join(parts).encode()


async def collect(hub: ProviderHub, endpoint: Endpoint = OPENAI) -> list[Delta]:
    return [d async for d in hub.provider(endpoint).stream_chat(REQUEST)]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 10_000])
async def test_openai_stream_split_anywhere(
    size: int, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    response, stream = sse_response(*split_every(awkward_openai_stream(), size))
    router.post(OPENAI_URL).mock(return_value=response)
    deltas = await collect(make_hub())
    assert "".join(d.text for d in deltas) == TEXT
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert [d.usage for d in deltas if d.usage] == [Usage(prompt_tokens=5, completion_tokens=3)]
    assert stream.closed


async def test_events_read_together_come_on_as_one_delta(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """What one read brought passes the layers above once: texts joined in order, the
    newest usage counts and the finish reason kept, as a reader of each would keep them."""
    usage = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
    events = [
        (None, openai_chunk("Hel", reasoning_content="Hm. ")),
        (None, openai_chunk("lo", reasoning_content="Yes.")),
        (None, openai_chunk(finish="stop")),
        (None, usage),
        (None, "[DONE]"),
    ]
    router.post(OPENAI_URL).mock(return_value=sse_response(sse_bytes(events))[0])
    assert await collect(make_hub()) == [Delta("Hello", "Hm. Yes.", "stop", Usage(5, 3))]
    # Read one event at a time, the same answer comes in pieces.
    router.post(OPENAI_URL).mock(
        return_value=sse_response(*(sse_bytes([event]) for event in events))[0]
    )
    deltas = await collect(make_hub())
    assert [d.text for d in deltas] == ["Hel", "lo", "", ""]  # the finish, the usage
    assert deltas[-1].usage == Usage(5, 3)


async def test_text_read_with_an_error_event_is_shown_before_the_error(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    error = {"error": {"message": "upstream overloaded", "type": "server_error", "code": 503}}
    data = sse_bytes([(None, openai_chunk("Hel")), (None, openai_chunk("lo")), (None, error)])
    router.post(OPENAI_URL).mock(return_value=sse_response(data)[0])
    seen: list[str] = []
    with pytest.raises(Overloaded) as info:
        async for delta in make_hub().provider(OPENAI).stream_chat(REQUEST):
            seen.append(delta.text)
    assert seen == ["Hello"]
    assert info.value.partial == "Hello"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
async def test_line_endings(
    newline: str, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    data = sse_bytes([(None, openai_chunk("a")), (None, openai_chunk("b", "stop"))], newline)
    router.post(OPENAI_URL).mock(return_value=sse_response(*split_every(data, 1))[0])
    assert "".join(d.text for d in await collect(make_hub())) == "ab"


async def test_reasoning_content_is_kept_apart(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    data = sse_bytes(
        [
            (None, openai_chunk(reasoning_content="Let me think. ")),
            (None, openai_chunk(reasoning="Done.")),
            (None, openai_chunk("Answer", "stop")),
            (None, "[DONE]"),
        ]
    )
    router.post(OPENAI_URL).mock(return_value=sse_response(data)[0])
    deltas = await collect(make_hub())
    assert "".join(d.reasoning for d in deltas) == "Let me think. Done."
    assert "".join(d.text for d in deltas) == "Answer"


@pytest.mark.parametrize("size", [1, 3, 1000])
async def test_think_tags_stay_in_the_text_for_the_conversation_layer(
    size: int, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    pieces = ["<thi", "nk>Hmm, a ", "greeting.</th", "ink>\n\nHello", " there", "<think>x"]
    events = [(None, openai_chunk(p)) for p in pieces]
    data = sse_bytes([*events, (None, openai_chunk(finish="stop")), (None, "[DONE]")])
    router.post(OPENAI_URL).mock(return_value=sse_response(*split_every(data, size))[0])
    deltas = await collect(make_hub())
    assert "".join(d.reasoning for d in deltas) == ""
    assert "".join(d.text for d in deltas) == "".join(pieces)


async def test_server_ignoring_stream_answers_json(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    body = {
        "choices": [
            {"message": {"role": "assistant", "content": "Whole"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
    router.post(OPENAI_URL).mock(return_value=httpx.Response(200, json=body))
    deltas = await collect(make_hub())
    assert [d.text for d in deltas if d.text] == ["Whole"]
    assert deltas[0].finish_reason == "stop"


async def test_an_answer_sent_whole_instead_of_streamed(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    body = {
        "choices": [
            {
                "message": {"content": "<think>why</think>Because", "reasoning_content": None},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    router.post(OPENAI_URL).mock(return_value=httpx.Response(200, json=body))
    deltas = await collect(make_hub())
    assert "".join(d.text for d in deltas) == "<think>why</think>Because"
    assert deltas[0].finish_reason == "length"
    assert deltas[0].usage == Usage(3, 4)


def claude_events(*, error_after: int | None = None) -> bytes:
    events: list[tuple[str | None, object]] = [
        (
            "message_start",
            {"type": "message_start", "message": {"id": "m1", "usage": {"input_tokens": 12}}},
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Pondering…"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "abc"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("brand_new_event", {"type": "brand_new_event", "x": 1}),
    ]
    for i, piece in enumerate(["Grüße ", "😀 — ", "naïve café ✓"]):
        if error_after is not None and i == error_after:
            events.append(
                (
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                )
            )
            return sse_bytes(events)
        events.append(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        )
        events.append(("ping", {"type": "ping"}))
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 7},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return sse_bytes(events)


@pytest.mark.parametrize("size", [1, 4, 9, 100_000])
async def test_claude_stream(
    size: int, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    response, stream = sse_response(*split_every(claude_events(), size))
    router.post(CLAUDE_URL).mock(return_value=response)
    deltas = await collect(make_hub(), CLAUDE)
    assert "".join(d.text for d in deltas) == TEXT
    assert "".join(d.reasoning for d in deltas) == "Pondering…"
    assert deltas[-1].finish_reason == "end_turn"
    assert deltas[-1].usage == Usage(prompt_tokens=12, completion_tokens=7)
    assert stream.closed


async def test_claude_error_event_mid_stream_keeps_partial(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post(CLAUDE_URL).mock(return_value=sse_response(claude_events(error_after=2))[0])
    seen: list[str] = []
    with pytest.raises(Overloaded) as info:
        async for delta in make_hub().provider(CLAUDE).stream_chat(REQUEST):
            seen.append(delta.text)
    assert info.value.partial == "Grüße 😀 — "
    assert "".join(seen) == info.value.partial
    assert "overloaded" in str(info.value).lower()
    assert route.call_count == 1  # text was already shown: no retry


async def test_claude_answer_sent_whole(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    body = {
        "type": "message",
        "content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "Hi!"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 4, "output_tokens": 2},
    }
    router.post(CLAUDE_URL).mock(return_value=httpx.Response(200, json=body))
    [delta] = await collect(make_hub(), CLAUDE)
    assert delta == Delta(text="Hi!", reasoning="hm", finish_reason="end_turn", usage=Usage(4, 2))


async def test_cut_mid_stream_keeps_partial(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    data = sse_bytes([(None, openai_chunk("Hello ")), (None, openai_chunk("wor"))])
    response, stream = sse_response(data, httpx.ReadError("connection reset"))
    route = router.post(OPENAI_URL).mock(return_value=response)
    with pytest.raises(StreamCut) as info:
        await collect(make_hub())
    assert info.value.partial == "Hello wor"
    assert route.call_count == 1
    assert stream.closed


async def test_clean_close_without_finish_is_a_cut(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    data = sse_bytes([(None, openai_chunk("Hello"))])
    router.post(OPENAI_URL).mock(return_value=sse_response(data)[0])
    with pytest.raises(StreamCut) as info:
        await collect(make_hub())
    assert info.value.partial == "Hello"


async def test_claude_without_message_stop_is_a_cut(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    data = claude_events().split(b"event: message_delta")[0]
    router.post(CLAUDE_URL).mock(return_value=sse_response(data)[0])
    with pytest.raises(StreamCut) as info:
        await collect(make_hub(), CLAUDE)
    assert info.value.partial == TEXT


async def test_malformed_event_keeps_partial(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    data = sse_bytes([(None, openai_chunk("Hi")), (None, "{not json")])
    router.post(OPENAI_URL).mock(return_value=sse_response(data)[0])
    with pytest.raises(MalformedResponse) as info:
        await collect(make_hub())
    assert info.value.partial == "Hi"


# A few KB of JSON that Python's parser cannot descend (RecursionError near 1,000 levels).
DEEP = "[" * 5000 + "]" * 5000


async def test_json_nested_past_the_parsers_depth_is_malformed(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    data = sse_bytes([(None, openai_chunk("Hi")), (None, DEEP)])
    router.post(OPENAI_URL).mock(return_value=sse_response(data)[0])
    with pytest.raises(MalformedResponse) as info:
        await collect(make_hub())
    assert info.value.partial == "Hi"
    # The same as a whole answer (a server that ignores `stream: true`).
    whole = httpx.Response(200, content=DEEP.encode(), headers={"content-type": "application/json"})
    router.post(OPENAI_URL).mock(return_value=whole)
    with pytest.raises(MalformedResponse):
        await collect(make_hub())


async def test_error_object_mid_stream(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    error = {"error": {"message": "upstream overloaded", "type": "server_error", "code": 503}}
    data = sse_bytes([(None, openai_chunk("Hi")), (None, error)])
    router.post(OPENAI_URL).mock(return_value=sse_response(data)[0])
    with pytest.raises(Overloaded) as info:
        await collect(make_hub())
    assert info.value.partial == "Hi"


async def test_first_byte_timeout(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    response, stream = sse_response(30.0, sse_bytes([(None, openai_chunk("late"))]))
    router.post(OPENAI_URL).mock(return_value=response)
    hub = make_hub(first_byte_timeout=0.05, max_retries=0)
    with pytest.raises(ProviderTimeout, match="did not start answering"):
        await collect(hub)
    assert stream.closed


async def test_idle_timeout_keeps_partial(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    first = sse_bytes([(None, openai_chunk("Hello"))])
    response, stream = sse_response(first, 30.0, b"never")
    router.post(OPENAI_URL).mock(return_value=response)
    hub = make_hub(idle_timeout=0.05)
    with pytest.raises(ProviderTimeout, match="stopped sending") as info:
        await collect(hub)
    assert info.value.partial == "Hello"
    assert stream.closed


async def test_claude_pings_alone_are_no_progress(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """A Claude stream that sent `message_start` and then only `ping` events, a fifth of
    the idle limit apart, lasted until PROVIDER_ANSWER_TIMEOUT (300 s): each ping reset
    the idle clock. A ping keeps the connection alive as a comment does; it is no part
    of the answer, so the idle limit ends it, and the error is asked again (a retry)."""
    start = ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 3}}})
    pings = [0.01, sse_bytes([("ping", {"type": "ping"})])] * 200
    response, stream = sse_response(sse_bytes([start]), *pings)
    router.post(CLAUDE_URL).mock(return_value=response)
    hub = make_hub(idle_timeout=0.05, first_byte_timeout=0.05, max_retries=0)
    # Not a word of the answer came: no "stopped sending … in the middle of the answer".
    with pytest.raises(ProviderTimeout, match="did not start answering: it sent nothing"):
        await collect(hub, CLAUDE)
    assert stream.sent < 100 and stream.closed  # not read to the end of its pings


async def test_a_claude_stream_of_pings_that_closes_is_a_cut(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """Pings are an event stream, not a body to read as the text of an error."""
    pings = sse_bytes([("ping", {"type": "ping"})] * 3)
    router.post(CLAUDE_URL).mock(return_value=sse_response(pings)[0])
    with pytest.raises(StreamCut):
        await collect(make_hub(max_retries=0), CLAUDE)


async def test_aclose_closes_the_response(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    chunks = [sse_bytes([(None, openai_chunk(str(i)))]) for i in range(100)]
    response, stream = sse_response(*chunks)
    router.post(OPENAI_URL).mock(return_value=response)
    gen = make_hub().provider(OPENAI).stream_chat(REQUEST)
    first = await anext(gen)
    assert first.text == "0"
    await gen.aclose()  # type: ignore[attr-defined]
    assert stream.closed
    assert stream.sent < 100


@pytest.mark.parametrize("endpoint", [OPENAI, CLAUDE], ids=["openai", "claude"])
async def test_task_cancel_closes_the_response(
    endpoint: Endpoint, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    never = asyncio.Event()
    if endpoint is OPENAI:
        first = sse_bytes([(None, openai_chunk("Hel"))])
        url = OPENAI_URL
    else:
        first = claude_events().split(b"event: message_delta")[0]
        url = CLAUDE_URL
    response, stream = sse_response(first, never)
    router.post(url).mock(return_value=response)
    got_text = asyncio.Event()

    async def consume() -> None:
        async for delta in make_hub().provider(endpoint).stream_chat(REQUEST):
            if delta.text:
                got_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_text.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.closed


async def test_slow_consumer_is_not_an_idle_timeout(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    chunks = [sse_bytes([(None, openai_chunk(c))]) for c in "abc"]
    done = sse_bytes([(None, openai_chunk(finish="stop")), (None, "[DONE]")])
    router.post(OPENAI_URL).mock(return_value=sse_response(*chunks, done)[0])
    hub = make_hub(idle_timeout=0.02, first_byte_timeout=0.02)
    text = ""
    async for delta in hub.provider(OPENAI).stream_chat(REQUEST):
        await asyncio.sleep(0.05)  # e.g. a platform edit; only the server's waits count
        text += delta.text
    assert text == "abc"


async def test_trailing_bytes_after_done_are_drained(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    data = sse_bytes([(None, openai_chunk("x", "stop")), (None, "[DONE]")])
    response, stream = sse_response(data, b": bye\n\n")
    router.post(OPENAI_URL).mock(return_value=response)
    assert "".join(d.text for d in await collect(make_hub())) == "x"
    assert stream.sent == 2  # read to the end, so the pooled connection can be reused
    assert stream.closed


async def test_a_web_page_sent_as_text_is_named(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    page = b"<!DOCTYPE html><html><body>Sign in to the Wi-Fi</body></html>"
    router.post(OPENAI_URL).mock(return_value=sse_response(page, content_type="text/plain")[0])
    with pytest.raises(MalformedResponse, match="a web page instead of an event stream"):
        await collect(make_hub(max_retries=0))


async def test_plain_text_is_said_as_text_unless_it_names_an_error(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """`OK` is no error the endpoint said (the URL may be wrong); a full context is."""
    route = router.post(OPENAI_URL)
    route.mock(return_value=sse_response(b"OK", content_type="text/plain")[0])
    with pytest.raises(MalformedResponse, match="sent text instead of an event stream"):
        await collect(make_hub(max_retries=0))
    full = b"the prompt is too long for the model's context window"
    route.mock(return_value=sse_response(full, content_type="text/plain")[0])
    with pytest.raises(ContextTooLong):
        await collect(make_hub(max_retries=0))


async def test_a_connection_cut_inside_an_event_is_a_cut_not_a_wrong_url(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    whole = sse_bytes([(None, openai_chunk("Hi"))])
    response, _ = sse_response(whole, b'data: {"id":"c1","object":"chat.completion.chunk","choi')
    router.post(OPENAI_URL).mock(return_value=response)
    with pytest.raises(StreamCut, match="ended the stream before the answer was complete") as info:
        await collect(make_hub(max_retries=0))
    assert info.value.partial == "Hi"


async def test_a_proxys_comments_before_the_first_token_wait_as_a_first_byte_may(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """OpenRouter says ": OPENROUTER PROCESSING" while a model is queued: that was
    "stopped sending … in the middle of the answer" after the idle limit."""
    pings = [b": OPENROUTER PROCESSING\n\n", 0.03] * 10
    answer = sse_bytes([(None, openai_chunk("late", "stop")), (None, "[DONE]")])
    router.post(OPENAI_URL).mock(return_value=sse_response(*pings, answer)[0])
    hub = make_hub(idle_timeout=0.1, first_byte_timeout=5)
    assert "".join(d.text for d in await collect(hub)) == "late"

    router.post(OPENAI_URL).mock(return_value=sse_response(*pings * 3, answer)[0])
    hub = make_hub(idle_timeout=0.1, first_byte_timeout=0.3, max_retries=0)
    with pytest.raises(ProviderTimeout, match=r"did not start answering within 0\.3 s"):
        await collect(hub)


async def test_a_proxys_comments_then_a_closed_connection_is_a_cut_asked_again(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """Review: comments alone were read as the provider's error message and not retried."""
    route = router.post(OPENAI_URL).mock(
        side_effect=lambda _: sse_response(b": OPENROUTER PROCESSING\n\n")[0]
    )
    with pytest.raises(StreamCut, match="ended the stream before the answer was complete"):
        await collect(make_hub(max_retries=2))
    assert route.call_count == 3


@pytest.mark.parametrize(
    ("body", "error", "said"),
    [
        # Some proxies answer 200 with an event-stream type and a JSON error: it was
        # "ended the stream before the answer was complete", asked three times.
        (
            b'{"error": {"message": "The model m does not exist", "type": '
            b'"invalid_request_error"}}',
            BadRequest,
            'The provider said: "The model m does not exist"',
        ),
        # llama-cpp-python answers a request over its context with 200 and no event:
        # three calls and a second and a half of backoff got the same each time.
        (b"", EmptyStream, "ended the answer's stream with nothing in it"),
        (b"\n", EmptyStream, "ended the answer's stream with nothing in it"),
        (b"\r\n\r\n", EmptyStream, "ended the answer's stream with nothing in it"),
        (b"   ", EmptyStream, "ended the answer's stream with nothing in it"),
    ],
    ids=["json-error", "empty", "newline", "crlf", "spaces"],
)
async def test_a_body_with_no_event_says_what_it_is_and_is_asked_once(
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
    body: bytes,
    error: type[Exception],
    said: str,
) -> None:
    route = router.post(OPENAI_URL).mock(side_effect=lambda _: sse_response(body)[0])
    with pytest.raises(error, match=re.escape(said)):
        await collect(make_hub(max_retries=2))
    assert route.call_count == 1


async def test_a_byte_order_mark_before_a_comment_is_no_body(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.post(OPENAI_URL).mock(side_effect=lambda _: sse_response(b"\xef\xbb\xbf: ping\n\n")[0])
    with pytest.raises(StreamCut, match="ended the stream before the answer was complete"):
        await collect(make_hub(max_retries=0))
