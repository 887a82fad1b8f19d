"""What people do on the platform to the messages a conversation holds: delete them,
edit them. Mixed into ChatEngine, whose turn order and running answers it uses."""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from bot.connection import channel_secrets
from bot.conversation.budget import MAX_INPUT_CHARS, estimate_tokens
from bot.conversation.stream import QUESTION_DELETED, Running
from bot.conversation.waiting import WaitingQuestions
from bot.store import Store, StoreError
from bot.types import ChannelRef, Platform
from bot.types.recent import RecentIds
from bot.types.secrets import holds_key, holds_secret
from bot.types.text import clean_text, strip_invisible

log = logging.getLogger("bot.conversation")


class Edited(enum.Enum):
    """What an edit of a message on the platform did to the conversation."""

    NOTHING = "nothing"  # not a question the conversation holds, or not taken (see edited)
    CHANGED = "changed"  # the question reads as edited from the next turn on
    HELD_SECRET = "held secret"  # the edit wrote a key in: not kept; take the message out


class _Order(Protocol):
    def hold(self, key: ChannelRef) -> AbstractAsyncContextManager[None]: ...
    async def idle(self) -> None: ...
    def busy(self, key: ChannelRef) -> bool: ...


def post_key(platform: Platform, post: str) -> str:
    """A platform message, as the engine remembers it was deleted ("" for none)."""
    return f"{platform.value}:{post}" if post else ""


def _deletion(platform: Platform, post: str, author: str | None) -> str:
    """A deletion as the engine remembers it: by anyone who may remove others' messages
    (`author` None), or by one who may remove only their own (it counts for theirs)."""
    key = post_key(platform, post)
    return f"{key} by {author}" if key and author is not None else key


