"""Error mapping, the retry rule, Retry-After, and keys never leaking."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
import respx

from bot.providers import (
    AuthError,
    BadRequest,
    ChatRequest,
    ContextTooLong,
    Endpoint,
    MalformedResponse,
    NotFoundError,
    Overloaded,
    ProviderError,
    ProviderHub,
    ProviderTimeout,
    RateLimited,
    StreamCut,
    Unreachable,
)
from bot.types import ChatMessage, Role, SecretValue, Source

from .conftest import Sleeps, openai_chunk, sse_bytes, sse_response

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
CLAUDE_URL = "https://api.anthropic.com/v1/messages"
MISTRAL_URL = "https://api.mistral.ai/v1/chat/completions"
REQUEST = ChatRequest(model="m", messages=(ChatMessage(Role.USER, "hi"),))
CANARY = "sk-CANARYkey-do-not-leak-7f3a9c"
OPENAI = Endpoint(Source.OPENAI, api_key=SecretValue(CANARY))
GOOD = sse_bytes([(None, openai_chunk("ok", "stop")), (None, "[DONE]")])


async def collect(hub: ProviderHub, endpoint: Endpoint = OPENAI) -> str:
    return "".join([d.text async for d in hub.provider(endpoint).stream_chat(REQUEST)])


def error_json(
    message: str, kind: str = "invalid_request_error", code: str | None = None
) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "code": code}}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, error_json("Incorrect API key provided"), AuthError),
        (403, error_json("Country not supported"), AuthError),
        (404, error_json("The model `gpt-9` does not exist"), NotFoundError),
        (429, error_json("Rate limit reached", "requests"), RateLimited),
        (429, error_json("You exceeded your quota", "insufficient_quota"), RateLimited),
        (400, error_json("max_tokens is too large"), BadRequest),
        (422, {"detail": [{"loc": ["body"], "msg": "bad"}]}, BadRequest),
        (500, error_json("Internal error", "server_error"), Overloaded),
        (502, "<html>Bad gateway</html>", Overloaded),
        (503, "Service Unavailable", Overloaded),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            Overloaded,
        ),
        (418, "I'm a teapot", ProviderError),
    ],
)
async def test_status_mapping(
    status: int,
    body: object,
    expected: type[ProviderError],
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
) -> None:
    response = (
        httpx.Response(status, text=body)
        if isinstance(body, str)
        else httpx.Response(status, json=body)
    )
    router.post(OPENAI_URL).mock(return_value=response)
    with pytest.raises(ProviderError) as info:
        await collect(make_hub(max_retries=0))
    assert type(info.value) is expected
    message = str(info.value)
    assert f"HTTP {status}" in message
    assert "<html>" not in message
    assert "Traceback" not in message


async def test_messages_say_what_to_do(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.post(OPENAI_URL).mock(return_value=httpx.Response(401, json=error_json("bad key")))
    with pytest.raises(AuthError) as info:
        await collect(make_hub())
    assert info.value.step == "Check the openai key used here."  # an admin's step
    assert 'The provider said: "bad key"' in str(info.value)
    assert info.value.kind == "auth"


PROXY = "https://proxy.example.net/v1"
KEY, PASSWORD = SecretValue("sk-the-key-0123456789"), SecretValue("the-password-012345")


@pytest.mark.parametrize(
    ("endpoint", "advice", "step"),
    [
        (
            Endpoint(Source.OPENAI, proxy_url=PROXY, api_key=KEY, proxy_password=PASSWORD),
            "",
            "Check the proxy password used here: behind a proxy it is sent, never the openai key.",
        ),
        (
            Endpoint(Source.OPENAI, proxy_url=PROXY, api_key=KEY),
            "It wants a proxy password, and none is set here (the openai key is never "
            "sent to a proxy).",
            "Set a proxy password for it.",
        ),
        (
            Endpoint(Source.CUSTOM, proxy_url=PROXY, api_key=KEY, proxy_password=PASSWORD),
            "",
            "Check the proxy password used here: while one is set, it is sent instead of the key.",
        ),
        (
            Endpoint(Source.CUSTOM, proxy_url=PROXY, api_key=KEY),
            "",
            "Check the custom key used here.",
        ),
        (
            Endpoint(Source.CUSTOM, proxy_url=PROXY),
            "It wants a key or proxy password, and none is set here.",
            "Set a key or a proxy password for it.",
        ),
    ],
)
async def test_a_refused_credential_is_named(
    endpoint: Endpoint,
    advice: str,
    step: str,
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
) -> None:
    """With a key and a proxy password both set, a 401's step says which one to check;
    with none sent, it says none was, and setting one is its step. Either step is an
    admin's: said to a member as theirs to ask for, never as the member's to check."""
    router.post(f"{PROXY}/chat/completions").mock(
        return_value=httpx.Response(401, json=error_json("bad credentials"))
    )
    with pytest.raises(AuthError) as info:
        await collect(make_hub(), endpoint)
    assert str(info.value).endswith(advice or '"bad credentials".'), str(info.value)
    assert "Check" not in str(info.value)
    assert info.value.step == step


async def test_mistral_401_mentions_new_keys(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.post(MISTRAL_URL).mock(
        return_value=httpx.Response(401, json={"message": "Unauthorized"})
    )
    endpoint = Endpoint(Source.MISTRAL, api_key=SecretValue("mistral-key-abcdef"))
    with pytest.raises(AuthError) as info:
        await collect(make_hub(), endpoint)
    assert "few minutes" in info.value.step


async def test_claude_529_is_overloaded_and_retried(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    route = router.post(CLAUDE_URL).mock(return_value=httpx.Response(529, json=body))
    endpoint = Endpoint(Source.CLAUDE, api_key=SecretValue("sk-ant-xyz-123456"))
    with pytest.raises(Overloaded, match="HTTP 529"):
        await collect(make_hub(max_retries=1), endpoint)
    assert route.call_count == 2


async def test_redirect_is_not_followed(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.post(OPENAI_URL).mock(
        return_value=httpx.Response(307, headers={"location": "http://10.0.0.1/x"})
    )
    with pytest.raises(ProviderError, match="another address"):
        await collect(make_hub())
    assert router.calls.call_count == 1


async def test_connect_timeout_and_refused(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    route = router.post(OPENAI_URL).mock(side_effect=httpx.ConnectTimeout("slow"))
    with pytest.raises(ProviderTimeout, match="did not accept a connection"):
        await collect(make_hub(max_retries=0))
    route.side_effect = httpx.ConnectError("refused")
    with pytest.raises(Unreachable, match="could not be reached") as err:
        await collect(make_hub(max_retries=0))
    # The vendor's own API: no URL anyone set to check ("Check the URL" said so).
    assert "Check that this machine reaches OpenAI" in err.value.step, err.value.step
    assert "Check the URL" not in str(err.value)


async def test_json_nested_past_the_parsers_depth_in_a_body_is_no_crash(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    deep = ("[" * 5000 + "]" * 5000).encode()  # RecursionError in json near 1,000 levels
    router.post(OPENAI_URL).mock(return_value=httpx.Response(400, content=deep))
    with pytest.raises(BadRequest):  # an error body that says nothing readable
        await collect(make_hub(max_retries=0))
    models = "https://api.openai.com/v1/models"
    router.get(models).mock(return_value=httpx.Response(200, content=deep))
    with pytest.raises(MalformedResponse):
        await make_hub().provider(OPENAI).list_models()
    result = await make_hub().provider(OPENAI).check_status()
    assert not result.ok and result.error_kind == "malformed"


async def test_non_json_models_is_malformed(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.get("https://api.openai.com/v1/models").mock(return_value=httpx.Response(200, text="hi"))
    with pytest.raises(MalformedResponse):
        await make_hub().provider(OPENAI).list_models()
    router.get("https://api.openai.com/v1/models").mock(
        return_value=httpx.Response(200, json={"models": []})
    )
    result = await make_hub().provider(OPENAI).check_status()
    assert not result.ok and result.error_kind == "malformed"


# -- retries ---------------------------------------------------------------------------


async def test_retries_before_first_token_then_succeeds(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub], sleeps: Sleeps
) -> None:
    route = router.post(OPENAI_URL).mock(
        side_effect=[
            httpx.Response(503, text="busy"),
            httpx.ConnectError("refused"),
            sse_response(GOOD)[0],
        ]
    )
    assert await collect(make_hub(max_retries=2)) == "ok"
    assert route.call_count == 3
    assert len(sleeps) == 2
    assert 0 < sleeps[0] <= 0.5 and 0 < sleeps[1] <= 1.0  # jittered exponential backoff


async def test_retries_are_bounded_in_count(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub], sleeps: Sleeps
) -> None:
    route = router.post(OPENAI_URL).mock(return_value=httpx.Response(500, text="boom"))
    with pytest.raises(Overloaded):
        await collect(make_hub(max_retries=3))
    assert route.call_count == 4
    assert len(sleeps) == 3


async def test_retries_are_bounded_in_time(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub], sleeps: Sleeps
) -> None:
    route = router.post(OPENAI_URL).mock(return_value=httpx.Response(500, text="boom"))
    with pytest.raises(Overloaded):
        await collect(make_hub(max_retries=10, retry_max_seconds=0.1))
    assert route.call_count == 1  # the first backoff (≥ 0.25 s) would already exceed 0.1 s
    assert sleeps == []


@pytest.mark.parametrize(
    ("status", "error"), [(401, AuthError), (404, NotFoundError), (400, BadRequest)]
)
async def test_no_retry_for_client_errors(
    status: int,
    error: type[ProviderError],
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
    sleeps: Sleeps,
) -> None:
    route = router.post(OPENAI_URL).mock(return_value=httpx.Response(status, json=error_json("x")))
    with pytest.raises(error):
        await collect(make_hub(max_retries=3))
    assert route.call_count == 1
    assert sleeps == []


async def test_no_retry_after_first_token(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub], sleeps: Sleeps
) -> None:
    data = sse_bytes([(None, openai_chunk("Hel"))])
    route = router.post(OPENAI_URL).mock(
        side_effect=lambda request: sse_response(data, httpx.ReadError("reset"))[0]
    )
    with pytest.raises(StreamCut) as info:
        await collect(make_hub(max_retries=3))
    assert info.value.partial == "Hel"
    assert route.call_count == 1
    assert sleeps == []


async def test_cut_before_first_token_is_retried(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub], sleeps: Sleeps
) -> None:
    role_only = sse_bytes([(None, openai_chunk(role="assistant"))])
    route = router.post(OPENAI_URL).mock(
        side_effect=[
            sse_response(role_only, httpx.ReadError("reset"))[0],
            sse_response(GOOD)[0],
        ]
    )
    assert await collect(make_hub(max_retries=2)) == "ok"
    assert route.call_count == 2
    assert len(sleeps) == 1


async def test_claude_overloaded_event_before_text_is_retried(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub], sleeps: Sleeps
) -> None:
    overloaded = sse_bytes(
        [("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})]
    )
    good = sse_bytes(
        [
            (
                "content_block_delta",
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )
    route = router.post(CLAUDE_URL).mock(
        side_effect=[sse_response(overloaded)[0], sse_response(good)[0]]
    )
    endpoint = Endpoint(Source.CLAUDE, api_key=SecretValue("sk-ant-abc-123456"))
    assert await collect(make_hub(), endpoint) == "hi"
    assert route.call_count == 2


async def test_retry_after_is_honoured(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub], sleeps: Sleeps
) -> None:
    route = router.post(OPENAI_URL).mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after": "0.75"}, json=error_json("slow down")),
            httpx.Response(429, headers={"retry-after-ms": "1200"}, json=error_json("slow down")),
            sse_response(GOOD)[0],
        ]
    )
    assert await collect(make_hub(max_retries=2)) == "ok"
    assert route.call_count == 3
    assert sleeps == [0.75, 1.2]


@pytest.mark.parametrize("header", [{"retry-after": "0"}, {"retry-after-ms": "120"}])
async def test_a_retry_after_shorter_than_the_backoff_waits_the_backoff(
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
    sleeps: Sleeps,
    header: dict[str, str],
) -> None:
    """`Retry-After: 0` had the retries sent at once, one after another: the larger of
    the server's wait and the backoff (a quarter to half a second, then twice that)."""
    refused = httpx.Response(503, headers=header, json=error_json("busy"))
    route = router.post(OPENAI_URL).mock(side_effect=[refused, refused, sse_response(GOOD)[0]])
    assert await collect(make_hub(max_retries=2)) == "ok"
    assert route.call_count == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0, sleeps


