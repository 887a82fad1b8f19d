"""What the command table is made of: commands, their options, a parsed invocation.

Declarations only; the table itself is in table.py, what each command does in
endpoint.py (source, key, proxy, models), handlers.py (the other settings, help),
characters.py and quotas.py. Front-ends read these to build their own command surfaces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.providers import ProviderHub
from bot.store import Store
from bot.types import SERVERS, Actor, ChannelRef, Platform, Reply, Scope, Source
from bot.types.prices import PriceTable
from bot.usage.quota import Gate

Handler = Callable[["CommandContext", dict[str, Any]], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What a command handler is given."""

    store: Store
    hub: ProviderHub
    ref: ChannelRef
    actor: Actor
    is_admin: bool  # channel admin by the platform, or an operator admin
    is_server_admin: bool
    table: tuple[Command, ...]
    prefix: str = "/"
    prices: PriceTable = field(default_factory=PriceTable)  # the operator's, for /usage
    gate: Gate = field(default_factory=Gate)  # the operator's limits and access lists
    # The roles the server has now, id → name, as the front-end knows them (None: not
    # known, or no roles here): a who-may-chat rule naming another id matches nobody, and
    # an admin may name a role instead of giving its id.
    server_roles: Mapping[str, str] | None = None
    # Typed in a Matrix direct chat about that chat: the secrets it sets are its owner's,
    # held once the room becomes a group (Store.hold_personal_secrets).
    personal: bool = False


class Kind(StrEnum):
    STRING = "string"
    TEXT = "text"  # takes the rest of the line as typed, quotes and all
    CHOICE = "choice"
    NUMBER = "number"
    INTEGER = "integer"
    SWITCH = "switch"  # on/off, or `default` (a scope's own value removed)
    SECRET = "secret"  # collected privately by the front-end; never echoed
    FILE = "file"  # an attached file (Discord: attachment option; console: a path)


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    kind: Kind
    help: str
    required: bool = True
    choices: tuple[str, ...] = ()
    autocomplete: str | None = None  # name of a completion source, e.g. "models"
    min_value: float | None = None
    max_value: float | None = None
    max_length: int = 4000
    is_name: bool = False  # a STRING that may be a name (a Discord role's): words, emoji
    # Choices that exist only where Platform.has their `where` (SERVERS: /access admin;
    # a platform's name: Matrix's power levels): offered and listed there alone; typed
    # elsewhere they are taken, and their command says why they do nothing there.
    choices_on: tuple[tuple[str, str], ...] = ()
    # A refusal said before the kind's own checks (`/proxy set`'s password: the rest of a
    # URL typed after a space): (the value, the prefix) → what to say, None if none.
    refused: Callable[[str, str], str | None] | None = None

    @property
    def secret(self) -> bool:
        return self.kind is Kind.SECRET

    def help_on(self, platform: Platform) -> str:
        return platform.said(self.help)

    def shown_choices(self, platform: Platform) -> tuple[str, ...]:
        """The choices as `platform`'s people read them (`room` for `channel` on Matrix,
        `tokens_per_room_day`: Platform.named), those of other platforms left out."""
        only = dict(self.choices_on)
        return tuple(platform.named(c) for c in self.choices if platform.has(only.get(c, platform)))

    def choice(self, word: str) -> str | None:
        """The choice `word` names in any case, in any platform's words for the place (a
        Matrix user's `scope:room`, or `scope:channel` as it was shown before). None: none."""
        lowered = word.lower()
        if lowered in self.choices:
            return lowered
        canonical = Platform.canonical(lowered)
        return canonical if canonical in self.choices else None


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    options: tuple[Option, ...] = ()
    subcommands: tuple[Command, ...] = ()
    admin: bool = True
    private: bool = True  # reply only to the caller where the platform allows
    slow: bool = False  # may take seconds (network); front-ends defer
    handler: Handler | None = None
    # Acts on the conversation's newest turn (regenerate, continue…): the core runs it
    # with the chat engine; a front-end that can stream hands it a reply sink.
    control: bool = False
    # Changes the conversation itself (forgets it, posts into it): a front-end that runs
    # commands beside the turns (Discord's slash commands) runs it after the answers
    # being written there. (Matrix and the console order every command.)
    ordered: bool = False

    def sub(self, name: str) -> Command | None:
        return next((c for c in self.subcommands if c.name == name), None)

    def help_on(self, platform: Platform) -> str:
        return platform.said(self.help)


@dataclass(frozen=True, slots=True)
class Invocation:
    """A parsed command: the path through the table and raw option values."""

    path: tuple[str, ...]
    raw: dict[str, Any] = field(default_factory=dict)


SOURCES = tuple(s.value for s in Source)
# The choice that means the place a command is typed in (a scope's "this channel"): shown
# in its platform's word (Platform.place) and taken typed in any platform's.
HERE = Scope.CHANNEL.value
DEFAULT = "default"  # a value that removes a scope's own, so the next scope's applies
# What a switch takes as people see it: on, off, or the next scope's value.
SWITCH_WORDS = ("on", "off", DEFAULT)


def walk(commands: tuple[Command, ...]) -> Iterator[tuple[tuple[str, ...], Command]]:
    """Every leaf command with its path, in table order."""
    for command in commands:
        if command.subcommands:
            for sub in command.subcommands:
                yield (command.name, sub.name), sub
        else:
            yield (command.name,), command


# Where a setting is stored: this channel (the default) or its server.
SCOPE = Option(
    "scope",
    Kind.CHOICE,
    "{place} (default){server: or server-wide (server admins)}",
    required=False,
    choices=(HERE, SERVERS),
    # Offered where there are servers (its help says so); typed elsewhere it is taken, and
    # the router says there is no server here (check_scope), as in a Discord DM.
    choices_on=((SERVERS, SERVERS),),
)


def usage(
    path: tuple[str, ...],
    command: Command,
    prefix: str = "/",
    *,
    server: bool = True,
    platform: Platform = Platform.DISCORD,
) -> str:
    """`/key set <openai|claude|mistral|custom> [scope:channel|server]`.

    Optional switches and short choices show their `name:value` form: `bypass on`
    after `/connect` reads naturally, but `/connect on` would not say what is on.
    `server`: whether there is a server here; without one (a Matrix room, the console,
    a direct message) the scope is left out, as it can only be this channel. `platform`:
    whose word a choice is shown in (`[scope:me|room|server]` on Matrix).
    """
    parts = [prefix + " ".join(path)]
    for opt in command.options:
        if opt == SCOPE and not server:
            continue
        values = SWITCH_WORDS if opt.kind is Kind.SWITCH else opt.shown_choices(platform)
        shown = "|".join(values) if values and len(values) <= 4 else opt.name
        if opt.required:
            parts.append(f"<{shown}>")
        elif values and len(values) <= 4:
            parts.append(f"[{opt.name}:{shown}]")
        else:
            parts.append(f"[{shown}]")
    return " ".join(parts)


def nothing_given(opt: Option) -> str:
    """What a front-end says when a secret it asked for privately came back blank."""
    return f"No {opt.name} given; nothing changed."


def secret_prompt(opt: Option, raw: Mapping[str, object]) -> str:
    """What a front-end asks for when it collects a secret privately: `openai API key`."""
    what = opt.help.removeprefix("the ")
    source = raw.get("source")
    if isinstance(source, str) and source.strip().lower() in SOURCES:  # `Custom` too
        return f"{source.strip().lower()} {what}"
    return what[:1].upper() + what[1:]
