"""An answer as it streams: into the front-end's sink, cleaned, saved as it grows, and
stopped cleanly by a stop, a deadline or the length cap (what arrived is kept)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from bot.connection import provider_error_text
from bot.conversation.budget import answer_limit, estimate_tokens
from bot.conversation.guard import AnswerGuard
from bot.conversation.patience import typing_landed
from bot.conversation.reasoning import ThinkSplitter
from bot.fields import REGISTRY
from bot.providers import (
    BadRequest,
    ChatRequest,
    ContextTooLong,
    EmptyStream,
    Provider,
    ProviderError,
)
from bot.store import Store, StoreError
from bot.types import (
    ChannelRef,
    HistoryEntry,
    Platform,
    Role,
    TurnState,
    Usage,
    failure,
    params_as,
    went_wrong,
)

log = logging.getLogger("bot.conversation")

TYPING_AFTER = 0.5  # seconds without text before "typing…" shows (Typing)
SHOWING_GRACE = 10.0  # seconds a stop waits for a platform call under way (Running)
T = TypeVar("T")


class ReplySink(Protocol):
    """Where an answer goes while it streams. Front-ends implement it (or use PacedReply).

    Optional `ended(result: TurnResult) -> None`: called with the turn's result just
    before `finish`, so a front-end can put the controls for how it ended on the final
    edit instead of writing the message once more. Optional `posts() -> list[str]`: the
    platform messages showing the answer so far, tied to its row as it is saved (a
    process killed mid-answer leaves them tied: deleting one forgets the answer, and
    /continue goes on in them).
    """

    async def typing(self) -> None:
        """Show "typing…": the model was asked and nothing has shown TYPING_AFTER s later."""

    async def update(self, answer: str, reasoning: str = "") -> None:
        """The answer so far, as it streams."""

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None: ...


class Prefaced:
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

    def posts(self) -> list[str]:
        return sink_posts(self._sink)


def sink_posts(sink: object) -> list[str]:
    """The platform messages showing a sink's answer so far ([] where it has none)."""
    posts = getattr(sink, "posts", None)
    return [] if posts is None else list(posts())


STOPPED = "Stopped."  # a stop's word under the answer (what arrived is kept)
# A stop that came before the request was sent: nothing was sent, and nothing is charged.
STOPPED_BEFORE = "Stopped before the answer began."
# An answer being written whose question, or whose message, was deleted: no one reads on.
QUESTION_DELETED = "Stopped: the question was deleted."
ANSWER_DELETED = "Stopped: the answer was deleted."


