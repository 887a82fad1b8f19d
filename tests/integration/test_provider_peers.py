"""The provider layer against real OpenAI-compatible servers started on loopback.

LiteLLM (mock models, master key) stands in for a user's proxy; llama.cpp runs a real
135M model. Assertions are about shape and typed errors, never about model wording.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.fields import REGISTRY
from bot.providers import (
    AuthError,
    ChatRequest,
    Delta,
    Endpoint,
    ProviderHub,
    ProviderSettings,
    RateLimited,
)
from bot.types import ChatMessage, Role, SecretValue, Source
from tests.peers.litellm import LiteLLMPeer
from tests.peers.llamacpp import LlamaCppPeer

HELLO = (ChatMessage(Role.USER, "Say hello in one short sentence."),)


@pytest.fixture
async def hub() -> AsyncIterator[ProviderHub]:
    # Peers listen on 127.0.0.1, which the endpoint policy refuses unless allowed.
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True))
    try:
        yield hub
    finally:
        await hub.aclose()


def custom(url: str, key: str | None = None) -> Endpoint:
    return Endpoint(
        source=Source.CUSTOM,
        proxy_url=url,
        api_key=SecretValue(key) if key is not None else None,
    )


async def collect(hub: ProviderHub, endpoint: Endpoint, request: ChatRequest) -> list[Delta]:
    return [delta async for delta in hub.provider(endpoint).stream_chat(request)]


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def finish_reasons(deltas: list[Delta]) -> list[str]:
    return [d.finish_reason for d in deltas if d.finish_reason is not None]


def assert_text_then_finish(deltas: list[Delta]) -> None:
    """Every text delta arrives before the (single) finish reason."""
    assert len(finish_reasons(deltas)) == 1, deltas
    finish_at = next(i for i, d in enumerate(deltas) if d.finish_reason is not None)
    last_text_at = max(i for i, d in enumerate(deltas) if d.text)
    assert last_text_at <= finish_at, deltas


# --- LiteLLM proxy as a custom endpoint -----------------------------------------------


def custom_options(settings: dict[str, object]) -> dict[str, object]:
    """Settings by their registry names, as the engine sends them to a custom endpoint."""
    return REGISTRY.request_options(settings, Source.CUSTOM)


@pytest.mark.litellm
async def test_litellm_status_ok_with_master_key(
    litellm_peer: LiteLLMPeer, hub: ProviderHub
) -> None:
    result = await hub.provider(custom(litellm_peer.url_v1, litellm_peer.master_key)).check_status()
    assert result.ok, result.reason
    assert {m.id for m in result.models} == set(litellm_peer.models)
    assert result.base_url.rstrip("/") == litellm_peer.url_v1
    assert not result.corrected


@pytest.mark.litellm
@pytest.mark.parametrize("key", ["sk-wrong-" + "0" * 16, None], ids=["wrong-key", "no-key"])
async def test_litellm_status_fails_without_the_right_key(
    litellm_peer: LiteLLMPeer, hub: ProviderHub, key: str | None
) -> None:
    provider = hub.provider(custom(litellm_peer.url_v1, key))
    result = await provider.check_status()
    assert not result.ok
    assert result.reason
    assert result.models == ()
    if key is not None:
        assert key not in result.reason
    assert litellm_peer.master_key not in result.reason
    # The same refusal, typed, on the path that raises.
    with pytest.raises(AuthError) as caught:
        await provider.list_models()
    if key is not None:
        assert key not in str(caught.value)


@pytest.mark.litellm
async def test_litellm_external_model_list(litellm_peer: LiteLLMPeer, hub: ProviderHub) -> None:
    models = await hub.provider(custom(litellm_peer.url_v1, litellm_peer.master_key)).list_models()
    assert sorted(m.id for m in models) == sorted(litellm_peer.models)


@pytest.mark.litellm
async def test_litellm_streaming_chat(litellm_peer: LiteLLMPeer, hub: ProviderHub) -> None:
    request = ChatRequest(
        model=litellm_peer.model,
        messages=HELLO,
        system_prompt="Be brief.",
        options=custom_options({"max_tokens": 64}),
    )
    deltas = await collect(hub, custom(litellm_peer.url_v1, litellm_peer.master_key), request)
    assert text_of(deltas) == litellm_peer.mock_text
    # The proxy cuts the mock into 3-character chunks: more than one text delta proves
    # the answer was streamed rather than fetched whole.
    assert sum(1 for d in deltas if d.text) > 1
    assert finish_reasons(deltas) == ["stop"]
    assert_text_then_finish(deltas)
    assert not any(d.reasoning for d in deltas)
    for usage in (d.usage for d in deltas if d.usage is not None):
        assert usage.completion_tokens is None or usage.completion_tokens > 0


@pytest.mark.litellm
async def test_litellm_429_maps_to_rate_limited(
    litellm_peer: LiteLLMPeer, hub: ProviderHub
) -> None:
    endpoint = custom(litellm_peer.url_v1, litellm_peer.master_key)
    request = ChatRequest(
        model=litellm_peer.rate_limited_model,
        messages=HELLO,
        options=custom_options({"max_tokens": 16}),
    )
    with pytest.raises(RateLimited) as streamed:
        await collect(hub, endpoint, request)
    assert streamed.value.partial == ""
    assert litellm_peer.master_key not in str(streamed.value)


@pytest.mark.litellm
async def test_litellm_url_without_v1(litellm_peer: LiteLLMPeer, hub: ProviderHub) -> None:
    # LiteLLM serves /models and /chat/completions at the root as well as under /v1,
    # so the URL as typed already works: the status check must accept it unchanged
    # (correcting a working URL would be a false positive). The llama.cpp tests below
    # are the ones that need, and prove, the automatic /v1.
    provider = hub.provider(custom(litellm_peer.url, litellm_peer.master_key))
    result = await provider.check_status()
    assert result.ok, result.reason
    assert {m.id for m in result.models} == set(litellm_peer.models)
    assert result.base_url.rstrip("/") in {litellm_peer.url, litellm_peer.url_v1}
    assert result.corrected == (result.base_url.rstrip("/") == litellm_peer.url_v1)
    request = ChatRequest(
        model=litellm_peer.model, messages=HELLO, options=custom_options({"max_tokens": 64})
    )
    deltas = [d async for d in provider.stream_chat(request)]
    assert text_of(deltas) == litellm_peer.mock_text


# --- llama.cpp server with a real model ------------------------------------------------


@pytest.mark.llamacpp
async def test_llamacpp_status_and_models(llamacpp_peer: LlamaCppPeer, hub: ProviderHub) -> None:
    provider = hub.provider(custom(llamacpp_peer.url_v1))
    result = await provider.check_status()
    assert result.ok, result.reason
    assert [m.id for m in result.models] == [llamacpp_peer.model]
    assert not result.corrected
    assert [m.id for m in await provider.list_models()] == [llamacpp_peer.model]


@pytest.mark.llamacpp
async def test_llamacpp_status_corrects_missing_v1(
    llamacpp_peer: LlamaCppPeer, hub: ProviderHub
) -> None:
    # llama-cpp-python answers only under /v1: {url}/models is a 404 here.
    result = await hub.provider(custom(llamacpp_peer.url)).check_status()
    assert result.ok, result.reason
    assert result.corrected
    assert result.base_url.rstrip("/") == llamacpp_peer.url_v1
    assert [m.id for m in result.models] == [llamacpp_peer.model]


@pytest.mark.llamacpp
async def test_llamacpp_streams_a_real_answer(
    llamacpp_peer: LlamaCppPeer, hub: ProviderHub
) -> None:
    request = ChatRequest(
        model=llamacpp_peer.model,
        messages=HELLO,
        system_prompt="You are a friendly assistant.",
        options=custom_options({"max_tokens": 48, "temperature": 0.0, "seed": 7}),
    )
    deltas = await collect(hub, custom(llamacpp_peer.url_v1), request)
    text_deltas = [d for d in deltas if d.text]
    # A real model streams token by token: several deltas, bounded by max_tokens.
    assert 2 <= len(text_deltas) <= 48, deltas
    assert text_of(deltas).strip()
    assert finish_reasons(deltas)[0] in {"stop", "length"}
    assert_text_then_finish(deltas)


@pytest.mark.llamacpp
async def test_llamacpp_max_tokens_ends_with_length(
    llamacpp_peer: LlamaCppPeer, hub: ProviderHub
) -> None:
    request = ChatRequest(
        model=llamacpp_peer.model,
        messages=(ChatMessage(Role.USER, "Write a long story about a dragon and a knight."),),
        options=custom_options({"max_tokens": 4, "temperature": 0.0, "seed": 7}),
    )
    deltas = await collect(hub, custom(llamacpp_peer.url_v1), request)
    assert 1 <= sum(1 for d in deltas if d.text) <= 4, deltas
    assert finish_reasons(deltas) == ["length"]


@pytest.mark.llamacpp
async def test_llamacpp_chat_without_v1_is_corrected(
    llamacpp_peer: LlamaCppPeer, hub: ProviderHub
) -> None:
    # No status check first: the chat path itself must find /v1 (issue 3: "/models
    # (or chat) answers 404").
    request = ChatRequest(
        model=llamacpp_peer.model,
        messages=HELLO,
        options=custom_options({"max_tokens": 16, "temperature": 0.0, "seed": 7}),
    )
    deltas = await collect(hub, custom(llamacpp_peer.url), request)
    assert text_of(deltas).strip()
    assert finish_reasons(deltas)[0] in {"stop", "length"}


@pytest.mark.llamacpp
async def test_llamacpp_takes_the_preset_samplers(
    llamacpp_peer: LlamaCppPeer, hub: ProviderHub
) -> None:
    """A custom endpoint accepts every sampler a preset brings (the exact bodies are in
    tests/unit/providers/test_requests.py). Outputs are not compared: llama-cpp-python
    reuses its cache across requests, so even greedy answers depend on what ran before."""
    settings = {
        "max_tokens": 24,
        "temperature": 1.2,
        "seed": 3,
        "top_k": 20,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.2,
        "reasoning_effort": "low",
    }
    request = ChatRequest(
        model=llamacpp_peer.model, messages=HELLO, options=custom_options(settings)
    )
    assert set(request.options) >= {"top_k", "frequency_penalty", "reasoning_effort"}
    deltas = await collect(hub, custom(llamacpp_peer.url_v1), request)
    assert text_of(deltas).strip()
    assert finish_reasons(deltas)[0] in {"stop", "length"}


@pytest.mark.llamacpp
async def test_llamacpp_as_the_openai_sources_reverse_proxy_keeps_max_tokens(
    llamacpp_peer: LlamaCppPeer, hub: ProviderHub
) -> None:
    """The seed's steps for a local server: source OpenAI, no key, its URL as the reverse
    proxy. The OpenAI source's max_completion_tokens was ignored here: `max_tokens 4`
    came back as hundreds of tokens ending in "stop"."""
    request = ChatRequest(
        model=llamacpp_peer.model,
        messages=(ChatMessage(Role.USER, "Write a long story about a dragon and a knight."),),
        options=REGISTRY.request_options(
            {"max_tokens": 4, "temperature": 0.0, "seed": 7}, Source.OPENAI
        ),
    )
    endpoint = Endpoint(Source.OPENAI, proxy_url=llamacpp_peer.url_v1)
    deltas = await collect(hub, endpoint, request)
    assert 1 <= sum(1 for d in deltas if d.text) <= 4, deltas
    assert finish_reasons(deltas) == ["length"]
