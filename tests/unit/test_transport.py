"""The provider layer's httpx transport: lanes of httpcore pools, errors, read timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import tracemalloc
import zlib
from typing import Any

import httpcore
import httpx
import pytest

from bot.providers import (
    ChatRequest,
    Endpoint,
    EndpointNotAllowed,
    MalformedResponse,
    ProviderError,
    ProviderHub,
    ProviderSettings,
    ProviderTimeout,
    Unreachable,
)
from bot.providers._http import (
    _LANE_SIZE,
    _LISTS_KEPT,
    _URLS_KEPT,
    HTTPCORE_ERRORS,
    PoolTransport,
    RequestSpec,
    Transport,
    httpx_error,
)
from bot.providers._network import AsyncioBackend
from bot.providers.policy import EndpointPolicy
from bot.types import ChatMessage, Role, Source
from tests.unit.test_network import read_request, response, serve


def lanes_of(size: int, most: int) -> PoolTransport:
    return PoolTransport(
        lambda: httpcore.AsyncConnectionPool(
            max_connections=size, network_backend=AsyncioBackend()
        ),
        size,
        most,
    )


async def test_a_request_goes_out_byte_for_byte_as_httpxs_client_sends_it() -> None:
    """The transport builds requests itself, without a client; endpoints see no change."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if b"length:" in line]
        seen.append(head + await reader.readexactly(length[0] if length else 0))
        writer.write(response(b"{}", close=True))
        await writer.drain()
        writer.close()

    server, port = await serve(handler)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": "Bearer sk-k", "Content-Type": "application/json", "X-A": "1"}
    body = {"model": "m", "messages": [{"role": "user", "content": "é ☃ \u0000"}]}
    transport = Transport(ProviderSettings(), EndpointPolicy(allow_private=True), asyncio.sleep)
    async with server, httpx.AsyncClient(trust_env=False) as client:
        for method, params, json_body in (("POST", None, body), ("GET", {"q": "a b"}, None)):
            spec = RequestSpec(method, url, "The endpoint", headers, body=json_body, params=params)
            assert await transport.request_json(spec) == {}
            await client.request(method, url, headers=headers, json=json_body, params=params)
            ours, httpxs = seen[-2:]
            assert ours == httpxs
    await transport.aclose()
    assert seen[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert seen[2].startswith(b"GET /v1/chat/completions?q=a+b HTTP/1.1\r\n")


@pytest.mark.parametrize(
    "url",
    [
        "http:///v1/models",  # no host
        "ftp://127.0.0.1/v1/models",  # not http(s)
        "http://127.0.0.1:99999/v1/models",  # a port out of range
        "http://127.0.0.1:0/v1/models",
        "http://[::1/v1/models",  # an address not closed
        "http://xn--/v1/models",  # a name IDNA cannot read
    ],
)
async def test_a_url_the_policy_would_refuse_is_refused_before_any_connection(url: str) -> None:
    """A URL stored before the policy read URLs as it does now is not sent anywhere."""
    transport = Transport(ProviderSettings(), EndpointPolicy(allow_private=True), asyncio.sleep)
    with pytest.raises(EndpointNotAllowed, match="has a URL the bot cannot use"):
        await transport.request_json(RequestSpec("GET", url, "The proxy", {}))
    await transport.aclose()


def test_urls_are_parsed_once_each_and_kept_within_bounds() -> None:
    """A request's URL is parsed once (half of making a request, bench/RESULTS.md); the
    URLs remembered stay bounded however many channels type different ones, and one
    with parameters keeps them on each request."""
    transport = Transport(ProviderSettings(), EndpointPolicy(allow_private=True), asyncio.sleep)
    spec = RequestSpec("GET", "http://127.0.0.1:9/v1/models", "The proxy", {}, params={"a": "1"})
    first, again = transport.request(spec), transport.request(spec)
    assert str(first.url) == str(again.url) == "http://127.0.0.1:9/v1/models?a=1"
    for n in range(3 * _URLS_KEPT):
        url = f"http://127.0.0.1:9/v{n}/models"
        assert str(transport.request(RequestSpec("GET", url, "The proxy", {})).url) == url
    assert len(transport._urls) <= _URLS_KEPT


async def test_shared_lists_stay_within_bounds() -> None:
    """Many endpoints listed within the reuse window (a flood of distinct proxy URLs)
    keep at most _LISTS_KEPT outcomes (each failure held its frames: 16 KB); a caller
    that is cancelled does not end the listing for the others; a bug is not handed to
    the next caller."""
    transport = Transport(ProviderSettings(), EndpointPolicy(allow_private=True), asyncio.sleep)

    async def refused() -> list[str]:
        raise Unreachable("The proxy at http://x could not be reached")

    for n in range(3 * _LISTS_KEPT):
        with pytest.raises(Unreachable):
            await transport.shared(f"k{n}", refused)
    assert len(transport._shared) <= _LISTS_KEPT

    release, calls = asyncio.Event(), []

    async def slow() -> list[str]:
        calls.append(1)
        await release.wait()
        return ["m"]

    first = asyncio.ensure_future(transport.shared("slow", slow))
    second = asyncio.ensure_future(transport.shared("slow", slow))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == ["m"] and calls == [1]
    assert await transport.shared("slow", slow) == ["m"] and calls == [1]

    async def bug() -> list[str]:
        calls.append(2)
        raise KeyError("a bug")

    for _ in range(2):
        with pytest.raises(KeyError):
            await transport.shared("bug", bug)
    assert calls == [1, 2, 2]
    await transport.aclose()


async def test_quiet_use_stays_on_one_lane_and_a_crowd_spreads_over_more() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                await release.wait()
                writer.write(response(b"ok"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    lanes = lanes_of(_LANE_SIZE, 1000 // _LANE_SIZE)
    server, port = await serve(handler)
    url = f"http://127.0.0.1:{port}/"
    async with server, httpx.AsyncClient(transport=lanes) as client:

        async def get() -> str:
            return (await client.get(url)).text

        release.set()
        for _ in range(5):
            assert await get() == "ok"
        assert lanes.lanes == [0]

        release.clear()
        crowd = [asyncio.create_task(get()) for _ in range(150)]
        await asyncio.sleep(0.5)  # every request is sent and waiting for its answer
        assert len(lanes.lanes) == -(-150 // _LANE_SIZE)  # full lanes and one for the rest
        assert sum(lanes.lanes) == 150
        release.set()
        assert await asyncio.gather(*crowd) == ["ok"] * 150
        assert lanes.lanes == [0] * len(lanes.lanes)  # every lease was given back


async def test_a_full_set_of_lanes_shares_out_to_the_least_busy() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()
        writer.write(response(b"ok", close=True))
        await writer.drain()
        writer.close()

    lanes = lanes_of(2, 2)
    server, port = await serve(handler)
    async with server, httpx.AsyncClient(transport=lanes) as client:
        crowd = [asyncio.create_task(client.get(f"http://127.0.0.1:{port}/")) for _ in range(5)]
        await asyncio.sleep(0.2)
        assert sorted(lanes.lanes) == [2, 3]  # one waits for a connection of its lane
        release.set()
        assert all(r.text == "ok" for r in await asyncio.gather(*crowd))
    assert lanes.lanes == []  # closed with the client


async def test_a_failed_request_gives_its_lane_back_as_an_httpx_error() -> None:
    server, port = await serve(lambda r, w: asyncio.sleep(0))
    server.close()
    await server.wait_closed()
    lanes = lanes_of(4, 2)
    async with httpx.AsyncClient(transport=lanes) as client:
        with pytest.raises(httpx.ConnectError, match="connect failed"):
            await client.get(f"http://127.0.0.1:{port}/")
        assert lanes.lanes == [0]


async def test_a_body_cut_short_is_an_httpx_error_and_gives_the_lane_back() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    lanes = lanes_of(4, 2)
    server, port = await serve(handler)
    async with server, httpx.AsyncClient(transport=lanes) as client:
        async with client.stream("GET", f"http://127.0.0.1:{port}/") as reply:
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                await reply.aread()
        assert lanes.lanes == [0]


@pytest.mark.parametrize("core_error", list(HTTPCORE_ERRORS))
def test_each_httpcore_error_becomes_the_most_specific_httpx_error(
    core_error: type[Exception],
) -> None:
    mapped = httpx_error(core_error("what happened"))
    assert type(mapped) is HTTPCORE_ERRORS[core_error]
    assert str(mapped) == "what happened"


def test_other_errors_are_not_mapped() -> None:
    assert httpx_error(ValueError("x")) is None
    assert httpx_error(httpx.ReadError("already httpx's")) is None


# ---- reads time out on their own -----------------------------------------------------


def test_the_read_timeout_never_cuts_before_the_provider_layers_own_limits() -> None:
    for first_byte, idle in ((60.0, 60.0), (5.0, 120.0), (300.0, 10.0)):
        settings = ProviderSettings(first_byte_timeout=first_byte, idle_timeout=idle)
        transport = Transport(settings, EndpointPolicy(), asyncio.sleep)
        spec = RequestSpec("GET", "https://api.example.com/v1/models", "The API", {})
        read = transport.request(spec).extensions["timeout"]["read"]
        assert read is not None and read > max(first_byte, idle)


async def test_an_endpoint_that_sends_headers_then_nothing_cannot_hang_a_bare_read() -> None:
    """Even read without the provider layer's ReadWatch, the body read ends."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(b"transfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    settings = ProviderSettings(
        allow_private_endpoints=True, first_byte_timeout=0.2, idle_timeout=0.2
    )
    transport = Transport(settings, EndpointPolicy(allow_private=True), asyncio.sleep)
    server, port = await serve(handler)
    spec = RequestSpec("POST", f"http://127.0.0.1:{port}/v1/chat", where="test", headers={})
    try:
        async with server:
            reply, _ = await transport.open(spec)
            try:
                with pytest.raises(httpx.ReadTimeout):
                    await reply.aread()  # no ReadWatch here
            finally:
                await reply.aclose()
    finally:
        await transport.aclose()


async def test_the_provider_layers_own_idle_limit_words_the_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nsome\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    settings = ProviderSettings(
        allow_private_endpoints=True, first_byte_timeout=0.2, idle_timeout=0.2
    )
    transport = Transport(settings, EndpointPolicy(allow_private=True), asyncio.sleep)
    server, port = await serve(handler)
    spec = RequestSpec("GET", f"http://127.0.0.1:{port}/", where="The proxy", headers={})
    try:
        async with server:
            reply, deadline = await transport.open(spec)
            chunks = transport.chunks(reply, deadline, spec.where)
            try:
                assert await anext(chunks) == b"some"
                with pytest.raises(ProviderTimeout, match=r"stopped sending for 0\.2 s"):
                    await anext(chunks)
            finally:
                await chunks.aclose()
                await reply.aclose()
    finally:
        await transport.aclose()


async def test_https_to_a_plain_http_server_says_it_did_not_answer_in_tls() -> None:
    """`https://` pasted for a local server that speaks plain HTTP: the TLS handshake
    fails, and the message says what to change, not only "could not be reached". A
    server that is simply not there gets no such hint."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # a TLS ClientHello, answered in plain HTTP
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    settings = ProviderSettings(allow_private_endpoints=True, max_retries=0)
    transport = Transport(settings, EndpointPolicy(allow_private=True), asyncio.sleep)
    server, port = await serve(handler)
    try:
        async with server:
            tls = RequestSpec("GET", f"https://127.0.0.1:{port}/v1", where="The proxy", headers={})
            with pytest.raises(Unreachable, match="the TLS handshake failed") as failed:
                await transport.open(tls)
            assert "did not answer in TLS: if it serves plain" in failed.value.step
        gone = RequestSpec("GET", f"https://127.0.0.1:{port}/v1", where="The proxy", headers={})
        with pytest.raises(Unreachable) as err:
            await transport.open(gone)  # the server has closed: refused, not TLS
        assert "TLS" not in str(err.value)
    finally:
        await transport.aclose()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw deflate", "identity", None])
async def test_an_answer_streamed_compressed_or_not_reads_the_same(encoding: str | None) -> None:
    """A server that compresses its event stream (gzip; deflate with its zlib header or,
    as some servers send it, without) is still read, parts split anywhere."""
    events = [
        {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
        for word in ("Grüße ", "aus ", "gzip")
    ]
    sse = b"".join(b"data: %s\n\n" % json.dumps(e).encode() for e in events)
    sse += b"data: [DONE]\n\n"
    body = {
        "gzip": gzip.compress(sse),
        "deflate": zlib.compress(sse),
        "raw deflate": _deflate(sse, -zlib.MAX_WBITS),
    }.get(encoding or "", sse)
    coding = (encoding or "").removeprefix("raw ")
    header = b"" if encoding is None else b"content-encoding: %s\r\n" % coding.encode()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(header + b"transfer-encoding: chunked\r\n\r\n")
        for start in range(0, len(body), 20):  # parts split anywhere, even in gzip
            part = body[start : start + 20]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server, port = await serve(handler)
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    endpoint = Endpoint(Source.CUSTOM, proxy_url=f"http://127.0.0.1:{port}/v1")
    request = ChatRequest(model="m", messages=(ChatMessage(Role.USER, "hi"),))
    try:
        async with server:
            deltas = [d async for d in hub.provider(endpoint).stream_chat(request)]
    finally:
        await hub.aclose()
    assert "".join(d.text for d in deltas) == "Grüße aus gzip"


def _deflate(data: bytes, wbits: int) -> bytes:
    pack = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return pack.compress(data) + pack.flush()


def _bomb(megabytes: int, byte: bytes = b" ") -> bytes:
    """`megabytes` MB of one byte gzipped, then gzipped again: about a kilobyte."""
    pack = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    inner = b"".join(pack.compress(byte * 2**20) for _ in range(megabytes)) + pack.flush()
    return _deflate(inner, 16 + zlib.MAX_WBITS)


async def _serve_once(status: bytes, ctype: bytes, coding: bytes, body: bytes) -> tuple[Any, int]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 %s X\r\ncontent-type: %s\r\n" % (status, ctype))
        writer.write(b"content-encoding: %s\r\n" % coding)
        writer.write(b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    return await serve(handler)


@pytest.mark.parametrize(
    ("status", "ctype", "said"),
    [
        (b"200", b"application/json", "(the answer is too large)"),  # a model list
        (b"500", b"application/json", "is overloaded or failing (HTTP 500)"),  # its error
        (b"200", b"text/event-stream", "(a line of the event stream is too long)"),  # chat
    ],
)
async def test_a_compression_bomb_is_inflated_only_as_far_as_the_size_caps(
    status: bytes, ctype: bytes, said: str
) -> None:
    """An endpoint answering 1 KB as `content-encoding: gzip, gzip` that inflates to
    256 MB: httpx inflated each part whole, so the bot held 256 MB (a few more KB, and
    gigabytes) before a size cap could count a byte. Inflated piece by piece, it is
    refused at the cap (a model list's 16 MB, an error body's 64 KB, a stream line's
    4 MiB) with a clear message, holding little more than that."""
    body = _bomb(256)
    assert len(body) < 2048
    server, port = await _serve_once(status, ctype, b"gzip, gzip", body)
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    provider = hub.provider(Endpoint(Source.CUSTOM, proxy_url=f"http://127.0.0.1:{port}/v1"))
    request = ChatRequest(model="m", messages=(ChatMessage(Role.USER, "hi"),))
    tracemalloc.start()
    try:
        async with server:
            with pytest.raises(ProviderError) as err:
                if ctype == b"text/event-stream":
                    [d async for d in provider.stream_chat(request)]
                else:
                    await provider.list_models()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await hub.aclose()
    assert said in str(err.value), str(err.value)
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB held"


@pytest.mark.parametrize(
    ("coding", "body", "said"),
    [
        (b"br", b"\x1b\x03\x00\xf8", "a compressed body the bot cannot inflate"),
        (
            b"gzip",
            gzip.compress(b"{}")[:10] + b"\xff" * 20,
            "a compressed body the bot cannot inflate",
        ),
        (b"gzip, gzip, gzip", gzip.compress(b"{}"), "a compressed body the bot cannot inflate"),
    ],
)
async def test_a_body_the_bot_cannot_inflate_is_said_to_be_one(
    coding: bytes, body: bytes, said: str
) -> None:
    """A coding the bot never asks for (br), corrupt gzip or codings nested deeper than
    servers nest them: a response the bot could not understand (not "cut the connection",
    which is retried), and the raw bytes are never read as the body."""
    server, port = await _serve_once(b"200", b"application/json", coding, body)
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    provider = hub.provider(Endpoint(Source.CUSTOM, proxy_url=f"http://127.0.0.1:{port}/v1"))
    try:
        async with server:
            with pytest.raises(MalformedResponse) as err:
                await provider.list_models()
    finally:
        await hub.aclose()
    assert said in str(err.value), str(err.value)


@pytest.mark.parametrize("coding", [b"none", b"UTF-8", b"identity,\tnone", b"none, gzip"])
async def test_a_word_that_is_no_content_coding_reads_the_body_as_sent(coding: bytes) -> None:
    """`content-encoding: none` (PHP's way to keep a stream unbuffered) or `utf-8` from a
    server that means no coding: httpx read the body as sent, as browsers do; the
    bot's own inflating called it a compressed body it cannot inflate. gzip named
    beside such a word is still inflated."""
    listed = json.dumps({"data": [{"id": "m1"}, {"id": "m2"}]}).encode()
    body = gzip.compress(listed) if b"gzip" in coding else listed
    server, port = await _serve_once(b"200", b"application/json", coding, body)
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    provider = hub.provider(Endpoint(Source.CUSTOM, proxy_url=f"http://127.0.0.1:{port}/v1"))
    try:
        async with server:
            models = await provider.list_models()
    finally:
        await hub.aclose()
    assert [m.id for m in models] == ["m1", "m2"]


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (b"200", "took more than 0.6 s to send the model list"),  # a model list, a status check
        (b"500", "is overloaded or failing (HTTP 500)"),  # its error, said without its body
    ],
)
async def test_a_body_that_trickles_in_is_given_up_when_it_is_not_whole_in_time(
    status: bytes, said: str
) -> None:
    """A model list (or an error body) sent a byte at a time, each well within the idle
    limit: the read went on for as long as the endpoint kept sending (16 MB at a byte a
    minute), holding /connect, or a turn's status check and its conversation, for ever.
    A body sent whole is whole by one idle limit after the first-byte one; past it the
    request ends, said as a timeout."""
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 %s X\r\ncontent-type: application/json\r\n" % status)
        writer.write(b"transfer-encoding: chunked\r\n\r\n1\r\n{\r\n")
        with contextlib.suppress(ConnectionError):
            while not writer.is_closing():
                writer.write(b"1\r\n \r\n")
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.02)

    settings = ProviderSettings(
        allow_private_endpoints=True, max_retries=0, first_byte_timeout=0.3, idle_timeout=0.3
    )
    hub = ProviderHub(settings)
    server, port = await serve(handler)
    provider = hub.provider(Endpoint(Source.CUSTOM, proxy_url=f"http://127.0.0.1:{port}/v1"))
    try:
        async with server:
            with pytest.raises(ProviderError) as err:
                # Only a guard against hanging: without the rule it never ends.
                await asyncio.wait_for(provider.list_models(), 30)
    finally:
        await hub.aclose()
    assert said in str(err.value), str(err.value)
    assert sent > 0  # it was still sending: no idle limit could end it
