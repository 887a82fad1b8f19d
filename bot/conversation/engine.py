"""One chat turn: config → history → request → provider stream → reply sink → persist.

The question is stored before the provider is asked, the answer as it grows, so a
crash leaves the turn marked interrupted rather than gone; a turn that ends with an
error says so in its stored rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import TypedDict

from bot.characters import SettingsKind, Timers
from bot.connection import (
    NotConnectable,
    blocked_reason,
    channel_secrets,
    endpoint_for,
    mark_working,
    recheck_due,
    run_status_check,
)
from bot.conversation import accounting
from bot.conversation.attachments import (
    Prepared,
    ReadingSlots,
    Refused,
    SettingsFiles,
    count_refusal,
    spot_settings,
)
from bot.conversation.attachments import prepare as prepare_attachments
from bot.conversation.budget import (
    MAX_INPUT_CHARS,
    estimate_tokens,
    history_budget,
)
from bot.conversation.posts import Edits, PlatformPosts, post_key
from bot.conversation.request import Overflow, Requests
from bot.conversation.stream import (
    QUESTION_DELETED,
    STOPPED,
    STOPPED_BEFORE,
    AnswerRow,
    Outcome,
    Prefaced,
    ReplySink,
    Running,
    not_shown,
    sink_posts,
    stream_answer,
)
from bot.conversation.vision import sees_images
from bot.conversation.waiting import WaitingQuestions
from bot.fields import REGISTRY, conversation_room
from bot.providers import ChatRequest, Endpoint, ProviderHub
from bot.store import Store, StoreError
from bot.store.quotas import Guarded
from bot.store.secrets import SecretUnreadable
from bot.types import (
    Actor,
    Attachment,
    ChannelConfig,
    ChannelRef,
    HistoryEntry,
    ImageRef,
    Incoming,
    Platform,
    Role,
    Scope,
    TurnState,
    limits,
    params_as,
    typed_as,
)
from bot.types.files import Downloads
from bot.types.recent import RecentIds
from bot.types.secrets import (
    failure,
    held_secret,
    holds_key,
    holds_secret,
    redact,
    went_wrong,
)
from bot.types.text import literal, shown_id, strip_invisible
from bot.usage.access import NOT_HERE, operator_allows, operator_refusal
from bot.usage.limits import NOT_SENT, Refusal, TurnCost, turn_cost
from bot.usage.quota import Charged, admin_here, allowed, charge, settle_stale
from bot.usage.quota import Gate as Gate  # the Core hands it over
from bot.usage.quota import guard as quota_guard

log = logging.getLogger("bot.conversation")

HISTORY_ROWS = 200  # read bound; the token budget usually trims far earlier
# Messages a conversation keeps (answers swiped past too): older ones go now and then
# (Core.housekeeping), so no conversation's first read after a quiet spell reads years.
KEPT_MESSAGES = 1000
PRUNED_AT_ONCE = 50_000  # deleted in one housekeeping at most: the rest the next time
# Who reads files checked before their message is written (the console's, its user's).
_LOCAL_FILES = "attached before sending"
_BLOCKED_KEPT = 4096  # channels whose reason for not answering the log holds
_REFUSALS_KEPT = 4096  # (conversation, member, limits) whose last refusal is remembered
# Told when a control's turn comes: the answer it acts on (None: a question that got none)
# and who asked it (None: a greeting), before anything is shown (ChatEngine.control).
OnTurn = Callable[[int | None, str | None], Awaitable[None]]
# Run with a control's result while its turn still holds the conversation's place: what
# the front-end shows and records of it (the final edit, which messages show it) is done
# before the next question or control there begins (ChatEngine.control).
AfterTurn = Callable[["TurnResult"], Awaitable[None]]
# What to tell `actor` of SillyTavern files they sent here with no question (the Core
# names the import commands, to those who may run them).
# What someone is told of the character cards or presets (`kinds`) they sent with no
# question; `others`: the message's other files went to the model without them.
SettingsHint = Callable[[ChannelRef, Actor, tuple[SettingsKind, ...], bool], str]


def plain_settings_hint(
    ref: ChannelRef, actor: Actor, kinds: tuple[SettingsKind, ...], others: bool
) -> str:
    """SettingsHint without commands: what the files are, and that the model was not asked."""
    what = "character card" if kinds[0] == "character" else "Chat Completion preset"
    if others:
        return f"The SillyTavern {what} was not sent to the model, only the other files."
    return (
        f"That is a SillyTavern {what}, so I did not send it to the model. To ask me "
        "about it, send it again with your question."
    )


@dataclass(frozen=True, slots=True)
class TurnLimits:
    """Bounds on one answer (operator settings)."""

    answer_timeout: float = limits.ANSWER_TIMEOUT  # seconds for the whole answer
    max_answer_chars: int = limits.MAX_ANSWER_CHARS
    save_every: float = 2.0  # seconds between saves of a growing answer
    max_images: int = limits.MAX_IMAGES  # per message
    history_image_turns: int = limits.HISTORY_IMAGE_TURNS
    max_attachment_bytes: int = int(limits.MAX_ATTACHMENT_MB * 2**20)
    media_store_bytes: int = limits.MEDIA_STORE_MB * 2**20
    media_retention_days: int = limits.MEDIA_RETENTION_DAYS


@dataclass(frozen=True, slots=True)
class TurnResult:
    answer: str
    error: str | None
    called_provider: bool
    answer_id: int | None = None  # the stored answer (front-ends tie their message to it)
    alternative: tuple[int, int] = (1, 1)  # (shown, of how many answers to the question)
    question_id: int | None = None  # the question answered (a failed one has no answer_id)
    # A limit refused the turn: said to the asker alone (front-ends choose how), never sent.
    refusal: str | None = None
    # Which limits refused it (Refusal.named): a front-end says whether it showed the
    # refusal (Core.refusal_shown), as only one shown keeps the next quiet.
    refused_by: str | None = None
    # Nothing is shown to anyone: the asker may not chat here, or a limit refused them
    # again while the refusal told them there is recent (_refusal_due).
    ignored: bool = False
    greeting: bool = False  # a character's greeting: swiped, never regenerated or continued
    # The message held a key or a password: not sent or kept; front-ends delete it from
    # the chat where they may.
    held_secret: bool = False
    # Who asked the question answered (their id), where known: a front-end showing the
    # answer anew (a typed control after a restart) leaves its controls to them.
    asker: str | None = None

    @property
    def notice(self) -> bool:
        """Only a message for the person (a refusal, a hint): nothing was asked or shown."""
        return not self.called_provider and self.answer_id is None

    @property
    def shown_of(self) -> str:
        """Which of several is shown: `(answer 2 of 3)`, or for a character's greeting
        (its alternate greetings, as SillyTavern names them) `(greeting 2 of 3)`; "" for
        the only one."""
        shown, of = self.alternative
        return f"({self.kind} {shown} of {of})" if of > 1 else ""

    @property
    def kind(self) -> str:
        """What is shown, as it is named to people: `answer`, or a card's `greeting`."""
        return "greeting" if self.greeting else "answer"


class Control(StrEnum):
    """What can be done to the newest turn of a conversation."""

    REGENERATE = "regenerate"  # another answer to the same question; the old one is kept
    CONTINUE = "continue"  # extend the answer where it stopped
    RETRY = "retry"  # a question that got an error instead of an answer, asked again
    NEXT = "next"  # show the next alternative answer
    PREVIOUS = "previous"  # show the previous one


class _TurnOrder:
    """One FIFO lock per conversation, dropped when nobody waits on it."""

    def __init__(self) -> None:
        self._locks: dict[ChannelRef, tuple[asyncio.Lock, int]] = {}
        self._idle = asyncio.Event()  # set while no conversation has a turn
        self._idle.set()

    @asynccontextmanager
    async def hold(self, key: ChannelRef) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        self._idle.clear()
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
            if not self._locks:
                self._idle.set()

    async def idle(self) -> None:
        """Once every turn, waiting or running, has ended."""
        await self._idle.wait()

    def busy(self, key: ChannelRef) -> bool:
        """Whether a turn there runs or waits (one held now would wait for it)."""
        return key in self._locks


