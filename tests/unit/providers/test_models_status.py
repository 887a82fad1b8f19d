"""Status checks, model lists (with Anthropic paging), the custom `/v1` fix, the policy."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import httpx
import pytest
import respx

from bot.providers import (
    ChatRequest,
    Endpoint,
    EndpointNotAllowed,
    ModelInfo,
    NotFoundError,
    ProviderHub,
)
from bot.providers._provider import MAX_MODELS
from bot.types import ChatMessage, Role, SecretValue, Source
from tests.unit.test_network import read_request, serve

from .conftest import openai_chunk, sse_bytes, sse_response

REQUEST = ChatRequest(model="m", messages=(ChatMessage(Role.USER, "hi"),))
OPENAI_MODELS = {
    "object": "list",
    "data": [
        {"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "openai"},
        {"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "openai"},
    ],
}
GOOD = sse_bytes([(None, openai_chunk("ok", "stop")), (None, "[DONE]")])


async def test_openai_status_ok(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.get("https://api.openai.com/v1/models").mock(
        return_value=httpx.Response(200, json=OPENAI_MODELS)
    )
    result = (
        await make_hub()
        .provider(Endpoint(Source.OPENAI, api_key=SecretValue("sk-status-0001")))
        .check_status()
    )
    assert result.ok and not result.corrected
    assert result.base_url == "https://api.openai.com/v1"
    assert [m.id for m in result.models] == ["gpt-4o", "gpt-4o-mini"]
    assert "2 models" in result.reason
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-status-0001"


async def test_status_failure_is_reported_not_raised(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.get("https://api.openai.com/v1/models").mock(
        return_value=httpx.Response(401, json={"error": {"message": "Invalid key"}})
    )
    result = (
        await make_hub()
        .provider(Endpoint(Source.OPENAI, api_key=SecretValue("sk-status-0002")))
        .check_status()
    )
    assert not result.ok
    assert result.error_kind == "auth"
    assert "Invalid key" in result.reason


async def test_mistral_models_keep_extras(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.get("https://api.mistral.ai/v1/models").mock(
        return_value=httpx.Response(
            200,
            json={
                "object": "list",
                "data": [
                    {
                        "id": "pixtral-large-latest",
                        "name": "pixtral-large-2411",
                        "max_context_length": 131072,
                        "capabilities": {"completion_chat": True, "vision": True},
                    },
                    {"id": "mistral-small-latest", "capabilities": {"vision": False}},
                    {"no_id": True},
                ],
            },
        )
    )
    models = (
        await make_hub()
        .provider(Endpoint(Source.MISTRAL, api_key=SecretValue("mistral-key-0003")))
        .list_models()
    )
    assert models == [
        ModelInfo("pixtral-large-latest", "pixtral-large-2411", 131072, True),
        ModelInfo("mistral-small-latest", None, None, False),
    ]


async def test_claude_models_are_paged(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    def page(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-api-key"] == "sk-ant-page-0004"
        assert request.headers["anthropic-version"] == "2023-06-01"
        after = request.url.params.get("after_id")
        if after is None:
            return httpx.Response(
                200,
                json={
                    "data": [
                        {"id": "claude-a", "display_name": "Claude A", "type": "model"},
                        {"id": "claude-b", "display_name": "Claude B", "type": "model"},
                    ],
                    "has_more": True,
                    "first_id": "claude-a",
                    "last_id": "claude-b",
                },
            )
        assert after == "claude-b"
        return httpx.Response(
            200,
            json={
                "data": [{"id": "claude-c", "display_name": "Claude C", "type": "model"}],
                "has_more": False,
                "first_id": "claude-c",
                "last_id": "claude-c",
            },
        )

    route = router.get("https://api.anthropic.com/v1/models").mock(side_effect=page)
    result = (
        await make_hub()
        .provider(Endpoint(Source.CLAUDE, api_key=SecretValue("sk-ant-page-0004")))
        .check_status()
    )
    assert result.ok
    assert [(m.id, m.display_name) for m in result.models] == [
        ("claude-a", "Claude A"),
        ("claude-b", "Claude B"),
        ("claude-c", "Claude C"),
    ]
    assert route.call_count == 2
    assert route.calls[0].request.url.params["limit"] == "1000"


# -- custom endpoints: the automatic /v1 -----------------------------------------------


@pytest.mark.parametrize(
    "wrong",
    [
        httpx.Response(404, json={"detail": "Not Found"}),
        httpx.Response(
            200, text="<!doctype html><title>Web UI</title>", headers={"content-type": "text/html"}
        ),
        httpx.Response(200, text="Ollama is running"),
    ],
    ids=["404", "html", "plain-text"],
)
async def test_custom_status_adds_v1(
    wrong: httpx.Response, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.get("http://127.0.0.1:8080/models").mock(return_value=wrong)
    router.get("http://127.0.0.1:8080/v1/models").mock(
        return_value=httpx.Response(200, json={"data": [{"id": "smollm2"}]})
    )
    chat = router.post("http://127.0.0.1:8080/v1/chat/completions").mock(
        return_value=sse_response(GOOD)[0]
    )
    hub = make_hub(allow_private=True)
    endpoint = Endpoint(Source.CUSTOM, proxy_url="http://127.0.0.1:8080/")
    result = await hub.provider(endpoint).check_status()
    assert result.ok and result.corrected
    assert result.base_url == "http://127.0.0.1:8080/v1"
    assert "http://127.0.0.1:8080/v1" in result.reason and "did not answer" in result.reason
    # Later calls from any provider of this hub use the corrected URL.
    assert [m.id for m in await hub.provider(endpoint).list_models()] == ["smollm2"]
    text = "".join([d.text async for d in hub.provider(endpoint).stream_chat(REQUEST)])
    assert text == "ok" and chat.call_count == 1


async def test_custom_chat_first_also_corrects(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    wrong = router.post("https://llm.example.com/chat/completions").mock(
        return_value=httpx.Response(404, text="404 page not found")
    )
    router.get("https://llm.example.com/v1/models").mock(
        return_value=httpx.Response(200, json={"data": [{"id": "x"}]})
    )
    right = router.post("https://llm.example.com/v1/chat/completions").mock(
        return_value=sse_response(GOOD)[0]
    )
    hub = make_hub()
    endpoint = Endpoint(Source.CUSTOM, proxy_url="https://llm.example.com")
    assert "".join([d.text async for d in hub.provider(endpoint).stream_chat(REQUEST)]) == "ok"
    assert (wrong.call_count, right.call_count) == (1, 1)
    # Remembered: the next answer goes to /v1 at once.
    assert "".join([d.text async for d in hub.provider(endpoint).stream_chat(REQUEST)]) == "ok"
    assert (wrong.call_count, right.call_count) == (1, 2)


async def test_custom_no_correction_when_v1_fails_too(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.get("https://llm.example.com/api/models").mock(return_value=httpx.Response(404))
    router.get("https://llm.example.com/api/v1/models").mock(return_value=httpx.Response(404))
    hub = make_hub()
    endpoint = Endpoint(Source.CUSTOM, proxy_url="https://llm.example.com/api")
    result = await hub.provider(endpoint).check_status()
    assert not result.ok and not result.corrected
    assert result.error_kind == "not_found"
    with pytest.raises(NotFoundError):
        await hub.provider(endpoint).list_models()


async def test_custom_url_with_v1_is_not_probed(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.get("https://llm.example.com/v1/models").mock(return_value=httpx.Response(404))
    result = (
        await make_hub()
        .provider(Endpoint(Source.CUSTOM, proxy_url="https://llm.example.com/v1"))
        .check_status()
    )
    assert not result.ok
    assert router.calls.call_count == 1


# -- endpoint policy before any request ------------------------------------------------


@pytest.mark.parametrize(
    ("source", "url"),
    [
        (Source.CUSTOM, "http://10.0.0.5/v1"),
        (Source.CUSTOM, "http://inside.example.com/v1"),
        (Source.CUSTOM, "http://169.254.169.254/latest"),
        (Source.CUSTOM, "ftp://llm.example.com/v1"),
        (Source.OPENAI, "http://127.0.0.1:4000/v1"),
        (Source.CLAUDE, "http://[::1]:4000/v1"),
        (Source.MISTRAL, "http://user:pw@llm.example.com/v1"),
    ],
)
async def test_policy_refuses_before_any_request(
    source: Source, url: str, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    endpoint = Endpoint(
        source,
        proxy_url=url,
        api_key=SecretValue("sk-policy-0005"),
        proxy_password=SecretValue("pw-policy-0006"),
    )
    provider = make_hub().provider(endpoint)
    result = await provider.check_status()
    assert not result.ok and result.error_kind == "endpoint_refused"
    with pytest.raises(EndpointNotAllowed):
        await provider.list_models()
    with pytest.raises(EndpointNotAllowed):
        _ = [d async for d in provider.stream_chat(REQUEST)]
    assert not router.calls


async def test_private_refusal_names_the_setting(make_hub: Callable[..., ProviderHub]) -> None:
    result = (
        await make_hub()
        .provider(Endpoint(Source.CUSTOM, proxy_url="http://192.168.1.20:5000/v1"))
        .check_status()
    )
    assert "ALLOW_PRIVATE_ENDPOINTS" in result.reason


async def test_default_policy_follows_settings(router: respx.MockRouter) -> None:
    from bot.providers import ProviderSettings

    router.get("http://127.0.0.1:9/v1/models").mock(
        return_value=httpx.Response(200, json={"data": []})
    )
    endpoint = Endpoint(Source.CUSTOM, proxy_url="http://127.0.0.1:9/v1")
    closed = ProviderHub(ProviderSettings())
    opened = ProviderHub(ProviderSettings(allow_private_endpoints=True))
    try:
        assert not (await closed.provider(endpoint).check_status()).ok
        assert (await opened.provider(endpoint).check_status()).ok
    finally:
        await closed.aclose()
        await opened.aclose()


# -- the /v1 fix for every source's proxy, and what a 401 there proves ---------------------


async def test_a_401_at_v1_proves_the_base_and_says_a_key_is_needed(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """TabbyAPI-style: nothing at the root, the API under /v1 behind a key. Wire shape no
    local peer produces (LiteLLM answers at both)."""
    router.get("https://llm.example.com/tabby/models").mock(return_value=httpx.Response(404))
    v1 = router.get("https://llm.example.com/tabby/v1/models").mock(
        side_effect=lambda request: httpx.Response(
            200 if request.headers.get("authorization") == "Bearer tabby-key-0001" else 401,
            json={"data": [{"id": "exl2"}]}
            if request.headers.get("authorization")
            else {"detail": "Missing key"},
        )
    )
    hub = make_hub()
    before_key = Endpoint(Source.CUSTOM, proxy_url="https://llm.example.com/tabby")
    result = await hub.provider(before_key).check_status()
    assert not result.ok and result.error_kind == "auth"
    assert "HTTP 401" in result.reason and "does not exist" not in result.reason
    assert result.corrected and result.base_url == "https://llm.example.com/tabby/v1"
    # The key arrives later: the proven base is used straight away.
    with_key = Endpoint(
        Source.CUSTOM,
        proxy_url="https://llm.example.com/tabby",
        proxy_password=SecretValue("tabby-key-0001"),
    )
    after = await hub.provider(with_key).check_status()
    assert after.ok and after.base_url == "https://llm.example.com/tabby/v1"
    assert v1.call_count == 2


@pytest.mark.parametrize("source", [Source.OPENAI, Source.MISTRAL, Source.CLAUDE])
async def test_a_reverse_proxy_without_v1_is_corrected_for_every_source(
    source: Source, router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.get("https://llm.example.com/proxy/models").mock(return_value=httpx.Response(404))
    models = router.get("https://llm.example.com/proxy/v1/models").mock(
        return_value=httpx.Response(200, json={"data": [{"id": "x"}]})
    )
    endpoint = Endpoint(source, proxy_url="https://llm.example.com/proxy")  # no password
    result = await make_hub().provider(endpoint).check_status()
    assert result.ok and result.corrected
    assert result.base_url == "https://llm.example.com/proxy/v1"
    sent = models.calls.last.request.headers
    assert "authorization" not in sent and "x-api-key" not in sent  # no key to a proxy


async def test_a_passed_url_check_stands_for_the_turns_that_follow(
    router: respx.MockRouter, sleeps: list[float]
) -> None:
    """Turns do not look the proxy's name up again for the request-time check (every new
    connection still vets the addresses it reaches); a refused URL stays refused."""
    from bot.providers import ProviderSettings
    from bot.providers.policy import EndpointPolicy

    from .conftest import fake_resolver

    looked_up: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return await fake_resolver(host, port)

    router.post("https://proxy.example.net/v1/chat/completions").mock(
        side_effect=lambda _: sse_response(
            sse_bytes([(None, openai_chunk("hi", "stop")), (None, "[DONE]")])
        )[0]
    )
    hub = ProviderHub(ProviderSettings(), policy=EndpointPolicy(resolver=resolver))
    try:
        provider = hub.provider(Endpoint(Source.OPENAI, proxy_url="https://proxy.example.net/v1"))
        for _ in range(3):
            assert "".join([d.text async for d in provider.stream_chat(REQUEST)]) == "hi"
        assert looked_up == ["proxy.example.net"]
        inside = hub.provider(Endpoint(Source.CUSTOM, proxy_url="https://inside.example.com/v1"))
        for _ in range(2):
            with pytest.raises(EndpointNotAllowed):
                _ = [d async for d in inside.stream_chat(REQUEST)]
        assert looked_up.count("inside.example.com") == 2
    finally:
        await hub.aclose()


async def test_a_listed_id_holding_a_key_is_left_out_and_each_id_listed_once(
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An endpoint echoing the key it was sent as a model id: /models showed it to every
    member, and the model cache kept it in clear."""
    password = "echo-me-0123456789"
    ids = [
        "m1",
        "m1",
        f"{password}-model",
        "sk-proj-" + "k" * 24,  # some other key's shape
        "m2",
        "gpt-4o-mini-2024-07-18-fine-tuned-for-support",  # long, and no key
        "m2",
    ]
    router.get("http://127.0.0.1:8080/v1/models").mock(
        return_value=httpx.Response(200, json={"data": [{"id": i} for i in ids]})
    )
    endpoint = Endpoint(
        Source.CUSTOM,
        proxy_url="http://127.0.0.1:8080/v1",
        proxy_password=SecretValue(password),
    )
    models = await make_hub(allow_private=True).provider(endpoint).list_models()
    assert [m.id for m in models] == ["m1", "m2", "gpt-4o-mini-2024-07-18-fine-tuned-for-support"]
    assert "listed 2 model id(s) holding a key: left out" in caplog.text
    assert password not in caplog.text and "kkkk" not in caplog.text


