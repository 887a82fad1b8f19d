"""What to do with a Matrix event: pure decisions over plain facts (no nio, no network).

The client reads nio events into these facts (see `client.py` and `messages.py`) and
dispatches on the answers, so every rule here is tested without a homeserver.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bot.commands.parse import TypedCommand, plain_prefix, typed_command
from bot.commands.spec import Command
from bot.frontends.matrix.secret_commands import may_hold_secret
from bot.types.secrets import too_short
from bot.types.text import strip_invisible, without_invisible

# Events stamped this long before start-up are old even if a sync hands them over late.
CLOCK_SLACK_MS = 60_000
# A message whose room key has not arrived yet is retried after later syncs this long.
UNDECRYPTED_PATIENCE = 300.0
# Its key comes with it, or a few seconds late (over federation, up to a minute): still
# missing after this long, it is not coming (the sender's app kept it from the bot's
# session), and a sender the message was for the bot is told (`tell_unread`).
UNREAD_NOTICE_AFTER = 60.0
# One notice says what to do for every message of theirs that fails alike: told again
# only this long after, unless one of theirs was read there since.
UNREAD_NOTICE_EVERY = 3600.0
# A group room the bot cannot read at all (encrypted, MATRIX_E2EE off) is told so this
# seldom: whether a message there was for the bot cannot be seen (its mention is inside
# the ciphertext), so it is said on any, and the room needs it no more often.
NO_E2EE_ROOM_NOTICE_EVERY = 86400.0
# Pauses between join attempts; the invite arrives only once, so a passing fault must
# not lose the room.
JOIN_RETRY_PAUSES = (2.0, 10.0, 30.0)
# What people type; notices are other bots (answering them would loop). A file message
# (`EventFacts.media`) is taken too: images and files are read, audio and video refused.
TYPED = frozenset({"m.text", "m.emote"})


class Action(enum.Enum):
    IGNORE = "ignore"
    UNREADABLE = "unreadable"  # encrypted while the bot runs without E2EE: tell the operator
    AWAIT_KEY = "await key"  # encrypted, its room key not here yet: keep it and ask for the key
    COMMAND = "command"
    SECRET_COMMAND_IN_GROUP = "secret command in a group"  # refuse: keys only in a direct chat
    SECRET_EDIT = "secret edit"  # an edit that writes a key or password in: redact it
    SECRET_EMOTE = "secret emote"  # an emote spelling a key command: redact it, never run
    # A key command (or an edit writing a key in) sent while the bot was not running:
    # never run so late, but taken out of the room like any other.
    STALE_SECRET = "secret sent while away"
    # A command in another platform's form (Discord's `/key set …`): never chat; said how
    # to type it here (when addressed, as chat would be answered), a key taken out.
    TYPED_ELSEWHERE = "typed elsewhere"
    CHAT = "chat"  # answered when addressed, or when the room's reply mode says always
    REACTION = "reaction"  # an m.annotation on an event: maybe a turn control (see below)
    REDACTION = "redaction"  # a message removed: the turn it showed is forgotten
    EDIT = "edit"  # a message edited: a question the bot keeps reads as edited from now on


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What the bot knows about one timeline event as it arrives."""

    from_bot: bool  # the bot's own event, echoed back by the sync
    sent_ms: int  # the homeserver's timestamp
    started_ms: int  # when this bot process started
    encrypted: bool  # still encrypted: its room key has not arrived
    e2ee: bool  # the bot can decrypt at all (MATRIX_E2EE)
    is_message: bool  # an m.room.message (not state, a reaction, a redaction …)
    is_edit: bool  # an m.replace of an earlier message
    msgtype: str
    text: str  # what was typed (a file's caption), the reply fallback taken off
    is_command: bool  # the text starts with the command prefix
    # A command (or an emote spelling one) that may carry a key, in this platform's form
    # or another's (`/key set custom <key>`: `typed_elsewhere`).
    may_hold_secret: bool
    room_known: bool  # the bot is in the room and knows its state
    direct: bool  # the bot and one other person
    private: bool = False  # a direct chat nobody joins or reads unasked: keys go here
    media: bool = False  # a file message (image, file, audio, video) naming a file
    reaction: bool = False  # an m.reaction annotating an event
    repeated: bool = False  # its event id came in a sync before (a retried sync, say)
    edit_holds_secret: bool = False  # an edit whose new text may hold a key or password
    redaction: bool = False  # an m.room.redaction naming the event it removes
    from_a_bot_like_this: bool = False  # sent by another bot of this kind (its mark)
    malformed: bool = False  # encrypted, and what it decrypted to cannot be read at all
    typed_elsewhere: bool = False  # a command in another platform's form (`/model x`)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""  # why it is ignored
    redact: bool = False  # it may hold a secret: remove it from the room before anything else


