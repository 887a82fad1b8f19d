"""The homeserver calls the bot makes, over nio, with retries and plain results."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections import OrderedDict
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import nio
from nio.crypto import decrypt_attachment

from bot.core import typing_landed
from bot.frontends.matrix.access import RoomAuthority, authority_from_state
from bot.frontends.matrix.events import SENT_BY_THIS_BOT, MediaFile, media_of, relates_to
from bot.frontends.matrix.sink import (
    RatePace,
    SendFailed,
    TransientSendError,
    with_retries,
)
from bot.types.files import FetchFailed
from bot.types.recent import RecentIds

log = logging.getLogger("bot.frontends.matrix")

# Matrix error codes that no retry will fix.
_PERMANENT = frozenset(
    {
        "M_FORBIDDEN",
        "M_UNKNOWN_TOKEN",
        "M_MISSING_TOKEN",
        "M_BAD_JSON",
        "M_NOT_JSON",
        "M_TOO_LARGE",
        "M_NOT_FOUND",
        "M_INVALID_PARAM",
    }
)
_REMEMBERED = 5000  # own event ids kept to recognise replies to the bot
# nio downloads without a timeout; a stuck homeserver must not hold a turn forever.
DOWNLOAD_TIMEOUT = 120.0
_MAX_ERROR_BODY = 16 * 1024
_MEDIA_DOWNLOAD = "/_matrix/client/v1/media/download"


class DownloadFailed(FetchFailed):
    """A file could not be fetched from the homeserver, or failed its integrity check."""


async def _errcode(response: aiohttp.ClientResponse) -> str:
    """A media repository's refusal as its Matrix error code, else its HTTP status."""
    try:
        found = json.loads(await response.content.read(_MAX_ERROR_BODY))
    except (aiohttp.ClientError, OSError, ValueError):
        found = None
    code = found.get("errcode") if isinstance(found, dict) else None
    return code if isinstance(code, str) and code.isprintable() else f"HTTP {response.status}"


