"""One chat turn: config → history → request → provider stream → reply sink → persist.

The question is stored before the provider is asked, the answer as it grows, so a
crash leaves the turn marked interrupted rather than gone; a turn that ends with an
error says so in its stored rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Protocol

from bot.connection import (
    NotConnectable,
    blocked_reason,
    endpoint_for,
    mark_working,
    recheck_due,
    run_status_check,
)
from bot.conversation.attachments import Prepared, Refused, image_placeholder
from bot.conversation.attachments import prepare as prepare_attachments
from bot.conversation.budget import estimate_tokens, history_budget, trim_history
from bot.conversation.guard import AnswerGuard
from bot.conversation.reasoning import ThinkSplitter
from bot.conversation.vision import sees_images
from bot.fields import REGISTRY
from bot.providers import ChatRequest, Endpoint, Provider, ProviderError, ProviderHub
from bot.store import Store, StoreError
from bot.store.secrets import SecretUnreadable
from bot.types import (
    ChannelConfig,
    ChannelRef,
    ChatMessage,
    HistoryEntry,
    Image,
    ImageRef,
    Incoming,
    Role,
    Scope,
    TurnState,
)
from bot.types.secrets import looks_like_key

log = logging.getLogger("bot.conversation")

MAX_INPUT_CHARS = 32_000
_CHARS_PER_TOKEN = 3  # on the low side, so text files surely fit the context
HISTORY_ROWS = 200  # read bound; the token budget usually trims far earlier


@dataclass(frozen=True, slots=True)
class TurnLimits:
    """Bounds on one answer (operator settings)."""

    answer_timeout: float = 300.0  # seconds for the whole answer
    max_answer_chars: int = 100_000
    save_every: float = 2.0  # seconds between saves of a growing answer
    max_images: int = 4  # per message
    history_image_turns: int = 2  # newest turns with images that send them again
    max_attachment_bytes: int = 20 * 1024 * 1024
    media_store_bytes: int = 512 * 1024 * 1024
    media_retention_days: int = 30


class ReplySink(Protocol):
    """Where an answer goes while it streams. Front-ends implement it (or use PacedReply)."""

    async def typing(self) -> None: ...

    async def update(self, answer: str, reasoning: str = "") -> None: ...

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class TurnResult:
    answer: str
    error: str | None
    called_provider: bool


class _TurnOrder:
    """One FIFO lock per conversation, dropped when nobody waits on it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class _Prefaced:
    """A sink that shows a one-line note before the answer (not stored with it)."""

    def __init__(self, sink: ReplySink, preface: str) -> None:
        self._sink = sink
        self._preface = preface

    async def typing(self) -> None:
        await self._sink.typing()

    async def update(self, answer: str, reasoning: str = "") -> None:
        await self._sink.update(self._preface + answer, reasoning)

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        await self._sink.finish(self._preface + answer, reasoning, error)


class _Running:
    """The answer being written in one conversation, so it can be stopped from outside."""

    def __init__(self) -> None:
        self.task = asyncio.current_task()
        self.stopped_by = ""

    def stop(self, why: str) -> None:
        if not self.stopped_by and self.task is not None:
            self.stopped_by = why
            self.task.cancel()


@dataclass(slots=True)
class _Outcome:
    answer: str = ""
    reasoning: str = ""
    error: str | None = None
    state: TurnState = TurnState.DONE


class _AnswerRow:
    """The stored row of the answer being written: saved now and then, never twice at once."""

    def __init__(self, store: Store, ref: ChannelRef, every: float) -> None:
        self._store = store
        self._ref = ref
        self._every = every
        self._entry: HistoryEntry | None = None
        self._saved_len = 0
        self._last = time.monotonic()
        self._pending: asyncio.Task[None] | None = None

    def grew(self, text: str) -> None:
        """Save in the background when due; a slow database never holds the stream."""
        if len(text) == self._saved_len or time.monotonic() - self._last < self._every:
            return
        if self._pending is not None and not self._pending.done():
            return
        self._last = time.monotonic()
        self._saved_len = len(text)
        self._pending = asyncio.create_task(self._save(text))

    async def _save(self, text: str) -> None:
        entry = HistoryEntry(
            Role.ASSISTANT, text, tokens=estimate_tokens(text), state=TurnState.STREAMING
        )
        try:
            if self._entry is None:
                (self._entry,) = await self._store.add_messages(self._ref, [entry])
            else:
                self._entry = replace(entry, id=self._entry.id)
                await self._store.update_message(self._ref, self._entry, final=False)
        except StoreError as err:
            log.warning("could not save a growing answer in %s: %s", self._ref, err)

    async def finish(self, outcome: _Outcome) -> None:
        """Store how the answer ended (StoreError when that fails)."""
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
        entry = HistoryEntry(
            Role.ASSISTANT,
            outcome.answer,
            tokens=estimate_tokens(outcome.answer),
            error=outcome.error,
            state=outcome.state,
        )
        if self._entry is None:
            await self._store.add_messages(self._ref, [entry])
        else:
            await self._store.update_message(self._ref, replace(entry, id=self._entry.id))