async def test_retry_after_beyond_budget_gives_up_at_once(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub], sleeps: Sleeps
) -> None:
    route = router.post(OPENAI_URL).mock(
        return_value=httpx.Response(429, headers={"retry-after": "120"}, json=error_json("wait"))
    )
    with pytest.raises(RateLimited) as info:
        await collect(make_hub(max_retries=5, retry_max_seconds=20))
    assert info.value.retry_after == 120
    assert "Try again in 2 min." in str(info.value)
    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("header", "said"),
    [
        ({"retry-after": "inf"}, "Try again shortly."),
        ({"retry-after": "1e400"}, "Try again shortly."),
        ({"retry-after-ms": "inf"}, "Try again shortly."),
        ({"retry-after": "86400"}, "Try again in 24 h 0 min."),
        ({"retry-after": "172800"}, "Try again in 48 h 0 min."),
        ({"retry-after": "172801"}, "Try again in more than 2 days."),
        ({"retry-after": "99999999999"}, "Try again in more than 2 days."),
        ({"retry-after": "42"}, "Try again in 42 s."),
    ],
)
async def test_a_retry_after_no_one_can_wait_for_is_no_wait(
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
    header: dict[str, str],
    said: str,
) -> None:
    """`Retry-After: inf` ended the turn in "Something went wrong (OverflowError)"."""
    router.post(OPENAI_URL).mock(
        return_value=httpx.Response(429, headers=header, json=error_json("wait"))
    )
    with pytest.raises(RateLimited) as info:
        await collect(make_hub(max_retries=0))
    assert str(info.value).endswith(said)


