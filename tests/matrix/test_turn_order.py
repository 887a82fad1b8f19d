"""One turn order per conversation: a command typed before a question is applied before it
is answered, a command after a question waits for its answer, rooms do not wait for each
other, and nothing deadlocks.

The first tests drive the real MatrixBot, handler and Core (SQLite, an SSE endpoint on
loopback) with events as nio parses them; only the homeserver calls are stood in for,
so a lookup can be made slow on purpose. The last test runs the same on a real Synapse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nio
import pytest

from bot.core import Core
from bot.frontends.matrix.access import RoomAuthority
from bot.frontends.matrix.api import MatrixApi
from bot.frontends.matrix.client import MatrixBot
from bot.frontends.matrix.messages import MessageHandler
from bot.frontends.matrix.sink import RatePace
from bot.types import ChannelConfig, ChannelRef, Platform, Role, Source
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import SynapseServer

BOT = "@bot:test.local"
ALICE = "@alice:test.local"  # created the rooms: an admin only through the create event
BOB = "@bob:test.local"  # power level 100
CAROL = "@carol:test.local"
# A member on another homeserver, at level 0: Synapse relays her redaction of anyone's
# event (only a local sender's is refused), and clients are to check it.
MALLORY = "@mallory:elsewhere.example"
GROUP = "!group:test.local"
OTHER = "!other:test.local"
DM = "!dm:test.local"
SLOW = 0.4  # seconds a deliberately slow homeserver lookup takes
MENTION: dict[str, Any] = {"m.mentions": {"user_ids": [BOT]}}


@dataclass
class Sent:
    room_id: str
    content: dict[str, Any]
    at: float

    @property
    def body(self) -> str:
        new = self.content.get("m.new_content")
        return str((new or self.content).get("body", ""))

    @property
    def in_reply_to(self) -> str:
        rel = self.content.get("m.relates_to", {})
        return str(rel.get("m.in_reply_to", {}).get("event_id", ""))


@dataclass
class Homeserver:
    """What the bot asks the homeserver, answered here; some answers take their time."""

    sent: list[Sent] = field(default_factory=list)
    redacted: list[tuple[str, float]] = field(default_factory=list)
    bot_events: set[str] = field(default_factory=set)


class StandInApi(MatrixApi):
    def __init__(self, client: nio.AsyncClient, hs: Homeserver) -> None:
        super().__init__(client, "unverified", RatePace())
        self.hs = hs
        self._authorities: dict[str, RoomAuthority] = {}

    async def send(self, room_id: str, content: dict[str, Any], *, in_clear: bool = False) -> str:
        self.hs.sent.append(Sent(room_id, content, time.monotonic()))
        event_id = f"$bot{len(self.hs.sent)}"
        self.remember(room_id, event_id)
        return event_id

    async def redact(self, room_id: str, event_id: str, reason: str) -> bool:
        self.hs.redacted.append((event_id, time.monotonic()))
        return True

    async def typing(self, room_id: str, on: bool) -> None:
        return None

    async def is_own_event(self, room_id: str, event_id: str) -> bool:
        if event_id in self.hs.bot_events:  # not remembered: the homeserver is asked
            await asyncio.sleep(SLOW)
            return True
        return await super().is_own_event(room_id, event_id)

    async def authority(self, room_id: str) -> RoomAuthority | None:
        if room_id not in self._authorities:  # cached after the first, slow, lookup
            await asyncio.sleep(SLOW)
            self._authorities[room_id] = RoomAuthority("12", frozenset({ALICE}))
        return self._authorities[room_id]

    async def resolve_room(self, target: str) -> str | None:
        return target


@dataclass
class Rig:
    core: Core
    bot: MatrixBot
    hs: Homeserver
    endpoint: SSEEndpoint
    clock: int = 0

    def arrive(self, room_id: str, sender: str, body: str, *, again: str = "", **extra: Any) -> str:
        """Hand one event to the bot as a sync would (`again`: the id of one handed before)."""
        if not again:
            self.clock += 1
        event_id = again or f"$e{self.clock}"
        source = {
            "type": "m.room.message",
            "event_id": event_id,
            "sender": sender,
            "origin_server_ts": int(time.time() * 1000),
            "content": {"msgtype": "m.text", "body": body, **extra},
        }
        self.bot._on_event(room_id, nio.Event.parse_event(source))
        return event_id

    def redact(self, room_id: str, sender: str, target: str) -> None:
        """Hand the bot a redaction of event `target` by `sender`, as a sync brings one."""
        self.clock += 1
        source = {
            "type": "m.room.redaction",
            "event_id": f"$e{self.clock}",
            "sender": sender,
            "origin_server_ts": int(time.time() * 1000),
            "redacts": target,
            "content": {"redacts": target},
        }
        self.bot._on_event(room_id, nio.Event.parse_event(source))

    async def settle(self, within: float = 30.0) -> None:
        """Wait for every message task; a deadlock fails here instead of hanging."""
        deadline = time.monotonic() + within
        while tasks := [t for t in asyncio.all_tasks() if t.get_name() == "message"]:
            assert time.monotonic() < deadline, "messages still being handled: a deadlock?"
            await asyncio.wait(tasks, timeout=deadline - time.monotonic())
        await asyncio.sleep(0)
        assert len(self.bot._arrivals) == 0  # every place in every line was given up

    def notice_for(self, event_id: str) -> Sent:
        return next(s for s in self.hs.sent if s.in_reply_to == event_id)

    def answer_done(self, room_id: str, nth: int = 0) -> float:
        """When the `nth` chat answer in the room was complete (its final edit sent)."""
        answers = [
            i
            for i, s in enumerate(self.hs.sent)
            if s.room_id == room_id and s.content.get("msgtype") == "m.text" and not _replaces(s)
        ]
        first = answers[nth]
        answer_id = f"$bot{first + 1}"  # as StandInApi.send numbers them
        edits = [s.at for s in self.hs.sent if _replaces(s) == answer_id]
        return max([self.hs.sent[first].at, *edits])


def _replaces(sent: Sent) -> str:
    rel = sent.content.get("m.relates_to", {})
    return str(rel.get("event_id", "")) if rel.get("rel_type") == "m.replace" else ""


def _room(room_id: str, members: dict[str, int]) -> nio.MatrixRoom:
    room = nio.MatrixRoom(room_id, BOT)
    for user_id, level in {BOT: 50, **members}.items():
        room.add_member(user_id, user_id[1:].split(":")[0].title(), None)
        if level:
            room.power_levels.users[user_id] = level
    return room


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with SSEEndpoint(chunks=10, span=1.0) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model="model-a"
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        client = nio.AsyncClient("http://127.0.0.1:9", BOT)
        client.user_id = BOT
        client.rooms[GROUP] = _room(GROUP, {ALICE: 0, BOB: 100, CAROL: 0, MALLORY: 0})
        client.rooms[OTHER] = _room(OTHER, {ALICE: 0, BOB: 100, CAROL: 0})
        client.rooms[DM] = _room(DM, {ALICE: 0})
        hs = Homeserver()
        api = StandInApi(client, hs)
        bot = MatrixBot(client, MessageHandler(core, api, 50), api, ())
        try:
            yield Rig(core, bot, hs, endpoint)
        finally:
            await bot.close()
            await client.close()
            await core.close()


async def test_a_command_right_before_a_question_is_applied_before_it_is_answered(
    rig: Rig,
) -> None:
    # alice's admin right needs a (slow) lookup of the room's creators; bob's question
    # needs none, so it would overtake her command if anything but arrival decided.
    command = rig.arrive(GROUP, ALICE, "!model model-b")
    rig.arrive(GROUP, BOB, "bot: first question", **MENTION)
    await rig.settle()
    assert "Model set to model-b" in rig.notice_for(command).body
    asked = rig.endpoint.request_for("first question")
    assert asked is not None and asked.model == "model-b"


async def test_a_command_right_after_a_question_waits_for_its_answer(rig: Rig) -> None:
    rig.arrive(GROUP, ALICE, "!model model-b")  # and now her admin right is known
    await rig.settle()
    # Whether bob replies to the bot takes a (slow) homeserver call; alice's command
    # would run first if it did not wait for the question to join the turn order.
    rig.hs.bot_events.add("$old-answer")
    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": "$old-answer"}}}
    rig.arrive(GROUP, BOB, "second question", **reply)
    command = rig.arrive(GROUP, ALICE, "!model model-c")
    await rig.settle()
    asked = rig.endpoint.request_for("second question")
    assert asked is not None and asked.model == "model-b"
    # The command ran after the answer was complete, not in the middle of it.
    assert rig.notice_for(command).at >= rig.answer_done(GROUP)
    config = await rig.core.store.effective_config(ChannelRef(Platform.MATRIX, GROUP))
    assert config.model == "model-c"


async def test_a_reply_to_the_bots_message_of_another_room_is_not_addressed_to_it(
    rig: Rig,
) -> None:
    """Matrix probe: the bot's own event ids were remembered without their room, so a
    reply in one room naming the bot's message of another counted as spoken to the bot
    (the model was asked; the answer, related to an event not in that room, went
    nowhere)."""
    rig.arrive(GROUP, BOB, "bot: first", **MENTION)
    await rig.settle()
    answer = await _first_answer(rig, GROUP)
    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": answer}}}
    rig.arrive(OTHER, BOB, "not for the bot", **reply)
    rig.arrive(GROUP, BOB, "for the bot", **reply)
    await rig.settle()
    assert rig.endpoint.request_for("not for the bot") is None
    assert rig.endpoint.request_for("for the bot") is not None


async def test_rooms_run_concurrently_and_a_room_keeps_its_order(rig: Rig) -> None:
    rig.arrive(GROUP, BOB, "bot: one in the group", **MENTION)
    rig.arrive(GROUP, BOB, "bot: two in the group", **MENTION)
    rig.arrive(OTHER, BOB, "bot: one elsewhere", **MENTION)
    await rig.settle()
    one, two, elsewhere = (
        rig.endpoint.request_for(words)
        for words in ("one in the group", "two in the group", "one elsewhere")
    )
    assert one is not None and two is not None and elsewhere is not None
    assert two.started >= one.ended  # one conversation: one turn after the other
    assert elsewhere.started < one.ended  # another room does not wait for it
    history = await rig.core.store.history(ChannelRef(Platform.MATRIX, GROUP), 10)
    questions = [e.content for e in history if e.role is Role.USER]
    assert [q.removeprefix("bot: ") for q in questions] == ["one in the group", "two in the group"]


async def test_a_key_is_redacted_at_once_and_mixed_traffic_does_not_deadlock(
    rig: Rig,
) -> None:
    rig.arrive(DM, ALICE, "a long question")
    rig.arrive(DM, ALICE, "!model model-x")  # holds the line until that answer is done
    key = rig.arrive(DM, ALICE, "!key set openai sk-order-test-0123456789")
    # A command from the direct chat for the group waits for the group's turn.
    rig.arrive(GROUP, BOB, "bot: group question", **MENTION)
    remote = rig.arrive(DM, ALICE, f"!model model-d room:{GROUP}")
    rig.arrive(GROUP, CAROL, "chatter nobody addressed")
    refused = rig.arrive(GROUP, BOB, "!key set openai sk-order-test-in-group")  # an admin
    rig.arrive(DM, ALICE, "a follow-up")
    await rig.settle()
    redacted = dict(rig.hs.redacted)
    # The key left the room at once, while the answer before it was still being written…
    assert redacted[key] < rig.answer_done(DM)
    # …and was saved after it, and before the follow-up was answered.
    saved = rig.notice_for(key)
    assert "Saved the openai key" in saved.body
    assert rig.answer_done(DM) <= saved.at <= rig.answer_done(DM, 1)
    assert "direct chat" in rig.notice_for(refused).body and refused in redacted
    # The group's question came first there; the direct chat's command for it waited.
    group = rig.endpoint.request_for("group question")
    assert group is not None and group.model == "model-a"
    assert rig.notice_for(remote).at >= rig.answer_done(GROUP)
    config = await rig.core.store.effective_config(ChannelRef(Platform.MATRIX, GROUP))
    assert config.model == "model-d"
    assert rig.endpoint.request_for("chatter") is None


async def test_a_member_without_the_power_to_redact_removes_only_her_own_question(
    rig: Rig,
) -> None:
    """Hostile probe: a redaction by a member without the `redact` power (relayed from
    another homeserver) was taken in for a question waiting its turn whoever sent it:
    Mallory stopped Bob's waiting question, and the answer she named (her removal not
    applied) was forgotten once it ended. Now only her own question goes."""
    rig.endpoint.chunks, rig.endpoint.span = 200, 60.0  # the first answer holds the line
    first = rig.arrive(GROUP, BOB, "bot: first", **MENTION)
    his = rig.arrive(GROUP, BOB, "bot: second", **MENTION)
    hers = rig.arrive(GROUP, MALLORY, "bot: third", **MENTION)
    deadline = time.monotonic() + 30
    while not any(s.in_reply_to == first for s in rig.hs.sent):
        assert time.monotonic() < deadline, "the first answer never showed"
        await asyncio.sleep(0.05)
    answer = f"$bot{next(i for i, s in enumerate(rig.hs.sent) if s.in_reply_to == first) + 1}"
    for target in (his, answer, hers):
        rig.redact(GROUP, MALLORY, target)
    while tasks := [t for t in asyncio.all_tasks() if t.get_name() == "redaction"]:
        assert time.monotonic() < deadline, "a redaction still being handled"
        await asyncio.wait(tasks, timeout=deadline - time.monotonic())
    [streaming] = rig.endpoint.asked
    assert not streaming.cut  # the answer she named goes on
    rig.endpoint.chunks, rig.endpoint.span = 10, 1.0
    rig.arrive(GROUP, BOB, "!stop")
    await rig.settle()
    asked = [a.question for a in rig.endpoint.asked]
    assert asked == ['"first"', '"second"']  # his, not hers
    history = await rig.core.store.history(ChannelRef(Platform.MATRIX, GROUP), 10)
    assert [e.content for e in history if e.role is Role.USER] == ["first", "second"]
    assert [e.role for e in history] == [Role.USER, Role.ASSISTANT] * 2  # both answers kept
    assert history[1].content.startswith("w0")
    assert not any(s.in_reply_to == hers for s in rig.hs.sent)  # nothing said to hers


# --- on a real Synapse ---------------------------------------------------------------
@pytest.mark.synapse
async def test_on_synapse_a_command_keeps_its_place_and_rooms_do_not_wait(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    bot = synapse_server.register("orderbot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    async with SSEEndpoint(chunks=30, span=3.0) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        try:
            async with running_bot(core, bot_options(synapse_server, bot, tmp_path / "store")):
                room = await alice.create_room([bot.user_id])
                other = await alice.create_room([bot.user_id])
                await alice.wait_joined(room, bot.user_id)
                await alice.wait_joined(other, bot.user_id)

                # Sent back to back; a direct chat, so every message is addressed.
                await alice.send(room, "first question")
                command = await alice.send(room, "!model model-b")
                await alice.send(room, "second question")
                await alice.send(other, "question elsewhere")

                def answered() -> bool:
                    done = [endpoint.request_for(w) for w in ("second", "elsewhere")]
                    return all(a is not None and a.ended for a in done)

                await alice.wait_for(answered, "both rooms' answers")
                notice = await alice.wait_for(
                    lambda: _reply_in(alice, room, bot.user_id, command), "the command's answer"
                )
                final = await alice.wait_for(
                    lambda: _complete(alice, room, bot.user_id, endpoint.answer()),
                    "the first answer, complete",
                )
        finally:
            await core.close()
            await alice.close()
    one, two, elsewhere = (
        endpoint.request_for(w) for w in ("first question", "second question", "elsewhere")
    )
    assert one is not None and two is not None and elsewhere is not None
    assert one.model == endpoint.model and two.model == "model-b"
    assert two.started >= one.ended
    assert elsewhere.started < one.ended
    # The room's timeline: the first answer was complete before the command answered.
    assert alice.seen.index(final) < alice.seen.index(notice)


def _reply_in(alice: UserClient, room_id: str, bot_id: str, event_id: str) -> Any:
    for seen in alice.messages(room_id, bot_id):
        if seen.content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == (
            event_id
        ):
            return seen
    return None


def _complete(alice: UserClient, room_id: str, bot_id: str, text: str) -> Any:
    """The event that made the bot's first answer in the room show all of `text`."""
    answers = [s for s in alice.messages(room_id, bot_id) if s.content.get("msgtype") == "m.text"]
    if not answers:
        return None
    first = answers[0]
    shown = [first, *alice.edits_of(first.event.event_id)]
    done = [s for s in shown if alice.shown_text(first.event.event_id).strip() == text]
    return done[-1] if done else None


