"""What the Matrix front-end does with an event: the pure decisions, and the arrival line."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import replace

import pytest

from bot.commands import TABLE
from bot.commands.parse import TypedCommand
from bot.frontends.matrix import decide, events
from bot.frontends.matrix.decide import (
    Action,
    AnswerForm,
    ChatFacts,
    Decision,
    EventFacts,
    JoinAction,
    JoinStep,
    Lookup,
    addressed,
    answer_form,
    conversation_thread,
    join_step,
    keep_waiting_for_key,
    keys_refused,
    should_leave,
    taken_for_secret,
    tell_unread,
)
from bot.frontends.matrix.messages import ArrivalOrder, Place, held_notice

STARTED = 1_700_000_000_000

QUESTION = EventFacts(
    from_bot=False,
    sent_ms=STARTED + 5_000,
    started_ms=STARTED,
    encrypted=False,
    e2ee=True,
    is_message=True,
    is_edit=False,
    msgtype="m.text",
    text="what is 2+2?",
    is_command=False,
    may_hold_secret=False,
    room_known=True,
    direct=False,
)
COMMAND = replace(QUESTION, text="!model gpt-4o", is_command=True)
KEY = replace(COMMAND, text="!key set openai sk-abcdef", may_hold_secret=True)


# --- one event -----------------------------------------------------------------------
def test_typed_text_is_chat_and_prefixed_text_a_command() -> None:
    assert decide.decide(QUESTION) == Decision(Action.CHAT)
    assert decide.decide(replace(QUESTION, msgtype="m.emote")) == Decision(Action.CHAT)
    assert decide.decide(COMMAND) == Decision(Action.COMMAND)
    assert decide.decide(replace(COMMAND, direct=True)) == Decision(Action.COMMAND)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"from_bot": True}, "sent by the bot"),
        ({"from_a_bot_like_this": True}, "sent by another bot of this kind"),
        ({"repeated": True}, "already handled (the same event again)"),
        ({"is_message": False}, "not a message"),
        ({"is_edit": True, "msgtype": "m.file"}, "an edit (the original was handled)"),
        ({"msgtype": "m.notice"}, "neither typed text nor a file the bot reads"),
        # An image whose file the bot cannot fetch (no mxc://, a broken key) is no file.
        ({"msgtype": "m.image"}, "neither typed text nor a file the bot reads"),
        ({"msgtype": "m.audio"}, "neither typed text nor a file the bot reads"),
        ({"text": "  \n "}, "no text"),
        ({"text": "\u200b\u200b\ufeff"}, "no text"),  # went to the model as a question
        ({"text": "\u200f\u3164\u2066 \ufe0f"}, "no text"),  # so did marks, fillers
        ({"room_known": False}, "a room the bot does not know"),
    ],
)
def test_what_is_ignored_and_why(change: dict[str, object], reason: str) -> None:
    for facts in (QUESTION, COMMAND, KEY):
        assert decide.decide(replace(facts, **change)) == Decision(Action.IGNORE, reason)


REDACTION = replace(
    QUESTION, is_message=False, msgtype="", text="", redaction=True, sent_ms=STARTED - 10**9
)


def test_a_redaction_forgets_however_late_it_comes_but_not_the_bots_own() -> None:
    # Sent long before this start, handed over late: the message still must not stay.
    assert decide.decide(REDACTION) == Decision(Action.REDACTION)
    # The bot's own: a page left over from a longer answer, a secret it took out.
    assert decide.decide(replace(REDACTION, from_bot=True)).action is Action.IGNORE
    assert decide.decide(replace(REDACTION, repeated=True)).action is Action.IGNORE
    assert decide.decide(replace(REDACTION, room_known=False)).action is Action.IGNORE


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ({"type": "m.room.redaction", "redacts": "$a"}, "$a"),
        ({"type": "m.room.redaction", "content": {"redacts": "$b"}}, "$b"),  # room v11+
        ({"type": "m.room.redaction", "redacts": "$a", "content": {"redacts": "$b"}}, "$a"),
        ({"type": "m.room.redaction", "content": {"redacts": ""}}, None),
        ({"type": "m.room.redaction", "content": {"redacts": 5}}, None),
        ({"type": "m.room.redaction", "content": "x"}, None),
        ({"type": "m.room.message", "redacts": "$a"}, None),
    ],
)
def test_the_event_a_redaction_removes(source: dict[str, object], named: str | None) -> None:
    assert events.redacted(source) == named


def test_what_came_before_the_start_is_passed_over_but_a_key_taken_out() -> None:
    """Restarts probe: `!key set …` sent in a group room while the bot was down stayed
    there for everyone to read: the start passed over everything sent before it."""
    before = STARTED - decide.CLOCK_SLACK_MS - 1
    for facts in (QUESTION, COMMAND, replace(QUESTION, msgtype="m.emote")):
        old = replace(facts, sent_ms=before)
        assert decide.decide(old) == Decision(Action.IGNORE, "sent before the bot started")
    stale = Decision(Action.STALE_SECRET, redact=True)
    for facts in (
        KEY,
        replace(KEY, direct=True, private=True),  # not run so late, even where it may be
        replace(KEY, msgtype="m.emote", is_command=False),
        replace(QUESTION, is_edit=True, edit_holds_secret=True),
    ):
        assert decide.decide(replace(facts, sent_ms=before)) == stale
    # A file's caption is run as a command: one holding a key is taken out.
    caption = replace(KEY, msgtype="m.image", media=True, sent_ms=before)
    assert decide.decide(caption) == stale
    # Review: a notice (another bot's, a bridge's) is never run, so never taken out.
    notice = replace(KEY, msgtype="m.notice", sent_ms=before)
    assert decide.decide(replace(notice, sent_ms=STARTED)).action is Action.IGNORE
    assert decide.decide(notice).action is Action.IGNORE
    # A room the bot has left since, or no message: nothing to take out.
    assert decide.decide(replace(KEY, sent_ms=before, room_known=False)).action is Action.IGNORE
    assert decide.decide(replace(KEY, sent_ms=before, is_message=False)).action is Action.IGNORE


def test_a_late_sync_of_a_recent_event_is_not_old() -> None:
    # The homeserver's clock may run behind ours: a minute of slack.
    within = replace(QUESTION, sent_ms=STARTED - decide.CLOCK_SLACK_MS)
    assert decide.decide(within).action is Action.CHAT


def test_an_encrypted_event_waits_for_its_key_unless_e2ee_is_off() -> None:
    locked = replace(QUESTION, encrypted=True, is_message=False, msgtype="", text="")
    assert decide.decide(locked).action is Action.AWAIT_KEY
    assert decide.decide(replace(locked, e2ee=False)).action is Action.UNREADABLE
    # Its own and old encrypted events are not worth a key request.
    assert decide.decide(replace(locked, from_bot=True)).action is Action.IGNORE
    old = replace(locked, sent_ms=STARTED - decide.CLOCK_SLACK_MS - 1)
    assert decide.decide(old).action is Action.IGNORE


def test_an_emote_spelling_a_key_command_is_taken_out_never_run() -> None:
    emote = replace(KEY, msgtype="m.emote", is_command=False)
    for where in (emote, replace(emote, direct=True, private=True)):
        assert decide.decide(where) == Decision(Action.SECRET_EMOTE, redact=True)


def test_a_secret_is_redacted_and_refused_outside_a_direct_chat() -> None:
    assert decide.decide(KEY) == Decision(Action.SECRET_COMMAND_IN_GROUP, redact=True)
    private = replace(KEY, direct=True, private=True)
    assert decide.decide(private) == Decision(Action.COMMAND, redact=True)
    # Two members, but a room anyone may join or read: no place for a key.
    assert decide.decide(replace(KEY, direct=True)).action is Action.SECRET_COMMAND_IN_GROUP
    # Only commands are judged for secrets: chat text goes to the core's own guard.
    chat = replace(KEY, is_command=False)
    assert decide.decide(chat) == Decision(Action.CHAT)


IMAGE = replace(QUESTION, msgtype="m.image", text="", media=True)


def test_an_image_or_file_is_chat_even_without_a_caption() -> None:
    for facts in (IMAGE, replace(IMAGE, msgtype="m.file"), replace(IMAGE, text="what is it?")):
        assert decide.decide(facts) == Decision(Action.CHAT)
    # The same rules as text before that: its own, old, or in an unknown room.
    for change, reason in [
        ({"from_bot": True}, "sent by the bot"),
        ({"from_a_bot_like_this": True}, "sent by another bot of this kind"),
        ({"repeated": True}, "already handled (the same event again)"),
        ({"room_known": False}, "a room the bot does not know"),
        ({"is_edit": True, "room_known": False}, "an edit (the original was handled)"),
    ]:
        assert decide.decide(replace(IMAGE, **change)) == Decision(Action.IGNORE, reason)


def test_a_caption_that_is_a_command_runs_as_one_and_a_key_is_redacted() -> None:
    command = replace(IMAGE, text="!model gpt-4o", is_command=True)
    assert decide.decide(command) == Decision(Action.COMMAND)
    key = replace(command, text="!key set openai sk-abcdef", may_hold_secret=True)
    assert decide.decide(key) == Decision(Action.SECRET_COMMAND_IN_GROUP, redact=True)


def test_an_edit_rewrites_a_question_and_one_that_writes_a_secret_in_is_taken_out() -> None:
    edit = replace(QUESTION, is_edit=True)
    assert decide.decide(edit) == Decision(Action.EDIT)  # never run as a command
    assert decide.decide(replace(edit, edit_holds_secret=True)) == Decision(
        Action.SECRET_EDIT, redact=True
    )
    # A file's caption edited (MSC2530): its question's text, as typed text's edit is
    # (it was ignored: a picture's question never read its new caption). A question whose
    # text file's text is folded in keeps it: the core's rule, not the front-end's.
    for kind in ("m.image", "m.file", "m.audio", "m.video"):
        caption = replace(edit, msgtype=kind, media=True, text="* what colour is it?")
        assert decide.decide(caption) == Decision(Action.EDIT)
        assert decide.decide(replace(caption, edit_holds_secret=True)) == Decision(
            Action.SECRET_EDIT, redact=True
        )
    # Another bot's notice edited (neither typed nor a file) is not a question's edit.
    notice = replace(edit, msgtype="m.notice")
    assert decide.decide(notice) == Decision(Action.IGNORE, "an edit (the original was handled)")


def test_a_command_in_discords_form_is_never_chat_and_one_holding_a_key_is_taken_out() -> None:
    """`Bot: /key set custom <key>` from a client that sends `/` lines (not Element): it
    was chat, its key (no provider's shape) sent to the model and kept in the history."""
    slash = replace(QUESTION, text="/model gpt-4o", typed_elsewhere=True)
    assert decide.decide(slash) == Decision(Action.TYPED_ELSEWHERE)
    key = replace(slash, text="/key set custom tabby-1a2b", may_hold_secret=True)
    for where in (key, replace(key, direct=True, private=True), replace(key, media=True)):
        assert decide.decide(where) == Decision(Action.TYPED_ELSEWHERE, redact=True)
    # An emote is an action: chat, unless it spells a key command.
    assert decide.decide(replace(slash, msgtype="m.emote")) == Decision(Action.CHAT)
    emote = replace(key, msgtype="m.emote")
    assert decide.decide(emote) == Decision(Action.SECRET_EMOTE, redact=True)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("/key set custom tabby-1a2b3c4d5e6f7788", TypedCommand("key", secret=True)),
        ("  /key set custom tabby-1a2b", TypedCommand("key", secret=True)),  # a leading space
        ("\uff0fkey set custom tabby-1a2b", TypedCommand("key", secret=True)),  # CJK ／
        ("/proxy password hunter2", TypedCommand("proxy", secret=True)),
        ("/key set custom", TypedCommand("key", secret=True)),  # its key may follow
        ("/model gpt-4o", TypedCommand("model", secret=False)),
        ("/MODEL gpt-4o", TypedCommand("model", secret=False)),
        ("/model sk-proj-abcdefghijklmnopqrstuvwx", TypedCommand("model", secret=True)),
        ("/key help", TypedCommand("key", secret=False)),
        ("/shrug", None),
        ("/me waves", None),
        ("/usr/bin/env python", None),
        ("/kye set custom tabby-1a2b", None),  # a typo is no command's own name
        ("hello /key set custom x", None),
        ("!model gpt-4o", None),
    ],
)
def test_which_lines_name_a_command_in_discords_form(text: str, found: TypedCommand | None) -> None:
    assert decide.typed_elsewhere(text, TABLE, "!") == found
    # Where `/` is this platform's own prefix, a `/` line is its command, not another's.
    assert decide.typed_elsewhere(text, TABLE, "/") is None


