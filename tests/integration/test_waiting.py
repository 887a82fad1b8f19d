"""Questions waiting for their conversation's turn are recorded while they wait, so a
process that went away without answering them (`kill -9`) is followed by a word.

Real Cores on SQLite and PostgreSQL against a loopback model that streams slowly; a
second Core on the same database plays the process started after a killed one (the
killed one's memory is what is lost; its records are all it leaves).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot.core import UNANSWERED, Core, TurnLimits, TurnResult
from bot.store import StoreUnavailable
from bot.store.models import WaitingRow
from bot.types import Actor, ChannelRef, Incoming, Platform, Scope
from bot.types.limits import AccessKind, AccessRule, Effect
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai
from tests.integration.test_turns import Sink, make_core

REF = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
THREAD = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1", thread_id="t9")
ADA = Actor("u1", "Ada")
SERVED = "bot-a"
STOPPED_BEFORE = "Stopped before the answer began."


@pytest.fixture
async def slow() -> AsyncIterator[FakeOpenAI]:
    """An answer that takes about 2 s: long enough for questions to queue behind it."""
    async with fake_openai(Script(chunks=[f"w{i} " for i in range(20)], interval=0.1)) as fake:
        yield fake


async def _records(core: Core) -> list[tuple[str, str, str, str]]:
    async with core.store.engine.connect() as conn:
        rows = (await conn.execute(select(WaitingRow.__table__))).all()
    return [(r.channel_id, r.thread_id, r.post_id, r.served_by) for r in rows]


async def _until(check: Callable[[], object], seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 (a model server's count: nothing to wait on)
            await asyncio.sleep(0.02)


def _ask(core: Core, ref: ChannelRef, text: str, post: str) -> asyncio.Task[object]:
    return asyncio.create_task(core.chat(Incoming(ref, ADA, text, message_id=post), Sink()))


async def test_a_waiting_question_is_recorded_until_its_turn_and_left_ones_are_said_once(
    database_url: str, slow: FakeOpenAI
) -> None:
    killed = await make_core(database_url, slow, TurnLimits())
    after = await make_core(database_url, slow, TurnLimits())
    try:
        killed.serve(Platform.DISCORD, SERVED)
        after.serve(Platform.DISCORD, SERVED)
        first = _ask(killed, REF, "count", "m1")
        await _until(lambda: slow.requests)
        assert await _records(killed) == []  # a turn that starts at once writes nothing more
        waiting = [_ask(killed, REF, "second", "m2"), _ask(killed, THREAD, "elsewhere", "m3")]
        waiting.append(_ask(killed, REF, "third", "m4"))
        await asyncio.sleep(0.5)
        # m3 is the first in its thread: it does not wait, so it is not recorded.
        assert sorted(await _records(killed)) == [
            ("c1", "", "m2", SERVED),
            ("c1", "", "m4", SERVED),
        ]
        assert await killed.unanswered(Platform.DISCORD) == []  # its own are still waiting
        # The process after a killed one: each question it left, once, oldest first.
        left = await after.unanswered(Platform.DISCORD)
        assert [(u.ref, u.post_id, u.text) for u in left] == [
            (REF, "m2", UNANSWERED),
            (REF, "m4", UNANSWERED),
        ]
        assert await after.unanswered(Platform.DISCORD) == []  # its own now
        for untold in left:
            await after.told(untold)
        assert await _records(killed) == []
        await asyncio.wait_for(asyncio.gather(first, *waiting), 30)
    finally:
        await killed.close()
        await after.close()


async def test_a_question_whose_turn_came_leaves_no_record(
    database_url: str, slow: FakeOpenAI
) -> None:
    core = await make_core(database_url, slow, TurnLimits())
    other = await make_core(database_url, slow, TurnLimits())
    try:
        core.serve(Platform.DISCORD, SERVED)
        other.serve(Platform.DISCORD, SERVED)
        turns = [_ask(core, REF, "count", "m1")]
        await _until(lambda: slow.requests)
        turns.append(_ask(core, REF, "second", "m2"))
        await _until(lambda: len(slow.requests) == 2, 20)  # the second one's turn came
        assert await _records(core) == []
        await asyncio.wait_for(asyncio.gather(*turns), 30)
        assert await other.unanswered(Platform.DISCORD) == []
    finally:
        await core.close()
        await other.close()


async def test_what_another_front_end_serves_is_not_taken(
    database_url: str, slow: FakeOpenAI
) -> None:
    """Two bots on one database: each says only what its own process left."""
    core = await make_core(database_url, slow, TurnLimits())
    other_bot = await make_core(database_url, slow, TurnLimits())
    try:
        core.serve(Platform.DISCORD, SERVED)
        other_bot.serve(Platform.DISCORD, "bot-b")
        turns = [_ask(core, REF, "count", "m1"), _ask(core, REF, "second", "m2")]
        await _until(lambda: slow.requests)
        await asyncio.sleep(0.3)
        assert [r[2] for r in await _records(core)] == ["m2"]
        assert await other_bot.unanswered(Platform.DISCORD) == []
        assert await other_bot.unanswered(Platform.MATRIX) == []  # it serves no Matrix
        assert [r[2] for r in await _records(core)] == ["m2"]
        await asyncio.wait_for(asyncio.gather(*turns), 30)
    finally:
        await core.close()
        await other_bot.close()


async def test_a_console_records_nothing(database_url: str, slow: FakeOpenAI) -> None:
    """A front-end that serves nothing by a lease (the console) keeps its questions in
    memory only: there is no process after it to say anything."""
    core = await make_core(database_url, slow, TurnLimits())
    try:
        turns = [_ask(core, REF, "count", "m1"), _ask(core, REF, "second", "m2")]
        await _until(lambda: slow.requests)
        await asyncio.sleep(0.3)
        assert await _records(core) == []
        await asyncio.wait_for(asyncio.gather(*turns), 30)
    finally:
        await core.close()


async def _left_behind(core: Core, ref: ChannelRef, posts: list[str], by: str = "gone") -> None:
    """Records a process `by` left (it went away while they waited)."""
    for post in posts:
        await core.store.waiting.add(ref, post, SERVED, by)


async def test_those_a_process_did_not_get_to_say_are_said_by_the_next(
    database_url: str, slow: FakeOpenAI
) -> None:
    """Hostile probe: the records were deleted as they were read, so a process killed
    while it said them (Discord's rate limits make that minutes) lost the rest unsaid."""
    saying = await make_core(database_url, slow, TurnLimits())
    later = await make_core(database_url, slow, TurnLimits())
    try:
        for core in (saying, later):
            core.serve(Platform.DISCORD, SERVED)
        await _left_behind(saying, REF, ["m1", "m2"])
        first, _ = await saying.unanswered(Platform.DISCORD)
        await saying.told(first)  # then it is killed
        assert [u.post_id for u in await later.unanswered(Platform.DISCORD)] == ["m2"]
    finally:
        await saying.close()
        await later.close()


async def test_a_question_whose_turn_came_is_never_said_unanswered(
    database_url: str, slow: FakeOpenAI
) -> None:
    """Review: a record whose removal the database refused as its turn began (locked,
    a dropped connection) had the next process reply "Not answered" to a question that
    was answered. One whose question was stored is dropped unsaid."""
    core = await make_core(database_url, slow, TurnLimits())
    after = await make_core(database_url, slow, TurnLimits())
    try:
        for each in (core, after):
            each.serve(Platform.DISCORD, SERVED)
        await core.chat(Incoming(REF, ADA, "count", message_id="m1"), Sink())
        await _left_behind(core, REF, ["m1", "m2"])  # m1's removal failed
        assert [u.post_id for u in await after.unanswered(Platform.DISCORD)] == ["m2"]
        assert [r[2] for r in await _records(core)] == ["m2"]
    finally:
        await core.close()
        await after.close()


async def test_many_in_one_conversation_get_one_reply(database_url: str, slow: FakeOpenAI) -> None:
    """Hostile probe: 200 questions left in one channel were 200 replies (minutes of a
    channel's rate limit, shared with new answers). Past three, one reply to the newest
    says how many."""
    core = await make_core(database_url, slow, TurnLimits())
    try:
        core.serve(Platform.DISCORD, SERVED)
        await _left_behind(core, REF, [f"r{i}" for i in range(5)])
        await _left_behind(core, THREAD, ["t1", "t2", "t3"])
        told = await core.unanswered(Platform.DISCORD)
        assert [(u.ref, u.post_id, len(u.records)) for u in told] == [
            (REF, "r4", 5),
            (THREAD, "t1", 1),
            (THREAD, "t2", 1),
            (THREAD, "t3", 1),
        ]
        assert told[0].text == (
            "Not answered: the bot stopped before it got to 5 questions here (this is the "
            "newest of them). Ask again."
        )
        for untold in told:
            await core.told(untold)
        assert await _records(core) == []
    finally:
        await core.close()


async def test_records_nobody_will_say_are_pruned(database_url: str, slow: FakeOpenAI) -> None:
    """Review: records of a front-end served under another name since (a new token,
    other shards) stayed for ever."""
    core = await make_core(database_url, slow, TurnLimits())
    try:
        other = ChannelRef(Platform.DISCORD, channel_id="c3", server_id="g1")
        await core.store.waiting.add(other, "old", "another-name", "gone")
        await core.store.waiting.add(other, "new", "another-name", "gone")
        async with core.store.engine.begin() as conn:
            await conn.execute(
                update(WaitingRow.__table__)
                .where(WaitingRow.__table__.c.post_id == "old")
                .values(created_at=datetime.now(UTC) - timedelta(days=8))
            )
        await core.housekeeping()
        assert [r[2] for r in await _records(core)] == ["new"]
    finally:
        await core.close()


async def test_a_backlog_larger_than_one_claim_is_said_whole(
    database_url: str, slow: FakeOpenAI
) -> None:
    """Review: the claim named every record in one statement; a backlog past a
    statement's parameters (PostgreSQL's 32,767) would fail at every start. Claimed a
    few hundred at a time, all of it is said."""
    core = await make_core(database_url, slow, TurnLimits())
    try:
        core.serve(Platform.DISCORD, SERVED)
        rows = [
            {
                "platform": "discord",
                "server_id": "g1",
                "channel_id": f"c{i % 3}",
                "thread_id": "",
                "post_id": f"p{i}",
                "served_by": SERVED,
                "process": "gone",
                "created_at": datetime.now(UTC),
            }
            for i in range(1_200)
        ]
        async with core.store.engine.begin() as conn:
            await conn.execute(WaitingRow.__table__.insert(), rows)
        told = await core.unanswered(Platform.DISCORD)
        assert sorted(len(u.records) for u in told) == [400, 400, 400]
        for untold in told:
            await core.told(untold)
        assert await _records(core) == []
    finally:
        await core.close()


async def test_a_question_deleted_while_it_waits_is_not_said_unanswered(
    database_url: str, slow: FakeOpenAI
) -> None:
    """Hostile probe: a question deleted while it waited kept its record, so after a
    kill the next process replied "Not answered" to a message that was gone (a failed
    call on Discord; a reply to a redacted event on Matrix)."""
    killed = await make_core(database_url, slow, TurnLimits())
    after = await make_core(database_url, slow, TurnLimits())
    try:
        for core in (killed, after):
            core.serve(Platform.DISCORD, SERVED)
        first = _ask(killed, REF, "count", "m1")
        await _until(lambda: slow.requests)
        second = _ask(killed, REF, "second", "m2")
        await asyncio.sleep(0.3)
        assert [r[2] for r in await _records(killed)] == ["m2"]
        await killed.deleted(Platform.DISCORD, REF.channel_id, ["m2"])
        await asyncio.sleep(0.3)  # its record goes in the background
        assert await after.unanswered(Platform.DISCORD) == []
        assert await _records(killed) == []
        await asyncio.wait_for(asyncio.gather(first, second), 30)
        assert len(slow.requests) == 1  # nor was it asked
    finally:
        await killed.close()
        await after.close()


async def test_a_deletion_by_one_who_may_remove_only_their_own_keeps_anothers_record(
    database_url: str, slow: FakeOpenAI
) -> None:
    """Hostile probe: a Matrix member without the redact power naming another's waiting
    question took its record away (and the question with it), so after a kill nobody
    was told it went unanswered. Her own record goes; his stays, and he is told."""
    killed = await make_core(database_url, slow, TurnLimits())
    after = await make_core(database_url, slow, TurnLimits())
    try:
        for core in (killed, after):
            core.serve(Platform.DISCORD, SERVED)
        first = _ask(killed, REF, "count", "m1")
        await _until(lambda: slow.requests)
        second = _ask(killed, REF, "second", "m2")  # Ada's
        eve = Actor("u-eve", "Eve")
        third = asyncio.create_task(
            killed.chat(Incoming(REF, eve, "third", message_id="m3"), Sink())
        )
        await asyncio.sleep(0.3)
        assert sorted(r[2] for r in await _records(killed)) == ["m2", "m3"]
        await killed.deleted(Platform.DISCORD, REF.channel_id, ["m2", "m3"], author=eve.id)
        await asyncio.sleep(0.3)  # a record goes in the background
        assert [r[2] for r in await _records(killed)] == ["m2"]
        left = await after.unanswered(Platform.DISCORD)
        assert [(u.ref, u.post_id, u.text) for u in left] == [(REF, "m2", UNANSWERED)]
        await asyncio.wait_for(asyncio.gather(first, second, third), 30)
        assert len(slow.requests) == 2  # Ada's asked, Eve's not
    finally:
        await killed.close()
        await after.close()


async def test_someone_not_allowed_to_chat_is_not_recorded(
    database_url: str, slow: FakeOpenAI
) -> None:
    """A question of someone not allowed to chat there, waiting behind another, was
    recorded, and after a kill the next process replied "Not answered … Ask again" to
    someone the bot ignores quietly."""
    core = await make_core(database_url, slow, TurnLimits())
    try:
        core.serve(Platform.DISCORD, SERVED)
        rule = AccessRule(AccessKind.USER, ADA.id, Effect.ALLOW)
        await core.store.quotas.set_rule(REF, Scope.CHANNEL, rule, ADA)
        first = _ask(core, REF, "count", "m1")
        await _until(lambda: slow.requests)
        eve = Actor("u666", "Eve")
        shut_out = asyncio.create_task(
            core.chat(Incoming(REF, eve, "me too", message_id="m2"), Sink())
        )
        waiting = _ask(core, REF, "second", "m3")
        await asyncio.sleep(0.5)
        assert await _records(core) == [("c1", "", "m3", SERVED)]
        await asyncio.wait_for(asyncio.gather(first, shut_out, waiting), 30)
    finally:
        await core.close()


async def test_a_question_waiting_in_its_front_end_is_recorded_once_until_its_turn(
    database_url: str, slow: FakeOpenAI
) -> None:
    """A front-end that holds a question back before `chat` (Matrix, behind a command
    running in the room) records it meanwhile (waiting_before): one record, handed over
    to the core's turn order and gone when its turn comes; gone too when the block ends
    without a turn; none for a question not to be answered (asker None)."""
    core = await make_core(database_url, slow, TurnLimits())
    other = await make_core(database_url, slow, TurnLimits())
    matrix = ChannelRef(Platform.MATRIX, channel_id="!room:hs")

    async def recorded(*posts: str) -> None:
        expected = [("!room:hs", "", post, SERVED) for post in posts]
        async with asyncio.timeout(10):
            while await _records(core) != expected:  # noqa: ASYNC110 (a database read)
                await asyncio.sleep(0.02)

    async def ada() -> Actor:
        return ADA

    async def nobody() -> None:
        return None

    try:
        core.serve(Platform.MATRIX, SERVED)
        other.serve(Platform.MATRIX, SERVED)
        first = _ask(core, matrix, "count", "$e1")
        await _until(lambda: slow.requests)
        with core.waiting_before(matrix, "$e2", ada):
            await recorded("$e2")
            second = _ask(core, matrix, "second", "$e2")  # waits in the core now
            await asyncio.sleep(0.3)
            assert await _records(core) == [("!room:hs", "", "$e2", SERVED)]  # still one
            await _until(lambda: len(slow.requests) == 2, 20)  # its turn came
            await recorded()
            await asyncio.wait_for(asyncio.gather(first, second), 30)
        with core.waiting_before(matrix, "$e3", ada):  # then not asked after all
            await recorded("$e3")
        await recorded()
        with core.waiting_before(matrix, "$e4", nobody):
            await asyncio.sleep(0.3)
        await recorded()
        assert await other.unanswered(Platform.MATRIX) == []
    finally:
        await core.close()
        await other.close()


async def test_a_question_held_back_in_its_front_end_is_its_askers_to_stop_or_delete(
    database_url: str, slow: FakeOpenAI
) -> None:
    """Matrix holds a question back behind a command running in its room (waiting_before):
    it was out of the core's reach there, so its asker's stop and its deletion took effect
    only once the command had ended. Now they reach it as one waiting in the turn order:
    while it waits, and while its front-end decides on it after (the stop kept for its
    turn); stopped it says so, deleted it says nothing, and neither is asked."""
    core = await make_core(database_url, slow, TurnLimits())
    matrix = ChannelRef(Platform.MATRIX, channel_id="!room:hs")
    line = asyncio.Event()  # the front-end's line: set once the command before it ends
    deciding, decided = asyncio.Event(), asyncio.Event()

    async def ada() -> Actor:
        return ADA

    async def held_back(post: str) -> tuple[TurnResult, Sink]:
        """A question as the Matrix front-end handles one that waits behind a command."""
        sink = Sink()
        with core.waiting_before(matrix, post, ada, ADA.id) as held:
            await held.hold()  # behind a command: held where the core stops it
            said = await held.until(line.wait, sink)
            if said is None:
                deciding.set()
                await decided.wait()  # the front-end deciding whether to answer it
                said = await core.chat(Incoming(matrix, ADA, "hello", message_id=post), sink)
        return said, sink

    async def stop() -> str:
        return (await core.run_text_command(Incoming(matrix, ADA, "!stop"))).text

    stopped = "Stopped your question waiting here: it will not be answered."
    try:
        core.serve(Platform.MATRIX, SERVED)
        waiting = asyncio.create_task(held_back("$e1"))
        await _until_recorded(core, ["$e1"])
        assert await stop() == stopped
        said, sink = await asyncio.wait_for(waiting, 10)
        assert (said.answer, sink.final) == (STOPPED_BEFORE, (STOPPED_BEFORE, None))

        removed = asyncio.create_task(held_back("$e2"))
        await _until_recorded(core, ["$e2"])
        await core.deleted(Platform.MATRIX, "!room:hs", ["$e2"], author=ADA.id)
        said, sink = await asyncio.wait_for(removed, 10)
        assert said.ignored and sink.final is None  # nothing said: the question is gone
        await _until_recorded(core, [])
        assert await stop() == "No answer is being written here."  # nothing left to stop

        line.set()  # the command has ended: the next one is decided on at once
        decided_on = asyncio.create_task(held_back("$e3"))
        await asyncio.wait_for(deciding.wait(), 10)
        assert await stop() == stopped  # kept for its turn
        decided.set()
        said, sink = await asyncio.wait_for(decided_on, 10)
        assert (said.answer, sink.final) == (STOPPED_BEFORE, (STOPPED_BEFORE, None))
        assert slow.requests == []  # none was asked
        assert await core.store.history(matrix, 10) == []  # nor stored
        await _until_recorded(core, [])
    finally:
        await core.close()


async def _until_recorded(core: Core, posts: list[str]) -> None:
    expected = [("!room:hs", "", post, SERVED) for post in posts]
    async with asyncio.timeout(10):
        while await _records(core) != expected:  # noqa: ASYNC110 (a database read)
            await asyncio.sleep(0.02)


async def test_a_question_whose_asker_cannot_be_told_is_not_held_and_waits_all_the_same(
    database_url: str, slow: FakeOpenAI
) -> None:
    """Matrix holds a question back where the core stops it only once it knows who asks it:
    when the database cannot say, nothing is held, and its front-end is told so (hold is
    False), so a `!stop` after it waits for it to join the turn order instead of going
    ahead of it; it waits in its line all the same, and is asked once its turn comes."""
    core = await make_core(database_url, slow, TurnLimits())
    matrix = ChannelRef(Platform.MATRIX, channel_id="!room:hs")
    line = asyncio.Event()

    async def unknown() -> Actor:
        raise StoreUnavailable

    try:
        sink = Sink()
        with core.waiting_before(matrix, "$e1", unknown, ADA.id) as held:
            assert await held.hold() is False
            stop = await core.run_text_command(Incoming(matrix, ADA, "!stop"))
            assert stop.text == "No answer is being written here."  # nothing held to stop
            line.set()
            assert await held.until(line.wait, sink) is None
            said = await core.chat(Incoming(matrix, ADA, "hello", message_id="$e1"), sink)
        assert said.called_provider and sink.final is not None
    finally:
        await core.close()
