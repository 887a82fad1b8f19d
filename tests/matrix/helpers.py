"""Test-side Matrix: a nio user client (E2EE capable), the bot runner, an SSE endpoint, a
proxy in front of the homeserver."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp
import nio
from aiohttp import web
from nio.crypto import encrypt_attachment

from bot.core import Core
from bot.frontends.matrix import MatrixOptions, run_matrix
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.types import ChannelConfig, SecretValue, Source
from tests.loopback import serving
from tests.peers.synapse import MatrixUser, SynapseServer

WAIT = 60.0  # generous: two cores shared with a homeserver and a model


@dataclass
class Seen:
    room_id: str
    event: Any
    at: float  # monotonic arrival time

    @property
    def content(self) -> dict[str, Any]:
        content = self.event.source.get("content", {})
        return content if isinstance(content, dict) else {}

    @property
    def replaces(self) -> str:
        rel = self.content.get("m.relates_to", {})
        return str(rel.get("event_id", "")) if rel.get("rel_type") == "m.replace" else ""


@dataclass
class UserClient:
    """A person in Matrix: a nio client with its own crypto store and a sync task."""

    user: MatrixUser
    client: nio.AsyncClient
    seen: list[Seen] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, server: SynapseServer, user: MatrixUser, store: Path) -> UserClient:
        await asyncio.to_thread(store.mkdir, parents=True, exist_ok=True)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
        client = nio.AsyncClient(server.url, user.user_id, store_path=str(store), config=config)
        client.restore_login(user.user_id, user.device_id, user.access_token)
        me = cls(user, client)
        client.add_event_callback(me._on_event, nio.Event)
        await client.sync(timeout=0, full_state=True)
        me.task = asyncio.create_task(client.sync_forever(timeout=500))
        return me

    async def _on_event(self, room: nio.MatrixRoom, event: Any) -> None:
        # A sync may bring an event again: it arrived when it first came ("after" tests).
        # (Not an encrypted one decrypted later: that is a different event object type.)
        event_id = getattr(event, "event_id", None)
        if event_id and any(
            getattr(s.event, "event_id", None) == event_id and type(s.event) is type(event)
            for s in self.seen
        ):
            return
        self.seen.append(Seen(room.room_id, event, time.monotonic()))
        self.changed.set()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.client.close()

    async def wait_for(self, found: Callable[[], Any], what: str, within: float = WAIT) -> Any:
        deadline = time.monotonic() + within
        while True:
            value = found()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))

    async def create_room(
        self,
        invite: list[str],
        *,
        encrypted: bool = False,
        direct: bool = False,
        power: dict[str, int] | None = None,
        name: str = "",
    ) -> str:
        state = (
            [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ]
            if encrypted
            else []
        )
        # Room v12: the creator outranks everyone and must not be listed in `users`.
        override = {"users": power} if power else None
        response = await self.client.room_create(
            name=name or None,
            is_direct=direct,
            preset=nio.RoomPreset.trusted_private_chat if direct else nio.RoomPreset.private_chat,
            invite=invite,
            initial_state=state,
            power_level_override=override,
        )
        assert isinstance(response, nio.RoomCreateResponse), response
        return str(response.room_id)

    async def invite(self, room_id: str, user_id: str) -> None:
        response = await self.client.room_invite(room_id, user_id)
        assert isinstance(response, nio.RoomInviteResponse), response

    async def join(self, room_id: str) -> None:
        response = await self.client.join(room_id)
        assert isinstance(response, nio.JoinResponse), response
        await self.wait_for(lambda: room_id in self.client.rooms, "the joined room to sync")

    async def send(self, room_id: str, body: str, **extra: Any) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": body, **extra}
        response = await self.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        assert isinstance(response, nio.RoomSendResponse), response
        return str(response.event_id)

    async def upload(self, data: bytes, content_type: str, filename: str) -> str:
        """Put `data` in the homeserver's media repository; its mxc:// URI."""
        response, _ = await self.client.upload(
            io.BytesIO(data), content_type, filename, filesize=len(data)
        )
        assert isinstance(response, nio.UploadResponse), response
        return str(response.content_uri)

    async def media_content(
        self,
        msgtype: str,
        filename: str,
        data: bytes,
        mimetype: str,
        *,
        encrypt: bool = False,
        caption: str = "",
    ) -> dict[str, Any]:
        """An m.image / m.file event's content, its file uploaded (encrypted: as `file`)."""
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": caption or filename,
            "filename": filename,
            "info": {"mimetype": mimetype, "size": len(data)},
        }
        if encrypt:
            # What an E2EE client does: the homeserver only ever holds the ciphertext.
            ciphertext, keys = encrypt_attachment(data)
            url = await self.upload(ciphertext, "application/octet-stream", filename)
            content["file"] = {**keys, "url": url}
        else:
            content["url"] = await self.upload(data, mimetype, filename)
        return content

    async def send_content(self, room_id: str, content: dict[str, Any]) -> str:
        response = await self.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        assert isinstance(response, nio.RoomSendResponse), response
        return str(response.event_id)

    async def wait_joined(self, room_id: str, user_id: str) -> None:
        def joined() -> bool:
            room = self.client.rooms.get(room_id)
            # nio lists invited users too; only a join counts.
            member = room.users.get(user_id) if room is not None else None
            return member is not None and not member.invited

        await self.wait_for(joined, f"{user_id} to join {room_id}")

    def messages(self, room_id: str, sender: str, after: float = 0.0) -> list[Seen]:
        """Original (not edit) messages from `sender` in the room, arrived after `after`."""
        return [
            s
            for s in self.seen
            if s.room_id == room_id
            and getattr(s.event, "sender", "") == sender
            and isinstance(s.event, (nio.RoomMessageText, nio.RoomMessageNotice))
            and not s.replaces
            and s.at >= after
        ]

    def edits_of(self, event_id: str) -> list[Seen]:
        return [s for s in self.seen if s.replaces == event_id]

    def shown_text(self, event_id: str) -> str:
        """What a client shows for `event_id`: the newest edit's new content, else the body."""
        edits = self.edits_of(event_id)
        if edits:
            return str(edits[-1].content["m.new_content"]["body"])
        original = next(s for s in self.seen if getattr(s.event, "event_id", "") == event_id)
        return str(original.content["body"])

    async def reply_to(self, room_id: str, sender: str, after: float, what: str) -> Seen:
        found = await self.wait_for(lambda: self.messages(room_id, sender, after), what)
        first: Seen = found[0]
        return first

    async def command(self, room_id: str, bot_id: str, text: str, **extra: Any) -> str:
        """Send a command (`extra`: more of its content); the bot's notice in answer to it."""
        after = time.monotonic()
        event_id = await self.send(room_id, text, **extra)
        seen = await self.answer_to(room_id, bot_id, event_id, after, text.split()[0])
        return str(seen.content["body"])

    async def answer_to(
        self, room_id: str, sender: str, event_id: str, after: float, what: str
    ) -> Seen:
        """`sender`'s first message replying to `event_id` (seen since `after`): not just
        its first one, which may be its reply to an earlier message another member sent,
        come late through this member's own sync."""

        def answer() -> Seen | None:
            for s in self.messages(room_id, sender, after):
                reply = s.content.get("m.relates_to", {}).get("m.in_reply_to", {})
                if reply.get("event_id") == event_id:
                    return s
            return None

        seen: Seen = await self.wait_for(answer, f"the answer to {what}")
        return seen

    async def event_content(self, room_id: str, event_id: str) -> dict[str, Any]:
        response = await self.client.room_get_event(room_id, event_id)
        assert isinstance(response, nio.RoomGetEventResponse), response
        source: dict[str, Any] = response.event.source
        return source


