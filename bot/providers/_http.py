"""Client pool, one request attempt with timeouts, fault mapping and the retry rule."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import time
import zlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
)
from contextvars import Context, copy_context
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

import httpcore
import httpx

from bot.providers._errors import error_from_status, malformed, unexpected_body
from bot.providers._network import AsyncioBackend, AsyncioStream
from bot.providers.base import (
    TRANSIENT,
    EndpointNotAllowed,
    Overloaded,
    ProviderError,
    ProviderSettings,
    ProviderTimeout,
    RateLimited,
    StreamCut,
    Unreachable,
)
from bot.providers.policy import EndpointPolicy, EndpointRefused, server_of
from bot.types import redact
from bot.types.place import LOG_PLACE, several
from bot.types.text import shorten, untrusted_json

log = logging.getLogger("bot.providers")

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]

MAX_BODY = 16 * 1024 * 1024  # a model list from a big router is ~2 MB
_MAX_ERROR_BODY = 64 * 1024
_DRAIN_LIMIT = 64 * 1024
_DRAIN_SECONDS = 1.0
# Redirects followed on the same server, at most, and the statuses followed: the method
# and body go again as they were (303, "see another page", only for a GET).
_MAX_REDIRECTS = 5
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 8.0
# Connections per pool before another pool (lane) takes new requests. httpcore walks a
# pool's connections once for each idle one on every request and release, so the walk
# grows with the square of this: 4 rather than 16 (bench/RESULTS.md).
_LANE_SIZE = 4
_URLS_KEPT = 1024  # parsed URLs remembered (`Transport._url`); past it, parsed afresh
_KEEPALIVE_SECONDS = 5.0  # httpx's default: idle connections a server may already drop
_READ_SLACK = 1.0  # how much later than the provider layer's own limits a bare read ends
# How long a URL's policy check stands for the requests that follow. Every new connection
# vets the addresses it actually reaches again, so this spares each turn a lookup only.
_CHECK_SECONDS = 60.0
_CHECKS_KEPT = 1000
# Models whose length field (max_tokens or max_completion_tokens) is remembered, at most.
_LENGTH_FIELDS_KEPT = 10_000
# A model list asked of the same URL with the same credentials again this soon gets the
# answer the one before got (a list, or the error), and one asked while another is on its
# way waits for it: a hundred /connect or /models external sent at once, or one after
# another, are one request to the endpoint (an operator's default key pays for it), not
# a hundred.
LIST_REUSE_SECONDS = 10.0
_LISTS_KEPT = 256
# The headers httpx's client adds to every request. Requests go to the transport without
# a client (its layers cost about an eighth of what opening one costs: bench/RESULTS.md), so
# they are added here, and endpoints see what they saw before.
_CLIENT_HEADERS = (
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),  # what `_inflated` reads
    ("Connection", "keep-alive"),
    ("User-Agent", f"python-httpx/{httpx.__version__}"),
)


# What a request's body is unless it says (a model list): a timeout or a cut names it.
_ANSWER = "the answer"


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request to an endpoint, and what its errors may say about it."""

    method: str
    url: str
    where: str  # how messages name the endpoint ("The proxy at …")
    headers: Mapping[str, str]
    secrets: tuple[str, ...] = ()  # the credentials sent: redacted from anything shown
    body: Any = None  # JSON
    params: Mapping[str, str] | None = None
    auth_hint: str = ""  # what an authentication error says to check (the credential sent)
    auth_step: str = ""  # what an admin does about one (none was sent: set one)
    # What an endpoint that cannot be reached says to check: a URL someone set, or (the
    # vendor's own API) this machine's way out.
    reach_hint: str = "Check the URL and that the server is running"
    base: str = ""  # the endpoint base `url` is a route of (what a redirect's message names)
    reading: str = _ANSWER  # what its body is, as a timeout or a cut in it says


