"""Each source's exact request (URL, headers, body) for a representative chat."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest
import respx

from bot.fields import REGISTRY, FieldError
from bot.providers import (
    AuthError,
    BadRequest,
    ChatRequest,
    Endpoint,
    EndpointPolicy,
    ProviderHub,
    ProviderSettings,
    _http,
)
from bot.providers.convert import same_role_runs
from bot.types import ChatMessage, Image, Role, SecretValue, Source

from .conftest import body_of, openai_chunk, sse_bytes, sse_response

KEY = "sk-test-key-0001"
PASSWORD = "proxy-pass-0002"
SYSTEM = "You are Bot, a helpful assistant."

# The channel's settings by their registry names, as /params stores them.
SETTINGS: dict[str, object] = {
    "temperature": 0.7,
    "top_p": 0.9,
    "max_tokens": 256,
    "stop": ("\nUser:",),
    "seed": 42,
    "context": 4096,  # used for the budget, never sent
    "reasoning": True,  # shown or not, never sent
}
MESSAGES = (
    ChatMessage(Role.USER, "Hi all", name="Alice"),
    ChatMessage(Role.USER, "Hello", name="Bob"),
    ChatMessage(Role.ASSISTANT, "Hi Alice and Bob!"),
    ChatMessage(Role.USER, "Tell a joke", name="Alice"),
)


def chat(
    source: Source,
    settings: dict[str, object] = SETTINGS,
    *,
    model: str = "some-model",
    messages: tuple[ChatMessage, ...] = MESSAGES,
    system: str | None = SYSTEM,
) -> ChatRequest:
    """The request the engine builds for `source` from the channel's settings."""
    return ChatRequest(
        model=model,
        messages=messages,
        system_prompt=system,
        options=REGISTRY.request_options(settings, source),
        multi_user=True,
    )


CHAT = chat(Source.OPENAI)

OPENAI_MESSAGES = [
    {"role": "system", "content": SYSTEM},
    # Two user turns in a row are one (chat templates such as Mistral's refuse two).
    {"role": "user", "content": "Alice: Hi all\n\nBob: Hello"},
    {"role": "assistant", "content": "Hi Alice and Bob!"},
    {"role": "user", "content": "Alice: Tell a joke"},
]

OPENAI_STREAM = sse_bytes(
    [(None, openai_chunk("Why")), (None, openai_chunk(" not?", "stop")), (None, "[DONE]")]
)
CLAUDE_STREAM = sse_bytes(
    [
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 9}}}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Ok"},
            },
        ),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 1},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
)


async def drain(hub: ProviderHub, endpoint: Endpoint, request: ChatRequest = CHAT) -> str:
    return "".join([d.text async for d in hub.provider(endpoint).stream_chat(request)])


def only_request(route: respx.Route) -> httpx.Request:
    assert route.call_count == 1
    return route.calls.last.request


def no_secret_in(request: httpx.Request, secret: str) -> None:
    assert secret not in str(request.url)
    assert all(secret not in v for v in request.headers.values())
    assert secret.encode() not in request.content


async def test_openai_request(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=sse_response(OPENAI_STREAM)[0]
    )
    endpoint = Endpoint(Source.OPENAI, api_key=SecretValue(KEY))
    assert await drain(make_hub(), endpoint) == "Why not?"
    request = only_request(route)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "text/event-stream"
    assert body_of(request) == {
        "model": "some-model",
        "messages": OPENAI_MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.7,
        "top_p": 0.9,
        "max_completion_tokens": 256,
        "stop": ["\nUser:"],
        "seed": 42,
    }