def test_keys_only_in_a_direct_chat() -> None:
    assert keys_refused(secret=True, private=False)
    assert not keys_refused(secret=True, private=True)
    assert not keys_refused(secret=False, private=False)


def test_one_word_soon_after_a_failed_secret_command_is_taken_for_the_secret() -> None:
    """`!key set custom` failed for want of its key; a key or password pasted next, on
    its own, is not chatted. A sentence, a message much later, or none asked: chat."""
    asked = 1000.0
    assert taken_for_secret(asked, asked + 1, "hunter2")
    assert taken_for_secret(asked, asked + 1, "  sk-live-0123456789abcdef\n")
    assert taken_for_secret(asked, asked + decide.SECRET_MAY_FOLLOW - 1, "p4ss-w")
    assert not taken_for_secret(asked, asked + decide.SECRET_MAY_FOLLOW, "p4ss-w")
    assert not taken_for_secret(asked, asked + 1, "what does this bot do?")
    assert not taken_for_secret(None, asked, "hunter2")
    assert not taken_for_secret(asked, asked - 5, "hunter2")  # a clock that went back


def test_a_word_shorter_than_any_secret_taken_is_chat_after_a_failed_secret_command() -> None:
    """ "hi" or "thx!" after a failed `!key set` was taken for the key and deleted: a
    word the command refuses for its length (too_short) cannot be it."""
    asked = 1000.0
    for word in ("hi", "thank", " ok\n", "thx!", "12345"):
        assert not taken_for_secret(asked, asked + 1, word), word
    assert taken_for_secret(asked, asked + 1, "123456")  # the shortest a command takes


