"""A secret an endpoint echoes where its error text is cut for display: taken out whole
before the cut, so no part of it is left before the `…` (a hostile endpoint can place
the echo anywhere relative to the cut)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
import respx

from bot.providers import ChatRequest, Endpoint, ProviderError, ProviderHub
from bot.types import ChatMessage, Role, SecretValue, Source

from .conftest import sse_bytes, sse_response

PASSWORD = "Tr0ub4dor&3-horse-battery"  # no key shape: only the known secret finds it
URL = "https://proxy.example.net/v1"
REQUEST = ChatRequest(model="m", messages=(ChatMessage(Role.USER, "hi"),))


def endpoint(source: Source) -> Endpoint:
    return Endpoint(source, proxy_url=URL, proxy_password=SecretValue(PASSWORD))


def echo(pad: int) -> str:
    return "ab " * (pad // 3) + "x" * (pad % 3) + f" {PASSWORD} tail"


def leaked(text: str) -> str | None:
    """The longest start of the password (4 characters or more) left in `text`."""
    for n in range(len(PASSWORD), 3, -1):
        if PASSWORD[:n] in text:
            return PASSWORD[:n]
    return None


async def failure(hub: ProviderHub, source: Source) -> str:
    with pytest.raises(ProviderError) as caught:
        async for _ in hub.provider(endpoint(source)).stream_chat(REQUEST):
            pass
    return str(caught.value)


PADS = range(270, 302)  # the echo straddles the 300-character cut at one of these


@pytest.mark.parametrize("pad", PADS)
async def test_an_openai_error_event_echoing_the_password_keeps_none_of_it(
    pad: int, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    event = {"error": {"message": echo(pad), "type": "server_error"}}
    response, _ = sse_response(sse_bytes([(None, event)]))
    router.post(f"{URL}/chat/completions").mock(return_value=response)
    text = await failure(make_hub(), Source.OPENAI)
    assert "The provider said" in text and leaked(text) is None, text


@pytest.mark.parametrize("pad", PADS)
async def test_a_claude_error_event_echoing_the_password_keeps_none_of_it(
    pad: int, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    event = {"type": "error", "error": {"type": "api_error", "message": echo(pad)}}
    response, _ = sse_response(sse_bytes([("error", event)]))
    router.post(f"{URL}/messages").mock(return_value=response)
    text = await failure(make_hub(), Source.CLAUDE)
    assert "The provider said" in text and leaked(text) is None, text


@pytest.mark.parametrize("pad", PADS)
async def test_an_error_body_sent_as_the_stream_keeps_none_of_it(
    pad: int, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    body = json.dumps({"error": {"message": echo(pad), "type": "server_error"}}).encode()
    response, _ = sse_response(body)
    router.post(f"{URL}/chat/completions").mock(return_value=response)
    text = await failure(make_hub(), Source.CUSTOM)
    assert "The provider said" in text and leaked(text) is None, text


@pytest.mark.parametrize("pad", PADS)
async def test_a_fastapi_detail_list_echoing_the_password_keeps_none_of_it(
    pad: int, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    body = {"detail": [{"msg": echo(pad - 10), "loc": ["body"]}]}
    router.post(f"{URL}/chat/completions").mock(return_value=httpx.Response(422, json=body))
    text = await failure(make_hub(), Source.CUSTOM)
    assert "The provider said" in text and leaked(text) is None, text
