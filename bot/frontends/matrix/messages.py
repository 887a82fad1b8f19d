"""One room message → a command for the core, or a chat turn streamed back as edits."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import nio

from bot.commands import Invocation
from bot.commands.parse import CommandError, TypedCommand, asks_secret, plain_prefix
from bot.commands.spec import Kind
from bot.core import (
    Core,
    Edited,
    HeldReply,
    PacedReply,
    StoreError,
    TurnResult,
    split_text,
    unstored,
)
from bot.frontends.matrix import events
from bot.frontends.matrix.access import is_room_admin
from bot.frontends.matrix.api import MatrixApi
from bot.frontends.matrix.decide import (
    NO_E2EE_ROOM_NOTICE_EVERY,
    Action,
    AnswerFacts,
    ChatFacts,
    Decision,
    Lookup,
    Waits,
    addressed,
    answer_form,
    conversation_thread,
    holds_personal_keys,
    keys_refused,
    line_place,
    reaction_command,
    reaction_words,
    taken_for_secret,
    tell_unread,
    typed_elsewhere,
)
from bot.frontends.matrix.secret_commands import (
    ROOM_BY_NAME,
    carries_secret,
    lacks_secret,
    may_hold_secret,
    missing_secret,
    names_room_by_name,
    scrub_reply,
    split_target,
    takes_secret,
)
from bot.frontends.matrix.sink import MatrixTarget, SendFailed, reply_relation
from bot.types import (
    Actor,
    Attachment,
    ChannelRef,
    Greeting,
    Incoming,
    Platform,
    Replied,
    Reply,
    ReplyFile,
)
from bot.types.secrets import held_secret
from bot.types.text import literal, quoted, shorten, shown_name

log = logging.getLogger("bot.frontends.matrix")

_THREADS_KEPT = 5000
# The most of a room's name a reply about it shows: anyone who may rename a room writes it
# (Synapse takes 10,000 characters), and the reply is the bot's.
_ROOM_LABEL_CHARS = 64
# Commands that change who answers in a room: its per-room profile follows them.
PERSONA_COMMANDS = frozenset(
    {("character", "import"), ("character", "clear"), ("character", "none")}
)
_ANSWERS_KEPT = 5000  # answers whose reactions and controls edit them in place
_ASKS_KEPT = 1000  # senders whose failed secret command may be followed by its secret
_UNREAD_KEPT = 1000  # senders told their message could not be read (decide.tell_unread)
# A message whose room key never came (decide.UNREAD_NOTICE_AFTER): what its sender does.
UNREAD = (
    "I could not read your message: it is encrypted, and its key never reached me. Send "
    "it again. If I still cannot read it, your app is not sharing keys with my session "
    "({device}): verify it, or allow sending to unverified sessions in your app's "
    "security settings."
)
# An encrypted message while MATRIX_E2EE is off: no key will ever help. Sent in the clear
# (MatrixApi.send's in_clear): it holds nothing of anyone's.
NO_E2EE = (
    "I cannot read your message: it is encrypted, and this bot is set up without "
    "encryption, so it does not read encrypted rooms. Talk to me in a room without "
    "encryption, or ask the bot's operator to turn encryption on (MATRIX_E2EE)."
)
# The same in a group room, said to the room once (decide.NO_E2EE_ROOM_NOTICE_EVERY) on
# any encrypted message: whether one was for the bot cannot be seen.
NO_E2EE_ROOM = (
    "I cannot read the messages in this room: it is encrypted, and this bot is set up "
    "without encryption, so it does not read encrypted rooms. Talk to me in a room "
    "without encryption, or ask the bot's operator to turn encryption on (MATRIX_E2EE). "
    "If I am not wanted here, remove me from the room; until then I say this once a day."
)
REDACT_REASON = "It contained a secret; the bot removed it."
# A command in an event never run as one (an edit, an emote) that held a key: what to do.
_ANEW = (
    "send the command anew, as a plain message in a direct chat with me ({what} is never "
    "run as a command)."
)
_DELETED = "I deleted your message so the secret does not stay in the room history."
_NOT_DELETED = (
    "⚠️ I could not delete your message (I need permission to remove messages here). "
    "Delete it yourself now: the secret is visible in the room history."
)
# In a direct chat only its creator may delete others' messages, unless they raise the
# bot's power: no alarm, the key is in a room of two nobody joins unasked, but it is
# still in its history.
_NOT_DELETED_DIRECT = (
    "I could not delete your message: in a direct chat only you can, unless you give me "
    "the power to remove messages. Delete it if you do not want the secret in this chat's "
    "history."
)


@dataclass(frozen=True, slots=True)
class Message:
    """What the handler needs from one m.room.message event, read as it arrived."""

    room_id: str
    event_id: str
    sender: str
    content: dict[str, Any]
    text: str  # typed text, or a file's caption
    thread: str = ""  # the thread's root event id, "" outside threads
    # Outside threads, the thread whose conversation it continues all the same: a reply
    # in the main timeline to an answer in that thread (decide.conversation_thread).
    continues: str = ""
    direct: bool = False  # the bot and one other person
    private: bool = False  # a direct chat nobody joins or reads unasked (keys go here)
    media: events.MediaFile | None = None  # the file of an image or file message

    @property
    def ref(self) -> ChannelRef:
        """The conversation it belongs to: the room, or the thread in it (a private direct
        chat's replies call it "this direct chat"). Where its answer goes is `thread`."""
        return ChannelRef(
            Platform.MATRIX,
            channel_id=self.room_id,
            thread_id=self.thread or self.continues,
            direct=self.private,
        )


@dataclass
class Shown:
    """One answer the bot showed, as it remembers it (since it started)."""

    ref: ChannelRef
    asker: str
    event_ids: list[str] = field(default_factory=list)  # its pages; edits replace these
    # Whom its events mention (the asker, outside a direct chat): a control's edits say so
    # too, since an edit's new content replaces all of the event's.
    mention: str = ""
    row: int | None = None  # the answer's stored row (a failed question's); None: streaming
    answered: bool = True  # False: the model failed and the message shows the error
    removed: bool = False  # someone removed one of its events: nothing reaches it any more
    # Set once it has ended (its row known, or it never will be): a reaction on it while
    # it is written waits for this (MessageHandler.react).
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class Place:
    """A message's place in its conversation's line, until it joins the core's turn order.

    Two signals pass along the line: one when a message has passed on (every later one
    waits for it), one when it is within the core's reach (a stop need wait no longer:
    passed on, held back where the core stops it, or nothing a stop acts on)."""

    def __init__(self, before: _Signals | None, mine: _Signals) -> None:
        self._before = before
        self._mine = mine
        self._passed = False
        self._reached = False

    @property
    def waits(self) -> bool:
        """An earlier message of the conversation has not passed on yet (a command running)."""
        return self._before is not None and not self._before.passed.done()

    async def turn(self) -> None:
        """Wait until every earlier message of the conversation has passed on."""
        if self._before is not None:
            await _after(self._before.passed)

    async def reach(self) -> None:
        """Wait until every earlier message of the conversation is within the core's reach
        (a stop's wait: it acts on what waits in the core, not after it)."""
        if self._before is not None:
            await _after(self._before.reached)

    def pass_on(self) -> None:
        """Let the next message go once the earlier ones have; safe to call at any time."""
        if not self._passed:
            self._passed = True
            self._relay(None if self._before is None else self._before.passed, self._mine.passed)
        self.within_reach()

    def within_reach(self) -> None:
        """This message is within the core's reach from now on; safe to call at any time."""
        if not self._reached:
            self._reached = True
            before = None if self._before is None else self._before.reached
            self._relay(before, self._mine.reached)

    @staticmethod
    def _relay(before: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        """Set `mine` once `before` is (at once when it is): the line keeps its order even
        for a message that leaves early (a refusal, a cancelled task)."""

        def release(_: object = None) -> None:
            if not mine.done():
                mine.set_result(None)

        if before is None or before.done():
            release()
        else:
            before.add_done_callback(release)


@dataclass(frozen=True, slots=True)
class _Signals:
    """What a message tells the ones after it in its line."""

    passed: asyncio.Future[None]
    reached: asyncio.Future[None]


async def _after(signal: asyncio.Future[None]) -> None:
    if not signal.done():
        # asyncio.wait, not await: cancelling this message must not cancel the signal.
        await asyncio.wait([signal])


class ArrivalOrder:
    """One line per conversation: messages reach the core in the order they arrived.

    A message leaves the line when it joins the core's turn order (a chat turn) or when
    it is done (a command, applied before the next message is even decided on). The
    turns themselves are ordered by the core alone.
    """

    def __init__(self) -> None:
        self._last: dict[str, _Signals] = {}

    def place(self, key: str) -> Place:
        """The next place in `key`'s line; take it as the message arrives, before any await."""
        loop = asyncio.get_running_loop()
        mine = _Signals(loop.create_future(), loop.create_future())
        before = self._last.get(key)
        self._last[key] = mine
        mine.passed.add_done_callback(lambda _: self._forget(key, mine))
        return Place(before, mine)

    def _forget(self, key: str, done: _Signals) -> None:
        if self._last.get(key) is done:
            del self._last[key]

    def __len__(self) -> int:
        """Conversations with a message still in line."""
        return len(self._last)


def _emote_as_action(text: str) -> str:
    """`/me waves` (an m.emote): an action, as Element shows it (`* Alice waves`), written
    as role-play writes one; sent bare, the model read it as words said to it."""
    return f"*{text.strip()}*" if text.strip() else text


def reasoning_as_quote(answer: str, reasoning: str) -> str:
    """Shown reasoning as a Matrix block quote before the answer."""
    thought = reasoning.strip()
    if not thought:
        return answer
    block = "\n".join(f"> {line}" for line in f"💭 {thought}".split("\n"))
    return f"{block}\n\n{answer}" if answer else block


class MessageHandler:
    """Dispatches a decided message: a command to the core, or a chat turn streamed back."""

    def __init__(self, core: Core, api: MatrixApi, admin_power_level: int) -> None:
        self._core = core
        self._api = api
        self._admin_level = admin_power_level
        self._threads: OrderedDict[str, None] = OrderedDict()  # threads it answered in
        self._shown: OrderedDict[str, Shown] = OrderedDict()  # by the answer's first event
        self._newest: OrderedDict[str, str] = OrderedDict()  # conversation → its newest answer
        # (room, sender) → when a command of theirs that asks for a secret failed
        self._secret_asked: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._mute: set[str] = set()  # rooms where the bot may not post (said once)
        # (room, sender) → when they were told a message of theirs could not be read
        self._unread_told: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.display_name = ""

    @property
    def prefix(self) -> str:
        return self._core.prefix(Platform.MATRIX)

    def may_hold_secret(self, text: str) -> bool:
        return may_hold_secret(text, self._core.table, self.prefix)

    def typed_elsewhere(self, text: str, room: nio.MatrixRoom | None) -> TypedCommand | None:
        """The command `text` names in Discord's `/` form, the bot's name before it taken
        off (`Bot: /key set …`), or None (decide.typed_elsewhere)."""
        if room is not None:
            text = events.strip_mention(text, self._api.user_id, self.names(room))
        return typed_elsewhere(text, self._core.table, self.prefix)

    async def _may_post(self, room: nio.MatrixRoom) -> bool:
        """Whether the room's power levels let the bot post its answer (an admin may have
        lowered its level mid-conversation; a creator of a room where creators outrank
        levels always may); said in the log once while it may not."""
        kind = "m.room.encrypted" if room.encrypted else "m.room.message"
        me = self._api.user_id
        if room.power_levels.can_user_send_message(me, kind) or (
            (authority := await self._api.authority(room.room_id)) is not None
            and me in authority.privileged_creators
        ):
            self._mute.discard(room.room_id)
            return True
        if room.room_id not in self._mute:
            self._mute.add(room.room_id)
            log.warning(
                "may not post in %s (its power levels changed?): not answering there", room.room_id
            )
        return False

    def _room(self, room_id: str) -> nio.MatrixRoom | None:
        room: nio.MatrixRoom | None = self._api.client.rooms.get(room_id)
        return room

    async def handle(self, msg: Message, decision: Decision, place: Place) -> None:
        """Act on `decision`; `place` keeps the message in its conversation's order."""
        try:
            room = self._room(msg.room_id)
            if room is None:  # left since it arrived
                return
            # Every action's place in its line is decided by line_place: a question is not
            # within the core's reach as it arrives (_chat says when it is).
            named = self._control_named(msg) if decision.action is Action.COMMAND else None
            line = line_place(decision.action, named)
            if line.reached:
                place.within_reach()
            if decision.action is Action.CHAT:
                await self._chat(room, await self._continued(msg), place)
            elif decision.action is Action.EDIT:
                await self._edited(room, msg)
            elif decision.action is Action.SECRET_EMOTE:
                note = await self._take_out(msg)
                said = held_secret("emote", self.prefix, instead=_ANEW.format(what="an emote"))
                await self._notice(msg, f"{said}\n\n{note}")
            elif decision.action is Action.STALE_SECRET:
                note = await self._take_out(msg)  # says whether it could be taken out
                said = (
                    "This came while I was not running, so I did not run it; it may hold a key "
                    "or password."
                )
                again = (
                    "Send it again."
                    if msg.private
                    else "If others could see it, make a new one; send the command in a direct "
                    "chat with me."
                )
                await self._notice(msg, f"{said} {again}\n\n{note}")
            elif decision.action is Action.SECRET_EDIT:
                note = await self._take_out(msg)
                edited = self.command_text(events.edited_text(msg.content), room)
                anew = _ANEW.format(what="an edit")
                elsewhere = self.typed_elsewhere(edited, room) is not None
                if elsewhere:  # `/key set …`: said how commands are typed here
                    anew = f"commands here start with `{self.prefix}`, not `/`: {anew}"
                command = elsewhere or edited.lstrip().startswith(self.prefix)
                said = held_secret("edit", self.prefix, instead=anew if command else "")
                await self._notice(msg, f"{said}\n\n{note}")
            elif decision.action is Action.TYPED_ELSEWHERE:
                await self._typed_elsewhere(room, msg, decision)
            else:
                await self._command(room, msg, decision, place, line.waits)
        finally:
            place.pass_on()

    def _control_named(self, msg: Message) -> tuple[str, ...] | None:
        """The turn control a command names (its path), or None: another command, or one
        that does not parse (said when it runs)."""
        try:
            inv = self._core.parse(msg.text, Platform.MATRIX)
        except CommandError:
            return None
        return inv.path if self._core.is_control(inv) else None

    async def _actor(self, room: nio.MatrixRoom, user_id: str) -> Actor:
        level = int(room.power_levels.get_user_level(user_id))
        authority = None
        if level < self._admin_level:  # only then can being a creator change anything
            authority = await self._api.authority(room.room_id)
        admin = is_room_admin(user_id, level, authority, self._admin_level)
        name = room.user_name(user_id) or user_id
        return Actor(user_id, str(name), is_channel_admin=admin, power_level=level)

    async def _not_theirs(self, room: nio.MatrixRoom, msg: Message, path: tuple[str, ...]) -> str:
        """Why a command taking a key, typed in a group room, is not its sender's to run
        for that room (they are no admin of it): a direct chat naming the room would be
        refused too, so that is said, not where to send it. "" when it is theirs."""
        return await self._core.access_refusal(msg.ref, await self._actor(room, msg.sender), path)

    # --- commands ------------------------------------------------------------------
    async def _command(
        self, room: nio.MatrixRoom, msg: Message, decision: Decision, place: Place, waits: Waits
    ) -> None:
        ok = await self._run_command(room, msg, decision, place, waits)
        self._secret_may_follow(
            msg, not ok and lacks_secret(msg.text, self._core.table, self.prefix)
        )

    def _secret_may_follow(self, msg: Message, asked: bool) -> None:
        """A failed command that asks for a secret (`asked`): the sender's next message
        here may be that secret on its own. Any other command is their next message."""
        key = (msg.room_id, msg.sender)
        if asked:
            self._secret_asked[key] = time.monotonic()
            self._secret_asked.move_to_end(key)
            while len(self._secret_asked) > _ASKS_KEPT:
                self._secret_asked.popitem(last=False)
        else:
            self._secret_asked.pop(key, None)

    async def _run_command(
        self, room: nio.MatrixRoom, msg: Message, decision: Decision, place: Place, waits: Waits
    ) -> bool:
        """Run a command and say how it went; False when it failed or was refused."""
        note = ""
        if decision.redact:
            # Before waiting for earlier messages: a key must not stay in the history a
            # second longer.
            note = await self._take_out(msg)
        if decision.action is Action.SECRET_COMMAND_IN_GROUP:
            # Changes nothing, so it need not wait for its turn.
            try:
                path = self._core.parse(msg.text, Platform.MATRIX).path
                said = await self._not_theirs(room, msg, path)
            except CommandError:
                said = ""
            said = said or _dm_only(room.room_id)
            await self._notice(msg, self._with_note(said, msg, note))
            return False
        if not await self._may_post(room):  # nothing run that could not say how it went
            return False
        # A stop: not behind the questions held back behind a command (the core stops them).
        await (place.reach() if waits is Waits.REACH else place.turn())
        prepared = await self._prepare(room, msg)
        if isinstance(prepared, str):
            await self._notice(msg, self._with_note(prepared, msg, note))
            return False
        # The room it acts on (itself, or another named with room:): one no longer a
        # direct chat holds the keys set in it while it was, before anything uses them.
        target = room if prepared.ref.channel_id == msg.room_id else None
        target = target or self._room(prepared.ref.channel_id)
        stopping = prepared.inv.path == ("stop",)  # uses no key: never held back
        try:
            if target is not None and not stopping:
                await self._hold_personal(target)
        except StoreError as err:  # said as the command itself would have said it
            where = prepared.ref.channel_id
            log.warning("could not check the keys of %s before a command: %s", where, err)
            await self._notice(msg, self._with_note(str(err), msg, note))
            return False
        if self._core.is_control(prepared.inv):
            if prepared.ref.channel_id != msg.room_id:  # its answer is edited in its room
                name = prepared.inv.path[0]
                await self._notice(
                    msg, f"Send {self.prefix}{name} in the room of the answer, not with room:."
                )
                return False
            # The core orders these itself (a stop must reach the answer being written).
            place.pass_on()
            await self._control(msg, prepared)
            return True
        # After the answers to earlier messages, and its own answer before later ones.
        async with self._core.ordered(prepared.ref):
            answer, reply = await self._execute(prepared, msg)
            if reply.ok and prepared.ref.channel_id != msg.room_id and carries_secret(prepared.inv):
                # The secret a command in that room lacked came from here (`room:`): the
                # sender's next word there ("@bot Hello!") is chat again, not that secret.
                self._secret_asked.pop((prepared.ref.channel_id, msg.sender), None)
            if reply.ok and prepared.inv.path in PERSONA_COMMANDS:
                await self._show_persona(prepared.ref)
            await self._notice(msg, self._with_note(answer, msg, note, ok=reply.ok))
            if reply.file is not None:
                await self._send_file(msg, reply.file)
            if reply.greeting is not None:
                await self._greet(prepared.ref, msg, reply.greeting)
        return reply.ok

    async def _typed_elsewhere(
        self, room: nio.MatrixRoom, msg: Message, decision: Decision
    ) -> None:
        """A command typed as on Discord or the console (`/model x`): sent nowhere, and
        said how to type it here where chat would be answered; one that may hold a key or
        password is taken out of the room first, as a key command in a group room is."""
        typed = self.typed_elsewhere(msg.text, room)
        if typed is None:
            return
        try:
            spoken_to = await self._addressed(msg, self.names(room))
            if not await self._core.should_answer(msg.ref, spoken_to):
                return  # not to the bot (another bot's, maybe), as chat would not be
        except StoreError as err:  # whether it was for the bot cannot be told: as chat
            log.warning("could not read how to answer a message in %s: %s", msg.room_id, err)
            return
        note = await self._take_out(msg) if decision.redact else ""
        stripped = events.strip_mention(msg.text, self._api.user_id, self.names(room))
        line = self.prefix + plain_prefix(stripped.strip(), "/")[1:]
        try:
            path = self._core.parse(line, Platform.MATRIX).path
        except CommandError:
            path = tuple(typed.name.split())
        name = f"{self.prefix}{' '.join(path)}"
        said = f"Commands here start with `{self.prefix}`, not `/`"
        if not typed.secret:
            more = " …" if len(line.split()) > len(path) else ""
            text = f"{said}: send `{name}{more}` instead. I did not send your message to the model."
        elif msg.private:
            text = (
                f"{said}: send `{name} …` again, with the key or password in it. I did not "
                "send your message to the model or keep it."
            )
        else:
            text = (
                f"{said} (`{name} …`). {_dm_only(room.room_id)} I did not send your message "
                "to the model or keep it; if others could see a key or password in it, make a "
                "new one."
            )
        await self._notice(msg, f"{text}\n\n{note}" if note else text)
        self._secret_may_follow(msg, typed.secret)

    async def _show_persona(self, ref: ChannelRef) -> None:
        """The character's name and image as the bot's profile in this room only (its
        global profile again once the card is cleared)."""
        persona = await self._core.persona(ref, avatar=True)
        try:
            if persona is None:
                await self._api.set_room_profile(ref.channel_id, None, None)
            else:
                await self._api.set_room_profile(ref.channel_id, persona.name, persona.image)
        except SendFailed as err:
            log.warning("could not set the bot's profile in %s: %s", ref.channel_id, err)

    async def _greet(self, ref: ChannelRef, msg: Message, greeting: Greeting) -> None:
        """The character's first message, in the conversation (the room a direct-chat
        command named, too); ◀ ▶ show its alternates."""
        shown = Shown(ref, msg.sender)
        target = MatrixTarget(
            self._api.send,
            ref.channel_id,
            pace=self._api.pace,
            thread_root=ref.thread_id,
            on_sent=self._showing(shown),
        )
        try:
            for page in split_text(greeting.text, target.limit, target.size):
                await target.send(page)
            count = max(greeting.count, 1)
            result = TurnResult(
                greeting.text, None, False, greeting.answer_id, (1, count), greeting=True
            )
            await self._settled(shown, result)
        except SendFailed as err:
            log.warning("could not post a greeting in %s: %s", ref.channel_id, err)
        finally:
            # Posted, or never will be (any failure, not only a refusal): a reaction on
            # its first page waits for this (react), and would have until shutdown.
            shown.ended.set()

    async def _control(self, msg: Message, prepared: _Prepared) -> None:
        """`!regenerate`, `!continue`, `!retry`, `!swipe`: the new answer replaces the newest
        one shown in the conversation (m.replace of its original event); one the bot does
        not remember (from before a restart) gets a message of its own."""
        ref = prepared.ref
        target = self._answer_target(msg)

        def existing() -> list[str]:
            shown = self._newest_shown(ref)
            if shown is None:  # shown anew, in reply to the command
                return []
            target.mention = shown.mention  # edited, it mentions whom it answers
            return list(shown.event_ids)

        # Asked at the first text, inside the core's turn order: the answer a control
        # typed right after a question acts on is that question's, done by then.
        target.existing = existing
        done = await self._in_place(ref, prepared.actor, prepared.inv, target, asker=msg.sender)
        if isinstance(done, Reply):
            await self._notice(msg, f"{prepared.label}{done.text}")
        elif done.ignored:  # its question, or the answer it changes, was removed meanwhile
            return
        elif done.notice:
            await self._notice(msg, done.answer)
        elif done.shown_of:
            await self._notice(msg, done.shown_of)

    def _newest_shown(self, ref: ChannelRef) -> Shown | None:
        first = self._newest.get(str(ref))
        return self._shown.get(first) if first else None

    async def _in_place(
        self,
        ref: ChannelRef,
        actor: Actor,
        inv: Invocation,
        target: MatrixTarget,
        *,
        asker: str,
        answer_id: int | None = None,
    ) -> TurnResult | Reply:
        """Run a turn control into `target`; a notice is left for the caller to show."""
        held = HeldReply(PacedReply(target, render=reasoning_as_quote))
        try:
            # Its target finds the newest answer's events when the turn comes (`existing`).
            done = await self._core.run_control(
                ref, actor, inv, held, answer_id=answer_id, any_shown=True
            )
            if isinstance(done, Reply) or done.notice:
                return done
            await held.release()
        except SendFailed as err:
            log.warning("an answer in %s could not be delivered: %s", ref.channel_id, err)
            return Reply("The answer could not be delivered.", ok=False)
        finally:
            if not target.event_ids:
                await self._api.typing(ref.channel_id, False)
        for event_id in target.leftover():  # a longer answer was shown before
            await self._api.redact(ref.channel_id, event_id, "replaced by a shorter answer")
        if target.event_ids:
            # Shown anew (after a restart, say): its controls are its question's asker's,
            # not whoever typed the control (an admin).
            shown = self._shown.get(target.event_ids[0]) or Shown(
                ref, done.asker or asker, mention=target.mention
            )
            shown.event_ids = list(target.event_ids)
            await self._settled(shown, done)
        return done

    def _showing(self, shown: Shown) -> Callable[[str], None]:
        """Note each event of an answer as it is posted; from the first, ⏹ can reach it."""

        def sent(event_id: str) -> None:
            shown.event_ids.append(event_id)
            if len(shown.event_ids) == 1:
                self._shown[event_id] = shown

        return sent

    async def _settled(self, shown: Shown, result: TurnResult) -> None:
        """Remember the answer an event shows now, so reactions and controls reach it, and
        note it in the store, so removing one of its events forgets it."""
        if not result.notice:  # a notice leaves nothing to change: its row stays None
            shown.answered = result.answer_id is not None
            shown.row = result.answer_id if shown.answered else result.question_id
        shown.ended.set()
        if not shown.event_ids:
            return
        first = shown.event_ids[0]
        if result.notice:
            self._shown.pop(first, None)
            return
        if shown.removed:  # tied to its events all the same: the store forgets it
            await self._core.shown_in(shown.ref, result.answer_id, shown.event_ids)
            return
        self._shown[first] = shown
        self._shown.move_to_end(first)
        self._newest[str(shown.ref)] = first
        self._newest.move_to_end(str(shown.ref))
        for kept in (self._shown, self._newest):
            while len(kept) > _ANSWERS_KEPT:
                kept.popitem(last=False)
        if shown.answered:
            await self._core.shown_in(shown.ref, shown.row, shown.event_ids)

    # --- edits and redactions ---------------------------------------------------------
    async def _edited(self, room: nio.MatrixRoom, msg: Message) -> None:
        """An edit of a question the bot keeps: the model reads the new text from the next
        turn on. Never run as a command, nor answered anew."""
        original = events.relates_to(msg.content).get("event_id")
        names = self.names(room)
        text = events.strip_mention(events.edited_text(msg.content), self._api.user_id, names)
        if not isinstance(original, str):
            return
        # A command (in Discord's form too: `/model x`) is not its question from now on.
        command = self.command_text(text, room).lstrip().startswith(self.prefix)
        command = command or self.typed_elsewhere(text, room) is not None
        new = msg.content.get("m.new_content")
        if not command and isinstance(new, dict) and new.get("msgtype") == "m.emote":
            text = _emote_as_action(text)  # an emote edited is still an action
        done = await self._core.edited(
            Platform.MATRIX, msg.room_id, original, text, author=msg.sender, rewrite=not command
        )
        if done is Edited.HELD_SECRET:
            note = await self._take_out(msg)
            await self._notice(msg, f"{held_secret('edit', self.prefix)}\n\n{note}")

    async def forget(self, room_id: str, sender: str, redacts: str) -> None:
        """A message removed from the room: the turn it showed leaves the history. Anyone
        may remove their own question; an answer only someone with the power to remove
        others' messages (the homeserver applies a redaction only then, but relays it)."""
        room = self._room(room_id)
        if room is None:
            return
        level = int(room.power_levels.get_user_level(sender))
        needed = int(room.power_levels.defaults.redact)
        # A room-v12 creator outranks every level without being listed in them.
        authority = None if level >= needed else await self._api.authority(room_id)
        anyone = is_room_admin(sender, level, authority, needed)
        if anyone:
            self._api.removed(room_id, redacts)  # before the stop below: nothing edits it
            self._answer_removed(room_id, redacts)
        await self._core.deleted(
            Platform.MATRIX, room_id, [redacts], author=None if anyone else sender
        )

    def _answer_removed(self, room_id: str, event_id: str) -> None:
        """One of the bot's answers in `room_id` was removed: one still being written
        stops, and reactions and controls no longer reach it."""
        for first, shown in list(self._shown.items()):
            if shown.ref.channel_id != room_id or event_id not in shown.event_ids:
                continue
            if shown.row is None:  # still streaming
                self._core.answer_deleted(shown.ref)
            shown.removed = True
            del self._shown[first]
            if self._newest.get(str(shown.ref)) == first:
                del self._newest[str(shown.ref)]

    # --- reactions -----------------------------------------------------------------
    async def react(self, room_id: str, sender: str, reacts_to: str, key: str) -> None:
        """🔄 ⏩ ⏹ ◀ ▶ on an answer (any of its pages), by its asker or an admin: the
        control, in place."""
        if reaction_words(key) is None:  # a comment (👍), not a control: nothing to look up
            return
        shown = self._shown_on(room_id, reacts_to)
        room = self._room(room_id)
        if shown is None or room is None or shown.ref.channel_id != room_id:
            # Not an answer the bot remembers in this room: a reaction like any other (a
            # homeserver that relates events across rooms gets no say in another room).
            return
        if not await self._may_post(room):  # a control would ask the model for nothing shown
            return
        actor = await self._actor(room, sender)
        facts = AnswerFacts(shown.asker, shown.answered)
        words = reaction_command(
            key, facts, sender=sender, admin=await self._core.is_admin(shown.ref, actor)
        )
        if words is None:
            return
        if words == ("stop",):  # uses no key: never held back
            # Asked of the answer being written, which may not be the one reacted to.
            if await self._core.stop_refusal(shown.ref, actor) is None:
                self._core.stop(shown.ref)  # the answer itself shows that it stopped
            return
        if not await self._core.may_chat(shown.ref, actor):
            # Ignored quietly, as their chat is: a reaction each, taken away and added
            # again, would have the bot say in the room that they may not chat here.
            return
        if shown.row is None:
            # Still being written. Run now, the control would act on whatever turn is the
            # newest when its turn came: a question sent meanwhile got its answer
            # regenerated into this one's event. Acted on once it has ended, as itself.
            await shown.ended.wait()
            if shown.row is None or shown.removed:  # a notice, undelivered, or removed
                log.info(
                    "a reaction in %s was on an answer that ended unkept (a notice, a failed "
                    "post, or removed): nothing done",
                    room_id,
                )
                return
            facts = AnswerFacts(shown.asker, shown.answered)  # 🔄 on an error: retry
            words = reaction_command(
                key, facts, sender=sender, admin=await self._core.is_admin(shown.ref, actor)
            )
            if words is None:
                return
        try:
            await self._hold_personal(room)
        except StoreError as err:  # a reaction has nowhere to be answered: the log says it
            log.warning("could not check the keys of %s before a reaction: %s", room_id, err)
            return
        inv = self._core.parse(f"{self.prefix}{' '.join(words)}", Platform.MATRIX)
        target = MatrixTarget(
            self._api.send,
            room_id,
            pace=self._api.pace,
            thread_root=shown.ref.thread_id,
            mention=shown.mention,
            typing=self._api.typing,
            existing=lambda: list(shown.event_ids),
        )
        done = await self._in_place(
            shown.ref, actor, inv, target, asker=shown.asker, answer_id=shown.row
        )
        text = done.text if isinstance(done, Reply) else done.answer if done.notice else ""
        if text:
            # Only the asker or an admin gets here: tell them why nothing changed.
            notice = Message(room_id, reacts_to, sender, {}, "", thread=shown.ref.thread_id)
            await self._notice(notice, text)

    def _shown_on(self, room_id: str, event_id: str) -> Shown | None:
        """The answer `event_id` shows, as one of its pages: a long answer's last page,
        where its end is read, is where people react."""
        shown = self._shown.get(event_id)
        if shown is not None:
            return shown
        for other in reversed(self._shown.values()):
            if other.ref.channel_id == room_id and event_id in other.event_ids:
                return other
        return None

    def _with_note(self, answer: str, msg: Message, note: str, *, ok: bool = False) -> str:
        """A reply to a message taken out as holding a secret, cleaned of it (`ok`: the
        command took its values; otherwise its reply may quote any of them)."""
        if not note:
            return answer
        table, p = self._core.table, self.prefix
        return f"{scrub_reply(answer, msg.text, table, p, refused=not ok)}\n\n{note}"

    async def _prepare(self, room: nio.MatrixRoom, msg: Message) -> _Prepared | str:
        """Who runs what where, or why it cannot run."""
        text = msg.text
        if text.split(maxsplit=1)[:1] == [f"{self.prefix}access"]:
            # A person picked from the client's mention list: the name in the text, the
            # id in the pill's link; a rule names the id.
            text = events.pills_as_ids(text, msg.content)
            text = events.member_ids_as_written(text, room.users)
        try:
            # Only a direct chat may name another room: there it keeps keys out of groups.
            targeted = split_target(text) if msg.private else None
            inv = self._core.parse(targeted.text if targeted else text, Platform.MATRIX)
        except CommandError as err:
            if not msg.private and asks_secret(msg.text, self._core.table, self.prefix):
                # `!proxy password` alone in a group: where to send it, not its usage line,
                # which would have them paste the password here (Matrix probe).
                return _dm_only(room.room_id)
            return str(err)
        # A command that takes a secret, given or not: in a group the next step would be
        # to paste it there (Matrix probe: its usage line said so).
        secret = carries_secret(inv) or takes_secret(inv, self._core.table)
        if secret and targeted and not targeted.target and names_room_by_name(targeted.text):
            # `!key set custom room:Lounge` had stored `room:Lounge` as this direct chat's
            # key; with a key before it, it was refused for "a space at position 36".
            return ROOM_BY_NAME
        if keys_refused(secret=secret, private=msg.private):
            if refused := await self._not_theirs(room, msg, inv.path):
                return refused
            return (
                "I only take keys and passwords in a direct chat with me (a room of just you and "
                "me that nobody joins unasked). Start one and send "
                f"`{self.prefix}{' '.join(inv.path)} … room:{room.room_id}` there."
            )
        target_room, thread = room, msg.thread
        if targeted and targeted.target:
            found = await self._target_room(targeted.target, msg.sender)
            if isinstance(found, str):
                return found
            target_room, thread = found, ""
        actor = await self._actor(target_room, msg.sender)
        ref = ChannelRef(
            Platform.MATRIX,
            channel_id=target_room.room_id,
            thread_id=thread,
            direct=_private(target_room),  # a room named with room: is said as it is
        )
        inv = await self._with_replied_file(msg, inv)
        label = f"[{_room_label(target_room)}] " if target_room is not room else ""
        # A key set in a direct chat for itself is its owner's; one set with room: is the
        # named room's (as a group's: its admin chose it for the room), however few are in it.
        personal = target_room is room and _private(room)
        named = targeted.target if targeted else ""
        missing = missing_secret(inv, self._core.table, self.prefix) if named else None
        if missing is not None:
            # Its usage line alone, followed, set the direct chat's secret instead (Matrix
            # probe): the line names the room too.
            name, line = missing
            with_room = f"{line} room:{named}"
            refusal = await self._core.refusal(ref, actor, inv)
            if refusal is not None:
                return f"{label}{refusal.text.replace(line, with_room)}"
            return (
                f"{label}Missing the {name}: send it with the command, in one message: "
                f"`{with_room}`"
            )
        return _Prepared(ref, actor, inv, label, personal=personal)

    async def _send_file(self, msg: Message, file: ReplyFile) -> None:
        """A reply's file (the /usage chart) as an m.image in the command's thread."""
        content: dict[str, Any] = {
            "msgtype": "m.image" if file.media_type.startswith("image/") else "m.file",
            "body": file.filename,
            "info": {"mimetype": file.media_type, "size": len(file.data)},
        }
        rel = reply_relation(msg.thread, msg.event_id)
        if rel:
            content["m.relates_to"] = rel
        try:
            content.update(
                await self._api.upload(msg.room_id, file.data, file.media_type, file.filename)
            )
            await self._api.send(msg.room_id, content)
        except SendFailed as err:
            log.warning("could not send a file in %s: %s", msg.room_id, err)

    async def _execute(self, prepared: _Prepared, msg: Message) -> tuple[str, Reply]:
        command = self._core.command(prepared.inv.path)
        slow = command is not None and command.slow
        if slow:
            await self._api.typing(msg.room_id, True)
        try:
            reply = await self._core.run_command(
                prepared.ref, prepared.actor, prepared.inv, personal=prepared.personal
            )
        finally:
            if slow:
                await self._api.typing(msg.room_id, False)
        return f"{prepared.label}{reply.text}", reply

    async def _with_replied_file(self, msg: Message, inv: Invocation) -> Invocation:
        """`!character import` as a file's caption, or sent as a reply to a file: that
        file is the command's (a caption's own file first: the command ran, and was told
        no file came with it)."""
        command = self._core.command(inv.path)
        files = [o for o in command.options if o.kind is Kind.FILE] if command else []
        if not files or files[0].name in inv.raw:
            return inv
        media = msg.media
        if media is None:
            replied = events.replied_to(msg.content)
            media = await self._api.replied_file(msg.room_id, replied) if replied else None
        if media is None:
            return inv
        return Invocation(inv.path, {**inv.raw, files[0].name: self._attachment(media)})

    async def _target_room(self, target: str, sender: str) -> nio.MatrixRoom | str:
        """The room a DM command configures, or why it cannot."""
        room_id = await self._api.resolve_room(target)
        if room_id is None:
            return f"I can't find the room {quoted(target)}. Check the alias, or use its room id."
        room = self._room(room_id)
        if room is None:
            return f"I'm not in {quoted(target)}. Invite me there first."
        member = room.users.get(sender)
        if member is None or member.invited:
            return f"You are not a member of {quoted(target)}."
        return room

    async def _notice(self, msg: Message, text: str, *, in_clear: bool = False) -> bool:
        """A notice in reply to `msg` (`in_clear`: see MatrixApi.send, for a fixed text);
        whether the homeserver took it."""
        target = MatrixTarget(
            functools.partial(self._api.send, in_clear=True) if in_clear else self._api.send,
            msg.room_id,
            pace=self._api.pace,
            thread_root=msg.thread,
            reply_to=msg.event_id,
            msgtype="m.notice",
        )
        try:
            for page in split_text(text, target.limit, target.size):
                await target.send(page)
        except SendFailed as err:
            log.warning("could not answer a command in %s: %s", msg.room_id, err)
            return False
        return True

    async def tell_unanswered(self) -> None:
        """Questions the process before this one left waiting for their turn when it went
        away (`kill -9`): told so in reply, each once (Core.unanswered)."""
        for untold in await self._core.unanswered(Platform.MATRIX):
            target = MatrixTarget(
                self._api.send,
                untold.ref.channel_id,
                pace=self._api.pace,
                thread_root=untold.ref.thread_id,
                reply_to=untold.post_id,
                msgtype="m.notice",
            )
            try:
                await target.send(untold.text)
            except SendFailed as err:  # left the room meanwhile, or may not post there
                log.info("could not say in %s that questions went unanswered: %s", untold.ref, err)
            await self._core.told(untold)

    async def carry_over(self, old: str, new: str, *, upgraded_by: str) -> None:
        """A room upgraded to `new` goes on as `old` was set up, when who upgraded it may
        set the bot up there (sending a tombstone may take less than that); said once."""
        room = self._room(old)
        actor = await self._actor(room, upgraded_by) if room is not None else None
        if actor is None or not actor.is_channel_admin:
            log.info(
                "%s replaces %s, but %s is no admin there: nothing carried", new, old, upgraded_by
            )
            return
        before, after = (ChannelRef(Platform.MATRIX, channel_id=rid) for rid in (old, new))
        if not await self._core.carry_over(before, after, actor):
            return
        target = MatrixTarget(self._api.send, new, pace=self._api.pace, msgtype="m.notice")
        text = (
            "This room continues the one it was upgraded from: its settings came along "
            f"(see {self.prefix}settings). The conversation starts afresh here."
        )
        try:
            await target.send(text)
        except SendFailed as err:
            log.warning("could not say so in %s: %s", new, err)

    def command_text(self, text: str, room: nio.MatrixRoom | None) -> str:
        """`text` as a command line when it is one: its prefix plain (`！key …` from a CJK
        keyboard), and the bot's name or pill before it taken off ("Bot: !settings" runs
        the command it addresses); else `text`, its prefix made plain."""
        text = plain_prefix(text, self.prefix)
        if room is not None and not text.lstrip().startswith(self.prefix):
            named = events.strip_mention(text, self._api.user_id, self.names(room))
            if plain_prefix(named, self.prefix).startswith(self.prefix):
                return plain_prefix(named, self.prefix)
        return text

    # --- chat ----------------------------------------------------------------------
    def names(self, room: nio.MatrixRoom) -> tuple[str, ...]:
        """The names the bot goes by in `room`: its own, and the one members see there
        (a character's, set by /character import)."""
        member = room.users.get(self._api.user_id)
        here = member.display_name if member is not None else ""
        return tuple(dict.fromkeys(name for name in (self.display_name, here) if name))

    async def _addressed(self, msg: Message, names: tuple[str, ...]) -> bool:
        facts = ChatFacts(
            direct=msg.direct,
            mentions_bot=events.mentions_user(
                # A file's body is its name when there is no caption: no mention there.
                msg.content,
                self._api.user_id,
                names,
                text=msg.text if msg.media else None,
            ),
            thread_root=msg.thread,
            replied_to=events.replied_to(msg.content),
        )
        verdict = addressed(facts)
        while isinstance(verdict, Lookup):
            if verdict is Lookup.THREAD:
                # A thread it talks in, or one started on its own message ("Reply in
                # thread" under an answer, which says nothing of the bot otherwise).
                known = (
                    msg.thread in self._threads
                    or await self._core.has_conversation(msg.ref)
                    or await self._api.is_own_event(msg.room_id, msg.thread)
                )
                facts = replace(facts, bots_thread=known)
            else:
                mine = await self._api.is_own_event(msg.room_id, facts.replied_to)
                facts = replace(facts, reply_to_bot=mine)
            verdict = addressed(facts)
        return verdict

    async def _continued(self, msg: Message) -> Message:
        """`msg` in the conversation it continues (decide.conversation_thread): a reply in
        the main timeline to an answer in a thread is that thread's next question."""
        replied = events.replied_to(msg.content)
        verdict = conversation_thread(thread_root=msg.thread, replied_to=replied)
        if verdict is Lookup.ANSWER:
            shown = self._shown_on(msg.room_id, replied)  # one still being written, too
            if shown is not None and shown.ref.channel_id == msg.room_id:
                found: str | None = shown.ref.thread_id
            else:
                found = await self._core.answer_thread(msg.ref, replied)
            verdict = conversation_thread(
                thread_root=msg.thread, replied_to=replied, answer_thread=found
            )
        if isinstance(verdict, Lookup) or verdict == msg.thread:
            return msg
        return replace(msg, continues=verdict)

    async def _chat(self, room: nio.MatrixRoom, msg: Message, place: Place) -> None:
        if not place.waits:
            await self._chat_in_turn(room, msg, place)
            return
        # Recorded while it waits, as a question waiting in the core's turn order is (a
        # killed process's successor says it went unanswered).
        asker = functools.partial(self._asker, room, msg)
        with self._core.waiting_before(msg.ref, msg.event_id, asker, msg.sender) as held:
            # Behind a command still running once the messages before it are within the
            # core's reach (so a `!stop` sent before it does not stop it): held where the
            # core stops it, as in its turn order (`!stop`, a redaction). One no longer
            # behind anything, or whose asker cannot be told, is within reach once it
            # joins the turn order (pass_on), as one that never waited: a `!stop` after
            # it must not go ahead while it is decided on.
            await place.reach()
            if place.waits and await held.hold():
                place.within_reach()
            sink = PacedReply(self._answer_target(msg), render=reasoning_as_quote)
            try:
                if await held.until(place.turn, sink) is not None:  # stopped, or removed
                    return
            except SendFailed as err:
                log.warning("could not say so in %s: %s", msg.room_id, err)
                return
            await self._chat_in_turn(room, msg, place)

    async def _asker(self, room: nio.MatrixRoom, msg: Message) -> Actor | None:
        """Who asks `msg` when it is one to answer (as far as can be told before its turn:
        the room's settings as they are now), else None."""
        addressed = await self._addressed(msg, self.names(room))
        if not await self._core.should_answer(msg.ref, addressed):
            return None
        return await self._actor(room, msg.sender)

    async def _chat_in_turn(self, room: nio.MatrixRoom, msg: Message, place: Place) -> None:
        await place.turn()
        asked = self._secret_asked.pop((msg.room_id, msg.sender), None)
        names = self.names(room)
        text = events.strip_mention(msg.text, self._api.user_id, names)
        # Addressed or not: a secret must not stay in the room either.
        if msg.media is None and taken_for_secret(asked, time.monotonic(), text):
            await self._drop_secret(msg)
            return
        if msg.content.get("msgtype") == "m.emote":
            text = _emote_as_action(text)
        ref = msg.ref
        spoken_to = False
        try:  # the reads before the turn: whether to answer, the room's keys
            spoken_to = await self._addressed(msg, names)
            if not await self._core.should_answer(ref, spoken_to):
                return
            if not await self._may_post(room):  # asking the model would cost, show nothing
                return
            await self._hold_personal(room)
        except StoreError as err:
            # The database down or locked: one who spoke to the bot is told, as a turn that
            # cannot store its question tells them, not left waiting for an answer.
            log.warning("could not read how to answer a message in %s: %s", msg.room_id, err)
            if spoken_to:
                await self._notice(msg, unstored(err))
            return
        if msg.thread:
            self._threads[msg.thread] = None
            self._threads.move_to_end(msg.thread)
            while len(self._threads) > _THREADS_KEPT:
                self._threads.popitem(last=False)
        actor = await self._actor(room, msg.sender)
        shown = Shown(ref, msg.sender)
        target = self._answer_target(msg, on_sent=self._showing(shown))
        shown.mention = target.mention
        sink = PacedReply(target, render=reasoning_as_quote)
        replied = await self._replied_files(msg)
        incoming = Incoming(ref, actor, text, self._attachments(msg), msg.event_id, replied)
        # Core.chat joins the conversation's turn order before it first waits, so the
        # next message may be decided on now without overtaking this one.
        place.pass_on()
        try:
            result = await self._core.chat(incoming, sink)
            await self._settled(shown, result)
            if result.held_secret:  # not sent or kept: nor left in the room, where it may
                await self._notice(msg, await self._take_out(msg))
            if result.refusal:  # a limit: a notice in the thread, nothing sent to the model
                told = await self._notice(msg, result.refusal)
                self._core.refusal_shown(incoming, result, told)  # only a shown one quiets
        except SendFailed as err:
            log.warning("an answer in %s could not be delivered: %s", msg.room_id, err)
        finally:
            shown.ended.set()  # settled, or never will be: nothing waits for it in vain
            if not target.event_ids:
                await self._api.typing(msg.room_id, False)

    async def unreadable(self, msg: Message, give_up: Callable[[], bool]) -> bool:
        """A message whose room key never came: its sender is told what to do (UNREAD).
        `give_up` ends its wait, at the moment it is decided (MatrixBot._give_up_unread):
        True when it is still unread and now waited for no more, False when it was read
        after all (then it is answered, and nothing is said here). True when they were
        told, now or before (see _tell_unread)."""
        text = UNREAD.format(device=self._api.client.device_id)
        return await self._tell_unread(msg, text, give_up)

    async def encrypted(self, msg: Message) -> None:
        """An encrypted message while MATRIX_E2EE is off: never to be read, so its sender
        is told what to do instead (NO_E2EE), as one whose key never came is; the notice
        goes in the clear, as nothing else does in an encrypted room.

        In a group room whether it was for the bot cannot be told: a mention, the usual
        way to address it there, is inside the ciphertext (so telling only those seen to
        address it told nearly nobody). No message there will ever be read, so the room
        is told instead, on the first encrypted message whoever sends it, once a day."""
        if msg.direct:
            await self._tell_unread(msg, NO_E2EE, lambda: True, in_clear=True)
            return
        room = self._room(msg.room_id)
        key = (msg.room_id, "")  # the room's own entry: no sender id is empty
        every = NO_E2EE_ROOM_NOTICE_EVERY
        if room is None or not tell_unread(self._unread_told.get(key), time.monotonic(), every):
            return
        if not await self._may_post(room):
            return
        now = time.monotonic()
        if not tell_unread(self._unread_told.get(key), now, every):  # told meanwhile
            return
        self._told_unread(key, now)
        target = MatrixTarget(
            functools.partial(self._api.send, in_clear=True),
            msg.room_id,
            pace=self._api.pace,
            msgtype="m.notice",
        )
        try:
            await target.send(NO_E2EE_ROOM)
        except SendFailed as err:
            log.warning("could not say so in %s: %s", msg.room_id, err)

    async def _tell_unread(
        self, msg: Message, text: str, give_up: Callable[[], bool], *, in_clear: bool = False
    ) -> bool:
        """Tell the sender of a message the bot cannot read `text`, when it may have been
        for the bot (as a chat message is answered: a direct chat, a reply to the bot or
        its thread, a room that answers everything; what it says is not known), once for
        all theirs that fail alike (decide.tell_unread). `give_up`: see `unreadable`,
        asked after the last wait before the notice: a key that comes while the room is
        looked up cannot have the message both answered and told unread. True when they
        were told, now or before."""
        room = self._room(msg.room_id)
        if room is None:
            return False
        key = (msg.room_id, msg.sender)
        if tell_unread(self._unread_told.get(key), time.monotonic()):
            try:
                addressed = await self._addressed(msg, self.names(room))
                if not await self._core.should_answer(msg.ref, addressed):
                    return False
            except StoreError as err:  # whether it was for the bot cannot be told
                log.warning("could not read how to answer a message in %s: %s", msg.room_id, err)
                return False
            if not await self._may_post(room):
                return False
        # No wait from here to the notice's record: decided once, in one place.
        if not give_up():  # read after all: answered as any message
            return False
        now = time.monotonic()
        if not tell_unread(self._unread_told.get(key), now):  # told before, or meanwhile
            return True
        self._told_unread(key, now)
        await self._notice(msg, text, in_clear=in_clear)
        return True

    def _told_unread(self, key: tuple[str, str], now: float) -> None:
        self._unread_told[key] = now
        self._unread_told.move_to_end(key)
        while len(self._unread_told) > _UNREAD_KEPT:
            self._unread_told.popitem(last=False)

    def read_from(self, room_id: str, sender: str) -> None:
        """An encrypted message of `sender`'s was read here: the next that cannot be is
        told again."""
        self._unread_told.pop((room_id, sender), None)

    async def settle_keys(self, room: nio.MatrixRoom, *, starting: bool = False) -> None:
        """When who may join or read a room changes, and at start: a room no longer a
        direct chat holds the keys set in it while it was one, and says so
        (_hold_personal). At start, the keys an older version stored are decided first:
        a private direct chat's are its owner's, any other room's are the room's."""
        if starting:
            ref = ChannelRef(Platform.MATRIX, room.room_id)
            await self._core.settle_legacy_secrets(ref, private=_private(room))
        try:
            await self._hold_personal(room)
        except StoreError as err:  # the next turn or command there checks again
            log.warning("could not check the keys of %s: %s", room.room_id, err)

    async def _hold_personal(self, room: nio.MatrixRoom) -> None:
        """Before a turn or a command here: a room no longer a private direct chat stops
        using the keys set in it while it was one (decide.holds_personal_keys), and is
        told so the first time (the store holds them once, for every process). StoreError
        when the database could not say: nothing may go on to use them."""
        holds = functools.partial(
            holds_personal_keys, private=_private(room), members=_joined(room)
        )
        ref = ChannelRef(Platform.MATRIX, channel_id=room.room_id)
        # The bot holds them (the audit log's "by"), not whoever asked first.
        actor = Actor(self._api.user_id, "the bot, as the room is no longer a direct chat")
        held = await self._core.hold_personal_secrets(ref, actor, holds)
        if not held:
            return
        log.info(
            "%s is no longer a direct chat: held its keys set there (%s)",
            room.room_id,
            ", ".join(held),
        )
        target = MatrixTarget(self._api.send, room.room_id, pace=self._api.pace, msgtype="m.notice")
        try:
            await target.send(held_notice(held, self.prefix, room.room_id))
        except SendFailed as err:
            log.warning("could not say so in %s: %s", room.room_id, err)

    async def _take_out(self, msg: Message) -> str:
        """Redact a message that holds a secret; what to tell its sender about it."""
        if await self._api.redact(msg.room_id, msg.event_id, REDACT_REASON):
            return _DELETED
        # A room of two that others may join or read back (public, say) is warned as a
        # group room is: its next members read the secret.
        return _NOT_DELETED_DIRECT if msg.private else _NOT_DELETED

    async def _drop_secret(self, msg: Message) -> None:
        """The message is the key or password the sender's failed command lacked: not
        chatted, not kept, taken out of the room where the bot may."""
        note = await self._take_out(msg)
        await self._notice(
            msg,
            "I took this for the key or password that your last command was missing, so I "
            "did not send it to the model or keep it. Send the command with the secret in "
            f"one message, in a direct chat with me.\n\n{note}",
        )

    def _answer_target(
        self, msg: Message, on_sent: Callable[[str], None] | None = None
    ) -> MatrixTarget:
        """Where an answer to `msg` goes: its thread, as a reply unless in a direct chat."""
        form = answer_form(
            direct=msg.direct,
            replied_to=events.replied_to(msg.content),
            event_id=msg.event_id,
            sender=msg.sender,
        )
        return MatrixTarget(
            self._api.send,
            msg.room_id,
            pace=self._api.pace,
            thread_root=msg.thread,
            reply_to=form.reply_to,
            mention=form.mention,
            typing=self._api.typing,
            on_sent=on_sent,
        )

    async def _replied_files(self, msg: Message) -> Replied | None:
        """The file of the event `msg` replies to (an image, a file or a sticker someone
        else sent, asked about), decrypted when need be, to go with it as if attached;
        None for a reply to the bot's own message, or to one without a file."""
        replied = events.replied_to(msg.content)
        if not replied or await self._api.is_own_event(msg.room_id, replied):
            return None
        media = await self._api.replied_file(msg.room_id, replied)
        return Replied(replied, (self._attachment(media),)) if media is not None else None

    def _attachments(self, msg: Message) -> tuple[Attachment, ...]:
        """The message's file, fetched by the core only if the turn gets that far."""
        return (self._attachment(msg.media),) if msg.media is not None else ()

    def _attachment(self, media: events.MediaFile) -> Attachment:
        """A file of an event as the core takes it: downloaded only when it is read."""
        fetch = functools.partial(self._api.download, media)
        return Attachment(media.filename, media.mimetype, media.size, fetch)


@dataclass(frozen=True, slots=True)
class _Prepared:
    ref: ChannelRef
    actor: Actor
    inv: Invocation
    label: str  # names the configured room when the command came from a direct chat
    personal: bool = False  # the room it configures is a private direct chat: its owner's


def held_notice(names: list[str], prefix: str, room_id: str) -> str:
    """What a room is told once when the keys set in it as a direct chat are held (no
    secret named: which key, and how to keep or remove it)."""
    lines = []
    for name in names:
        source = name.removesuffix("_api_key")
        if name == source:  # the proxy password
            what, again = "The proxy password", "proxy password <password> "
            remove = f"`{prefix}proxy clear` (it removes the proxy URL and custom key too)"
        else:
            what, again = f"The {source} key", f"key set {source} <key> "
            remove = f"`{prefix}key clear {source}`"
        lines.append(
            f"{what} set here when this was a direct chat would now pay for every member's "
            "questions, so I stopped using it. To keep it for everyone, an admin of this "
            f"room sets it again from a direct chat with me: `{prefix}{again}room:{room_id}`. "
            f"To remove it: {remove}."
        )
    return "\n".join(lines)


def _joined(room: nio.MatrixRoom) -> frozenset[str]:
    """Who is in the room now (joined, not only invited)."""
    return frozenset(room.users.keys() - room.invited_users.keys())


def _private(room: nio.MatrixRoom) -> bool:
    """A direct chat nobody joins or reads unasked, as the room is now."""
    return events.is_private_room(room.member_count, room.join_rule, room.history_visibility)


def _dm_only(room_id: str) -> str:
    return (
        "I only take keys and passwords in a direct chat with me (a room of just you and "
        "me that nobody joins unasked). Start one and send "
        f"the command there, naming this room with `room:{room_id}`."
    )


def _room_label(room: nio.MatrixRoom) -> str:
    """A room's name before a reply about it, sent from a direct chat: as a member wrote
    it, yet on one line, its own length at most, no right-to-left override turning the
    bot's words after it around, and no link or formatting in the bot's voice."""
    return literal(shorten(shown_name(room.display_name), _ROOM_LABEL_CHARS)) or room.room_id