async def test_turn_controls_run_in_the_core_order_and_do_not_deadlock(rig: Rig) -> None:
    """`!regenerate` right after a question waits for its answer, then streams another;
    `!swipe prev` shows the first again; a stranger's `!regenerate` is refused. The new
    answer is an m.replace of the original answer event."""
    rig.arrive(GROUP, BOB, "bot: tell me a thing", **MENTION)
    regenerate = rig.arrive(GROUP, BOB, "!regenerate")
    await rig.settle()
    one, two = rig.endpoint.asked
    assert two.started >= one.ended  # the second answer streamed after the first was complete
    # It replaced the first in place: one answer event, edited again after the second ask.
    [answer] = [
        i
        for i, s in enumerate(rig.hs.sent)
        if s.room_id == GROUP and s.content.get("msgtype") == "m.text" and not _replaces(s)
    ]
    again = [s for s in rig.hs.sent if _replaces(s) == f"$bot{answer + 1}"]
    assert any(s.at >= two.started for s in again)

    def said(event_id: str) -> list[str]:
        return [s.body for s in rig.hs.sent if s.in_reply_to == event_id]

    assert "(answer 2 of 2)" in said(regenerate)
    swipe = rig.arrive(GROUP, BOB, "!swipe prev")
    stranger = rig.arrive(GROUP, CAROL, "!regenerate")
    await rig.settle()
    assert "(answer 1 of 2)" in said(swipe)
    assert any("Only Bob or an admin" in body for body in said(stranger))
    history = await rig.core.store.history(ChannelRef(Platform.MATRIX, GROUP), 10)
    assert [e.role for e in history] == [Role.USER, Role.ASSISTANT]


