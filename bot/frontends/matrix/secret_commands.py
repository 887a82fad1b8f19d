"""Commands that carry a secret: where they may be typed and which room they configure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.commands import Command, Invocation
from bot.commands.parse import CommandError, asks_secret, looks, parse
from bot.commands.router import find
from bot.commands.spec import SWITCH_WORDS, Kind, usage
from bot.types import Platform, SecretValue
from bot.types.secrets import CREDENTIAL_WORDS, holds_key, redact

# `room:!id` (room v12 ids have no server part), `room:!id:server` or `room:#alias:server`.
# The `room:` prefix keeps a channel name inside, say, a system prompt from counting.
_TARGET = re.compile(r"(?:(?<=\s)|^)room:(![^\s:]+(?::\S+)?|#[^\s:]+:\S+)(?=\s|$)")
# What was meant as one: `room:#ops` (an alias without its server), `room:!`.
_MEANT = re.compile(r"(?:(?<=\s)|^)room:[#!]\S*(?=\s|$)")
# A room named by its name (`room:Lounge`), as its people know it: no target, and in a
# prompt just text, but in a key or password command never part of the secret.
_BY_NAME = re.compile(r"(?:(?<=\s)|^)room:[^\s#!]")
ROOM_BY_NAME = (
    "`room:` takes a room's id, room:!id (Room settings → Advanced), or its alias, "
    "room:#alias:server, not its name. Nothing was saved."
)


@dataclass(frozen=True, slots=True)
class Targeted:
    """A command line with its room target taken out ("" when it names none)."""

    text: str
    target: str


def split_target(text: str) -> Targeted:
    """Take one room target out of a command line; the rest is parsed as usual."""
    matches = list(_TARGET.finditer(text))
    if len(matches) > 1:
        raise CommandError("Name one room only (room:!id or room:#alias:server).")
    if len(_MEANT.findall(text)) > len(matches):
        # Not read as part of a key or a prompt: said as what it is.
        raise CommandError(
            "A room alias needs its server, as in room:#ops:example.org; or name the room "
            "by its id, room:!id (Room settings → Advanced)."
        )
    if not matches:
        return Targeted(text, "")
    match = matches[0]
    target = match.group(1)
    rest = f"{text[: match.start()].rstrip()} {text[match.end() :].lstrip()}".strip()
    return Targeted(rest, target)


def names_room_by_name(text: str) -> bool:
    """Whether a `room:` word of `text` names a room by its name (no id, no alias)."""
    return _BY_NAME.search(text) is not None


def carries_secret(inv: Invocation) -> bool:
    return any(isinstance(v, SecretValue) for v in inv.raw.values())


def takes_secret(inv: Invocation, table: tuple[Command, ...]) -> bool:
    """A command that must be given a key or a password, given or not (`!proxy password`,
    not `!proxy set`, whose password may follow the URL)."""
    command = find(table, inv.path)
    return command is not None and any(o.secret and o.required for o in command.options)


def missing_secret(
    inv: Invocation, table: tuple[Command, ...], prefix: str
) -> tuple[str, str] | None:
    """A command that takes a secret, typed without it: the secret's name and the
    command's usage line as a refusal shows it on Matrix (None: it has it, or takes none)."""
    command = find(table, inv.path)
    if command is None or carries_secret(inv) or not takes_secret(inv, table):
        return None
    secret = next(o for o in command.options if o.secret and o.required)
    return secret.name, usage(inv.path, command, prefix, server=False, platform=Platform.MATRIX)


def may_hold_secret(text: str, table: tuple[Command, ...], prefix: str) -> bool:
    """Whether a typed command might contain a secret, so it must be redacted.

    A line that parses is judged by its values. A line naming a command that asks for a
    secret (mistyped, or missing a word: `!key set hunter2`, `!password hunter2`) holds
    one when any word after the command's name is not one of the commands' own words
    (a source, a subcommand). A key pasted into any other command (`!model sk-…`) holds
    one too.
    """
    if holds_key(text) or _url_holds_secret(text):
        return True
    try:
        body = split_target(text).text
    except CommandError:  # two room targets: judged with both in it
        body = text
    try:
        if carries_secret(parse(body, table, prefix)):
            return True
    except CommandError:
        pass
    if not asks_secret(body, table, prefix):
        return False
    # Exactly the commands' own words (a source, a subcommand), however spelt: a typo's
    # near miss is no proof (`monkey` is close to `key`, `master` to `mistral`).
    known = _table_words(table)
    words = body.strip().removeprefix(prefix).split()[1:]
    return len(words) > _MOST_WORDS or any(looks(w) not in known for w in words)


_MOST_WORDS = 20  # more after a key command's name: as good as holding one


