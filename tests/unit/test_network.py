"""The provider layer's own network layer, against real loopback servers.

Plain HTTP and TLS (a certificate made for the test), closed and broken connections,
keep-alive reuse, reads that time out on their own, paced reading of a trickle of
tokens, Happy Eyeballs connects across
several addresses, and the endpoint policy checked on every address before connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import itertools
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.providers import EndpointNotAllowed, ProviderSettings, _network
from bot.providers._http import RequestSpec, Transport
from bot.providers._network import AsyncioBackend, interleaved, quiet_rest_works
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


async def test_small_writes_go_out_at_once(pool: httpcore.AsyncConnectionPool) -> None:
    """TCP_NODELAY: a body written after its headers must not wait for an ack."""
    server, port, _ = await counting_server()
    async with server:
        reply = await pool.request("POST", f"http://127.0.0.1:{port}/", content=b"x")
        sock = reply.extensions["network_stream"].get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_a_request_goes_out_in_one_send_when_its_answer_is_first_read() -> None:
    """Head and body are held until the read: one send where there were two."""
    pieces: list[bytes] = []
    arrived = asyncio.Event()
    head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\n"

    class Recorder(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)

        def data_received(self, data: bytes) -> None:
            pieces.append(data)
            arrived.set()
            if data == head + b"body":
                self.transport.write(response(b"ok"))

    server = await asyncio.get_running_loop().create_server(Recorder, "127.0.0.1", 0)
    async with server:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            await stream.write(head)
            await stream.write(b"body")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(arrived.wait(), 0.1)  # nothing went out yet
            assert (await stream.read(65536, timeout=5)).startswith(b"HTTP/1.1 200 OK")
            assert pieces == [head + b"body"]
            # More than a request's worth is not held back.
            arrived.clear()
            await stream.write(b"x" * (_network._HELD_MOST + 1))
            await asyncio.wait_for(arrived.wait(), 5)
        finally:
            await stream.aclose()


async def test_a_write_the_server_never_takes_times_out() -> None:
    done = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()  # reads nothing: the socket buffers fill up
        writer.close()

    server, port = await serve(handler)
    async with server:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port)
        try:
            with pytest.raises(httpcore.WriteTimeout):
                for _ in range(1000):  # up to 64 MB: far more than the buffers hold
                    await stream.write(b"x" * (1 << 16), timeout=0.2)
        finally:
            done.set()
            await stream.aclose()


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


async def test_reads_that_keep_coming_never_time_out_and_silence_does(
    pool: httpcore.AsyncConnectionPool,
) -> None:
    """Each read gets the whole timeout, however long the stream (one timer, moved on)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(12):  # together far longer than one read may wait
            writer.write(b"2\r\n%02d\r\n" % i)
            await writer.drain()
            await asyncio.sleep(0.05)
        await asyncio.sleep(10)  # then silence, the connection still open

    server, port = await serve(handler)
    parts: list[bytes] = []
    async with server:
        async with pool.stream(
            "GET", f"http://127.0.0.1:{port}/", extensions={"timeout": {"read": 0.25}}
        ) as reply:
            with pytest.raises(httpcore.ReadTimeout):
                async for part in reply.aiter_stream():
                    parts.append(part)
    assert b"".join(parts) == b"".join(b"%02d" % i for i in range(12))


async def trickle(writer: asyncio.StreamWriter, parts: int, gap: float) -> None:
    """Chunked-encoding parts of two bytes each, `gap` seconds apart."""
    for i in range(parts):
        writer.write(b"2\r\n%02d\r\n" % i)
        await writer.drain()
        await asyncio.sleep(gap)


def batches(times: list[float]) -> int:
    """How many separate wakeups delivered parts stamped with these times."""
    return 1 + sum(1 for a, b in itertools.pairwise(times) if b - a > 0.004)


async def stamped_parts(reply: httpcore.Response) -> tuple[bytes, list[float]]:
    clock = asyncio.get_running_loop().time
    body, times = b"", []
    async for part in reply.aiter_stream():
        body += part
        times.append(clock())
    return body, times