async def test_a_stop_reaches_questions_held_behind_a_command_sent_before_it_only(
    rig: Rig,
) -> None:
    """A `!stop` goes past a command still running (its model list held), not past the
    questions before it: Carol's question sent before her stop is stopped (said so in
    reply to it), the one sent after it is answered once the command ends, and so is
    Alice's (a stop is its sender's own questions'). Carol's slow first lookup (the
    room's creators) must not let her later question be taken for an earlier one."""
    held = asyncio.Event()
    rig.endpoint.models_held = held
    try:
        command = rig.arrive(GROUP, BOB, "!models external")
        async with asyncio.timeout(30):
            while not rig.endpoint.models_auth:  # noqa: ASYNC110 (a loopback server's count)
                await asyncio.sleep(0.02)
        before = rig.arrive(GROUP, CAROL, "bot: first of mine", **MENTION)
        rig.arrive(GROUP, ALICE, "bot: alice asks", **MENTION)
        stop = rig.arrive(GROUP, CAROL, "!stop")
        rig.arrive(GROUP, CAROL, "bot: second of mine", **MENTION)
        async with asyncio.timeout(30):
            while not [s for s in rig.hs.sent if s.in_reply_to == stop]:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        said = rig.notice_for(stop).body
        assert said == "Stopped your question waiting here: it will not be answered."
        assert "Stopped before the answer began." in rig.notice_for(before).body
        assert not [s for s in rig.hs.sent if s.in_reply_to == command]  # still running
    finally:
        held.set()
    await rig.settle()
    assert rig.notice_for(command).body  # the command ended as it would have
    assert rig.endpoint.request_for("first of mine") is None
    assert rig.endpoint.request_for("alice asks") is not None
    assert rig.endpoint.request_for("second of mine") is not None