def lacks_secret(text: str, table: tuple[Command, ...], prefix: str) -> bool:
    """Whether a command line asks for a secret (asks_secret) and came without it: the
    sender's next word may be that secret. One that may hold it already (`!key set custom
    hunter2…` refused in a group room, a key too short, a source misspelt) asks for
    nothing more: the admin's "Thanks!" after it was deleted as the key."""
    return asks_secret(text, table, prefix) and not may_hold_secret(text, table, prefix)


# Each of these is tried once per run of the characters it scans, never again from
# inside one, and gives nothing back: a command line of 60 KB (a run of letters, `$a`
# repeated, a query of `key` repeated) had held the bot's whole loop for seconds each.
# A URL's scheme starts at its run's first letter (group 1).
_URL = re.compile(r"(?<![A-Za-z0-9+.\-])[0-9+.\-]*+([A-Za-z][A-Za-z0-9+.\-]*+://\S+)")
# Query or fragment parameters that carry a credential (`?api_key=…`, `#access_token=…`):
# a name (group 1) holding one of the words.
_PARAM = re.compile(r"[?&#;]([\w.\-]*+)=")
_CREDENTIAL_WORD = re.compile("|".join(CREDENTIAL_WORDS), re.I)


# A login before a host without a scheme (`user:pass@proxy:8080`), as proxies are written:
# `(?<![\w/@])[A-Za-z][^\s/@:]*:[^\s/@]+@[A-Za-z0-9.\-\[\]]`, matched on the text reversed,
# from each "@" back (read forwards, it was tried from every letter to its word's end).
_LOGIN_REVERSED = re.compile(r"[A-Za-z0-9.\-\[\]]@[^\s/@]+:[^\s/@:]*[A-Za-z](?![\w/@])")


def _url_holds_secret(text: str) -> bool:
    """A URL with a password or user name in it (`http://user:pass@host`, also without
    its scheme), or a key in its query (`?api_key=…`): the bot refuses such an endpoint,
    but the line that typed it still holds the secret. (`?id=3` in a prompt's link is no
    secret.)"""
    if "@" in text and _LOGIN_REVERSED.search(text[::-1]):
        return True
    for match in _URL.finditer(text):
        url = match.group(1)
        authority = url.split("://", 1)[1].split("/", 1)[0]
        if "@" in authority or any(
            _CREDENTIAL_WORD.search(name.group(1)) for name in _PARAM.finditer(url)
        ):
            return True
    return False


def scrub_reply(
    reply: str, text: str, table: tuple[Command, ...], prefix: str, *, refused: bool = False
) -> str:
    """`reply` with anything from `text` that may be a secret replaced by ****.

    The core never echoes a secret it recognised, but a key typed in the wrong place
    (`!key set sk-… claude`) is just a bad value, and error messages quote bad values.
    A value that parsed into a plain option (a URL, a model id) stays in a reply that
    took it; a `refused` one quotes what it refused, which may be the secret typed in
    the wrong place (`!proxy set hunter22 http://…`): nothing of the line stays there.
    """
    try:
        body = split_target(text).text
        inv = parse(body, table, prefix)
    except CommandError:  # two `room:` targets, say: every word of it is a suspect
        body, inv = text, None
    known = _table_words(table)
    plain: set[str] = set()
    suspects: set[str] = set()
    command = find(table, inv.path) if inv is not None else None
    if inv is not None and command is not None:
        options = {o.name: o for o in command.options}
        for name, value in inv.raw.items():
            option = options.get(name)
            if isinstance(value, SecretValue):
                if value.reveal().lower() not in known:  # `openai` in the key's place
                    suspects.add(value.reveal())
            elif option is not None and (not option.choices or option.choice(value) is not None):
                if not refused:
                    plain.add(str(value))  # a plain value the command took: a URL, a model id
    for token in body.removeprefix(prefix).split():
        token = token.strip("\"'`")
        if len(token) >= _SUSPECT_LEN and token.lower() not in known and token not in plain:
            suspects.add(token)
    # The one redaction rule: the suspects in any form (escaped, JSON, base64…), and
    # nothing of other channels' secrets (known=False: this reply is one room's).
    return redact(reply, suspects, known=False)


_SUSPECT_LEN = 6


def _table_words(table: tuple[Command, ...]) -> set[str]:
    """The commands' own words: names, choices, and a choice with its option's name as
    typed (`scope:server`, `bypass:on`), which a reply may quote back."""
    words: set[str] = set()
    for command in table:
        words.add(command.name)
        words.update(_table_words(command.subcommands))
        for option in command.options:
            choices = {*option.choices, *option.shown_choices(Platform.MATRIX)}
            words.update(choices)
            if option.kind is Kind.SWITCH:
                choices.update(SWITCH_WORDS)
            words.update(f"{option.name}:{choice}" for choice in choices)
    return words
