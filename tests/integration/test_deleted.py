"""Messages deleted on the platform leave the history: the model never reads them again;
an edited question reads as edited.

A real Core on SQLite and PostgreSQL against a loopback OpenAI-compatible endpoint.
Front-ends tell the core which platform messages show a turn (the question as sent,
an answer's pages) and which were deleted; these tests speak to the core as they do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import delete, func, select

from bot.commands import Invocation
from bot.core import Core, Edited, HeldReply, TurnLimits, TurnResult
from bot.store.models import BlobRow, MessageRow, PostRow, UsageRow
from bot.types import (
    Actor,
    Attachment,
    ChannelRef,
    HistoryEntry,
    Incoming,
    Platform,
    Role,
    Scope,
    SecretValue,
    TurnState,
)
from tests.discord.fake_openai import FakeOpenAI, Script
from tests.integration.test_images import png
from tests.integration.test_turns import Sink, SlowFile, endpoint, make_core

__all__ = ["endpoint"]  # the fixture, shared with test_turns

REF = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
THREAD = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1", thread_id="t9")
ASKER = Actor("u-eve", "Eve")
OTHER = Actor("u-bob", "Bob")
ADMIN = Actor("u-ada", "Ada", is_channel_admin=True)


@pytest.fixture
async def core(database_url: str, endpoint: FakeOpenAI) -> AsyncIterator[Core]:
    made = await make_core(database_url, endpoint, TurnLimits())
    try:
        yield made
    finally:
        await made.close()


async def ask(
    core: Core,
    text: str,
    post: str,
    *,
    actor: Actor = ASKER,
    pages: Sequence[str] = (),
    ref: ChannelRef = REF,
    attachments: tuple[Attachment, ...] = (),
    sink: Sink | None = None,
) -> Sink:
    """A message `post` asks; the answer is shown in `pages` (as a front-end does)."""
    sink = sink or Sink()
    result = await core.chat(Incoming(ref, actor, text, attachments, post), sink)
    await core.shown_in(ref, result.answer_id, pages)
    return sink


async def queued_behind_an_answer(
    core: Core, endpoint: FakeOpenAI, text: str
) -> tuple[asyncio.Task[Sink], asyncio.Task[Sink]]:
    """ "first" (message q1) being answered, and `text` (message q2) asked after it: in
    line, not stored yet."""
    endpoint.script = Script(chunks=[f"w{i} " for i in range(20)], interval=0.05)
    first = asyncio.create_task(ask(core, "first", "q1"))
    for _ in range(200):
        if endpoint.requests:
            break
        await asyncio.sleep(0.02)
    waiting = asyncio.create_task(ask(core, text, "q2"))
    await asyncio.sleep(0.05)
    return first, waiting


def said(endpoint: FakeOpenAI, index: int = -1) -> list[str]:
    """The texts of the messages the model got in request `index` (system prompt aside)."""
    messages = endpoint.requests[index]["messages"]
    assert isinstance(messages, list)
    return [m["content"] for m in messages if m["role"] != "system"]


def turns(history: list[HistoryEntry]) -> list[tuple[Role, str]]:
    return [(e.role, e.content) for e in history]


async def test_a_deleted_question_takes_its_answer_along(core: Core, endpoint: FakeOpenAI) -> None:
    await ask(core, "my address is 1 Elm St", "q1", pages=["a1"])
    await ask(core, "what is 2+2?", "q2", pages=["a2"])
    assert await core.deleted(Platform.DISCORD, "c1", ["q1"]) == 2
    assert turns(await core.store.history(REF, 10)) == [
        (Role.USER, "what is 2+2?"),
        (Role.ASSISTANT, "Hello there!"),
    ]
    await ask(core, "and now?", "q3")
    assert said(endpoint) == ["what is 2+2?", "Hello there!", "and now?"]
    # Deleted again (a replayed event): nothing left to forget, nothing fails.
    assert await core.deleted(Platform.DISCORD, "c1", ["q1"]) == 0


class Paged(Sink):
    """A sink showing its answer in the platform messages `pages` (as a button's does:
    the answer's own messages, edited in place)."""

    def __init__(self, pages: Sequence[str]) -> None:
        super().__init__()
        self.pages = list(pages)

    def posts(self) -> list[str]:
        return list(self.pages)


async def test_a_changed_answer_is_tied_to_its_messages_when_its_turn_ends(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Restarts probe: a 🔄 (and a ⏩ that took a new page) was tied to the messages
    showing it only by the front-end once the turn was over; a stop signal ends the
    process right after the turns end, so one stopped so before its first save was tied
    to none: after the restart a typed /continue found no message showing it and posted
    the answer anew, and deleting the message forgot nothing of it. Here the front-end's
    own bookkeeping never comes (shown_in is not called), as with that shutdown."""
    await ask(core, "tell me a joke", "q1", pages=["a1"])
    endpoint.script = Script(chunks=["Another one"])
    regenerate = core.parse("/regenerate", Platform.DISCORD)
    done = await core.run_control(REF, ASKER, regenerate, HeldReply(Paged(["a1"])))
    assert isinstance(done, TurnResult) and done.answer_id is not None
    assert await core.newest_answer_posts(REF) == (done.answer_id, ["a1"])
    endpoint.script = Script(chunks=[" and more"])
    more = core.parse("/continue", Platform.DISCORD)
    await core.run_control(REF, ASKER, more, HeldReply(Paged(["a1", "a1-page2"])))
    assert await core.newest_answer_posts(REF) == (done.answer_id, ["a1", "a1-page2"])
    # A moderator deletes the new page: the answer and its alternative go.
    assert await core.deleted(Platform.DISCORD, "c1", ["a1-page2"]) == 2
    assert turns(await core.store.history(REF, 10)) == [(Role.USER, "tell me a joke")]


async def test_a_deleted_answer_goes_with_its_alternatives_and_the_question_stays(
    core: Core, endpoint: FakeOpenAI
) -> None:
    await ask(core, "tell me a joke", "q1", pages=["a1", "a1-page2"])
    endpoint.script = Script(chunks=["Another one"])
    inv = core.parse("/regenerate", Platform.DISCORD)
    done = await core.run_control(REF, ASKER, inv, Sink())
    assert isinstance(done, TurnResult) and done.answer_id is not None
    await core.shown_in(REF, done.answer_id, ["a1", "a1-page2"])  # edited in place
    answers = await core.store.alternatives(REF, done.question_id or 0)
    assert len(answers) == 2
    # A moderator deletes the answer's second page: both answers go, the question stays.
    assert await core.deleted(Platform.DISCORD, "c1", ["a1-page2"]) == 2
    assert turns(await core.store.history(REF, 10)) == [(Role.USER, "tell me a joke")]
    assert await core.store.alternatives(REF, done.question_id or 0) == []
    # The question left without its answer and the next one go as one turn: chat
    # templates such as Mistral's refuse two user turns in a row.
    await ask(core, "another one", "q2")
    assert said(endpoint) == ["tell me a joke\n\nanother one"]


async def test_one_who_may_remove_only_their_own_messages_forgets_only_their_questions(
    core: Core, endpoint: FakeOpenAI
) -> None:
    await ask(core, "Bob's question", "q1", actor=OTHER, pages=["a1"])
    await ask(core, "Eve's question", "q2", pages=["a2"])
    # Eve (no power to remove others' messages) names Bob's question, his answer,
    # and the answer to her own: only her own question goes, with its answer.
    gone = await core.deleted(Platform.DISCORD, "c1", ["q1", "a1", "a2"], author=ASKER.id)
    assert gone == 0
    assert len(await core.store.history(REF, 10)) == 4
    assert await core.deleted(Platform.DISCORD, "c1", ["q2"], author=ASKER.id) == 2
    assert turns(await core.store.history(REF, 10)) == [
        (Role.USER, "Bob's question"),
        (Role.ASSISTANT, "Hello there!"),
    ]


async def test_a_deletion_reaches_only_its_own_channel_or_thread(
    core: Core, endpoint: FakeOpenAI
) -> None:
    await ask(core, "in the thread", "q1", ref=THREAD, pages=["a1"])
    # Another channel, or another platform, naming the same ids: nothing happens.
    assert await core.deleted(Platform.DISCORD, "c2", ["q1", "a1"]) == 0
    assert await core.deleted(Platform.MATRIX, "c1", ["q1", "a1"]) == 0
    assert len(await core.store.history(THREAD, 10)) == 2
    # Discord names a thread's message by the thread.
    assert await core.deleted(Platform.DISCORD, "t9", ["q1"]) == 2
    assert await core.store.history(THREAD, 10) == []


async def test_deleting_the_question_being_answered_stops_the_answer(
    core: Core, endpoint: FakeOpenAI
) -> None:
    endpoint.script = Script(chunks=[f"w{i} " for i in range(400)], interval=0.05)
    sink = Sink()
    turn = asyncio.create_task(ask(core, "talk for a long time", "q1", pages=["a1"], sink=sink))
    await asyncio.wait_for(sink.first.wait(), 10)
    # The question, and the answer: stored as stopped before it is forgotten.
    assert await core.deleted(Platform.DISCORD, "c1", ["q1"]) == 2
    await asyncio.wait_for(turn, 10)
    assert sink.final is not None and sink.final[1] == "Stopped: the question was deleted."
    assert await core.store.history(REF, 10) == []
    for _ in range(50):  # the endpoint notices the hang-up a moment later
        if endpoint.cut_off:
            break
        await asyncio.sleep(0.05)
    assert endpoint.cut_off, "the model's connection was not closed"


async def test_a_page_linked_as_its_answer_is_deleted_is_not_linked(core: Core) -> None:
    """CI on PostgreSQL: the row was seen still there by the link's check while another
    transaction deleted it, and the insert's foreign key then failed on the committed
    deletion (an IntegrityError, and the whole batch of writes with it). The link now
    waits for the deletion, finds the row gone and links nothing."""
    await ask(core, "hi", "q1", pages=["a1"])
    [_, answer] = await core.store.history(REF, 10)
    assert answer.id is not None
    async with core.store.engine.connect() as conn:
        await conn.execute(delete(MessageRow).where(MessageRow.id == answer.id))
        linking = asyncio.create_task(core.store.link_posts(REF, answer.id, ["a2"]))
        await asyncio.sleep(0.5)  # the link reaches the row the deletion holds
        assert not linking.done()
        await conn.commit()
    await asyncio.wait_for(linking, 30)
    async with core.store.engine.connect() as conn:
        linked = await conn.scalar(select(func.count()).where(PostRow.post_id == "a2"))
    assert linked == 0


async def test_a_question_deleted_while_it_waits_for_its_turn_is_not_asked(
    core: Core, endpoint: FakeOpenAI
) -> None:
    first, waiting = await queued_behind_an_answer(core, endpoint, "second, soon deleted")
    assert await core.deleted(Platform.DISCORD, "c1", ["q2"]) == 0
    await first
    second = await waiting
    assert second.final is None  # nothing was shown for it
    assert len(endpoint.requests) == 1
    assert turns(await core.store.history(REF, 10)) == [
        (Role.USER, "first"),
        (Role.ASSISTANT, "".join(f"w{i} " for i in range(20))),
    ]


async def test_a_question_deleted_while_its_turn_is_prepared_is_not_asked(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Race probe: a question deleted right after it was sent, while its turn was prepared
    (its file still read), was asked all the same: the deletion looked for the stored
    question, not stored yet. Now nothing is sent, charged, shown or kept."""
    file, sink = SlowFile(), Sink()
    turn = asyncio.create_task(
        ask(core, "read this", "q1", attachments=(file.attachment(),), sink=sink)
    )
    await asyncio.wait_for(file.downloading.wait(), 10)
    assert await core.deleted(Platform.DISCORD, "c1", ["q1"]) == 0  # nothing stored yet
    file.downloaded.set()
    await asyncio.wait_for(turn, 10)
    assert endpoint.requests == []  # the model was never asked
    assert sink.updates == [] and sink.final is None  # nothing shown: the question is gone
    assert await core.store.history(REF, 10) == []
    async with core.store.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(UsageRow)) == 0
    # The conversation goes on without it.
    await ask(core, "hello?", "q2")
    assert said(endpoint) == ["hello?"]


async def test_a_question_stopped_then_deleted_while_prepared_leaves_nothing(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """A /stop first, then the deletion: the stop's word would reply to a message that is
    gone, and the question would stay as failed; neither happens."""
    file, sink = SlowFile(), Sink()
    turn = asyncio.create_task(
        ask(core, "read this", "q1", attachments=(file.attachment(),), sink=sink)
    )
    await asyncio.wait_for(file.downloading.wait(), 10)
    stopped = await core.run_text_command(Incoming(REF, ASKER, "/stop"))
    assert stopped.text == "Stopped the answer."
    await core.deleted(Platform.DISCORD, "c1", ["q1"])
    file.downloaded.set()
    await asyncio.wait_for(turn, 10)
    assert endpoint.requests == [] and sink.final is None
    assert await core.store.history(REF, 10) == []


async def test_a_regenerate_waiting_when_its_question_is_deleted_is_not_done(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """🔄 pressed while the answer streams waits its turn; the question deleted meanwhile
    (its answer stops) was regenerated all the same once the control's turn came: the
    deletion knew only the turn being written, and it was forgotten only after."""
    endpoint.script = Script(chunks=[f"w{i} " for i in range(20)], interval=0.05)
    first = asyncio.create_task(ask(core, "first", "q1", pages=["a1"]))
    for _ in range(200):
        if endpoint.requests:
            break
        await asyncio.sleep(0.02)
    sink = Sink()
    regen = asyncio.create_task(core.run_control(REF, ASKER, Invocation(("regenerate",), {}), sink))
    await asyncio.sleep(0.05)  # in line behind the answer
    await core.deleted(Platform.DISCORD, "c1", ["q1"])
    await asyncio.wait_for(first, 10)
    done = await asyncio.wait_for(regen, 10)
    assert isinstance(done, TurnResult) and done.ignored and done.notice
    assert sink.updates == [] and sink.final is None  # nothing shown
    assert len(endpoint.requests) == 1  # the first answer's only
    assert await core.store.history(REF, 10) == []
    async with core.store.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(UsageRow)) == 1


async def test_a_question_being_prepared_is_not_stopped_by_another_members_deletion(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """One who may remove only their own messages (a Matrix member without the power)
    naming another's question being prepared stops nothing."""
    file, sink = SlowFile(), Sink()
    turn = asyncio.create_task(
        ask(core, "read this", "q1", attachments=(file.attachment(),), sink=sink)
    )
    await asyncio.wait_for(file.downloading.wait(), 10)
    assert await core.deleted(Platform.DISCORD, "c1", ["q1"], author=OTHER.id) == 0
    file.downloaded.set()
    await asyncio.wait_for(turn, 10)
    assert sink.final == ("Hello there!", None) and len(endpoint.requests) == 1
    assert len(await core.store.history(REF, 10)) == 2


async def test_an_image_only_a_deleted_question_showed_is_forgotten(
    core: Core, endpoint: FakeOpenAI
) -> None:
    data = png("red", (64, 48))

    async def fetch(limit: int) -> bytes:
        return data

    photo = Attachment("me.png", "image/png", len(data), fetch)
    await ask(core, "what is in this photo?", "q1", pages=["a1"], attachments=(photo,))

    async def blobs() -> int:
        async with core.store.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(BlobRow)) or 0)

    assert await blobs() == 1
    assert await core.deleted(Platform.DISCORD, "c1", ["q1"]) == 2
    assert await blobs() == 0


async def test_a_greeting_deleted_goes_with_its_alternates(
    core: Core, endpoint: FakeOpenAI
) -> None:
    first = await core.store.add_greetings(REF, "Seraphina", ["Hi!", "Hello there.", "Hey."])
    await core.shown_in(REF, first, ["g1"])
    await ask(core, "hi Seraphina", "q1", pages=["a1"])
    assert await core.deleted(Platform.DISCORD, "c1", ["g1"]) == 3
    assert turns(await core.store.history(REF, 10)) == [
        (Role.USER, "hi Seraphina"),
        (Role.ASSISTANT, "Hello there!"),
    ]


async def test_links_are_kept_once_and_a_forgotten_answer_takes_none(
    core: Core, endpoint: FakeOpenAI
) -> None:
    await ask(core, "go", "q1", pages=["a1"])
    [question, answer] = await core.store.history(REF, 10)
    assert answer.id is not None and question.state is TurnState.DONE
    await core.shown_in(REF, answer.id, ["a1", "a1"])  # a continued answer's same page

    async def links() -> int:
        async with core.store.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(PostRow)) or 0)

    assert await links() == 2  # q1 and a1, once each
    assert await core.deleted(Platform.DISCORD, "c1", ["q1"]) == 2
    assert await links() == 0
    # The front-end notes the pages of an answer forgotten meanwhile: nothing is kept.
    await core.shown_in(REF, answer.id, ["a1"])
    assert await links() == 0