async def test_a_stop_right_after_a_question_waiting_behind_another_stops_that_question(
    rig: Rig,
) -> None:
    """Bob's question, then Carol's, then her `!stop`, in one sync: her question waits in
    the line behind his until his joins the core's turn order, and her stop must reach
    it (it stopped it when a stop waited for the messages before it to pass on). Her
    question was taken for within the core's reach once his had passed on, while it was
    still being decided on (whether it replies to the bot, a slow lookup): her stop went
    ahead of it, was refused as a stop of Bob's answer, and her question was answered."""
    rig.arrive(GROUP, CAROL, "!stop")  # her rights are known from now on: no slow lookup
    await rig.settle()
    rig.hs.bot_events.add("$old-answer")
    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": "$old-answer"}}}
    first = rig.arrive(GROUP, BOB, "bot: his story", **MENTION)
    hers = rig.arrive(GROUP, CAROL, "never mind this", **reply)
    stop = rig.arrive(GROUP, CAROL, "!stop")
    await rig.settle()
    said = rig.notice_for(stop).body
    assert said == "Stopped your question waiting here: it will not be answered."
    assert "Stopped before the answer began." in rig.notice_for(hers).body
    assert rig.endpoint.request_for("his story") is not None
    assert rig.endpoint.request_for("never mind this") is None
    assert any(s.in_reply_to == first for s in rig.hs.sent)  # his answer went on