class HeldBack:
    """A question its front-end holds back before ChatEngine.turn, behind another message of
    its conversation (ChatEngine.waiting_before); behind a command running there, held
    where the core stops it (`hold`) as one waiting in its turn order is."""

    def __init__(
        self,
        asker: Callable[[], Awaitable[Actor | None]],
        hold_back: Callable[[str], Running],
        not_asked: Callable[[Running, ReplySink], Awaitable[TurnResult]],
    ) -> None:
        self._asker = asker
        self._hold_back = hold_back
        self._not_asked = not_asked
        self._who: asyncio.Future[Actor | None] | None = None  # asked once, for both uses
        self.running: Running | None = None  # held where the core stops it (`hold`)

    def _asked_by(self) -> asyncio.Future[Actor | None]:
        if self._who is None:
            self._who = asyncio.ensure_future(self._asker())
            self._who.add_done_callback(_retrieved)
        return asyncio.shield(self._who)  # one waiting on it cancelled: not the others

    async def actor(self) -> Actor | None:
        """Who asks it; None when it is not one to answer."""
        return await self._asked_by()

    async def hold(self) -> bool:
        """Held where its asker's stop (ChatEngine.stop_waiting) and its deletion reach it
        from now on, once who asks it is known (nothing to hold when it is not one to
        answer). True when it is within the core's reach so: held, or not one to answer
        (nothing a stop acts on); False when who asks it cannot be told (it waits all the
        same, out of reach until its turn takes it)."""
        try:
            actor = await self._asked_by()
        except StoreError as err:  # it waits all the same (its record says so too)
            log.warning("could not tell who asks a waiting question: %s", err)
            return False
        except Exception as err:  # a bug: as above
            log.error("telling who asks a waiting question failed: %s", failure(err))
            return False
        if actor is not None:
            self.running = self._hold_back(actor.id)
        return True

    async def until(
        self, wait: Callable[[], Awaitable[None]], sink: ReplySink
    ) -> TurnResult | None:
        """Wait for `wait` (its front-end's line): None once it has passed, or what it got
        instead while held: stopped by its asker (said in `sink`, as the turn order says
        it), or deleted (nothing said). Passed, a stop is kept for its turn while the
        front-end decides on it, as one prepared keeps it."""
        running = self.running
        if running is None:
            await wait()
            return None
        if running.stopped_by:  # deleted before it was held
            return await self._not_asked(running, sink)
        try:
            await wait()
        except asyncio.CancelledError:
            if not running.stopped_here():
                raise  # not a stop: the bot shutting down
            return await self._not_asked(running, sink)
        running.preparing()
        return None


def _retrieved(future: asyncio.Future[Actor | None]) -> None:
    if not future.cancelled():
        future.exception()  # said where it was awaited (HeldBack.hold, the record)


class _QuotaHooks:
    """Who may chat and the quota charge, where a turn starts (mixed into ChatEngine)."""

    _store: Store
    _gate: Gate
    _limits: TurnLimits
    _reserved: dict[ChannelRef, int]

    async def _admitted(self, ref: ChannelRef, actor: Actor) -> bool:
        if await self._may_chat(ref, actor):
            return True
        why = operator_refusal(ref, actor, self._gate.operator) or "its access rules leave them out"
        log.debug("ignored %s in %s: not allowed to chat there (%s)", actor.id, ref, why)
        return False

    async def may_chat(self, ref: ChannelRef, actor: Actor) -> bool:
        """Whether `actor` may chat here, by the operator's lists and the access rules (a
        control of theirs asks the model as their question would)."""
        return operator_allows(ref, actor, self._gate.operator) and await self._admitted(ref, actor)

    async def admin_here(self, ref: ChannelRef, actor: Actor) -> Actor:
        """`actor`, an admin of this channel when one of their roles is a bot-admin role
        of its server (usage.quota.admin_here)."""
        return await admin_here(self._store, ref, actor)

    async def _may_chat(self, ref: ChannelRef, actor: Actor) -> bool:
        """Whether `actor` may chat here (True when the database cannot say: the turn's
        own reads report it)."""
        try:
            return await allowed(self._store, self._gate, ref, actor)
        except StoreError as err:
            log.warning("could not read who may chat in %s: %s", ref, err)
            return True

    async def _charge(
        self,
        ref: ChannelRef,
        user_id: str,
        config: ChannelConfig,
        request: ChatRequest,
        prefix: str,
    ) -> Refusal | None:
        """Reserve the turn's estimate under the limits here; the refusal when one is full."""
        priced = _priced(config, request)
        done = await charge(self._store, self._gate, ref, user_id, prefix=prefix, **priced)
        if isinstance(done, Charged):
            if done.reserved is not None:
                self._reserved[ref] = done.reserved
            return None
        return done

    async def _question_charge(
        self,
        ref: ChannelRef,
        user_id: str,
        config: ChannelConfig,
        request: ChatRequest,
        prefix: str,
    ) -> Guarded[Refusal] | None:
        """A new question's charge, to run where the question is stored."""
        priced = _priced(config, request)
        return await quota_guard(self._store, self._gate, ref, user_id, prefix=prefix, **priced)

    async def _release(self, ref: ChannelRef) -> None:
        """A reserved turn that never reached the model costs nothing."""
        reserved = self._reserved.pop(ref, None)
        if reserved is not None:
            try:
                await self._store.quotas.release(reserved)
            except StoreError as err:
                log.warning("could not release a reserved usage row: %s", err)

    async def settle_reserved(self) -> int:
        """Reserved usage a crash left unsettled: settled as it stands (at start, then now
        and then); this process's own turns' rows are left to their turns."""
        running = tuple(self._reserved.values())
        return await settle_stale(self._store, self._limits.answer_timeout, running)


