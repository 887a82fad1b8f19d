"""A loopback TCP relay to a server (the PostgreSQL peer), for the ways a network fails:
cut at once, or gone silent."""

from __future__ import annotations

import asyncio
import contextlib


class Relay:
    """Forwards 127.0.0.1:<its port> to 127.0.0.1:`port`.

    `cut()`: every connection ended and no new one taken (the server seems gone at once).
    `swallow()`: connections stay open and new ones are taken, but nothing is forwarded
    either way (a partition, a failover, a dead VM: packets dropped, nothing refused).
    `heal()`: the connections that went silent end (as a reset, when the network is back)
    and new ones are forwarded again."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._silent = False
        self._swallowed: list[asyncio.StreamWriter] = []  # its connections while silent
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, url: str) -> str:
        """`url` (of the server's port) through the relay once started."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return url.replace(f":{self._port}/", f":{port}/")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._silent:
                self._swallowed.append(writer)
                await _drop(reader)
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
            self._writers += [writer, up_writer]
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._tasks.discard(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if self._silent:
                    continue  # read and dropped: the sender's kernel sees no refusal
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()

    def swallow(self) -> None:
        self._silent = True
        self._swallowed += self._writers

    def heal(self) -> None:
        self._silent = False
        swallowed, self._swallowed = self._swallowed, []
        for writer in swallowed:
            writer.transport.abort()
        self._writers = [w for w in self._writers if w not in swallowed]

    def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()

    async def close(self) -> None:
        """Every connection ended, the relay's tasks gone."""
        if self._server is not None:
            self._server.close()
        for writer in [*self._writers, *self._swallowed]:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _drop(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError):
        while await reader.read(65536):
            pass