# --- reactions (the stand-in homeserver) ------------------------------------------------
def _react(rig: Rig, room_id: str, sender: str, event_id: str, key: str) -> None:
    rig.clock += 1
    source = {
        "type": "m.reaction",
        "event_id": f"$r{rig.clock}",
        "sender": sender,
        "origin_server_ts": int(time.time() * 1000),
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}},
    }
    rig.bot._on_event(room_id, nio.Event.parse_event(source))


async def _first_answer(rig: Rig, room_id: str) -> str:
    """The event id of the bot's first answer in the room, once it is posted."""
    async with asyncio.timeout(30):
        while True:
            for i, s in enumerate(rig.hs.sent):
                if s.room_id == room_id and s.content.get("msgtype") == "m.text":
                    if not _replaces(s):
                        return f"$bot{i + 1}"  # as StandInApi.send numbers them
            await asyncio.sleep(0.05)


async def test_stop_by_reaction_is_the_askers_and_reaches_the_streaming_answer(rig: Rig) -> None:
    rig.arrive(GROUP, BOB, "bot: count slowly", **MENTION)
    answer = await _first_answer(rig, GROUP)
    _react(rig, GROUP, CAROL, answer, "⏹️")  # not hers to stop: ignored without a word
    await asyncio.sleep(0.3)
    _react(rig, GROUP, BOB, answer, "⏹")
    await rig.settle()
    edits = [s for s in rig.hs.sent if _replaces(s) == answer]
    assert "Stopped." in edits[-1].body
    assert len(edits[-1].body) < len(rig.endpoint.answer()) + 20
    assert not [s for s in rig.hs.sent if s.content.get("msgtype") == "m.notice"]
    [asked] = rig.endpoint.asked
    assert asked.ended == 0.0  # the stream was cut, not finished


