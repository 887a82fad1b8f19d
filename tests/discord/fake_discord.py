"""A loopback stand-in for Discord's REST API and gateway, enough for one bot to chat.

The bot runs unmodified (its own process, real discord.py, real aiohttp) with
DISCORD_API_URL / DISCORD_GATEWAY_URL pointing here. Rules discord.py needs
(see REFERENCE.md): JSON with content type exactly application/json, TEXT
gateway frames (no zlib), never a 5xx (discord.py would retry for ~25 s).

The gateway keeps a session as Discord's does
(https://discord.com/developers/docs/topics/gateway): READY names the session and a
`resume_gateway_url`; a RESUME (op 6) of that session with the last sequence number the
client saw gets the events after it, in order, then RESUMED; one of a session that is
gone gets an Invalid Session (op 9, `d: false`), after which the client identifies anew
(READY and its guilds again). The fake can ask for a reconnect (op 7), invalidate the
session (op 9, resumable or not), close the socket with a close code or cut it, and
hold the gateway down while events happen (`gateway_down`: they wait for the RESUME).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.discord.arrival import Arrivals

# Permission bits granted to @everyone: view, send, read history, embed, attach,
# use app commands, send in threads.
EVERYONE_PERMISSIONS = (
    (1 << 10) | (1 << 11) | (1 << 16) | (1 << 14) | (1 << 15) | (1 << 31) | (1 << 38)
)
MESSAGE_CONTENT = 1 << 15  # the privileged intent bit
SEND_MESSAGES = 1 << 11
READ_MESSAGE_HISTORY = 1 << 16
ATTACH_FILES = 1 << 15
WEBHOOKS_PERMISSION = 1 << 29  # Manage Webhooks
MANAGE_SERVER_PERMISSION = 1 << 5  # Manage Server: an admin of every channel to the bot
_WEBHOOK_PATH = re.compile(
    r"^/webhooks/(?P<wid>\d+)(?:/(?P<token>[^/]+))?(?:/messages/(?P<mid>\d+))?$"
)
_CHANNEL_PATH = re.compile(r"^/channels/(?P<cid>\d+)(?P<rest>/.*)?$")
# The DM channels of users other than Bob start this far past `dm_id`: clear of the group
# DM and the other server's ids, where the bot is not.
_OTHER_DMS = 1000
HEARTBEAT_ACK_AFTER = 0.05  # s: a heartbeat's ack comes a round trip after it
SUPPRESS_EMBEDS = 1 << 2  # a message flag: no link previews (the one flag an edit may change)
# A link Discord previews: one in <…> it does not (https://support.discord.com, "Embeds").
_LINK = re.compile(r"(?<!<)\bhttps?://[^\s<>]+")


@dataclass
class Call:
    method: str
    path: str  # below /api/v10
    body: Any
    at: float = field(default_factory=time.monotonic)  # when its bytes reached the fake


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class FakeDiscord:
    token: str
    app_id: int = 100_000_000_000_000_001
    bot_id: int = 100_000_000_000_000_002
    guild_id: int = 200_000_000_000_000_001
    channel_id: int = 200_000_000_000_000_002
    dm_id: int = 200_000_000_000_000_900  # the bot's DM channel with anyone it writes to
    group_dm_id: int = 200_000_000_000_000_901  # Bob's group DM, which the bot is not in
    other_guild_id: int = 200_000_000_000_000_950  # a server the bot was never added to
    user_id: int = 300_000_000_000_000_001
    allow_message_content: bool = True  # the developer portal's privileged-intent switch
    channels: int = 1  # text channels in the guild: channel_id, channel_id + 1, …
    rate_limit_edits: int = 0  # answer this many message edits with a 429 first
    edit_retry_after: float = 0.3  # the seconds each of those asks the bot to wait
    limit_edits_first: bool = False  # those 429s come first, before edits_open holds the rest
    # Whether a 429 says its wait in a Retry-After header too (Discord does; discord.py
    # sleeps what its body's retry_after says, and a proxy in front may drop the header).
    retry_after_header: bool = True
    # Seconds until the edits' rate limit bucket resets, said with each edit made as spent
    # (X-RateLimit-Remaining: 0): discord.py waits them out before that edit returns.
    edit_bucket_reset: float = 0.0
    edit_delay: float = 0.0  # seconds each edit of a channel message takes (a slow API)
    limited: int = 0  # 429s sent
    drop_edits: int = 0  # cut the connection of this many message edits first
    dropped: int = 0  # edits whose connection was cut
    drop_deletes: int = 0  # cut the connection of this many message deletes
    drop_webhooks: int = 0  # cut the connection of this many calls to a channel's webhooks
    hold_posts: float = 0.0  # seconds a posted message waits before it is answered
    drop_posts: int = 0  # cut the connection of this many message posts (none is made)
    # Message posts from the n-th on (1: all; 0: none) are answered with a 429 asking the
    # bot to wait post_retry_after s (none is made): Discord refusing new messages a while.
    limit_posts_from: int = 0
    post_retry_after: float = 3600.0
    posts: int = 0  # message posts asked for (made or not)
    lose_posts: int = 0  # this many message posts are made, then their connection is cut
    dms: list[dict[str, Any]] = field(default_factory=list)  # what the bot sent by DM
    refuse_dms: bool = False  # members take no DM from the bot (Discord's 50007)
    hold_typing: float = 0.0  # seconds a typing call waits before it is answered
    # Typing calls answered with a 429 asking the bot to wait this many seconds (0: none),
    # which discord.py sleeps out: Discord's typing endpoint refusing the bot a while.
    typing_retry_after: float = 0.0
    typings: int = 0  # typing calls that reached the fake
    # A typing call waits while this is cleared (set at start, and at stop): one Discord
    # never answers.
    typing_open: asyncio.Event = field(default_factory=asyncio.Event)
    refuse_files: bool = False  # a post or an edit with a file is too large (413)
    calls: list[Call] = field(default_factory=list)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Members' messages (`user_says`): what a reply refers to, and a fetch reads.
    said: dict[int, dict[str, Any]] = field(default_factory=dict)
    identified: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    base: str = ""
    command_ids: dict[str, int] = field(default_factory=dict)
    # Answers to the next command registrations (PUT …/commands), in order, before one is
    # taken: a status (500, 503: Discord failing; 400: a command it refuses, code 50035),
    # or ("429", seconds) for a rate limit that asks to wait that long.
    sync_faults: list[int | tuple[str, float]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # interaction callbacks
    refused_responses: int = 0  # second responses to an interaction (refused: 40060)
    choices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by interaction
    followups: list[dict[str, Any]] = field(default_factory=list)
    # The same follow-ups by the interaction they answer: whose reply is whose when
    # commands run at once (`command_says`).
    followups_of: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # The links Discord fetched for a preview, as it does the moment a message showing
    # them is posted or edited (no click needed) unless its flags suppress embeds.
    unfurled: list[str] = field(default_factory=list)
    # A button press's interaction id → the message it was on (an update edits that one).
    _pressed: dict[str, int] = field(default_factory=dict)
    _answered: set[str] = field(default_factory=set)  # interactions responded to
    _tokens: dict[str, str] = field(default_factory=dict)  # interaction token → its id
    files: dict[str, bytes] = field(default_factory=dict)  # CDN path → bytes
    downloads: list[str] = field(default_factory=list)  # CDN paths the bot fetched
    # A CDN that lies or stalls: by file name, the body it serves instead of the stored
    # one (streamed, with no Content-Length: it may be larger than the size announced).
    cdn_bodies: dict[str, bytes] = field(default_factory=dict)
    cdn_trickle: float = 0.0  # seconds between each 1 KB part of a body it streams
    cdn_sent: int = 0  # bytes of streamed bodies written before the reader left
    cdn_open: int = 0  # downloads being served now
    cdn_most: int = 0  # the most served at once
    manage_webhooks: bool = False  # the bot's role grants Manage Webhooks
    # The server's roles besides @everyone, id → name (set before the bot connects, or
    # made later with create_role), and the ones each member has, by user id.
    roles: dict[int, str] = field(default_factory=dict)
    member_roles: dict[int, list[int]] = field(default_factory=dict)
    # Permission bits the bot lacks in the channel: its interactions say so, and a channel
    # overwrite says so to its cache (when set before it connects); without Send Messages
    # its own posts and typing are refused, as Discord refuses them.
    bot_denied: int = 0
    drop_callbacks: int = 0  # cut the connection of this many interaction responses (none lands)
    lose_callbacks: int = 0  # this many interaction responses land, then their connection is cut
    # Faults for the next interaction responses, in order (before the two counts above):
    # "drop" (cut, none lands), "lose" (lands, then cut), "expired" (came after Discord's
    # 3 s: refused as an unknown interaction, 10062), "" (none).
    callback_faults: list[str] = field(default_factory=list)
    drop_followups: int = 0  # cut the connection of this many follow-ups or original edits
    # What each interaction's response shows, by interaction id ("" while "thinking…"),
    # and its message flags.
    originals: dict[str, str] = field(default_factory=dict)
    original_flags: dict[str, int] = field(default_factory=dict)
    webhooks: dict[int, dict[str, Any]] = field(default_factory=dict)  # id → webhook
    webhook_avatars: dict[int, str] = field(default_factory=dict)  # id → data URI given
    # Threads (a channel's, or a forum's posts), id → thread channel object as Discord
    # sends it (type 11 public, 12 private; `thread_metadata`); made with `start_thread`.
    threads: dict[int, dict[str, Any]] = field(default_factory=dict)
    # A thread's lookup (GET /channels/{thread}, fetch_channel) waits while this is
    # cleared (it is set at start); the next `fail_thread_fetches` fail (503: Discord failing).
    thread_fetches_open: asyncio.Event = field(default_factory=asyncio.Event)
    fail_thread_fetches: int = 0
    # An edit of a channel message (PATCH …/messages/{id}) waits while this is cleared (it
    # is set at start); the next `fail_edits` fail with `edit_failure` (500: Discord failing,
    # which discord.py itself tries again 5 times, 1+3+5+7+9 s apart; 503: it does not).
    edits_open: asyncio.Event = field(default_factory=asyncio.Event)
    fail_edits: int = 0
    edit_failure: int = 500
    forum_id: int = 0  # a forum channel (type 15) in the guild, when set
    _dms: set[int] = field(default_factory=set)  # the DM channels opened (dm_of)
    _ids: itertools.count[int] = field(
        default_factory=lambda: itertools.count(400_000_000_000_000_001)
    )
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # The gateway: the socket of the live session (None before IDENTIFY), the session's id,
    # the events dispatched in it (a RESUME replays those after the client's sequence).
    _ws: web.WebSocketResponse | None = None
    _sockets: dict[web.WebSocketResponse, web.Request] = field(default_factory=dict)
    session_id: str = ""  # "" once Discord invalidated it: a RESUME is refused (op 9)
    _sessions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _frames: list[dict[str, Any]] = field(default_factory=list)
    identifies: int = 0  # IDENTIFYs answered with READY
    resumes: list[int] = field(default_factory=list)  # each RESUME: how many events it replayed
    resumed: asyncio.Event = field(default_factory=asyncio.Event)  # set at each RESUMED
    # Events a RESUME sends again although the client had them already (the newest this many
    # messages or interactions before its sequence), as Discord may after a reconnect.
    replay_again: int = 0
    _open: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: no session starts
    _runner: web.AppRunner | None = None
    _arrivals: Arrivals = field(default_factory=Arrivals)  # when each call's bytes came
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)  # events sent from sync code

    # ------------------------------------------------------------------ shapes

    def bot_user(self) -> dict[str, Any]:
        return self._user(self.bot_id, "chatbot", bot=True)

    def _user(self, uid: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": str(uid),
            "username": name,
            "discriminator": "0",
            "global_name": name.capitalize(),
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
            "flags": 0,
        }

    def _member(self, uid: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "user": self._user(uid, name, bot=bot),
            "roles": [str(r) for r in self.member_roles.get(uid, [])],
            "nick": None,
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
        }

    def _guild(self) -> dict[str, Any]:
        return {
            "id": str(self.guild_id),
            "name": "Loopback Guild",
            "owner_id": str(self.user_id + 1),
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "premium_tier": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "preferred_locale": "en-US",
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": [
                self._role(self.guild_id, "@everyone", 0, EVERYONE_PERMISSIONS),
                *(self._role(rid, name, i + 1) for i, (rid, name) in enumerate(self.roles.items())),
            ],
            "member_count": 2,
            "large": False,
            "unavailable": False,
            "joined_at": _now(),
            "members": [
                self._member(self.bot_id, "chatbot", bot=True),
                self._member(self.user_id, "bob"),
            ],
            "channels": [
                {
                    "id": str(cid),
                    "type": 0,
                    "name": f"general-{i}" if i else "general",
                    "position": i,
                    "permission_overwrites": self._overwrites(),
                    "parent_id": None,
                    "topic": None,
                    "rate_limit_per_user": 0,
                    "nsfw": False,
                    "last_message_id": None,
                }
                for i, cid in enumerate(self.channel_ids)
            ]
            + ([self._forum()] if self.forum_id else []),
            # The active threads the bot can see, as GUILD_CREATE lists them after a start.
            "threads": [t for t in self.threads.values() if not t["thread_metadata"]["archived"]],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_progress_bar_enabled": False,
        }

    @staticmethod
    def _role(rid: int, name: str, position: int, permissions: int = 0) -> dict[str, Any]:
        """A role object (https://discord.com/developers/docs/topics/permissions#role-object)."""
        return {
            "id": str(rid),
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    async def create_role(self, name: str) -> int:
        """An admin adds a role to the server while the bot is connected (Guild Role
        Create: `guild_id` and the role); its id."""
        rid = next(self._ids)
        self.roles[rid] = name
        role = self._role(rid, name, len(self.roles))
        await self._dispatch("GUILD_ROLE_CREATE", {"guild_id": str(self.guild_id), "role": role})
        return rid

    def _overwrites(self) -> list[dict[str, Any]]:
        """The channel's overwrite denying the bot `bot_denied` (none when it lacks none)."""
        if not self.bot_denied:
            return []
        return [{"id": str(self.bot_id), "type": 1, "allow": "0", "deny": str(self.bot_denied)}]

    @property
    def channel_ids(self) -> list[int]:
        return [self.channel_id + i for i in range(self.channels)]

    def _forum(self) -> dict[str, Any]:
        """A forum channel (type 15): nobody posts in it but in its posts (threads)."""
        return {
            "id": str(self.forum_id),
            "type": 15,
            "name": "questions",
            "position": self.channels,
            "permission_overwrites": self._overwrites(),
            "parent_id": None,
            "topic": None,
            "rate_limit_per_user": 0,
            "nsfw": False,
            "last_message_id": None,
            "flags": 0,
            "available_tags": [],
            "default_reaction_emoji": None,
            "default_sort_order": None,
            "default_forum_layout": 0,
            "default_thread_rate_limit_per_user": 0,
        }

    def _places(self) -> set[int]:
        """Every channel id this fake answers REST calls for: the text channels, the
        forum, the threads and the bot's DMs."""
        forum = [self.forum_id] if self.forum_id else []
        return {*self.channel_ids, *self.threads, *self._dms, *forum}

    def dm_of(self, uid: int) -> int:
        """The bot's DM channel with a user: `dm_id` with Bob, one of its own with anyone
        else (Discord has one DM channel per pair of users)."""
        return self.dm_id if uid == self.user_id else self.dm_id + _OTHER_DMS + uid % 97

    def _is_dm(self, cid: int) -> bool:
        """A DM channel of the bot's: Bob's, or one opened (a range of ids would take in
        the group DM and the other server's channel, where the bot is not)."""
        return cid == self.dm_id or cid in self._dms

    def _guild_field(self, cid: int) -> dict[str, Any]:
        """A message's `guild_id`: none in a DM (resources/message.mdx)."""
        return {} if self._is_dm(cid) else {"guild_id": str(self.guild_id)}

    async def start_thread(
        self,
        name: str,
        *,
        on: int | None = None,
        parent: int | None = None,
        owner: int | None = None,
        private: bool = False,
    ) -> int:
        """A member starts a thread (THREAD_CREATE, `newly_created`): on the message `on`
        ("Create Thread" on it: the thread's id is the message's), or on none; in
        `parent` (#general unless told; the forum's id makes a forum post). Its id."""
        tid = on if on is not None else next(self._ids)
        made = {
            "id": str(tid),
            "type": 12 if private else 11,
            "guild_id": str(self.guild_id),
            "parent_id": str(parent or self.channel_id),
            "owner_id": str(owner or self.user_id),
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "locked": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _now(),
                "create_timestamp": _now(),
                "invitable": not private,
            },
        }
        self.threads[tid] = made
        await self._dispatch("THREAD_CREATE", {**made, "newly_created": True})
        return tid

    async def update_thread(self, tid: int, **metadata: bool) -> None:
        """A moderator archives, locks (or undoes it) a thread: THREAD_UPDATE."""
        self.threads[tid]["thread_metadata"].update(metadata)
        await self._dispatch("THREAD_UPDATE", self.threads[tid])

    async def delete_thread(self, tid: int) -> None:
        """A moderator deletes a thread: THREAD_DELETE (id, guild_id, parent_id, type);
        its messages go with it."""
        gone = self.threads.pop(tid)
        for mid in [m for m, v in self.messages.items() if v["channel_id"] == str(tid)]:
            del self.messages[mid]
        keys = ("id", "guild_id", "parent_id", "type")
        await self._dispatch("THREAD_DELETE", {k: gone[k] for k in keys})

    def _with_bot_role(self, guild: dict[str, Any]) -> dict[str, Any]:
        """The bot's managed role, granting Manage Webhooks when the test asks for it."""
        if not self.manage_webhooks:
            return guild
        rights = EVERYONE_PERMISSIONS | WEBHOOKS_PERMISSION
        role = self._role(self.bot_id + 7, "chatbot", len(guild["roles"]), rights)
        guild["roles"].append(role)
        guild["members"][0]["roles"] = [role["id"]]
        return guild

    def _message(
        self, mid: int, cid: int, author: dict[str, Any], content: str, **extra: Any
    ) -> dict[str, Any]:
        return {
            "id": str(mid),
            "channel_id": str(cid),
            **self._guild_field(cid),
            "author": author,
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            **extra,
        }

    # ------------------------------------------------------------------ server

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/gateway"

    @property
    def resume_gateway_url(self) -> str:
        """READY's session-specific URL, where a client resumes (and only resumes)."""
        return self.base.replace("http://", "ws://") + "/gateway-resume"

    async def start(self) -> None:
        self._open.set()
        self.thread_fetches_open.set()
        self.edits_open.set()
        self.typing_open.set()
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway-resume", self._gateway)
        app.router.add_get("/attachments/{tail:.*}", self._cdn)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = await self._arrivals.serve(self._runner)
        self.base = f"http://127.0.0.1:{port}"

    async def drop_gateway(self) -> None:
        """Close the gateway's socket (REST stays), as Discord does when it asks a client
        to reconnect: the bot starts reconnecting."""
        if self._ws is not None:
            await self._ws.close()

    async def close_gateway(self, code: int = 4000) -> None:
        """Discord closes the session's socket with `code` (4000: "Unknown error", which
        a client reconnects and resumes after; 1001 when a gateway node goes away)."""
        if self._ws is not None:
            await self._ws.close(code=code, message=b"Unknown error.")

    def cut_gateway(self) -> None:
        """The session's connection breaks with no close frame (a network fault)."""
        request = self._sockets.get(self._ws) if self._ws is not None else None
        if request is not None and request.transport is not None:
            request.transport.abort()

    async def ask_reconnect(self) -> None:
        """Opcode 7 Reconnect: the client should reconnect and resume at once."""
        if self._ws is not None:
            await self._ws.send_str(json.dumps({"op": 7, "d": None}))

    async def invalidate_session(self, *, resumable: bool) -> None:
        """Opcode 9 Invalid Session on the live socket; `d` says whether the client may
        resume it. One that may not is gone: the client identifies anew."""
        if not resumable:
            self.session_id = ""
        if self._ws is not None:
            await self._ws.send_str(json.dumps({"op": 9, "d": resumable}))

    @contextlib.asynccontextmanager
    async def gateway_down(self, code: int = 4000) -> AsyncIterator[None]:
        """The gateway closes (`code`) and starts no session until the block ends: events
        meanwhile wait in the session for the client's RESUME."""
        self._open.clear()
        try:
            await self.close_gateway(code)
            yield
        finally:
            self._open.set()

    async def stop(self) -> None:
        self._open.set()
        self.typing_open.set()
        self.edits_open.set()  # an edit held is answered, not left to the runner's timeout
        for ws in list(self._sockets):
            await ws.close()
        self._arrivals.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        """Attachment bytes, as Discord's CDN serves them (no bot token needed)."""
        path = request.path
        data = self.files.get(path)
        await self._note(Call("GET", path, None, self._arrivals.of(request)))
        self.downloads.append(path)
        if data is None:
            return web.Response(status=404)
        name = path.rsplit("/", 1)[1]
        if name not in self.cdn_bodies and not self.cdn_trickle:
            return web.Response(body=data, content_type="application/octet-stream")
        body = self.cdn_bodies.get(name, data)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        part = 1024 if self.cdn_trickle else 64 * 1024
        self.cdn_open += 1
        self.cdn_most = max(self.cdn_most, self.cdn_open)
        try:
            for at in range(0, len(body), part):
                await response.write(body[at : at + part])
                self.cdn_sent += len(body[at : at + part])
                await asyncio.sleep(self.cdn_trickle)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the reader went away
        finally:
            self.cdn_open -= 1
        return response

    async def _note(self, call: Call) -> None:
        self.calls.append(call)
        async with self.changed:
            self.changed.notify_all()

    async def wait_until(self, check: Callable[[], bool], seconds: float) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(check), seconds)

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        # Exactly application/json: discord.py compares the header verbatim.
        return web.Response(
            status=status,
            body=json.dumps(data).encode(),
            headers={"Content-Type": "application/json"},
        )

    @staticmethod
    async def _body(request: web.Request) -> Any:
        """A JSON body, or a file upload's: discord.py sends multipart/form-data whose
        `payload_json` part is the JSON; the files' names and sizes go in `files` (with
        their form field, `files[n]`, and bytes, which a message's attachments take)."""
        if not request.can_read_body:
            return None
        if request.content_type != "multipart/form-data":
            return await request.json()
        form = await request.post()
        payload = form.get("payload_json")
        body = json.loads(payload) if isinstance(payload, str) else {}
        files = []
        for name, part in form.items():
            if isinstance(part, web.FileField):
                data = part.file.read()
                files.append(
                    {
                        "filename": part.filename,
                        "size": len(data),
                        "field": name,
                        "data": data,
                        "content_type": part.content_type,
                    }
                )
        body["files"] = files
        return body

    def _attach(self, message: dict[str, Any], body: dict[str, Any]) -> None:
        """A post's or an edit's files, as Discord takes them: `attachments` lists those
        the message keeps (by id) and the new ones (by index into `files[n]`); an edit
        without it keeps what the message had and adds any file sent."""
        uploads = {str(f["field"]): f for f in body.get("files", [])}
        listed = body.get("attachments")
        if listed is None and not uploads:
            return
        cid = int(message["channel_id"])

        def made(upload: dict[str, Any]) -> dict[str, Any]:
            kind = str(upload.get("content_type") or "application/octet-stream")
            return self._attachment(cid, str(upload["filename"]), kind, upload["data"])

        if listed is None:
            message["attachments"] = [*message["attachments"], *map(made, uploads.values())]
            return
        had = {str(a["id"]): a for a in message["attachments"]}
        kept: list[dict[str, Any]] = []
        for entry in listed:
            key = str(entry.get("id"))
            if key in had:
                kept.append(had[key])
            elif f"files[{key}]" in uploads:
                kept.append(made(uploads[f"files[{key}]"]))
        message["attachments"] = kept

    def _shown(self, content: str, flags: int) -> None:
        """A message showing `content` was posted or edited: Discord fetches its links
        for their previews, unless `flags` suppress embeds."""
        if not flags & SUPPRESS_EMBEDS:
            self.unfurled += _LINK.findall(content)

    def _edited(self, message: dict[str, Any], body: dict[str, Any]) -> None:
        """An edit's content and flags, as Discord takes them: flags left out are kept,
        and of those sent only SUPPRESS_EMBEDS changes (resources/message.mdx, Edit
        Message); Discord fetches the links of what the message now shows."""
        message["content"] = body.get("content", message["content"])
        if body.get("flags") is not None:
            kept = int(message["flags"]) & ~SUPPRESS_EMBEDS
            message["flags"] = kept | (int(body["flags"]) & SUPPRESS_EMBEDS)
        if "content" in body or body.get("flags") is not None:
            self._shown(str(message["content"]), int(message["flags"]))

    def attached(self, message: dict[str, Any]) -> dict[str, bytes]:
        """What a message's files hold, by file name (served by this fake's CDN)."""
        return {
            str(a["filename"]): self.files[a["url"].removeprefix(self.base)]
            for a in message["attachments"]
        }

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body = await self._body(request)
        await self._note(Call(request.method, path, body, self._arrivals.of(request)))
        hooked = self._webhook_rest(request, path, body or {})
        if hooked is not None:
            return hooked
        if path.startswith(("/interactions/", "/webhooks/")):  # token-authenticated
            callback = request.method == "POST" and path.endswith("/callback")
            fault = self.callback_faults.pop(0) if callback and self.callback_faults else None
            if fault is None and callback and self.drop_callbacks:
                self.drop_callbacks -= 1
                fault = "drop"
            followup = not callback and request.method in ("POST", "PATCH")
            if followup and self.drop_followups:
                self.drop_followups -= 1
                fault = "drop"
            if fault == "drop" and request.transport is not None:
                request.transport.abort()  # never reached Discord's side: nothing shown
                return web.Response(status=500)
            if fault == "expired":
                return self._json({"message": "Unknown interaction", "code": 10062}, 404)
            answered = self._interaction_rest(request.method, path, body or {})
            if fault is None and callback and self.lose_callbacks:
                self.lose_callbacks -= 1
                fault = "lose"
            if fault == "lose" and request.transport is not None:
                request.transport.abort()  # shown, but the bot never hears so
            return answered
        if request.headers.get("Authorization") != f"Bot {self.token}":
            return self._json({"message": "401: Unauthorized", "code": 0}, 401)
        route = (request.method, path)
        if route == ("GET", "/users/@me"):
            return self._json(self.bot_user())
        if route == ("GET", "/oauth2/applications/@me"):
            return self._json(self._application())
        if route in (("GET", "/gateway/bot"), ("GET", "/gateway")):
            return self._json(
                {
                    "url": self.gateway_url,
                    "shards": 1,
                    "session_start_limit": {
                        "total": 1000,
                        "remaining": 1000,
                        "reset_after": 0,
                        "max_concurrency": 1,
                    },
                }
            )
        if route == ("POST", "/users/@me/channels"):  # a DM: its channel, then its messages
            recipient = str((body or {}).get("recipient_id", ""))
            dm = self.dm_of(int(recipient or 0))
            self._dms.add(dm)
            return self._json(
                {
                    "id": str(dm),
                    "type": 1,
                    "recipients": [self._user(int(recipient or 0), "member")],
                    "last_message_id": None,
                }
            )
        dm = _CHANNEL_PATH.match(path)
        if (
            dm
            and route == ("POST", f"/channels/{dm['cid']}/messages")
            and self._is_dm(int(dm["cid"]))
        ):
            if self.refuse_dms:
                return self._json(
                    {"message": "Cannot send messages to this user", "code": 50007}, 403
                )
            self.dms.append(body or {})
            return self._json(self._post(int(dm["cid"]), body or {}))
        if request.method == "PUT" and path.startswith(f"/applications/{self.app_id}/"):
            if self.sync_faults:
                return self._sync_fault(self.sync_faults.pop(0))
            return self._json(self._registered(body or []))
        match = _CHANNEL_PATH.match(path)
        if match is None or int(match["cid"]) not in self._places():
            return self._json({"message": "Unknown Channel", "code": 10003}, 404)
        cid, rest = int(match["cid"]), match["rest"] or ""
        refused = self._thread_refusal(cid, request.method, rest)
        if refused is not None:
            return refused
        if request.method == "POST" and rest in ("/typing", "/messages") and self._no_send():
            return self._json({"message": "Missing Permissions", "code": 50013}, 403)
        if (body or {}).get("files") and self.bot_denied & ATTACH_FILES:  # a webhook may
            return self._json({"message": "Missing Permissions", "code": 50013}, 403)
        if (body or {}).get("files") and self.refuse_files:
            return self._json({"message": "Request entity too large", "code": 40005}, 413)
        if route == ("GET", f"/channels/{cid}") and cid in self.threads:  # fetch_channel
            await self.thread_fetches_open.wait()
            if self.fail_thread_fetches:
                self.fail_thread_fetches -= 1
                return self._json({"message": "Service Unavailable", "code": 0}, 503)
            return self._json(self.threads[cid])
        if route == ("POST", f"/channels/{cid}/typing"):
            self.typings += 1
            if self.typing_retry_after:
                return self._rate_limited(self.typing_retry_after)
            await self.typing_open.wait()
            await asyncio.sleep(self.hold_typing)
            return web.Response(status=204)
        if rest == "/webhooks":
            if self.drop_webhooks and request.transport is not None:
                self.drop_webhooks -= 1
                request.transport.abort()
                return web.Response(status=500)
            return self._channel_webhooks(request.method, cid, body or {})
        if route == ("POST", f"/channels/{cid}/messages"):
            self.posts += 1
            if self.limit_posts_from and self.posts >= self.limit_posts_from:
                return self._rate_limited(self.post_retry_after)
            if self.drop_posts and request.transport is not None:
                self.drop_posts -= 1
                request.transport.abort()
                return web.Response(status=500)
            posted = self._json(self._post(cid, body or {}))  # on show from now on
            await asyncio.sleep(self.hold_posts)
            if self.lose_posts and request.transport is not None:
                self.lose_posts -= 1
                request.transport.abort()
            return posted
        if request.method == "GET" and rest.startswith("/messages/"):  # fetch_message
            if self.bot_denied & READ_MESSAGE_HISTORY:
                return self._json({"message": "Missing Access", "code": 50001}, 403)
            mid = int(rest.rsplit("/", 1)[1])
            found = self.messages.get(mid) or self.said.get(mid)
            if found is None or found["channel_id"] != str(cid):
                return self._json({"message": "Unknown Message", "code": 10008}, 404)
            return self._json(found)
        if request.method == "DELETE" and rest.startswith("/messages/"):
            if self.drop_deletes and request.transport is not None:
                self.drop_deletes -= 1
                request.transport.abort()
                return web.Response(status=500)
            mid = int(rest.rsplit("/", 1)[1])
            if self.messages.pop(mid, None) is not None:
                await self._deleted(cid, mid)  # to every bot, itself too, as Discord does
            return web.Response(status=204)
        if request.method == "PATCH" and rest.startswith("/messages/"):
            mid = int(rest.rsplit("/", 1)[1])
            if self.limited < self.rate_limit_edits and self.limit_edits_first:
                self.limited += 1
                return self._rate_limited(self.edit_retry_after)
            if self.edit_delay:
                await asyncio.sleep(self.edit_delay)
            await self.edits_open.wait()
            if self.fail_edits:
                self.fail_edits -= 1
                failing = {"message": "Internal Server Error", "code": 0}
                return self._json(failing, self.edit_failure)
            if self.dropped < self.drop_edits and request.transport is not None:
                self.dropped += 1
                request.transport.abort()  # the bot sees the connection reset, no answer
                return web.Response(status=500)
            if self.limited < self.rate_limit_edits:
                self.limited += 1
                return self._rate_limited(self.edit_retry_after)
            if mid not in self.messages:
                return self._json({"message": "Unknown Message", "code": 10008}, 404)
            message = self.messages[mid]
            self._edited(message, body or {})
            message["components"] = (body or {}).get("components", message["components"])
            self._attach(message, body or {})
            message["edited_timestamp"] = _now()
            response = self._json(message)
            if self.edit_bucket_reset:
                reset = self.edit_bucket_reset
                response.headers.update(
                    {
                        "X-RateLimit-Bucket": "edits",
                        "X-RateLimit-Limit": "5",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": f"{time.time() + reset:.3f}",
                        "X-RateLimit-Reset-After": f"{reset:.3f}",
                    }
                )
            return response
        return self._json({"message": "404: Not Found", "code": 0}, 404)

    def _rate_limited(self, wait: float) -> web.Response:
        """A 429 asking the bot to wait `wait` s."""
        limited = {"message": "You are being rate limited.", "retry_after": wait}
        response = self._json({**limited, "global": False}, 429)
        response.headers["Via"] = "1.1 google"  # else discord.py suspects a ban
        if self.retry_after_header:
            # Discord says it in whole seconds too (topics/rate-limits: Retry-After).
            response.headers["Retry-After"] = str(math.ceil(wait))
        return response

    def _thread_refusal(self, cid: int, method: str, rest: str) -> web.Response | None:
        """What an archived or locked thread refuses (topics/threads.mdx): nobody without
        Manage Threads posts in a locked one (160005); a post in an archived one unarchives
        it (THREAD_UPDATE), while an edit there is refused until then (50083)."""
        thread = self.threads.get(cid)
        if thread is None or not rest.startswith("/messages"):
            return None
        meta = thread["thread_metadata"]
        if method == "POST" and meta["locked"]:
            return self._json({"message": "Thread is locked", "code": 160005}, 403)
        if method == "PATCH" and meta["archived"]:
            return self._json({"message": "Thread is archived", "code": 50083}, 400)
        if method == "POST" and meta["archived"]:
            meta["archived"] = False
            self._spawn(self._dispatch("THREAD_UPDATE", thread))
        return None

    def _spawn(self, event: Any) -> None:
        """An event sent from a route that answers at once."""
        task = asyncio.get_running_loop().create_task(event)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _heartbeat_ack(self, ws: web.WebSocketResponse) -> None:
        await asyncio.sleep(HEARTBEAT_ACK_AFTER)
        with contextlib.suppress(ConnectionError, RuntimeError):  # the socket closed since
            await ws.send_str(json.dumps({"op": 11}))

    def _no_send(self) -> bool:
        return bool(self.bot_denied & SEND_MESSAGES)

    def _application(self) -> dict[str, Any]:
        owner = self._user(self.user_id + 1, "owner")
        return {
            "id": str(self.app_id),
            "name": "chatbot",
            "icon": None,
            "description": "",
            "summary": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": owner,
            "flags": 0,
            "team": None,
            "bot": self.bot_user(),
        }

    def _sync_fault(self, fault: int | tuple[str, float]) -> web.Response:
        """A command registration refused as Discord refuses one."""
        if isinstance(fault, tuple):  # the daily limit on new commands, say
            limited = {"message": "You are being rate limited.", "retry_after": fault[1]}
            response = self._json({**limited, "global": False}, 429)
            response.headers["Via"] = "1.1 google"  # else discord.py suspects a ban
            return response
        if fault == 400:  # one command's description too long: Discord names it by index
            rule = {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 100 or fewer in length."}
            errors = {"1": {"description": {"_errors": [rule]}}}
            refused = {"message": "Invalid Form Body", "code": 50035, "errors": errors}
            return self._json(refused, 400)
        return self._json({"message": "Internal Server Error", "code": 0}, fault)

    def _registered(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.command_ids = {c["name"]: next(self._ids) for c in commands}
        return [
            {
                **c,
                "id": str(self.command_ids[c["name"]]),
                "application_id": str(self.app_id),
                "version": "1",
                "type": c.get("type", 1),
            }
            for c in commands
        ]

    def _interaction_rest(self, method: str, path: str, body: dict[str, Any]) -> web.Response:
        parts = path.strip("/").split("/")
        if method == "POST" and parts[0] == "interactions" and parts[-1] == "callback":
            if parts[1] in self._answered:  # one response per interaction, as Discord keeps it
                self.refused_responses += 1
                acked = {"message": "Interaction has already been acknowledged.", "code": 40060}
                return self._json(acked, 400)
            self._answered.add(parts[1])
            self.responses.append(body)
            kind = int(body.get("type", 0))
            data = body.get("data") or {}
            if kind == 8:  # APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
                self.choices[parts[1]] = list(data.get("choices") or [])
            if kind in (4, 5):  # a message, or "thinking…" until it is edited
                self.originals[parts[1]] = str(data.get("content", "")) if kind == 4 else ""
                self.original_flags[parts[1]] = int(data.get("flags") or 0)
                self._shown(self.originals[parts[1]], self.original_flags[parts[1]])
            pressed = self.messages.get(self._pressed.get(parts[1], 0))
            if kind == 7 and pressed is not None:  # UPDATE_MESSAGE: the pressed message
                self._edited(pressed, data)
                pressed.update({k: data[k] for k in ("components",) if k in data})
                pressed["edited_timestamp"] = _now()
            ephemeral = bool(int(data.get("flags", 0)) & 64)
            return self._json(
                {
                    "interaction": {
                        "id": parts[1],
                        "type": 2,
                        "response_message_loading": kind == 5,
                        "response_message_ephemeral": ephemeral,
                    },
                    "resource": {"type": kind},
                }
            )
        if method == "PATCH" and parts[0] == "webhooks" and parts[3:] == ["messages", "@original"]:
            iid = self._tokens.get(parts[2], "")
            if iid not in self.originals:
                return self._json({"message": "Unknown Message", "code": 10008}, 404)
            message = self._message(next(self._ids), self.channel_id, self.bot_user(), "")
            message["content"], message["flags"] = self.originals[iid], self.original_flags[iid]
            self._edited(message, body)
            self.originals[iid], self.original_flags[iid] = message["content"], message["flags"]
            return self._json(message)
        if method == "DELETE" and parts[0] == "webhooks" and parts[3:] == ["messages", "@original"]:
            iid = self._tokens.get(parts[2], "")
            if self.originals.pop(iid, None) is None:
                return self._json({"message": "Unknown Message", "code": 10008}, 404)
            return web.Response(status=204)
        if method == "POST" and parts[0] == "webhooks" and len(parts) == 3:
            if self._tokens.get(parts[2]) not in self._answered:
                # A follow-up needs the interaction's response first.
                return self._json({"message": "Unknown Webhook", "code": 10015}, 404)
            self.followups.append(body)
            self.followups_of.setdefault(self._tokens[parts[2]], []).append(body)
            mid = next(self._ids)
            message = self._message(mid, self.channel_id, self.bot_user(), body.get("content", ""))
            message["flags"] = int(body.get("flags", 0))
            self._shown(message["content"], message["flags"])
            return self._json(message)
        return self._json({"message": "Unknown Webhook", "code": 10015}, 404)

    # ---------------------------------------------------------------- webhooks

    def _channel_webhooks(self, method: str, cid: int, body: dict[str, Any]) -> web.Response:
        """List or create a channel's webhooks (Manage Webhooks, else 50013)."""
        if not self.manage_webhooks:
            return self._json({"message": "Missing Permissions", "code": 50013}, 403)
        if method == "GET":
            return self._json([w for w in self.webhooks.values() if w["channel_id"] == str(cid)])
        if method != "POST":
            return self._json({"message": "405: Method Not Allowed", "code": 0}, 405)
        name = str(body.get("name", ""))
        if not 1 <= len(name) <= 80 or re.search("discord|clyde", name, re.IGNORECASE):
            return self._json({"message": "Invalid Form Body", "code": 50035}, 400)
        wid = next(self._ids)
        self.webhooks[wid] = {
            "id": str(wid),
            "type": 1,
            "guild_id": str(self.guild_id),
            "channel_id": str(cid),
            "user": self.bot_user(),
            "name": name,
            "avatar": None,
            "token": secrets.token_urlsafe(51),  # 68 characters, as Discord's are
            "application_id": str(self.app_id),  # made by the bot: application-owned
        }
        if body.get("avatar"):
            self.webhook_avatars[wid] = str(body["avatar"])
            self.webhooks[wid]["avatar"] = f"{wid:x}"
        return self._json(self.webhooks[wid])

    def _webhook_rest(
        self, request: web.Request, path: str, body: dict[str, Any]
    ) -> web.Response | None:
        """A channel webhook's routes (None: not one of its webhooks, e.g. an interaction's)."""
        match = _WEBHOOK_PATH.match(path)
        if match is None or int(match["wid"]) == self.app_id:
            return None  # not a webhook route, or an interaction's follow-up
        if int(match["wid"]) not in self.webhooks:
            return self._json({"message": "Unknown Webhook", "code": 10015}, 404)
        wid, token, mid = int(match["wid"]), match["token"], match["mid"]
        hook = self.webhooks[wid]
        if token is None:  # managed with the bot's token
            if request.headers.get("Authorization") != f"Bot {self.token}":
                return self._json({"message": "401: Unauthorized", "code": 0}, 401)
            if request.method == "PATCH":
                hook["name"] = body.get("name", hook["name"])
                if body.get("avatar"):
                    self.webhook_avatars[wid] = str(body["avatar"])
                    hook["avatar"] = f"{wid:x}"
            return self._json(hook)
        if token != hook["token"]:
            return self._json({"message": "Invalid Webhook Token", "code": 50027}, 401)
        if request.method == "POST" and mid is None:
            return self._execute(hook, body, request.query)
        message = self.messages.get(int(mid)) if mid else None
        if message is None or message.get("webhook_id") != str(wid):
            return self._json({"message": "Unknown Message", "code": 10008}, 404)
        if request.method == "PATCH":
            self._edited(message, body)
            message["components"] = body.get("components", message["components"])
            self._attach(message, body)
            message["edited_timestamp"] = _now()
            return self._json(message)
        if request.method == "DELETE":
            del self.messages[int(mid)]
            gone = self._deleted(int(hook["channel_id"]), int(mid))
            task = asyncio.get_running_loop().create_task(gone)  # this route is not async
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return web.Response(status=204)
        return self._json(message)

    def _execute(self, hook: dict[str, Any], body: dict[str, Any], query: Any) -> web.Response:
        """POST /webhooks/{id}/{token}?wait=true: a message by the webhook, buttons kept
        only with with_components (an application-owned webhook may send them)."""
        mid = next(self._ids)
        author = {
            **self._user(int(hook["id"]), body.get("username") or hook["name"], bot=True),
            "avatar": hook["avatar"],
        }
        cid = int(hook["channel_id"])
        message = self._message(mid, cid, author, body.get("content", ""))
        message["webhook_id"] = hook["id"]
        message["application_id"] = hook["application_id"]
        message["flags"] = int(body.get("flags") or 0)
        self._shown(message["content"], message["flags"])
        if query.get("with_components") in ("1", "true"):
            message["components"] = body.get("components", [])
        self._attach(message, body)
        self.messages[mid] = message
        if query.get("wait") in ("1", "true"):
            return self._json(message)
        return web.Response(status=204)

    def _post(self, cid: int, body: dict[str, Any]) -> dict[str, Any]:
        nonce = body.get("nonce")
        if nonce and body.get("enforce_nonce"):  # posted again: the message it made
            made = [m for m in self.messages.values() if m.get("nonce") == nonce]
            if made:
                return made[0]
        mid = next(self._ids)
        extra: dict[str, Any] = {}
        reference = body.get("message_reference")
        if reference:
            extra = {"type": 19, "message_reference": reference, "referenced_message": None}
        message = self._message(mid, cid, self.bot_user(), body.get("content", ""), **extra)
        message["components"] = body.get("components", [])
        message["flags"] = int(body.get("flags") or 0)
        self._shown(message["content"], message["flags"])
        self._attach(message, body)
        if nonce:
            message["nonce"] = nonce
        self.messages[mid] = message
        return message

    # ----------------------------------------------------------------- gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets[ws] = request
        try:
            await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                payload = json.loads(frame.data)
                op = payload.get("op")
                if op == 1:
                    # Acked after a round trip's while, as Discord's ack comes: one sent at
                    # once can reach discord.py before its heartbeat thread notes the send,
                    # which then logs "Can't keep up … websocket is 41.3s behind".
                    self._spawn(self._heartbeat_ack(ws))
                elif op in (2, 6):
                    await self._open.wait()  # `gateway_down`: the session waits
                    if payload["d"].get("token") != self.token:
                        await ws.close(code=4004, message=b"Authentication failed.")
                        break
                    if op == 2 and not await self._identify(ws, payload["d"]):
                        break
                    if op == 6:
                        await self._resume(ws, payload["d"])
        finally:
            self._sockets.pop(ws, None)
        return ws

    async def _identify(self, ws: web.WebSocketResponse, identify: dict[str, Any]) -> bool:
        """A new session: READY, then its guild. False: refused, the socket closed."""
        if int(identify.get("intents", 0)) & MESSAGE_CONTENT and not self.allow_message_content:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return False
        self.session_id = f"loopback-session-{next(self._sessions)}"
        self._frames = []  # a new session replays nothing of the one before
        self._ws = ws
        self.identifies += 1
        await self._dispatch("READY", self._ready(identify))
        await self._dispatch("GUILD_CREATE", self._with_bot_role(self._guild()))
        self.identified.set()
        async with self.changed:  # for `wait_until`
            self.changed.notify_all()
        return True

    async def _resume(self, ws: web.WebSocketResponse, resume: dict[str, Any]) -> None:
        """The events after the client's sequence, in order, then RESUMED; a session that
        is gone gets Invalid Session (not resumable)."""
        if not self.session_id or resume.get("session_id") != self.session_id:
            await ws.send_str(json.dumps({"op": 9, "d": False}))
            return
        seq = int(resume.get("seq") or 0)
        people = ("MESSAGE_CREATE", "INTERACTION_CREATE")
        had = [f for f in self._frames if f["s"] <= seq and f["t"] in people]
        again = had[-self.replay_again :] if self.replay_again else []
        missed = [f for f in self._frames if f["s"] > seq]
        self._ws = ws
        for frame in again + missed:
            await ws.send_str(json.dumps(frame))
        self.resumes.append(len(missed))
        await self._dispatch("RESUMED", {})
        self.resumed.set()
        async with self.changed:
            self.changed.notify_all()

    def _ready(self, identify: dict[str, Any]) -> dict[str, Any]:
        return {
            "v": 10,
            "user": self.bot_user(),
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": self.session_id or "loopback-session",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.app_id), "flags": 0},
            "shard": identify.get("shard", [0, 1]),
        }

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        """An event of the session: sent now if its socket is open, else kept for the
        client's RESUME (or lost with the session, if it identifies anew)."""
        frame = {"op": 0, "t": event, "s": next(self._seq), "d": data}
        self._frames.append(frame)
        ws = self._ws
        if ws is None or ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):  # closing: replayed
            await ws.send_str(json.dumps(frame))

    async def _deleted(self, cid: int, mid: int) -> None:
        if self._ws is not None:
            data = {"id": str(mid), "channel_id": str(cid), **self._guild_field(cid)}
            await self._dispatch("MESSAGE_DELETE", data)

    async def delete_message(self, mid: int, channel_id: int | None = None) -> None:
        """A member deletes theirs (this fake keeps only the bot's), or a moderator one
        of the bot's."""
        message = self.messages.pop(mid, None)
        cid = int(message["channel_id"]) if message else channel_id or self.channel_id
        await self._deleted(cid, mid)

    async def user_edits(self, mid: int, content: str) -> None:
        """The member who posted `mid` (user_says) edits its text: MESSAGE_UPDATE with the
        whole message as Discord sends it (its attachments kept)."""
        message = {**self.said[mid], "content": content, "edited_timestamp": _now()}
        self.said[mid] = message
        await self._dispatch("MESSAGE_UPDATE", message)

    async def user_says(
        self,
        content: str,
        *,
        mention_bot: bool = True,
        channel_id: int | None = None,
        files: Sequence[tuple[str, str, bytes]] = (),
        reply_to: int | None = None,
        by: tuple[int, str] | None = None,
        resolved: bool = True,
        seen: bool = True,
    ) -> int:
        """A member (bob, or the member `by` (id, name)) posts (in #general unless told),
        with (name, type, bytes) files this fake's CDN serves; returns the message id.
        A reply (`reply_to`) carries the message it refers to, unless not `resolved`
        (Discord then leaves it out: the client fetches it); `channel_id` `dm_id`: in
        the author's own DM with the bot, a thread's id: in it; not `seen`: posted while
        the bot was away (no event of it reaches the bot)."""
        mid = next(self._ids)
        mentions = [self.bot_user()] if mention_bot else []
        uid, name = by or (self.user_id, "bob")
        author = self._user(uid, name)
        cid = channel_id or self.channel_id
        if cid == self.dm_id:  # "in a DM": the author's own with the bot
            cid = self.dm_of(uid)
            self._dms.add(cid)
        attachments = [self._attachment(cid, *file) for file in files]
        message = self._message(
            mid, cid, author, content, mentions=mentions, attachments=attachments
        )
        if not self._is_dm(cid):  # a DM's message has no member (nor guild_id)
            message["member"] = {k: v for k, v in self._member(uid, name).items() if k != "user"}
        if reply_to is not None:  # a reply to a message this fake holds
            message["type"] = 19
            message["message_reference"] = {"message_id": str(reply_to), "channel_id": str(cid)}
            if resolved:
                message["referenced_message"] = self.messages.get(reply_to) or self.said[reply_to]
        self.said[mid] = message
        if seen:
            await self._dispatch("MESSAGE_CREATE", message)
        thread = self.threads.get(cid)
        if thread is not None and thread["thread_metadata"]["archived"]:
            # A member's message reopens an archived thread, as Discord does (unless it is
            # locked, which this fake does not refuse members).
            thread["thread_metadata"]["archived"] = False
            if seen:
                await self._dispatch("THREAD_UPDATE", thread)
        return mid

    def _attachment(self, cid: int, name: str, content_type: str, data: bytes) -> dict[str, Any]:
        aid = next(self._ids)
        path = f"/attachments/{cid}/{aid}/{name}"
        self.files[path] = data
        url = f"{self.base}{path}"
        return {
            "id": str(aid),
            "filename": name,
            "content_type": content_type,
            "size": len(data),
            "url": url,
            "proxy_url": url,
        }

    def _interaction(
        self,
        kind: int,
        data: dict[str, Any],
        *,
        manager: bool = False,
        where: str = "guild",
        channel_id: int | None = None,
    ) -> dict[str, Any]:
        member = {k: v for k, v in self._member(self.user_id, "bob").items()}
        rights = EVERYONE_PERMISSIONS | (MANAGE_SERVER_PERMISSION if manager else 0)
        member["permissions"] = str(rights)
        iid = str(next(self._ids))
        # Shaped as Discord's: base64 of "interaction:<id>:<random>", about 170 characters.
        made = f"interaction:{iid}:{secrets.token_urlsafe(96)}".encode()
        token = base64.urlsafe_b64encode(made).decode().rstrip("=")
        self._tokens[token] = iid
        if where == "dm":
            return self._dm_interaction(iid, token, kind, data)
        if where != "guild":
            return self._user_app_interaction(iid, token, kind, data, member, where)
        cid = channel_id or self.channel_id
        channel: dict[str, Any] = {
            "id": str(cid),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": "general",
            "permissions": str(EVERYONE_PERMISSIONS),
        }
        if cid in self.threads:  # a thread's partial channel, as interactions carry it
            channel = {**self.threads[cid], "permissions": str(EVERYONE_PERMISSIONS)}
        return {
            "id": iid,
            "application_id": str(self.app_id),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "guild_id": str(self.guild_id),
            "channel_id": str(cid),
            "channel": channel,
            "member": member,
            "app_permissions": str(self._app_permissions()),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(self.guild_id)},
            "context": 0,
            "attachment_size_limit": 26214400,
        }

    def _dm_interaction(
        self, iid: str, token: str, kind: int, data: dict[str, Any]
    ) -> dict[str, Any]:
        """Bob's command in his DM with the bot (context 1, BOT_DM): no guild, no member,
        `user` instead; the bot's server install authorizes it as "0"
        (interactions/receiving-and-responding.mdx, authorizing_integration_owners)."""
        bob = self._user(self.user_id, "bob")
        channel = {
            "id": str(self.dm_id),
            "type": 1,
            "recipients": [bob],
            "last_message_id": None,
            "flags": 0,
        }
        return {
            "id": iid,
            "application_id": str(self.app_id),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(self.dm_id),
            "channel": channel,
            "user": bob,
            "app_permissions": str(EVERYONE_PERMISSIONS),
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": "0"},
            "context": 1,
            "attachment_size_limit": 26214400,
        }

    def _user_app_interaction(
        self,
        iid: str,
        token: str,
        kind: int,
        data: dict[str, Any],
        member: dict[str, Any],
        where: str,
    ) -> dict[str, Any]:
        """An interaction with the app installed by the user alone (User Install), where
        the bot is not: a group DM ("group_dm"), or a server it was never added to
        ("other_server"). Discord names only the user as its installation's owner, and the
        app may attach files and embed links there (it has no other rights)."""
        common = {
            "id": iid,
            "application_id": str(self.app_id),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "app_permissions": str((1 << 14) | (1 << 15) | (1 << 17)),
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"1": str(self.user_id)},
            "attachment_size_limit": 26214400,
        }
        if where == "group_dm":
            me, other = self._user(self.user_id, "bob"), self._user(self.user_id + 2, "cleo")
            channel = {
                "id": str(self.group_dm_id),
                "type": 3,
                "name": "friends",
                "icon": None,
                "owner_id": str(self.user_id),
                "recipients": [me, other],
                "last_message_id": None,
            }
            return {
                **common,
                "channel_id": channel["id"],
                "channel": channel,
                "user": me,
                "context": 2,
            }
        assert where == "other_server", where
        guild_id = str(self.other_guild_id)
        channel = {
            "id": str(self.other_guild_id + 1),
            "type": 0,
            "guild_id": guild_id,
            "name": "elsewhere",
            "position": 0,
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "flags": 0,
            "permissions": str(EVERYONE_PERMISSIONS),
        }
        return {
            **common,
            "guild_id": guild_id,
            "guild": {"id": guild_id, "locale": "en-US", "features": []},
            "guild_locale": "en-US",
            "channel_id": channel["id"],
            "channel": channel,
            "member": member,
            "context": 0,
        }

    def _app_permissions(self) -> int:
        """The bot's permissions in the channel, as an interaction carries them."""
        rights = EVERYONE_PERMISSIONS | (WEBHOOKS_PERMISSION if self.manage_webhooks else 0)
        return rights & ~self.bot_denied

    async def command_says(self, *names: str, manager: bool = True, **options: Any) -> str:
        """Bob runs `/names… option:value…` (a server admin unless `manager` is False):
        what it answered, at once or after "thinking…" in a follow-up. Its own reply, not
        another's: several may run at once (asyncio.gather)."""
        return await self.reply_to(await self.slash(*names, manager=manager, **options))

    async def reply_to(self, iid: str) -> str:
        """The first text interaction `iid` showed: its response (or the "thinking…" it
        became), else its first follow-up."""

        def shown() -> str:
            later = [str(f.get("content", "")) for f in self.followups_of.get(iid, [])]
            return next((text for text in (self.originals.get(iid, ""), *later) if text), "")

        await self.wait_until(lambda: bool(shown()), 60)
        return shown()

    async def answer_since(self, known: set[str], followups: int) -> str:
        """The one reply shown since the interactions `known` and the first `followups`
        follow-ups (what `command_says` waits for; a form's submission's too)."""

        def shown() -> list[str]:
            now = [self.originals[iid] for iid in self.originals if iid not in known]
            later = [str(f.get("content", "")) for f in self.followups[followups:]]
            return [text for text in (*now, *later) if text]

        await self.wait_until(lambda: bool(shown()), 60)
        [text] = shown()
        return text

    def answered(self, text: str) -> bool:
        """Whether an interaction's response or follow-up (a command's reply) shows `text`."""
        shown = [r.get("data", {}).get("content", "") for r in self.responses]
        return any(text in str(c) for c in shown + [f.get("content", "") for f in self.followups])

    async def slash(
        self,
        name: str,
        sub: str = "",
        /,
        *,
        manager: bool = False,
        files: dict[str, tuple[str, str, bytes]] | None = None,
        where: str = "guild",
        channel_id: int | None = None,
        **options: str,
    ) -> str:
        """Bob runs `/name sub option:value …` (or `/name option:value …`) in #general
        (with Manage Server when `manager`); `files`: attachment options, by option name,
        as (name, type, bytes) this fake's CDN serves; `where`: "group_dm" or
        "other_server" runs it where the bot is not, as Bob's own installed app. The
        interaction's id (`reply_to`)."""
        # The bot registers its commands while it connects: wait for them, if need be.
        await self.wait_until(lambda: name in self.command_ids, 30)
        leaf: list[dict[str, Any]] = [
            {"type": 3, "name": k, "value": v} for k, v in options.items()
        ]
        attached = {k: self._attachment(self.channel_id, *f) for k, f in (files or {}).items()}
        leaf += [{"type": 11, "name": k, "value": a["id"]} for k, a in attached.items()]
        data: dict[str, Any] = {
            "id": str(self.command_ids[name]),
            "name": name,
            "type": 1,
            "options": [{"type": 1, "name": sub, "options": leaf}] if sub else leaf,
        }
        if attached:
            data["resolved"] = {"attachments": {a["id"]: a for a in attached.values()}}
        made = self._interaction(2, data, manager=manager, where=where, channel_id=channel_id)
        await self._dispatch("INTERACTION_CREATE", made)
        return str(made["id"])

    async def autocomplete(
        self,
        name: str,
        sub: str = "",
        /,
        *,
        manager: bool = False,
        filled: dict[str, str] | None = None,
        **typed: str,
    ) -> list[dict[str, Any]]:
        """Bob types into `/name sub`'s one autocomplete option `typed` names (`option=text`)
        in #general, as Discord sends each keystroke (type 4), with the options `filled`
        in before it; the choices the bot offered in its response, once it came ([] when
        it failed)."""
        await self.wait_until(lambda: name in self.command_ids, 30)
        [(option, text)] = typed.items()
        leaf = [{"type": 3, "name": k, "value": v} for k, v in (filled or {}).items()]
        leaf.append({"type": 3, "name": option, "value": text, "focused": True})
        data: dict[str, Any] = {
            "id": str(self.command_ids[name]),
            "name": name,
            "type": 1,
            "options": [{"type": 1, "name": sub, "options": leaf}] if sub else leaf,
        }
        made = self._interaction(4, data, manager=manager)
        await self._dispatch("INTERACTION_CREATE", made)
        path = f"/interactions/{made['id']}/"
        await self.wait_until(lambda: bool(self.bot_calls("POST", path)), 30)
        return self.choices.get(made["id"], [])

    async def submit_modal(
        self, values: dict[str, str], *, manager: bool = False, where: str = "guild"
    ) -> None:
        """Bob fills in the last modal the bot showed and submits it (with Manage Server
        when `manager`: a submission carries its member's permissions, as a command does;
        `where` "dm": in his DM with the bot)."""
        modal = next(r["data"] for r in reversed(self.responses) if r.get("type") == 9)
        rows = []
        for row in modal["components"]:
            inner = row.get("components") or [row.get("component")]
            filled = [
                {
                    "type": c["type"],
                    "custom_id": c["custom_id"],
                    "value": values.get(c["custom_id"], ""),
                }
                for c in inner
            ]
            if row.get("type") == 18:  # a label wraps one component
                rows.append({"type": 18, "component": filled[0]})
            else:
                rows.append({"type": 1, "components": filled})
        data = {"custom_id": modal["custom_id"], "components": rows}
        made = self._interaction(5, data, manager=manager, where=where)
        await self._dispatch("INTERACTION_CREATE", made)

    async def click(self, message_id: int, custom_id: str, *, manager: bool = False) -> None:
        """Bob presses the button `custom_id` on the bot's message `message_id` (with
        Manage Server when `manager`), where that message is (a thread, his DM)."""
        data = {"custom_id": custom_id, "component_type": 2}
        cid = int(self.messages[message_id]["channel_id"])
        where = "dm" if cid == self.dm_id else "guild"
        interaction = self._interaction(3, data, manager=manager, where=where, channel_id=cid)
        self._pressed[interaction["id"]] = message_id
        interaction["message"] = self.messages[message_id]
        await self._dispatch("INTERACTION_CREATE", interaction)

    async def bot_env(self, data_dir: Path, model_url: str, **settings: str) -> dict[str, str]:
        """`chatbot run`'s environment against this fake and a loopback model server."""
        from tests.bot_process import bot_env, keygen

        return bot_env(
            DISCORD_TOKEN=self.token,
            DISCORD_API_URL=self.api_url,
            DISCORD_GATEWAY_URL=self.gateway_url,
            DATA_DIR=str(data_dir),
            BOT_SECRET_KEYS=await keygen(),
            ALLOW_PRIVATE_ENDPOINTS="true",
            DEFAULT_SOURCE="custom",
            DEFAULT_PROXY_URL=model_url,
            DEFAULT_MODEL="m-small",
            **settings,
        )

    def bot_calls(self, method: str, suffix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(suffix)]