class ChatEngine:
    def __init__(self, store: Store, hub: ProviderHub, limits: TurnLimits | None = None) -> None:
        self._store = store
        self._hub = hub
        self._limits = limits or TurnLimits()
        self._order = _TurnOrder()
        self._running: dict[str, _Running] = {}
        self._told_no_vision: set[str] = set()

    async def turn(self, incoming: Incoming, sink: ReplySink, prefix: str = "/") -> TurnResult:
        """Answer one message; turns of one conversation run in arrival order."""
        key = f"{incoming.channel}"
        async with self._order.hold(key):
            return await self._turn(incoming, sink, prefix, key)

    def ordered(self, ref: ChannelRef) -> AbstractAsyncContextManager[None]:
        """Hold this conversation's turn order (a command that must not overtake a turn)."""
        return self._order.hold(f"{ref}")

    def stop(self, ref: ChannelRef, why: str = "Stopped.") -> bool:
        """End the answer being written in this conversation now; False when none is."""
        running = self._running.get(f"{ref}")
        if running is None:
            return False
        running.stop(why)
        return True

    async def _turn(self, incoming: Incoming, sink: ReplySink, prefix: str, key: str) -> TurnResult:
        text = incoming.text.strip()
        if not text and not incoming.attachments:
            return await _notice(sink, "Ask me something with your message.")
        if len(text) > MAX_INPUT_CHARS:
            return await _notice(
                sink,
                f"That message is too long for me ({len(text):,} characters; the limit is "
                f"{MAX_INPUT_CHARS:,}). Shorten it or split it up.",
            )
        if looks_like_key(text):
            return await _notice(
                sink,
                "That looks like an API key, so I did not send it anywhere. Delete it from "
                f"the chat; admins store keys with {prefix}key set.",
            )
        ref = incoming.channel
        try:
            await self._store.prefetch(ref, HISTORY_ROWS)  # one round trip for the reads below
            config = await self._config(ref, prefix)
            blocked = blocked_reason(config, prefix)
            if blocked:
                return await _notice(sink, blocked)
            endpoint = await endpoint_for(self._store, ref, config, prefix)
            history = await self._history(ref)
            attached = await self._attachments(incoming, config, text)
            content = text + attached.text
            user = HistoryEntry(
                Role.USER,
                content,
                author=incoming.actor.display_name,
                tokens=estimate_tokens(content),
                images=tuple(ImageRef(i.sha256, i.name, i.media_type) for i in attached.images),
            )
            (user,) = await self._store.add_messages(ref, [user], attached.images)
            sees = not attached.images or await self._sees(ref, config)
            request = await self._request(config, history, user, attached.images, sees)
        except (NotConnectable, SecretUnreadable, Refused) as err:
            return await _notice(sink, str(err))
        except StoreError as err:
            return await _notice(sink, f"{err} Nothing was sent to the model.")
        preface = ""
        if attached.images and not sees and self._tell_once(ref):
            preface = (
                f"(The image was not sent: {config.model} is not known to see images. If it "
                f"can, an admin turns it on with {prefix}params vision on.)\n\n"
            )
        row = _AnswerRow(self._store, ref, self._limits.save_every)
        outcome = await self._stream(
            self._hub.provider(endpoint),
            request,
            _Prefaced(sink, preface) if preface else sink,
            config,
            endpoint_secrets(endpoint),
            row,
            key,
        )
        saved_note = await self._settle(ref, config, user, row, outcome, endpoint)
        error = outcome.error
        if saved_note:
            error = f"{error}\n{saved_note}" if error else saved_note
        await sink.finish(preface + outcome.answer, outcome.reasoning, error)
        if attached.images:
            await self._prune_images()
        if outcome.error and outcome.state is not TurnState.STOPPED:
            log.warning("turn in %s ended with a provider error: %s", ref, outcome.error)
        return TurnResult(outcome.answer, outcome.error, called_provider=True)

    async def _config(self, ref: ChannelRef, prefix: str) -> ChannelConfig:
        """The channel's config, re-checked first when a passing failure blocks it."""
        config = await self._store.effective_config(ref)
        if recheck_due(config.status) and not config.bypass_status_check:
            await run_status_check(self._store, self._hub, ref, prefix)
            config = await self._store.effective_config(ref)
        return config

    async def _history(self, ref: ChannelRef) -> list[HistoryEntry]:
        history = await self._store.history(ref, HISTORY_ROWS)
        if any(e.state is TurnState.STREAMING for e in history):
            # This conversation's turns run one at a time: nobody is writing these now.
            await self._store.mark_interrupted(ref)
            history = await self._store.history(ref, HISTORY_ROWS)
        return history

    async def _attachments(self, incoming: Incoming, config: ChannelConfig, text: str) -> Prepared:
        if not incoming.attachments:
            return Prepared()
        tokens = history_budget(
            config.number("context"), config.number("max_tokens"), config.system_prompt, text
        )
        # Text files may take half of what the context has left; the history keeps the rest.
        return await prepare_attachments(
            incoming.attachments,
            max_images=self._limits.max_images,
            max_bytes=self._limits.max_attachment_bytes,
            text_budget=tokens * _CHARS_PER_TOKEN // 2,
        )

    async def _sees(self, ref: ChannelRef, config: ChannelConfig) -> bool:
        listed = await self._store.cached_models(ref, config.source)
        return sees_images(config, listed)

    def _tell_once(self, ref: ChannelRef) -> bool:
        """True the first time a channel hears that its model is not sent images."""
        key = str(ref.scope_key(Scope.CHANNEL))
        if key in self._told_no_vision:
            return False
        self._told_no_vision.add(key)
        return True

    async def _prune_images(self) -> None:
        try:
            await self._store.prune_images(
                self._limits.media_store_bytes, timedelta(days=self._limits.media_retention_days)
            )
        except StoreError as err:
            log.warning("could not prune stored images: %s", err)

    async def _request(
        self,
        config: ChannelConfig,
        history: list[HistoryEntry],
        user: HistoryEntry,
        images: tuple[Image, ...],
        sees: bool,
    ) -> ChatRequest:
        # A question that got no answer stays in the history people see, but the model
        # gets one user turn at a time.
        usable = [
            e
            for e in history
            if e.state is not TurnState.FAILED and (e.content.strip() or e.images)
        ]
        budget = history_budget(
            config.number("context"),
            config.number("max_tokens"),
            config.system_prompt,
            user.content,
        )
        kept = [*trim_history(usable, budget), user]
        shown = await self._shown_images(kept[:-1]) if sees else {}
        shown[len(kept) - 1] = images if sees else ()
        authors = {e.author for e in kept if e.role is Role.USER and e.author}
        messages = []
        for i, entry in enumerate(kept):
            sent = shown.get(i, ())
            named = [image_placeholder(r.name) for r in entry.images[len(sent) :]]
            content = " ".join([entry.content, *named]) if named else entry.content
            messages.append(ChatMessage(entry.role, content, entry.author, sent))
        return ChatRequest(
            model=config.model or "",
            messages=tuple(messages),
            system_prompt=config.system_prompt,
            options=REGISTRY.request_options(config.values, config.source),
            multi_user=len(authors) > 1,
        )

    async def _shown_images(self, kept: list[HistoryEntry]) -> dict[int, tuple[Image, ...]]:
        """Images of the newest turns that had any, sent again (older ones are named)."""
        turns = self._limits.history_image_turns
        recent = [i for i, e in enumerate(kept) if e.images][-turns:] if turns > 0 else []
        if not recent:
            return {}
        refs = [r for i in recent for r in kept[i].images]
        data = await self._store.image_data(refs)
        shown: dict[int, tuple[Image, ...]] = {}
        for i in recent:
            found = [data[r.sha256] for r in kept[i].images if r.sha256 in data]
            # A turn with a pruned image is named in full, so its images stay in order.
            if len(found) == len(kept[i].images):
                pairs = zip(found, kept[i].images, strict=True)
                shown[i] = tuple(replace(img, name=r.name) for img, r in pairs)
        return shown

    async def _stream(
        self,
        provider: Provider,
        request: ChatRequest,
        sink: ReplySink,
        config: ChannelConfig,
        secrets: tuple[str, ...],
        row: _AnswerRow,
        key: str,
    ) -> _Outcome:
        """Stream the answer into the sink; a fault, a stop or a limit keeps what arrived."""
        limits = self._limits
        split = ThinkSplitter()
        answer, thought = AnswerGuard(secrets), AnswerGuard(secrets)
        show = config.show_reasoning
        out = _Outcome()
        running = self._running[key] = _Running()
        # "Typing…" goes out beside the request, not before it: a burst of mentions must
        # not queue its model requests behind the platform's typing calls.
        typing: asyncio.Task[None] | None = asyncio.create_task(_typing(sink))
        try:
            async with asyncio.timeout(limits.answer_timeout):
                async with aclosing(provider.stream_chat(request)) as deltas:
                    async for delta in deltas:
                        if typing is not None:  # shown text must not be followed by typing
                            await typing
                            typing = None
                        seen, thought_seen = len(split.answer), len(split.reasoning)
                        if delta.text:
                            split.feed(delta.text)
                        answer.feed(split.answer[seen:])
                        thought.feed(delta.reasoning + split.reasoning[thought_seen:])
                        if len(answer.text) > limits.max_answer_chars:
                            out.state = TurnState.STOPPED
                            out.error = (
                                f"The answer passed {limits.max_answer_chars:,} characters, "
                                "so it stops here."
                            )
                            break
                        if delta.text or (delta.reasoning and show):
                            await sink.update(answer.text, thought.text if show else "")
                        row.grew(answer.text)
        except TimeoutError:
            out.state = TurnState.STOPPED
            out.error = (
                f"The answer took longer than {limits.answer_timeout:g} s, so it stops here."
            )
        except ProviderError as err:
            out.state = TurnState.STOPPED
            out.error = err.user_message
        except asyncio.CancelledError:
            if not running.stopped_by or running.task is None:
                raise
            running.task.uncancel()
            out.state = TurnState.STOPPED
            out.error = running.stopped_by
        finally:
            if self._running.get(key) is running:
                del self._running[key]
            if typing is not None:
                typing.cancel()
        seen = len(split.answer)
        split.finish()  # text held back in case a tag was starting
        answer.feed(split.answer[seen:])
        out.answer = answer.cut(limits.max_answer_chars)
        out.reasoning = thought.finish() if show else ""
        if not out.answer and not out.error:
            out.error = "The model returned an empty answer. Try again or rephrase."
        return out

    async def _settle(
        self,
        ref: ChannelRef,
        config: ChannelConfig,
        user: HistoryEntry,
        row: _AnswerRow,
        outcome: _Outcome,
        endpoint: Endpoint,
    ) -> str:
        """Store how the turn ended; a note for the asker when that failed."""
        try:
            if outcome.answer:
                await row.finish(outcome)
                if outcome.error is None:
                    base = self._hub.base_in_use(endpoint)
                    await mark_working(self._store, ref, config, base)
            else:
                failed = replace(user, state=TurnState.FAILED, error=outcome.error)
                await self._store.update_message(ref, failed)
        except StoreError as err:
            log.warning("could not store the end of a turn in %s: %s", ref, err)
            return f"This answer could not be saved ({err}) It will not be part of the history."
        return ""


def endpoint_secrets(endpoint: Endpoint) -> tuple[str, ...]:
    """The secrets this endpoint knows, so its answers can be cleaned of them."""
    values = (endpoint.api_key, endpoint.proxy_password)
    return tuple(v.reveal() for v in values if v)


async def _typing(sink: ReplySink) -> None:
    try:
        await sink.typing()
    except Exception as err:  # a typing indicator is a courtesy; the answer still comes
        log.info("could not show typing: %s", type(err).__name__)


async def _notice(sink: ReplySink, text: str) -> TurnResult:
    await sink.finish(text)
    return TurnResult(text, None, called_provider=False)