async def test_stop_on_an_older_answer_does_not_stop_someone_elses(rig: Rig) -> None:
    """Hostile probe: ⏹ on her own older answer let Carol stop whatever answer was being
    written in the room, Bob's too; her typed !stop was refused."""
    rig.arrive(GROUP, CAROL, "bot: hers", **MENTION)
    await rig.settle()
    hers = await _first_answer(rig, GROUP)
    rig.arrive(GROUP, BOB, "bot: his", **MENTION)
    async with asyncio.timeout(30):
        while True:
            if len(rig.endpoint.asked) == 2:
                break
            await asyncio.sleep(0.05)
    _react(rig, GROUP, CAROL, hers, "⏹")  # while his answer is being written
    await rig.settle()
    his = next(
        f"$bot{i + 1}"
        for i, s in enumerate(rig.hs.sent)
        if s.content.get("msgtype") == "m.text" and not _replaces(s) and f"$bot{i + 1}" != hers
    )
    edits = [s for s in rig.hs.sent if _replaces(s) == his]
    assert edits[-1].body == rig.endpoint.answer()  # whole, not stopped
    assert rig.endpoint.asked[-1].ended != 0.0  # the stream was finished, not cut


async def test_a_forgotten_answer_gets_a_new_message_and_reactions_on_it_do_nothing(
    rig: Rig,
) -> None:
    """After a restart the bot no longer knows its earlier answers' events."""
    rig.arrive(GROUP, BOB, "bot: tell me", **MENTION)
    await rig.settle()
    answer = await _first_answer(rig, GROUP)
    handler = rig.bot._handler
    handler._shown.clear()  # what a restart leaves
    handler._newest.clear()
    _react(rig, GROUP, BOB, answer, "🔄")
    await rig.settle()
    assert len(rig.endpoint.asked) == 1
    command = rig.arrive(GROUP, BOB, "!regenerate")
    await rig.settle()
    assert len(rig.endpoint.asked) == 2
    originals = [
        s
        for s in rig.hs.sent
        if s.room_id == GROUP and s.content.get("msgtype") == "m.text" and not _replaces(s)
    ]
    assert len(originals) == 2 and originals[-1].in_reply_to == command