class Transport:
    """What every provider of one hub shares: pooled connections, policy, settings, memory."""

    def __init__(self, settings: ProviderSettings, policy: EndpointPolicy, sleep: Sleep) -> None:
        self.settings = settings
        self.policy = policy
        self.sleep = sleep
        self.corrected: dict[str, str] = {}  # custom URL as typed → URL that works (+/v1)
        # Bases that took / refused OpenAI's `stream_options` (usage on the last chunk).
        self.usage_option: dict[str, bool] = {}
        # (base, model) → the name of the answer's length limit it took where the other
        # was refused (max_tokens or max_completion_tokens).
        self.length_field: dict[tuple[str, str], str] = {}
        self._transports: dict[tuple[str, str, int | None], PoolTransport] = {}
        self._urls: dict[str, httpx.URL] = {}  # as typed → parsed (`_url`)
        self._checks: dict[str, tuple[float, str]] = {}  # URL → (valid until, checked URL)
        # What `shared` fetched or is fetching: key → (reused until, its task, when it ended).
        self._shared: dict[str, tuple[float, asyncio.Task[Any], float]] = {}
        # What `shared` is fetching: key → (its task, that task's context, the places it
        # serves), so its log lines name each of them, not only the one that started it.
        self._serving: dict[str, tuple[asyncio.Task[Any], Context, list[str]]] = {}
        self._tls: ssl.SSLContext | None = None
        s = settings
        self._lane_size = min(_LANE_SIZE, s.max_connections_per_endpoint)
        self._max_lanes = max(1, -(-s.max_connections_per_endpoint // _LANE_SIZE))
        self._timeouts = httpx.Timeout(
            connect=s.connect_timeout,
            # The first-byte and idle limits are enforced around each read (open()'s
            # deadline, ReadWatch) and word the error; this longer one only ends a read
            # that nobody watches, so an answer can never hang forever.
            read=max(s.first_byte_timeout, s.idle_timeout) + _READ_SLACK,
            write=s.connect_timeout + s.first_byte_timeout,
            pool=s.connect_timeout,
        ).as_dict()

    def transport_for(self, request: httpx.Request) -> PoolTransport:
        """The lanes of `request`'s endpoint base (scheme, host, port), made on first use."""
        url = request.url
        if (
            url.scheme not in ("http", "https")
            or not url.host
            or (url.port is not None and not 0 < url.port < 65536)
        ):  # refused by the policy now, but a URL may have been stored before it was
            raise ValueError("not http(s), no host, or a port out of range")
        key = (url.scheme, url.host, url.port)
        transport = self._transports.get(key)
        if transport is None:
            if self._tls is None:  # loading the CA bundle takes milliseconds: once is enough
                self._tls = httpx.create_ssl_context(trust_env=False)
            transport = self._transports[key] = PoolTransport(
                self._new_pool, self._lane_size, self._max_lanes
            )
        return transport

    def request(self, spec: RequestSpec) -> httpx.Request:
        """`spec` as httpx's client would build it, with this transport's timeouts.

        No client is involved, so nothing from the environment (a ~/.netrc entry, a proxy
        variable) is attached to a URL a chat user typed, no cookie one channel's endpoint
        set goes out with another's requests, and no redirect is followed past the
        endpoint policy (`open` refuses them)."""
        headers = httpx.Headers(_CLIENT_HEADERS)
        headers.update(spec.headers)
        return httpx.Request(
            spec.method,
            self._url(spec.url),
            params=dict(spec.params) if spec.params else None,
            headers=headers,
            json=spec.body,
            extensions={"timeout": self._timeouts},
        )

    def _url(self, url: str) -> httpx.URL:
        """`url` parsed once: a channel asks the same few URLs every turn, and httpx takes
        half of a request's making to parse one (bench/RESULTS.md). URLs are immutable."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def _new_pool(self) -> httpcore.AsyncConnectionPool:
        """One lane's pool; every connection's address passes the endpoint policy again."""
        return httpcore.AsyncConnectionPool(
            ssl_context=self._tls,
            max_connections=self._lane_size,
            max_keepalive_connections=self._lane_size,
            keepalive_expiry=_KEEPALIVE_SECONDS,
            network_backend=AsyncioBackend(guard=self.policy.vet_connection),
        )

    async def aclose(self) -> None:
        shared, self._shared = self._shared, {}
        self._serving.clear()
        for _, task, _ in shared.values():
            task.cancel()
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            await transport.aclose()

    async def checked(self, url: str) -> str:
        """Run a user-supplied URL through the endpoint policy (a pass stands a minute)."""
        now = time.monotonic()
        passed = self._checks.get(url)
        if passed is not None and now < passed[0]:
            return passed[1]
        try:
            checked = await self.policy.check(url)
        except EndpointRefused as err:
            raise EndpointNotAllowed(str(err)) from None
        if len(self._checks) >= _CHECKS_KEPT:
            self._checks.clear()
        self._checks[url] = (now + _CHECK_SECONDS, checked)
        return checked

    def remember_length_field(self, model: tuple[str, str], name: str) -> None:
        """That `model` ((base, id)) took the answer's length limit as `name` (as many
        models as a bounded dict holds: channels may name any id)."""
        if len(self.length_field) >= _LENGTH_FIELDS_KEPT and model not in self.length_field:
            self.length_field.clear()
        self.length_field[model] = name

    async def shared(self, key: str, fetch: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """`fetch()`'s outcome, shared with every call of the same `key` made while it
        runs or up to LIST_REUSE_SECONDS after it ended (a ProviderError too, but for a
        server not reached). `key` must name everything the outcome depends on (the URL,
        the credentials sent)."""
        now = time.monotonic()
        held = self._shared.get(key)
        if held is None or (held[1].done() and now >= held[0]):
            if len(self._shared) >= _LISTS_KEPT:
                self._shared = {
                    k: v for k, v in self._shared.items() if not v[1].done() or now < v[0]
                }
                while len(self._shared) >= _LISTS_KEPT:  # many endpoints at once: oldest go
                    del self._shared[next(iter(self._shared))]
            context = copy_context()
            task: asyncio.Task[T] = asyncio.get_running_loop().create_task(fetch(), context=context)
            held = self._shared[key] = (float("inf"), task, float("inf"))
            place = LOG_PLACE.get()
            self._serving[key] = (task, context, [place] if place else [])
            task.add_done_callback(functools.partial(self._fetched, key))
        elif not held[1].done():
            self._serves(key)
        # Shielded: one caller that is cancelled (a shutdown) does not end it for others.
        return cast(T, await asyncio.shield(held[1]))

    def _serves(self, key: str) -> None:
        """The running fetch of `key` serves this caller's place too: its log lines say so."""
        place = LOG_PLACE.get()
        serving = self._serving.get(key)
        if not place or serving is None or place in serving[2]:
            return
        _, context, places = serving
        places.append(place)
        # The fetch's task is not running now (this caller is): its context can be set.
        with contextlib.suppress(RuntimeError):
            context.run(LOG_PLACE.set, several(places))

    def _fetched(self, key: str, task: asyncio.Task[Any]) -> None:
        if (serving := self._serving.get(key)) is not None and serving[0] is task:
            del self._serving[key]
        held = self._shared.get(key)
        if held is None or held[1] is not task:
            return
        failed = None if task.cancelled() else task.exception()
        # A bug or a shutdown is nothing to give the next caller; nor is a server not
        # reached (nothing there was asked: one started now answers the next check).
        if (
            task.cancelled()
            or (failed is not None and not isinstance(failed, ProviderError))
            or isinstance(failed, Unreachable)
        ):
            del self._shared[key]
        else:
            if failed is not None:  # kept for the next callers, not what it was raised from
                failed.__context__ = failed.__cause__ = None
            ended = time.monotonic()
            self._shared[key] = (ended + LIST_REUSE_SECONDS, task, ended)

    def reused(self, failure: BaseException, since: float) -> tuple[float, float] | None:
        """For a failure `shared` gave out that was fetched before `since` (monotonic), so
        the endpoint was not asked again for it: (seconds since it was fetched, seconds
        until the same call asks anew). None: it is no such failure."""
        now = time.monotonic()
        for until, task, ended in self._shared.values():
            if (
                ended < since
                and task.done()
                and not task.cancelled()
                and task.exception() is failure
            ):
                return now - ended, max(0.0, until - now)
        return None

    def retry_delay(self, attempt: int, err: ProviderError, started: float) -> float | None:
        """Seconds to wait before another attempt, or None to give up now."""
        if not isinstance(err, TRANSIENT) or attempt >= self.settings.max_retries:
            return None
        if isinstance(err, RateLimited) and err.quota:
            return None
        ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)
        delay = random.uniform(ceiling / 2, ceiling)  # jitter spreads out retry storms
        # A 503 or 529 may say when to come back as a 429 does: sooner is refused again.
        # Never sooner than the backoff: `Retry-After: 0` (or a date gone by) sent every
        # retry at once.
        if isinstance(err, RateLimited | Overloaded) and err.retry_after is not None:
            delay = max(delay, err.retry_after)
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
        # A retry may pass: no warning. When none does, the turn's own line is the warning
        # (an endpoint down for minutes gave two warnings a message).
        log.info(
            "%s failed (%s), retry %d in %.2f s: %s",
            what,
            err.kind,
            attempt + 1,
            delay,
            redact(str(err)),
        )

    async def open(self, spec: RequestSpec) -> tuple[httpx.Response, float]:
        """Send a request; return the open 2xx response and the first-byte deadline.

        A redirect on the same server (scheme, host and port) is followed, as a client
        library would follow it (a trailing slash added, a route moved), with the same
        method and body; one to any other address is not: the credentials would go
        somewhere no one set (`_redirect`)."""
        seen: list[str] = []  # the URLs asked, to tell a loop
        while True:
            response, deadline = await self._open_once(spec)
            if response.status_code < 300:
                return response, deadline
            spec = self._redirect(spec, response, seen)

    async def _open_once(self, spec: RequestSpec) -> tuple[httpx.Response, float]:
        """Send one request; return the open 2xx or 3xx response and the first-byte deadline."""
        try:
            request = self.request(spec)
            transport = self.transport_for(request)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError):
            # A URL saved before the policy parsed URLs the way httpx does.
            raise EndpointNotAllowed(
                f"{spec.where} has a URL the bot cannot use. An admin sets it again with the "
                "proxy set command."
            ) from None
        deadline = asyncio.get_running_loop().time() + self.settings.first_byte_timeout
        try:
            async with asyncio.timeout_at(deadline):
                response = await transport.handle_async_request(request)
                response.request = request
        except BaseException as exc:
            if isinstance(exc, EndpointRefused):  # the name now points somewhere refused
                raise EndpointNotAllowed(str(exc)) from None
            if isinstance(exc, TimeoutError | httpx.TimeoutException):
                raise self.timeout_error(
                    exc, spec.where, first=True, reading=spec.reading
                ) from None
            if not isinstance(exc, httpx.HTTPError):
                raise
            hint = ""
            if spec.url.startswith("https://") and _caused_by(exc, ssl.SSLError):
                hint = " It did not answer in TLS: if it serves plain http://, set that URL."
            # The class and its text for the log; people read what happened in words.
            log.info(
                "%s %s: no connection (%s: %s)",
                spec.method,
                _logged(spec),
                type(exc).__name__,
                redact(str(exc), spec.secrets, known=False),
            )
            raise Unreachable(
                f"{spec.where} could not be reached: {connect_failure(exc)}.",
                step=f"{spec.reach_hint}, then try again.{hint}",
            ) from None
        if log.isEnabledFor(logging.DEBUG):  # a redirect's URL may echo a short password
            log.debug("%s %s → %d", spec.method, _logged(spec), response.status_code)
        if response.status_code < 300:
            return response, deadline
        try:
            raw = await self.read_limited(response, deadline, _MAX_ERROR_BODY, spec.where)
        except ProviderError:
            raw = b""
        finally:
            await response.aclose()
        if 300 <= response.status_code < 400:
            return response, deadline  # closed: `open` follows it or says where it went
        err = error_from_status(
            response.status_code,
            raw,
            response.headers,
            where=spec.where,
            secrets=spec.secrets,
            auth_hint=spec.auth_hint,
            auth_step=spec.auth_step,
        )
        log.info("%s %s → %d (%s)", spec.method, _logged(spec), response.status_code, err.kind)
        raise err

    def _redirect(
        self, spec: RequestSpec, response: httpx.Response, seen: list[str]
    ) -> RequestSpec:
        """The request a (closed) 3xx `response` to `spec` leads to, on the same server;
        else the error that says where it pointed and what to set instead."""
        status = response.status_code
        where = spec.where
        seen.append(str(response.request.url))
        location = response.headers.get("location", "").strip()
        try:
            target = response.request.url.join(location) if location else None
        except (httpx.InvalidURL, ValueError):
            target = None
        if target is None:
            raise malformed(where, f"a redirect (HTTP {status}) to an address it does not give")
        shown = shorten(redact(str(target), spec.secrets, known=False), 200)
        if server_of(str(target)) != server_of(str(response.request.url)):
            # Not followed: the key would go to a server no one set. Said with the URL an
            # admin would set (the route the bot adds cut off), so `/proxy set` vets it.
            base = _base_of(spec, target)
            said = shorten(redact(base, spec.secrets, known=False), 200) if base else shown
            step = "if that one is right, an admin sets it as the URL" if base else "check the URL"
            raise ProviderError(
                f"{where} redirects to {said} (HTTP {status}), another address. The bot "
                f"follows redirects only on the same server (a key sent here goes nowhere "
                f"else): {step}."
            )
        if (status == 303 and spec.method != "GET") or status not in _REDIRECTS:
            raise malformed(where, f"a redirect (HTTP {status}) instead of an answer")
        url = str(target).partition("#")[0]
        if url in seen or len(seen) > _MAX_REDIRECTS:
            raise ProviderError(
                f"{where} keeps redirecting the request (HTTP {status}, last to {shown}). "
                "Check the URL and the server's settings."
            )
        log.debug("%s followed a redirect (HTTP %d) on the same server", where, status)
        return replace(spec, url=url, params=None)

    def timeout_error(
        self,
        exc: BaseException,
        where: str,
        *,
        first: bool,
        answered: bool = True,
        reading: str = _ANSWER,
    ) -> ProviderTimeout:
        """`first`: no byte of the body came; `answered`: some of the answer did (a
        Claude stream's `message_start` alone, a role-only chunk, is none of it);
        `reading`: what the body is (a model list was said to stop in the middle of the
        answer)."""
        s = self.settings
        if isinstance(exc, httpx.ConnectTimeout):
            return ProviderTimeout(
                f"{where} did not accept a connection within {s.connect_timeout:g} s. Check "
                "the URL and that the server is up."
            )
        if first and reading != _ANSWER:  # a model list: no model loads to list them
            return ProviderTimeout(
                f"{where} did not start sending {reading} within {s.first_byte_timeout:g} s. "
                "The server may be busy or still starting; try again."
            )
        if first:
            return ProviderTimeout(
                f"{where} did not start answering within {s.first_byte_timeout:g} s. The model "
                "may be loading or overloaded; try again."
            )
        if not answered:
            return ProviderTimeout(
                f"{where} did not start answering: it sent nothing of the answer for "
                f"{s.idle_timeout:g} s. The model may be loading or overloaded; try again."
            )
        return ProviderTimeout(
            f"{where} stopped sending for {s.idle_timeout:g} s in the middle of {reading}. "
            "Try again.",
            midway=True,
        )

    async def chunks(
        self,
        response: httpx.Response,
        deadline: float,
        where: str,
        *,
        paced: bool = False,
        reading: str = _ANSWER,
    ) -> AsyncGenerator[bytes, None]:
        """Body chunks: the first before `deadline`, then each within the idle timeout.

        `paced`: a streamed answer, whose trickle of tokens is read at the settings'
        `stream_read_pace` rather than woken for one by one. `reading`: what the body
        is, as a timeout or a cut in it says."""
        it = _body_parts(response)
        watch = ReadWatch(self.settings.idle_timeout)
        first = True
        pace = self.settings.stream_read_pace if paced else 0.0
        network = response.extensions.get("network_stream") if pace else None
        if not isinstance(network, AsyncioStream):
            network = None
        if network is not None:
            network.pace(pace)
        try:
            while True:
                watch.begin(deadline if first else None)
                try:
                    chunk = await anext(it)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if watch.expired():
                        raise self.timeout_error(
                            TimeoutError(), where, first=first, reading=reading
                        ) from None
                    raise
                except httpx.TimeoutException as exc:
                    raise self.timeout_error(exc, where, first=first, reading=reading) from None
                except httpx.DecodingError:
                    raise malformed(where, "a compressed body the bot cannot inflate") from None
                except httpx.HTTPError:
                    raise StreamCut(
                        f"{where} cut the connection before {reading} was complete. Try again."
                    ) from None
                finally:
                    watch.end()
                first = False
                yield chunk
        finally:
            watch.close()
            if network is not None:
                network.pace(0.0)  # the connection goes back to the pool for any request
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

    async def read_limited(
        self,
        response: httpx.Response,
        deadline: float,
        limit: int,
        where: str,
        *,
        timed: bool = True,
        reading: str = _ANSWER,
    ) -> bytes:
        """A body read whole (a model list, an error): at most `limit` bytes, and all of
        it by one idle limit after the first-byte deadline (`timed`). Its server had it
        whole before it began to send; a body trickled in a byte at a time, each within
        the idle limit, held a status check (and a turn's conversation with it) for as
        long as the endpoint went on. `reading`: what the body is, as a timeout says."""
        parts: list[bytes] = []
        size = 0
        end = deadline + self.settings.idle_timeout if timed else None
        try:
            async with asyncio.timeout_at(end):
                async for chunk in self.chunks(response, deadline, where, reading=reading):
                    parts.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise malformed(where, "the answer is too large")
        except TimeoutError:
            s = self.settings
            raise ProviderTimeout(
                f"{where} took more than {s.first_byte_timeout + s.idle_timeout:g} s to send "
                f"{reading}. Try again."
            ) from None
        return b"".join(parts)

    async def request_json(self, spec: RequestSpec) -> Any:
        """One non-streaming request → parsed JSON (MalformedResponse when it is not JSON)."""
        try:
            response, deadline = await self.open(spec)
            try:
                raw = await self.read_limited(
                    response, deadline, MAX_BODY, spec.where, reading=spec.reading
                )
            finally:
                await response.aclose()
        except ProviderError as err:
            raise err.without(spec.secrets) from None
        try:
            return untrusted_json(raw)
        except ValueError:
            raise unexpected_body(spec.where, raw, "JSON", spec.secrets) from None


