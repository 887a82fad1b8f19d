"""httpcore's network layer on plain asyncio protocols.

The default (anyio) layer re-arms the socket in the event loop and opens a cancel scope
on every read; with hundreds of answers streaming at once that was most of the bot's
CPU. Here bytes land in a buffer as they arrive and a read only waits when it is empty.
Timeouts of reads are left to the provider layer's own first-byte and idle limits.
"""

# httpcore's interface passes timeouts as parameters:
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore

_HIGH_WATER = 1 << 20  # stop reading from a socket whose bytes nobody consumes


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_readable(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def drained(self) -> None:
        if self._drain is not None:
            await self._drain

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self._paused and len(self.buffer) < _HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol

    @property
    def _transport(self) -> asyncio.Transport:
        transport = self._protocol.transport
        if transport is None:
            raise httpcore.ReadError("connection is not open")
        return transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self._protocol
        if not p.buffer and not p.eof:
            if timeout is None:  # the usual case: the provider layer times reads itself
                await p.wait_readable()
            else:
                try:
                    async with asyncio.timeout(timeout):
                        await p.wait_readable()
                except TimeoutError:
                    raise httpcore.ReadTimeout("read timed out") from None
        if p.buffer:
            return p.take(max_bytes)
        if p.error is not None:
            raise httpcore.ReadError(f"connection lost ({type(p.error).__name__})")
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        transport = self._transport
        if transport.is_closing():
            raise httpcore.WriteError("connection is closed")
        transport.write(buffer)
        try:
            async with asyncio.timeout(timeout):
                await self._protocol.drained()
        except TimeoutError:
            raise httpcore.WriteTimeout("write timed out") from None

    async def aclose(self) -> None:
        transport = self._protocol.transport
        if transport is not None:
            transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ConnectError(f"TLS handshake failed ({type(exc).__name__})") from None
        assert isinstance(tls, asyncio.Transport)
        self._protocol.transport = tls
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks this of an idle kept-alive connection: bytes or EOF mean the
            # server closed or broke it, so it must not be reused.
            return bool(self._protocol.buffer) or self._protocol.eof
        transport = self._protocol.transport
        if transport is None:
            return None
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        return None


# Called with (host, address) before each connection; raises to refuse it.
AddressGuard = Callable[[str, str], None]


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses `guard` accepts, checked after this very lookup."""

    def __init__(self, guard: AddressGuard | None = None) -> None:
        self._guard = guard

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        protocol = _Protocol()
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._addresses(host, port)
                transport = await self._connect(loop, protocol, addresses, port, local_address)
        except TimeoutError:
            raise httpcore.ConnectTimeout("connect timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"connect failed ({type(exc).__name__})") from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(protocol)

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The addresses to try, each one passed by the guard (any refusal refuses all)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if self._guard is not None:
            for address in addresses:
                self._guard(host, address)
        return addresses

    @staticmethod
    async def _connect(
        loop: asyncio.AbstractEventLoop,
        protocol: _Protocol,
        addresses: list[str],
        port: int,
        local_address: str | None,
    ) -> asyncio.BaseTransport:
        error: OSError = OSError("no address to connect to")
        for address in addresses:
            try:
                transport, _ = await loop.create_connection(
                    lambda: protocol,
                    address,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                )
                return transport
            except OSError as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by the bot")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