class MatrixApi:
    """Sends, edits, redacts; knows which events are the bot's and who created a room."""

    def __init__(
        self,
        client: nio.AsyncClient,
        trust: Literal["unverified", "verified"],
        pace: RatePace,
    ) -> None:
        self.client = client
        self.trust = trust
        self.pace = pace
        # The bot's own events, by room: an event id named in another room's reply or
        # thread is no message of the bot there (its answer would go nowhere).
        self._own: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Events found to be someone else's: a sender never changes, so a thread's root
        # asked about at every message in that thread is asked of the homeserver once.
        self._others = RecentIds(_REMEMBERED)
        # The bot's events someone removed from their room (`removed`): never edited after.
        self._removed = RecentIds(_REMEMBERED)
        self._authority: dict[str, RoomAuthority] = {}
        # By room: whether "typing…" should show, and the call making it so (one at a time:
        # calls stuck behind a homeserver's hour-long 429 did not pile up, one per answer).
        self._typing_wanted: dict[str, bool] = {}
        self._typing_calls: dict[str, asyncio.Task[None]] = {}

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    def remember(self, room_id: str, event_id: str) -> None:
        self._own[(room_id, event_id)] = None
        while len(self._own) > _REMEMBERED:
            self._own.popitem(last=False)

    def removed(self, room_id: str, event_id: str) -> None:
        """`event_id` was removed from `room_id` (a redaction the homeserver applies)."""
        self._removed.add(f"{room_id} {event_id}")

    async def send(self, room_id: str, content: dict[str, Any], *, in_clear: bool = False) -> str:
        """Post one m.room.message; its event id. SendFailed when it cannot be sent.

        Without E2EE nio would send into an encrypted room in the clear: refused, unless
        `in_clear`, which only a fixed text holding nothing of anyone's may ask for (the
        notice that the bot does not read encrypted rooms: messages.NO_E2EE).

        An edit of an event removed from the room is not sent (the edited event's id is
        returned): an answer stopped by its removal would otherwise put its text back
        in the room's history, in an m.replace of the removed event.

        Every try goes under one transaction id: one whose event the homeserver kept but
        whose answer was lost (a 5xx, a cut connection) is answered with that event on the
        next try, not posted again (a message shown twice)."""
        edited = relates_to(content)
        if edited.get("rel_type") == "m.replace":
            event_id = str(edited.get("event_id"))
            if f"{room_id} {event_id}" in self._removed:
                log.debug("not editing an event removed from %s", room_id)
                return event_id
        content = {**content, SENT_BY_THIS_BOT: True}
        txn = str(uuid.uuid4())
        event_id = await with_retries(
            lambda: self._send_once(room_id, content, in_clear, txn), "send"
        )
        self.remember(room_id, event_id)
        return event_id

    async def _send_once(
        self, room_id: str, content: dict[str, Any], in_clear: bool, txn: str
    ) -> str:
        room = self.client.rooms.get(room_id)
        if room is not None and room.encrypted and self.client.olm is None and not in_clear:
            raise SendFailed("the room is encrypted and MATRIX_E2EE is off")
        while True:
            try:
                response = await self.client.room_send(
                    room_id,
                    "m.room.message",
                    content,
                    tx_id=txn,
                    ignore_unverified_devices=self.trust == "unverified",
                )
            except nio.OlmUnverifiedDeviceError as err:
                # trust=verified: an unverified device gets no room key (blacklisted), so
                # it cannot read the bot; everyone verified still can.
                self.client.blacklist_device(err.device)
                log.info("not sharing keys with unverified device %s", err.device.id)
                continue
            except (nio.LocalProtocolError, nio.SendRetryError) as err:
                raise TransientSendError(type(err).__name__) from None
            if isinstance(response, nio.RoomSendResponse):
                return str(response.event_id)
            raise _classify(response)

    async def upload(self, room_id: str, data: bytes, media_type: str, name: str) -> dict[str, Any]:
        """Upload a file for a message in this room: `{"url": mxc}`, or in an encrypted
        room `{"file": EncryptedFile}`. SendFailed when the server refuses it."""
        room = self.client.rooms.get(room_id)
        encrypt = room is not None and room.encrypted
        if encrypt and self.client.olm is None:
            raise SendFailed("the room is encrypted and MATRIX_E2EE is off")
        response, keys = await self.client.upload(
            io.BytesIO(data),
            content_type=media_type,
            filename=name,
            encrypt=encrypt,
            filesize=len(data),
        )
        if not isinstance(response, nio.UploadResponse):
            raise SendFailed(f"upload refused: {getattr(response, 'status_code', '?')}")
        if encrypt and keys is not None:
            return {"file": {**keys, "url": response.content_uri}}
        return {"url": response.content_uri}

    async def redact(self, room_id: str, event_id: str, reason: str) -> bool:
        """Redact an event; False when the bot may not (it lacks the redact power). Its
        tries share one transaction id, as a send's do."""
        txn = str(uuid.uuid4())

        async def once() -> str:
            response = await self.client.room_redact(room_id, event_id, reason=reason, tx_id=txn)
            if isinstance(response, nio.RoomRedactResponse):
                return str(response.event_id)
            raise _classify(response)

        try:
            await with_retries(once, "redact", attempts=4)
        except SendFailed as err:
            log.warning("could not redact an event in %s: %s", room_id, err)
            return False
        return True

    async def typing(self, room_id: str, on: bool) -> None:
        """ "Typing…" shown or taken off in `room_id`: a courtesy, which holds its caller
        TYPING_PATIENCE s at most (nio sleeps out a 429 asking an hour, and waits for a
        homeserver that never answers 2 minutes); a call still under way then lands by
        itself, and the newest state asked for meanwhile goes after it."""
        self._typing_wanted[room_id] = on
        call = self._typing_calls.get(room_id)
        if call is None:
            call = asyncio.create_task(self._set_typing(room_id), name="matrix-typing")
            self._typing_calls[room_id] = call
        await typing_landed(call)

    async def _set_typing(self, room_id: str) -> None:
        sent: bool | None = None
        try:
            while (on := self._typing_wanted[room_id]) != sent:
                sent = on
                try:
                    await self.client.room_typing(room_id, typing_state=on, timeout=30_000)
                except (OSError, TimeoutError, aiohttp.ClientError) as err:
                    log.debug("typing notice failed: %s", type(err).__name__)
        finally:
            del self._typing_calls[room_id], self._typing_wanted[room_id]

    async def is_own_event(self, room_id: str, event_id: str) -> bool:
        """Whether `event_id` was sent by the bot in `room_id` (remembered, else asked)."""
        if (room_id, event_id) in self._own:
            return True
        if f"{room_id} {event_id}" in self._others:
            return False
        event = await self._event(room_id, event_id)
        if event is None:
            return False
        if event.sender == self.user_id:
            self.remember(room_id, event_id)
            return True
        self._others.add(f"{room_id} {event_id}")
        return False

    async def authority(self, room_id: str) -> RoomAuthority | None:
        """The room's version and creators (cached: a room's create event never changes)."""
        if room_id in self._authority:
            return self._authority[room_id]
        found = authority_from_state(await self._full_state(room_id))
        if found is not None:
            self._authority[room_id] = found
        return found

    async def state(self, room_id: str, event_type: str) -> tuple[str, dict[str, Any]] | None:
        """A room's state event of this type (no state key): its sender and content; None
        when it has none or it cannot be read."""
        for event in await self._full_state(room_id):
            if event.get("type") == event_type and event.get("state_key", "") == "":
                content = event.get("content")
                sender = event.get("sender")
                if isinstance(content, dict) and isinstance(sender, str):
                    return sender, content
        return None

    async def _event(self, room_id: str, event_id: str) -> nio.Event | None:
        """One event of the room (None when it cannot be read)."""
        try:
            response = await self.client.room_get_event(room_id, event_id)
        except (OSError, TimeoutError):
            return None
        if not isinstance(response, nio.RoomGetEventResponse):
            return None
        return response.event

    async def _full_state(self, room_id: str) -> list[dict[str, Any]]:
        """Every state event of the room ([] when it cannot be read)."""
        try:
            response = await self.client.room_get_state(room_id)
        except (OSError, TimeoutError):
            return []
        if not isinstance(response, nio.RoomGetStateResponse):
            return []
        return list(response.events)

    async def download(self, media: MediaFile, limit: int) -> bytes:
        """The file's bytes from the homeserver's media repository, decrypted if need be;
        read no further than `limit` (or the size the event declared) and one byte more,
        so the caller sees a file that is larger without it being held whole.

        Authenticated with the bot's own login; DownloadFailed when it cannot be had.
        """
        # The size people were told (and the core checked) is the size taken: the event's
        # sender declares it, so a larger file is cut off, not read whole first.
        most = min(limit, media.size) if media.size else limit
        async with asyncio.timeout(DOWNLOAD_TIMEOUT):
            body = await self._read_media(media.mxc, most + 1)
        if not media.encrypted or len(body) > most:
            return body  # larger than declared or allowed: the caller refuses it by its length
        try:
            plain: bytes = await asyncio.to_thread(
                decrypt_attachment, body, media.key, media.sha256, media.iv
            )
        except nio.EncryptionError as err:
            raise DownloadFailed(f"the file failed its check ({err})") from None
        return plain

    async def _read_media(self, mxc: str, most: int) -> bytes:
        """At most `most` bytes of a file in the media repository (nio's own download
        holds the whole body before anything can look at its size)."""
        server, _, media_id = mxc.removeprefix("mxc://").partition("/")
        if not server or not media_id or "/" in media_id:
            raise DownloadFailed("the event names no file the homeserver keeps")
        # Authenticated media (Matrix 1.11), the login in the header, never in the query.
        path = f"{_MEDIA_DOWNLOAD}/{quote(server, safe='')}/{quote(media_id, safe='')}"
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        try:
            response = await self.client.send("GET", path, headers=headers, timeout=0)
        except (aiohttp.ClientError, OSError) as err:
            raise DownloadFailed(
                f"the homeserver could not be reached ({type(err).__name__})"
            ) from None
        async with response:
            try:
                if response.status != 200:
                    raise DownloadFailed(f"the homeserver answered {await _errcode(response)}")
                parts: list[bytes] = []
                size = 0
                async for part in response.content.iter_chunked(64 * 1024):
                    parts.append(part)
                    size += len(part)
                    if size >= most:
                        break
            except (aiohttp.ClientError, OSError) as err:
                raise DownloadFailed(f"the download broke off ({type(err).__name__})") from None
        return b"".join(parts)[:most]

    async def replied_file(self, room_id: str, event_id: str) -> MediaFile | None:
        """The file of the event `event_id` (a reply's target), decrypted when need be."""
        event = await self._event(room_id, event_id)
        if event is None:
            return None
        if isinstance(event, nio.MegolmEvent):
            try:
                event = self.client.decrypt_event(event)
            except (nio.EncryptionError, nio.LocalProtocolError, ValueError):
                return None
        source = getattr(event, "source", {})
        content = source.get("content")
        kind = str(source.get("type", ""))
        return media_of(content, kind) if isinstance(content, dict) else None

    async def set_room_profile(self, room_id: str, name: str | None, avatar: bytes | None) -> None:
        """The bot's name and avatar in this room only (its m.room.member state); None
        for both restores its global profile. SendFailed when the server refuses."""
        if name is None:
            profile = await self.client.get_profile(self.user_id)
            if not isinstance(profile, nio.ProfileGetResponse):
                raise _classify(profile)
            name, avatar_url = profile.displayname, profile.avatar_url
        else:
            avatar_url = None
            if avatar is not None:
                # An avatar is public by nature: uploaded plain even for an encrypted room.
                response, _ = await self.client.upload(
                    io.BytesIO(avatar),
                    content_type="image/png",
                    filename="avatar.png",
                    filesize=len(avatar),
                )
                if not isinstance(response, nio.UploadResponse):
                    raise SendFailed(f"upload refused: {getattr(response, 'status_code', '?')}")
                avatar_url = response.content_uri
        content: dict[str, Any] = {"membership": "join"}
        if name:
            content["displayname"] = name
        if avatar_url:
            content["avatar_url"] = avatar_url
        put = await self.client.room_put_state(
            room_id, "m.room.member", content, state_key=self.user_id
        )
        if not isinstance(put, nio.RoomPutStateResponse):
            raise _classify(put)

    async def resolve_room(self, target: str) -> str | None:
        """A room id for `!id:server` or `#alias:server`; None when unknown."""
        if target.startswith("!"):
            return target
        try:
            response = await self.client.room_resolve_alias(target)
        except (OSError, TimeoutError):
            return None
        if isinstance(response, nio.RoomResolveAliasResponse):
            return str(response.room_id)
        return None


def _classify(response: Any) -> Exception:
    """A nio error response as SendFailed (give up) or TransientSendError (retry): a
    code no retry fixes, or an HTTP 4xx other than 429 (Synapse answers many refusals
    as 400 `M_UNKNOWN`, which asking again only repeats)."""
    code = str(getattr(response, "status_code", "") or "")
    message = f"{code or 'error'}: {getattr(response, 'message', '')}"
    http = getattr(getattr(response, "transport_response", None), "status", None)
    refused = isinstance(http, int) and 400 <= http < 500 and http != 429
    if code in _PERMANENT or (refused and code != "M_LIMIT_EXCEEDED"):
        return SendFailed(message)
    return TransientSendError(message)