class ChatEngine(_QuotaHooks, PlatformPosts):
    def __init__(
        self,
        store: Store,
        hub: ProviderHub,
        limits: TurnLimits | None = None,
        gate: Gate | None = None,
        settings_hint: SettingsHint = plain_settings_hint,
    ) -> None:
        self._store = store
        self._hub = hub
        self._settings_hint = settings_hint
        self._limits = limits or TurnLimits()
        self._gate = gate or Gate()
        self._reserved: dict[ChannelRef, int] = {}  # conversation → the usage row its turn reserved
        self._order = _TurnOrder()
        self.waiting = WaitingQuestions(store)  # recorded while they wait (kill -9)
        self._closing: str | None = None  # what a turn says once a shutdown has begun
        # Once a shutdown has begun: when storing an answer's end gives way to showing it
        # (loop time), so the answer ends shown before the shutdown's patience runs out.
        self._store_by: float | None = None
        # Conversation → the turn holding its place (prepared, or its answer written).
        self._running: dict[ChannelRef, Running] = {}
        # Conversation → the turns waiting behind it, in order (only while some do).
        self._queued: dict[ChannelRef, dict[Running, None]] = {}
        # (conversation, platform message) → a question its front-end holds back before
        # `turn` (waiting_before), among those waiting in _queued until `turn` takes it.
        self._held_back: dict[tuple[ChannelRef, str], Running] = {}
        # Conversation → its answer not yet ended (stored, charged, shown as ended).
        self._answering: dict[ChannelRef, asyncio.Future[None]] = {}
        # Conversations whose turn has begun to show its answer (or a swipe): a bug after
        # that is not told as one before it (the answer shows how it ended).
        self._showing: set[ChannelRef] = set()
        # Conversations whose answer is written, and whose end (its final edit, a control's
        # `after`) the platform is still taking: nothing there to stop.
        self._showing_end: set[ChannelRef] = set()
        self._told_no_vision: set[str] = set()
        # Messages whose files are downloaded and held at once, in all conversations.
        self._reading_files = ReadingSlots()
        # Conversation → answers whose end could not be stored (the asker was told they
        # will not be part of the history): forgotten before its next turn reads it (an
        # answer being continued: put back as it was).
        self._unsaved: dict[ChannelRef, list[int | HistoryEntry]] = {}
        # Conversations whose last answer a stopped process left half-written: the next
        # answer there says so once (the channel still shows what had streamed).
        self._cut_off: dict[ChannelRef, int] = {}  # → that answer's id
        # Platform messages deleted lately: one still waiting for its turn is not asked.
        self._deleted = RecentIds()
        # Channel and setting whose stored value today's range refuses, logged already.
        self._passed_over_logged = RecentIds()
        # Channels that cannot answer now, and why, as the log said it last (_log_blocked;
        # the oldest forgotten past _BLOCKED_KEPT: a channel left blocked for good).
        self._blocked_logged: dict[ChannelRef, str] = {}
        self._edits = Edits()
        self._requests = Requests(store, self._limits.history_image_turns)
        # (conversation, member, the limits that refused) → until when the refusal told
        # them there is recent.
        self._refusal_shown: OrderedDict[tuple[ChannelRef, str, str], float] = OrderedDict()

    async def turn(self, incoming: Incoming, sink: ReplySink, prefix: str = "/") -> TurnResult:
        """Answer one message; turns of one conversation run in arrival order."""
        ref, actor = incoming.channel, incoming.actor
        return await self._in_order(
            ref,
            sink,
            lambda: self._turn(incoming, sink, prefix),
            actor.id,
            incoming.message_id,
            admitted=lambda: self._may_chat(ref, actor),
        )

    async def control(
        self,
        ref: ChannelRef,
        actor: Actor,
        action: Control,
        sink: ReplySink,
        *,
        admin: bool = False,
        answer_id: int | None = None,
        prefix: str = "/",
        any_shown: bool = False,
        on_turn: OnTurn | None = None,
        after: AfterTurn | None = None,
    ) -> TurnResult:
        """Regenerate, continue, retry or swipe the newest turn (the asker's or an admin's).

        `answer_id`: the answer a button or reaction belongs to (a question that got no
        answer: its id); only the newest may change; None (a typed control): whichever
        is the newest when the control's turn comes. `any_shown`: any answer to the
        newest question counts, since the front-end finds the messages the newest answer
        shows in when the control's turn comes (_of_turn). `on_turn`: told, once the
        control's turn has come and before anything is shown, the answer it acts on
        (None: a question that got none) and who asked it (whose ⏹ it is). `after`: run
        with the result before the next turn here begins (what it raises is the
        front-end's own), so the answer's last edit and the messages it shows in are
        done and recorded for whatever comes next.
        """
        return await self._in_order(
            ref,
            sink,
            lambda: self._control(
                ref, actor, action, sink, admin, answer_id, prefix, any_shown, on_turn
            ),
            actor.id,
            after=after,
        )

    async def _in_order(
        self,
        ref: ChannelRef,
        sink: ReplySink,
        run: Callable[[], Awaitable[TurnResult]],
        asker: str,
        post_id: str = "",
        admitted: Callable[[], Awaitable[bool]] | None = None,
        after: AfterTurn | None = None,
    ) -> TurnResult:
        """`run` once the conversation's turns before it have ended (then `after`, in its
        place still); a failure before its answer shows is told in the channel (after:
        the answer shows how it ended). A question (its platform message `post_id`) that
        waits is recorded meanwhile, if its asker is `admitted`. Stoppable from now on by
        `asker` (or an admin): while it waits, by `stop_waiting`; once it holds its place,
        as the answer being written."""
        before = self._held_back.pop((ref, post_id), None) if post_id else None
        if before is not None:  # held back in its front-end till now (waiting_before)
            self._unqueue(ref, before)
            if before.stopped_by:  # stopped or deleted as its front-end decided on it
                return await self._not_asked(ref, post_id, before, sink)
        running = Running(asker, post=post_id)  # no task, no database: a burst stays cheap
        queued = False
        held: Running | None = None
        if self._order.busy(ref):
            if admitted is not None:
                self.waiting.note(ref, post_id, admitted, asker)
            self._queued.setdefault(ref, {})[running] = None
            queued = True
        try:
            async with self._order.hold(ref):
                held = self._unqueue(ref, running) if queued else running
                running.preparing()  # a stop from now on is kept until the request is sent
                self._running[ref] = running
                try:
                    result = await self._hold(ref, sink, run, post_id)
                finally:
                    if self._running.get(ref) is running:
                        del self._running[ref]
                if after is not None:
                    with self._end_shown(ref):
                        await after(result)
                return result
        except asyncio.CancelledError:
            # Stopped while it waited (stop_waiting): its own, and nobody else's too.
            if held is not None or not running.stopped_here():
                raise
            return await self._not_asked(ref, post_id, running, sink)
        finally:
            if queued and held is None:
                self._unqueue(ref, running)

    async def _not_asked(
        self, ref: ChannelRef, post_id: str, running: Running, sink: ReplySink
    ) -> TurnResult:
        """A question stopped while it waited (stop_waiting): said in `sink`, not asked; one
        deleted meanwhile: gone without a word, as from the chat."""
        if post_id:
            self.waiting.done(ref.platform, post_id)
        if running.deleted:
            log.info("a question in %s was deleted while it waited: not asked", ref)
            return TurnResult("", None, called_provider=False, ignored=True)
        log.info("a turn in %s was stopped while it waited: not asked", ref)
        try:
            return await _notice(sink, STOPPED_BEFORE)
        except _NotShown as err:  # the front-end's own error, to say as it does
            raise _cause(err) from None

    def _unqueue(self, ref: ChannelRef, running: Running) -> Running:
        """`running` no longer waits in conversation `ref`."""
        queued = self._queued.get(ref)
        if queued is not None:
            queued.pop(running, None)
            if not queued:
                del self._queued[ref]
        return running

    async def _hold(
        self,
        ref: ChannelRef,
        sink: ReplySink,
        run: Callable[[], Awaitable[TurnResult]],
        post_id: str,
    ) -> TurnResult:
        """`run`, holding the conversation's place in its turn order."""
        if post_id:  # noted if it waited: here, or in its front-end (waiting_before)
            self.waiting.done(ref.platform, post_id)
        if self._closing is not None:  # waited for one a shutdown stopped, or came after
            return await _notice(sink, self._closing)
        try:
            return await run()
        except _NotShown as err:  # the front-end's own error, to say as it does
            raise _cause(err) from None
        except Exception as err:
            if ref in self._showing:
                raise
            return await self._failed_before(ref, sink, err)
        finally:
            # A turn that failed midway keeps its reservation: it counts at its
            # estimate, and the next start settles it.
            self._reserved.pop(ref, None)
            self._showing.discard(ref)

    async def _failed_before(self, ref: ChannelRef, sink: ReplySink, err: Exception) -> TurnResult:
        """A turn or control that failed before the model was asked: said to the asker,
        and what it reserved released. A bug is logged by kind and place, and said
        without its message (never a traceback)."""
        if isinstance(err, NotConnectable | SecretUnreadable | Refused):
            text = str(err)
        elif isinstance(err, StoreError):
            text = unstored(err)
        else:
            log.error("a turn in %s failed before its answer: %s", ref, failure(err))
            text = went_wrong(err)
        await self._release(ref)
        try:
            return await _notice(sink, text)
        except _NotShown as failed:  # the front-end's own error, to say as it does
            raise _cause(failed) from None

    def ordered(self, ref: ChannelRef) -> AbstractAsyncContextManager[None]:
        """Hold this conversation's turn order (a command that must not overtake a turn)."""
        return self._order.hold(ref)

    @contextlib.contextmanager
    def waiting_before(
        self,
        ref: ChannelRef,
        post_id: str,
        asker: Callable[[], Awaitable[Actor | None]],
        sender: str = "",
    ) -> Iterator[HeldBack]:
        """A question (its platform message `post_id`, sent by `sender`) that waits in its
        front-end before `turn`, behind another message of its conversation: recorded
        meanwhile, as `turn` records one waiting there, if `asker` names who asked it
        (None: it is not one to answer) and they may chat; behind a command running
        there, held where a stop and its deletion reach it (HeldBack.hold). `turn` takes
        it over; the record goes when its turn begins, or when the block ends without one."""
        held = HeldBack(
            asker,
            lambda asked_by: self._hold_back(ref, post_id, asked_by),
            lambda stopped, sink: self._not_asked(ref, post_id, stopped, sink),
        )

        async def admitted() -> bool:
            actor = await held.actor()
            return actor is not None and await self._may_chat(ref, actor)

        self.waiting.note(ref, post_id, admitted, sender)
        try:
            yield held
        finally:
            running = held.running
            if running is not None and self._held_back.get((ref, post_id)) is running:
                del self._held_back[(ref, post_id)]
                self._unqueue(ref, running)
            self.waiting.done(ref.platform, post_id)

    def _hold_back(self, ref: ChannelRef, post_id: str, asker: str) -> Running:
        """A question held back in its front-end, where stop_waiting and a deletion reach it
        (`turn` takes it over): the current task's, to cancel while it waits."""
        running = Running(asker, post=post_id)
        if self.was_deleted(ref.platform, post_id, asker):  # while who asks was looked up
            running.preparing()  # not cut: stopped already, and left at once
            running.gone(QUESTION_DELETED)
            return running
        self._queued.setdefault(ref, {})[running] = None
        self._held_back[(ref, post_id)] = running
        return running

    async def attachment_refusal(
        self, attachment: Attachment, attached: Sequence[Attachment] = ()
    ) -> str | None:
        """Why a message could not take this file (too large, binary, unreadable, one
        image too many beside the files `attached` already), or None: for a front-end
        that attaches files before the message is written."""
        too_many = count_refusal(
            [*attached, attachment], self._limits.max_images, self._limits.max_attachment_bytes
        )
        if too_many is not None:
            return too_many
        try:
            async with self._reading_files.reading(_LOCAL_FILES):
                await prepare_attachments(
                    [attachment],
                    max_images=self._limits.max_images,
                    max_bytes=self._limits.max_attachment_bytes,
                    # Only whether it can be read: a PDF's pages stop at its first text (the
                    # turn reads what its budget takes).
                    text_budget=1,
                )
        except Refused as err:
            return str(err)
        return None

    def stop(self, ref: ChannelRef, why: str = STOPPED) -> bool:
        """End the answer being written in this conversation now (one still prepared is
        not sent); False when none is."""
        running = self._running.get(ref)
        if running is None:
            return False
        running.stop(why)
        return True

    def stop_waiting(self, ref: ChannelRef, asker: str) -> int:
        """Stop `asker`'s turns waiting behind another in this conversation: each says it
        stopped, and is not asked. How many."""
        mine = [r for r in self._queued.get(ref, ()) if r.asker == asker and not r.stopped_by]
        for running in mine:
            running.stop(STOPPED)
        return len(mine)

    async def wind_down(self, stopped: str, not_asked: str, patience: float) -> None:
        """Stop every answer being written (as /stop does, saying `stopped`); the turns
        waiting for them, and any that come after, say `not_asked` instead of asking the
        model. Waits up to `patience` s for each answer to be stored, charged and shown
        as ended, and for the waiting turns to have said so."""
        self._closing = not_asked
        loop = asyncio.get_running_loop()
        self._store_by = loop.time() + max(0.0, patience - _SHOW_TIME)
        for running in list(self._running.values()):
            running.stop(stopped)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._order.idle(), patience)
        await self.waiting.drain(patience)

    async def cut_off(self, ref: ChannelRef) -> bool:
        """No answer is being written or ended here, and the newest turn never finished (the
        process writing it went away before or after its first save): a ⏹ still shown on
        it can only be taken away."""
        if ref in self._answering:
            return False
        history = await self._store.history(ref, HISTORY_ROWS)
        if not history:
            return False
        newest = history[-1]
        if newest.role is Role.USER:  # asked, never answered
            return newest.state is not TurnState.FAILED
        return newest.state in (TurnState.STREAMING, TurnState.INTERRUPTED)

    @contextlib.contextmanager
    def _ending(self, ref: ChannelRef) -> Iterator[None]:
        """While conversation `ref`'s answer is written and ended (wind_down, cut_off)."""
        over = self._answering[ref] = asyncio.get_running_loop().create_future()
        try:
            yield
        finally:
            if self._answering.get(ref) is over:
                del self._answering[ref]
            over.set_result(None)

    @contextlib.contextmanager
    def _end_shown(self, ref: ChannelRef) -> Iterator[None]:
        """While conversation `ref`'s turn is under way: once it no longer runs, its answer
        has ended and is being stored and shown (showing_end)."""
        self._showing_end.add(ref)
        try:
            yield
        finally:
            self._showing_end.discard(ref)

    def showing_end(self, ref: ChannelRef) -> bool:
        """The answer here has ended (a stop finds nothing to stop), and its end is still
        being shown: the platform is slow to take it."""
        return ref in self._showing_end and ref not in self._running

    def asker(self, ref: ChannelRef) -> str | None:
        """Whom the answer being written in this conversation is for; None when none is."""
        running = self._running.get(ref)
        return None if running is None else running.asker

    # -- a new question ---------------------------------------------------------------------

    async def _turn(self, incoming: Incoming, sink: ReplySink, prefix: str) -> TurnResult:
        ref = incoming.channel
        try:
            await self._store.prefetch(ref, HISTORY_ROWS)  # one round trip, who may chat too
        except StoreError as err:
            if err.transient:  # its retries waited the whole budget already: said now
                return await _notice(sink, unstored(err))
            # Otherwise the reads below say what failed, if it lasts.
        if not await self._admitted(ref, incoming.actor):
            return TurnResult("", None, called_provider=False, ignored=True)
        # An admin of this channel by a bot-admin role too (its grants read just now).
        incoming = replace(incoming, actor=await self.admin_here(ref, incoming.actor))
        posted = post_key(ref.platform, incoming.message_id)
        if self.was_deleted(ref.platform, incoming.message_id, incoming.actor.id):
            log.info("a message in %s was deleted before its turn: not asked", ref)
            return TurnResult("", None, called_provider=False, ignored=True)
        edited = self._edits.take(posted, incoming.actor.id) if posted else None
        text = (incoming.text if edited is None else edited).strip()
        replied = incoming.replied.attachments if incoming.replied is not None else ()
        if not strip_invisible(text) and not incoming.attachments and not replied:
            return await _notice(sink, "Ask me something with your message.")
        if len(text) > MAX_INPUT_CHARS:
            return await _notice(
                sink,
                f"That message is too long for me ({len(text):,} characters; the limit is "
                f"{MAX_INPUT_CHARS:,}). Shorten it or split it up.",
            )
        if holds_key(text):
            return await _held_secret(sink, "message", prefix)
        # Files alone, no question: a character card or preset among them is for its
        # import (spot_settings), and the model is not asked; nor is a room that could
        # not answer told so first (a card is how many a room starts).
        bare = not strip_invisible(text)
        try:
            admin = self._gate.operator.admin(incoming.actor)
            try:
                config, endpoint = await self._ready(ref, prefix, admin)
            except _Blocked:
                if bare and incoming.attachments:
                    async with self._reading_files.reading((ref.platform, incoming.actor.id)):
                        await self._spot(incoming.attachments, Downloads())
                raise
            history = await self._history(ref)
            files = await self._files(incoming)
            if bare and not files:  # a reply to what it holds already
                return await _notice(sink, "Ask me something with your message.")
            attached = await self._attachments(incoming, files, config, text, bare=bare)
            # An edit that came while its files were read is asked, as one that came
            # while it waited its turn is (Edits.take: its checks were made).
            if files and (later := self._edits.take(posted, incoming.actor.id) if posted else None):
                text = later.strip()
                if holds_key(text):
                    return await _held_secret(sink, "message", prefix)
            content = text + attached.text if text else attached.text.lstrip("\n")
            if (
                holds_key(attached.text)
                or any(holds_key(edge) for edge in attached.edges)  # one cut in two
                or any(holds_key(i.name) for i in attached.images)
            ):
                return await _held_secret(sink, "file", prefix)
            # Every secret stored for the channel, not only the one its source sends now:
            # a channel on OpenAI sent its Claude key, or its proxy password, pasted in.
            secrets = await channel_secrets(self._store, ref)
            cut_in_two = any(holds_secret(edge, secrets) for edge in attached.edges)
            if cut_in_two or holds_secret(content, secrets):
                # Said as any key is: a reply naming this channel's own secret would tell
                # a member which of the words they sent is the password. Who sent it is
                # logged, for the admins to make a new one.
                log.warning(
                    "a message from %s in %s held a key or password stored for it: it "
                    "was not sent or kept; if others could see it, make a new one",
                    incoming.actor.id,
                    ref,
                )
                in_file = cut_in_two or holds_secret(attached.text, secrets)
                what = "file" if in_file else "message"
                return await _held_secret(sink, what, prefix)
            question = HistoryEntry(
                Role.USER,
                content,
                author=incoming.actor.display_name,
                tokens=estimate_tokens(content),
                images=tuple(ImageRef(i.sha256, i.name, i.media_type) for i in attached.images),
                author_id=incoming.actor.id,
                # Text files' text is part of it: an edit keeps it as it is (images are
                # apart: a picture's question reads as edited).
                files=bool(attached.text),
            )
            # Asked when any image could go out: an earlier message's too (the newest
            # turns' images are sent again), or a model that cannot see got them later.
            images = attached.images or any(e.images for e in history)
            sees = not images or await self._sees(ref, config)
            # Built before the question is stored, so the charge holds what is sent (a
            # character card's text and lore too); one that cannot fit is not sent, and
            # not charged.
            request, overflow, lore = await self._requests.build(
                ref, config, [*history, question], sees, fresh=attached.images
            )
            # The quota charge runs in the transaction that stores the question: one
            # commit before the model is asked, and a refused question is not stored.
            charge = None
            if overflow is None:
                charge = await self._question_charge(
                    ref, incoming.actor.id, config, request, prefix
                )
            stored = await self._store.add_messages(
                ref, [question], attached.images, charge, posts=[(incoming.message_id,)]
            )
            if charge is not None and charge.refusal is not None:
                refused = charge.refusal
                log.info("a turn in %s was refused by %s", ref, refused.named)
                if not self._refusal_due(ref, incoming.actor.id, refused.named):
                    return TurnResult("", None, called_provider=False, ignored=True)
                return TurnResult(
                    refused.text,
                    None,
                    called_provider=False,
                    refusal=refused.text,
                    refused_by=refused.named,
                )
            if charge is not None and charge.reserved is not None:
                self._reserved[ref] = charge.reserved
            (question,) = stored
        except _Blocked as blocked:  # the log said why (_log_blocked)
            return await _notice(sink, str(blocked))
        except SettingsFiles as sent:
            log.info("a message in %s held only a character card or preset: not asked", ref)
            return await _notice(sink, self._settings_hint(ref, incoming.actor, sent.kinds, False))
        preface = ""
        if attached.images and not sees and self._tell_once(ref):
            if config.value("vision") == "off":  # an admin's choice, not a guess
                off = params_as(prefix, ref.platform, "vision", "default")
                why = f"images are turned off here ({off}: automatic)"
            else:
                on = params_as(prefix, ref.platform, "vision", "on")
                why = (
                    f"{shown_id(config.model or '')} is not known to see images. If it "
                    f"can, an admin turns it on with {on}"
                )
            preface = f"(The image was not sent: {why}.)\n\n"
        if attached.spotted:  # cards or presets among other files, with no question
            hint = self._settings_hint(ref, incoming.actor, attached.spotted, True)
            preface += f"({' '.join(hint.splitlines())})\n\n"
        if attached.cut:  # said each time: it is about this message's own files
            preface += f"{attached.cut_note}\n\n"
        cut = self._cut_off.get(ref)
        if cut is not None and any(e.id == cut for e in history):  # not forgotten since
            preface = _CUT_OFF + preface
        result = await self._answer(
            ref,
            config,
            endpoint,
            request,
            sink,
            question,
            prefix,
            preface=preface,
            overflow=overflow,
            lore=lore,
        )
        if attached.images:
            await self.prune_images()
        return result

    # -- the newest turn again ----------------------------------------------------------------

    async def _control(
        self,
        ref: ChannelRef,
        actor: Actor,
        action: Control,
        sink: ReplySink,
        admin: bool,
        answer_id: int | None,
        prefix: str,
        any_shown: bool,
        on_turn: OnTurn | None,
    ) -> TurnResult:
        if not operator_allows(ref, actor, self._gate.operator):
            return await _notice(sink, NOT_HERE)
        if not await self._admitted(ref, actor):
            return await _notice(
                sink, f"You may not chat here; an admin of this {ref.place} can allow you."
            )
        history = await self._history(ref)
        question, answer = _newest_turn(history)
        running = self._running.get(ref)
        if running is not None and question is not None:
            # From now on a deletion of that question, or of the answer it changes, finds
            # this control (one that came while it read them, too).
            running.answers(question.id, changes=answer is not None)
            if question.author_id:
                # Its asker may stop it (as an admin may), whoever pressed: an admin's 🔄
                # on someone's answer is still theirs to stop.
                running.asker = question.author_id
        newest = history[-1] if history else None
        if (
            newest is not None
            and newest.role is Role.ASSISTANT
            and newest.reply_to is not None
            and (question is None or newest.reply_to != question.id)
        ):
            # A character's greeting is the newest message (in a new channel, or after an
            # import into one with a conversation): the answers before it stay as they
            # are (a new one would go after the greeting), and its alternate greetings
            # are its swipes. The admin who imported it asked for it: as with any answer,
            # only they (or another admin) change what the conversation starts from.
            if answer_id is not None and not await self._of_turn(
                ref, newest.reply_to, newest.id, answer_id, any_shown
            ):
                return await _notice(sink, _NOT_NEWEST)
            if action not in (Control.NEXT, Control.PREVIOUS):
                return await _notice(
                    sink,
                    "The character's greeting is the newest message here: ask something, "
                    "then its answer can be regenerated or continued.",
                )
            if not admin:
                return await _notice(
                    sink,
                    f"Only an admin of this {ref.place} can change the character's greeting.",
                )
            await _told(on_turn, newest.id, None)
            return await self._swipe(ref, newest.reply_to, action, sink, prefix, greeting=True)
        if question is None:
            return await _notice(sink, "There is nothing to do that to yet: ask something first.")
        shown_id = answer.id if answer is not None else None
        if answer_id is not None and not await self._of_turn(
            ref, question.id, shown_id, answer_id, any_shown
        ):
            return await _notice(sink, _NOT_NEWEST)
        if not admin and not _asked_by(question, actor):
            who, place = _asker_named(question), ref.place
            return await _notice(sink, f"Only {who} or an admin of this {place} can do that.")
        # What the front-end rewrites: found now, not at the press.
        await _told(on_turn, answer.id if answer is not None else None, question.author_id)
        if action in (Control.NEXT, Control.PREVIOUS):
            assert question.id is not None
            return await self._swipe(
                ref, question.id, action, sink, prefix, asker=question.author_id
            )
        ended_early = answer is not None and answer.state in _ENDED_EARLY
        asked_again = False  # a failed question /retry asks again, once it goes out
        if action is Control.RETRY and not ended_early:
            # An answer cut off (an error mid-stream, a stop, a restart) is asked for
            # again like /regenerate; a question that got none (an error before any
            # text, or a turn that ended before the answer's first save) is asked again.
            if answer is not None and question.state is not TurnState.FAILED:
                return await _notice(
                    sink,
                    f"The last question has an answer; {prefix}regenerate asks for another one.",
                )
            if question.state is TurnState.FAILED:
                question = replace(question, state=TurnState.DONE, error=None)
                asked_again = True
        elif answer is None:
            return await _notice(sink, _no_answer(prefix))
        try:
            config, endpoint = await self._ready(ref, prefix, admin)
        except _Blocked as blocked:
            return await _notice(sink, str(blocked))
        sees = await self._sees(ref, config)
        continuing = answer if action is Control.CONTINUE else None
        if continuing is not None:  # the answer so far goes with the request, to go on from
            request, overflow, lore = await self._requests.build(ref, config, history, sees, True)
        else:
            # Found as the entry itself: entries compare by their words, so an earlier
            # answer saying the same ("Hello there!") cut the history there, and the
            # model was asked an older question for this one.
            at = next((i for i, e in enumerate(history) if e is answer), len(history))
            before = history[:at]
            request, overflow, lore = await self._requests.build(ref, config, before, sees)
        if overflow is None:  # one that cannot fit is not sent: nothing to charge
            refused = await self._charge(ref, actor.id, config, request, prefix)
            if refused is not None:
                return await _notice(sink, refused.text)  # a control's notice is the presser's
        if asked_again:
            # Only now: a retry refused (a limit, the endpoint blocked) leaves it failed,
            # out of what the model reads with the next question.
            await self._store.update_message(ref, question)
        return await self._answer(
            ref,
            config,
            endpoint,
            request,
            sink,
            question,
            prefix,
            overflow=overflow,
            continuing=continuing,
            replacing=answer if continuing is None else None,
            variant=True,
            by=actor.id,
            lore=lore,
        )

    async def _of_turn(
        self,
        ref: ChannelRef,
        question_id: int | None,
        shown_id: int | None,
        answer_id: int,
        any_shown: bool,
    ) -> bool:
        """Whether a button's or reaction's `answer_id` is of the newest turn (a greeting's
        too): its question (one that got no answer), the answer shown (`shown_id`), or,
        with `any_shown`, another answer to it. A control that came first (🔄 pressed by
        someone else too, a ⏩ on an answer being regenerated, ▶ on a greeting) changed
        what that message shows while this one waited its turn: it acts on the message
        as it shows now, as a control on an answer being written does once it ends (an
        older turn's answer is never one of these). Only where the front-end asks for it
        (Matrix): a Discord button names the answer it was pressed on, and one pressed
        again while the first runs (a double click) is refused rather than asking the
        model twice."""
        if answer_id in (question_id, shown_id):
            return True
        if question_id is None or not any_shown:
            return False
        alternatives = await self._store.alternatives(ref, question_id)
        return any(entry.id == answer_id for entry, _ in alternatives)

    async def _swipe(
        self,
        ref: ChannelRef,
        question_id: int,
        action: Control,
        sink: ReplySink,
        prefix: str,
        *,
        greeting: bool = False,
        asker: str | None = None,
    ) -> TurnResult:
        self._cut_off.pop(ref, None)  # what is shown changes: no word of a cut answer later
        answers = await self._store.alternatives(ref, question_id)
        if len(answers) < 2:
            if greeting:
                return await _notice(sink, "The character's card has only this greeting.")
            if not answers:  # an error before any text: nothing to swipe to
                return await _notice(sink, _no_answer(prefix))
            return await _notice(sink, "There is only one answer here; regenerate for another.")
        shown = next((i for i, (_, visible) in enumerate(answers) if visible), len(answers) - 1)
        step = 1 if action is Control.NEXT else -1
        wanted = shown + step
        if not 0 <= wanted < len(answers):
            edge = "last" if step > 0 else "first"
            return await _notice(sink, f"This is the {edge} of {len(answers)} answers.")
        entry = answers[wanted][0]
        assert entry.id is not None
        await self._store.show_answer(ref, question_id, entry.id)
        self._showing.add(ref)
        await sink.finish(entry.content, "", entry.error)
        shown_of = (wanted + 1, len(answers))
        return TurnResult(
            entry.content, entry.error, False, entry.id, shown_of, greeting=greeting, asker=asker
        )

    # -- what every answer goes through -------------------------------------------------------

    async def _ready(
        self, ref: ChannelRef, prefix: str, admin: bool
    ) -> tuple[ChannelConfig, Endpoint]:
        """The channel's config and endpoint; _Blocked says why it cannot answer now (to
        an `admin`, as the step to take)."""
        config = await self._config(ref, prefix)
        who = self._gate.operator.who_admins(ref)
        blocked = blocked_reason(config, prefix, admin, place=ref.place, who=who)
        if blocked:
            member = blocked_reason(config, prefix, place=ref.place, who=who)
            self._log_blocked(ref, member or blocked)
            raise _Blocked(blocked)
        try:
            ready = config, await endpoint_for(self._store, ref, config, prefix)
        except NotConnectable as err:
            self._log_blocked(ref, err.said_to(False))
            raise _Blocked(err.said_to(admin)) from None
        self._log_blocked(ref, None)
        return ready

    def _log_blocked(self, ref: ChannelRef, why: str | None) -> None:
        """Why `ref` cannot answer (`why`, as said to a member), at INFO once, and again
        when it changes or the channel can answer again (None); the same again at DEBUG:
        a busy channel whose endpoint is down wrote the line for every message."""
        logged = self._blocked_logged
        if why is None:
            if logged and logged.pop(ref, None) is not None:
                log.info("%s can answer again", ref)
            return
        said = " ".join(redact(why).split())  # one line: the reason's own breaks joined
        if said == logged.get(ref):
            log.debug("turn in %s not sent: %s", ref, said)
            return
        logged.pop(ref, None)  # the newest last
        logged[ref] = said
        while len(logged) > _BLOCKED_KEPT:
            del logged[next(iter(logged))]
        log.info("turn in %s not sent: %s (said once until it changes)", ref, said)

    async def _answer(
        self,
        ref: ChannelRef,
        config: ChannelConfig,
        endpoint: Endpoint,
        request: ChatRequest,
        sink: ReplySink,
        question: HistoryEntry,
        prefix: str,
        *,
        preface: str = "",
        overflow: Overflow | None = None,
        continuing: HistoryEntry | None = None,
        replacing: HistoryEntry | None = None,
        variant: bool = False,
        by: str | None = None,
        lore: Timers | None = None,
    ) -> TurnResult:
        """Stream an answer to `question` (stoppable while it runs), store it, show how it
        ended, record its usage (charged to `by`, else the asker). A `variant`
        (regenerated, retried, continued) becomes the question's shown answer and says
        which of its answers it is; one that ends before any text leaves the answer it
        was `replacing` shown (with how the attempt ended). A request that cannot fit the
        context set here (`overflow`), or one reached after a shutdown began, is not sent:
        it ends as an error saying why. A request sent stores its lorebook's timed effects
        (`lore`) first, as SillyTavern sets them when it builds the prompt it sends."""
        # A turn that was preparing when a shutdown began (wind_down stops only the
        # answers already written) must not ask the model either.
        not_sent = overflow.text(prefix, ref.platform) if overflow is not None else self._closing
        stopped = False  # a stop came while the turn was prepared: nothing is sent
        # Any answer here now: the cut one is said or acted on.
        cut_off = self._cut_off.pop(ref, None)
        row = AnswerRow(
            self._store,
            ref,
            self._limits.save_every,
            reply_to=question.id,
            entry=continuing,
            posts=lambda: sink_posts(sink),
        )
        # Registered when the turn took its place (_in_order), so a stop while it was
        # prepared is not lost.
        running = self._running.get(ref) or Running(by or question.author_id or "")
        self._running[ref] = running
        running.question = question.id  # a control's, known since it read it (_control)
        self._showing.add(ref)
        provider = self._hub.provider(endpoint)
        # Until stored, charged and shown: what a shutdown waits for; and from when it no
        # longer runs until its end is shown, a stop finds that end on its way (not
        # "nothing here", whose ⏹ press would take the buttons the final edit brings).
        with self._ending(ref), self._end_shown(ref):
            try:
                if not_sent is None and lore is not None and question.id is not None:
                    if not running.stopped_by:  # stored only when the request is sent
                        await self._keep_timers(ref, lore.anchored(question.id))
                if running.deleted:  # its question (a control's answer) deleted meanwhile
                    return await self._deleted_before(ref, running.post, cut_off)
                if not_sent is None and (said := running.begin()) is not None:
                    not_sent, stopped = said, True
                if not_sent is not None:
                    # A stop: as one before the first word, but nothing was sent or charged.
                    state = TurnState.STOPPED if stopped else TurnState.DONE
                    outcome = Outcome(error=not_sent, state=state, failed=not stopped)
                else:
                    outcome = await stream_answer(
                        provider,
                        request,
                        Prefaced(sink, preface) if preface else sink,
                        row,
                        running,
                        secrets=provider.secrets(),
                        show_reasoning=config.show_reasoning,
                        answer_timeout=self._limits.answer_timeout,
                        max_chars=self._limits.max_answer_chars,
                        start=continuing.content if continuing else "",
                        prefix=prefix,
                        platform=ref.platform,
                        server=ref.has_server,
                        who=self._gate.operator.who_admins(ref),
                        asker=_asker_named(question),
                    )
            finally:
                if self._running.get(ref) is running:
                    del self._running[ref]
            kept = continuing or (replacing if not outcome.answer else None)
            if kept is not None and outcome.answer in ("", kept.content):
                # Stopped or failed before any new text: the answer stays as it was stored
                # (a finished one is not marked as cut, nor its question as failed); how
                # the attempt ended is shown under it.
                shown, answer_id, saved_note = kept.content, kept.id, ""
                reasoning = outcome.reasoning if continuing else ""  # not a failed attempt's
            else:
                saved_note = await self._settle(
                    ref, config, question, row, outcome, endpoint, variant, continuing
                )
                shown, answer_id, reasoning = outcome.answer, row.id, outcome.reasoning
            error = _error_shown(
                outcome, request, config, prefix, ref.platform, saved_note, not_sent is None
            )
            alternative = (1, 1)
            if variant and answer_id is not None and question.id is not None and not saved_note:
                alternative = await self._alternative(ref, question.id, answer_id)
            result = TurnResult(
                shown,
                outcome.error,
                True,
                answer_id,
                alternative,
                question.id,
                asker=question.author_id,
            )
            ended = getattr(sink, "ended", None)
            if ended is not None:  # controls for how it ended can go out with the final text
                ended(result)
            try:
                await sink.finish(preface + shown, reasoning, error)
            except Exception:
                # Its end never landed (an answer held back to its end has nothing else on
                # show): stored as cut, as an answer whose stream could not be shown is.
                if answer_id is not None and answer_id == row.id and not saved_note:
                    await self._unshown(ref, row, outcome)
                raise
            finally:  # the call cost what it cost, however showing it ended
                self._showing_end.discard(ref)  # shown (or given up): a ⏹ left is stale
                if not_sent is not None:  # no call: nothing to count
                    await self._release(ref)
                else:
                    await accounting.record(
                        self._store,
                        ref,
                        by or question.author_id or "",
                        endpoint,
                        request,
                        outcome,
                        start=continuing.content if continuing else "",
                        reserved=self._reserved.pop(ref, None),
                    )
            _log_end(
                ref, outcome, overflow=overflow is not None, stopped=stopped, sent=not_sent is None
            )
            return result

    async def _alternative(self, ref: ChannelRef, question: int, answer: int) -> tuple[int, int]:
        """Which of `question`'s answers `answer` is, of how many; (1, 1) when they cannot
        be counted."""
        try:
            answers = await self._store.alternatives(ref, question)
        except StoreError as err:  # the answer still ends; its place is unsaid
            log.warning("could not count the answers in %s: %s", ref, err)
            return (1, 1)
        ids = [entry.id for entry, _ in answers]
        if not ids:
            return (1, 1)
        at = ids.index(answer) + 1 if answer in ids else len(ids)
        return (at, len(ids))

    async def _deleted_before(self, ref: ChannelRef, post: str, cut_off: int | None) -> TurnResult:
        """A question deleted while its turn (or a control on its answer) was prepared, or
        the answer a control changes: nothing was sent, nothing is charged or shown (it is
        gone from the chat), and what a new question's turn stored of it goes (a stored
        one's deletion forgets it, once this turn has ended)."""
        if cut_off is not None:  # nothing said here: the next answer says it
            self._cut_off[ref] = cut_off
        await self._release(ref)
        log.info("a message in %s was deleted while its turn was prepared: not asked", ref)
        if post:  # a new question, stored by its turn meanwhile
            try:
                await self._store.forget_posted(ref, [post])
            except StoreError as err:
                log.warning("could not forget a deleted question in %s: %s", ref, err)
        return TurnResult("", None, called_provider=False, question_id=None, ignored=True)

    async def _keep_timers(self, ref: ChannelRef, lore: Timers) -> None:
        """Store the lorebook's timed effects; one the database refuses is logged and the
        answer goes on (its entries are then held as at the prompt before)."""
        try:
            await self._store.set_lore_timers(ref, lore.to_json())
        except StoreError as err:
            log.warning("could not store the lorebook's sticky and cooldown in %s: %s", ref, err)

    async def _unshown(self, ref: ChannelRef, row: AnswerRow, outcome: Outcome) -> None:
        """The stored answer could not be shown after all: kept as cut, not as read."""
        if outcome.failed:
            return  # stored as a failure already
        not_shown(outcome)
        try:
            await row.finish(outcome)
        except Exception as err:  # the platform's failure is what the front-end says
            log.warning("could not mark an answer in %s as not shown: %s", ref, failure(err))

    async def _config(self, ref: ChannelRef, prefix: str) -> ChannelConfig:
        """The channel's config, re-checked first when a passing failure blocks it."""
        config = await self._store.effective_config(ref)
        if recheck_due(config.status) and not config.bypass_status_check:
            who = self._gate.operator.who_admins(ref)
            await run_status_check(self._store, self._hub, ref, prefix, who=who)
            config = await self._store.effective_config(ref)
        self._log_passed_over(ref, config)
        return config

    def _log_passed_over(self, ref: ChannelRef, config: ChannelConfig) -> None:
        """Stored values the turn passes over (out of today's range), once per channel and
        setting: /settings says it to admins, the log to the operator."""
        for name, passed in config.passed_over.items():
            seen = f"{ref.scope_key(Scope.CHANNEL)} {name}"
            if seen in self._passed_over_logged:
                continue
            self._passed_over_logged.add(seen)
            field = REGISTRY.by_name[name]
            stored = ", ".join(f"{field.shown_stored(v)} ({where})" for where, v in passed)
            log.warning(
                "%s: stored %s %s is not a value it takes today (%s): not used",
                ref,
                name,
                stored,
                field.takes(),
            )

    async def _history(self, ref: ChannelRef) -> list[HistoryEntry]:
        unsaved = self._unsaved.pop(ref, None)
        if unsaved:  # the store may write again (a disk with room again)
            try:
                if gone := [u for u in unsaved if isinstance(u, int)]:
                    await self._store.forget_answers(ref, gone)
                for before in unsaved:
                    if isinstance(before, HistoryEntry):
                        await self._store.update_message(ref, before)
            except StoreError:
                self._unsaved[ref] = unsaved
                raise
        history = await self._store.history(ref, HISTORY_ROWS)
        if any(e.state is TurnState.STREAMING for e in history):
            # This conversation's turns run one at a time: nobody is writing these now.
            half = [e.id for e in history if e.state is TurnState.STREAMING and e.id]
            if await self._store.mark_interrupted(ref) and half:
                self._cut_off[ref] = half[-1]
            history = await self._store.history(ref, HISTORY_ROWS)
        if not history and ref.thread_id:
            history = await self._thread_start(ref)
        return history

    async def _thread_start(self, ref: ChannelRef) -> list[HistoryEntry]:
        """A thread started on one of the bot's answers, or on a question it answered
        (its root message, whose id the thread's is), begins with the turn it grew from:
        that question and answer are copied into its history, so "why that one?" there
        has something to be about.
        The copies are tied to the messages that show the originals: deleting those
        forgets them too. A thread that was reset starts empty."""
        turn = await self._store.shown_turn(ref, ref.thread_id)
        copied: list[HistoryEntry] = []
        for entry, posts in turn:
            asked = copied[-1].id if copied and entry.role is Role.ASSISTANT else None
            copy = replace(entry, id=None, reply_to=asked)
            copied += await self._store.add_messages(ref, [copy], posts=[posts])
        return copied

    async def _files(self, incoming: Incoming) -> tuple[Attachment, ...]:
        """The question's own files, then those of the message it replies to, as if
        attached to it; not when that message shows a turn of this conversation (a
        question stored with its files, an answer): the history holds them already."""
        replied = incoming.replied
        if replied is None or not replied.attachments:
            return incoming.attachments
        ref = incoming.channel
        where = ref.thread_id or ref.channel_id
        if ref in await self._store.posted(ref.platform, where, [replied.post]):
            return incoming.attachments
        return (*incoming.attachments, *replied.attachments)

    async def _attachments(
        self,
        incoming: Incoming,
        files: tuple[Attachment, ...],
        config: ChannelConfig,
        text: str,
        *,
        bare: bool = False,
    ) -> Prepared:
        """The files prepared for the question; SettingsFiles when it is `bare` (no
        text) and its own are character cards or presets alone."""
        if not files:
            return Prepared()
        tokens = history_budget(
            config.number("context"), config.number("max_tokens"), config.own_prompts, text
        )
        # Text files may take half of what the context has left (counted as the history
        # is: a Chinese file takes many more tokens a character than an English one).
        sender = (incoming.channel.platform, incoming.actor.id)
        own = len(incoming.attachments)  # _files: theirs last
        async with self._reading_files.reading(sender):
            downloads = Downloads()
            replied = len(files) - own
            spotted: tuple[SettingsKind, ...] = ()
            if bare:
                rest, spotted = await self._spot(files[:own], downloads)
                files = (*rest, *files[own:])
            prepared = await prepare_attachments(
                files,
                max_images=self._limits.max_images,
                max_bytes=self._limits.max_attachment_bytes,
                text_budget=tokens // 2,
                measure=estimate_tokens,
                replied=replied,
                downloads=downloads,
            )
            return replace(prepared, spotted=spotted) if spotted else prepared

    async def _spot(
        self, own: Sequence[Attachment], downloads: Downloads
    ) -> tuple[tuple[Attachment, ...], tuple[SettingsKind, ...]]:
        """spot_settings within this bot's limits (in a reading slot)."""
        limits = self._limits
        return await spot_settings(own, limits.max_images, limits.max_attachment_bytes, downloads)

    async def _sees(self, ref: ChannelRef, config: ChannelConfig) -> bool:
        listed = await self._store.cached_models(ref, config)
        return sees_images(config, listed)

    def _refusal_due(self, ref: ChannelRef, member: str, limits_named: str) -> bool:
        """Whether a refusal by `limits_named` (Refusal.named) is told to `member` in
        conversation `ref`: not while the same one told to them there is recent
        (REFUSAL_SECONDS). A member flooding past a limit would have the bot post one a
        message, each in the platform's rate limit that everyone else's answers there wait
        in too (a Discord channel's, a homeserver's). Another limit refusing them is news
        (waiting may no longer do), so it is told.

        Held from now while it is being shown (the flood goes on meanwhile), it is kept
        only once shown: `refusal_shown` says whether it was."""
        if ref.platform is Platform.CONSOLE:
            # One person at their own terminal, nobody else waiting on its output: each
            # line they type gets its answer, as a refusal is one.
            return True
        now = time.monotonic()
        key = (ref, member, limits_named)
        if self._refusal_shown.get(key, 0.0) > now:
            log.debug("a refusal in %s not told again: the last one is recent", ref)
            return False
        self._refusal_shown[key] = now + limits.REFUSAL_SECONDS
        self._refusal_shown.move_to_end(key)
        while len(self._refusal_shown) > _REFUSALS_KEPT:
            self._refusal_shown.popitem(last=False)
        return True

    def refusal_shown(self, ref: ChannelRef, member: str, limits_named: str, shown: bool) -> None:
        """The refusal `_refusal_due` let through was `shown` to `member` (from now on it
        is on show for REFUSAL_SECONDS), or not: Discord or the homeserver failed it, and
        the next one is told, not silenced for a refusal nobody saw."""
        key = (ref, member, limits_named)
        if not shown:
            self._refusal_shown.pop(key, None)
        elif key in self._refusal_shown:
            self._refusal_shown[key] = time.monotonic() + limits.REFUSAL_SECONDS

    def _tell_once(self, ref: ChannelRef) -> bool:
        """True the first time a channel hears that its model is not sent images."""
        key = str(ref.scope_key(Scope.CHANNEL))
        if key in self._told_no_vision:
            return False
        self._told_no_vision.add(key)
        return True

    async def prune_old_messages(self) -> int:
        """Messages past each conversation's newest KEPT_MESSAGES deleted; how many."""
        try:
            return await self._store.prune_old_messages(KEPT_MESSAGES, PRUNED_AT_ONCE)
        except StoreError as err:
            log.warning("could not delete old messages: %s", err)
            return 0

    async def prune_images(self) -> int:
        """Stored images past MEDIA_RETENTION_DAYS or over MEDIA_STORE_MB removed: after a
        turn that stored some, and now and then (Core.housekeeping); how many."""
        try:
            return await self._store.prune_images(
                self._limits.media_store_bytes, timedelta(days=self._limits.media_retention_days)
            )
        except StoreError as err:
            log.warning("could not prune stored images: %s", err)
            return 0

    async def _settle(
        self,
        ref: ChannelRef,
        config: ChannelConfig,
        question: HistoryEntry,
        row: AnswerRow,
        outcome: Outcome,
        endpoint: Endpoint,
        variant: bool,
        continuing: HistoryEntry | None,
    ) -> str:
        """Store how the turn ended; a note for the asker when that failed."""
        # A shutdown waits so long for it: past that, the database retrying (down, say)
        # would leave the answer showing ⏹ and no word when the process goes.
        deadline = asyncio.timeout_at(self._store_by)
        try:
            async with deadline:
                if not outcome.answer:
                    if row.id is None:
                        failed = replace(question, state=TurnState.FAILED, error=outcome.error)
                        await self._store.update_message(ref, failed)
                    return ""
                try:
                    await row.finish(outcome)
                except StoreError:
                    # As the note says: what was saved of it as it grew is forgotten before
                    # the next turn; a continued answer goes back to what it was.
                    if row.id is not None:
                        self._unsaved.setdefault(ref, []).append(continuing or row.id)
                    raise
        except TimeoutError:
            if not deadline.expired():
                raise
            log.warning("could not store the end of a turn in %s before the shutdown", ref)
            if not outcome.answer:
                return ""
            said = (
                "This answer could not be saved before the bot stopped (its database did "
                "not answer in time)."
            )
            if row.id is None:
                return f"{said} It will not be part of the history."
            # The next process marks the part saved as it grew as cut off, and says so.
            return f"{said} The part saved earlier is kept, marked as cut off."
        except StoreError as err:
            log.warning("could not store the end of a turn in %s: %s", ref, err)
            # Forgotten by this process; one started before it could be (the database
            # still unwritable) finds the part saved as it grew, and says it was cut off.
            return (
                f"This answer could not be saved ({err}) It will not be part of the history "
                "(if the bot restarts first, the part saved earlier is, marked as cut off)."
            )
        except Exception as err:  # a bug: the answer is still shown, with how it ended
            log.error("storing the end of a turn in %s failed: %s", ref, failure(err))
            return f"This answer could not be saved. {went_wrong(err)}"
        # Stored: what fails after this is about which answer is shown, or bookkeeping.
        try:
            if variant and question.id is not None and row.id is not None:
                await self._store.show_answer(ref, question.id, row.id)
        except StoreError as err:
            log.warning("could not show the new answer in %s: %s", ref, err)
            return (
                f"This answer is kept, but could not be made the one the history goes on "
                f"from ({err}) The one before it still is."
            )
        except Exception as err:  # a bug: the answer is still shown, with how it ended
            log.error("showing the new answer in %s failed: %s", ref, failure(err))
            return f"This answer is kept, but could not be made the one shown. {went_wrong(err)}"
        if not outcome.failed:  # it answered: a length or filter note is no fault
            try:
                await mark_working(self._store, ref, config, self._hub.base_in_use(endpoint))
            except StoreError as err:  # the last status check's verdict stays a while
                log.warning("could not record that %s answers: %s", ref, err)
            except Exception as err:  # a bug in bookkeeping: the answer stands as it is
                log.error("recording that %s answers failed: %s", ref, failure(err))
        return ""