class Running:
    """The answer being written in one conversation, so it can be stopped from outside.
    `asker`: the user it is written for (who may stop it, besides an admin).

    It is stoppable from when its turn is accepted: while it waits behind another turn
    (ChatEngine.stop_waiting), a stop cancels the wait; while it is prepared (`preparing`: history,
    a status check, files, the quota charge), a stop is kept for `begin`, just before
    the request is sent, so no database write is cut and nothing is sent or charged.

    A stop cancels the writing task, but not inside a platform call (`showing`): cut
    there, a message the platform had already posted was lost to the answer (posted
    again at the end, the first copy left with its ⏹), and discord.py's rate limiter,
    cut while it woke the route's next call, held the channel's next post 30 s. A stop
    that comes meanwhile takes effect when the call returns, or after SHOWING_GRACE s
    if it has not (a homeserver that hangs: the call is cut as before)."""

    def __init__(self, asker: str, *, post: str = "") -> None:
        self.task = asyncio.current_task()
        self.asker = asker
        self.question: int | None = None  # the stored question it answers, once known
        self.changes = False  # a control: it changes the answer shown for `question`
        # The platform message of a new question it answers: known before it is stored,
        # so a deletion while the turn is prepared finds it.
        self.post = post
        # What it answers or changes was deleted (before the request: nothing is shown).
        self.deleted = False
        # Stored questions deleted while it ran, and those whose answers were:
        # known to it before it knows its own (a control reads the newest turn first).
        self._questions_gone: set[int] = set()
        self._answers_gone: set[int] = set()
        self.stopped_by = ""
        self.failed = False  # stopped by a fault (its deadline), not by someone
        self.cancelled = False  # the stop cancelled the task (its CancelledError is ours)
        self._preparing = False
        self._showing = False
        self._deadline: asyncio.TimerHandle | None = None
        self._grace: asyncio.TimerHandle | None = None

    def preparing(self) -> None:
        """Its turn has begun: a stop from now on is kept for `begin`, not cut in."""
        self._preparing = True

    def answers(self, question: int | None, *, changes: bool = False) -> None:
        """It answers stored question `question` (`changes`: a control, which changes the
        answer shown for it); one deleted meanwhile leaves it `deleted` (forgotten)."""
        self.question, self.changes = question, changes
        self._check_gone()

    def forgotten(self, questions: Collection[int], answered: Collection[int]) -> None:
        """Stored `questions` were deleted in its conversation, or every answer to the
        `answered` ones: if its question is one (or, for a control, its answer), now or
        once it knows which it answers, it is `deleted`, and stops."""
        self._questions_gone.update(questions)
        self._answers_gone.update(answered)
        self._check_gone()

    def gone(self, why: str) -> None:
        """What it answers or changes was deleted: before the request nothing is sent or
        shown (ChatEngine._deleted_before); an answer being written stops, saying `why`."""
        self.deleted = True
        self.stop(why)

    def _check_gone(self) -> None:
        if self.question is None or self.deleted:
            return
        if self.question in self._questions_gone:
            self.gone(QUESTION_DELETED)
        elif self.changes and self.question in self._answers_gone:
            self.gone(ANSWER_DELETED)

    def begin(self) -> str | None:
        """The request is about to be sent: from now on a stop cuts the answer. What a
        stop that came while the turn was prepared says instead (nothing is sent)."""
        self._preparing = False
        if not self.stopped_by:
            return None
        return STOPPED_BEFORE if self.stopped_by == STOPPED else self.stopped_by

    def stop(self, why: str, *, failed: bool = False) -> None:
        if not self.stopped_by and self.task is not None:
            self.stopped_by, self.failed = why, failed
            if self._preparing:
                return  # taken at `begin`: nothing was sent yet
            if self._showing:
                loop = asyncio.get_running_loop()
                self._grace = loop.call_later(SHOWING_GRACE, self._cut)
            else:
                self._cut()

    def stopped_here(self) -> bool:
        """Whether the CancelledError its task got is its stop's (`_cut`) and nobody
        else's too (a shutdown's): then taken back (the task is no longer cancelled), to
        end as stopped; otherwise it is to be raised."""
        task = self.task
        return self.cancelled and task is not None and task.uncancel() == 0

    def _cut(self) -> None:
        if self.task is not None and not self.task.done() and not self.cancelled:
            self.cancelled = True
            self.task.cancel()

    def stop_after(self, seconds: float, why: str) -> None:
        """The answer's deadline: stopped as failed (`why`) after `seconds`."""
        self.cancel_deadline()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(seconds, lambda: self.stop(why, failed=True))

    def cancel_deadline(self) -> None:
        """The answer has ended: neither its deadline nor a stop's grace is still due."""
        for timer in (self._deadline, self._grace):
            if timer is not None:
                timer.cancel()
        self._deadline = self._grace = None

    async def showing(self, call: Awaitable[T]) -> T:
        """Await a platform call that a stop must not cut; a stop that came meanwhile
        raises StopRequested when it returns."""
        self._showing = True
        try:
            result = await call
        finally:
            self._showing = False
        if self.stopped_by:
            raise StopRequested
        return result


class StopRequested(Exception):
    """A stop that came during a platform call (Running.showing), raised once it returned."""


@dataclass(slots=True)
class Outcome:
    answer: str = ""
    reasoning: str = ""
    error: str | None = None
    state: TurnState = TurnState.DONE
    usage: Usage | None = None  # what the endpoint reported, newest counts winning
    thought: str = ""  # the reasoning that came, shown or not (it was generated: it costs)
    failed: bool = False  # the endpoint failed it (an error, nothing in time, nothing at all)