class Edits:
    """Edits of platform messages as they arrive: each gets a number, so the newest of one
    message is the one that stays however their tasks interleave; and the newest of a
    message not stored yet (its question waits its turn) is kept for it, a while."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._count = 0
        self._latest: OrderedDict[str, int] = OrderedDict()  # post → newest edit's number
        self._waiting: OrderedDict[str, tuple[str, str]] = OrderedDict()  # post → (author, text)

    def arrived(self, key: str) -> int:
        self._count += 1
        self._latest[key] = self._count
        self._latest.move_to_end(key)
        while len(self._latest) > self._size:
            self._latest.popitem(last=False)
        return self._count

    def newest(self, key: str, number: int) -> bool:
        """Whether edit `number` is the newest of its message (a later one may have come)."""
        return self._latest.get(key, number) <= number

    def wait(self, key: str, author: str, text: str, number: int) -> None:
        if self.newest(key, number):
            self._waiting[key] = (author, text)
            self._waiting.move_to_end(key)
            while len(self._waiting) > self._size:
                self._waiting.popitem(last=False)

    def take(self, key: str, author: str) -> str | None:
        """The edited text of a message whose question is asked now, if it was edited."""
        waiting = self._waiting.pop(key, None)
        return waiting[1] if waiting is not None and waiting[0] == author else None


class PlatformPosts:
    """Deletions and edits of the platform messages that show turns (mixed into
    ChatEngine)."""

    _store: Store
    _order: _Order
    waiting: WaitingQuestions  # questions recorded while they wait
    _running: dict[ChannelRef, Running]
    _queued: dict[ChannelRef, dict[Running, None]]  # the turns waiting behind it
    _deleted: RecentIds  # platform messages deleted lately (_deletion: who deleted them)
    _edits: Edits  # edits in the order they arrived, and those of questions not stored yet

    async def shown_in(self, ref: ChannelRef, row_id: int, posts: Sequence[str]) -> None:
        """Tie an answer to the platform messages showing it; one deleted while the answer
        was written (before it could be tied) forgets it now."""
        await self._store.link_posts(ref, row_id, posts)
        gone = [p for p in posts if _deletion(ref.platform, p, None) in self._deleted]
        if gone:
            count = await self._store.forget_posted(ref, gone)
            log.info("forgot %d stored messages in %s: deleted while shown", count, ref)

    async def forget_posted(
        self, platform: Platform, where: str, posts: Sequence[str], author: str | None = None
    ) -> int:
        """Messages deleted on the platform in channel or thread `where`: forget the turns
        they showed (Store.forget_posted; `author`: only their own questions). An answer
        still being written to a deleted question stops; a question not yet asked is not
        asked; a control (🔄 ⏩) whose question, or whose answer, went is not done.
        Returns how many stored entries went."""
        for post in posts:
            self._deleted.add(_deletion(platform, post, author))
        self.waiting.deleted(platform, posts, author)
        self._stop_prepared(platform, where, posts, author)
        found = await self._store.posted(platform, where, posts, author)
        for ref, shown in found.items():  # at once: a turn taking its place meanwhile waits
            turns = [self._running.get(ref), *self._queued.get(ref, ())]
            for running in turns:
                if running is not None:  # a control waiting knows its turn later
                    running.forgotten(shown.questions, shown.answered)
        gone = 0
        for ref in found:
            async with self._order.hold(ref):  # after the answer being written is stored
                count = await self._store.forget_posted(ref, posts, author)
            if count:
                log.info("forgot %d stored messages in %s: deleted on the platform", count, ref)
            gone += count
        return gone

    def was_deleted(self, platform: Platform, post: str, asker: str) -> bool:
        """Whether message `post`, sent by `asker`, was deleted lately by one who may: its
        sender, or anyone with the power to remove others' messages."""
        return (
            _deletion(platform, post, None) in self._deleted
            or _deletion(platform, post, asker) in self._deleted
        )

    def _stop_prepared(
        self, platform: Platform, where: str, posts: Sequence[str], author: str | None
    ) -> None:
        """A question deleted while its turn waits or is prepared is not stored yet (the
        store does not find it): its turn, known by the question's platform message, is
        not asked. One waiting leaves at once, without a word (ChatEngine.stop_waiting's
        way); one prepared ends at the request (ChatEngine._answer forgets what it stored
        meanwhile)."""
        turns = [*self._running.items()]
        turns += [(ref, r) for ref, queued in self._queued.items() for r in queued]
        for ref, running in turns:
            if (
                running.post
                and running.post in posts
                and ref.platform is platform
                and where in (ref.channel_id, ref.thread_id)
                and author in (None, running.asker)
            ):
                running.gone(QUESTION_DELETED)  # also when a /stop came first: nothing shown

    async def edited(
        self,
        platform: Platform,
        where: str,
        post: str,
        text: str,
        author: str,
        *,
        prefix: str = "/",
        rewrite: bool = True,
    ) -> Edited:
        """`author` edited their message `post` in channel or thread `where` to `text`: a
        question the conversation holds reads so from the next turn on (the answer given
        stays as it was; one still waiting its turn is asked as edited). An edit that
        writes a key or the channel's password in is not kept (HELD_SECRET: the
        front-end takes the message out where it may, and its deletion forgets the
        question); an empty or overlong one changes nothing, nor does one of a question
        that carried text files (its own, or the message's it replied to: their text is
        part of it; images are not). `rewrite=False`: a message that reads as a command
        now: only checked for secrets."""
        key = post_key(platform, post)
        arrived = self._edits.arrived(key)  # before any wait: edits apply in this order
        text = clean_text(text).strip()
        found = await self._store.posted(platform, where, [post], author)
        questions = [(ref, shown.questions) for ref, shown in found.items() if shown.questions]
        rewrite = rewrite and not any(shown.with_files for shown in found.values())
        held = holds_key(text) or any(
            [await self._holds_channel_secret(ref, text) for ref, _ in questions]
        )
        if held and questions:  # one waiting its turn is refused as any question is
            log.warning(
                "an edit by %s in %s wrote a key or password into a question: not kept",
                author,
                where,
            )
            return Edited.HELD_SECRET
        if not rewrite or not strip_invisible(text) or len(text) > MAX_INPUT_CHARS:
            if questions:
                log.info("an edit of a question in %s kept as it was", where)
            return Edited.NOTHING
        if not questions:  # not stored yet: a question waiting its turn is asked as edited
            self._edits.wait(key, author, text, arrived)
            return Edited.NOTHING
        for ref, ids in questions:
            async with self._order.hold(ref):
                if not self._edits.newest(key, arrived):
                    return Edited.NOTHING  # a later edit of the same message applies
                for row_id in ids:
                    await self._store.rewrite_question(ref, row_id, text, estimate_tokens(text))
        return Edited.CHANGED

    async def _holds_channel_secret(self, ref: ChannelRef, text: str) -> bool:
        """One of the channel's secrets (channel_secrets: every source's key, the proxy
        password, the server's) in `text`, in any written form."""
        try:
            return holds_secret(text, await channel_secrets(self._store, ref))
        except StoreError:
            return False