# What a shutdown's patience keeps back for showing how an answer ended (the final edit).
_SHOW_TIME = 2.0

_CUT_OFF = (
    "(My last answer here was cut off when the bot stopped. It is kept only as far as it "
    "had been saved, which may be less than was shown.)\n\n"
)


def unstored(err: StoreError) -> str:
    """What an asker is told when the database cannot take or read what their question
    needs (down, locked, full): its own words, and that the model was not asked."""
    return f"{err} {NOT_SENT}"


class _Priced(TypedDict):
    """A turn's charge as usage.quota takes it, a new question's (guard) and a
    control's (charge) alike: the source and model it is charged under, its estimate."""

    source: str
    model: str
    estimate: TurnCost


def _priced(config: ChannelConfig, request: ChatRequest) -> _Priced:
    estimate = _estimate(config, request)
    return _Priced(source=config.source.value, model=config.model or "", estimate=estimate)


def _estimate(config: ChannelConfig, request: ChatRequest) -> TurnCost:
    """What a turn is charged before the model answers: the prompt its request sends
    (the request's own estimate: history, prompts, a character card's text and lore) and
    its answer (TurnCost)."""
    prompt = accounting.request_tokens(request)
    size, room = conversation_room(config.number("context"), config.number("max_tokens"))
    answer = size - room
    thinking = config.number("thinking_budget")
    if thinking and REGISTRY.by_name["thinking_budget"].applies_to(config.source):
        answer += thinking  # Claude may think this much on top (its request adds it)
    return turn_cost(prompt, answer)


