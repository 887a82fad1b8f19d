"""Questions waiting for their conversation's turn, recorded while they wait.

A question waits in the process's memory while the answers before it in its
conversation are written. A process that goes away without a word (`kill -9`, out of
memory, a power cut) took them with it, and their askers were never told. Each one is
recorded in the database while it waits (bot.store.waiting), and the record goes when
its turn begins; the process serving the same front-end after it finds those left and
says so in their channels (`left`).

Only questions that wait are recorded: a turn that starts at once writes nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from bot.store import Store, StoreError, Unanswered
from bot.types import ChannelRef, Platform, failure

log = logging.getLogger("bot.conversation")


class WaitingQuestions:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._process = uuid.uuid4().hex  # this process, among those sharing the database
        self._served_by: dict[Platform, str] = {}
        self._unremoved: set[int] = set()  # records whose turn came, not yet deleted
        self._removing: set[asyncio.Task[None]] = set()  # their deletions under way
        # (platform, message) → the conversation, the record of a question waiting now,
        # and who asked it ("": not known yet)
        self._noted: dict[
            tuple[Platform, str], tuple[ChannelRef, asyncio.Task[int | None], str]
        ] = {}

    def serve(self, platform: Platform, served_by: str) -> None:
        """This process serves `platform`'s conversations as `served_by` (what its lease
        claims): its waiting questions are recorded from now on, under that name."""
        self._served_by[platform] = served_by

    def note(
        self,
        ref: ChannelRef,
        post_id: str,
        admitted: Callable[[], Awaitable[bool]],
        asker: str = "",
    ) -> bool:
        """Record a question that is about to wait (its platform message `post_id`, sent
        by `asker`: "" when not known); written while it waits, if its asker is `admitted`
        to chat there (someone who is not is ignored quietly, also by a process that finds
        the record after a kill).
        False when its front-end serves nothing recorded. Noted already (by a front-end
        while it waited there, `ChatEngine.waiting_before`): kept as it is."""
        served_by = self._served_by.get(ref.platform)
        if served_by is None or not post_id:
            return False
        if (ref.platform, post_id) in self._noted:
            return True
        task = asyncio.create_task(self._add(ref, post_id, served_by, admitted))
        task.add_done_callback(_retrieved)  # a turn cancelled meanwhile never awaits it
        self._noted[(ref.platform, post_id)] = (ref, task, asker)
        return True

    def done(self, platform: Platform, post_id: str) -> None:
        """Its turn came, or its message was deleted (`deleted`): the record goes, in the
        background (a slow database must not hold the turn back); tried again by `tidy`
        when it cannot."""
        noted = self._noted.pop((platform, post_id), None)
        if noted is None:
            return
        task = asyncio.create_task(self._gone(noted[0], noted[1]))
        self._removing.add(task)
        task.add_done_callback(self._removing.discard)

    async def _add(
        self,
        ref: ChannelRef,
        post_id: str,
        served_by: str,
        admitted: Callable[[], Awaitable[bool]],
    ) -> int | None:
        """The record written (its id), or None for an asker not admitted."""
        if not await admitted():
            return None
        return await self._store.waiting.add(ref, post_id, served_by, self._process)

    async def _gone(self, ref: ChannelRef, note: asyncio.Task[int | None]) -> None:
        try:
            record = await note
            if record is None:  # never written
                return
        except StoreError as err:
            log.warning("could not record a question waiting in %s: %s", ref, err)
            return
        except Exception as err:  # a bug: the turn goes on all the same
            log.error("recording a question waiting in %s failed: %s", ref, failure(err))
            return
        try:
            await self._store.waiting.remove(record)
        except Exception as err:
            self._unremoved.add(record)
            if isinstance(err, StoreError):
                log.warning("could not note that a question in %s has its turn: %s", ref, err)
            else:
                log.error("noting a question's turn in %s failed: %s", ref, failure(err))

    def deleted(self, platform: Platform, posts: Sequence[str], author: str | None) -> None:
        """Platform messages deleted: one waiting now will not be asked (the engine passes
        it over), so no process after this one is to say it went unanswered. `author`: the
        deleter may remove only their own (a Matrix member without the redact power), so
        another's question stays recorded."""
        for post in posts:
            noted = self._noted.get((platform, post))
            if noted is not None and author in (None, noted[2]):
                self.done(platform, post)

    async def drain(self, patience: float) -> None:
        """Before a shutdown: the deletions under way end (a record left would have the
        next process say again what the shutdown said), for up to `patience` s."""
        if self._removing:
            await asyncio.wait(set(self._removing), timeout=patience)

    async def tidy(self) -> None:
        """Delete the records of questions whose turn came when the database refused it
        (a stored question is never said to be unanswered, but its record would stay),
        and those no process will say (served under another name since) after PRUNE_AFTER."""
        if self._unremoved:
            batch = set(self._unremoved)  # one failing meanwhile is added for the next time
            await self._store.waiting.remove(*batch)  # StoreError: the next time
            self._unremoved -= batch
        pruned = await self._store.waiting.prune(PRUNE_AFTER)
        if pruned:
            log.info("deleted %d record(s) of questions left waiting long ago", pruned)

    async def left(self, platform: Platform) -> list[Unanswered]:
        """The questions a process that served the same before this one left waiting,
        oldest first, now this one's to say (`said` once said)."""
        served_by = self._served_by.get(platform)
        if served_by is None:
            return []
        return await self._store.waiting.claim_left(platform, served_by, self._process)

    async def said(self, records: Sequence[int]) -> None:
        """These went unanswered, and their askers were told so (or could not be)."""
        await self._store.waiting.remove(*records)


# A record older than this is of a process whose front-end is served under another name
# now (a new token, other shards): nobody will say it.
PRUNE_AFTER = timedelta(days=7)


def _retrieved(task: asyncio.Task[int | None]) -> None:
    if not task.cancelled():
        task.exception()  # said by `done` when awaited; otherwise the record was written