async def test_quota_exhausted_is_not_retried(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub], sleeps: Sleeps
) -> None:
    route = router.post(OPENAI_URL).mock(
        return_value=httpx.Response(429, json=error_json("quota", "insufficient_quota"))
    )
    with pytest.raises(RateLimited, match="out of quota") as info:
        await collect(make_hub(max_retries=5))
    assert info.value.quota
    assert route.call_count == 1


async def test_status_check_and_models_retry_too(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub], sleeps: Sleeps
) -> None:
    route = router.get("https://api.openai.com/v1/models").mock(
        side_effect=[httpx.Response(502), httpx.Response(200, json={"data": [{"id": "gpt"}]})]
    )
    result = await make_hub().provider(OPENAI).check_status()
    assert result.ok and [m.id for m in result.models] == ["gpt"]
    assert route.call_count == 2


# -- keys never leak -------------------------------------------------------------------


@pytest.mark.parametrize(
    "respond",
    [
        lambda: httpx.Response(401, json=error_json(f"Incorrect API key provided: {CANARY}.")),
        lambda: httpx.Response(400, text=f"bad header Authorization: Bearer {CANARY}"),
        lambda: httpx.Response(429, json={"message": f"key {CANARY} is rate limited"}),
        lambda: httpx.Response(500, json={"detail": f"upstream said {CANARY}"}),
        lambda: sse_response(
            sse_bytes([(None, openai_chunk("x")), (None, {"error": {"message": CANARY}})])
        )[0],
    ],
)
async def test_key_never_in_errors_or_logs(
    respond: Callable[[], httpx.Response],
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
    caplog: pytest.LogCaptureFixture,
) -> None:
    router.post(OPENAI_URL).mock(side_effect=lambda request: respond())
    router.get("https://api.openai.com/v1/models").mock(side_effect=lambda request: respond())
    caplog.set_level(logging.DEBUG, logger="bot.providers")
    hub = make_hub(max_retries=1)
    with pytest.raises(ProviderError) as info:
        await collect(hub)
    status = await hub.provider(OPENAI).check_status()
    texts = [
        str(info.value),
        repr(info.value),
        info.value.partial,
        *map(str, info.value.args),
        status.reason,
        repr(status),
        caplog.text,
    ]
    for text in texts:
        assert CANARY not in text
        assert "CANARYkey" not in text
    assert caplog.records  # something was logged, and none of it had the key


