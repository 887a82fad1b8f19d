"""The provider layer's own network layer and lanes, against real loopback servers.

Plain HTTP and TLS (a certificate made for the test), closed and broken connections,
keep-alive reuse, and many streams at once spreading over lanes.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.providers import EndpointNotAllowed, ProviderSettings
from bot.providers._http import _LANE_SIZE, RequestSpec, Transport
from bot.providers._network import AsyncioBackend
from bot.providers.policy import EndpointPolicy, EndpointRefused

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


def response(body: bytes, *, close: bool = False) -> bytes:
    extra = b"connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def pool() -> AsyncIterator[httpcore.AsyncConnectionPool]:
    async with httpcore.AsyncConnectionPool(network_backend=AsyncioBackend()) as p:
        yield p


async def test_plain_http_with_keep_alive_reuses_one_connection(
    pool: httpcore.AsyncConnectionPool,
) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                await read_request(reader)
                writer.write(response(b"hello " * 1000))
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    server, port = await serve(handler)
    async with server:
        for _ in range(5):
            reply = await pool.request("POST", f"http://127.0.0.1:{port}/x", content=b"q" * 5000)
            assert reply.status == 200 and reply.content == b"hello " * 1000
    assert connections == 1


async def test_a_server_that_closed_an_idle_connection_gets_a_new_one(
    pool: httpcore.AsyncConnectionPool,
) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(response(b"once"))  # keep-alive promised, then closed anyway
        await writer.drain()
        writer.close()

    server, port = await serve(handler)
    async with server:
        for _ in range(3):
            reply = await pool.request("GET", f"http://127.0.0.1:{port}/")
            assert reply.content == b"once"
            await asyncio.sleep(0.05)  # let the close arrive before the next request
    assert connections == 3


async def test_a_connection_cut_mid_body_is_a_read_error(
    pool: httpcore.AsyncConnectionPool,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    server, port = await serve(handler)
    async with server:
        with pytest.raises((httpcore.ReadError, httpcore.RemoteProtocolError)):
            await pool.request("GET", f"http://127.0.0.1:{port}/")


async def test_nothing_listening_is_a_connect_error(pool: httpcore.AsyncConnectionPool) -> None:
    server, port = await serve(lambda r, w: asyncio.sleep(0))
    server.close()
    await server.wait_closed()
    with pytest.raises(httpcore.ConnectError) as err:
        await pool.request("GET", f"http://127.0.0.1:{port}/")
    assert "connect failed" in str(err.value)


async def test_a_read_timeout_when_one_is_asked_for(pool: httpcore.AsyncConnectionPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    server, port = await serve(handler)
    async with server:
        with pytest.raises(httpcore.ReadTimeout):
            await pool.request(
                "GET", f"http://127.0.0.1:{port}/", extensions={"timeout": {"read": 0.2}}
            )


def certificate(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-made certificate for 127.0.0.1: (server context, client context trusting it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test endpoint")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert_file, key_file)
    client_side = ssl.create_default_context(cafile=str(cert_file))
    return server_side, client_side


async def test_tls_handshake_and_streaming_over_it(tmp_path: Path) -> None:
    server_tls, client_tls = certificate(tmp_path)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(20):
            data = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server, port = await serve(handler, server_tls)
    async with server, httpcore.AsyncConnectionPool(
        ssl_context=client_tls, network_backend=AsyncioBackend()
    ) as tls_pool:
        async with tls_pool.stream("GET", f"https://127.0.0.1:{port}/") as reply:
            body = b"".join([part async for part in reply.aiter_stream()])
            info = reply.extensions["network_stream"]
            assert info.get_extra_info("ssl_object") is not None
    assert body == b"".join(b"data: %d\n\n" % i for i in range(20))


async def test_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    server_tls, _ = certificate(tmp_path)
    server, port = await serve(lambda r, w: asyncio.sleep(1), server_tls)
    async with server, httpcore.AsyncConnectionPool(
        ssl_context=ssl.create_default_context(), network_backend=AsyncioBackend()
    ) as strict:
        with pytest.raises(httpcore.ConnectError) as err:
            await strict.request("GET", f"https://127.0.0.1:{port}/")
    assert "TLS handshake failed" in str(err.value)


# ---- lanes -------------------------------------------------------------------------


async def get(transport: Transport, url: str) -> str:
    """One request the way the providers send theirs: through Transport.open."""
    response, _ = await transport.open(RequestSpec("GET", url, where="test", headers={}))
    try:
        return (await response.aread()).decode()
    finally:
        await response.aclose()


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

    settings = ProviderSettings(allow_private_endpoints=True, max_connections_per_endpoint=1000)
    transport = Transport(settings, EndpointPolicy(allow_private=True), asyncio.sleep)
    server, port = await serve(handler)
    url = f"http://127.0.0.1:{port}/"
    try:
        async with server:
            release.set()
            for _ in range(5):
                assert (await get(transport, url)) == "ok"
            lanes = transport._clients[("http", "127.0.0.1", port)]
            assert len(lanes) == 1

            release.clear()
            crowd = [asyncio.create_task(get(transport, url)) for _ in range(150)]
            await asyncio.sleep(0.5)  # every request is sent and waiting for its answer
            assert len(lanes) == -(-150 // _LANE_SIZE)  # full lanes and one for the rest
            release.set()
            replies = await asyncio.gather(*crowd)
            assert replies == ["ok"] * 150
            assert {lane.active for lane in lanes._lanes} == {0}  # every lease was given back
    finally:
        await transport.aclose()


# ---- the endpoint policy, again at connect time ------------------------------------


async def test_every_connection_is_checked_again_against_the_policy() -> None:
    """A name checked at /proxy set time may point elsewhere later (DNS rebinding)."""
    accepted = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await read_request(reader)
        writer.write(response(b""))
        await writer.drain()
        writer.close()

    strict = Transport(ProviderSettings(), EndpointPolicy(allow_private=False), asyncio.sleep)
    lenient = Transport(
        ProviderSettings(allow_private_endpoints=True),
        EndpointPolicy(allow_private=True),
        asyncio.sleep,
    )
    server, port = await serve(handler)
    try:
        async with server:
            for url in (f"http://localhost:{port}/v1/models", f"http://127.0.0.1:{port}/"):
                with pytest.raises(EndpointNotAllowed) as err:
                    await get(strict, url)
                assert "loopback" in str(err.value) and "ALLOW_PRIVATE_ENDPOINTS" in str(err.value)
            assert await get(lenient, f"http://localhost:{port}/") == ""  # allowed there
            assert accepted == 1
            assert {lane.active for lanes in strict._clients.values() for lane in lanes._lanes} == {
                0
            }
    finally:
        await strict.aclose()
        await lenient.aclose()


def test_the_connect_time_check_refuses_what_the_url_check_refuses() -> None:
    lenient = EndpointPolicy(allow_private=True)
    lenient.vet_connection("api.example.com", "203.0.113.9")  # public: fine
    lenient.vet_connection("lan", "192.168.1.20")
    for address in ("169.254.169.254", "fe80::1%eth0", "100.100.100.200", "::ffff:169.254.1.1"):
        with pytest.raises(EndpointRefused, match="never contacts"):
            lenient.vet_connection("rebind.example.com", address)
    with pytest.raises(EndpointRefused, match="ALLOW_PRIVATE_ENDPOINTS"):
        EndpointPolicy().vet_connection("rebind.example.com", "10.0.0.5")