def decide(facts: EventFacts) -> Decision:
    """Ignore, wait for its key, or handle as a command, a refused secret, or chat.

    A file's caption is text like any other: a caption that is a command runs as one.
    """
    if facts.from_bot:
        return Decision(Action.IGNORE, "sent by the bot")
    if facts.from_a_bot_like_this:  # two would answer each other for ever
        return Decision(Action.IGNORE, "sent by another bot of this kind")
    if facts.repeated:
        return Decision(Action.IGNORE, "already handled (the same event again)")
    if facts.redaction:
        # However late it comes: a removed message must not stay in what the model reads.
        if not facts.room_known:
            return Decision(Action.IGNORE, "a room the bot does not know")
        return Decision(Action.REDACTION)
    if facts.sent_ms < facts.started_ms - CLOCK_SLACK_MS:
        if facts.is_message and facts.room_known and _holds_secret(facts):
            return Decision(Action.STALE_SECRET, redact=True)
        return Decision(Action.IGNORE, "sent before the bot started")
    if facts.encrypted:
        if facts.malformed:  # said in the log once; its key would change nothing
            return Decision(Action.IGNORE, "encrypted, and what it holds cannot be read")
        if not facts.e2ee:
            return Decision(Action.UNREADABLE, "encrypted, and MATRIX_E2EE is off")
        return Decision(Action.AWAIT_KEY, "no room key yet")
    if facts.reaction:
        if not facts.room_known:
            return Decision(Action.IGNORE, "a room the bot does not know")
        return Decision(Action.REACTION)
    if not facts.is_message:
        return Decision(Action.IGNORE, "not a message")
    if facts.is_edit:
        if facts.edit_holds_secret:  # never read as a command, but a key in the room
            return Decision(Action.SECRET_EDIT, redact=True)
        # A file's edited caption is its question's text as typed text is (one whose text
        # files' text is folded in keeps it: the core's rule, by the question's flag).
        if (facts.msgtype not in TYPED and not facts.media) or not facts.room_known:
            return Decision(Action.IGNORE, "an edit (the original was handled)")
        return Decision(Action.EDIT)  # never run as a command
    if facts.msgtype not in TYPED and not facts.media:
        return Decision(Action.IGNORE, "neither typed text nor a file the bot reads")
    if not strip_invisible(facts.text) and not facts.media:
        return Decision(Action.IGNORE, "no text")
    if not facts.room_known:
        return Decision(Action.IGNORE, "a room the bot does not know")
    if facts.is_command:
        if keys_refused(secret=facts.may_hold_secret, private=facts.private):
            return Decision(Action.SECRET_COMMAND_IN_GROUP, redact=True)
        return Decision(Action.COMMAND, redact=facts.may_hold_secret)
    if facts.may_hold_secret and facts.msgtype == "m.emote":  # not run, nor chatted
        return Decision(Action.SECRET_EMOTE, redact=True)
    if facts.typed_elsewhere and facts.msgtype != "m.emote":  # an emote is an action
        return Decision(Action.TYPED_ELSEWHERE, redact=facts.may_hold_secret)
    return Decision(Action.CHAT)


def typed_elsewhere(text: str, table: tuple[Command, ...], prefix: str) -> TypedCommand | None:
    """The command `text` names in Discord's and the console's form where `prefix` (`!`)
    gives them: `/model x`, `/key set custom <key>` (other clients than Element send
    these), or None. Only a command's own name counts: `/shrug`, `/me`-like text or a path
    (`/usr/bin`) is chat (`typed_command`'s rule, as Discord and the console apply it to
    Matrix's `!`). `secret`: it asks for a key or password, or holds one as the same line
    typed with `prefix` would (`/model sk-…`)."""
    if prefix == "/":
        return None
    found = typed_command(text, table, "/", exact=True)
    if found is None or found.secret:
        return found
    line = prefix + plain_prefix(text.strip(), "/")[1:]
    return TypedCommand(found.name, may_hold_secret(line, table, prefix))