class AnswerRow:
    """The stored row of the answer being written: saved now and then, never twice at once.

    `reply_to` is the question it answers; `entry` an answer being continued (the same
    row grows).
    """

    def __init__(
        self,
        store: Store,
        ref: ChannelRef,
        every: float,
        *,
        reply_to: int | None,
        entry: HistoryEntry | None = None,
        posts: Callable[[], list[str]] = list,
    ) -> None:
        self._store = store
        self._posts = posts  # the platform messages showing it so far
        self._linked = 0  # how many of them its row is tied to
        self._ref = ref
        self._every = every
        self._reply_to = reply_to
        self._entry = entry
        self._saved_len = len(entry.content) if entry else 0
        self._last = time.monotonic()
        self._pending: asyncio.Task[None] | None = None

    @property
    def id(self) -> int | None:
        return None if self._entry is None else self._entry.id

    def grew(self, text: str) -> None:
        """Save in the background when due; a slow database never holds the stream."""
        if len(text) == self._saved_len or time.monotonic() - self._last < self._every:
            return
        if self._pending is not None and not self._pending.done():
            return
        self._last = time.monotonic()
        self._saved_len = len(text)
        self._pending = asyncio.create_task(self._save(text))

    def _entry_for(self, text: str, state: TurnState, error: str | None = None) -> HistoryEntry:
        return HistoryEntry(
            Role.ASSISTANT,
            text,
            tokens=estimate_tokens(text),
            error=error,
            state=state,
            reply_to=self._reply_to,
        )

    async def _save(self, text: str) -> None:
        entry = self._entry_for(text, TurnState.STREAMING)
        posts = self._posts()
        try:
            if self._entry is None:
                (self._entry,) = await self._store.add_messages(self._ref, [entry], posts=[posts])
            else:
                self._entry = replace(entry, id=self._entry.id)
                await self._store.update_message(self._ref, self._entry, final=False)
                if len(posts) > self._linked and self._entry.id is not None:  # a new page
                    await self._store.link_posts(self._ref, self._entry.id, posts)
            self._linked = len(posts)
        except StoreError as err:
            log.warning("could not save a growing answer in %s: %s", self._ref, err)

    async def finish(self, outcome: Outcome) -> None:
        """Store how the answer ended (StoreError when that fails), tied to the messages
        showing it so far: the front-end ties it to them all once it is shown, but a
        shutdown may end the process first (a 🔄 stopped so was tied to none)."""
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
        entry = self._entry_for(outcome.answer, outcome.state, outcome.error)
        posts = self._posts()
        if self._entry is None:
            (self._entry,) = await self._store.add_messages(self._ref, [entry], posts=[posts])
        else:
            self._entry = replace(entry, id=self._entry.id)
            await self._store.update_message(self._ref, self._entry)
            if len(posts) > self._linked and self._entry.id is not None:
                await self._store.link_posts(self._ref, self._entry.id, posts)
        self._linked = len(posts)


