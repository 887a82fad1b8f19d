"""Client pool, one request attempt with timeouts, fault mapping and the retry rule."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from bot.providers._errors import error_from_status, malformed, redact
from bot.providers.base import (
    EndpointNotAllowed,
    Overloaded,
    ProviderError,
    ProviderSettings,
    ProviderTimeout,
    RateLimited,
    StreamCut,
    Unreachable,
)
from bot.providers.policy import EndpointPolicy, EndpointRefused

log = logging.getLogger("bot.providers")

Sleep = Callable[[float], Awaitable[None]]

_RETRYABLE = (Overloaded, RateLimited, ProviderTimeout, StreamCut, Unreachable)
_MAX_BODY = 16 * 1024 * 1024  # a model list from a big router is ~2 MB
_MAX_ERROR_BODY = 64 * 1024
_DRAIN_LIMIT = 64 * 1024
_DRAIN_SECONDS = 1.0
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 8.0


class Transport:
    """What every provider of one hub shares: pooled clients, policy, settings, memory."""

    def __init__(self, settings: ProviderSettings, policy: EndpointPolicy, sleep: Sleep) -> None:
        self.settings = settings
        self.policy = policy
        self.sleep = sleep
        self.corrected: dict[str, str] = {}  # custom URL as typed → URL that works (+/v1)
        self._clients: dict[tuple[str, str, int | None], httpx.AsyncClient] = {}
        s = settings
        # httpx's read timeout is only a backstop; first-byte and idle limits are enforced
        # around each read below so each can be set on its own.
        self._limits = httpx.Limits(
            max_connections=s.max_connections_per_endpoint, max_keepalive_connections=100
        )
        self._timeout = httpx.Timeout(
            connect=s.connect_timeout,
            read=max(s.first_byte_timeout, s.idle_timeout) + 1.0,
            write=s.connect_timeout + s.first_byte_timeout,
            pool=s.connect_timeout,
        )

    def client(self, url: str) -> httpx.AsyncClient:
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "", parts.port)
        client = self._clients.get(key)
        if client is None or client.is_closed:
            # trust_env=False: a ~/.netrc entry must never attach credentials to a URL a
            # chat user typed. No redirects: a redirect could lead past the endpoint policy.
            client = httpx.AsyncClient(
                timeout=self._timeout,
                follow_redirects=False,
                trust_env=False,
                limits=self._limits,
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def checked(self, url: str) -> str:
        """Run a user-supplied URL through the endpoint policy."""
        try:
            return await self.policy.check(url)
        except EndpointRefused as err:
            raise EndpointNotAllowed(str(err)) from None

    def retry_delay(self, attempt: int, err: ProviderError, started: float) -> float | None:
        """Seconds to wait before another attempt, or None to give up now."""
        if not isinstance(err, _RETRYABLE) or attempt >= self.settings.max_retries:
            return None
        if isinstance(err, RateLimited) and err.quota:
            return None
        if isinstance(err, RateLimited) and err.retry_after is not None:
            delay = err.retry_after
        else:
            ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)
            delay = random.uniform(ceiling / 2, ceiling)  # jitter spreads out retry storms
        if time.monotonic() - started + delay > self.settings.retry_max_seconds:
            return None
        return delay

    async def retrying(self, what: str, op: Callable[[], Awaitable[Any]]) -> Any:
        """Run `op` (which yields nothing partial) with the bounded retry rule."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return await op()
            except ProviderError as err:
                delay = self.retry_delay(attempt, err, started)
                if delay is None:
                    raise
                self.log_retry(what, err, attempt, delay)
                await self.sleep(delay)
                attempt += 1

    def log_retry(self, what: str, err: ProviderError, attempt: int, delay: float) -> None:
        log.warning(
            "%s failed (%s), retry %d in %.2f s: %s",
            what,
            err.kind,
            attempt + 1,
            delay,
            redact(str(err)),
        )

    async def open(
        self,
        method: str,
        url: str,
        *,
        where: str,
        headers: dict[str, str],
        secrets: Iterable[str],
        json_body: Any = None,
        params: dict[str, str] | None = None,
        auth_hint: str = "",
    ) -> tuple[httpx.Response, float]:
        """Send one request; return the open 2xx response and the first-byte deadline."""
        client = self.client(url)
        request = client.build_request(method, url, headers=headers, json=json_body, params=params)
        deadline = asyncio.get_running_loop().time() + self.settings.first_byte_timeout
        try:
            async with asyncio.timeout_at(deadline):
                response = await client.send(request, stream=True)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise self.timeout_error(exc, where, first=True) from None
        except httpx.HTTPError as exc:
            raise Unreachable(
                f"{where} could not be reached ({type(exc).__name__}). Check the URL and "
                "that the server is running, then try again."
            ) from None
        log.debug("%s %s → %d", method, url, response.status_code)
        if response.status_code < 300:
            return response, deadline
        try:
            raw = await self._read_limited(response, deadline, _MAX_ERROR_BODY, where)
        except ProviderError:
            raw = b""
        finally:
            await response.aclose()
        if 300 <= response.status_code < 400:
            target = response.headers.get("location", "another address")
            raise ProviderError(
                f"{where} redirected the request (HTTP {response.status_code}) to {target}. "
                "Use the final URL directly."
            )
        err = error_from_status(
            response.status_code,
            raw,
            response.headers,
            where=where,
            secrets=secrets,
            auth_hint=auth_hint,
        )
        log.info("%s %s → %d (%s)", method, url, response.status_code, err.kind)
        raise err

    def timeout_error(self, exc: BaseException, where: str, *, first: bool) -> ProviderTimeout:
        s = self.settings
        if isinstance(exc, httpx.ConnectTimeout):
            return ProviderTimeout(
                f"{where} did not accept a connection within {s.connect_timeout:g} s. Check "
                "the URL and that the server is up."
            )
        if first:
            return ProviderTimeout(
                f"{where} did not start answering within {s.first_byte_timeout:g} s. The model "
                "may be loading or overloaded; try again."
            )
        return ProviderTimeout(
            f"{where} stopped sending for {s.idle_timeout:g} s in the middle of the answer. "
            "Try again."
        )

    async def chunks(
        self, response: httpx.Response, deadline: float, where: str
    ) -> AsyncGenerator[bytes, None]:
        """Body chunks: the first before `deadline`, then each within the idle timeout."""
        # httpx types it as an iterator, but it is a generator that must be closed.
        it = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
        watch = ReadWatch(self.settings.idle_timeout)
        first = True
        try:
            while True:
                watch.begin(deadline if first else None)
                try:
                    chunk = await anext(it)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if watch.expired():
                        raise self.timeout_error(TimeoutError(), where, first=first) from None
                    raise
                except httpx.TimeoutException as exc:
                    raise self.timeout_error(exc, where, first=first) from None
                except httpx.HTTPError:
                    raise StreamCut(
                        f"{where} cut the connection before the answer was complete. Try again."
                    ) from None
                finally:
                    watch.end()
                first = False
                yield chunk
        finally:
            watch.close()
            await it.aclose()

    async def drain(self, chunks: AsyncGenerator[bytes, None]) -> None:
        """Read the little that follows an end marker, so the connection can be reused."""
        size = 0
        try:
            async with asyncio.timeout(_DRAIN_SECONDS):
                async for chunk in chunks:
                    size += len(chunk)
                    if size > _DRAIN_LIMIT:
                        return
        except (TimeoutError, ProviderError):
            pass  # closing the response drops the connection instead; nothing is lost

    async def _read_limited(
        self, response: httpx.Response, deadline: float, limit: int, where: str
    ) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks(response, deadline, where):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise malformed(where, "the answer is too large")
        return b"".join(parts)

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        where: str,
        headers: dict[str, str],
        secrets: Iterable[str],
        json_body: Any = None,
        params: dict[str, str] | None = None,
        auth_hint: str = "",
    ) -> Any:
        """One non-streaming request → parsed JSON (MalformedResponse when it is not JSON)."""
        response, deadline = await self.open(
            method,
            url,
            where=where,
            headers=headers,
            secrets=secrets,
            json_body=json_body,
            params=params,
            auth_hint=auth_hint,
        )
        try:
            raw = await self._read_limited(response, deadline, _MAX_BODY, where)
        finally:
            await response.aclose()
        try:
            return json.loads(raw)
        except ValueError:
            raise malformed(where, "not JSON") from None