def test_an_undecrypted_message_is_kept_for_five_minutes() -> None:
    assert keep_waiting_for_key(0.0)
    assert keep_waiting_for_key(decide.UNDECRYPTED_PATIENCE - 1)
    assert not keep_waiting_for_key(decide.UNDECRYPTED_PATIENCE)


def test_a_sender_whose_message_could_not_be_read_is_told_once_in_a_while() -> None:
    # Told before the bot gives up waiting for the key, and after it could have come.
    assert 10 < decide.UNREAD_NOTICE_AFTER < decide.UNDECRYPTED_PATIENCE
    told = 500.0
    assert tell_unread(None, told)  # never told, or one of theirs was read since
    assert not tell_unread(told, told)  # a second message of the same burst
    assert not tell_unread(told, told + decide.UNREAD_NOTICE_EVERY - 1)
    assert tell_unread(told, told + decide.UNREAD_NOTICE_EVERY)


# --- is the bot spoken to? -------------------------------------------------------------
GROUP = ChatFacts(direct=False, mentions_bot=False, thread_root="", replied_to="")


def test_a_direct_chat_or_a_mention_addresses_the_bot_without_lookups() -> None:
    assert addressed(GROUP) is False
    costly = replace(GROUP, thread_root="$t", replied_to="$r")
    assert addressed(replace(costly, direct=True)) is True
    assert addressed(replace(costly, mentions_bot=True)) is True


