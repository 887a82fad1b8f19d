"""A MessageTarget over Discord messages: reply to the asker, edit, type until the first text."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import aiohttp
import discord

from bot.core import Deadline, NotUpdated, bounding_call, typing_landed
from bot.frontends.discord.failures import CALL_FAILED, NETWORK_ERRORS
from bot.frontends.discord.persona import Speaker, webhook_name

log = logging.getLogger("bot.discord")

T = TypeVar("T")

LIMIT = 2000  # characters per Discord message
# LINKS: every message showing an answer goes out with Discord's link previews suppressed
# (SUPPRESS_EMBEDS), and keeps them so through each edit. Discord fetches each link in a
# message the moment it is posted or edited, no click needed: a model talked into writing
# https://attacker.example/?q=<the conversation> (by a card, a lorebook entry, a file, a
# member's message) would hand the conversation over. The link itself stays clickable.

# Messages one answer takes at most: a longer one (a model that loops writes 100,000
# characters, 50 messages) stops adding messages, and comes whole as a file at its end.
MAX_MESSAGES = 5
REASONING_FILE = "reasoning.md"  # the reasoning shown with it (/params reasoning on)


@dataclass(frozen=True, slots=True)
class FileNotes:
    """What the last message of a text longer than MAX_MESSAGES says of the rest, and
    the name of the file that carries it whole."""

    what: str  # "answer", "greeting": the word the pacer's own notes use too
    file: str
    coming: str  # while it streams
    attached: str
    not_allowed: str  # no Attach Files permission
    too_large: str  # past the server's upload limit
    failed: str  # Discord failed the file


def file_notes(what: str) -> FileNotes:
    """The notes of a long `what` ("answer", "greeting"): the one place for their words."""
    file = f"{what}.md"
    kept = f"the whole {what} is kept in the conversation."
    return FileNotes(
        what=what,
        file=file,
        coming=f"📎 The rest follows as a file when the {what} ends.",
        attached=f"📎 The whole {what} is in the attached file ({file}).",
        not_allowed=(
            "📎 The rest could not be attached as a file: I need the Attach Files "
            f"permission here. {kept.capitalize()}"
        ),
        too_large=f"📎 The rest is too large to attach as a file here; {kept}",
        failed=f"📎 The rest could not be attached as a file (Discord failed it); {kept}",
    )


ANSWER_NOTES = file_notes("answer")
GREETING_NOTES = file_notes("greeting")  # a character's greeting, shown as an answer is
ANSWER_FILE = ANSWER_NOTES.file
FILE_COMING = ANSWER_NOTES.coming
FILE_ATTACHED = ANSWER_NOTES.attached
FILE_NOT_ALLOWED = ANSWER_NOTES.not_allowed
FILE_TOO_LARGE = ANSWER_NOTES.too_large
FILE_FAILED = ANSWER_NOTES.failed
MIN_INTERVAL = 1.0  # seconds between edits of one answer: under Discord's ~5 edits / 5 s
# Edits a second apart usually leave room in that budget, so the finished answer shows
# at once instead of a second after the stream ended (5 writes per 5 min_intervals).
EDIT_BUDGET = 5
TYPING_EVERY = 8.0  # a typing indicator lasts about 10 s
# Channels (by id) with a typing call under way: an answer starts none there meanwhile.
# One Discord holds (a 429 asking an hour, which discord.py sleeps out) held each next
# answer's call behind it in discord.py's rate limiter, and that answer's first text.
_TYPING_IN: set[int] = set()
EDIT_RETRIES = 3  # after discord.py's own 429 handling gave up, or a 5xx
RETRY_PAUSE = 2.0
# An ended answer's edits and posts hold its conversation END_PATIENCE s at most
# (bot.core.Deadline).

NoAccess = Callable[[discord.Forbidden], Awaitable[None]]
# A message of an answer: one the bot has (posted, pressed, fetched), or an earlier page
# known by its stored id alone (the bot's own: edited and deleted without reading it).
Page = discord.Message | discord.PartialMessage
_EARLIER = object()  # buttons a message had before this target touched it


def rate_limit_trace() -> aiohttp.TraceConfig:
    """The client's `http_trace`: a wait Discord asks of a call under a Deadline (a 429's
    Retry-After, or a bucket spent until X-RateLimit-Reset-After, which discord.py sleeps
    out before or after the call) moves that deadline (Deadline.asked_to_wait)."""
    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(_answered)
    return trace


async def _answered(
    session: aiohttp.ClientSession, context: object, params: aiohttp.TraceRequestEndParams
) -> None:
    deadline = bounding_call()
    if deadline is None:
        return
    response = params.response
    body: object = None
    if response.status == 429:
        # discord.py sleeps what the body says (retry_after), whatever the headers say;
        # read here, the body stays with the response for discord.py (aiohttp keeps it).
        with contextlib.suppress(*NETWORK_ERRORS, ValueError):
            body = await response.json(content_type=None)
    wait = _asked_wait(response.status, response.headers, body)
    if wait is not None:
        deadline.asked_to_wait(wait)


def _asked_wait(status: int, headers: Mapping[str, str], body: object = None) -> float | None:
    """Seconds Discord says a call must wait (topics/rate-limits): a 429's retry_after (its
    body's, which discord.py waits out; else its Retry-After), or the reset of a bucket the
    call spent; None when it says none. A 429 whose wait only its body said was not counted:
    the edit was given up while discord.py slept, and the answer posted again under it."""
    if status == 429:
        said = body.get("retry_after") if isinstance(body, dict) else None
        if isinstance(said, bool) or not isinstance(said, int | float):
            said = headers.get("Retry-After") or headers.get("X-RateLimit-Reset-After")
    elif headers.get("X-RateLimit-Remaining") == "0":
        said = headers.get("X-RateLimit-Reset-After")
    else:
        return None
    try:
        seconds = float(said) if said is not None else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None


class DiscordTarget:
    """Posts and edits one answer's messages; a refusal is reported once, never raised.
    An answer none of whose pages could be posted raises NotPosted.

    `existing`: messages of an answer shown before (a button was pressed on it): the new
    text goes into them first, in place. `view`: the buttons the newest message carries.
    """

    limit = LIMIT
    min_interval = MIN_INTERVAL
    edit_budget = (EDIT_BUDGET, EDIT_BUDGET * MIN_INTERVAL)
    max_pages = MAX_MESSAGES

    def __init__(
        self,
        channel: discord.abc.Messageable,
        reply_to: discord.Message | None,
        on_forbidden: NoAccess,
        *,
        min_interval: float = MIN_INTERVAL,
        existing: Sequence[Page] = (),
        speaker: Speaker | None = None,
        on_delete: Callable[[str], None] | None = None,
        on_gone: Callable[[], object] | None = None,
        notes: FileNotes = ANSWER_NOTES,
    ) -> None:
        self._channel = channel
        # What the last message says of the rest of a long text, and its file's name (a
        # greeting's; a swipe learns it is one only once the swipe is done).
        self.notes = notes
        self._reply_to = reply_to
        self._on_forbidden = on_forbidden
        self.min_interval = min_interval
        self.edit_budget = (EDIT_BUDGET, EDIT_BUDGET * min_interval)
        self._typing: asyncio.Task[None] | None = None
        self._typing_call = False  # the typing task is in its call to Discord
        self._posted = False
        self.blocked = False  # the bot may not post here; the rest of the answer is dropped
        # Nor edit: a post refused (Send Messages taken mid-answer) still lets the bot edit
        # its own messages, so the last page shown can say the rest could not be posted.
        self._edits_refused = False
        # Discord failed an edit of this answer: the rest goes into new messages, not into
        # those of the answer shown before (their edits would fail too, and the pacer's
        # answer sent again from the stuck page would land in one, unseen).
        self._edit_failed = False
        self._on_delete = on_delete  # told each message id it removes, before it does
        self._gone: set[int] = set()  # its messages someone else deleted meanwhile
        self._on_gone = on_gone  # told when the first of them is found gone
        self.messages: list[Page] = []  # the answer's messages, in order
        self.view: discord.ui.View | None = None  # what the answer's last message carries
        # How many messages the text shown now takes (the pacer says so before it shows
        # it): only the last carries `view`. Its final edit came before the page after it
        # was posted, and a 🔄 pressed on it there missed that page (left showing the old
        # answer's end, with live buttons).
        self.pages = 1
        # What each message shows: an edit of its buttons alone (settle) carries it too,
        # so the final edit always brings the whole answer (an earlier edit may have been
        # the one to show it all, when the stream paused before its end).
        self._texts: dict[int, str] = {}
        # The answer and reasoning its last message carries as files once it settles (set
        # when it took more than max_pages messages).
        self.whole: tuple[str, str] | None = None
        # The message posted with this answer's file (its final page, new then): edits
        # may be refused when posts are not, and a file said attached must be.
        self._posted_file: int | None = None
        # Set when the answer ends (`ended`): its edits hold the conversation until then.
        self.deadline = Deadline()
        self.show_over(existing, speaker)

    def show_over(self, existing: Sequence[Page], speaker: Speaker | None) -> None:
        """The messages of the answer shown before, and who wrote them: what the text goes
        into first. Set before anything is shown (a control finds them when its turn
        comes, not at the press: another control may have changed them meanwhile)."""
        # A character channel: posted through its webhook, or with its name in bold.
        self._speaker = speaker
        self._prefix = speaker.prefix if speaker is not None else ""
        self.limit = LIMIT - len(self._prefix)
        self._existing = list(existing)
        # The buttons each message carries (the pressed one has some already: _EARLIER;
        # one known by its id alone may, as the last page of the answer shown before).
        self._views: dict[int, object] = {
            m.id: _EARLIER for m in existing if not isinstance(m, discord.Message) or m.components
        }
        # Messages that carry such a file: an answer's file is on its last message only,
        # so of an answer shown before only its last may (one known by its id alone may).
        last = existing[-1] if existing else None
        filed = last is not None and (not isinstance(last, discord.Message) or last.attachments)
        self._filed: set[int] = {last.id} if last is not None and filed else set()

    def post_ids(self) -> list[str]:
        return [str(m.id) for m in self.messages]

    def ended(self) -> None:
        """The answer has ended (or goes out again from where its end stuck): its edits and
        posts from now on (one under way too) are given up END_PATIENCE s from now."""
        self.deadline.start()

    @property
    def what(self) -> str:
        """What the messages show, in the pacer's notes (MessageTarget.what)."""
        return self.notes.what

    def clipped_note(self, final: bool) -> str:
        """What the last message of an answer longer than max_pages says of the rest."""
        if not final:
            return self.notes.coming
        return self._no_file() or self.notes.attached

    def _files(self) -> list[tuple[str, bytes]]:
        if self.whole is None:
            return []
        answer, reasoning = self.whole
        files = [(self.notes.file, answer.encode())]
        if reasoning.strip():
            files.append((REASONING_FILE, reasoning.encode()))
        return files

    def _no_file(self) -> str | None:
        """Why the whole answer cannot be attached here (None: it can)."""
        guild = getattr(self._channel, "guild", None)
        me = getattr(guild, "me", None)
        permissions_for = getattr(self._channel, "permissions_for", None)
        # A webhook's message needs no permission of the bot's for a file.
        if self._hook is None and me is not None and permissions_for is not None:
            if not permissions_for(me).attach_files:
                return self.notes.not_allowed
        limit = getattr(guild, "filesize_limit", discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES)
        if sum(len(data) for _, data in self._files()) > limit:
            return self.notes.too_large
        return None

    async def typing(self) -> None:
        """Show "typing…" until the first text goes out."""
        if self._typing is None and not self._posted and not self.blocked:
            self._typing = asyncio.create_task(self._keep_typing(), name="discord-typing")

    async def _keep_typing(self) -> None:
        where: int | None = getattr(self._channel, "id", None)
        while True:
            if where in _TYPING_IN:
                return  # another answer's call is stuck here: "typing…" comes when it lands
            self._typing_call = True
            if where is not None:
                _TYPING_IN.add(where)
            try:
                await self._channel.typing()
            except discord.Forbidden:
                return  # the send itself will report it
            except CALL_FAILED as err:
                log.debug("typing indicator failed: %s", type(err).__name__)
            finally:
                self._typing_call = False
                if where is not None:
                    _TYPING_IN.discard(where)
            if self._typing is not asyncio.current_task():
                return  # stopped during the call
            await asyncio.sleep(TYPING_EVERY)

    def _stop_typing(self) -> asyncio.Task[None] | None:
        """No more "typing…"; the typing task, to wait for. A call under way is left to
        land (cut inside discord.py's rate limiter, it held the channel's next typing call
        30 s); between calls the task is cancelled."""
        task, self._typing = self._typing, None
        if task is not None and not self._typing_call:
            task.cancel()
        return task

    async def close(self) -> None:
        task = self._stop_typing()
        if task is not None:
            await typing_landed(task)

    async def send(self, text: str) -> object:
        typing = self._stop_typing()
        if typing is not None:  # "typing…" must not come after the text (a while at most)
            await typing_landed(typing)
        if self.blocked:
            return None
        first = not self._posted
        if first:
            text = self._prefix + text
        view = self.view if len(self.messages) + 1 >= self.pages else None
        if self._existing and not self._edit_failed:
            message = self._existing.pop(0)
            change = self._view_change(message, view)
            updated = await self._edit(message, content=text, **change)
            self._posted = True
            self.messages.append(message)
            # Refused, it still shows the answer before: the pacer says so, as of an edit.
            return message if updated else NotUpdated(message)
        kwargs: dict[str, Any] = {"view": view} if view is not None else {}
        # The final page that says the file is attached carries it (a new message then).
        files = self._files() if self.notes.attached in text else []
        try:
            try:
                posted = await self._post(text, kwargs, first, files)
            except discord.HTTPException as err:
                if not files:
                    raise
                log.warning(
                    "could not attach an answer as a file: %s %s", err.status, type(err).__name__
                )
                files, text = [], text.replace(self.notes.attached, self.notes.failed)
                posted = await self._post(text, kwargs, first, files)
        except discord.Forbidden as err:
            await self._blocked(err)
            return None
        except CALL_FAILED as err:
            status = f"{err.status} " if isinstance(err, discord.HTTPException) else ""
            why = f"{status}{type(err).__name__}"
            if self.deadline.passed():
                why = self.deadline.gave_up("Discord failing it at the answer's end")
            where = getattr(self._channel, "id", "?")
            if self._posted:  # the page before says the rest could not be posted
                log.warning(
                    "could not post a page of an answer in channel %s (not shown whole; it is "
                    "kept whole in the conversation): %s",
                    where,
                    why,
                )
                return None
            log.warning("an answer could not be posted in channel %s: %s", where, why)
            raise NotPosted(why) from err
        self._posted = True  # a page that failed is posted again as the first: a reply
        self._texts[posted.id] = posted.content if isinstance(posted.content, str) else text
        if view is not None:
            self._views[posted.id] = view
        if files:
            self._filed.add(posted.id)
            self._posted_file = posted.id
        self.messages.append(posted)
        return posted

    async def _post(
        self, text: str, kwargs: dict[str, Any], first: bool, files: list[tuple[str, bytes]]
    ) -> discord.Message:
        """Post one page (with `files`); one Discord failed (a 5xx, a 429 discord.py gave
        up on, a lost connection) is tried again as an edit is. A post of the bot's own
        carries a nonce Discord holds it to: one made although its answer was lost is not
        made twice. Once the answer has ended, given up at its deadline as an edit is."""
        nonce = secrets.token_hex(12)

        def own() -> dict[str, Any]:  # its files made anew for each call (one closes them)
            return {**kwargs, **_made(files), "nonce": nonce, "suppress_embeds": True}

        async def post() -> discord.Message:
            if self._hook is not None:
                try:
                    return await self._via_webhook(text, {**kwargs, **_made(files)})
                except discord.NotFound:  # someone deleted the webhook: post as the bot
                    return await self._without_webhook(text, own(), first)
            if first and self._reply_to is not None:
                return await self._reply(self._reply_to, text, own)
            return await self._channel.send(text, **own())

        return await retried(post, deadline=self.deadline)

    @property
    def _hook(self) -> discord.Webhook | None:
        return self._speaker.webhook if self._speaker is not None else None

    def _thread(self) -> Any:
        thread = self._speaker.thread if self._speaker is not None else None
        return thread if thread is not None else discord.utils.MISSING

    async def _via_webhook(self, text: str, kwargs: dict[str, Any]) -> discord.Message:
        """As the character (a webhook cannot reply: the answer follows the question)."""
        assert self._speaker is not None and self._speaker.webhook is not None
        return await self._speaker.webhook.send(
            text,
            username=webhook_name(self._speaker.name),
            wait=True,
            thread=self._thread(),
            allowed_mentions=discord.AllowedMentions.none(),
            suppress_embeds=True,  # no link preview: see LINKS
            **kwargs,
        )

    async def _without_webhook(
        self, text: str, kwargs: dict[str, Any], first: bool
    ) -> discord.Message:
        assert self._speaker is not None
        log.info("the character webhook is gone; answering as the bot")
        if self._speaker.on_gone is not None:
            self._speaker.on_gone()
        self._speaker = replace(self._speaker, webhook=None, on_gone=None)
        self._prefix = self._speaker.prefix
        # Pages are now shorter by the name in front (the pacer splits by `limit` again;
        # this first one is cut to fit, and its next edit brings it whole).
        self.limit = LIMIT - len(self._prefix)
        if first:
            text = (self._prefix + text)[:LIMIT]
        return await self._channel.send(text, **kwargs)

    async def _reply(
        self, message: discord.Message, text: str, kwargs: Callable[[], dict[str, Any]]
    ) -> discord.Message:
        try:
            return await message.reply(text, mention_author=False, **kwargs())
        except discord.HTTPException as err:
            if isinstance(err, discord.Forbidden) and err.code != 160002:
                raise
            # The asked message is gone, or replying needs Read Message History: post plainly.
            return await self._channel.send(text, **kwargs())

    def _view_change(self, message: Page, view: discord.ui.View | None) -> dict[str, Any]:
        """The `view` argument that makes `message` carry `view` (none when it does)."""
        if self._views.get(message.id) is view:
            return {}
        if view is None:
            del self._views[message.id]
        else:
            self._views[message.id] = view
        return {"view": view}

    async def settle(self, view: discord.ui.View | None) -> None:
        """The answer has ended: its last message carries `view` (and the whole answer as
        a file, when it took more than max_pages messages), no other one has buttons or
        a file, and pages left over from a longer answer shown before are removed."""
        for old in self._existing:
            await self._delete(old)
        self._existing = []
        if not self.messages or self.blocked:
            return
        *earlier, last = self.messages
        files = self._files() if self._no_file() is None else []
        for message in [*earlier, last]:
            change = self._view_change(message, view if message is last else None)
            shown = self._texts.get(message.id)
            if message is last and files and message.id == self._posted_file:
                files = []  # posted with it: only its buttons may change
            elif message is last and files:
                if await self._attach(message, files, change, shown):
                    continue
                files = []  # not attached: an earlier answer's file goes too
                if shown is not None and self.notes.attached in shown:  # said, but not done
                    shown = shown.replace(self.notes.attached, self.notes.failed)
                    change["content"] = shown
            if message.id in self._filed and message.id != self._posted_file:
                change["attachments"] = []  # an earlier answer's file: not this one's
                self._filed.discard(message.id)
            if change:
                content = {} if shown is None else {"content": shown}
                await self._edit(message, **{**content, **change})

    async def _attach(
        self,
        message: Page,
        files: list[tuple[str, bytes]],
        change: dict[str, Any],
        shown: str | None,
    ) -> bool:
        """`message` carries `files` (in place of any it had), and `change`; False when
        Discord failed it (logged: the caller says so on the message)."""
        changes = {**change, **({} if shown is None else {"content": shown})}

        async def edit() -> None:
            attached = _made(files)["files"]
            await self._call_edit(message, {**changes, "attachments": attached})

        try:
            await retried(edit, deadline=self.deadline)
        except discord.NotFound:
            return True  # deleted meanwhile: its deletion forgets the answer
        except CALL_FAILED as err:
            status = f"{err.status} " if isinstance(err, discord.HTTPException) else ""
            log.warning("could not attach an answer as a file: %s%s", status, type(err).__name__)
            return False
        self._filed.add(message.id)
        if shown is not None:
            self._texts[message.id] = shown
        return True

    async def _delete(self, message: Page) -> None:
        if self._on_delete is not None:
            self._on_delete(str(message.id))
        try:
            hook = self._hook
            if hook is not None and webhook_of(message) == hook.id:
                await hook.delete_message(message.id, thread=self._thread())
            else:
                await message.delete()
        except CALL_FAILED as err:
            log.info("could not remove a page of an earlier answer: %s", type(err).__name__)

    async def edit(self, handle: object, text: str) -> bool:
        if not isinstance(handle, discord.Message | discord.PartialMessage):
            return False
        if self._edits_refused:
            return False
        if self._prefix and self.messages and handle is self.messages[0]:
            text = self._prefix + text
        # The last message's edit also brings its buttons up to date (the final edit
        # carries the ones for how the answer ended); an unchanged view adds nothing.
        last = bool(self.messages) and handle is self.messages[-1]
        last = last and len(self.messages) >= self.pages
        changes = self._view_change(handle, self.view) if last else {}
        return await self._edit(handle, content=text, **changes)

    async def _edit(self, handle: Page, **changes: Any) -> bool:
        """Edit `handle`; False when Discord would not (refused, or still failing)."""
        if self._edits_refused:
            return False
        if handle.id in self._gone:
            return True  # deleted by someone: nothing of it is on show to bring up to date

        async def edit() -> None:
            await self._call_edit(handle, changes)

        try:
            await retried(edit, deadline=self.deadline)  # a new connection may well get through
        except discord.NotFound:
            log.info("an answer message was deleted while it streamed")
            self._gone.add(handle.id)
            if self._on_gone is not None and len(self._gone) == 1:
                self._on_gone()  # the rest of the answer would be written for no one
            return True  # nothing stale is left on show
        except discord.Forbidden as err:
            self._edits_refused = True
            await self._blocked(err)
            return False
        except discord.HTTPException as err:
            log.warning("could not edit an answer: %s %s", err.status, type(err).__name__)
            self._edit_failed = True
            return False
        except NETWORK_ERRORS as err:
            why = type(err).__name__
            if self.deadline.passed():
                why = self.deadline.gave_up("Discord failing it at the answer's end")
            log.warning("could not edit an answer: %s", why)
            self._edit_failed = True
            return False
        if "content" in changes:
            self._texts[handle.id] = changes["content"]
        return True

    async def _call_edit(self, handle: Page, changes: dict[str, Any]) -> None:
        hook = self._hook
        if hook is not None and webhook_of(handle) == hook.id:
            # Through the webhook's own edit endpoint (the bot is not its author).
            await hook.edit_message(handle.id, thread=self._thread(), **changes)
        elif isinstance(handle, discord.Message) and not isinstance(handle, discord.WebhookMessage):
            # discord.py's Message.edit sends the message's flags with embeds shown unless
            # told (suppress=False by default): the edit would bring the link previews back.
            await handle.edit(suppress=True, **changes)
        else:  # known by its id alone, or a webhook's: no flags sent, Discord keeps them
            await handle.edit(**changes)

    async def _blocked(self, err: discord.Forbidden) -> None:
        self.blocked = True
        self._stop_typing()
        await self._on_forbidden(err)