def _holds_secret(facts: EventFacts) -> bool:
    """A message that would be taken out of the room as holding a key or password."""
    if facts.is_edit:  # as when it comes live: an edit is never run, a key in it goes
        return facts.edit_holds_secret
    if facts.msgtype not in TYPED and not facts.media:  # a notice (another bot's) is not run
        return False
    return facts.may_hold_secret and (facts.is_command or facts.msgtype == "m.emote")


# --- a message's place in its conversation's line (messages.ArrivalOrder) ---------------
class Waits(enum.Enum):
    """What a message waits for in its conversation's line before it is acted on."""

    NOTHING = "nothing"  # acted on at once (an edit, a refused key command)
    TURN = "turn"  # the messages before it passed on (applied, or in the core's turn order)
    # The messages before it within the core's reach (in its turn order, or held back
    # where it stops them): a stop acts on what waits, not after it.
    REACH = "reach"


@dataclass(frozen=True, slots=True)
class LinePlace:
    waits: Waits
    # Within the core's reach as it arrives: nothing a `!stop` after it acts on. A question
    # or a turn control is only once it joins the core's turn order (a question held
    # back behind a command: once it is held where the core stops it).
    reached: bool


def line_place(action: Action, control: tuple[str, ...] | None) -> LinePlace:
    """How a message of any action keeps its place in its line (MessageHandler.handle
    asks for each); `control`: the turn control a command names (`!stop`, `!regenerate`
    …), None for any other."""
    if action is Action.CHAT:
        return LinePlace(Waits.TURN, reached=False)
    if action is not Action.COMMAND:  # a refusal, an edit: changes no turn
        return LinePlace(Waits.NOTHING, reached=True)
    if control == ("stop",):
        return LinePlace(Waits.REACH, reached=False)
    return LinePlace(Waits.TURN, reached=control is None)


@dataclass(frozen=True, slots=True)
class Membership:
    """A room member event in a sync's timeline, as `arrival` reads it."""

    mine: bool  # about the bot itself
    now: str  # join, invite, leave, ban
    before: str | None  # its previous membership (None: not given)


_IN = ("join", "invite")


def arrival(timeline: list[Membership | None], members_now: int | None) -> int:
    """Where a sync's timeline starts counting for the bot (0: all of it): at its newest
    arrival in a group room (its invite, else its join) when the timeline holds one. What
    a group said before the bot was invited (its history, or while the bot was kicked) is
    not the bot's to answer or run; a direct chat's first message, often sent before the
    bot joins, is. `timeline[i]`: the i-th event's membership change, None for others;
    `members_now`: the room's members (joined or invited) after it, None if not known
    (then a group)."""
    start, invited = 0, None
    for i, change in enumerate(timeline):
        if change is None or not change.mine:
            continue
        if change.now == "invite":
            invited = i
        elif change.now == "join" and (invited is not None or change.before not in (None, "join")):
            # A join after an invite here, or from outside; not its own profile changed
            # (join to join), nor one whose previous state is not given.
            start, invited = (i if invited is None else invited), None
        elif change.now in ("leave", "ban"):
            invited = None
    if not start or members_now is None:
        return start
    # The members when it arrived: those who left since count, those who came do not. A
    # change whose previous state is not given is of someone who was there (a profile
    # change, or a leave): the count errs toward a group, never toward a direct chat.
    members = members_now
    for change in timeline[start:]:
        if change is None or change.mine:
            continue
        was_in = change.before is None or change.before in _IN
        if change.now in _IN and not was_in:
            members -= 1
        elif change.now not in _IN and was_in:
            members += 1
    return 0 if members <= 2 else start


def holds_personal_keys(owner: str | None, *, private: bool, members: Collection[str]) -> bool:
    """Whether a key or password `owner` set in a room while it was a private direct chat
    is held (not used) now. It was the owner's, for their own questions; in a room no
    longer private (a third member, a join rule that lets people in, a history anyone
    reads), or one the owner left (`members`: who is in it now; someone else came in
    while the bot did not see it), it would pay for others' questions, which the owner
    never chose. As with any group room's key, an admin of the room sets one for it from
    a direct chat (`room:`), or removes it; the room is told so once. An owner not known
    (None: set by a version that did not record it) is judged by the room alone."""
    return not private or (owner is not None and owner not in members)