def test_a_thread_is_looked_up_before_a_reply() -> None:
    both = replace(GROUP, thread_root="$t", replied_to="$r")
    assert addressed(both) is Lookup.THREAD
    assert addressed(replace(both, bots_thread=True)) is True  # no need to ask about the reply
    not_ours = replace(both, bots_thread=False)
    assert addressed(not_ours) is Lookup.REPLY
    assert addressed(replace(not_ours, reply_to_bot=True)) is True
    assert addressed(replace(not_ours, reply_to_bot=False)) is False


def test_a_thread_or_a_reply_alone() -> None:
    thread = replace(GROUP, thread_root="$t")
    assert addressed(thread) is Lookup.THREAD
    assert addressed(replace(thread, bots_thread=False)) is False
    reply = replace(GROUP, replied_to="$r")
    assert addressed(reply) is Lookup.REPLY
    assert addressed(replace(reply, reply_to_bot=True)) is True


def test_an_answer_says_whom_it_answers_except_in_a_direct_chat() -> None:
    group = answer_form(direct=False, replied_to="", event_id="$q", sender="@a:x")
    assert group == AnswerForm(reply_to="$q", mention="@a:x")
    direct = answer_form(direct=True, replied_to="", event_id="$q", sender="@a:x")
    assert direct == AnswerForm(reply_to="", mention="")
    # A reply in a direct chat is answered as a reply: it points at something earlier.
    quoted = answer_form(direct=True, replied_to="$old", event_id="$q", sender="@a:x")
    assert quoted == AnswerForm(reply_to="$q", mention="")