async def test_unregistered_key_shaped_tokens_are_redacted_too(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    router.post(OPENAI_URL).mock(
        return_value=httpx.Response(401, json=error_json("Incorrect key sk-proj-AbCdEfGh12345678"))
    )
    with pytest.raises(AuthError) as info:
        await collect(make_hub())
    assert "AbCdEfGh12345678" not in str(info.value)


async def test_a_proxys_error_is_cleaned_of_the_key_it_was_never_sent(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """Behind a reverse proxy only the proxy password is sent; the channel's own key is
    not, yet an error naming it is cleaned of it, as an answer naming it is."""
    behind = Endpoint(
        source=Source.OPENAI,
        proxy_url="https://203.0.114.9/v1",
        api_key=SecretValue("NeverSentKey9876"),
        proxy_password=SecretValue("proxy-pass-1234"),
    )
    router.post("https://203.0.114.9/v1/chat/completions").mock(
        return_value=httpx.Response(500, json=error_json("upstream key NeverSentKey9876 failed"))
    )
    with pytest.raises(ProviderError) as info:
        await collect(make_hub(max_retries=0), behind)
    assert "NeverSentKey9876" not in str(info.value) and "****" in str(info.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        # OpenAI, and llama-cpp-python when not streaming
        (
            400,
            error_json(
                "This model's maximum context length is 2048 tokens. However, you requested "
                "3039 tokens (3031 in the messages, 8 in the completion).",
                code="context_length_exceeded",
            ),
        ),
        # llama.cpp's own server
        (
            400,
            error_json(
                "the request exceeds the available context size, try increasing it",
                "exceed_context_size_error",
            ),
        ),
        # LiteLLM's proxy
        (
            400,
            error_json(
                "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindow",
                "None",
            ),
        ),
        # Anthropic
        (400, error_json("prompt is too long: 208310 tokens > 200000 maximum")),
        # a server that says it with a 500
        (500, error_json("Requested tokens (3031) exceed context window of 2048", "server")),
        # Anthropic, when max_tokens is what does not fit
        (400, error_json("input length and `max_tokens` exceed context limit: 198000 + 8192")),
        # vLLM
        (
            400,
            error_json(
                "'max_tokens' or 'max_completion_tokens' is too large: 9000. This model's "
                "maximum context length is 8192 tokens and your request has 100 input tokens"
            ),
        ),
    ],
    ids=["openai", "llama.cpp", "litellm", "anthropic", "as-a-500", "anthropic-limit", "vllm"],
)
async def test_a_conversation_over_the_context_window_is_named_so(
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
    status: int,
    body: dict[str, object],
) -> None:
    """It read "Check the model and the generation settings (temperature, max tokens,
    stop sequences)", which was no help."""
    route = router.post(OPENAI_URL).mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(ContextTooLong) as info:
        await collect(make_hub(max_retries=2))
    assert "too long for the model's context window" in str(info.value)
    assert route.call_count == 1  # asking again cannot help


async def test_a_403_says_it_may_not_be_the_key(
    router: respx.MockRouter, make_hub: Callable[..., ProviderHub]
) -> None:
    """A Cloudflare page or "no access to this model" read only "check the key"."""
    page = b"<html><title>Attention Required! | Cloudflare</title></html>"
    router.post(OPENAI_URL).mock(return_value=httpx.Response(403, content=page))
    with pytest.raises(AuthError) as info:
        await collect(make_hub(max_retries=0))
    said = str(info.value)
    assert said.startswith("OpenAI refused access (HTTP 403).")
    assert said.endswith(
        "A 403 also comes from a key without access to this model, or from a firewall in "
        "front of the endpoint refusing the bot."
    )
    assert "<html" not in said


MISTRAL = Endpoint(Source.MISTRAL, api_key=SecretValue("mistral-key-0123456789abcdef"))
PYDANTIC = "https://errors.pydantic.dev/2.6/v/less_than_equal"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (  # Mistral: the pydantic list inside an error object's `message`
            {
                "object": "error",
                "message": {
                    "detail": [
                        {
                            "type": "less_than_equal",
                            "loc": ["body", "temperature"],
                            "msg": "Input should be less than or equal to 1",
                            "input": 1.31,
                            "ctx": {"le": 1.0},
                            "url": PYDANTIC,
                        }
                    ]
                },
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
            "temperature: Input should be less than or equal to 1",
        ),
        (  # FastAPI's own (vLLM, TabbyAPI): the list at the top, the request's text echoed
            {
                "detail": [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", "random_seed"],
                        "msg": "Extra inputs are not permitted",
                        "input": 7,
                    },
                    {
                        "type": "string_type",
                        "loc": ["body", "messages", 1, "content"],
                        "msg": "Input should be a valid string",
                        "input": "my private question",
                        "url": PYDANTIC,
                    },
                ]
            },
            "random_seed: Extra inputs are not permitted; messages.1.content: Input should be "
            "a valid string",
        ),
    ],
    ids=["mistral", "fastapi"],
)
async def test_a_validation_error_names_the_field_and_what_is_wrong(
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
    body: dict[str, object],
    said: str,
) -> None:
    """Mistral's 422 (its list of problems in `message`) read only "refused the request
    (HTTP 422)" with no word of which setting, and a FastAPI list was raw JSON whose
    first problem's echoed value and link took the room before the cut."""
    router.post(MISTRAL_URL).mock(return_value=httpx.Response(422, json=body))
    with pytest.raises(BadRequest) as info:
        await collect(make_hub(max_retries=0), MISTRAL)
    text = str(info.value)
    assert f'The provider said: "{said}".' in text, text
    assert "pydantic" not in text and "private question" not in text and "{" not in text