def keys_refused(*, secret: bool, private: bool) -> bool:
    """Keys and passwords are taken only in a private direct chat (events.is_private_room),
    where nobody else reads them."""
    return secret and not private


# After a command that asks for a key or a password failed without one (`!key set
# custom`, `!password`), its sender's next message there may be that secret, pasted on
# its own: within this long, a single word is taken for it and never chatted.
SECRET_MAY_FOLLOW = 120.0


def taken_for_secret(asked: float | None, now: float, text: str) -> bool:
    """Whether a chat message is the secret its sender's failed command lacked: one word
    (keys and passwords have no spaces) the command would take (too_short: "hi" or "ok"
    is no key), sent within SECRET_MAY_FOLLOW seconds of it. `asked`: when that command
    failed (monotonic); None when none did."""
    if asked is None or not 0 <= now - asked < SECRET_MAY_FOLLOW:
        return False
    words = text.split()
    return len(words) == 1 and too_short(words[0]) is None


def keep_waiting_for_key(waited: float) -> bool:
    """Whether a message still encrypted after `waited` seconds may yet get its key."""
    return waited < UNDECRYPTED_PATIENCE


def tell_unread(told: float | None, now: float, every: float = UNREAD_NOTICE_EVERY) -> bool:
    """Whether a sender whose message the bot could not read (its key never came) is
    told now: `told`, when they last were in that room (monotonic; None: not since one
    of theirs was read there). `every`: how seldom (a whole room: NO_E2EE_ROOM_NOTICE_EVERY)."""
    return told is None or now - told >= every


# --- chat --------------------------------------------------------------------------
class Lookup(enum.Enum):
    """A fact `addressed` needs that costs a call: look it up and ask again."""

    THREAD = "thread"  # is the thread one the bot talks in? (a database read)
    REPLY = "reply"  # is the replied-to event the bot's? (maybe a homeserver call)
    ANSWER = "answer"  # which conversation shows the replied-to answer? (a database read)


@dataclass(frozen=True, slots=True)
class ChatFacts:
    direct: bool
    mentions_bot: bool
    thread_root: str  # "" outside threads
    replied_to: str  # "" when not a reply (a thread's fallback is not one)
    bots_thread: bool | None = None  # None: not looked up yet
    reply_to_bot: bool | None = None  # None: not looked up yet


def addressed(facts: ChatFacts) -> bool | Lookup:
    """Spoken to: a direct chat, a mention, a thread the bot talks in, or a reply to it.

    Cheap facts first; a Lookup names the one costly fact still needed to decide.
    """
    if facts.direct or facts.mentions_bot:
        return True
    if facts.thread_root:
        if facts.bots_thread is None:
            return Lookup.THREAD
        if facts.bots_thread:
            return True
    if facts.replied_to:
        if facts.reply_to_bot is None:
            return Lookup.REPLY
        return facts.reply_to_bot
    return False


def conversation_thread(
    *, thread_root: str, replied_to: str, answer_thread: str | Lookup | None = Lookup.ANSWER
) -> str | Lookup:
    """The thread whose conversation a message continues ("": the room's own).

    A message in a thread continues that thread. One in the main timeline replying to an
    answer of the bot's continues that answer's conversation: a client that shows threads
    flat lets a member reply there to an answer inside a thread (Element shows such a reply
    in the main timeline, quoting it), and the member means the thread the answer was part
    of, as the spec lets a thread-aware client read it. The answer is given where the reply
    was sent (see `answer_form`); only what the model reads is the thread's.
    `answer_thread`: the thread of the conversation the replied-to event shows an answer of
    ("" the room's), None when it shows none, Lookup.ANSWER when not looked up yet."""
    if thread_root or not replied_to:
        return thread_root
    if isinstance(answer_thread, Lookup):
        return Lookup.ANSWER
    return answer_thread or ""


@dataclass(frozen=True, slots=True)
class AnswerForm:
    reply_to: str  # the event the answer replies to ("" for a plain message)
    mention: str  # the user the answer mentions ("" for nobody)


def answer_form(*, direct: bool, replied_to: str, event_id: str, sender: str) -> AnswerForm:
    """In a direct chat a plain answer is clear; elsewhere say whom it answers."""
    if direct:
        return AnswerForm(reply_to=event_id if replied_to else "", mention="")
    return AnswerForm(reply_to=event_id, mention=sender)


