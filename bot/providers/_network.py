"""httpcore's network layer on plain asyncio protocols, with guarded Happy Eyeballs connects.

The default (anyio) layer re-arms the socket in the event loop and opens a cancel scope
on every read; with hundreds of answers streaming at once that was most of the bot's
CPU. Here bytes land in a buffer as they arrive and a read only waits when it is empty.

A streamed answer can also be read at a pace (`AsyncioStream.pace`): tokens trickle in
every few tens of milliseconds, and on a virtual machine each wakeup from idle costs
~0.2 ms of CPU whatever it does, while chat platforms show an answer by edits a second
apart. Once a trickle is noticed, the socket is left unread until the next tick of a
shared clock, so one wakeup reads what arrived meanwhile, for every paced stream at once,
and the socket rests again until the tick after.

Where the kernel allows it (Linux, probed once), a socket rests by its low-water mark
(SO_RCVLOWAT) rather than by pausing the transport: the kernel then wakes nobody for a
token, and says the socket is readable as soon as the mark is lowered at the tick. uvloop
(libuv) takes a paused socket out of epoll only when it next becomes readable, so a
pause cost one more wakeup a tick; a raised mark costs none.
"""

# httpcore's interface passes timeouts as parameters:
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import math
import select
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import httpcore

_HIGH_WATER = 1 << 20  # stop reading from a socket whose bytes nobody consumes
STAGGER = 0.25  # RFC 8305's "Connection Attempt Delay"
# An arrival smaller than this, soon after the one before, is a trickle of tokens;
# a larger one is a bulk body, which is never held back.
_TRICKLE = 8192
# What is written is held and sent in one piece when the answer is first read: a
# request's head and body go out in one send instead of two (a send to loopback costs
# ~0.1 ms of CPU on a small VM, bench/RESULTS.md). More than this goes out at once.
_HELD_MOST = 64 * 1024


@functools.cache
def quiet_rest_works() -> bool:
    """Whether a socket whose SO_RCVLOWAT is raised to `_TRICKLE` is not readable while
    fewer bytes wait, and is at once when the mark is lowered again (an epoll waiting on
    it is woken, as Linux does). Probed once, on a loopback connection."""
    try:
        import fcntl  # Unix only, as epoll is
        import termios
    except ImportError:
        return False
    if not hasattr(select, "epoll"):
        return False
    try:
        with socket.create_server(("127.0.0.1", 0)) as server:
            with socket.create_connection(server.getsockname()[:2], timeout=1) as sender:
                receiver, _ = server.accept()
                with receiver, select.epoll() as poll:
                    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, _TRICKLE)
                    poll.register(receiver.fileno(), select.EPOLLIN)
                    sender.sendall(b"token")
                    waiting = bytearray(4)
                    for _ in range(100):  # loopback delivers at once; a busy host, soon
                        fcntl.ioctl(receiver.fileno(), termios.FIONREAD, waiting)
                        if int.from_bytes(waiting, "little"):
                            break
                        time.sleep(0.001)
                    else:
                        return False
                    held = not poll.poll(0)
                    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
                    return held and bool(poll.poll(0))
    except OSError:
        return False