def test_a_main_timeline_reply_to_a_threaded_answer_continues_that_thread() -> None:
    # In a thread: that thread, whatever it replies to; nothing looked up.
    assert conversation_thread(thread_root="$root", replied_to="$a") == "$root"
    assert conversation_thread(thread_root="", replied_to="") == ""
    # In the main timeline, a reply: to what conversation's answer (a lookup first).
    assert conversation_thread(thread_root="", replied_to="$a") is Lookup.ANSWER
    answered_in = functools.partial(conversation_thread, thread_root="", replied_to="$a")
    assert answered_in(answer_thread="$root") == "$root"  # an answer inside a thread
    assert answered_in(answer_thread="") == ""  # an answer in the main timeline
    assert answered_in(answer_thread=None) == ""  # a member's message, or one unknown


# --- membership ------------------------------------------------------------------------
def test_a_join_is_retried_after_growing_pauses_then_given_up() -> None:
    assert join_step(None, 1) == JoinStep(JoinAction.JOINED)
    assert join_step(None, 4) == JoinStep(JoinAction.JOINED)
    steps = [join_step("M_UNKNOWN", n) for n in range(1, len(decide.JOIN_RETRY_PAUSES) + 2)]
    assert [s.pause for s in steps[:-1]] == list(decide.JOIN_RETRY_PAUSES)
    assert all(s.action is JoinAction.RETRY for s in steps[:-1])
    assert steps[-1] == JoinStep(JoinAction.GIVE_UP)
    assert join_step("", 1).action is JoinAction.RETRY  # an error without a code passes too


def test_a_refused_join_is_not_retried() -> None:
    assert join_step("M_FORBIDDEN", 1) == JoinStep(JoinAction.GIVE_UP)


def test_the_bot_leaves_only_a_room_known_to_be_empty() -> None:
    assert should_leave(joined=1, invited=0, members_known=True, leaving=False)
    assert not should_leave(joined=2, invited=0, members_known=True, leaving=False)
    assert not should_leave(joined=1, invited=1, members_known=True, leaving=False)
    assert not should_leave(joined=1, invited=0, members_known=False, leaving=False)
    assert not should_leave(joined=1, invited=0, members_known=True, leaving=True)