async def test_openai_minimal_request_sends_no_unset_fields(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=sse_response(OPENAI_STREAM)[0]
    )
    request = ChatRequest(model="m", messages=(ChatMessage(Role.USER, "hi", name="Al"),))
    await drain(make_hub(), Endpoint(Source.OPENAI, api_key=SecretValue(KEY)), request)
    assert body_of(only_request(route)) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],  # one-person chat: no name prefix
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_openai_without_key_fails_before_any_request(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    with pytest.raises(AuthError, match="No API key"):
        await drain(make_hub(), Endpoint(Source.OPENAI))
    assert not router.calls


@pytest.mark.parametrize("source", [Source.OPENAI, Source.MISTRAL, Source.CUSTOM])
async def test_proxy_password_replaces_key(
    source: Source, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://proxy.example.net/v1/chat/completions").mock(
        return_value=sse_response(OPENAI_STREAM)[0]
    )
    endpoint = Endpoint(
        source,
        proxy_url="https://proxy.example.net/v1/",
        api_key=SecretValue(KEY),
        proxy_password=SecretValue(PASSWORD),
    )
    await drain(make_hub(), endpoint)
    request = only_request(route)
    assert request.headers["authorization"] == f"Bearer {PASSWORD}"
    no_secret_in(request, KEY)


async def test_proxy_without_password_sends_no_key(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://proxy.example.net/v1/chat/completions").mock(
        return_value=sse_response(OPENAI_STREAM)[0]
    )
    endpoint = Endpoint(
        Source.OPENAI, proxy_url="https://proxy.example.net/v1", api_key=SecretValue(KEY)
    )
    await drain(make_hub(), endpoint)
    request = only_request(route)
    assert "authorization" not in request.headers
    no_secret_in(request, KEY)


@pytest.mark.parametrize(
    ("proxy", "model", "field"),
    [
        (None, "gpt-4o", "max_completion_tokens"),  # OpenAI's own API: for every model
        ("https://proxy.example.net/v1", "local-model", "max_tokens"),
        ("https://proxy.example.net/v1", "gpt-4o", "max_tokens"),
        ("https://proxy.example.net/v1", "o3-mini", "max_completion_tokens"),
        ("https://proxy.example.net/v1", "openai/o4-mini", "max_completion_tokens"),
        ("https://proxy.example.net/v1", "gpt-5-mini", "max_completion_tokens"),
        # A fine-tuned o-series model (OpenAI's reinforcement fine-tuning): OpenAI's own
        # API behind a logging gateway refuses max_tokens for it as for o4-mini.
        (
            "https://proxy.example.net/v1",
            "ft:o4-mini-2025-04-16:acme::B1x2",
            "max_completion_tokens",
        ),
        ("https://proxy.example.net/v1", "ft:gpt-4o-mini-2024-07-18:acme::C3", "max_tokens"),
    ],
)
async def test_openai_behind_a_proxy_sends_max_tokens_unless_the_model_needs_the_other(
    proxy: str | None,
    model: str,
    field: str,
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
) -> None:
    """The seed's way to a local server (source OpenAI, a reverse proxy URL) sent
    max_completion_tokens, which LM Studio, LocalAI and llama.cpp ignore: /params
    max_tokens limited nothing there (tests/integration/test_provider_peers.py)."""
    base = proxy or "https://api.openai.com/v1"
    route = router.post(f"{base}/chat/completions").mock(
        return_value=sse_response(OPENAI_STREAM)[0]
    )
    endpoint = Endpoint(Source.OPENAI, proxy_url=proxy, api_key=SecretValue(KEY))
    await drain(make_hub(), endpoint, chat(Source.OPENAI, model=model))
    body = body_of(only_request(route))
    other = {"max_tokens", "max_completion_tokens"} - {field}
    assert body[field] == 256 and not other & set(body)


# OpenAI's answer (and Azure OpenAI's) to max_tokens for an o-series or GPT-5 model.
REFUSED_MAX_TOKENS = {
    "error": {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }
}
# A server that knows only the older name, refusing the newer one.
REFUSED_COMPLETION_TOKENS = {
    "error": {
        "message": "Unrecognized request argument supplied: max_completion_tokens; this "
        "server takes max_tokens",
        "type": "invalid_request_error",
    }
}


def refusing(field: str, refusal: dict[str, object]) -> Callable[[httpx.Request], httpx.Response]:
    """An endpoint refusing requests that carry `field`, answering the others."""

    def answer(request: httpx.Request) -> httpx.Response:
        if field in body_of(request):
            return httpx.Response(400, json=refusal)
        return sse_response(OPENAI_STREAM)[0]

    return answer


def length_fields(route: respx.Route) -> list[str]:
    """The name the length limit went under in each request the route got."""
    names = ("max_tokens", "max_completion_tokens")
    return ["/".join(n for n in names if n in body_of(c.request)) for c in route.calls]


@pytest.mark.parametrize("source", [Source.OPENAI, Source.CUSTOM])
async def test_a_deployment_refusing_max_tokens_is_asked_with_max_completion_tokens(
    source: Source, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """An Azure or OpenAI deployment of an o-series model under a name of its own
    (`my-reasoner`) behind a proxy or as a custom endpoint got max_tokens, and the
    user saw OpenAI's 400 "Use 'max_completion_tokens' instead" on every turn."""
    base = "https://proxy.example.net/v1"
    route = router.post(f"{base}/chat/completions").mock(
        side_effect=refusing("max_tokens", REFUSED_MAX_TOKENS)
    )
    hub = make_hub(max_retries=0)
    endpoint = Endpoint(source, proxy_url=base, api_key=SecretValue(KEY))
    assert await drain(hub, endpoint, chat(source, model="my-reasoner")) == "Why not?"
    assert length_fields(route) == ["max_tokens", "max_completion_tokens"]
    assert body_of(route.calls.last.request)["max_completion_tokens"] == 256
    # Remembered for this model: its next turn is asked once, the way that works; another
    # model of the endpoint still gets max_tokens.
    assert await drain(hub, endpoint, chat(source, model="my-reasoner")) == "Why not?"
    assert length_fields(route)[2:] == ["max_completion_tokens"]
    route.side_effect = lambda request: sse_response(OPENAI_STREAM)[0]
    await drain(hub, endpoint, chat(source, model="local-model"))
    assert length_fields(route)[3:] == ["max_tokens"]


def test_the_models_whose_length_name_is_remembered_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any id a channel names may be remembered: a bounded dict, not one that grows with
    every name typed."""
    monkeypatch.setattr(_http, "_LENGTH_FIELDS_KEPT", 3)
    transport = _http.Transport(ProviderSettings(), EndpointPolicy(), asyncio.sleep)
    for i in range(3):
        transport.remember_length_field(("b", f"m{i}"), "max_completion_tokens")
    transport.remember_length_field(("b", "m0"), "max_tokens")  # known: kept with the rest
    assert len(transport.length_field) == 3
    transport.remember_length_field(("b", "m3"), "max_completion_tokens")
    assert transport.length_field == {("b", "m3"): "max_completion_tokens"}


async def test_a_server_refusing_max_completion_tokens_is_asked_with_max_tokens(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """The reverse: an o-series name behind a proxy gets max_completion_tokens, which a
    server knowing only max_tokens refuses in words that name both."""
    base = "https://proxy.example.net/v1"
    route = router.post(f"{base}/chat/completions").mock(
        side_effect=refusing("max_completion_tokens", REFUSED_COMPLETION_TOKENS)
    )
    endpoint = Endpoint(Source.OPENAI, proxy_url=base, api_key=SecretValue(KEY))
    hub = make_hub(max_retries=0)
    assert await drain(hub, endpoint, chat(Source.OPENAI, model="o3-mini")) == "Why not?"
    assert length_fields(route) == ["max_completion_tokens", "max_tokens"]


@pytest.mark.parametrize(
    ("said", "calls"),
    [
        # Names only the field sent: about its value, not its name. Asked once.
        ("max_tokens is too large: 100000. This model supports at most 4096.", 1),
        # Refused under both names: the second answer is shown, no third request.
        ("Unsupported parameter: 'max_tokens'. Use 'max_completion_tokens' instead.", 2),
    ],
    ids=["value", "both-names"],
)
async def test_a_length_limit_refused_otherwise_is_shown_after_one_rename_at_most(
    said: str, calls: int, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    base = "https://proxy.example.net/v1"
    refusal = {"error": {"message": said, "type": "invalid_request_error"}}
    route = router.post(f"{base}/chat/completions").mock(
        return_value=httpx.Response(400, json=refusal)
    )
    endpoint = Endpoint(Source.OPENAI, proxy_url=base, api_key=SecretValue(KEY))
    with pytest.raises(BadRequest) as info:
        await drain(make_hub(max_retries=0), endpoint, chat(Source.OPENAI, model="my-model"))
    assert route.call_count == calls
    assert said.split(":")[0] in str(info.value)


async def test_a_refused_length_name_and_refused_usage_are_both_fixed_on_the_first_turn(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """A custom endpoint that refuses max_tokens and does not know stream_options: each
    fix once, in one turn, then both are remembered."""
    base = "https://llm.example.com/v1"

    def answer(request: httpx.Request) -> httpx.Response:
        body = body_of(request)
        if "max_tokens" in body:
            return httpx.Response(400, json=REFUSED_MAX_TOKENS)
        if "stream_options" in body:
            return httpx.Response(
                422,
                json={"detail": [{"type": "extra_forbidden", "loc": ["body", "stream_options"]}]},
            )
        return sse_response(OPENAI_STREAM)[0]

    route = router.post(f"{base}/chat/completions").mock(side_effect=answer)
    hub = make_hub(max_retries=0)
    endpoint = Endpoint(Source.CUSTOM, proxy_url=base)
    request = chat(Source.CUSTOM, model="my-reasoner")
    assert await drain(hub, endpoint, request) == "Why not?"
    assert await drain(hub, endpoint, request) == "Why not?"
    asked = [
        ("stream_options" in body_of(c.request), f)
        for c, f in zip(route.calls, length_fields(route), strict=True)
    ]
    assert asked == [
        (True, "max_tokens"),
        (True, "max_completion_tokens"),
        (False, "max_completion_tokens"),
        (False, "max_completion_tokens"),  # the next turn: once, as it works
    ]


async def test_claude_request_with_role_fixups(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://api.anthropic.com/v1/messages").mock(
        return_value=sse_response(CLAUDE_STREAM)[0]
    )
    request = chat(
        Source.CLAUDE,
        {**SETTINGS, "temperature": 1.5},
        model="claude-sonnet-4-5",
        messages=(
            ChatMessage(Role.ASSISTANT, "Welcome to the channel!"),
            ChatMessage(Role.USER, "Hi", name="Alice"),
            ChatMessage(Role.USER, "", name="Carol"),
            ChatMessage(Role.USER, "Yo", name="Bob"),
            ChatMessage(Role.ASSISTANT, "Hey both."),
        ),
    )
    endpoint = Endpoint(Source.CLAUDE, api_key=SecretValue(KEY))
    assert await drain(make_hub(), endpoint, request) == "Ok"
    sent = only_request(route)
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert body_of(sent) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": SYSTEM,
        "messages": [
            {"role": "user", "content": "[Start a new chat]"},
            {"role": "assistant", "content": "Welcome to the channel!"},
            {"role": "user", "content": "Alice: Hi\n\nBob: Yo"},
            {"role": "assistant", "content": "Hey both."},
            {"role": "user", "content": "[Continue]"},
        ],
        "stream": True,
        "temperature": 1.0,  # clamped to Claude's range; top_p left out (not both)
        "stop_sequences": ["\nUser:"],  # and no seed: Claude has none
    }


async def test_claude_always_sends_max_tokens(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://api.anthropic.com/v1/messages").mock(
        return_value=sse_response(CLAUDE_STREAM)[0]
    )
    request = ChatRequest(model="c", messages=(ChatMessage(Role.USER, "hi"),))
    await drain(make_hub(), Endpoint(Source.CLAUDE, api_key=SecretValue(KEY)), request)
    body = body_of(only_request(route))
    assert body["max_tokens"] > 0
    assert "system" not in body and "temperature" not in body


async def test_claude_proxy_uses_password_as_api_key(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://proxy.example.net/claude/v1/messages").mock(
        return_value=sse_response(CLAUDE_STREAM)[0]
    )
    endpoint = Endpoint(
        Source.CLAUDE,
        proxy_url="https://proxy.example.net/claude/v1",
        api_key=SecretValue(KEY),
        proxy_password=SecretValue(PASSWORD),
    )
    await drain(make_hub(), endpoint)
    sent = only_request(route)
    assert sent.headers["x-api-key"] == PASSWORD
    no_secret_in(sent, KEY)


@pytest.mark.parametrize("safe_prompt", [True, False])
async def test_mistral_request(
    safe_prompt: bool, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://api.mistral.ai/v1/chat/completions").mock(
        return_value=sse_response(OPENAI_STREAM)[0]
    )
    request = chat(
        Source.MISTRAL,
        {"temperature": 0.3, "max_tokens": 100, "seed": 7, "safe_prompt": safe_prompt},
        model="mistral-small-latest",
        messages=(
            ChatMessage(Role.USER, "Hi", name="Alice"),
            ChatMessage(Role.ASSISTANT, "Hello Alice."),
            ChatMessage(Role.SYSTEM, "Bob joined."),
            ChatMessage(Role.USER, "Hey", name="Bob"),
            ChatMessage(Role.ASSISTANT, "Welcome Bob."),
        ),
    )
    endpoint = Endpoint(Source.MISTRAL, api_key=SecretValue(KEY))
    await drain(make_hub(), endpoint, request)
    sent = only_request(route)
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    expected = {
        "model": "mistral-small-latest",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Alice: Hi"},
            {"role": "assistant", "content": "Hello Alice."},
            {"role": "user", "content": "Bob joined.\n\nBob: Hey"},  # Mistral: never two
            {"role": "assistant", "content": "Welcome Bob."},
            {"role": "user", "content": "[Continue]"},
        ],
        "stream": True,
        "temperature": 0.3,
        "max_tokens": 100,
        "random_seed": 7,
    }
    if safe_prompt:
        expected["safe_prompt"] = True
    assert body_of(sent) == expected
    assert all("name" not in m for m in body_of(sent)["messages"])


async def test_custom_key_and_operator_headers(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://llm.example.com/v1/chat/completions").mock(
        return_value=sse_response(OPENAI_STREAM)[0]
    )
    hub = make_hub(custom_extra_headers={"x-team": "bots", "HTTP-Referer": "https://bot"})
    endpoint = Endpoint(
        Source.CUSTOM,
        proxy_url="https://llm.example.com/v1",
        api_key=SecretValue(KEY),
        operator_url=True,
    )
    await drain(hub, endpoint, chat(Source.CUSTOM))
    sent = only_request(route)
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["x-team"] == "bots"
    assert sent.headers["http-referer"] == "https://bot"
    body = body_of(sent)
    assert body["stream_options"] == {"include_usage": True}  # custom asks for usage too
    assert body["max_tokens"] == 256 and body["seed"] == 42


async def test_custom_without_key_sends_no_authorization(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://llm.example.com/v1/chat/completions").mock(
        return_value=sse_response(OPENAI_STREAM)[0]
    )
    await drain(make_hub(), Endpoint(Source.CUSTOM, proxy_url="https://llm.example.com/v1"))
    assert "authorization" not in only_request(route).headers


async def test_one_set_of_pools_per_endpoint_base(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.post("https://api.openai.com/v1/chat/completions").mock(
        side_effect=lambda request: sse_response(OPENAI_STREAM)[0]
    )
    router.get("https://api.openai.com/v1/models").mock(
        return_value=httpx.Response(200, json={"data": [{"id": "gpt"}]})
    )
    hub = make_hub()
    a = hub.provider(Endpoint(Source.OPENAI, api_key=SecretValue(KEY)))
    b = hub.provider(Endpoint(Source.OPENAI, api_key=SecretValue("sk-other-key-03")))
    await drain(hub, Endpoint(Source.OPENAI, api_key=SecretValue(KEY)))
    await a.list_models()
    await b.list_models()
    assert len(hub._transport._transports) == 1
    await hub.aclose()
    assert not hub._transport._transports


# -- images: text first, then the images in their order, in each source's own shape ---------

RED = Image("image/png", b"\x89PNG-red", "red.png", "a" * 64)
BLUE = Image("image/jpeg", b"\xff\xd8-blue", "blue.jpg", "b" * 64)
RED_B64 = base64.b64encode(RED.data).decode()
BLUE_B64 = base64.b64encode(BLUE.data).decode()


def picture_chat(source: Source) -> ChatRequest:
    return ChatRequest(
        model="vision-model",
        messages=(
            ChatMessage(Role.USER, "What is this?", images=(RED,)),
            ChatMessage(Role.ASSISTANT, "A red square."),
            ChatMessage(Role.USER, "And these two?", images=(RED, BLUE)),
        ),
    )


@pytest.mark.parametrize("source", [Source.OPENAI, Source.CUSTOM])
async def test_openai_shaped_image_parts(
    source: Source, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    url = "https://llm.example.com/v1" if source is Source.CUSTOM else None
    base = url or "https://api.openai.com/v1"
    route = router.post(f"{base}/chat/completions").mock(
        return_value=sse_response(OPENAI_STREAM)[0]
    )
    endpoint = Endpoint(source, proxy_url=url, api_key=SecretValue(KEY))
    await drain(make_hub(), endpoint, picture_chat(source))
    assert body_of(only_request(route))["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{RED_B64}"}},
            ],
        },
        {"role": "assistant", "content": "A red square."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And these two?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{RED_B64}"}},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{BLUE_B64}"}},
            ],
        },
    ]


async def test_claude_image_blocks(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://api.anthropic.com/v1/messages").mock(
        return_value=sse_response(CLAUDE_STREAM)[0]
    )
    await drain(
        make_hub(), Endpoint(Source.CLAUDE, api_key=SecretValue(KEY)), picture_chat(Source.CLAUDE)
    )

    def image(kind: str, data: str) -> dict[str, object]:
        return {"type": "image", "source": {"type": "base64", "media_type": kind, "data": data}}

    assert body_of(only_request(route))["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is this?"}, image("image/png", RED_B64)],
        },
        {"role": "assistant", "content": "A red square."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And these two?"},
                image("image/png", RED_B64),
                image("image/jpeg", BLUE_B64),
            ],
        },
    ]


async def test_claude_merges_an_image_only_turn_into_blocks(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://api.anthropic.com/v1/messages").mock(
        return_value=sse_response(CLAUDE_STREAM)[0]
    )
    request = ChatRequest(
        model="c",
        messages=(
            ChatMessage(Role.USER, "", images=(BLUE,)),
            ChatMessage(Role.USER, "Describe it", name="Al"),
        ),
    )
    await drain(make_hub(), Endpoint(Source.CLAUDE, api_key=SecretValue(KEY)), request)
    [turn] = body_of(only_request(route))["messages"]
    assert turn["content"] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": BLUE_B64},
        },
        {"type": "text", "text": "Describe it"},
    ]


async def test_mistral_image_url_strings(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post("https://api.mistral.ai/v1/chat/completions").mock(
        return_value=sse_response(OPENAI_STREAM)[0]
    )
    await drain(
        make_hub(), Endpoint(Source.MISTRAL, api_key=SecretValue(KEY)), picture_chat(Source.MISTRAL)
    )
    last = body_of(only_request(route))["messages"][-1]
    assert last == {
        "role": "user",
        "content": [
            {"type": "text", "text": "And these two?"},
            {"type": "image_url", "image_url": f"data:image/png;base64,{RED_B64}"},
            {"type": "image_url", "image_url": f"data:image/jpeg;base64,{BLUE_B64}"},
        ],
    }


# ---- samplers from presets: each source gets only the ones it takes, under its own name --

SAMPLERS: dict[str, object] = {
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "frequency_penalty": 0.4,
    "presence_penalty": -0.3,
    "reasoning_effort": "low",
}
SAMPLERS_SENT = {
    Source.OPENAI: {
        "temperature": 0.5,
        "top_p": 0.9,
        "frequency_penalty": 0.4,
        "presence_penalty": -0.3,
        "reasoning_effort": "low",
    },
    Source.CUSTOM: {
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "frequency_penalty": 0.4,
        "presence_penalty": -0.3,
        "reasoning_effort": "low",
    },
    Source.MISTRAL: {
        "temperature": 0.5,
        "top_p": 0.9,
        "frequency_penalty": 0.4,
        "presence_penalty": -0.3,
    },
    # Claude refuses temperature and top_p together; top_k it takes.
    Source.CLAUDE: {"temperature": 0.5, "top_k": 40},
}
CHAT_URLS = {
    Source.OPENAI: "https://api.openai.com/v1/chat/completions",
    Source.CUSTOM: "https://llm.example.com/v1/chat/completions",
    Source.MISTRAL: "https://api.mistral.ai/v1/chat/completions",
    Source.CLAUDE: "https://api.anthropic.com/v1/messages",
}
SAMPLED_KEYS = {*SAMPLERS, "thinking"}


def sampler_endpoint(source: Source) -> Endpoint:
    url = "https://llm.example.com/v1" if source is Source.CUSTOM else None
    return Endpoint(source, proxy_url=url, api_key=SecretValue(KEY))


@pytest.mark.parametrize("source", list(SAMPLERS_SENT))
async def test_samplers_reach_each_source_under_its_names(
    source: Source, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    stream = CLAUDE_STREAM if source is Source.CLAUDE else OPENAI_STREAM
    route = router.post(CHAT_URLS[source]).mock(return_value=sse_response(stream)[0])
    await drain(make_hub(), sampler_endpoint(source), chat(source, SAMPLERS))
    body = body_of(only_request(route))
    assert {k: v for k, v in body.items() if k in SAMPLED_KEYS} == SAMPLERS_SENT[source]


async def test_claude_thinking_budget_comes_on_top_of_the_answer_and_drops_samplers(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post(CHAT_URLS[Source.CLAUDE]).mock(return_value=sse_response(CLAUDE_STREAM)[0])
    settings = {**SAMPLERS, "max_tokens": 1000, "thinking_budget": 2048}
    await drain(make_hub(), sampler_endpoint(Source.CLAUDE), chat(Source.CLAUDE, settings))
    body = body_of(only_request(route))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 3048  # thinking counts against max_tokens
    assert not {"temperature", "top_p", "top_k"} & set(body)


async def test_claude_continue_with_a_prefill_sends_no_thinking(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post(CHAT_URLS[Source.CLAUDE]).mock(return_value=sse_response(CLAUDE_STREAM)[0])
    request = chat(
        Source.CLAUDE,
        {"thinking_budget": 2048},
        messages=(ChatMessage(Role.USER, "Hi"), ChatMessage(Role.ASSISTANT, "Once upon")),
    )
    request = replace(request, continue_answer=True)
    await drain(make_hub(), sampler_endpoint(Source.CLAUDE), request)
    body = body_of(only_request(route))
    assert "thinking" not in body
    assert body["messages"][-1] == {"role": "assistant", "content": "Once upon"}


@pytest.mark.parametrize(
    ("name", "typed", "why"),
    [
        ("top_k", "-1", "from 0 to 1000"),
        ("top_k", "4.5", "whole number"),
        ("frequency_penalty", "2.5", "from -2 to 2"),
        ("presence_penalty", "nan", "a number"),
        ("reasoning_effort", "extreme", "minimal, low, medium, high"),
        ("thinking_budget", "1000", "from 1024 to 128000"),
    ],
)
def test_sampler_values_out_of_range_are_refused_with_the_range(
    name: str, typed: str, why: str
) -> None:
    with pytest.raises(FieldError, match=why):
        REGISTRY.by_name[name].parse(typed)


def test_header_values_cleaned_from_answers_are_credentials_long_enough_to_be_one(
    make_hub: Callable[..., ProviderHub],
) -> None:
    """Review: `X-Bypass-Cache: true` and `X-Author: bots` had "true" and "bots" cut from
    every answer; a gateway's key in `X-Api-Key` is cleaned, a short value is not."""
    hub = make_hub(
        custom_extra_headers={
            "X-Bypass-Cache": "true",
            "X-Author": "bots",
            "X-Api-Key": "gateway-secret-5566",
            "X-Auth-Token": "short",
        }
    )
    endpoint = Endpoint(Source.CUSTOM, proxy_url="https://llm.example.com/v1", operator_url=True)
    assert hub.provider(endpoint).secrets() == ("gateway-secret-5566",)
    elsewhere = Endpoint(Source.CUSTOM, proxy_url="https://theirs.example/v1")
    assert hub.provider(elsewhere).secrets() == ()  # nothing of them is sent there


def test_answers_go_without_a_speakers_name() -> None:
    """Features probe: a character's greeting, stored under the card's name, reached the
    model as `Aurelia: Welcome aboard.` while its other answers had no name, which
    invites answers that begin with one. Only the askers are named."""
    messages = (
        ChatMessage(Role.ASSISTANT, "Welcome aboard.", name="Aurelia"),
        ChatMessage(Role.USER, "Hi", name="Bob"),
        ChatMessage(Role.USER, "And me", name="Ada"),
    )
    assert same_role_runs(messages, multi_user=True) == [
        (Role.ASSISTANT, [("Welcome aboard.", ())]),
        (Role.USER, [("Bob: Hi", ()), ("Ada: And me", ())]),
    ]