def _logged(spec: RequestSpec) -> str:
    """`spec`'s URL as the log shows it: a redirect followed may have put the endpoint's
    own password in it (the log's filter takes out only secrets long enough), or a
    credential of its own in its query (`?api_key=…`, `&sig=…`), shown as `****`."""
    return redact(spec.url, spec.secrets)


def _base_of(spec: RequestSpec, target: httpx.URL) -> str:
    """The endpoint base a redirect `target` stands for: the route the request added to
    its base (`/models`, `/chat/completions`) cut off again; "" when it does not end in
    that route (a login page, say)."""
    route = spec.url[len(spec.base) :] if spec.base and spec.url.startswith(spec.base) else ""
    path = target.path.rstrip("/")
    if not route or not path.endswith(route.rstrip("/")):
        return ""
    base = target.copy_with(path=path[: -len(route.rstrip("/"))] or "/", query=None, fragment=None)
    return str(base).rstrip("/")


# httpcore's exceptions → httpx's, as httpx.AsyncHTTPTransport maps them.
HTTPCORE_ERRORS: dict[type[Exception], type[httpx.HTTPError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


def httpx_error(exc: Exception) -> httpx.HTTPError | None:
    """The httpx exception for an httpcore one (the most specific match), else None."""
    for cls in type(exc).__mro__:
        mapped = HTTPCORE_ERRORS.get(cls)
        if mapped is not None:
            return mapped(str(exc))
    return None


@dataclass(slots=True)
class _Lane:
    pool: httpcore.AsyncConnectionPool
    active: int = 0  # requests sent through it whose response is not closed yet


class PoolTransport(httpx.AsyncBaseTransport):
    """httpx.AsyncHTTPTransport's job (public httpcore API only), over pools called lanes."""

    # httpcore's pool walks all its connections and requests on every request and every
    # release, so with hundreds of answers streaming at once that walk dominated the CPU.
    # While every lane carries `size` requests, a new request opens another lane (up to
    # `most`); the first lane keeps a quiet bot on one warm connection.

    def __init__(
        self, make: Callable[[], httpcore.AsyncConnectionPool], size: int, most: int
    ) -> None:
        self._make = make
        self._size = size
        self._most = most
        self._lanes: list[_Lane] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)  # an async client's
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        lane = self._lease()
        try:
            response = await lane.pool.handle_async_request(core_request)
        except BaseException as exc:
            lane.active -= 1
            mapped = httpx_error(exc) if isinstance(exc, Exception) else None
            if mapped is None:
                raise
            raise mapped from exc
        assert isinstance(response.stream, AsyncIterable)  # an async pool's
        body = _Body(response.stream, lane)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=body,
            # httpx wraps the stream for its client; the extension keeps ours at hand.
            extensions={**response.extensions, _BODY: body},
        )

    def _lease(self) -> _Lane:
        for lane in self._lanes:
            if lane.active < self._size:
                break
        else:
            if len(self._lanes) < self._most:
                lane = _Lane(self._make())
                self._lanes.append(lane)
            else:
                lane = min(self._lanes, key=lambda lane: lane.active)
        lane.active += 1
        return lane

    @property
    def lanes(self) -> list[int]:
        """Requests in flight on each lane."""
        return [lane.active for lane in self._lanes]

    async def aclose(self) -> None:
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            await lane.pool.aclose()