async def stream_answer(
    provider: Provider,
    request: ChatRequest,
    sink: ReplySink,
    row: AnswerRow,
    running: Running,
    *,
    secrets: tuple[str, ...],
    show_reasoning: bool,
    answer_timeout: float,
    max_chars: int,
    start: str = "",
    prefix: str = "/",
    platform: Platform = Platform.CONSOLE,
    server: bool = True,
    who: str = "",
    asker: str = "the person who asked",
) -> Outcome:
    """Stream the answer into the sink; a fault, a stop or a limit keeps what arrived.

    `start` is text already shown that the new text continues (a continued answer). An
    answer the model ended at its length limit or a content filter says so (`prefix`:
    the platform's, for the commands it names, written as `platform` takes them;
    `server`: whether the channel has a server, whose value they may name; `who`: who
    the admins are, who fix what an endpoint's failure asks of them; `asker`: who asked,
    named as the one who, with an admin, may go on from an answer an error cut).
    """
    split = ThinkSplitter(continuing=bool(start))
    answer, thought = AnswerGuard(secrets), AnswerGuard(secrets)
    answer.resume(start)
    show = show_reasoning
    out = Outcome()
    finish: str | None = None
    typing: Typing | None = Typing(sink)
    running.stop_after(
        answer_timeout, f"The answer took longer than {answer_timeout:g} s, so it stops here."
    )
    try:
        async with aclosing(provider.stream_chat(request)) as deltas:
            async for delta in deltas:
                finish = delta.finish_reason or finish
                if delta.usage is not None:
                    out.usage = out.usage.merged(delta.usage) if out.usage else delta.usage
                if delta.text:
                    sizes = split.sizes()
                    split.feed(delta.text)
                    new_text, new_thought = split.since(*sizes)
                    answer.add(new_text)
                    thought.add(delta.reasoning + new_thought)
                else:
                    thought.add(delta.reasoning)
                if len(answer) > max_chars:
                    out.state = TurnState.STOPPED
                    out.error = f"The answer passed {max_chars:,} characters, so it stops here."
                    break
                if show and len(thought) > max_chars:  # shown, it is posted as text is
                    out.state = TurnState.STOPPED
                    out.error = (
                        f"The model's reasoning passed {max_chars:,} characters, so it stops here."
                    )
                    break
                if delta.text or (delta.reasoning and show):
                    shown = answer.text or (show and thought.text)
                    if typing is not None and shown:
                        await running.showing(typing.done())
                        typing = None
                    text = thought.text if show else ""
                    if not await running.showing(_shown(sink, answer.text, text)):
                        not_shown(out)
                        break
                row.grew(answer.text)
    except (asyncio.CancelledError, StopRequested) as stopped:
        if not running.stopped_by or running.task is None:
            raise
        if isinstance(stopped, asyncio.CancelledError):
            # Ours only if the stop cancelled it, and nobody else did too (a shutdown).
            if not running.stopped_here():
                raise
        out.state, out.failed = TurnState.STOPPED, running.failed
        out.error = running.stopped_by
    except ProviderError as err:
        if finish is not None and answer.text.removeprefix(start).strip():
            # The model had ended the answer (its finish came first): an error after it
            # (a proxy's usage accounting, a stream left open) cut nothing. The answer is
            # complete, and is shown, stored and counted so; the error is the operator's.
            log.warning(
                "an error came after the model had finished the answer (kept whole): %s",
                err.user_message,
            )
        else:
            out.state, out.failed = TurnState.STOPPED, True
            out.error = provider_error_text(err, prefix, who=who)
            if isinstance(err, EmptyStream):  # llama-cpp-python's way to refuse a long one
                out.error += " If the conversation is long, it may not fit the model."
            if isinstance(err, ContextTooLong | EmptyStream):
                out.error += f" {_less_context(prefix, platform)}"
                if any(m.images for m in request.messages):
                    out.error += f" {_IMAGES_TOO.format(p=prefix)}"
            elif isinstance(err, BadRequest):
                out.error += _named_settings_step(err, request, prefix, platform, server)
            elif answer.text.removeprefix(start).strip():  # an error ended it: say what helps
                out.error += f" {_CUT_KEPT.format(p=prefix, who=asker)}"
    except Exception as err:  # a bug (reading an odd stream, say): what arrived is kept
        log.error("an answer failed while it was written: %s", failure(err))
        out.state, out.failed = TurnState.STOPPED, True
        out.error = went_wrong(err)
    finally:
        running.cancel_deadline()
        if typing is not None:
            typing.cancel()
    sizes = split.sizes()
    split.finish()  # text held back in case a tag was starting
    new_text, new_thought = split.since(*sizes)
    answer.add(new_text)
    thought.add(new_thought)
    out.answer = answer.cut(max_chars)
    if not out.answer.strip():  # spaces and line breaks show as nothing: none was written
        out.answer = ""
    out.thought = thought.finish()  # all of it, as it was generated: it costs
    out.reasoning = out.thought[:max_chars] if show else ""
    # Only text that shows is writing: a reasoning model's "\n\n" before it ran out while
    # thinking was told "/continue goes on from it", and stored as a blank answer.
    wrote = bool(out.answer.removeprefix(start).strip())
    if finish in _AT_LENGTH and _short_of_limit(out, request, start):
        finish = "model_length"  # llama.cpp's `length` once its context is full
    why = _ended_by_model(finish, wrote, bool(out.thought), prefix, platform, asker)
    if out.error is None and why:
        out.state, out.error = TurnState.STOPPED, why
        out.failed = not out.answer
    if not out.answer and not out.error:
        out.failed = True
        out.error = "The model returned an empty answer. Try again or rephrase."
    elif start and not wrote and not out.error:  # the answer stays as it was: say why
        out.state = TurnState.STOPPED
        out.error = f"The model added nothing to this answer: {prefix}regenerate asks anew."
    return out