def test_keys_set_in_a_direct_chat_are_held_once_it_is_no_longer_private() -> None:
    # Private: the bot and one person, closed, its history not world-readable.
    for members, rule, history in [
        (3, "invite", "shared"),  # a third member joined (or was invited)
        (2, "public", "shared"),  # anyone may join now
        (2, "invite", "world_readable"),  # anyone may read it now
    ]:
        private = events.is_private_room(members, rule, history)
        assert decide.holds_personal_keys("@alice:hs", private=private, members=IN_IT)
    private = events.is_private_room(2, "invite", "shared")
    assert not decide.holds_personal_keys("@alice:hs", private=private, members=IN_IT)
    # Its owner left and someone else came in while the bot did not see it (stopped, or
    # all of it in one sync): two members, private by the numbers, but not the owner's.
    newcomer = {"@bot:hs", "@mallory:hs"}
    assert decide.holds_personal_keys("@alice:hs", private=private, members=newcomer)
    # An owner a version before this did not record: judged by the room alone.
    assert not decide.holds_personal_keys(None, private=private, members=newcomer)


IN_IT = {"@bot:hs", "@alice:hs"}


def test_the_room_told_of_a_held_key_is_told_which_and_how_to_keep_or_remove_it() -> None:
    said = held_notice(["custom_api_key", "proxy_password"], "!", "!room:hs")
    key, password = said.split("\n")
    assert key.startswith("The custom key set here when this was a direct chat")
    assert "`!key set custom <key> room:!room:hs`" in key and "`!key clear custom`" in key
    assert password.startswith("The proxy password set here")
    assert "`!proxy password <password> room:!room:hs`" in password
    assert "`!proxy clear` (it removes the proxy URL and custom key too)" in password


def test_a_space_is_declined_or_left_and_a_room_is_not() -> None:
    assert decide.is_space("m.space")
    for kind in (None, "", "m.room", "M.SPACE", {"type": "m.space"}):
        assert not decide.is_space(kind)
    create = {"type": "m.room.create", "state_key": "", "content": {"type": "m.space"}}
    name = {"type": "m.room.name", "state_key": "", "content": {"name": "Ours"}}
    assert decide.created_type([name, create]) == "m.space"
    assert decide.is_space(decide.created_type([name, create]))
    # A server that leaves m.room.create out of an invite's state: decided after joining.
    assert decide.created_type([name]) is None
    assert decide.created_type(None) is None
    assert decide.created_type([{**create, "state_key": "x"}]) is None
    assert decide.created_type([{**create, "content": {}}]) is None


# --- the arrival line ------------------------------------------------------------------
async def test_each_conversation_lets_its_messages_go_in_arrival_order() -> None:
    order = ArrivalOrder()
    went: list[str] = []

    async def message(name: str, key: str, work: float) -> None:
        place = order.place(key)
        await asyncio.sleep(work)  # e.g. a redaction, done before its turn
        await place.turn()
        went.append(name)
        place.pass_on()

    await asyncio.wait_for(
        asyncio.gather(
            message("a1", "room a", 0.05),
            message("a2", "room a", 0.0),
            message("a3", "room a", 0.01),
            message("b1", "room b", 0.0),
        ),
        5,
    )
    assert [n for n in went if n.startswith("a")] == ["a1", "a2", "a3"]
    assert went.index("b1") < went.index("a1")  # another room does not wait
    assert len(order) == 0  # nothing kept once the line is empty


async def test_leaving_early_or_being_cancelled_keeps_the_line_in_order() -> None:
    order = ArrivalOrder()
    first, second, third, fourth = (order.place("r") for _ in range(4))

    async def handled(place: Place) -> None:  # as the handler does: pass on whatever happens
        try:
            await place.turn()
            await asyncio.sleep(10)
        finally:
            place.pass_on()

    cancelled = asyncio.create_task(handled(second))
    third.pass_on()  # a refusal: done without waiting for its turn
    last = asyncio.create_task(fourth.turn())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.sleep(0.01)
    assert not last.done()  # the first has not gone, so nobody after it has
    first.pass_on()
    await asyncio.wait_for(last, 1)
    fourth.pass_on()
    await asyncio.sleep(0)
    assert len(order) == 0


