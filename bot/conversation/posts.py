"""What people do on the platform to the messages a conversation holds: delete them,
edit them. Mixed into ChatEngine, whose turn order and running answers it uses."""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from bot.connection import NotConnectable, endpoint_for
from bot.conversation.budget import MAX_INPUT_CHARS, estimate_tokens
from bot.conversation.guard import holds_secret
from bot.conversation.stream import Running
from bot.store import Store, StoreError
from bot.store.secrets import SecretUnreadable
from bot.types import ChannelRef, Platform
from bot.types.recent import RecentIds
from bot.types.secrets import holds_key
from bot.types.text import clean_text, strip_invisible

log = logging.getLogger("bot.conversation")

QUESTION_DELETED = "Stopped: the question was deleted."


class Edited(enum.Enum):
    """What an edit of a message on the platform did to the conversation."""

    NOTHING = "nothing"  # not a question the conversation holds, or not taken (see edited)
    CHANGED = "changed"  # the question reads as edited from the next turn on
    HELD_SECRET = "held secret"  # the edit wrote a key in: not kept; take the message out


class _Order(Protocol):
    def hold(self, key: str) -> AbstractAsyncContextManager[None]: ...


def post_key(platform: Platform, post: str) -> str:
    """A platform message, as the engine remembers it was deleted ("" for none)."""
    return f"{platform.value}:{post}" if post else ""


class PlatformPosts:
    """Deletions and edits of the platform messages that show turns (mixed into
    ChatEngine)."""

    _store: Store
    _order: _Order
    _running: dict[str, Running]
    _deleted: RecentIds  # platform messages deleted lately (post_key)

    async def shown_in(self, ref: ChannelRef, row_id: int, posts: Sequence[str]) -> None:
        """Tie an answer to the platform messages showing it; one deleted while the answer
        was written (before it could be tied) forgets it now."""
        await self._store.link_posts(ref, row_id, posts)
        gone = [p for p in posts if post_key(ref.platform, p) in self._deleted]
        if gone:
            count = await self._store.forget_posted(ref, gone)
            log.info("forgot %d stored messages in %s: deleted while shown", count, ref)

    async def forget_posted(
        self, platform: Platform, where: str, posts: Sequence[str], author: str | None = None
    ) -> int:
        """Messages deleted on the platform in channel or thread `where`: forget the turns
        they showed (Store.forget_posted; `author`: only their own questions). An answer
        still being written to a deleted question stops; a question not yet asked is not
        asked. Returns how many stored entries went."""
        for post in posts:
            self._deleted.add(post_key(platform, post))
        found = await self._store.posted(platform, where, posts, author)
        gone = 0
        for ref, questions in found.items():
            key = f"{ref}"
            running = self._running.get(key)
            if running is not None and running.question in questions:
                running.stop(QUESTION_DELETED)
            async with self._order.hold(key):  # after the answer being written is stored
                count = await self._store.forget_posted(ref, posts, author)
            if count:
                log.info("forgot %d stored messages in %s: deleted on the platform", count, ref)
            gone += count
        return gone

    async def edited(
        self,
        platform: Platform,
        where: str,
        post: str,
        text: str,
        author: str,
        *,
        prefix: str = "/",
    ) -> Edited:
        """`author` edited their message `post` in channel or thread `where` to `text`: a
        question the conversation holds reads so from the next turn on (the answer given
        stays as it was). An edit that writes a key or the channel's password in is not
        kept (HELD_SECRET: the front-end takes the message out where it may, and its
        deletion forgets the question); an empty or overlong one changes nothing."""
        found = await self._store.posted(platform, where, [post], author)
        questions = [(ref, ids) for ref, ids in found.items() if ids]
        if not questions:
            return Edited.NOTHING
        text = clean_text(text).strip()
        held = holds_key(text) or any(
            [await self._holds_channel_secret(ref, text, prefix) for ref, _ in questions]
        )
        if held:
            log.warning(
                "an edit by %s in %s wrote a key or password into a question: not kept",
                author,
                where,
            )
            return Edited.HELD_SECRET
        if not strip_invisible(text) or len(text) > MAX_INPUT_CHARS:
            log.info("an edit of a question in %s kept as it was: empty or too long", where)
            return Edited.NOTHING
        for ref, ids in questions:
            async with self._order.hold(f"{ref}"):
                for row_id in ids:
                    await self._store.rewrite_question(ref, row_id, text, estimate_tokens(text))
        return Edited.CHANGED

    async def _holds_channel_secret(self, ref: ChannelRef, text: str, prefix: str) -> bool:
        """The channel's own key or proxy password in `text` (any written form); a channel
        whose endpoint cannot be made now has none to leak."""
        try:
            config = await self._store.effective_config(ref)
            endpoint = await endpoint_for(self._store, ref, config, prefix)
        except (NotConnectable, SecretUnreadable, StoreError):
            return False
        return holds_secret(text, endpoint.secrets())