# --- membership --------------------------------------------------------------------
class JoinAction(enum.Enum):
    JOINED = "joined"
    RETRY = "retry"
    GIVE_UP = "give up"


@dataclass(frozen=True, slots=True)
class JoinStep:
    action: JoinAction
    pause: float = 0.0  # seconds before the next attempt (RETRY only)


def join_step(error: str | None, attempt: int) -> JoinStep:
    """After join attempt `attempt` (from 1) ended with `error` (None: it worked; "": no code).

    A refusal (M_FORBIDDEN) will not pass; anything else is tried again a few times.
    """
    if error is None:
        return JoinStep(JoinAction.JOINED)
    if error == "M_FORBIDDEN" or attempt > len(JOIN_RETRY_PAUSES):
        return JoinStep(JoinAction.GIVE_UP)
    return JoinStep(JoinAction.RETRY, JOIN_RETRY_PAUSES[attempt - 1])


def should_leave(*, joined: int, invited: int, members_known: bool, leaving: bool) -> bool:
    """Leave a room nobody else is in or invited to, once its members are known."""
    return joined <= 1 and invited == 0 and members_known and not leaving


SPACE = "m.space"  # m.room.create's `type` of a space


def is_space(room_type: object) -> bool:
    """A space (m.room.create's `type`, from an invite's stripped state or the joined
    room's state) groups rooms; nobody chats in it: its invite is declined, and a space
    the bot finds itself in is left, without a word either way."""
    return room_type == SPACE


def created_type(stripped_state: object) -> object:
    """The `type` an invite's stripped state gives m.room.create (None: not there, which
    some servers do; the room's state says after the join)."""
    if not isinstance(stripped_state, list):
        return None
    for event in stripped_state:
        if _field(event, "type") == "m.room.create" and _field(event, "state_key") == "":
            return _field(_field(event, "content"), "type")
    return None


# --- reactions on answers ------------------------------------------------------------
# The emoji that act on an answer, as the table's commands they stand for. Clients send
# some with the emoji presentation selector (U+FE0F), the text one (U+FE0E: ◀︎ from a
# symbol picker) or none.
_REACTIONS: dict[str, tuple[str, ...]] = {
    "🔄": ("regenerate",),
    "⏩": ("continue",),
    "⏹": ("stop",),
    "◀": ("swipe", "prev"),
    "▶": ("swipe", "next"),
}


@dataclass(frozen=True, slots=True)
class AnswerFacts:
    """What the bot remembers of one of its answers (the reacted-to event)."""

    asker: str  # who asked the question
    answered: bool  # False: the model failed and the message shows the error


def reaction_words(key: str) -> tuple[str, ...] | None:
    """The command a reaction's key stands for, or None: any other emoji (a comment)."""
    return _REACTIONS.get(without_invisible(key).strip())


def reaction_command(
    key: str, answer: AnswerFacts | None, *, sender: str, admin: bool
) -> tuple[str, ...] | None:
    """The command a reaction runs, as words (`("swipe", "next")`), or None to ignore it.

    Only reactions on an answer the bot knows, by its asker or an admin, with one of the
    control emoji count; 🔄 on an error asks the question again (retry). Anything else is
    ignored without a word: reactions are how people comment, and a reply to each would
    be noise in the room.
    """
    words = reaction_words(key)
    if words is None or answer is None:
        return None
    if not admin and sender != answer.asker:
        return None
    if words == ("regenerate",) and not answer.answered:
        return ("retry",)
    return words


def predecessor(room_id: str, create: object) -> str | None:
    """The room `room_id` continues after an upgrade, as its create event says; whoever
    creates a room may write any room there, so the old room's tombstone must agree
    (`replaced_by`)."""
    old = _field(_field(create, "predecessor"), "room_id")
    return old if isinstance(old, str) and old.startswith("!") and old != room_id else None


def replaced_by(tombstone: object, room_id: str) -> bool:
    """Whether an old room's tombstone, which only its admins may send, names `room_id`
    as the room that replaces it."""
    return bool(room_id) and _field(tombstone, "replacement_room") == room_id


def _field(content: object, name: str) -> Any:
    return content.get(name) if isinstance(content, Mapping) else None
