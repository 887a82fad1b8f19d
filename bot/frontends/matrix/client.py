"""The running bot: log in, sync forever, join on invite, hand messages to the handler."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import nio

from bot.core import Core, bounding_call
from bot.frontends import FrontendError
from bot.frontends.matrix import decide, events
from bot.frontends.matrix.access import inviter_allowed, power_levels_of
from bot.frontends.matrix.api import MatrixApi
from bot.frontends.matrix.decide import Action, EventFacts, JoinAction
from bot.frontends.matrix.messages import ArrivalOrder, Message, MessageHandler
from bot.frontends.matrix.session import log_in, unreachable
from bot.frontends.matrix.sink import RatePace
from bot.types import failure
from bot.types.recent import RecentIds
from bot.types.secrets import holds_key

if TYPE_CHECKING:
    from bot.frontends.matrix import MatrixOptions

log = logging.getLogger("bot.frontends.matrix")

SYNC_TIMEOUT_MS = 30_000
# What the bot reads of a sync: its rooms' timelines and state, invites, and what
# end-to-end encryption needs (to-device messages, device lists, key counts). Not the
# presence of everyone it shares a room with, their typing notices and read receipts,
# nor account data: none is used, and in a busy room they are most of every sync,
# each parsed by nio on the bot's one event loop.
SYNC_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {"ephemeral": {"types": []}, "account_data": {"types": []}},
}
MAX_SYNC_BACKOFF = 60.0


def client_config(e2ee: bool) -> nio.AsyncClientConfig:
    return nio.AsyncClientConfig(
        encryption_enabled=e2ee,
        store_sync_tokens=e2ee,  # the token lives in the crypto store
        # nio waits out each 429 for retry_after_ms by itself (max_limit_exceeded=None);
        # connection errors surface after a few tries so start-up can fail clearly and
        # the sync loop can back off.
        max_timeouts=2,
        backoff_factor=0.5,
        request_timeout=60,
    )


def _is_message(event: Any) -> bool:
    """An m.room.message or a sticker: one nio read, or a file message (or sticker) nio's
    own schema refused, which `events.media_of` reads itself. nio wants `url` in a plain
    room and `file` in an encrypted one, so an image forwarded from a room of the other
    kind (the content kept as it was, as Element forwards) came as a BadEvent and went
    without a word, as did an encrypted file without its key (now: "I could not
    download …")."""
    if isinstance(event, (nio.RoomMessage, nio.StickerEvent)):
        return True
    if not isinstance(event, nio.BadEvent):
        return False
    if event.type == events.STICKER:
        return True
    content = event.source.get("content")
    return (
        event.type == "m.room.message"
        and isinstance(content, dict)
        and events.msgtype_of(content) in events.MEDIA
    )


class MatrixBot:
    def __init__(
        self,
        client: nio.AsyncClient,
        handler: MessageHandler,
        api: MatrixApi,
        allowed_inviters: tuple[str, ...],
    ) -> None:
        self._client = client
        self._handler = handler
        self._api = api
        self._allowed = allowed_inviters
        self._started_ms = int(time.time() * 1000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._arrivals = ArrivalOrder()
        self._recent = RecentIds()
        self._joining: set[str] = set()
        self._leaving: set[str] = set()
        self._undecrypted: list[tuple[float, str, nio.MegolmEvent]] = []
        self._malformed = RecentIds()  # encrypted messages whose plaintext cannot be read
        self._unreadable_rooms = RecentIds()  # encrypted rooms, MATRIX_E2EE off: logged once

    # --- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        self._guard_decryption()
        first = True
        backoff = 1.0
        while True:
            try:
                await self._sync_once(first)
            except (TimeoutError, aiohttp.ClientError, OSError) as err:
                if first:
                    raise unreachable(self._client.homeserver, err) from None
                log.warning("sync failed (%s); retrying in %.0fs", type(err).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_SYNC_BACKOFF)
                continue
            except _SyncRefused as err:
                if err.fatal:
                    raise FrontendError(
                        f"the homeserver no longer accepts the bot's login ({err}). Check "
                        "MATRIX_PASSWORD / MATRIX_ACCESS_TOKEN and start the bot again."
                    ) from None
                log.warning("sync failed (%s); retrying in %.0fs", err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_SYNC_BACKOFF)
                continue
            if first:  # the rooms are known now
                self._spawn("unanswered", self._handler.tell_unanswered())
                for room in list(self._client.rooms.values()):
                    self._spawn("room keys", self._handler.settle_keys(room, starting=True))
            first = False
            backoff = 1.0

    async def _sync_once(self, first: bool) -> None:
        client = self._client
        # After a restart the rooms are not in memory: ask for their full state once.
        full_state = first and bool(client.loaded_sync_token)
        response = await client.sync(
            timeout=0 if first else SYNC_TIMEOUT_MS,
            sync_filter=SYNC_FILTER,
            full_state=full_state or None,
        )
        if isinstance(response, nio.SyncError):
            fatal = response.status_code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN")
            raise _SyncRefused(f"{response.status_code}: {response.message}", fatal)
        await self._crypto_chores()
        await self._on_sync(response, first)

    def _guard_decryption(self) -> None:
        """What a member's client encrypted is read by the bot alone, and nio expects
        only EncryptionError of it: anything else (JSON nested thousands deep raises
        RecursionError) came out of the sync and stopped the front-end. Such a message
        cannot be read: logged once and passed over (decide: malformed); a to-device
        message so, logged and passed over as nio passes over one it cannot decrypt.

        nio makes the machine once, when the client logs in (load_store does nothing
        once its store is loaded), before `run`; no later login is made here."""
        olm = self._client.olm
        if olm is None:
            return
        decrypt = olm.decrypt_megolm_event
        malformed = self._malformed

        def guarded(event: nio.MegolmEvent, room_id: str | None = None) -> Any:
            try:
                return decrypt(event, room_id)
            except nio.EncryptionError:
                raise
            except Exception as err:
                if event.event_id not in malformed:
                    malformed.add(event.event_id)
                    where = room_id or event.room_id
                    log.warning("cannot read an encrypted message in %s: %s", where, failure(err))
                raise nio.EncryptionError("its plaintext cannot be read") from None

        olm.decrypt_megolm_event = guarded  # this client's own machine only
        handle = olm.handle_to_device_event

        def guarded_to_device(event: Any) -> Any:
            # A to-device message is encrypted for the bot's device alone (Olm): anyone
            # may claim its one-time key and send one, in no room. nio drops one it
            # cannot read (None); one that raised otherwise had stopped the sync.
            try:
                return handle(event)
            except Exception as err:
                sender = getattr(event, "sender", "?")
                log.warning("cannot read a to-device message from %s: %s", sender, failure(err))
                return None

        olm.handle_to_device_event = guarded_to_device

    async def _crypto_chores(self) -> None:
        """What nio's sync_forever does between syncs: keys and to-device messages."""
        client = self._client
        if client.olm is None:
            return
        await client.send_to_device_messages()
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    async def _on_sync(self, response: nio.SyncResponse, first: bool) -> None:
        if response.rooms.invite:
            kinds = await _invited_types(response)
            for room_id in response.rooms.invite:
                self._spawn("invite", self._on_invite(room_id, kinds.get(room_id)))
        self._retry_undecrypted()
        # The first sync after a stop brings what came while the bot was not running: a
        # key sent then is taken out of its room (decide.STALE_SECRET); the rest was sent
        # before the bot started and is passed over. Without a sync token of its own, it
        # brings each room's last messages, which are not the bot's to act on.
        backlog = bool(self._client.loaded_sync_token)
        for room_id, info in response.rooms.join.items():
            room = self._client.rooms.get(room_id)
            levels = newest_power_levels([*info.state, *info.timeline.events])
            if room is not None and levels is not None:
                room.power_levels = levels
            if room is not None and decide.is_space(room.room_type):
                self._leave_space(room_id)
                continue
            timeline = info.timeline.events if backlog or not first else []
            for event in self._since_arrival(room_id, timeline):
                try:
                    self._on_event(room_id, event)
                except Exception as err:  # one odd event must not stop the sync loop
                    log.error("skipped an event in %s: %s", room_id, failure(err))
            self._leave_if_alone(room_id)
            if room is not None and not first and _who_may_read(info):
                self._spawn("room keys", self._handler.settle_keys(room))

    def _since_arrival(self, room_id: str, timeline: list[Any]) -> list[Any]:
        """The timeline from where the bot acts on it (decide.arrival); redactions stay
        (a message it stored may have gone meanwhile)."""
        me = self._api.user_id
        changes = [
            decide.Membership(e.state_key == me, str(e.membership), e.prev_membership)
            if isinstance(e, nio.RoomMemberEvent)
            else None
            for e in timeline
        ]
        room = self._client.rooms.get(room_id)
        start = decide.arrival(changes, room.member_count if room is not None else None)
        if not start:
            return timeline
        return [
            e for i, e in enumerate(timeline) if i >= start or isinstance(e, nio.RedactionEvent)
        ]

    def _retry_undecrypted(self) -> None:
        """Messages that arrived before their room key: decrypt them now if it came."""
        now = time.monotonic()
        waiting, self._undecrypted = self._undecrypted, []
        for since, room_id, event in waiting:
            if self._read_if_keyed(room_id, event):
                continue
            if decide.keep_waiting_for_key(now - since):
                self._undecrypted.append((since, room_id, event))
            else:
                log.warning("gave up on a message in %s: its room key never came", room_id)

    def _read_if_keyed(self, room_id: str, event: nio.MegolmEvent) -> bool:
        """Decrypt a waiting message and handle it; True when it is waited for no more
        (read, or found malformed: said when its key came), False while its key has not
        come."""
        try:
            decrypted = self._client.decrypt_event(event)
        except (nio.EncryptionError, nio.LocalProtocolError):
            return event.event_id in self._malformed
        try:
            self._on_event(room_id, decrypted)
        except Exception as err:  # as in the sync: one odd event must not stop it
            log.error("skipped an event in %s: %s", room_id, failure(err))
        return True

    # --- events ----------------------------------------------------------------------
    def _facts(
        self,
        room_id: str,
        event: Any,
        content: dict[str, Any],
        media: events.MediaFile | None,
        reaction: bool = False,
        repeated: bool = False,
        redaction: bool = False,
    ) -> EventFacts:
        room = self._client.rooms.get(room_id)
        typed = (events.caption_of(content) if media else events.text_of(content)) or ""
        text = self._handler.command_text(typed, room)
        prefixed = text.lstrip().startswith(self._handler.prefix)
        # `/key set custom <key>` as Discord and the console type it: not chat either.
        elsewhere = None if prefixed else self._handler.typed_elsewhere(typed, room)
        secret = (prefixed and self._handler.may_hold_secret(text)) or bool(
            elsewhere and elsewhere.secret
        )
        # An emote ("/me !settings") is an action, never a command (one that spells a key
        # command is taken out of the room, not run: decide.SECRET_EMOTE).
        command = prefixed and content.get("msgtype") != "m.emote"
        return EventFacts(
            from_bot=getattr(event, "sender", "") == self._api.user_id,
            sent_ms=int(getattr(event, "server_timestamp", 0)),
            started_ms=self._started_ms,
            encrypted=isinstance(event, nio.MegolmEvent),
            malformed=isinstance(event, nio.MegolmEvent) and event.event_id in self._malformed,
            e2ee=self._client.olm is not None,
            is_message=_is_message(event),
            is_edit=events.is_edit(content),
            msgtype=events.msgtype_of(content),
            text=text,
            is_command=command,
            may_hold_secret=secret,
            room_known=room is not None,
            direct=room is not None and events.is_direct_room(room.member_count),
            private=room is not None
            and events.is_private_room(room.member_count, room.join_rule, room.history_visibility),
            media=media is not None,
            repeated=repeated,
            reaction=reaction,
            edit_holds_secret=self._edit_holds_secret(content, room),
            redaction=redaction,
            from_a_bot_like_this=events.from_this_bot(content),
            typed_elsewhere=elsewhere is not None,
        )

    def _edit_holds_secret(self, content: dict[str, Any], room: nio.MatrixRoom | None) -> bool:
        if not events.is_edit(content):
            return False
        edited = self._handler.command_text(events.edited_text(content), room)
        fallback = content.get("body")  # what clients without edits show: "* new text"
        if isinstance(fallback, str) and holds_key(fallback):
            return True
        if holds_key(edited) or (
            edited.startswith(self._handler.prefix) and self._handler.may_hold_secret(edited)
        ):
            return True
        elsewhere = self._handler.typed_elsewhere(events.edited_text(content), room)
        return elsewhere is not None and elsewhere.secret

    def _on_event(self, room_id: str, event: Any) -> None:
        source = getattr(event, "source", None)
        content = source.get("content") if isinstance(source, dict) else None
        content = content if isinstance(content, dict) else {}
        # Only a message names a file to fetch; other events may carry look-alike content.
        kind = source.get("type", "") if isinstance(source, dict) else ""
        media = events.media_of(content, str(kind)) if _is_message(event) else None
        if kind == "m.room.tombstone":  # the bot may be in the new room already
            new = content.get("replacement_room")
            if isinstance(new, str) and new in self._client.rooms:
                self._spawn("room upgrade", self._continue_upgraded(new))
            return
        reaction = events.annotation(str(kind), content)
        redacts = events.redacted(source) if isinstance(source, dict) else None
        event_id = str(getattr(event, "event_id", "") or "")
        facts = self._facts(
            room_id,
            event,
            content,
            media,
            reaction is not None,
            event_id in self._recent,
            redacts is not None,
        )
        decision = decide.decide(facts)
        if decision.action is not Action.AWAIT_KEY:  # decrypted later, it is handled then
            self._recent.add(event_id)
        if decision.action is Action.IGNORE:
            return
        if decision.action is Action.REACTION and reaction is not None:
            # No place in the line: the core orders turn controls itself (⏹ must not wait).
            reacts_to, key = reaction
            react = self._handler.react(room_id, str(event.sender), reacts_to, key)
            self._spawn("reaction", react)
            return
        if decision.action is Action.REDACTION and redacts is not None:
            self._spawn("redaction", self._handler.forget(room_id, str(event.sender), redacts))
            return
        if decision.action is Action.UNREADABLE:
            # Once a room: a busy encrypted room would write a line a message.
            if room_id not in self._unreadable_rooms:
                self._unreadable_rooms.add(room_id)
                log.warning("an encrypted message in %s, but MATRIX_E2EE is off", room_id)
            msg = _unread(room_id, event, self._client.rooms.get(room_id))
            self._spawn("unread message", self._handler.encrypted(msg))
            return
        if decision.action is Action.AWAIT_KEY:
            log.info("no room key yet for a message in %s; asking for it", room_id)
            event.room_id = room_id
            self._undecrypted.append((time.monotonic(), room_id, event))
            self._spawn("key request", self._request_key(event))
            self._spawn("unread message", self._unread_later(room_id, event))
            return
        if getattr(event, "decrypted", False):
            self._handler.read_from(room_id, str(event.sender))
        msg = Message(
            room_id,
            event.event_id,
            event.sender,
            content,
            facts.text,
            thread=events.thread_root(content),
            direct=facts.direct,
            private=facts.private,
            media=media,
        )
        # Taken now, in the order the sync delivered the events, before anything waits.
        place = self._arrivals.place(str(msg.ref))
        task = self._spawn("message", self._handler.handle(msg, decision, place))
        # A task cancelled before it ran never reaches its own pass_on.
        task.add_done_callback(lambda _: place.pass_on())

    async def _unread_later(self, room_id: str, event: nio.MegolmEvent) -> None:
        """A message still encrypted UNREAD_NOTICE_AFTER s after it came: its key is not
        coming, and its sender is told so when it may have been for the bot (then it is
        waited for no more: they send it again). Logged, without a word of it."""
        await asyncio.sleep(decide.UNREAD_NOTICE_AFTER)
        waiting = next((w for w in self._undecrypted if w[2] is event), None)
        if waiting is None:  # read in a sync meanwhile, or found malformed
            return
        msg = _unread(room_id, event, self._client.rooms.get(room_id))
        give_up = functools.partial(self._give_up_unread, waiting)
        if not await self._handler.unreadable(msg, give_up):
            return  # read after all, or waited for until UNDECRYPTED_PATIENCE as any other
        log.info(
            "could not read a message in %s: its room key did not come in %.0f s (its sender "
            "was told)",
            room_id,
            decide.UNREAD_NOTICE_AFTER,
        )

    def _give_up_unread(self, waiting: tuple[float, str, nio.MegolmEvent]) -> bool:
        """Where a message whose sender is to be told it could not be read is decided,
        with no wait in it: tried once more (its key may have come in a sync not acted on
        yet, or while the handler looked the room up), and read, or else taken off the
        waiting list, so no later sync reads it: either answered or told, never both.
        True when given up. Only this one is tried: a burst of N, each trying all, made
        N×N attempts at once (each logging nio's warnings, the event loop held)."""
        if waiting not in self._undecrypted:  # read by a sync meanwhile, or given up on
            return False
        _, room_id, event = waiting
        self._undecrypted.remove(waiting)
        if self._read_if_keyed(room_id, event):  # read now (or found malformed)
            return False
        return True

    async def _request_key(self, event: nio.MegolmEvent) -> None:
        with contextlib.suppress(nio.LocalProtocolError):  # already requested
            await self._client.request_room_key(event)

    def _spawn(self, kind: str, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(self._guard(kind, coro), name=kind)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _guard(kind: str, coro: Any) -> None:
        """A failing message must not stop the bot; log the kind of error only."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.error("handling a %s failed: %s", kind, failure(err))

    # --- membership ------------------------------------------------------------------
    async def _on_invite(self, room_id: str, room_type: object = None) -> None:
        if room_id in self._joining:
            return
        room = self._client.invited_rooms.get(room_id)
        inviter = str(getattr(room, "inviter", "") or "")
        self._joining.add(room_id)
        try:
            if not inviter_allowed(inviter, self._allowed):
                log.info("declining an invite to %s from %s (not allowed)", room_id, inviter)
                await self._client.room_leave(room_id)
                return
            if decide.is_space(room_type):
                log.info("declining an invite to %s from %s: a space, not a chat", room_id, inviter)
                await self._client.room_leave(room_id)
                return
            for attempt in itertools.count(1):
                error = _join_error(await self._client.join(room_id))
                step = decide.join_step(error, attempt)
                if step.action is JoinAction.JOINED:
                    self._leaving.discard(room_id)
                    log.info("joined %s (invited by %s)", room_id, inviter)
                    self._spawn("room upgrade", self._continue_upgraded(room_id))
                    return
                if step.action is JoinAction.GIVE_UP:
                    log.warning("could not join %s: %s", room_id, error)
                    return
                log.info("joining %s failed (%s); again in %ss", room_id, error, step.pause)
                await asyncio.sleep(step.pause)
        finally:
            self._joining.discard(room_id)

    async def _continue_upgraded(self, room_id: str) -> None:
        """A room that replaces one the bot is in (an upgrade) takes over its settings."""
        create = await self._api.state(room_id, "m.room.create")
        old = decide.predecessor(room_id, create[1] if create else None)
        if old is None or old not in self._client.rooms:
            return  # not an upgrade, or of a room the bot was not in
        tombstone = await self._api.state(old, "m.room.tombstone")
        if tombstone is not None and decide.replaced_by(tombstone[1], room_id):
            await self._handler.carry_over(old, room_id, upgraded_by=tombstone[0])

    def _leave_space(self, room_id: str) -> None:
        """A space the invite did not show as one (its stripped state lacked the type),
        or one joined before spaces were declined: left, without a word."""
        if room_id in self._leaving:
            return
        log.info("leaving %s: a space, not a chat", room_id)
        self._leaving.add(room_id)
        self._spawn("leave", self._client.room_leave(room_id))

    def _leave_if_alone(self, room_id: str) -> None:
        room = self._client.rooms.get(room_id)
        if room is None or not decide.should_leave(
            joined=room.joined_count,
            invited=room.invited_count,
            members_known=bool(room.users),
            leaving=room_id in self._leaving,
        ):
            return
        log.info("leaving %s: nobody else is there", room_id)
        self._leaving.add(room_id)
        self._spawn("leave", self._client.room_leave(room_id))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _unread(room_id: str, event: nio.MegolmEvent, room: nio.MatrixRoom | None) -> Message:
    """An encrypted message the bot cannot read, as the handler is told of it: clients
    send a message's relation in the clear (it may reply to the bot, or be in its
    thread). Nothing else of it (never its ciphertext) goes any further."""
    content = event.source.get("content") if isinstance(event.source, dict) else None
    relation = content.get("m.relates_to") if isinstance(content, dict) else None
    seen = {"m.relates_to": relation} if isinstance(relation, dict) else {}
    direct = room is not None and events.is_direct_room(room.member_count)
    return Message(
        room_id,
        event.event_id,
        event.sender,
        seen,
        "",
        thread=events.thread_root(seen),
        direct=direct,
    )


_READERS = frozenset({"m.room.member", "m.room.join_rules", "m.room.history_visibility"})


def _who_may_read(info: Any) -> bool:
    """A joined room's sync changed who is in it, may join it or may read it."""
    changed = [*getattr(info, "state", []), *info.timeline.events]
    return any(getattr(e, "source", {}).get("type") in _READERS for e in changed)


def newest_power_levels(events: list[Any]) -> nio.PowerLevels | None:
    """The room's power levels as its newest m.room.power_levels event states them, whole.

    nio merges a new event's `users` and `events` into the old ones, so a user taken out
    of `users` (how Element sets someone back to the default level) kept their old level,
    and with it the room's admin rights, until the bot restarted. Read from the event as
    sent (power_levels_of): nio passes over one with a level written as a string.
    """
    found = [
        source
        for e in events
        if isinstance(source := getattr(e, "source", None), dict)
        and source.get("type") == "m.room.power_levels"
        and source.get("state_key") == ""
        and isinstance(source.get("content"), dict)
    ]
    if not found:
        return None
    return power_levels_of(found[-1]["content"])


async def _invited_types(response: nio.SyncResponse) -> dict[str, object]:
    """m.room.create's `type` per invited room, as the sync's stripped state gives it (nio
    keeps only an invite's member, name and alias events): read again from the sync's own
    body, which aiohttp keeps once read."""
    raw = response.transport_response
    try:
        body = await raw.json() if raw is not None else None
    except (aiohttp.ClientError, OSError, ValueError):
        body = None
    rooms = body.get("rooms") if isinstance(body, dict) else None
    invited = rooms.get("invite") if isinstance(rooms, dict) else None
    if not isinstance(invited, dict):
        return {}
    kinds: dict[str, object] = {}
    for room_id, info in invited.items():
        state = info.get("invite_state") if isinstance(info, dict) else None
        stripped = state.get("events") if isinstance(state, dict) else None
        kinds[str(room_id)] = decide.created_type(stripped)
    return kinds


def _join_error(response: nio.JoinResponse | nio.JoinError) -> str | None:
    """A failed join's Matrix error code ("" when it has none); None when it worked."""
    if isinstance(response, nio.JoinError):
        return str(response.status_code or "")
    return None


class _SyncRefused(Exception):
    def __init__(self, message: str, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


def quiet_nio() -> None:
    """Keep nio's DEBUG output off: it dumps whole responses (messages, tokens) to the log.

    Whatever LOG_LEVEL says, a typed key or the login token must never reach a log line;
    the bot's own loggers still follow LOG_LEVEL.
    """
    nio_log = logging.getLogger("nio")
    if nio_log.getEffectiveLevel() < logging.INFO:
        nio_log.setLevel(logging.INFO)
    # Their warnings about a malformed event or response quote it whole ("On instance
    # …": a message's text, a password typed in it): only errors pass.
    for quoting in ("nio.events.misc", "nio.responses"):
        logging.getLogger(quoting).setLevel(logging.ERROR)


async def start(core: Core, options: MatrixOptions) -> None:
    """Build the client from MatrixOptions, log in, and sync until cancelled."""
    quiet_nio()
    store_dir = options.store_dir
    crypto_dir = store_dir / "crypto"
    try:
        await asyncio.to_thread(crypto_dir.mkdir, parents=True, exist_ok=True)
    except OSError as err:
        raise FrontendError(
            f"cannot create the Matrix store directory {crypto_dir} ({err.strerror}); "
            "make DATA_DIR writable for the bot."
        ) from None
    client = nio.AsyncClient(
        options.homeserver.rstrip("/"),
        options.user_id,
        store_path=str(crypto_dir) if options.e2ee else "",
        config=client_config(options.e2ee),
    )
    pace = RatePace()
    api = MatrixApi(client, options.trust_devices, pace)

    async def on_limited(response: Any) -> None:
        # A bare 429 too (no Matrix error: a reverse proxy's rate limit), which nio sleeps
        # out as it does one: not counted, an answer's final edit was given up meanwhile
        # and the answer posted again under it.
        http = getattr(getattr(response, "transport_response", None), "status", None)
        if getattr(response, "status_code", "") == "M_LIMIT_EXCEEDED" or http == 429:
            pace.note_limited()
            wait = (getattr(response, "retry_after_ms", 0) or 0) / 1000
            # nio sleeps it out in the caller's task: an ended answer's edit waits for it.
            deadline = bounding_call()
            if deadline is not None:
                deadline.asked_to_wait(wait or 5.0)  # nio's own wait when none is said
            log.info("the homeserver rate-limits the bot; waiting %.1fs, then slower edits", wait)

    client.add_response_callback(on_limited, nio.ErrorResponse)
    handler = MessageHandler(core, api, options.admin_power_level)
    bot = MatrixBot(client, handler, api, options.allowed_inviters)
    try:
        device_id = await log_in(
            client,
            user_id=options.user_id,
            password=options.password.reveal(),
            access_token=options.access_token.reveal(),
            device_name=options.device_name,
            store_dir=store_dir,
        )
        log.info("logged in to %s as %s (device %s)", client.homeserver, client.user_id, device_id)
        handler.display_name = await _display_name(client)
        await bot.run()
    finally:
        await bot.close()
        await client.close()


async def _display_name(client: nio.AsyncClient) -> str:
    try:
        response = await client.get_displayname()
    except (TimeoutError, aiohttp.ClientError, OSError):
        return ""
    name = getattr(response, "displayname", None)
    return str(name) if name else ""