@pytest.mark.parametrize(
    ("said", "named", "not_named"),
    [
        (
            "Unsupported value: 'temperature' does not support 0.7 with this model. Only "
            "the default (1) value is supported.",
            ["temperature"],
            ["top_p", "max_tokens", "stop"],
        ),
        (
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead.",
            ["max_tokens", "max_completion_tokens"],
            ["temperature"],
        ),
        # Inside a longer name is not the name (`max_tokens` in `max_tokens_to_sample`).
        ("max_completion_tokens: Extra inputs are not permitted", ["max_completion_tokens"], []),
        ("max_tokens_to_sample: field required", [], ["max_tokens"]),
    ],
)
async def test_an_error_names_a_field_only_in_the_providers_own_words(
    router: respx.MockRouter,
    make_hub: Callable[..., ProviderHub],
    said: str,
    named: list[str],
    not_named: list[str],
) -> None:
    """What the provider said is kept apart from the bot's advice around it, which names
    temperature and max tokens in every refusal (and the URL, which may hold anything)."""
    router.post(OPENAI_URL).mock(
        return_value=httpx.Response(400, json={"error": {"message": said}})
    )
    with pytest.raises(BadRequest) as info:
        await collect(make_hub(max_retries=0), OPENAI)
    err = info.value
    assert err.said == said and f'said: "{said}' in str(err)
    assert all(err.names(n) for n in named), named
    assert not any(err.names(n) for n in [*not_named, "stop sequences", "the model"])