_BODY = "chat-completion-bot.body"  # the response extension holding our `_Body`


class _Body(httpx.AsyncByteStream):
    """A response body in httpx's exceptions that gives its lane back when closed."""

    def __init__(self, stream: AsyncIterable[bytes], lane: _Lane) -> None:
        self._stream = stream
        self._lane: _Lane | None = lane

    async def __aiter__(self) -> AsyncGenerator[bytes, None]:
        try:
            async for part in self._stream:
                yield part
        except Exception as exc:
            mapped = httpx_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        lane, self._lane = self._lane, None
        try:
            # As httpx does: not every stream (a mocked one, say) can be closed.
            closer = getattr(self._stream, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            if lane is not None:
                lane.active -= 1


def _body_parts(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """A response's body as it arrives, in a generator to close when done.

    The body our own transport made (`_Body`) is read directly: httpx's layers above it
    (`aiter_bytes` over `aiter_raw` over the client's wrapper) would only count the bytes
    and hand on each part as it is, at three more generator steps per part of a stream.
    Closing the response still closes the body through them. A body from another
    transport (tests mock it) is read through them, raw. A compressed body is inflated
    here, never by httpx: httpx inflates a part whole, so 1 KB sent as `gzip, gzip`
    became 1 GB in memory before any size cap could count it (`_inflated`)."""
    body = response.extensions.get(_BODY)
    if isinstance(body, _Body):
        raw = body.__aiter__()
    else:  # httpx types it as an iterator, but it is a generator that must be closed
        raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
    said = response.headers.get("content-encoding", "").lower().split(",")
    codings = [c for c in (c.strip() for c in said) if c in _WBITS or c in _NOT_READ]
    return _inflated(raw, codings) if codings else raw


_PIECE = 64 * 1024  # the most one step of inflating a compressed body may produce
_MAX_CODINGS = 2  # `gzip, gzip` is legal HTTP; nobody nests them deeper
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# The other content codings HTTP has (IANA's registry; identity is none). Any other word
# (`none`, `utf-8`, sent by servers that mean no coding) is read as no coding, as httpx
# and browsers read it.
_NOT_READ = frozenset(
    ("aes128gcm", "br", "compress", "dcb", "dcz", "exi", "pack200-gzip", "x-compress", "zstd")
)


class _Inflater:
    """One content coding (gzip or deflate) undone in pieces of at most `_PIECE` bytes,
    so the size caps count what a bomb makes as it is made."""

    def __init__(self, coding: str) -> None:
        self._wbits = _WBITS[coding]
        self._inflate = zlib.decompressobj(self._wbits)
        self._started = False

    def pieces(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._inflate.decompress(data, _PIECE)
            except zlib.error:
                if self._started or self._wbits != zlib.MAX_WBITS:
                    raise
                # `deflate` sent raw, without its zlib header, as some servers do (httpx
                # reads both too).
                self._wbits = -zlib.MAX_WBITS
                self._inflate = zlib.decompressobj(self._wbits)
                continue
            self._started = True
            data = self._inflate.unconsumed_tail
            if out:
                yield out
            if not data and len(out) < _PIECE:
                return

    def flush(self) -> bytes:
        return self._inflate.flush() if self._started else b""


async def _inflated(
    raw: AsyncGenerator[bytes, None], codings: list[str]
) -> AsyncGenerator[bytes, None]:
    """`raw` with its content codings undone, the last applied first. A coding the bot
    does not read (br, zstd: it asks for gzip or deflate) is an error, as is corrupt data."""
    try:
        unknown = next((c for c in codings if c not in _WBITS), None)
        if unknown is not None or len(codings) > _MAX_CODINGS:
            said = shorten(", ".join(codings), 60)
            raise httpx.DecodingError(f"content encoding the bot does not read: {said}")
        layers = [_Inflater(coding) for coding in reversed(codings)]
        try:
            async for part in raw:
                for piece in _through(layers, part):
                    yield piece
            for i, layer in enumerate(layers):  # each takes the rest of what it holds
                for piece in _through(layers[i + 1 :], layer.flush()):
                    yield piece
        except zlib.error:
            raise httpx.DecodingError("compressed data that cannot be inflated") from None
    finally:
        await raw.aclose()


def _through(layers: list[_Inflater], data: bytes) -> Iterator[bytes]:
    if not layers:
        if data:
            yield data
        return
    for piece in layers[0].pieces(data):
        yield from _through(layers[1:], piece)


def connect_failure(exc: BaseException) -> str:
    """Why no connection was made, in words a person reads (the exception's class names
    only the library's view of it: `ConnectError`). The network backend names the
    socket's error in its message (_network: `connect failed (ConnectionRefusedError)`),
    which is all the pool passes on."""

    def said(*names: str) -> bool:
        return any(name in chain for name in names)

    chain = " ".join(f"{type(e).__name__} {e}" for e in _chain(exc))
    if said("SSLError", "SSLCertVerificationError", "TLS handshake failed"):
        return "the TLS handshake failed"
    if said("gaierror", "has no address"):
        return "its host name was not found"
    if said("ConnectionRefusedError"):
        return "the connection was refused (nothing listens at that address and port)"
    if said("ConnectionResetError", "ConnectionAbortedError"):
        return "the connection was reset"
    if said("Network is unreachable", "No route to host"):
        return "no network route leads to it"
    if said("RemoteProtocolError"):
        return "it closed the connection without answering"
    return "the connection failed"


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from (httpx's, httpcore's, the socket's)."""
    found: list[BaseException] = []
    below: BaseException | None = exc
    while below is not None and all(below is not e for e in found):
        found.append(below)
        below = below.__cause__ or below.__context__
    return found


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """`exc` or an exception it was raised from (httpx wraps httpcore, which wraps the
    socket's error) is a `kind`."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        if isinstance(found, kind):
            return True
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return False


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
        task = asyncio.current_task(self._loop)
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
