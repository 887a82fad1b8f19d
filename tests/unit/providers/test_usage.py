"""Token usage as each source reports it on the wire, and the stream_options fallback.

respx here: no peer produces Claude's or Mistral's events, nor an endpoint that refuses
`stream_options` (LiteLLM takes it, llama-cpp-python ignores it: tests/integration).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import respx

from bot.providers import BadRequest, ChatRequest, Delta, Endpoint, ProviderHub, Usage
from bot.types import ChatMessage, Role, SecretValue, Source

from .conftest import body_of, openai_chunk, sse_bytes, sse_response

REQUEST = ChatRequest(model="m", messages=(ChatMessage(Role.USER, "hi"),))
CUSTOM_URL = "https://llm.example.com/v1"
CUSTOM = Endpoint(Source.CUSTOM, proxy_url=CUSTOM_URL, api_key=SecretValue("sk-usage-test-1"))


def final_usage(deltas: list[Delta]) -> Usage | None:
    usage: Usage | None = None
    for delta in deltas:
        if delta.usage is not None:
            usage = delta.usage if usage is None else usage.merged(delta.usage)
    return usage


async def collect(hub: ProviderHub, endpoint: Endpoint) -> list[Delta]:
    return [d async for d in hub.provider(endpoint).stream_chat(REQUEST)]


def openai_stream(usage: dict[str, int] | None) -> bytes:
    events: list[tuple[str | None, object]] = [
        (None, openai_chunk("Hel")),
        (None, openai_chunk("lo", "stop")),
    ]
    if usage is not None:  # OpenAI's extra last chunk: no choices, the usage
        events.append((None, {"object": "chat.completion.chunk", "choices": [], "usage": usage}))
    events.append((None, "[DONE]"))
    return sse_bytes(events)


async def test_openai_usage_from_the_last_chunk(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=sse_response(
            openai_stream({"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13})
        )[0]
    )
    deltas = await collect(make_hub(), Endpoint(Source.OPENAI, api_key=SecretValue("sk-x-1")))
    assert final_usage(deltas) == Usage(11, 2)
    assert body_of(route.calls.last.request)["stream_options"] == {"include_usage": True}


async def test_mistral_usage_on_the_last_chunk_without_asking(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    last = openai_chunk("!", "stop")
    last["usage"] = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    data = sse_bytes([(None, openai_chunk("Hi")), (None, last), (None, "[DONE]")])
    route = router.post("https://api.mistral.ai/v1/chat/completions").mock(
        return_value=sse_response(data)[0]
    )
    deltas = await collect(make_hub(), Endpoint(Source.MISTRAL, api_key=SecretValue("mk-1")))
    assert final_usage(deltas) == Usage(7, 3)
    assert "stream_options" not in body_of(route.calls.last.request)


def claude_stream(delta_usage: dict[str, int], *, cut: bool = False) -> bytes:
    start = {
        "type": "message_start",
        "message": {
            "usage": {
                "input_tokens": 20,
                "cache_creation_input_tokens": 5,
                "cache_read_input_tokens": 100,
                "output_tokens": 1,
            }
        },
    }
    text = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Ok"},
    }
    events: list[tuple[str | None, object]] = [
        ("message_start", start),
        ("content_block_delta", text),
    ]
    if not cut:
        events += [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": delta_usage,
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    return sse_bytes(events)


@pytest.mark.parametrize(
    ("delta_usage", "expected"),
    [
        ({"output_tokens": 15}, Usage(125, 15)),  # input from message_start, cache included
        ({"input_tokens": 30, "output_tokens": 15}, Usage(30, 15)),  # cumulative: the newer one
    ],
)
async def test_claude_usage_from_message_start_and_cumulative_delta(
    delta_usage: dict[str, int],
    expected: Usage,
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
) -> None:
    router.post("https://api.anthropic.com/v1/messages").mock(
        return_value=sse_response(claude_stream(delta_usage))[0]
    )
    deltas = await collect(make_hub(), Endpoint(Source.CLAUDE, api_key=SecretValue("sk-ant-1")))
    assert "".join(d.text for d in deltas) == "Ok"
    assert final_usage(deltas) == expected


async def test_claude_cut_stream_keeps_the_input_count(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.post("https://api.anthropic.com/v1/messages").mock(
        return_value=sse_response(claude_stream({}, cut=True))[0]
    )
    seen: list[Delta] = []
    with pytest.raises(Exception, match="ended the stream"):
        async for delta in (
            make_hub()
            .provider(Endpoint(Source.CLAUDE, api_key=SecretValue("sk-ant-1")))
            .stream_chat(REQUEST)
        ):
            seen.append(delta)
    # message_start's output_tokens (1) is a placeholder: the cut answer's is estimated.
    assert final_usage(seen) == Usage(125, None)


def refusal() -> httpx.Response:
    return httpx.Response(
        422,
        json={"detail": [{"type": "extra_forbidden", "loc": ["body", "stream_options"]}]},
    )


async def test_custom_endpoint_refusing_stream_options_is_asked_again_and_remembered(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "stream_options" in body_of(request):
            return refusal()
        return sse_response(openai_stream(None))[0]

    route = router.post(f"{CUSTOM_URL}/chat/completions").mock(side_effect=answer)
    hub = make_hub()
    deltas = await collect(hub, CUSTOM)
    assert "".join(d.text for d in deltas) == "Hello"
    assert final_usage(deltas) is None  # the engine estimates it
    assert ["stream_options" in body_of(c.request) for c in route.calls] == [True, False]
    # The next turn goes straight to the form that works.
    await collect(hub, CUSTOM)
    assert ["stream_options" in body_of(c.request) for c in route.calls] == [True, False, False]


async def test_endpoint_taking_stream_options_is_not_asked_twice(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post(f"{CUSTOM_URL}/chat/completions").mock(
        side_effect=lambda request: sse_response(openai_stream({"prompt_tokens": 3}))[0]
    )
    hub = make_hub()
    assert final_usage(await collect(hub, CUSTOM)) == Usage(3, None)
    route.side_effect = lambda request: httpx.Response(
        400, json={"error": {"message": "context too long", "type": "invalid_request_error"}}
    )
    with pytest.raises(BadRequest, match="context too long"):
        await collect(hub, CUSTOM)
    # Known to take the field: a 400 is the request's own fault, not asked again.
    assert ["stream_options" in body_of(c.request) for c in route.calls] == [True, True]


async def test_a_bad_request_either_way_shows_the_error_without_the_field(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    responses = iter(
        [
            refusal(),
            httpx.Response(400, json={"error": {"message": "no such model", "type": "x"}}),
            sse_response(openai_stream({"prompt_tokens": 3, "completion_tokens": 1}))[0],
        ]
    )
    route = router.post(f"{CUSTOM_URL}/chat/completions").mock(
        side_effect=lambda request: next(responses)
    )
    hub = make_hub()
    with pytest.raises(BadRequest, match="no such model"):
        await collect(hub, CUSTOM)
    # Nothing was learnt: the next turn asks for usage again.
    assert final_usage(await collect(hub, CUSTOM)) == Usage(3, 1)
    assert ["stream_options" in body_of(c.request) for c in route.calls] == [True, False, True]
