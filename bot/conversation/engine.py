"""One chat turn: config → history → request → provider stream → reply sink → persist."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from bot.connection import NotConnectable, endpoint_for
from bot.conversation.budget import estimate_tokens, history_budget, trim_history
from bot.conversation.reasoning import ThinkSplitter
from bot.providers import ChatRequest, Provider, ProviderError, ProviderHub
from bot.store import Store
from bot.store.secrets import SecretUnreadable
from bot.types import ChannelConfig, ChatMessage, HistoryEntry, Incoming, Role

log = logging.getLogger("bot.conversation")

MAX_INPUT_CHARS = 32_000
HISTORY_ROWS = 200  # read bound; the token budget usually trims far earlier


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

    @contextmanager
    def lock(self, key: str) -> Iterator[asyncio.Lock]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            yield lock
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class ChatEngine:
    def __init__(self, store: Store, hub: ProviderHub) -> None:
        self._store = store
        self._hub = hub
        self._order = _TurnOrder()

    async def turn(self, incoming: Incoming, sink: ReplySink, prefix: str = "/") -> TurnResult:
        """Answer one message; turns of one conversation run in arrival order."""
        key = f"{incoming.channel}"
        with self._order.lock(key) as lock:
            async with lock:
                return await self._turn(incoming, sink, prefix)

    async def _turn(self, incoming: Incoming, sink: ReplySink, prefix: str) -> TurnResult:
        text = incoming.text.strip()
        if not text:
            return await _notice(sink, "Ask me something with your message.")
        if len(text) > MAX_INPUT_CHARS:
            return await _notice(
                sink,
                f"That message is too long for me ({len(text):,} characters; the limit is "
                f"{MAX_INPUT_CHARS:,}). Shorten it or split it up.",
            )
        ref = incoming.channel
        await self._store.prefetch(ref, HISTORY_ROWS)  # one round trip for the reads below
        config = await self._store.effective_config(ref)
        blocked = _blocked_reason(config, prefix)
        if blocked:
            return await _notice(sink, blocked)
        try:
            endpoint = await endpoint_for(self._store, ref, config, prefix)
        except (NotConnectable, SecretUnreadable) as err:
            return await _notice(sink, str(err))
        assert config.model is not None  # _blocked_reason checked it

        user = HistoryEntry(
            Role.USER, text, author=incoming.actor.display_name, tokens=estimate_tokens(text)
        )
        request = await self._request(incoming, config, user)
        await sink.typing()
        provider = self._hub.provider(endpoint)
        answer, error = await self._stream(provider, request, sink, config.show_reasoning)
        entries = [user]
        if answer:
            entries.append(
                HistoryEntry(Role.ASSISTANT, answer, tokens=estimate_tokens(answer), error=error)
            )
        await self._store.save_turn(ref, entries)
        if error:
            log.warning("turn in %s ended with a provider error: %s", ref, error)
        return TurnResult(answer, error, called_provider=True)

    async def _request(
        self, incoming: Incoming, config: ChannelConfig, user: HistoryEntry
    ) -> ChatRequest:
        p = config.params
        history = await self._store.history(incoming.channel, HISTORY_ROWS)
        budget = history_budget(p.context_tokens, p.max_tokens, config.system_prompt, user.content)
        kept = [*trim_history(history, budget), user]
        authors = {e.author for e in kept if e.role is Role.USER and e.author}
        return ChatRequest(
            model=config.model or "",
            messages=tuple(ChatMessage(e.role, e.content, e.author) for e in kept),
            system_prompt=config.system_prompt,
            temperature=p.temperature,
            top_p=p.top_p,
            max_tokens=p.max_tokens,
            stop=p.stop,
            seed=p.seed,
            multi_user=len(authors) > 1,
        )

    async def _stream(
        self, provider: Provider, request: ChatRequest, sink: ReplySink, show_reasoning: bool
    ) -> tuple[str, str | None]:
        """Stream the answer into the sink; a fault keeps what arrived and names the error."""
        split = ThinkSplitter()
        reasoning = ""
        error: str | None = None
        try:
            async for delta in provider.stream_chat(request):
                reasoning += delta.reasoning
                if delta.text:
                    split.feed(delta.text)
                if delta.text or (delta.reasoning and show_reasoning):
                    await sink.update(
                        split.answer, _shown(reasoning + split.reasoning, show_reasoning)
                    )
        except ProviderError as err:
            error = err.user_message
        split.finish()
        answer = split.answer
        if not answer and not error:
            error = "The model returned an empty answer. Try again or rephrase."
        await sink.finish(answer, _shown(reasoning + split.reasoning, show_reasoning), error)
        return answer, error


def _blocked_reason(config: ChannelConfig, p: str) -> str | None:
    """Why a turn must not call the provider, as a message saying how to fix it."""
    if not config.model:
        return (
            f"No model is selected for this channel. An admin picks one with {p}model <id> "
            f"(see {p}models list)."
        )
    status = config.status
    if status is not None and not status.ok and not config.bypass_status_check:
        return (
            f"I can't answer: the last status check failed — {status.reason}\n"
            f"An admin fixes that and runs {p}connect, or turns on {p}connect bypass:on "
            "if the endpoint works anyway."
        )
    return None


def _shown(reasoning: str, show: bool) -> str:
    return reasoning if show else ""


async def _notice(sink: ReplySink, text: str) -> TurnResult:
    await sink.finish(text)
    return TurnResult(text, None, called_provider=False)