async def test_claude_paging_that_repeats_its_cursor_ends(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """A proxy answering has_more with the same last_id: 50 requests, the model 50 times."""
    route = router.get("https://api.anthropic.com/v1/models").mock(
        return_value=httpx.Response(
            200, json={"data": [{"id": "claude-x"}], "has_more": True, "last_id": "claude-x"}
        )
    )
    endpoint = Endpoint(Source.CLAUDE, api_key=SecretValue("sk-ant-page-0005"))
    models = await make_hub().provider(endpoint).list_models()
    assert [m.id for m in models] == ["claude-x"]
    assert route.call_count == 2


# -- lists bigger than any endpoint's (a loopback server sends them) --------------------


async def _serve_lists(pages: Callable[[bytes], bytes]) -> tuple[asyncio.Server, int, list[bytes]]:
    """A loopback server answering each request's target with the JSON `pages` makes."""
    asked: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await read_request(reader)
                target = head.split(b" ", 2)[1]
                asked.append(target)
                body = pages(target)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
                writer.write(b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()

    server, port = await serve(handler)
    return server, port, asked


async def test_a_list_of_a_million_models_keeps_the_first_five_thousand(
    make_hub: Callable[..., ProviderHub], caplog: pytest.LogCaptureFixture
) -> None:
    """A broken or hostile endpoint listing 800,000 ids (13 MB, within the body cap): all
    were kept, so every channel's stored copy held 800,000 entries, read back and
    searched on the event loop (`/model`'s suggestion and choices, a turn with an
    image), seconds each time. A display name no one is shown is not kept when long."""
    ids = [f"m{i}" for i in range(800_000)]
    data = [{"id": i} for i in ids]
    data[0]["name"] = "n" * 100_000
    body = json.dumps({"object": "list", "data": data}).encode()
    assert len(body) < 16 * 2**20
    server, port, _ = await _serve_lists(lambda target: body)
    endpoint = Endpoint(Source.CUSTOM, proxy_url=f"http://127.0.0.1:{port}/v1")
    async with server:
        result = await make_hub(allow_private=True).provider(endpoint).check_status()
    assert result.ok
    assert [m.id for m in result.models] == ids[:MAX_MODELS] and MAX_MODELS == 5000
    assert result.models[0].display_name is None
    assert (
        "Its list of models is longer than the bot keeps: the first 5,000 are kept; any "
        "other id can be typed." in result.reason
    )
    assert "listed more than 5000 models: the first 5000 are kept" in caplog.text


@pytest.mark.parametrize(
    ("entries", "cut"),
    [
        ([f"m{i}" for i in range(MAX_MODELS)], False),
        # Repeats are not models: 5,000 different ones are all there is.
        ([f"m{i}" for i in range(MAX_MODELS)] + ["m0", "m1"], False),
        ([f"m{i}" for i in range(MAX_MODELS + 1)], True),
        # What comes after the entries a parser reads is not known: it may hold more.
        (["m0", "m1"] * (MAX_MODELS + 1), True),
    ],
    ids=["exactly-the-cap", "the-cap-and-repeats", "one-more", "unread-entries"],
)
async def test_only_a_list_longer_than_the_cap_is_said_to_be_cut(
    make_hub: Callable[..., ProviderHub],
    caplog: pytest.LogCaptureFixture,
    entries: list[str],
    cut: bool,
) -> None:
    """An endpoint listing exactly 5,000 models was told the bot "keeps the first 5,000"
    as if it had listed more."""
    body = json.dumps({"object": "list", "data": [{"id": i} for i in entries]}).encode()
    server, port, _ = await _serve_lists(lambda target: body)
    endpoint = Endpoint(Source.CUSTOM, proxy_url=f"http://127.0.0.1:{port}/v1")
    async with server:
        result = await make_hub(allow_private=True).provider(endpoint).check_status()
    assert result.ok
    kept = len(result.models)
    said_cut = "longer than the bot keeps" in result.reason
    assert said_cut is cut, result.reason
    if not cut:
        assert result.reason.endswith(f"lists {kept:,} models."), result.reason


async def test_claude_paging_stops_past_what_is_kept(
    make_hub: Callable[..., ProviderHub],
) -> None:
    """An Anthropic-style proxy answering every page with 1,000 new ids and `has_more`:
    the bot asked all 50 pages it allows and held every id (a page may hold a million:
    50 of them were gigabytes)."""

    def page(target: bytes) -> bytes:
        after = target.partition(b"after_id=p")[2]
        start = int(after) + 1 if after else 0
        data = [{"id": f"p{n}", "type": "model"} for n in range(start, start + 1000)]
        return json.dumps({"data": data, "has_more": True, "last_id": data[-1]["id"]}).encode()

    server, port, asked = await _serve_lists(page)
    endpoint = Endpoint(
        Source.CLAUDE, proxy_url=f"http://127.0.0.1:{port}/v1", proxy_password=SecretValue("pw")
    )
    async with server:
        models = await make_hub(allow_private=True).provider(endpoint).list_models()
    assert [m.id for m in models] == [f"p{n}" for n in range(MAX_MODELS)]
    assert len(asked) == 2 * MAX_MODELS // 1000  # then it stopped