async def test_an_answer_deleted_while_it_was_written_is_forgotten_once_shown(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """A moderator deletes the answer's message while it still grows: the front-end ties
    the answer to its messages only when it ends, and then it is forgotten."""
    endpoint.script = Script(chunks=[f"w{i} " for i in range(30)], interval=0.03)
    sink = Sink()
    turn = asyncio.create_task(ask(core, "write a lot", "q1", pages=["a1"], sink=sink))
    await asyncio.wait_for(sink.first.wait(), 10)
    assert await core.deleted(Platform.DISCORD, "c1", ["a1"]) == 0  # not tied yet
    await asyncio.wait_for(turn, 10)
    assert sink.final is not None and sink.final[1] is None  # it was written to the end
    assert turns(await core.store.history(REF, 10)) == [(Role.USER, "write a lot")]


async def test_an_edited_question_reads_as_edited_from_the_next_turn(
    core: Core, endpoint: FakeOpenAI
) -> None:
    await ask(core, "what is the capital of Austrlia?", "q1", pages=["a1"])
    edit = "what is the capital of Australia?"
    assert await core.edited(Platform.DISCORD, "c1", "q1", edit, author=ASKER.id) == (
        Edited.CHANGED
    )
    await ask(core, "and its population?", "q2")
    assert said(endpoint) == [edit, "Hello there!", "and its population?"]
    # Someone else's, the bot's own answer, an empty or an overlong text: nothing changes.
    for post, text, author in [
        ("q1", "hijacked", OTHER.id),
        ("a1", "rewritten answer", ASKER.id),
        ("q1", "  \u200b ", ASKER.id),
        ("q1", "x" * 40_000, ASKER.id),
    ]:
        done = await core.edited(Platform.DISCORD, "c1", post, text, author=author)
        assert done is Edited.NOTHING, (post, text[:10], author)
    assert turns(await core.store.history(REF, 10))[0] == (Role.USER, edit)


async def test_an_edit_that_writes_a_key_or_the_channels_password_in_is_not_kept(
    core: Core, endpoint: FakeOpenAI
) -> None:
    password = "correct-horse-battery"
    assert (await core.run_text_command(Incoming(REF, ADMIN, f"/proxy password {password}"))).ok
    # Another source's key, and the server's the channel's own replaces: no channel could
    # make an endpoint of them now, and an edit writing one in was kept and sent.
    claude, server = "claudekey-abcdef123456", "server-claude-key-654321"
    await core.store.set_secret(REF, Scope.SERVER, "claude_api_key", SecretValue(server), ADMIN)
    await core.store.set_secret(REF, Scope.CHANNEL, "claude_api_key", SecretValue(claude), ADMIN)
    await ask(core, "hello", "q1", pages=["a1"])
    for text in (
        "hello sk-proj-abcdefghijklmnopqrstuv",
        f"hello {password}",
        f"hello {claude}",
        f"hello {server}",
    ):
        done = await core.edited(Platform.DISCORD, "c1", "q1", text, author=ASKER.id)
        assert done is Edited.HELD_SECRET
    assert turns(await core.store.history(REF, 10))[0] == (Role.USER, "hello")


async def test_a_question_edited_while_it_waits_its_turn_is_asked_as_edited(
    core: Core, endpoint: FakeOpenAI
) -> None:
    first, waiting = await queued_behind_an_answer(core, endpoint, "capital of Austrlia?")
    edit = "capital of Australia?"
    assert await core.edited(Platform.DISCORD, "c1", "q2", edit, author=ASKER.id) == (
        Edited.NOTHING  # nothing stored to change yet
    )
    await first
    await waiting
    assert said(endpoint)[-1] == edit
    assert turns(await core.store.history(REF, 10))[2] == (Role.USER, edit)


async def test_the_newest_of_quick_edits_stays(core: Core, endpoint: FakeOpenAI) -> None:
    """Each edit is its own task: one that arrived later but reached the store first
    was overwritten by an older one."""
    await ask(core, "rapid", "q1", pages=["a1"])
    await asyncio.gather(
        *(
            core.edited(Platform.DISCORD, "c1", "q1", f"rapid {i}", author=ASKER.id)
            for i in range(6)
        )
    )
    assert turns(await core.store.history(REF, 10))[0] == (Role.USER, "rapid 5")


async def test_a_key_edited_into_a_message_with_files_is_taken_out(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Its question keeps its text (the files' text is part of it: the core knows it
    carried some), but the key must not stay in the channel."""

    async def fetch(limit: int) -> bytes:
        return b"42"

    notes = Attachment("notes.txt", "text/plain", 2, fetch)
    await ask(core, "read this file", "q1", pages=["a1"], attachments=(notes,))
    asked = turns(await core.store.history(REF, 10))[0]
    assert asked == (Role.USER, "read this file\nnotes.txt\n```\n42\n```")
    key_edit = "read this sk-proj-abcdefghijklmnopqrstuv"
    for text, outcome in (("read that file", Edited.NOTHING), (key_edit, Edited.HELD_SECRET)):
        done = await core.edited(Platform.DISCORD, "c1", "q1", text, author=ASKER.id)
        assert done is outcome
    assert turns(await core.store.history(REF, 10))[0] == asked


async def test_a_thread_started_on_an_answer_starts_from_its_turn(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """A thread whose root is an answer's message (its id is the thread's) begins with
    that question and answer; so does one on the question (Matrix probe: the model got
    the thread's message alone), which is not spoken to the bot (it is the asker's); one
    on a message the bot never tied to a turn begins empty."""
    await ask(core, "tell me about cats", "q1", pages=["a1"])
    on_answer = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1", thread_id="a1")
    await ask(core, "and kittens?", "q2", ref=on_answer)
    assert said(endpoint) == ["tell me about cats", "Hello there!", "and kittens?"]
    assert await core.shows_an_answer(on_answer, "a1")
    on_question = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1", thread_id="q1")
    await ask(core, "and dogs?", "q3", ref=on_question)
    assert said(endpoint) == ["tell me about cats", "Hello there!", "and dogs?"]
    assert not await core.shows_an_answer(on_question, "q1")
    elsewhere = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1", thread_id="x")
    await ask(core, "and birds?", "q4", ref=elsewhere)
    assert said(endpoint) == ["and birds?"]
    assert not await core.shows_an_answer(elsewhere, "x")


async def test_a_thread_starts_from_the_answer_on_show_and_follows_its_deletion(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """The thread took the first of a regenerated answer's alternatives (the page shows
    the newest); deleting the question in the channel left its copy in the thread, read
    by the model; a /reset in the thread was undone by the next message."""
    endpoint.script = Script(chunks=["FIRST"])
    result = await core.chat(Incoming(REF, ASKER, "tell me a joke", (), "q1"), Sink())
    await core.shown_in(REF, result.answer_id, ["a1"])
    endpoint.script = Script(chunks=["SECOND"])
    inv = core.parse("/regenerate", Platform.DISCORD)
    done = await core.run_control(REF, ASKER, inv, Sink())
    assert isinstance(done, TurnResult)
    await core.shown_in(REF, done.answer_id, ["a1"])  # the same page, now showing SECOND
    on_answer = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1", thread_id="a1")
    endpoint.script = Script(chunks=["ok"])
    await ask(core, "why that one?", "t1", ref=on_answer)
    assert said(endpoint) == ["tell me a joke", "SECOND", "why that one?"]
    # The question deleted in the channel: its copy in the thread goes with it.
    await core.deleted(Platform.DISCORD, "c1", ["q1"])
    await ask(core, "and now?", "t2", ref=on_answer)
    assert "tell me a joke" not in said(endpoint), said(endpoint)
    # /reset in the thread: the next message does not bring the root turn back.
    reply = await core.run_text_command(Incoming(on_answer, ADMIN, "/reset"))
    assert reply.ok, reply.text
    await ask(core, "fresh start", "t3", ref=on_answer)
    assert said(endpoint) == ["fresh start"]