@pytest.fixture(params=["mark", "pause"])
def rest(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How a paced socket rests: by its low-water mark where the kernel keeps it quiet
    (Linux), else by pausing the transport."""
    if request.param == "mark":
        assert quiet_rest_works() == (sys.platform == "linux")
        if not quiet_rest_works():
            pytest.skip("this kernel does not keep a socket quiet below SO_RCVLOWAT")
    else:
        monkeypatch.setattr(_network, "quiet_rest_works", lambda: False)
    return str(request.param)


def low_water_mark(network: httpcore.AsyncNetworkStream) -> int:
    sock = network.get_extra_info("socket")
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))


async def test_a_paced_trickle_is_read_once_a_tick_and_the_next_response_as_it_comes(
    pool: httpcore.AsyncConnectionPool, rest: str
) -> None:
    """Tokens 20 ms apart: one read per tick instead of one per token; pace(0) undoes it,
    and the connection goes back to the pool with its socket as it was."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            await trickle(writer, 40, 0.02)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    server, port = await serve(handler)
    expected = b"".join(b"%02d" % i for i in range(40))
    async with server:
        async with pool.stream("GET", f"http://127.0.0.1:{port}/") as reply:
            network = reply.extensions["network_stream"]
            network.pace(0.25)
            paced, paced_times = await stamped_parts(reply)
            network.pace(0.0)
            assert low_water_mark(network) == 1
        async with pool.stream("GET", f"http://127.0.0.1:{port}/") as reply:
            assert reply.extensions["network_stream"] is network  # the same connection
            plain, plain_times = await stamped_parts(reply)
    assert paced == plain == expected
    # 0.8 s of tokens: the first few as they come (until two arrive close together),
    # then a tick's worth at a time: ~8 wakeups instead of ~40.
    assert batches(paced_times) <= 10, paced_times
    # Once the trickle rests the socket (by the third part), a tick's read rests it again
    # at once: no read comes sooner than a tick after the one before.
    starts = [b for a, b in itertools.pairwise([0.0, *paced_times]) if b - a > 0.004]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) > 4 and min(gaps[3:]) > 0.25 / 2, gaps
    assert batches(plain_times) >= 20, plain_times


async def test_bytes_after_a_quiet_spell_and_a_bulk_body_are_never_held(
    pool: httpcore.AsyncConnectionPool, rest: str
) -> None:
    pace = 0.5
    sent: dict[str, float] = {}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clock = asyncio.get_running_loop().time
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await trickle(writer, 3, 0.01)  # a trickle: the socket now rests until a tick
        # Quiet past that tick, then speak just after the next one, as far as possible
        # from the tick after it: held bytes would wait ~0.45 s for it.
        await asyncio.sleep(pace + pace - clock() % pace + 0.05)
        sent["late"] = clock()
        writer.write(b"4\r\nlate\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        block = b"b" * 65536  # then a bulk body: large arrivals are never held
        sent["bulk"] = clock()
        for _ in range(64):
            writer.write(b"%x\r\n%s\r\n" % (len(block), block))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server, port = await serve(handler)
    async with server:
        async with pool.stream("GET", f"http://127.0.0.1:{port}/") as reply:
            reply.extensions["network_stream"].pace(pace)
            clock = asyncio.get_running_loop().time
            late_at = done_at = 0.0
            size = 0
            async for part in reply.aiter_stream():
                size += len(part)
                if part == b"late":
                    late_at = clock()
            done_at = clock()
    assert size == 6 + 4 + 64 * 65536
    assert late_at - sent["late"] < 0.3
    assert done_at - sent["bulk"] < pace


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


@contextlib.asynccontextmanager
async def tls_endpoint(
    tmp_path: Path, handler: Handler
) -> AsyncIterator[tuple[httpcore.AsyncConnectionPool, str]]:
    """A TLS server on loopback (a certificate made for it) and a pool that trusts it."""
    server_tls, client_tls = certificate(tmp_path)
    server, port = await serve(handler, server_tls)
    async with (
        server,
        httpcore.AsyncConnectionPool(
            ssl_context=client_tls, network_backend=AsyncioBackend()
        ) as tls_pool,
    ):
        yield tls_pool, f"https://127.0.0.1:{port}/"


async def test_tls_handshake_and_streaming_over_it(tmp_path: Path) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(20):
            data = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with tls_endpoint(tmp_path, handler) as (tls_pool, url):
        async with tls_pool.stream("GET", url) as reply:
            body = b"".join([part async for part in reply.aiter_stream()])
            info = reply.extensions["network_stream"]
            assert info.get_extra_info("ssl_object") is not None
    assert body == b"".join(b"data: %d\n\n" % i for i in range(20))


async def test_a_paced_trickle_over_tls_rests_and_arrives_whole(tmp_path: Path, rest: str) -> None:
    """TLS records trickle in as tokens do: the socket under the TLS layer rests (by its
    mark, where it can) and nothing is lost or held past a tick."""
    marks: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await trickle(writer, 30, 0.02)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with tls_endpoint(tmp_path, handler) as (tls_pool, url):
        async with tls_pool.stream("GET", url) as reply:
            network = reply.extensions["network_stream"]
            network.pace(0.2)
            clock = asyncio.get_running_loop().time
            body, times = b"", []
            async for part in reply.aiter_stream():
                body += part
                times.append(clock())
                marks.append(low_water_mark(network))
            network.pace(0.0)
            assert low_water_mark(network) == 1
    assert body == b"".join(b"%02d" % i for i in range(30))
    # 0.6 s of tokens: the first few as they come, then a tick's worth at a time (~7
    # wakeups instead of 30). A TLS record cut by a tick's read, or a token landing just
    # after a tick on a busy machine, adds a wakeup of its own (CI once saw 9).
    assert batches(times) <= 10, times
    assert max(marks) == (_network._TRICKLE if rest == "mark" else 1)


async def test_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    server_tls, _ = certificate(tmp_path)
    server, port = await serve(lambda r, w: asyncio.sleep(1), server_tls)
    async with (
        server,
        httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(), network_backend=AsyncioBackend()
        ) as strict,
    ):
        with pytest.raises(httpcore.ConnectError) as err:
            await strict.request("GET", f"https://127.0.0.1:{port}/")
    assert "TLS handshake failed" in str(err.value)