async def test_an_event_a_sync_brings_twice_is_handled_once(rig: Rig) -> None:
    """A sync retried after a network error may bring the same events again."""
    question = rig.arrive(GROUP, BOB, "bot: only once", **MENTION)
    command = rig.arrive(GROUP, ALICE, "!model model-b")
    rig.arrive(GROUP, BOB, "bot: only once", again=question, **MENTION)
    rig.arrive(GROUP, ALICE, "!model model-b", again=command)
    await rig.settle()
    assert rig.endpoint.requests == 1
    assert len([s for s in rig.hs.sent if s.in_reply_to == command]) == 1
    answers = [s for s in rig.hs.sent if s.content.get("msgtype") == "m.text" and not _replaces(s)]
    assert len(answers) == 1


async def test_a_key_of_60_kb_is_refused_at_once_and_holds_nobody_up(rig: Rig) -> None:
    """Hostile probe: a key of 60 KB in a direct chat (refused as too long) had every form
    and disguise of it built to clean the one-line refusal, the bot's loop held for half
    a minute with every room waiting."""
    started = time.monotonic()
    key = rig.arrive(DM, ALICE, "!key set openai " + "k" * 60_000)
    await rig.settle(within=120)
    refused = rig.notice_for(key)
    assert "too long" in refused.body and key in dict(rig.hs.redacted)
    assert refused.at - started < 5


async def test_a_lone_surrogate_in_a_message_is_read_as_a_replacement_character(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Hostile probe: no homeserver relays a lone surrogate, but an encrypted message's
    JSON is read by the bot alone. A key command holding one had failed with an error in
    the log, and its sender was told nothing."""
    group = rig.arrive(GROUP, BOB, "!key set custom abc\ud800defghij")  # an admin
    direct = rig.arrive(DM, ALICE, "!key set custom abc\udfffdefghij")
    await rig.settle()
    assert "direct chat" in rig.notice_for(group).body
    assert "U+FFFD" in rig.notice_for(direct).body
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_replies_shared_with_other_platforms_call_a_room_a_room(rig: Rig) -> None:
    """The core's replies said "channel" on Matrix, where the place is a room."""
    refused = rig.arrive(GROUP, CAROL, "!model model-b")  # carol is no admin
    mode = rig.arrive(GROUP, BOB, "!reply mode always")
    settings = rig.arrive(GROUP, BOB, "!settings")
    await rig.settle()
    said = [rig.notice_for(e).body for e in (refused, mode, settings)]
    assert said[0].startswith("Only admins of this room can use !model"), said[0]
    assert "every message in this room" in said[1], said[1]
    assert "Reply mode: always (this room)" in said[2], said[2]
    assert not any("channel" in text for text in said), said