# How an answer that did not come whole ended: /retry asks for it again.
_ENDED_EARLY = (TurnState.STOPPED, TurnState.INTERRUPTED)
_NOT_NEWEST = "Only the newest answer can change. Ask again, or use the newest one."


class _Blocked(Exception):
    """The channel cannot answer now; the message says why and what to do."""


def _newest_turn(history: list[HistoryEntry]) -> tuple[HistoryEntry | None, HistoryEntry | None]:
    """The newest question and the answer shown for it (None when it has none)."""
    for i in range(len(history) - 1, -1, -1):
        if history[i].role is Role.USER:
            after = [e for e in history[i + 1 :] if e.role is Role.ASSISTANT]
            return history[i], (after[0] if after else None)
    return None, None


def _sent_images(request: ChatRequest, config: ChannelConfig) -> bool:
    """Images went out only because an admin said the model reads them: the likeliest
    cause when such a turn fails."""
    forced = config.value("vision") == "on"
    return forced and any(m.images for m in request.messages)


# A refusal of a last assistant turn, in the provider's words (Claude's newer models:
# "This model does not support assistant message prefill").
_PREFILL_REFUSED = re.compile(r"(?<![A-Za-z0-9_])prefill", re.IGNORECASE)


def _error_shown(
    outcome: Outcome,
    request: ChatRequest,
    config: ChannelConfig,
    prefix: str,
    platform: Platform,
    saved_note: str,
    sent: bool,
) -> str | None:
    """The error shown under an answer: the outcome's, with the step likely to fix a failed
    call (vision, prefill; not for a turn refused before it was `sent`: nothing went out)
    and a note that the answer could not be saved; its commands as `platform` takes them."""
    error = outcome.error
    sent_failed = bool(error) and outcome.failed and sent
    if sent_failed and _sent_images(request, config):
        error = (
            f"{error}\nIt was sent images because {params_as(prefix, platform, 'vision')} is "
            f"on; if {shown_id(config.model or '')} cannot read them, an admin sets "
            f"{params_as(prefix, platform, 'vision', 'default')}."
        )
    elif sent_failed and error:
        if step := _prefill_step(error, request, config, prefix, platform):
            error = f"{error}\n{step}"
    if saved_note:
        error = f"{error}\n{saved_note}" if error else saved_note
    return error