async def test_a_stop_waits_only_until_the_messages_before_it_are_within_reach() -> None:
    """A command runs (it holds the line until it ends, but nothing of it is a stop's);
    a question behind it is held back where the core stops it: a `!stop` after both goes
    at once, while a message after the question still waits for its turn."""
    order = ArrivalOrder()
    command, question, stop, later = (order.place("r") for _ in range(4))
    command.within_reach()  # as the handler marks a command that is no turn control
    reached = asyncio.create_task(stop.reach())
    await asyncio.sleep(0.01)
    assert not reached.done()  # the question is not held where the core reaches it yet
    question.within_reach()
    await asyncio.wait_for(reached, 1)
    stop.pass_on()  # a stop passes on as it acts (its place kept for those after it)
    turn = asyncio.create_task(later.turn())
    await asyncio.sleep(0.01)
    assert not turn.done()  # the command, and the question after it, still go first
    command.pass_on()
    question.pass_on()
    await asyncio.wait_for(turn, 1)
    later.pass_on()
    await asyncio.sleep(0)
    assert len(order) == 0


def test_a_stop_waits_for_reach_and_only_questions_and_controls_hold_it_up() -> None:
    place = decide.line_place
    stop, regenerate = ("stop",), ("regenerate",)
    assert place(Action.CHAT, None) == decide.LinePlace(decide.Waits.TURN, reached=False)
    assert place(Action.COMMAND, None) == decide.LinePlace(decide.Waits.TURN, reached=True)
    assert place(Action.COMMAND, stop) == decide.LinePlace(decide.Waits.REACH, reached=False)
    assert place(Action.COMMAND, regenerate) == decide.LinePlace(decide.Waits.TURN, reached=False)
    for refused in (Action.SECRET_COMMAND_IN_GROUP, Action.EDIT, Action.SECRET_EMOTE):
        assert place(refused, None) == decide.LinePlace(decide.Waits.NOTHING, reached=True)


# --- where a joined room's timeline starts counting ------------------------------------
def _mine(now: str, before: str | None) -> decide.Membership:
    return decide.Membership(True, now, before)


def _theirs(now: str, before: str | None) -> decide.Membership:
    return decide.Membership(False, now, before)


INVITED = _mine("invite", "leave")
JOINED = _mine("join", "invite")


def test_a_group_room_counts_from_the_bots_invite() -> None:
    """Room admin probe: its join answered and ran what the room said before."""
    timeline = [None, None, INVITED, None, JOINED, None]
    assert decide.arrival(timeline, members_now=3) == 2  # after the invite: kept
    assert decide.arrival([None, JOINED, None], members_now=3) == 1  # no invite here
    assert decide.arrival([None, None], members_now=3) == 0  # no arrival: all of it
    kicked = [None, _mine("leave", "join"), None, INVITED, JOINED]
    assert decide.arrival(kicked, members_now=3) == 3


def test_a_direct_chat_keeps_its_first_message() -> None:
    timeline = [None, INVITED, None, JOINED]
    assert decide.arrival(timeline, members_now=2) == 0
    # Two when it arrived, a third member come since: still its first message.
    joined_since = [None, INVITED, None, JOINED, _theirs("invite", "leave")]
    assert decide.arrival(joined_since, members_now=3) == 0
    # A room not known: a group.
    assert decide.arrival(timeline, members_now=None) == 1


def test_the_room_is_judged_as_it_was_when_the_bot_arrived() -> None:
    """Hostile probe: a group's third member leaving before the bot joined made the room
    look direct, and all it said before the invite was acted on."""
    timeline = [None, INVITED, _theirs("leave", "join"), JOINED, None]
    assert decide.arrival(timeline, members_now=2) == 1
    # Review: a change whose previous state is not given is of someone who was there.
    unknown = [None, INVITED, _theirs("leave", None), JOINED, None]
    assert decide.arrival(unknown, members_now=2) == 1
    profile = [None, INVITED, _theirs("join", None), JOINED]
    assert decide.arrival(profile, members_now=3) == 1


def test_its_own_profile_change_is_no_arrival() -> None:
    """Hostile probe: a join with no previous state given (its profile changed for a
    character) dropped what came before it."""
    assert decide.arrival([None, _mine("join", None), None], members_now=3) == 0
    assert decide.arrival([None, _mine("join", "join"), None], members_now=3) == 0
