"""Where an answer goes in Matrix: a first message, then m.replace edits, paced."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.core import Deadline, NotUpdated
from bot.frontends.matrix.render import HTML_FORMAT, markdown_to_html, needs_html

log = logging.getLogger("bot.frontends.matrix")

# Synapse refuses events above 64 KiB. An edit holds its page twice, as text and as
# HTML each; nio writes an encrypted event's JSON with non-ASCII escaped (6 bytes for a
# CJK character, 12 for an emoji) and its ciphertext is a third larger again. A page's
# `page_size` stays within MESSAGE_LIMIT, so the edit does: some 10,000 characters of
# English with Markdown, 1,800 of Chinese, 900 emoji.
MESSAGE_LIMIT = 22_000


def page_size(text: str) -> int:
    """What one copy of a page costs in an event's JSON: its text, and its HTML when it
    has any, non-ASCII escaped as nio writes what it encrypts."""
    size = len(json.dumps(text))
    if needs_html(text):
        size += len(json.dumps(markdown_to_html(text)))
    return size


# Synapse's default rc_message is 0.2 events/s with a burst of 10: a few fast edits fit
# the burst; after a 429 the pace drops to the sustained rate for a while.
EDIT_INTERVAL = 2.0
LIMITED_INTERVAL = 5.5
LIMITED_MEMORY = 60.0
SEND_ATTEMPTS = 6


@dataclass
class RatePace:
    """Client-wide edit pace: rc_message limits the sender across all rooms."""

    clock: Callable[[], float] = time.monotonic
    limited_at: float = field(default=-1e9)
    limited_count: int = 0

    def note_limited(self) -> None:
        self.limited_at = self.clock()
        self.limited_count += 1

    @property
    def interval(self) -> float:
        return edit_interval(self.clock(), self.limited_at)


def edit_interval(now: float, limited_at: float) -> float:
    """Seconds between edits: the sustained rate for a minute after a 429, else faster."""
    return LIMITED_INTERVAL if now - limited_at < LIMITED_MEMORY else EDIT_INTERVAL


def message_content(text: str, msgtype: str = "m.text") -> dict[str, Any]:
    """A message body with Markdown rendered to HTML when it has any."""
    content: dict[str, Any] = {"msgtype": msgtype, "body": text}
    if needs_html(text):
        content["format"] = HTML_FORMAT
        content["formatted_body"] = markdown_to_html(text)
    return content


def edit_content(
    event_id: str, text: str, msgtype: str = "m.text", mention: str = ""
) -> dict[str, Any]:
    """An m.replace edit of `event_id` whose new content is `text`. Its new content
    mentions whom the message does (`mention`); the edit itself mentions nobody new, so
    nobody is notified again."""
    new = message_content(text, msgtype)
    content = {k: f"* {v}" if k in ("body", "formatted_body") else v for k, v in new.items()}
    content["m.mentions"] = {}
    new["m.mentions"] = mentioning(mention)
    content["m.new_content"] = new
    content["m.relates_to"] = {"rel_type": "m.replace", "event_id": event_id}
    return content


def mentioning(user_id: str) -> dict[str, Any]:
    """m.mentions naming `user_id` ("" for nobody)."""
    return {"user_ids": [user_id]} if user_id else {}


def reply_relation(thread_root: str, reply_to: str) -> dict[str, Any]:
    """m.relates_to for an answer: in the thread it was asked in, or as a reply."""
    if thread_root:
        rel: dict[str, Any] = {"rel_type": "m.thread", "event_id": thread_root}
        rel["is_falling_back"] = True
        rel["m.in_reply_to"] = {"event_id": reply_to or thread_root}
        return rel
    if reply_to:
        return {"m.in_reply_to": {"event_id": reply_to}}
    return {}


class SendFailed(Exception):
    """The homeserver refused an event for good (not a rate limit or a blip)."""


# send(room_id, content) -> event id; the client wires it to nio with its retries.
Sender = Callable[[str, dict[str, Any]], Awaitable[str]]
Typer = Callable[[str, bool], Awaitable[None]]


class MatrixTarget:
    """PacedReply's MessageTarget for one answer in one room (and thread).

    `existing` (asked at the first send): events of an answer shown before; the new text
    replaces theirs (m.replace of each original event) before any new event is posted.
    """

    limit = MESSAGE_LIMIT
    size = staticmethod(page_size)

    def __init__(
        self,
        send: Sender,
        room_id: str,
        *,
        pace: RatePace,
        thread_root: str = "",
        reply_to: str = "",
        mention: str = "",
        typing: Typer | None = None,
        msgtype: str = "m.text",
        on_sent: Callable[[str], None] | None = None,
        existing: Callable[[], list[str]] | None = None,
    ) -> None:
        self._send = send
        self._room_id = room_id
        self._pace = pace
        self._thread_root = thread_root
        self._reply_to = reply_to
        # Whom the answer mentions, in its posts and in every edit's new content (an edit
        # of an answer shown before: whom that one mentions).
        self.mention = mention
        self._typer = typing
        self._msgtype = msgtype
        self._on_sent = on_sent
        self._floor = 0.0
        self.event_ids: list[str] = []
        self.final_texts: dict[str, str] = {}
        self.existing = existing
        self._reusable: list[str] | None = None
        # Set when the answer ends (`ended`): its edits hold the conversation until then.
        self.deadline = Deadline()

    @property
    def min_interval(self) -> float:
        return max(self._floor, self._pace.interval)

    @min_interval.setter
    def min_interval(self, value: float) -> None:
        self._floor = value

    @property
    def final_interval(self) -> float:
        """The final edit goes out at once unless the server pushed back lately."""
        interval = self._pace.interval
        return 0.0 if interval == EDIT_INTERVAL else max(self._floor, interval)

    def as_notice(self) -> None:
        """What is posted from now on is a notice (a refusal, a hint), not an answer."""
        self._msgtype = "m.notice"

    def post_ids(self) -> list[str]:
        return list(self.event_ids)

    def ended(self) -> None:
        """The answer has ended (or goes out again from where its end stuck): its edits and
        posts from now on (one under way too) are given up END_PATIENCE s from now, or from
        the end of a rate limit's wait (Deadline)."""
        self.deadline.start()

    async def typing(self) -> None:
        if self._typer is not None:
            await self._typer(self._room_id, True)

    def leftover(self) -> list[str]:
        """Events of the answer shown before that the new one did not need."""
        return list(self._reusable or [])

    async def send(self, text: str) -> object:
        if self._reusable is None:
            self._reusable = self.existing() if self.existing is not None else []
        if self._reusable:
            event_id = self._reusable.pop(0)
            edited = await self.edit(event_id, text)
            self.event_ids.append(event_id)
            if not edited:
                return NotUpdated(event_id)
        else:
            posted = await self._post(text)
            if posted is None:
                return None  # said in the log
            event_id = posted
        if self._typer is not None and len(self.event_ids) == 1:
            await self._typer(self._room_id, False)
        return event_id

    async def _post(self, text: str) -> str | None:
        """Post a page; None when the homeserver failed it past the answer's end patience
        and a page before it is shown (the pacer says so), SendFailed when none is."""
        content = message_content(text, self._msgtype)
        # Only the first page answers the question; later pages just continue it.
        rel = reply_relation(self._thread_root, "" if self.event_ids else self._reply_to)
        if rel:
            content["m.relates_to"] = rel
        content["m.mentions"] = mentioning(self.mention)
        try:
            async with self.deadline.bounding():  # no bound until the answer ends
                event_id = await self._send(self._room_id, content)
        except (SendFailed, TimeoutError) as err:
            if self.deadline.at is None:
                raise
            why = self._gave_up(err)
            if not self.event_ids:  # nothing shown: the turn stores the answer as cut
                raise SendFailed(why) from None
            log.warning(
                "could not post a page of an answer in %s (not shown whole; it is kept whole "
                "in the conversation): %s",
                self._room_id,
                why,
            )
            return None
        self.event_ids.append(event_id)
        self.final_texts[event_id] = text
        if self._on_sent is not None:
            self._on_sent(event_id)
        return event_id

    async def edit(self, handle: object, text: str) -> bool:
        """Edit `handle`; False when the homeserver failed it past the answer's end patience
        (the pacer then sends the answer again from there). Failing before the answer
        ended, SendFailed is raised as a post's is."""
        event_id = str(handle)
        content = edit_content(event_id, text, self._msgtype, self.mention)
        try:
            async with self.deadline.bounding():  # no bound until the answer ends
                await self._send(self._room_id, content)
        except (SendFailed, TimeoutError) as err:
            if self.deadline.at is None:
                raise
            why = self._gave_up(err)
            log.warning("could not edit an answer's end in %s: %s", self._room_id, why)
            return False
        self.final_texts[event_id] = text
        return True

    def _gave_up(self, err: SendFailed | TimeoutError) -> str:
        """Why a call of an ended answer failed, for the log."""
        why = str(err) if isinstance(err, SendFailed) else "no answer"
        if self.deadline.passed():
            why = self.deadline.gave_up(f"the homeserver failing it ({why})")
        return why


async def with_retries(
    attempt: Callable[[], Awaitable[str]], what: str, attempts: int = SEND_ATTEMPTS
) -> str:
    """Retry transient failures with backoff; SendFailed propagates at once."""
    delay = 0.5
    for n in range(1, attempts + 1):
        try:
            return await attempt()
        except (TimeoutError, OSError, aiohttp.ClientError) as err:
            if n == attempts:
                raise SendFailed(f"{what}: the homeserver is unreachable") from None
            log.warning("%s failed (%s); retrying in %.1fs", what, type(err).__name__, delay)
        except TransientSendError as err:
            if n == attempts:
                raise SendFailed(f"{what}: {err}") from None
            log.warning("%s failed (%s); retrying in %.1fs", what, err, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 15.0)
    raise SendFailed(what)  # pragma: no cover - the loop always returns or raises


class TransientSendError(Exception):
    """A failure worth retrying (5xx, an unknown error without a Matrix code)."""
