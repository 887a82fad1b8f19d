"""Value types shared by every layer. No I/O here."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from bot.types.secrets import (
    REDACTED,
    SECRET_REGISTRY,
    SecretValue,
    failure,
    redact,
    went_wrong,
)
from bot.types.text import shorten, shown_name
from bot.types.usage import KeyScope, Usage, UsageBucket, UsageQuery, UsageRecord


class Platform(StrEnum):
    DISCORD = "discord"
    MATRIX = "matrix"
    CONSOLE = "console"

    @property
    def place(self) -> str:
        """What its people call the places they chat in (a ChannelRef's channel), in what
        is the same in every place of the platform: command names and choices people type
        (`scope:room`), the command table's help. "room" on Matrix, "channel" elsewhere.
        A reply names its own place by PlaceName, which says a direct chat apart."""
        return "room" if self is Platform.MATRIX else "channel"

    @property
    def has_servers(self) -> bool:
        """Whether its places belong to servers (Discord's guilds; Matrix rooms and the
        console have none)."""
        return self is Platform.DISCORD

    @property
    def follows(self) -> str:
        """Whose value a `default` takes: a server's, where there are servers, else the
        operator's."""
        return "the server's or the operator's" if self.has_servers else "the operator's"

    def named(self, word: str) -> str:
        """A name with a `channel` part (a choice: `channel`, `tokens_per_channel_day`) as
        this platform's people say it: `tokens_per_room_day` on Matrix. What is stored (and
        the operator's settings) keep the `channel` form: `Platform.canonical` reads back."""
        return placed(word, self.place)

    @staticmethod
    def canonical(word: str) -> str:
        """A name typed in any platform's words in its stored form (`tokens_per_room_day`,
        `scope:room` → `tokens_per_channel_day`, `channel`): `named`'s inverse."""
        return _PLACE_PART.sub("channel", word)

    def has(self, where: str) -> bool:
        """Whether what is said or offered only `where` exists on this platform: SERVERS
        (`/access admin`) where there are servers, a platform's name (Matrix's power
        levels) on that platform alone."""
        return where == self.value or (where == SERVERS and self.has_servers)

    def said(self, text: str) -> str:
        """A shared text (a command's help, a choice) with PLACE in this platform's word,
        FOLLOWS in whose value `default` takes here, and each `{server:…}` (`{matrix:…}`,
        `{discord:…}`, `{console:…}`) part kept only where Platform.has it."""
        text = text.replace(PLACE, self.place).replace(FOLLOWS, self.follows)
        if "{" in text:
            text = _ONLY.sub(lambda m: m[2] if self.has(m[1]) else "", text)
        return text


# In a text every platform shares (the command table's help, written `this {place}`):
# where Platform.said puts the platform's word for the place people chat ("room" on Matrix).
PLACE = "{place}"
# Likewise `default: {follows}`: the server's or the operator's, or on Matrix the operator's.
FOLLOWS = "{follows}"
# What exists only on platforms with servers (Platform.has): `{server: (or server)}` in
# a shared text, or a choice (/access admin). A platform's name says its own alone.
SERVERS = "server"
# `{server: (or server)}`, `{matrix: or level}`: words said only where Platform.has them.
_ONLY = re.compile(rf"\{{({'|'.join([SERVERS, *Platform])}):([^{{}}]*)\}}")
# A `channel` (or a platform's word for it, `room`) as a whole part of a name: between
# underscores or at its ends, not inside a word (`channels`, `roommate`).
_CHANNEL_PART = re.compile(r"(?<![a-z])channel(?![a-z])")
_PLACE_PART = re.compile(rf"(?<![a-z])(?:{'|'.join(sorted({p.place for p in Platform}))})(?![a-z])")


def typed_as(
    path: tuple[str, ...], values: tuple[tuple[str, str], ...], platform: Platform, prefix: str
) -> str:
    """A command with these option values (name, value) as its people type it: Discord
    fills each option by name (`/limits action:set name:<name>`: an optional choice, such
    as `set`, is an option to pick there, and a command whose options are all optional
    fills none by position), the others take them in order (`!limits set <name>`). The
    one rule for every hint that names a command with values, the command table's and
    the conversation's alike (which may not import the table)."""
    if platform is Platform.DISCORD:
        return " ".join(["/" + " ".join(path), *(f"{name}:{value}" for name, value in values)])
    return " ".join([prefix + " ".join(path), *(value for _, value in values)])


def params_as(prefix: str, platform: Platform, name: str, value: str = "") -> str:
    """`/params <name> [value]` as `platform` takes it (typed_as): the setting a hint
    names, wherever it is said (a chat turn's error, a command's note)."""
    values = (("name", name), ("value", value)) if value else (("name", name),)
    return typed_as(("params",), values, platform, prefix)


def placed(word: str, place: str) -> str:
    """`word` with its `channel` part said as `place` (Platform.place): Platform.named,
    for code that holds the place's word rather than the platform."""
    return _CHANNEL_PART.sub(place, word)


class Source(StrEnum):
    OPENAI = "openai"
    CLAUDE = "claude"
    MISTRAL = "mistral"
    CUSTOM = "custom"


# Where each source's requests go when no proxy URL is set (a status check made there
# records it); custom has none: it needs a URL.
SOURCE_API: Mapping[Source, str] = MappingProxyType(
    {
        Source.OPENAI: "https://api.openai.com/v1",
        Source.CLAUDE: "https://api.anthropic.com/v1",
        Source.MISTRAL: "https://api.mistral.ai/v1",
    }
)


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class TurnState(StrEnum):
    """How far a stored message got."""

    DONE = "done"
    STREAMING = "streaming"  # an answer still being written (saved as it grows)
    STOPPED = "stopped"  # ended early on purpose: stop, deadline, length cap
    INTERRUPTED = "interrupted"  # the bot went away while writing it
    FAILED = "failed"  # a question that got no answer (provider or database error)


class ReplyMode(StrEnum):
    MENTION = "mention"
    ALWAYS = "always"


class Scope(StrEnum):
    """Where a configuration value or secret is stored."""

    CHANNEL = "channel"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A place people chat: platform + server/space + channel/room + optional thread.

    Configuration belongs to the channel (a thread inherits its parent's); history
    belongs to the thread when there is one.
    """

    platform: Platform
    channel_id: str
    server_id: str = ""
    thread_id: str = ""
    # A direct chat with the bot (a Discord DM, a Matrix room of the bot and one person
    # nobody joins unasked), as the front-end saw it: only how replies name it (place).
    # Not part of its identity: a room that stops being one is the same conversation.
    direct: bool = field(default=False, compare=False)

    def scope_key(self, scope: Scope) -> tuple[str, str, str]:
        """(platform, server, channel) of the row holding this channel's settings at `scope`."""
        if scope is Scope.SERVER:
            return (self.platform.value, self.server_id, "")
        return (self.platform.value, self.server_id, self.channel_id)

    @property
    def has_server(self) -> bool:
        return bool(self.server_id)

    @property
    def place(self) -> PlaceName:
        """How a reply said here names this place: `f"this {ref.place}"`."""
        return PlaceName(self.platform, self.direct, bool(self.thread_id))

    def __str__(self) -> str:
        parts = [self.platform.value, self.server_id or "-", self.channel_id]
        if self.thread_id:
            parts.append(self.thread_id)
        return ":".join(parts)


# What people call a direct chat with the bot, where it has one: Discord's own UI says
# "Direct Messages" and "DM"; Matrix clients, and this bot's Matrix replies, "direct chat".
_DIRECT_PLACE = {Platform.DISCORD: "DM", Platform.MATRIX: "direct chat"}


@dataclass(frozen=True, slots=True)
class PlaceName:
    """How a reply names the place it is said in (ChannelRef.place): its str() is the
    word, "DM" / "direct chat" in a direct chat, "thread's channel" (Matrix: "thread's
    room") in a thread, else the platform's (Platform.place). The one place that word is
    chosen. Names people type keep the platform's word in every place (`named`): Discord
    registers its choices once, for DMs too."""

    platform: Platform
    direct: bool = False
    # Said in a thread: what a reply there sets, shows or refuses is its channel's (a
    # thread has no settings, limits or rules of its own), so `this thread's channel`,
    # never a `this channel` read as the thread alone.
    thread: bool = False

    def __str__(self) -> str:
        if self.thread and not self.direct:
            return f"thread's {self.platform.place}"
        return self.word

    @property
    def word(self) -> str:
        """What such a place is called, whichever one this is: `a {word}`, `every {word}`."""
        if self.direct:
            return _DIRECT_PLACE.get(self.platform, self.platform.place)
        return self.platform.place

    @property
    def here(self) -> str:
        """`here`, as a label of what is set at this place's scope (`(here)`); in a thread,
        `in this thread's channel`, whose it is."""
        return f"in this {self}" if self.thread and not self.direct else "here"

    def whose(self, noun: str, *, capital: bool = False) -> str:
        """`this channel's {noun}`; in a thread, `the {noun} of the channel this thread is
        in`, never the `this thread's channel's {noun}` a possessive of `this {place}`
        makes there."""
        if self.thread and not self.direct:  # its `own`: the channel's, not the server's
            said = f"the {noun.removeprefix('own ')} of the {self.platform.place} this thread is in"
        else:
            said = f"this {self}'s {noun}"
        return said[:1].upper() + said[1:] if capital else said

    def named(self, word: str) -> str:
        """`word`'s `channel` part as people type it here (Platform.named)."""
        return self.platform.named(word)


DISPLAY_NAME_CHARS = 64


@dataclass(frozen=True, slots=True)
class Actor:
    """Who sent a message or command, and what the platform lets them do."""

    id: str
    display_name: str
    is_channel_admin: bool = False
    is_server_admin: bool = False
    roles: tuple[str, ...] = ()  # Discord role ids (who-may-chat rules match them)
    power_level: int | None = None  # Matrix power level in the room

    def __post_init__(self) -> None:
        # Anyone sets their own display name, and it goes into the model's prompt (before
        # their message, as {{user}}): one line, nothing invisible, a name's length. A
        # newline in it would write turns of its own ("\n\nassistant: …").
        name = shorten(shown_name(self.display_name), DISPLAY_NAME_CHARS)
        if name != self.display_name:
            object.__setattr__(self, "display_name", name)


@dataclass(frozen=True, slots=True)
class Image:
    """An image as a model is shown it: prepared bytes, their type, the name people gave it."""

    media_type: str  # image/jpeg, image/png, image/gif or image/webp
    data: bytes = field(repr=False)
    name: str = ""
    sha256: str = ""  # of `data`: where the store keeps it


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image a stored message had: enough to send it again, or to name it."""

    sha256: str
    name: str
    media_type: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One conversation turn as the core sees it (provider-neutral)."""

    role: Role
    content: str
    name: str | None = None
    images: tuple[Image, ...] = ()  # shown after the text, in this order
    # The stored turn it follows in its conversation (its own id is not known yet when
    # it is first sent): what tells two turns of the same words apart, so each resolves
    # its {{random}} and {{roll}} in its own way, the same at every build.
    follows: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A stored conversation turn; `error` says why an answer or a question fell short."""

    role: Role
    content: str
    author: str | None = None
    tokens: int = 0
    error: str | None = None
    state: TurnState = TurnState.DONE
    id: int | None = field(default=None, compare=False)  # the stored row, once there is one
    images: tuple[ImageRef, ...] = ()
    reply_to: int | None = field(default=None, compare=False)  # an answer: its question
    author_id: str | None = field(default=None, compare=False)  # a question: who asked
    # A question that carried text files (its own, or the message's it replied to): their
    # text is part of `content`, so an edit of the question's text keeps it as it was.
    # Images are not (`images`): a picture's question reads as edited.
    files: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model an endpoint offers (fields beyond `id` only where the endpoint says)."""

    id: str
    display_name: str | None = None
    context_length: int | None = None
    vision: bool | None = None


@dataclass(frozen=True, slots=True)
class StatusCheck:
    """The outcome of the last status check stored for a channel."""

    ok: bool
    reason: str
    checked_url: str = ""
    kind: str = ""  # ProviderError.kind of a failure ("unreachable", "auth" …)
    # What an admin does about the failure (ProviderError.step), kept apart from `reason`
    # (what failed): an admin reads it as theirs, anyone else that an admin does it.
    step: str = ""
    checked_at: datetime | None = field(default=None, compare=False)
    # Kept on the server's row: a check of the endpoint its channels share (made in any
    # of them), the one each channel without an endpoint of its own shows.
    server_wide: bool = False


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """A channel's effective configuration after channel → server → operator fall-through.

    `values` holds every setting of the registry (bot.fields) by name, None where nobody
    set it and it has no default; `origins` says where each came from (channel, server,
    operator, default); `passed_over`, by name, the stored values nearer than that which
    today's range refuses (Field.outside), with where each is stored, nearest first. The
    properties are the settings the core itself acts on. `server_endpoint`: the source,
    the URL and the secrets sent all come from the server (or the operator), so the
    endpoint is the one every such channel of the server shares, and so is its status.
    """

    values: Mapping[str, object] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)
    status: StatusCheck | None = None
    passed_over: Mapping[str, tuple[tuple[str, object], ...]] = field(default_factory=dict)
    server_endpoint: bool = False

    @classmethod
    def of(cls, status: StatusCheck | None = None, **values: object) -> ChannelConfig:
        """A config from keyword values (enums as themselves), e.g. operator defaults."""
        plain = {k: v.value if isinstance(v, StrEnum) else v for k, v in values.items()}
        return cls(MappingProxyType(plain), MappingProxyType({}), status)

    def value(self, name: str) -> object:
        return self.values.get(name)

    def _text(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if isinstance(value, str) and value else None

    @property
    def source(self) -> Source:
        return Source(str(self.values.get("source") or Source.OPENAI.value))

    @property
    def model(self) -> str | None:
        return self._text("model")

    @property
    def proxy_url(self) -> str | None:
        return self._text("proxy_url")

    @property
    def resolved_url(self) -> str | None:
        return self._text("resolved_url")

    @property
    def system_prompt(self) -> str | None:
        return self._text("system_prompt")

    @property
    def auxiliary_prompt(self) -> str | None:
        return self._text("auxiliary_prompt")

    @property
    def post_history_prompt(self) -> str | None:
        return self._text("post_history_prompt")

    @property
    def own_prompts(self) -> str | None:
        """The channel's prompts together (system, auxiliary, post-history): what a turn
        sends besides the history and a card, counted before the history is trimmed."""
        texts = (self.system_prompt, self.auxiliary_prompt, self.post_history_prompt)
        return "\n\n".join(t for t in texts if t) or None

    @property
    def bypass_status_check(self) -> bool:
        return self.values.get("bypass_status_check") is True

    @property
    def show_external_models(self) -> bool:
        return self.values.get("show_external_models") is True

    @property
    def show_reasoning(self) -> bool:
        return self.values.get("reasoning") is True

    @property
    def reply_mode(self) -> ReplyMode:
        return ReplyMode(str(self.values.get("reply_mode") or ReplyMode.MENTION.value))

    def text_value(self, name: str) -> str | None:
        """A text setting as set, empty too (an empty format sends nothing), None when
        unset."""
        value = self.values.get(name)
        return value if isinstance(value, str) else None

    def number(self, name: str) -> int | None:
        """An integer setting (max_tokens, context…), None when unset."""
        value = self.values.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command answers: text, whether only the caller should see it, and a file
    (a chart) that front-ends able to post files attach."""

    text: str
    private: bool = False
    ok: bool = True
    file: ReplyFile | None = None
    greeting: Greeting | None = None  # posted publicly in the channel after the reply
    # Nothing to say at all (a turn control whose question, or answer, was deleted while
    # it was prepared): a "thinking…" shown meanwhile goes.
    silent: bool = False


@dataclass(frozen=True, slots=True)
class Greeting:
    """A character's first message, already stored as the conversation's first answer."""

    text: str
    name: str  # the character's
    answer_id: int | None = None
    count: int = 1  # greetings in all: the others are its swipes


@dataclass(frozen=True, slots=True)
class Persona:
    """Who answers in a character channel: its name, a small PNG of its image (when asked
    for) and a version that changes when the card does."""

    name: str
    image: bytes | None = field(default=None, repr=False)
    version: str = ""


@dataclass(frozen=True, slots=True)
class ReplyFile:
    """A file sent with a reply: its name, media type and bytes."""

    filename: str
    media_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file someone attached; its bytes come from the platform, fetched only when used.

    `fetch(limit)` gives the file's bytes; of a larger file it may stop after `limit` + 1
    (what the sender declared is not always what is served), so a caller refuses by the
    length it gets and never holds more than it takes."""

    filename: str
    content_type: str = ""  # as the platform declares it (the bytes decide)
    size: int = 0  # bytes, when the platform says (0: unknown)
    fetch: Callable[[int], Awaitable[bytes]] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Replied:
    """The message a question replies to, when it carries files (someone else's picture
    asked about): its platform id and its files, sent after the question's own unless
    the conversation holds it already."""

    post: str
    attachments: tuple[Attachment, ...]


@dataclass(frozen=True, slots=True)
class Incoming:
    """A platform event turned into something the core understands."""

    channel: ChannelRef
    actor: Actor
    text: str
    attachments: tuple[Attachment, ...] = ()
    message_id: str = ""
    replied: Replied | None = None


__all__ = [
    "PLACE",
    "REDACTED",
    "SECRET_REGISTRY",
    "SOURCE_API",
    "Actor",
    "Attachment",
    "ChannelConfig",
    "ChannelRef",
    "ChatMessage",
    "Greeting",
    "HistoryEntry",
    "Image",
    "ImageRef",
    "Incoming",
    "KeyScope",
    "ModelInfo",
    "Persona",
    "PlaceName",
    "Platform",
    "Replied",
    "Reply",
    "ReplyFile",
    "ReplyMode",
    "Role",
    "Scope",
    "SecretValue",
    "Source",
    "StatusCheck",
    "TurnState",
    "Usage",
    "UsageBucket",
    "UsageQuery",
    "UsageRecord",
    "failure",
    "redact",
    "went_wrong",
]
