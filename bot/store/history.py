"""Conversation history: turns stored as they happen, read newest first, forgotten on /reset."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import (
    Row,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Executable

from bot.store.base import NAME_CHARS, Database, audit_row
from bot.store.batch import Batcher
from bot.store.lore import forget_timers
from bot.store.models import (
    AuditRow,
    BlobRow,
    MessageImageRow,
    MessageRow,
    PostRow,
    UsageRow,
    utcnow,
)
from bot.store.reads import Conversation, TurnReads, conversation_of, entry_of, in_conversation
from bot.types import (
    Actor,
    ChannelRef,
    HistoryEntry,
    Image,
    ImageRef,
    Platform,
    Role,
    Scope,
    TurnState,
)
from bot.types.text import clean_text

_WRITE_BATCH = 1000  # writes per grouped commit
_PRUNE_CHUNK = 5000  # old messages deleted in one transaction
_INTERRUPTED = "The bot stopped while writing this answer (restart or crash)."
_MESSAGES = cast(Table, MessageRow.__table__)
_MESSAGE_IMAGES = cast(Table, MessageImageRow.__table__)
_POSTS = cast(Table, PostRow.__table__)
_USAGE = cast(Table, UsageRow.__table__)
_RETURNING_IDS = {
    table.name: insert(table).returning(table.c.id, sort_by_parameter_order=True)
    for table in (_MESSAGES, _USAGE)
}


def _shown_answer(ref: ChannelRef, question_id: int, answer_id: int) -> Executable:
    """One answer to a question made the shown one (the history continues from it)."""
    m = _MESSAGES.c
    return (
        update(_MESSAGES)
        .where(
            in_conversation(conversation_of(ref)),
            m.reply_to == question_id,
            m.role == Role.ASSISTANT.value,
        )
        .values(hidden=m.id != answer_id)
    )


_ORPHAN_BLOBS = delete(BlobRow).where(~exists().where(MessageImageRow.sha256 == BlobRow.sha256))
_UPDATE = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("row_id"))
    .values(
        content=bindparam("content"),
        token_estimate=bindparam("token_estimate"),
        error=bindparam("error"),
        state=bindparam("state"),
    )
)


Guard = Callable[[AsyncConnection], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Posted:
    """What platform messages show in one conversation (HistoryPart.posted): the questions
    among them (an `author`'s only, if one was given), and what the answers among them
    answer (a question; a greeting's first for a greeting), as deleting them forgets
    every answer to it (none when an `author` was given: their own questions only); and
    which of those questions carried files (an edit keeps those as they were)."""

    questions: set[int] = field(default_factory=set)
    answered: set[int] = field(default_factory=set)
    with_files: set[int] = field(default_factory=set)


@dataclass(eq=False)
class HeldUsage:
    """A usage row stored with a question where no limit counts it, so the call is on
    record from the moment it is asked: its id once stored (the last attempt's, when a
    transaction was retried)."""

    row: dict[str, Any]
    reserved: int | None = None


@dataclass(frozen=True, slots=True)
class _Insert:
    rows: list[dict[str, Any]]
    links: list[tuple[ImageRef, ...]]  # per row: the images it showed
    blobs: tuple[Image, ...] = ()  # their bytes (kept once per hash)
    # Runs first in the same transaction (a quota charge); False: these rows are not
    # stored. Guards run in `order` order, so two batches lock the same rows alike.
    guard: Guard | None = None
    order: tuple[str, ...] = ()
    posts: list[tuple[str, ...]] = field(default_factory=list)  # per row: its platform messages
    held: HeldUsage | None = None  # stored with the batch's others, in one statement


@dataclass(frozen=True, slots=True)
class _Update:
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Link:
    rows: list[dict[str, Any]]  # posts rows: which platform message shows which turn


def _post_rows(platform: Platform, message_id: int, posts: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"message_id": message_id, "platform": platform.value, "post_id": post[:NAME_CHARS]}
        for post in dict.fromkeys(posts)
        if post
    ]


_CLEARED = "history.clear"  # the audit log's action for a /reset


def _in_thread(thread_id: str) -> str:
    """How a reset's audit entry names its thread (a thread reset is not seeded again)."""
    return f" in thread {thread_id}"


def _row(ref: ChannelRef, entry: HistoryEntry) -> dict[str, Any]:
    return {
        "platform": ref.platform.value,
        "server_id": ref.server_id,
        "channel_id": ref.channel_id,
        "thread_id": ref.thread_id,
        "role": Role(entry.role).value,
        "author": None if entry.author is None else clean_text(entry.author)[:NAME_CHARS],
        "content": clean_text(entry.content),
        "token_estimate": entry.tokens,
        "error": None if entry.error is None else clean_text(entry.error),
        "state": TurnState(entry.state).value,
        "image_count": len(entry.images),
        "reply_to": entry.reply_to,
        "author_id": None if entry.author_id is None else entry.author_id[:NAME_CHARS],
        "files": entry.files,
        "created_at": utcnow(),
    }


def _changes(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "row_id": entry.id,
        "content": clean_text(entry.content),
        "token_estimate": entry.tokens,
        "error": None if entry.error is None else clean_text(entry.error),
        "state": TurnState(entry.state).value,
    }


def _deleting(rows: Executable) -> Callable[[AsyncSession], Awaitable[int]]:
    """A write that deletes `rows` of messages (and the images only they showed)."""

    async def work(session: AsyncSession) -> int:
        result = await session.execute(rows)
        await session.execute(_ORPHAN_BLOBS)
        return int(getattr(result, "rowcount", 0) or 0)

    return work


class HistoryPart:
    """Writes that finish together share one transaction; a bad one fails alone."""

    def __init__(self, db: Database, reads: TurnReads, long_reads: Database | None = None) -> None:
        """`long_reads`: what prune_old's survey of every stored message is read through."""
        self._db = db
        self._long = long_reads or db
        self._reads = reads
        self._link: Any = None  # the link statement, built once
        self._writes: Batcher[_Insert | _Update | _Link, list[int]] = Batcher(
            self._write_batch, _WRITE_BATCH
        )

    async def drain(self, patience: float | None = None) -> int:
        """See Batcher.drain: how many writes were given up."""
        return await self._writes.drain(patience)

    async def history(self, ref: ChannelRef, limit: int) -> list[HistoryEntry]:
        """The newest `limit` entries of this channel/thread, oldest first."""
        return await self._reads.history(ref, limit)

    async def add(
        self,
        ref: ChannelRef,
        entries: Sequence[HistoryEntry],
        images: Sequence[Image] = (),
        guard: Guard | None = None,
        order: tuple[str, ...] = (),
        posts: Sequence[Sequence[str]] = (),
        held: HeldUsage | None = None,
    ) -> list[HistoryEntry]:
        """Store new entries and the bytes of their images (all or none), with row ids;
        none (an empty list) when `guard`, run first in the same transaction, says no.
        `posts[i]`: the platform messages that show `entries[i]` (see `link`); `held`: a
        usage row stored with them."""
        write = _Insert(
            [_row(ref, e) for e in entries],
            [e.images for e in entries],
            tuple(images),
            guard,
            order,
            [tuple(p) for p in posts] + [()] * (len(entries) - len(posts)),
            held,
        )
        ids = await self._writes.submit(write)
        if guard is not None and len(ids) < len(entries):
            return []
        stored = [replace(e, id=i) for e, i in zip(entries, ids, strict=True)]
        self._reads.appended(ref, stored)
        return stored

    async def update(self, ref: ChannelRef, entry: HistoryEntry, *, remember: bool = True) -> None:
        """Rewrite a stored entry (a growing answer, its final state) by its id.

        `remember=False` for the saves while an answer still streams: the turn's end
        updates what this process remembers, once.
        """
        assert entry.id is not None, "only stored entries can be updated"
        await self._writes.submit(_Update(_changes(entry)))
        if remember:
            self._reads.appended(ref, [entry])

    async def link(self, ref: ChannelRef, row_id: int, posts: Sequence[str]) -> None:
        """`posts` (platform message ids) show the stored entry `row_id`: deleting one of
        them on the platform forgets its turn (`forget_posted`)."""
        rows = _post_rows(ref.platform, row_id, posts)
        if rows:
            await self._writes.submit(_Link(rows))

    async def unlink(self, ref: ChannelRef, posts: Sequence[str]) -> None:
        """`posts` show nothing of this conversation any more (the bot removed them itself:
        pages left over from a longer answer), so `posts_of` no longer names them."""
        wanted = [p[:NAME_CHARS] for p in posts if p]
        if not wanted:
            return
        here = select(_MESSAGES.c.id).where(in_conversation(conversation_of(ref)))
        gone = delete(_POSTS).where(
            _POSTS.c.platform == ref.platform.value,
            _POSTS.c.post_id.in_(wanted),
            _POSTS.c.message_id.in_(here),
        )

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(gone)

        await self._writes.drain()  # a link still queued is undone too, not after
        await self._db.write_plain("history write", work)

    async def posted(
        self, platform: Platform, where: str, posts: Sequence[str], author: str | None = None
    ) -> dict[ChannelRef, Posted]:
        """The conversations in channel or thread `where` that these platform messages
        show turns of, each with what they show there (Posted)."""
        wanted = [p[:NAME_CHARS] for p in posts if p]
        if not wanted:
            return {}
        m = _MESSAGES
        query = (
            select(
                m.c.server_id,
                m.c.channel_id,
                m.c.thread_id,
                m.c.id,
                m.c.role,
                m.c.reply_to,
                m.c.author_id,
                m.c.files,
            )
            .join(_POSTS, _POSTS.c.message_id == m.c.id)
            .where(
                _POSTS.c.platform == platform.value,
                _POSTS.c.post_id.in_(wanted),
                m.c.platform == platform.value,
                or_(m.c.channel_id == where, m.c.thread_id == where),
            )
        )

        async def read(conn: AsyncConnection) -> dict[ChannelRef, Posted]:
            found: dict[ChannelRef, Posted] = {}
            for row in await conn.execute(query):
                server_id, channel_id, thread_id, row_id, role, reply_to, author_id, files = row
                ref = ChannelRef(platform, channel_id, server_id, thread_id)
                shown = found.setdefault(ref, Posted())
                if role == Role.USER.value and author in (None, author_id):
                    shown.questions.add(row_id)
                    if files:
                        shown.with_files.add(row_id)
                elif role == Role.ASSISTANT.value and author is None:
                    shown.answered.add(row_id if reply_to is None else reply_to)
            return found

        await self._writes.drain()  # links still in the write queue count
        return await self._db.read_plain("history read", read)

    async def shown_turn(
        self, ref: ChannelRef, post: str
    ) -> list[tuple[HistoryEntry, tuple[str, ...]]]:
        """For a thread `ref` started on the platform message `post`: the turn that
        message shows in the thread's channel (an answer, the one on show of its
        alternatives, after the question it answers; or a question, before its answer on
        show), each with the platform messages that show it; [] when it shows none, or
        when the thread was reset (`clear`) since."""
        m, p = _MESSAGES, _POSTS
        platform = ref.platform.value
        shown = (
            select(m)
            .join(p, p.c.message_id == m.c.id)
            .where(
                p.c.platform == platform,
                p.c.post_id == post[:NAME_CHARS],
                m.c.platform == platform,
                m.c.channel_id == ref.channel_id,
                m.c.thread_id == "",
            )
            .order_by(m.c.hidden, m.c.id.desc())  # the one on show; else the newest
            .limit(1)
        )
        answered = (
            select(m)
            .where(m.c.reply_to == bindparam("asked"), m.c.role == Role.ASSISTANT.value)
            .order_by(m.c.hidden, m.c.id.desc())
            .limit(1)
        )
        platform_, server_id, channel_id, _ = conversation_of(ref)
        reset = select(AuditRow.id).where(
            AuditRow.platform == platform_,
            AuditRow.server_id == server_id,
            AuditRow.channel_id == channel_id,
            AuditRow.action == _CLEARED,
            AuditRow.detail.endswith(_in_thread(ref.thread_id), autoescape=True),
        )

        async def read(conn: AsyncConnection) -> list[tuple[HistoryEntry, tuple[str, ...]]]:
            root = (await conn.execute(shown)).first()
            if root is None or (await conn.execute(reset.limit(1))).first() is not None:
                return []
            question: Row[Any] | None
            answer: Row[Any] | None
            if root.role == Role.USER.value:
                question = root
                answer = (await conn.execute(answered, {"asked": root.id})).first()
            else:
                answer = root
                asked = select(m).where(m.c.id == root.reply_to, m.c.role == Role.USER.value)
                question = (await conn.execute(asked)).first() if root.reply_to else None
            if answer is not None and answer.state == TurnState.STREAMING.value:
                answer = None  # still being written: its copy would read as cut off
            turn = []
            for row in (question, answer):
                if row is not None:
                    links = select(p.c.post_id).where(p.c.message_id == row.id)
                    posts = tuple(str(r[0]) for r in await conn.execute(links))
                    turn.append((entry_of(row), posts))
            return turn

        await self._writes.drain()  # links still in the write queue count
        return await self._db.read_plain("history read", read)

    async def posts_of(self, ref: ChannelRef, row_id: int) -> list[str]:
        """The platform messages that show stored entry `row_id` of this conversation, in
        the order they were linked (an answer's pages, first to last)."""
        m, p = _MESSAGES, _POSTS
        links = (
            select(p.c.post_id)
            .join(m, m.c.id == p.c.message_id)
            .where(p.c.message_id == row_id, in_conversation(conversation_of(ref)))
            .order_by(p.c.id)
        )

        async def read(conn: AsyncConnection) -> list[str]:
            return [str(row[0]) for row in await conn.execute(links)]

        await self._writes.drain()  # links still in the write queue count
        return await self._db.read_plain("history read", read)

    async def forget_posted(
        self, ref: ChannelRef, posts: Sequence[str], author: str | None = None
    ) -> int:
        """Delete the turns these platform messages show in this conversation: a question
        with its answers; an answer with every alternative to it (its question stays).
        `author`: only questions this user asked (someone who may remove only their own
        messages). Returns how many stored entries went."""
        wanted = [p[:NAME_CHARS] for p in posts if p]
        if not wanted:
            return 0
        m = _MESSAGES
        here = in_conversation(conversation_of(ref))
        shown = (
            select(m.c.id, m.c.role, m.c.reply_to, m.c.author_id)
            .join(_POSTS, _POSTS.c.message_id == m.c.id)
            .where(_POSTS.c.platform == ref.platform.value, _POSTS.c.post_id.in_(wanted), here)
        )
        assistant = m.c.role == Role.ASSISTANT.value

        async def work(conn: AsyncConnection) -> int:
            questions: set[int] = set()
            turns: set[int] = set()  # what answers answer: a question, or a greeting's first
            for row_id, role, reply_to, author_id in await conn.execute(shown):
                if role == Role.USER.value and author in (None, author_id):
                    questions.add(row_id)
                elif role == Role.ASSISTANT.value and author is None:
                    turns.add(row_id if reply_to is None else reply_to)
            if not questions and not turns:
                return 0
            answered = [*questions, *turns]
            gone = or_(
                m.c.id.in_(questions),
                and_(assistant, or_(m.c.reply_to.in_(answered), m.c.id.in_(turns))),
            )
            result = await conn.execute(delete(m).where(here, gone))
            await conn.execute(_ORPHAN_BLOBS)
            return int(getattr(result, "rowcount", 0) or 0)

        count = await self._db.write_plain("history write", work)
        if count:
            self._reads.histories.drop(conversation_of(ref))
        return count

    async def forget_answers(self, ref: ChannelRef, row_ids: Sequence[int]) -> int:
        """Delete these answers of this conversation (never a question); the count."""
        m = _MESSAGES
        gone = and_(
            in_conversation(conversation_of(ref)),
            m.c.role == Role.ASSISTANT.value,
            m.c.id.in_(list(row_ids)),
        )

        async def work(conn: AsyncConnection) -> int:
            result = await conn.execute(delete(m).where(gone))
            return int(getattr(result, "rowcount", 0) or 0)

        count = await self._db.write_plain("history write", work)
        if count:
            self._reads.histories.drop(conversation_of(ref))
        return count

    async def rewrite_question(
        self, ref: ChannelRef, row_id: int, content: str, tokens: int
    ) -> bool:
        """A question's text as its asker edited it; False when it is gone."""
        m = _MESSAGES
        change = (
            update(m)
            .where(
                in_conversation(conversation_of(ref)),
                m.c.id == row_id,
                m.c.role == Role.USER.value,
            )
            .values(content=clean_text(content), token_estimate=tokens)
        )

        async def work(conn: AsyncConnection) -> bool:
            return bool(getattr(await conn.execute(change), "rowcount", 0))

        done = await self._db.write_plain("history write", work)
        self._reads.histories.drop(conversation_of(ref))
        return done

    async def alternatives(
        self, ref: ChannelRef, question_id: int
    ) -> list[tuple[HistoryEntry, bool]]:
        """Every answer to one question, oldest first, each with whether it is the shown one."""

        async def read(session: AsyncSession) -> list[tuple[HistoryEntry, bool]]:
            rows = await session.execute(
                select(_MESSAGES)
                .where(
                    in_conversation(conversation_of(ref)),
                    _MESSAGES.c.reply_to == question_id,
                    _MESSAGES.c.role == Role.ASSISTANT.value,
                )
                .order_by(_MESSAGES.c.id)
            )
            return [(entry_of(row), not row.hidden) for row in rows]

        return await self._db.read("history read", read)

    async def show(self, ref: ChannelRef, question_id: int, answer_id: int) -> None:
        """Make one answer to a question the shown one (the history continues from it)."""

        async def work(session: AsyncSession) -> None:
            await session.execute(_shown_answer(ref, question_id, answer_id))

        await self._db.write("history write", work)
        self._reads.histories.drop(conversation_of(ref))

    async def mark_interrupted(self, ref: ChannelRef) -> int:
        """Answers of this conversation still marked as being written: their writer is gone.

        One that was another answer to its question (a 🔄 rewrites the answer in place:
        the channel shows the cut one) becomes the answer shown; the one before it stays
        an alternative, as if the regenerate had ended. Called with the conversation's
        turn order held, so no live turn is among them.
        """
        m = _MESSAGES.c

        async def work(session: AsyncSession) -> int:
            result = await session.execute(
                update(_MESSAGES)
                .where(in_conversation(conversation_of(ref)), m.state == TurnState.STREAMING.value)
                .values(state=TurnState.INTERRUPTED.value, error=_INTERRUPTED)
                .returning(m.id, m.reply_to)
            )
            cut = sorted(result.all())  # the newest of a question's last
            for answer, question in cut:
                if question is not None:
                    await session.execute(_shown_answer(ref, question, answer))
            return len(cut)

        count = await self._db.write("history write", work)
        if count:
            self._reads.histories.drop(conversation_of(ref))
        return count

    async def clear(self, ref: ChannelRef, actor: Actor) -> int:
        """Delete this channel's (or this thread's) stored turns and the images only they
        showed, and its lorebook's timed effects (a new chat has none); audited; returns
        the count of those that were shown (an answer swiped past is not one the channel
        saw)."""
        key = ref.scope_key(Scope.CHANNEL)

        async def work(session: AsyncSession) -> int:
            result = await session.execute(
                delete(_MESSAGES)
                .where(in_conversation(conversation_of(ref)))
                .returning(_MESSAGES.c.hidden)
            )
            count = sum(not hidden for (hidden,) in result.all())
            await session.execute(_ORPHAN_BLOBS)
            await session.execute(forget_timers(ref))
            where = _in_thread(ref.thread_id) if ref.thread_id else ""
            session.add(audit_row(key, actor, _CLEARED, f"{count} messages deleted{where}"))
            return count

        count = await self._db.write("history write", work)
        self._reads.histories.drop(conversation_of(ref))
        return count

    async def image_data(self, refs: Sequence[ImageRef]) -> dict[str, Image]:
        """The stored bytes of these images, by hash (a pruned one is simply missing)."""
        wanted = sorted({r.sha256 for r in refs})
        if not wanted:
            return {}

        async def read(session: AsyncSession) -> dict[str, Image]:
            rows = await session.execute(
                select(BlobRow.sha256, BlobRow.media_type, BlobRow.data).where(
                    BlobRow.sha256.in_(wanted)
                )
            )
            return {sha: Image(kind, data, sha256=sha) for sha, kind, data in rows}

        return await self._db.read("image read", read)

    async def prune_old(self, keep: int, most: int) -> int:
        """Each conversation's messages past its newest `keep` deleted (their images'
        links and platform messages with them), at most about `most` a call, a few
        thousand a transaction; how many. The model never reads that far back, and
        a conversation's cold read (reads.py) reads all it has."""
        m = _MESSAGES
        conversation = (m.c.platform, m.c.server_id, m.c.channel_id, m.c.thread_id)
        over = select(*conversation).group_by(*conversation).having(func.count() > keep)

        async def read(conn: AsyncConnection) -> list[Conversation]:
            return [(str(a), str(b), str(c), str(d)) for a, b, c, d in await conn.execute(over)]

        # The survey reads every stored message's index entry, and on PostgreSQL the
        # table's pages pruned or written since its last VACUUM: 1.7-3.7 s at 10 M
        # messages with all of it cached, up to ~5 GB read (bench/bench_prune.py), growing
        # with the table; from disk, far longer. Past the bot's statement deadline it
        # would be given up every hour and nothing pruned again (the table only growing).
        # The deletes below are one conversation's each, by its index: milliseconds.
        removed = 0
        for key in await self._long.read_plain("history survey", read):
            if removed >= most:
                break
            here = and_(*(column == value for column, value in zip(conversation, key, strict=True)))
            newest_kept = (
                select(m.c.id).where(here).order_by(m.c.id.desc()).offset(keep - 1).limit(1)
            ).scalar_subquery()
            # A turn partly kept stays whole: its question (a greeting's first) is older
            # than its answers, so a question regenerated `keep` times fell outside the
            # newest `keep`. Left without it, the newest answer read as a character's
            # greeting (its controls said so) and went to the model without its question.
            turn_start = (
                select(func.min(m.c.reply_to)).where(here, m.c.id >= newest_kept)
            ).scalar_subquery()
            cut = case((turn_start < newest_kept, turn_start), else_=newest_kept)
            # The oldest first, _PRUNE_CHUNK a transaction: writers wait for one at most.
            chunk = select(m.c.id).where(here, m.c.id < cut).order_by(m.c.id)
            older = delete(m).where(m.c.id.in_(chunk.limit(_PRUNE_CHUNK).scalar_subquery()))
            while removed < most:
                gone = await self._db.write("history prune", _deleting(older))
                removed += gone
                if gone < _PRUNE_CHUNK:
                    break
            self._reads.histories.drop(key)
        return removed

    async def prune_images(self, max_bytes: int, max_age: timedelta) -> int:
        """Forget image bytes past their age, then the oldest past the size cap.

        A message that showed a forgotten image keeps its name ("[image: cat.png]").
        """

        async def work(session: AsyncSession) -> int:
            cutoff = utcnow() - max_age
            old = await session.execute(delete(BlobRow).where(BlobRow.created_at < cutoff))
            removed = int(getattr(old, "rowcount", 0) or 0)
            total = await session.scalar(select(func.coalesce(func.sum(BlobRow.size), 0)))
            excess = int(total or 0) - max_bytes
            if excess > 0:
                oldest = await session.execute(
                    select(BlobRow.sha256, BlobRow.size).order_by(BlobRow.created_at)
                )
                doomed: list[str] = []
                for sha, size in oldest:
                    if excess <= 0:
                        break
                    doomed.append(sha)
                    excess -= size
                await session.execute(delete(BlobRow).where(BlobRow.sha256.in_(doomed)))
                removed += len(doomed)
            return removed

        return await self._db.write("image prune", work)

    def _link_statement(self) -> Any:
        """Link a post to a row unless it is linked already (a continued answer's pages) or
        the row is gone (its turn was forgotten while the answer was shown).

        On PostgreSQL the row is locked as the foreign key's check locks it (FOR KEY
        SHARE): a deletion not yet committed is waited for and the row found gone. Seen
        still there, the insert's own check then failed on the committed deletion, and
        the whole batch of writes with it."""
        if self._link is None:
            p = _POSTS.c
            row = select(_MESSAGES.c.id).where(_MESSAGES.c.id == bindparam("message_id"))
            values = select(
                bindparam("message_id", type_=p.message_id.type),
                bindparam("platform", type_=p.platform.type),
                bindparam("post_id", type_=p.post_id.type),
            ).where(exists(row.with_for_update(read=True, key_share=True)))
            self._link = (
                self._db.insert(_POSTS)
                .from_select(["message_id", "platform", "post_id"], values)
                .on_conflict_do_nothing()
            )
        return self._link

    async def _insert_ids(
        self, conn: AsyncConnection, rows: list[dict[str, Any]], table: Table = _MESSAGES
    ) -> list[int]:
        """Insert rows of `table` in one statement; their ids, in the rows' order."""
        if self._db.postgres:
            result = await conn.execute(_RETURNING_IDS[table.name], rows)
            return list(result.scalars())
        # SQLite cannot promise RETURNING's order, so SQLAlchemy would send one INSERT per
        # row (a thread hop each through aiosqlite: a burst's 50 questions took ~40 ms).
        # Inside this write transaction SQLite is the only writer and gives a statement's
        # rows consecutive rowids after the largest: the last one tells them all.
        result = await conn.execute(insert(table), rows)
        if len(rows) == 1 and result.lastrowid:  # one row: sqlite3 reports it, no query
            return [int(result.lastrowid)]
        last = int(await conn.scalar(text("SELECT last_insert_rowid()")) or 0)
        return list(range(last - len(rows) + 1, last + 1))

    async def _write_batch(self, writes: Sequence[_Insert | _Update | _Link]) -> list[list[int]]:
        """Every insert and update that arrived together, in one transaction."""
        changes = [w.values for w in writes if isinstance(w, _Update)]
        linked = [row for w in writes if isinstance(w, _Link) for row in w.rows]
        refused: set[int] = set()  # positions in `writes` of inserts a guard turned down

        async def work(conn: AsyncConnection) -> list[int]:
            refused.clear()
            guarded = [(i, w) for i, w in enumerate(writes) if isinstance(w, _Insert) and w.guard]
            for i, w in sorted(guarded, key=lambda pair: pair[1].order):
                assert isinstance(w, _Insert) and w.guard is not None
                if not await w.guard(conn):
                    refused.add(i)
            inserts = [
                w for i, w in enumerate(writes) if isinstance(w, _Insert) and i not in refused
            ]
            rows = [row for w in inserts for row in w.rows]
            links = [refs for w in inserts for refs in w.links]
            blobs = {b.sha256: b for w in inserts for b in w.blobs}
            ids: list[int] = []
            if blobs:
                now = utcnow()
                stmt = self._db.insert(BlobRow)
                # Seen again: it is fresh again for the retention rule.
                stmt = stmt.on_conflict_do_update(
                    index_elements=["sha256"], set_={"created_at": stmt.excluded.created_at}
                )
                await conn.execute(
                    stmt,
                    [
                        {
                            "sha256": b.sha256,
                            "media_type": b.media_type,
                            "data": b.data,
                            "size": len(b.data),
                            "created_at": now,
                        }
                        for b in blobs.values()
                    ],
                )
            if rows:
                ids = await self._insert_ids(conn, rows)
                shown = [
                    {
                        "message_id": message_id,
                        "position": position,
                        "sha256": ref.sha256,
                        "name": clean_text(ref.name)[:NAME_CHARS],
                        "media_type": ref.media_type,
                    }
                    for message_id, refs in zip(ids, links, strict=True)
                    for position, ref in enumerate(refs)
                ]
                if shown:
                    await conn.execute(insert(_MESSAGE_IMAGES), shown)
            # A new row's messages: a plain insert (the row is here, and new).
            new_links = [
                link
                for row, message_id, shows in zip(
                    rows, ids, [p for w in inserts for p in w.posts], strict=True
                )
                for link in _post_rows(Platform(row["platform"]), message_id, shows)
            ]
            if new_links:
                await conn.execute(insert(_POSTS), new_links)
            held = [w.held for w in inserts if w.held is not None]
            if held:
                usage_ids = await self._insert_ids(conn, [h.row for h in held], _USAGE)
                for usage, usage_id in zip(held, usage_ids, strict=True):
                    usage.reserved = usage_id
            if changes:
                await conn.execute(_UPDATE, changes)
            if linked:
                await conn.execute(self._link_statement(), linked)
            return ids

        ids = iter(await self._db.write_plain("history write", work))
        return [
            [next(ids) for _ in w.rows] if isinstance(w, _Insert) and i not in refused else []
            for i, w in enumerate(writes)
        ]