async def make_core(url: str, key: str = "", defaults: ChannelConfig | None = None) -> Core:
    """A real Core on `url`; the same `key` after a restart reads the same secrets."""
    await upgrade_to_head(url)
    store = await Store.open(
        url,
        SecretBox.from_setting(key or generate_key()),
        defaults=defaults or ChannelConfig.of(source=Source.OPENAI),
    )
    return Core(store, ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0)))


def bot_options(
    server: SynapseServer, bot: MatrixUser, store_dir: Path, **kw: Any
) -> MatrixOptions:
    return MatrixOptions(
        homeserver=server.url,
        user_id=bot.user_id,
        password=SecretValue(bot.password),
        access_token=SecretValue(""),
        store_dir=store_dir,
        **kw,
    )


async def start_bot(core: Core, options: MatrixOptions) -> asyncio.Task[None]:
    """run_matrix as production runs it (bot.app runs it as a task too)."""
    task = asyncio.create_task(run_matrix(core, options))
    await asyncio.sleep(0.5)
    if task.done():
        task.result()  # raise what stopped it
    return task


async def stop_bot(task: asyncio.Task[None]) -> None:
    """What bot.app does on SIGTERM: cancel the front-end and wait for it."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running_bot(core: Core, options: MatrixOptions) -> AsyncIterator[asyncio.Task[None]]:
    task = await start_bot(core, options)
    try:
        yield task
    finally:
        await stop_bot(task)


@contextlib.asynccontextmanager
async def bot_answering_from(
    server: SynapseServer,
    bot: MatrixUser,
    endpoint: SSEEndpoint,
    workdir: Path,
    key: str = "",
    via: HomeserverProxy | None = None,
) -> AsyncIterator[Core]:
    """The bot logged in as `bot` and running, every room answered from `endpoint`; its
    core, closed when the block ends. The same `key` again: a restart reads its secrets.
    `via`: the bot reaches the homeserver through this proxy."""
    defaults = ChannelConfig.of(
        source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
    )
    core = await make_core(f"sqlite+aiosqlite:///{workdir}/bot.db", key, defaults=defaults)
    options = bot_options(server, bot, workdir / "store")
    if via is not None:
        options = dataclasses.replace(options, homeserver=via.url)
    try:
        async with running_bot(core, options):
            yield core
    finally:
        await core.close()


@dataclass
class Asked:
    """One chat request the endpoint answered."""

    model: str
    question: str  # the last message's text
    started: float  # monotonic
    ended: float = 0.0  # 0 while the answer streams
    cut: float = 0.0  # when the bot closed the connection before the end


class SSEEndpoint:
    """An OpenAI-compatible loopback server streaming `chunks` words over `span` seconds."""

    def __init__(
        self, chunks: int, span: float, model: str = "stream-model", text: str = ""
    ) -> None:
        self.chunks = chunks
        self.span = span
        self.model = model
        self.text = text  # the answer, streamed in `chunks` pieces (default: w0 w1 …)
        self.requests = 0
        self.asked: list[Asked] = []
        self.bodies: list[dict[str, Any]] = []  # every chat request as it arrived
        self.auth: list[str] = []  # every chat request's Authorization header ("": none)
        self.models_auth: list[str] = []  # the same, of every model list asked for
        # Set: every model list is answered only once it is (a command held running).
        self.models_held: asyncio.Event | None = None
        self._served = contextlib.AsyncExitStack()
        self.url = ""

    def answer(self) -> str:
        return "".join(self.words()).strip()

    def words(self) -> list[str]:
        if self.text:
            size = -(-len(self.text) // self.chunks)
            return [self.text[i : i + size] for i in range(0, len(self.text), size)]
        return [f"w{i} " if i % 12 else f"w{i}\n" for i in range(self.chunks)]

    async def _models(self, request: web.Request) -> web.Response:
        self.models_auth.append(request.headers.get("Authorization", ""))
        if self.models_held is not None:
            await self.models_held.wait()
        models = [{"id": self.model, "object": "model"}]
        return web.json_response({"object": "list", "data": models})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = json.loads(await request.read())
        self.bodies.append(body)
        self.auth.append(request.headers.get("Authorization", ""))
        last = body["messages"][-1]["content"]
        asked = Asked(str(body.get("model", "")), json.dumps(last), time.monotonic())
        self.asked.append(asked)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        gap = self.span / max(self.chunks, 1)
        try:
            for word in self.words():
                chunk = {
                    "object": "chat.completion.chunk",
                    "model": self.model,
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                }
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await asyncio.sleep(gap)
        except ConnectionError:
            asked.cut = time.monotonic()  # the bot closed the connection
            return response
        except asyncio.CancelledError:
            asked.cut = time.monotonic()
            raise
        end = {
            "object": "chat.completion.chunk",
            "model": self.model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        asked.ended = time.monotonic()
        return response

    def request_for(self, words: str) -> Asked | None:
        """The request whose last message contains `words`."""
        return next((a for a in self.asked if words in a.question), None)

    async def __aenter__(self) -> SSEEndpoint:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self.url = await self._served.enter_async_context(serving(app))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._served.aclose()


_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class HomeserverProxy:
    """A loopback proxy in front of the homeserver: every request is forwarded as it came,
    unless a subclass's `intercept` answers it itself (None: forward it)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        self._session: aiohttp.ClientSession | None = None
        self._served = contextlib.AsyncExitStack()
        # Set as the proxy closes: a request held "forever" (`await closing.wait()`) ends
        # then, not as a task left on the loop for later tests to meet.
        self.closing = asyncio.Event()

    async def intercept(self, request: web.Request, body: bytes) -> web.StreamResponse | None:
        return None

    async def forward(self, request: web.Request, body: bytes) -> web.Response:
        """The homeserver's own answer to the request."""
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as upstream:
            data = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            kept.pop("Content-Encoding", None)
            return web.Response(body=data, status=upstream.status, headers=kept)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return await self.intercept(request, body) or await self.forward(request, body)

    async def __aenter__(self) -> Self:
        timeout = aiohttp.ClientTimeout(total=None)
        self._session = await self._served.enter_async_context(
            aiohttp.ClientSession(timeout=timeout, auto_decompress=True)
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.url = await self._served.enter_async_context(serving(app, shutdown_timeout=0.1))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closing.set()
        await self._served.aclose()