# finish_reason (OpenAI, Mistral, OpenRouter) and stop_reason (Claude) values that end an
# answer before the model meant to: what the asker is told instead of nothing.
_AT_LENGTH = frozenset({"length", "max_tokens"})
_CONTEXT_FULL = frozenset({"model_length", "model_context_window_exceeded"})


def _less_context(p: str, platform: Platform) -> str:
    """What helps when the conversation does not fit the model."""
    return (
        f"An admin starts afresh with {p}reset, sets {params_as(p, platform, 'context')} to the "
        f"model's context size (less history is then sent), or lowers "
        f"{params_as(p, platform, 'max_tokens')}."
    )


# Said after an error that cut an answer short (a timeout, a cut, the provider's error):
# the turn's controls are its asker's or an admin's (ChatEngine._control), and everyone
# in the channel reads it.
_CUT_KEPT = (
    "What arrived is kept: {who} or an admin can go on from it with {p}continue, or ask "
    "again with {p}retry."
)
# Said with it when the request carried images: a local model may count them higher
# than the bot's estimate (budget.estimate_image_tokens).
_IMAGES_TOO = (
    "Images take much of a small context, and the newest turns' images are sent again "
    "with each message: ask without one, or {p}reset forgets them."
)
_FILTERED = frozenset({"content_filter", "refusal"})
_TOOLS = frozenset({"tool_calls", "tool_use", "function_call"})


def _named_settings_step(
    err: ProviderError, request: ChatRequest, prefix: str, platform: Platform, server: bool
) -> str:
    """The command for each setting sent that a refusal names (`'temperature' does not
    support 0.7`, Mistral's `random_seed: …`): the provider knows its fields, not ours.
    Words naming more than two are an echo of the request (a proxy's dump), not a
    refusal of each: nothing is named then."""
    named: list[str] = []
    for sent in request.options:
        f = REGISTRY.by_wire.get(sent)
        if f is not None and f.name not in named and any(map(err.names, f.wire.values())):
            named.append(f.name)
    if not named or len(named) > 2:
        return ""
    # A channel's `default` leaves the server's or the operator's value: /settings says
    # where each comes from. Where there is no server, scope:server is refused.
    server_s = "scope:server for the server's; " if server else ""
    where = f"({server_s}{prefix}settings says where it is set)"
    if len(named) == 1:
        (name,) = named
        return (
            f" The setting it names is {name}: an admin removes it with "
            f"{params_as(prefix, platform, name, 'default')} {where}, or sets another value with "
            f"{params_as(prefix, platform, name, '<value>')}."
        )
    return (
        f" The settings it names are {named[0]} and {named[1]}: an admin removes each with "
        f"{params_as(prefix, platform, '<name>', 'default')} {where}, or sets another value with "
        f"{params_as(prefix, platform, '<name>', '<value>')}."
    )