class ReadWatch:
    """Cancels the reading task when one read waits too long.

    Does what `asyncio.timeout` around each read would, with one timer per stream
    instead of one per chunk (that cost ~6 µs a chunk); time spent by the consumer
    between reads never counts.
    """

    __slots__ = ("_cancelling", "_due", "_fired", "_handle", "_idle", "_loop", "_task")

    def __init__(self, idle: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = idle
        self._due = 0.0  # when the current read times out; 0.0 while no read waits
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._fired = False

    def begin(self, due: float | None) -> None:
        """A read starts; it may wait until `due` (default: now + idle)."""
        self._due = due if due is not None else self._loop.time() + self._idle
        task = asyncio.current_task()
        if task is not self._task:
            self._task = task
        self._cancelling = task.cancelling() if task is not None else 0
        if self._handle is None or self._handle.when() > self._due:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self._loop.call_at(self._due, self._check)

    def end(self) -> None:
        self._due = 0.0

    def expired(self) -> bool:
        """After a CancelledError: was it ours (and not also someone else's)?"""
        if not self._fired or self._task is None:
            return False
        self._fired = False
        return self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        if not self._due:
            return  # no read is waiting; the next begin() re-arms
        if self._loop.time() < self._due:
            self._handle = self._loop.call_at(self._due, self._check)
        elif self._task is not None and not self._task.done():
            self._fired = True
            self._task.cancel()