def _set_mark(transport: asyncio.BaseTransport, size: int) -> bool:
    """Set the socket's SO_RCVLOWAT; False where it has no socket that takes one."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
    except (OSError, AttributeError, ValueError):
        return False
    return True


# Called with (host, address) before each connection; raises to refuse it.
AddressGuard = Callable[[str, str], None]
# (host, port) → its addresses, preferred first.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class _Protocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        self._due = 0.0  # when the waiting read times out; 0.0 while none waits
        self._timer: asyncio.TimerHandle | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False  # by the high-water mark
        self._pace = 0.0  # seconds between reads of a trickle; 0.0: read as bytes arrive
        self._arrived = -math.inf  # when the last bytes arrived
        self._hold: asyncio.TimerHandle | None = None  # the socket rests until it fires
        self._marked = False  # it rests by its low-water mark, not by a paused transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A Transport by interface; uvloop's do not subclass asyncio's, so no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self._marked:  # a bulk arrival (past the mark) during a rest: it is over
            self._wake_socket()
        if self._pace:
            now = self._loop.time()
            if len(data) < _TRICKLE and now - self._arrived < self._pace and self._hold is None:
                self._rest(now)
            self._arrived = now
        if len(self.buffer) > _HIGH_WATER and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def pace(self, seconds: float) -> None:
        """Read a trickle at most once every `seconds` (0: as bytes arrive)."""
        self._pace = seconds
        self._arrived = -math.inf
        if not seconds:
            self._wake_socket()

    def _rest(self, now: float) -> None:
        """Leave the socket unread until the next tick of the shared clock."""
        if self.transport is None:
            return
        if quiet_rest_works() and _set_mark(self.transport, _TRICKLE):
            self._marked = True
        else:
            self.transport.pause_reading()
        tick = (math.floor(now / self._pace) + 1) * self._pace
        self._hold = self._loop.call_at(tick, self._tick)

    def _tick(self) -> None:
        """Read what arrived during the hold. The tick counts as an arrival: bytes that
        were waiting come in now, and rest the socket again at once, instead of waking
        the process once more for the next token (on a VM each wakeup costs ~0.2 ms)."""
        self._hold = None
        self._arrived = self._loop.time()
        self._wake_socket()

    def _wake_socket(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        transport = self.transport
        if self._marked:
            self._marked = False
            if transport is not None and not transport.is_closing():
                _set_mark(transport, 1)  # readable at once if a token waits
            return
        if not self._paused and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        self.stop_timer()
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_readable(self, timeout: float | None) -> None:
        """Wait for bytes, end of stream or an error; TimeoutError after `timeout` s."""
        waiter = self._waiter = self._loop.create_future()
        if timeout is not None:
            self._due = self._loop.time() + timeout
            # One timer per connection, moved only when it would fire too late: a stream
            # of quick reads never touches it, and an early firing re-arms for the rest.
            if self._timer is None or self._timer.when() > self._due:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._loop.call_at(self._due, self._expire)
        try:
            await waiter
        finally:
            self._waiter = None
            self._due = 0.0

    def _expire(self) -> None:
        self._timer = None
        if not self._due:
            return  # no read waits; the next one arms a timer again
        if self._loop.time() < self._due:
            self._timer = self._loop.call_at(self._due, self._expire)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def writing_paused(self) -> bool:
        return self._drain is not None

    async def drained(self) -> None:
        if self._drain is not None:
            await self._drain

    def take(self, max_bytes: int) -> bytes:
        buffer = self.buffer
        if len(buffer) <= max_bytes:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
        if self._paused and len(buffer) < _HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            if self._hold is None:
                self.transport.resume_reading()
        return data


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        self._held = bytearray()  # written, not yet sent: see _HELD_MOST

    @property
    def _transport(self) -> asyncio.Transport:
        transport = self._protocol.transport
        if transport is None:
            raise httpcore.ReadError("connection is not open")
        return transport

    def pace(self, seconds: float) -> None:
        """Read a trickle of small arrivals (a streamed answer's tokens) at most once every
        `seconds`; a bulk body and the first bytes after a pause are read as they come.
        0 turns it off. (httpcore hands this stream out as `network_stream`.)"""
        self._protocol.pace(seconds)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self._protocol
        if self._held:  # the request is written: send it before waiting for its answer
            if p.transport is not None and not p.transport.is_closing():
                p.transport.write(bytes(self._held))
            self._held.clear()  # else the read below reports the closed connection
        if not p.buffer and not p.eof:
            try:
                await p.wait_readable(timeout)
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
            self._held.clear()
            raise httpcore.WriteError("connection is closed")
        if len(self._held) + len(buffer) <= _HELD_MOST:
            self._held += buffer  # goes out with what follows, at the latest at the next read
            return
        if self._held:
            transport.write(bytes(self._held))
            self._held.clear()
        transport.write(buffer)
        if not self._protocol.writing_paused:
            return  # the kernel took it all: no timer needed
        try:
            async with asyncio.timeout(timeout):
                await self._protocol.drained()
        except TimeoutError:
            raise httpcore.WriteTimeout("write timed out") from None

    async def aclose(self) -> None:
        self._held.clear()
        self._protocol.stop_timer()
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
        plain = self._transport
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    plain, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            plain.close()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except (OSError, ssl.SSLError) as exc:
            plain.close()
            raise httpcore.ConnectError(f"TLS handshake failed ({type(exc).__name__})") from None
        self._protocol.transport = cast(asyncio.Transport, tls)
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


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of `host` in the system's order of preference (RFC 6724)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]  # an address already: no lookup (a thread each, in a burst of 50)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def interleaved(addresses: list[str]) -> list[str]:
    """RFC 8305 order: alternate IPv6 and IPv4, starting with the family listed first."""
    families: dict[bool, list[str]] = {}
    for address in addresses:
        families.setdefault(":" in address, []).append(address)
    mixed = itertools.zip_longest(*families.values())
    return [address for pair in mixed for address in pair if address is not None]


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses `guard` accepts, checked after this very lookup."""

    def __init__(
        self,
        guard: AddressGuard | None = None,
        resolver: Resolver = system_resolver,
        stagger: float = STAGGER,
    ) -> None:
        self._guard = guard
        self._resolver = resolver
        self._stagger = stagger
        quiet_rest_works()  # probed now, at start, rather than in a stream's first rest

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        protocol = _Protocol(loop)
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._addresses(host, port)
                sock = await self._first_connected(
                    addresses, port, local_address, list(socket_options or ())
                )
                try:
                    await loop.create_connection(lambda: protocol, sock=sock)
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise httpcore.ConnectTimeout("connect timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"connect failed ({type(exc).__name__})") from None
        return AsyncioStream(protocol)

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The addresses to try, each one passed by the guard (any refusal refuses all)."""
        addresses = await self._resolver(host, port)
        if not addresses:
            raise OSError(f"{host} has no address")
        if self._guard is not None:
            for address in addresses:
                self._guard(host, address)
        return interleaved(addresses)

    async def _first_connected(
        self, addresses: list[str], port: int, local: str | None, options: list[Any]
    ) -> socket.socket:
        """Happy Eyeballs (RFC 8305): a new attempt every `stagger` seconds, or at once
        when one fails; the first to connect wins and the others are closed."""
        waiting = list(reversed(addresses))
        running: dict[asyncio.Task[socket.socket], str] = {}
        failures: list[tuple[str, str]] = []
        winner: socket.socket | None = None
        try:
            try:
                while winner is None and (waiting or running):
                    if waiting:
                        address = waiting.pop()
                        attempt = asyncio.create_task(_attempt(address, port, local, options))
                        running[attempt] = address
                    done, _ = await asyncio.wait(
                        running,
                        timeout=self._stagger if waiting else None,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    for task in done:
                        address = running.pop(task)
                        error = task.exception()
                        if error is None:
                            if winner is None:
                                winner = task.result()
                            else:  # two finished in the same instant
                                task.result().close()
                        elif isinstance(error, OSError):
                            failures.append((address, type(error).__name__))
                        else:
                            raise error
            finally:
                for task in running:
                    task.cancel()
                    task.add_done_callback(_close_connected)
                if running:
                    await asyncio.wait(running)
        except BaseException:
            if winner is not None:  # cancelled (the connect timeout) while tidying up
                winner.close()
            raise
        if winner is None:
            if len(failures) == 1:
                raise httpcore.ConnectError(f"connect failed ({failures[0][1]})")
            each = "; ".join(f"{address}: {error}" for address, error in failures)
            raise httpcore.ConnectError(f"connect failed on every address ({each})")
        return winner

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by the bot")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _attempt(address: str, port: int, local: str | None, options: list[Any]) -> socket.socket:
    """One connection attempt; the socket is closed unless it is returned."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setblocking(False)
        # Nagle's algorithm would hold a request's body until the headers are acked:
        # ~40 ms a request against a server that delays its acks.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in options:
            sock.setsockopt(*option)
        if local:
            sock.bind((local, 0))
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _close_connected(task: asyncio.Task[socket.socket]) -> None:
    """Close what a losing attempt connected anyway (it finished as it was cancelled)."""
    if not task.cancelled() and task.exception() is None:
        task.result().close()