class NotPosted(Exception):
    """No page of an answer could be posted: Discord failed every try (a refusal is
    said by the target itself). Raised into the turn, which stops there: its answer is
    stored as cut where it could not be shown, and the model asked no more."""


def _made(files: list[tuple[str, bytes]]) -> dict[str, list[discord.File]]:
    """The `files` argument of a call carrying `files` (none without them). Made anew for
    each try: a file read by a failed one would go out empty."""
    if not files:
        return {}
    return {"files": [discord.File(io.BytesIO(data), filename=name) for name, data in files]}


def transient(err: discord.HTTPException) -> bool:
    """Discord failed the call (it may pass), not refused it."""
    return err.status == 429 or err.status >= 500


async def retried(
    call: Callable[[], Awaitable[T]],
    again: Callable[[str], None] | None = None,
    *,
    deadline: Deadline | None = None,
) -> T:
    """`call()`, made again while Discord fails it (a 5xx, a 429 discord.py gave up on, a
    lost connection): EDIT_RETRIES more times, RETRY_PAUSE apart, each time told to
    `again` (why: the status, or the error's kind). A refusal (a 4xx), or the last
    failure, is raised: also one after which no try could begin before `deadline` (no
    pause runs past it); TimeoutError once it passes (a call under way is cut there, and
    none is begun after it). The one retry rule of an answer's posts and edits and of a
    command's response."""
    for attempt in range(EDIT_RETRIES + 1):
        try:
            if deadline is None:
                return await call()
            async with deadline.bounding():
                return await call()
        except discord.HTTPException as err:
            if attempt == EDIT_RETRIES or not transient(err) or _no_time(deadline):
                raise
            why = f"{err.status}"
        except NETWORK_ERRORS as err:
            if attempt == EDIT_RETRIES or _no_time(deadline):
                raise
            why = type(err).__name__
        if again is not None:
            again(why)
        if deadline is None:
            await asyncio.sleep(RETRY_PAUSE)
        else:  # cut where the deadline falls, one set meanwhile too (the answer ended)
            async with deadline.bounding():
                await asyncio.sleep(RETRY_PAUSE)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _no_time(deadline: Deadline | None) -> bool:
    """No try could begin before `deadline` after RETRY_PAUSE."""
    return deadline is not None and deadline.passed(RETRY_PAUSE)


def webhook_of(page: Page) -> int | None:
    """The webhook that posted `page`; None for the bot's own (a page known by id alone
    is the bot's: a webhook's pages are fetched through the webhook)."""
    return page.webhook_id if isinstance(page, discord.Message) else None