def _log_end(
    ref: ChannelRef, outcome: Outcome, *, overflow: bool, stopped: bool, sent: bool
) -> None:
    """Why a turn was not sent, or the provider error it ended with."""
    if overflow:
        log.info("a turn in %s was not sent: it cannot fit the context set", ref)
    elif stopped:
        log.info("a turn in %s was not sent: stopped before the request", ref)
    elif not sent:
        log.info("a turn in %s was not sent: the bot is shutting down", ref)
    elif outcome.error and outcome.failed:
        # A failed turn ends STOPPED (what arrived is kept): only someone's /stop is no news.
        log.warning("a turn in %s failed: %s", ref, outcome.error)


def _prefill_step(
    error: str, request: ChatRequest, config: ChannelConfig, prefix: str, platform: Platform
) -> str:
    """What an admin changes when the model refuses the prefill a setting sent (newer
    Claude models take none): the assistant prefill, or continuing an answer as Claude's
    own start. "" when the refusal names no prefill, or none was sent."""
    if not _PREFILL_REFUSED.search(error):
        return ""
    steps = []
    by_prefill = REGISTRY.by_name["continue_prefill"].applies_to(config.source)
    if request.continue_answer and request.continue_by_prefill and by_prefill:
        off = params_as(prefix, platform, "continue_prefill", "off")
        steps.append(f"sets {off} (then it is asked to go on)")
    if request.prefill.strip():
        none = typed_as(("prompts",), (("name", "prefill"), ("text", "none")), platform, prefix)
        steps.append(f"removes the assistant prefill with {none}")
    if not steps:
        return ""
    where = "each is" if len(steps) > 1 else "it is"
    return (
        f"This model takes no prefill: an admin {' and '.join(steps)} "
        f"({prefix}settings says where {where} set)."
    )