# ---- Happy Eyeballs: several addresses for one name ---------------------------------


def resolving_to(*addresses: str) -> Callable[[str, int], Awaitable[list[str]]]:
    async def resolver(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolver


async def counting_server(host: str = "127.0.0.1") -> tuple[asyncio.Server, int, list[int]]:
    """A server answering every request with "ok"; the list counts accepted connections."""
    accepted: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                await read_request(reader)
                writer.write(response(b"ok"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handler, host, 0)
    return server, server.sockets[0].getsockname()[1], accepted


def syn_sent(port: int) -> int:
    """Connection attempts to `port` still waiting for an answer (Linux /proc)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(f":{port:04X}") and fields[3] == "02":  # SYN_SENT
                count += 1
    return count


async def blackhole(host: str, port: int) -> list[socket.socket]:
    """A listener at (host, port) whose accept queue is full: new attempts get no answer.

    Returns the sockets to close afterwards.
    """
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.bind((host, port))
    listener.listen(0)
    held = [listener]
    loop = asyncio.get_running_loop()
    for i in range(3):
        filler = socket.socket(listener.family)
        filler.setblocking(False)
        held.append(filler)
        if i == 0:
            await loop.sock_connect(filler, (host, port))  # fills the accept queue
        else:
            with contextlib.suppress(BlockingIOError):
                filler.connect((host, port))
    return held


async def test_an_address_that_never_answers_does_not_hold_up_the_next() -> None:
    """RFC 8305: IPv6 first, and if it has not connected in 250 ms, IPv4 too."""
    server, port, accepted = await counting_server("127.0.0.1")
    held = await blackhole("::1", port)
    backend = AsyncioBackend(resolver=resolving_to("::1", "127.0.0.1"))
    try:
        async with server, httpcore.AsyncConnectionPool(network_backend=backend) as pool:
            waiting_before = syn_sent(port)
            # Tried one after the other, the first would use up the whole connect timeout.
            reply = await pool.request(
                "GET", f"http://ipv6-broken.test:{port}/", extensions={"timeout": {"connect": 10}}
            )
            assert reply.content == b"ok"
            assert reply.extensions["network_stream"].get_extra_info("server_addr") == (
                "127.0.0.1",
                port,
            )
            assert accepted == [1]
            await asyncio.sleep(0)
            assert syn_sent(port) == waiting_before  # the IPv6 attempt was called off
    finally:
        for sock in held:
            sock.close()


async def test_a_refused_address_falls_through_at_once() -> None:
    server, port, accepted = await counting_server("127.0.0.1")
    # With an hour between attempts, only a failure can start the next one in time.
    backend = AsyncioBackend(resolver=resolving_to("127.0.0.2", "127.0.0.1"), stagger=3600)
    async with server, httpcore.AsyncConnectionPool(network_backend=backend) as pool:
        reply = await pool.request(
            "GET", f"http://two.test:{port}/", extensions={"timeout": {"connect": 10}}
        )
    assert reply.content == b"ok" and accepted == [1]


async def test_every_address_refused_is_one_error_naming_each() -> None:
    server, port, _ = await counting_server("127.0.0.1")
    server.close()
    await server.wait_closed()
    backend = AsyncioBackend(resolver=resolving_to("127.0.0.2", "127.0.0.3"), stagger=3600)
    async with httpcore.AsyncConnectionPool(network_backend=backend) as pool:
        with pytest.raises(httpcore.ConnectError) as err:
            await pool.request("GET", f"http://none.test:{port}/")
    assert str(err.value) == (
        "connect failed on every address "
        "(127.0.0.2: ConnectionRefusedError; 127.0.0.3: ConnectionRefusedError)"
    )


async def test_one_refused_address_refuses_the_name_before_any_connect() -> None:
    server, port, accepted = await counting_server("127.0.0.1")
    checked: list[str] = []

    def guard(host: str, address: str) -> None:
        checked.append(address)
        if address == "127.0.0.3":
            raise EndpointRefused(f"Refused: {host} ({address})")

    backend = AsyncioBackend(guard=guard, resolver=resolving_to("127.0.0.1", "127.0.0.3"))
    async with server, httpcore.AsyncConnectionPool(network_backend=backend) as pool:
        with pytest.raises(EndpointRefused):
            await pool.request("GET", f"http://rebound.test:{port}/")
    assert checked == ["127.0.0.1", "127.0.0.3"]
    assert accepted == []  # the allowed address first in line was not contacted either


def test_addresses_alternate_between_families_starting_with_the_first_listed() -> None:
    assert interleaved(["::1", "::2", "10.0.0.1", "10.0.0.2", "::3"]) == [
        "::1",
        "10.0.0.1",
        "::2",
        "10.0.0.2",
        "::3",
    ]
    assert interleaved(["10.0.0.1", "::1", "::2"]) == ["10.0.0.1", "::1", "::2"]
    assert interleaved(["10.0.0.1", "10.0.0.2"]) == ["10.0.0.1", "10.0.0.2"]


# ---- the endpoint policy, again at connect time ------------------------------------


def lenient_transport() -> Transport:
    """The provider layer's transport where loopback endpoints are allowed."""
    return Transport(
        ProviderSettings(allow_private_endpoints=True),
        EndpointPolicy(allow_private=True),
        asyncio.sleep,
    )


async def get(transport: Transport, url: str) -> str:
    """One request the way the providers send theirs: through Transport.open."""
    response, _ = await transport.open(RequestSpec("GET", url, where="test", headers={}))
    try:
        return (await response.aread()).decode()
    finally:
        await response.aclose()


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
    lenient = lenient_transport()
    server, port = await serve(handler)
    try:
        async with server:
            for url in (f"http://localhost:{port}/v1/models", f"http://127.0.0.1:{port}/"):
                with pytest.raises(EndpointNotAllowed) as err:
                    await get(strict, url)
                assert "loopback" in str(err.value) and "ALLOW_PRIVATE_ENDPOINTS" in str(err.value)
            assert await get(lenient, f"http://localhost:{port}/") == ""  # allowed there
            assert accepted == 1
    finally:
        await strict.aclose()
        await lenient.aclose()


async def test_no_cookie_an_endpoint_sets_goes_out_again() -> None:
    """One client serves every channel whose endpoint is on that host: a cookie one
    endpoint set must not go out with another channel's requests."""
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                heads.append(await read_request(reader))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nset-cookie: session=alice; Path=/\r\n"
                    b"content-length: 0\r\n\r\n"
                )
                await writer.drain()

    transport = lenient_transport()
    server, port = await serve(handler)
    try:
        async with server:
            for _ in range(3):
                assert await get(transport, f"http://127.0.0.1:{port}/v1/models") == ""
    finally:
        await transport.aclose()
    assert len(heads) == 3
    assert not any(b"cookie" in head.lower().replace(b"set-cookie", b"") for head in heads)


def test_the_connect_time_check_refuses_what_the_url_check_refuses() -> None:
    lenient = EndpointPolicy(allow_private=True)
    lenient.vet_connection("api.example.com", "203.0.113.9")  # public: fine
    lenient.vet_connection("lan", "192.168.1.20")
    for address in ("169.254.169.254", "fe80::1%eth0", "100.100.100.200", "::ffff:169.254.1.1"):
        with pytest.raises(EndpointRefused, match="never contacts"):
            lenient.vet_connection("rebind.example.com", address)
    with pytest.raises(EndpointRefused, match="ALLOW_PRIVATE_ENDPOINTS"):
        EndpointPolicy().vet_connection("rebind.example.com", "10.0.0.5")