def _short_of_limit(out: Outcome, request: ChatRequest, start: str) -> bool:
    """Whether an answer ended at a length limit is clearly short of the max_tokens sent:
    the endpoint's count of it is less, or, with no count, twice the estimate (which errs
    high) still is. The limit it met was then the model's context: llama.cpp and
    llama-cpp-python say `length` for both. Thinking tokens the endpoint reports count
    too, whether inside completion_tokens or beside them: thoughts not sent spend
    max_tokens as well."""
    limit = answer_limit(request)
    if limit is None:
        return False
    usage = out.usage
    if usage is not None and usage.completion_tokens is not None:
        return usage.completion_tokens + (usage.reasoning_tokens or 0) < limit
    written = out.answer[len(start) :] if out.answer.startswith(start) else out.answer
    spent = estimate_tokens(written) + (estimate_tokens(out.thought) if out.thought else 0)
    return 2 * spent < limit


def _ended_by_model(
    finish: str | None, wrote: bool, thought: bool, prefix: str, platform: Platform, asker: str
) -> str | None:
    """Why an answer the model ended itself is cut or missing; None when it just ended.
    `asker`: who asked, named as the one who, with an admin, may go on from it."""
    if finish in _AT_LENGTH:
        raise_it = f"an admin raises it with {params_as(prefix, platform, 'max_tokens')}"
        if wrote:
            return (
                f"The answer reached its length limit (max_tokens), so it stops here: "
                f"{asker} or an admin can go on from it with {prefix}continue, or {raise_it}."
            )
        spent = "thinking, before any answer" if thought else "before writing anything"
        return f"The model reached its length limit (max_tokens) {spent}: {raise_it}."
    if finish in _CONTEXT_FULL:  # Mistral's and Claude's: the context window is full
        return (
            "The conversation and the answer filled the model's context window, so it stops "
            f"here. {_less_context(prefix, platform)}"
        )
    if finish in _FILTERED:
        what = "stopped this answer here" if wrote else "blocked this answer"
        return f"The provider's content filter {what}. Rephrase, or try another model."
    if finish in _TOOLS and not wrote:
        return (
            "The model asked to use a tool instead of answering, and this bot offers none. "
            "Try again or rephrase."
        )
    if finish in _TOOLS:  # "Let me look that up." and then nothing: it meant to go on
        return (
            "The model stopped here to use a tool, and this bot offers none. "
            f"{prefix}regenerate asks anew, or rephrase."
        )
    return None


SHOW_FAILED = "The answer could not be shown here, so it stops where it was cut."


def not_shown(out: Outcome) -> None:
    """The platform failed to show the answer: it ends as stopped there (stored as cut,
    its call recorded as failed), not as an answer someone read."""
    out.state, out.failed = TurnState.STOPPED, True
    out.error = SHOW_FAILED


async def _shown(sink: ReplySink, answer: str, reasoning: str) -> bool:
    """Show the answer so far; False when the platform failed (its server unreachable,
    say). The turn then ends as stopped: what arrived is stored and its call recorded,
    and no more is asked of the model for no one to see."""
    try:
        await sink.update(answer, reasoning)
    except Exception as err:
        log.warning("an answer could not be shown: %s", failure(err))
        return False
    return True


class Typing:
    """\"Typing…\" for an answer that has not started after TYPING_AFTER seconds.

    An answer that starts sooner needs none: its text comes as soon as the indicator
    would, and no platform call is spent on it. Nor does a burst of mentions queue its
    model requests behind the platform's typing calls, which it did when every turn
    showed typing as its request left.
    """

    def __init__(self, sink: ReplySink) -> None:
        self._sink = sink
        self._call: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(TYPING_AFTER, self._start)

    def _start(self) -> None:
        self._call = asyncio.create_task(self._show())

    async def _show(self) -> None:
        try:
            await self._sink.typing()
        except Exception as err:  # a typing indicator is a courtesy; the answer still comes
            log.info("could not show typing: %s", type(err).__name__)

    async def done(self) -> None:
        """Before the first text: a typing call under way lands first (shown text must
        not be followed by typing), TYPING_PATIENCE s at most, and none starts after."""
        self._timer.cancel()
        if self._call is not None:
            await typing_landed(self._call)  # not for long: it is a courtesy

    def cancel(self) -> None:
        """None starts after; a call under way lands by itself (cut mid-call, it could
        leave "typing…" shown, or discord.py's rate limiter holding the next one)."""
        self._timer.cancel()