def _asked_by(question: HistoryEntry, actor: Actor) -> bool:
    """Whether `actor` asked `question`: by id, or for one stored before ids were (before
    migration 0005), by name (it was anyone's to change)."""
    if question.author_id is not None:
        return question.author_id == actor.id
    return question.author is None or question.author.casefold() == actor.display_name.casefold()


def _asker_named(question: HistoryEntry) -> str:
    """Who asked `question`, as a sentence naming who may change its turn names them."""
    return literal(question.author) if question.author else "the person who asked"


def _no_answer(prefix: str) -> str:
    return f"The last question has no answer yet; {prefix}retry asks it again."


async def _notice(sink: ReplySink, text: str) -> TurnResult:
    await _say(sink, text)
    return TurnResult(text, None, called_provider=False)


async def _held_secret(sink: ReplySink, what: str, prefix: str) -> TurnResult:
    """A message or file holding a key or password: refused, and to be taken out."""
    text = held_secret(what, prefix)
    await _say(sink, text)
    return TurnResult(text, None, called_provider=False, held_secret=True)


async def _say(sink: ReplySink, text: str) -> None:
    """A word to the person instead of an answer, posted as a notice where the platform
    has them (Matrix's m.notice, which other bots leave unanswered). A platform that
    fails to take it raises _NotShown (its own error the cause)."""
    notice = getattr(sink, "notice", None)
    try:
        await (notice(text) if notice is not None else sink.finish(text))
    except Exception as err:
        raise _NotShown from err


class _NotShown(Exception):
    """The platform failed to show a notice: the front-end's to log, not the bot's bug."""


async def _told(on_turn: OnTurn | None, answer_id: int | None, asker: str | None) -> None:
    """ChatEngine.control's `on_turn`; what it raises is the front-end's own, to say as
    it says its other failures."""
    if on_turn is None:
        return
    try:
        await on_turn(answer_id, asker)
    except Exception as err:
        raise _NotShown() from err


def _cause(err: _NotShown) -> BaseException:
    cause = err.__cause__
    assert cause is not None  # _say raises it from the platform's error
    return cause
