"""Text commands (`/model x`, `!proxy set "url"`) → Invocation. Pure functions."""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from itertools import takewhile
from typing import Any

from bot.commands.catalog import known_as
from bot.commands.spec import DEFAULT, Command, Invocation, Kind, Option, usage
from bot.types import Attachment, Platform, SecretValue, Source
from bot.types.secrets import held_secret, holds_key, too_short
from bot.types.text import (
    MODEL_ID_CHARS,
    NAME_SEPARATORS,
    QUOTE_CLOSERS,
    SWITCH_OFF,
    SWITCH_ON,
    TextError,
    apostrophe_at,
    clean_text,
    decimal_hint,
    header_safe,
    lstrip_invisible,
    normalize_text,
    opens_quote,
    out_of_range,
    parse_decimal,
    parse_whole_number,
    quoted,
    range_text,
    refuse_controls,
    strip_invisible,
    switch_value,
    unwrapped,
    visible_id,
)


class CommandError(ValueError):
    """Bad command input; the message is shown to the person who typed it."""


def _token(text: str, pos: int) -> tuple[str, int] | None:
    """Next whitespace-separated token from `pos`, honouring quotes: "…", '…' and the
    typographic pairs phones and locales type (“…”, „…“, «…», 「…」: QUOTE_CLOSERS). An
    apostrophe inside a word (`don't`, `don’t`) is a letter of it, not a quote."""
    n = len(text)
    while pos < n and text[pos].isspace():
        pos += 1
    if pos >= n:
        return None
    out: list[str] = []
    closers = ""  # what closes the quote open, if one is
    while pos < n:
        c = text[pos]
        if closers:
            if c == "\\" and pos + 1 < n and text[pos + 1] in (closers + "\\"):
                out.append(text[pos + 1])
                pos += 2
                continue
            if c in closers and not apostrophe_at(text, pos):
                closers = ""
            else:
                out.append(c)
        elif c in QUOTE_CLOSERS and not apostrophe_at(text, pos) and opens_quote(c, out):
            closers = QUOTE_CLOSERS[c]
        elif c.isspace():
            break
        else:
            out.append(c)
        pos += 1
    if closers:
        raise CommandError("A quote is not closed. Close it or remove it.")
    return "".join(out), pos


# Letters of other scripts that look like Latin ones (`кеу` typed or pasted for `key`):
# a name spelled with them is that command, so a look-alike of a secret command is
# refused as one (its key held back). Only a whole look-alike: `нет` ("no") is no typo
# of `set`.
_LOOK_ALIKES = str.maketrans(
    "аеіјкмнорстухѕһԁԛԝвαεικνορτυχ",  # Cyrillic, then Greek (lower case)
    "aeijkmhopctyxshdqwbaeikvoptux",
)
# Capitals that look like Latin ones but lower-case to letters that do not (Greek Υ → υ,
# read as u; Cyrillic В → в): read as the Latin capital first.
_CAPITAL_LOOK_ALIKES = str.maketrans(
    "АВЕКМНОРСТУХЅІЈΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",  # Cyrillic, then Greek
    "ABEKMHOPCTYXSIJABEZHIKMNOPTYX",
)


def looks(word: str) -> str:
    """`word` as the Latin letters it shows, lower-cased (`ΚΕΥ`, `кеу` → `key`)."""
    shown = unicodedata.normalize("NFKC", word[:60]).translate(_CAPITAL_LOOK_ALIKES)
    return shown.lower().translate(_LOOK_ALIKES)


def closest(word: str, candidates: list[str], cutoff: float = 0.6) -> str | None:
    """The candidate `word` is a typo of (`modle` → `model`) or spells with look-alike
    letters (`мodel`), if one is close enough (`cutoff`: difflib's similarity)."""
    looks_as = looks(word)
    if looks_as in candidates:
        return looks_as
    close = difflib.get_close_matches(word[:60].lower(), candidates, n=1, cutoff=cutoff)
    return close[0] if close else None


def asks_secret(text: str, table: tuple[Command, ...], prefix: str) -> bool:
    """`text` names a command that asks for a secret, however its options went wrong,
    or a typo of one: `/kye set custom`, `/key-set custom`, `/key` or `/key custom`
    (no subcommand: one of its subcommands asks), `/password` (a subcommand's name
    alone). A front-end that refused it takes what the sender sends next on its own for
    that secret, not for chat."""
    body = text.strip().removeprefix(prefix)  # not lower-cased: Greek Υ would read as u
    typed = body.split()
    if 1 < len(typed) <= 3 and typed[-1].lower() in HELP_WORDS:
        return False  # `/key help`, `/proxy password ?`: its usage was shown, none asked
    words = body.replace("-", " ").replace("_", " ").split()
    if not words:
        return False

    def asks(command: Command) -> bool:
        return any(o.secret and o.required for o in command.options)

    def named(word: str, commands: tuple[Command, ...]) -> Command | None:
        names = [c.name for c in commands]
        name = word.lower() if word.lower() in names else closest(word, names)
        return next((c for c in commands if c.name == name), None)

    command = named(words[0], table)
    if command is None:  # a subcommand's name alone
        command = named(words[0], tuple(sub for c in table for sub in c.subcommands))
        return command is not None and asks(command)
    if not command.subcommands:
        return asks(command)
    sub = named(words[1], command.subcommands) if len(words) > 1 else None
    if sub is None:  # none given, or none of its names: whichever was meant
        return any(asks(s) for s in command.subcommands)
    return asks(sub)


def suggest(word: str, candidates: list[str]) -> str:
    close = closest(word, candidates)
    return f" Did you mean {quoted(close, MODEL_ID_CHARS)}?" if close else ""


# The prefixes as a CJK keyboard types them (fullwidth): taken as the prefix itself.
_FULLWIDTH = {"/": "\uff0f", "!": "\uff01"}
# A CJK keyboard in fullwidth mode types the words of a command so (`！ｍｏｄｅｌ　ｇｐｔ－４ｏ`):
# fullwidth ASCII (U+FF01–U+FF5E) and the ideographic space, as the ASCII they stand for.
_HALFWIDTH = {0xFF01 + i: 0x21 + i for i in range(0x5E)} | {0x3000: 0x20}
_FULLWIDTH_NAME = re.compile("[\uff21-\uff3a\uff41-\uff5a]+")
_FULLWIDTH_WORD = re.compile("([\uff01-\uff5e]+)(\\s*)")


def _halfwidth_head(rest: str) -> str:
    """`rest`'s leading words typed all in fullwidth ASCII (the command, its subcommand,
    choices, an id) as ASCII; from the first word with anything else (`あなたは「ＡＩ」…`,
    `報告書（２０２４）.pdf`, a pasted key) on, the line stays as typed."""
    pos = 0
    while match := _FULLWIDTH_WORD.match(rest, pos):
        pos = match.end()
        if pos < len(rest) and not match.group(2):  # `ＡＩアシスタント`: a word of its own
            pos = match.start()
            break
    return rest[:pos].translate(_HALFWIDTH) + rest[pos:]


def plain_prefix(text: str, prefix: str) -> str:
    """`text` as a command reads: what hides before the prefix taken off (a zero-width
    space, a right-to-left mark), and a leading fullwidth `／` or `！` made the plain
    prefix; a command whose name is typed in fullwidth letters (`！ｋｅｙ　ｓｅｔ …`) read
    in ASCII, as far as its words are all fullwidth; anything else unchanged (`！Ａさん`
    is a sentence).

    Front-ends apply it where a message comes in, so `／key set …` or an invisible
    character before `!key set …` is the command (and its key is handled as one)
    everywhere, not a chat line sent to the model."""
    body = lstrip_invisible(text)
    for mark in (prefix, _FULLWIDTH.get(prefix)):
        # Only before a command's name: `！！！` or `！好` is a CJK sentence, not a command.
        name = body[len(mark) : len(mark) + 1] if mark else ""
        if not (mark and body.startswith(mark) and name.isalpha()):
            continue
        rest = body[len(mark) :]
        if name.isascii():
            return prefix + rest
        first = rest.split(maxsplit=1)[0]
        if _FULLWIDTH_NAME.fullmatch(first):
            return prefix + _halfwidth_head(rest)
    return text


@dataclass(frozen=True, slots=True)
class TypedCommand:
    name: str  # the command meant (`key`, `proxy password`)
    secret: bool  # it asks for a key or password: the message may hold one


def typed_command(
    text: str, table: tuple[Command, ...], prefix: str = "/", *, exact: bool = False
) -> TypedCommand | None:
    """The command a chat message names with `prefix` where that is not how commands are
    given (`/key set …` typed into a Discord message, Matrix's `!model x` in the console;
    `／model x`, a typo of a secret one), or None: it is not chat, and it may hold a key
    (`/key set custom <key>`). `exact`: only a command's own name counts, not a typo of
    one (another platform's prefix, `!`, starts chat: `!hey there` is not `/key`)."""
    body = plain_prefix(text.strip(), prefix)
    # `/key-set`, `/key_set` name `/key`; `/-_-` (a face) names nothing and is chat.
    words = body[len(prefix) :].replace("-", " ").replace("_", " ").split()
    if not body.startswith(prefix) or not words:
        return None
    if exact and words[0].lower() not in {c.name for c in table}:
        return None
    secret = asks_secret(body, table, prefix)
    # Not lower-cased before `closest`: Greek capitals fold to other letters (Υ → υ → u).
    typed = words[0]
    names = [c.name for c in table]
    if not secret and typed.lower() not in names:
        return None  # `/shrug` or a path: chat like any other
    # The command meant, as its slash command is named (`/kye` is `/key`, `/password`
    # is `/proxy password`), never the typed word, which may be part of a key.
    name = typed.lower() if typed.lower() in names else closest(typed, names)
    if name is None:
        subs = {s.name: f"{c.name} {s.name}" for c in table for s in c.subcommands}
        name = subs.get(closest(typed, list(subs)) or "", "help")
    return TypedCommand(name, secret)


def parse(
    text: str,
    table: tuple[Command, ...],
    prefix: str = "/",
    *,
    server: bool = False,
    platform: Platform = Platform.DISCORD,
) -> Invocation:
    """Parse one command line (with or without its prefix) by the table.

    Control characters stay in the values: free text drops them, and a value that names
    something is refused with them (`coerce`). `server`: whether the channel has a
    server (usage lines in errors offer `scope` only then). `platform`: whose words the
    help and refusals use (Platform.said)."""
    body = strip_invisible(normalize_text(plain_prefix(text, prefix)))
    if body.startswith(prefix):
        body = body[len(prefix) :]
    first = _token(body, 0)
    if first is None:
        raise CommandError(f"Empty command. Type {prefix}help for the list.")
    name, pos = first[0].lower(), first[1]
    command = next((c for c in table if c.name == name), None)
    if command is None:
        names = [c.name for c in table]
        joined = name.replace("-", " ").replace("_", " ").split()
        if len(joined) > 1 and joined[0] in names:  # `/key-set`: `/key set`, not `/reset`
            hint = f" Did you mean {quoted(prefix + ' '.join(joined))}?"
        else:
            hint = suggest(name, names)
        raise CommandError(
            f"Unknown command {quoted(prefix + name)}.{hint} Type {prefix}help for the list."
        )
    path: tuple[str, ...] = (command.name,)
    if command.name == "help":  # `/help proxy`, `/help /key set`: that command's lines
        _help_on(body[pos:], table, prefix, server, platform)
    if command.subcommands:
        nxt = _token(body, pos)
        subs = [s.name for s in command.subcommands]
        if nxt is not None and _asks_help(body, pos):  # `/proxy help`
            raise CommandError(_help_of(command, path, prefix, server, platform))
        if nxt is None:
            example = usage(
                (name, subs[0]), command.subcommands[0], prefix, server=server, platform=platform
            )
            raise CommandError(
                f"`{prefix}{name}` needs one of: {', '.join(subs)}. Example: {example}"
            )
        sub = command.sub(nxt[0].lower())
        if sub is None:
            # `/reply always`: a value of one subcommand, its name left out; or
            # `/proxy url http://…`: the name of one subcommand's option instead of its own.
            word, rest = nxt[0].lower(), pos
            takes = [s for s in command.subcommands if _takes(s, word)]
            if not takes:
                takes = [s for s in command.subcommands if any(o.name == word for o in s.options)]
                rest = nxt[1]
            hint = suggest(nxt[0], subs)
            if len(takes) == 1 and any(o.secret for o in takes[0].options):  # not echoed
                meant = (name, takes[0].name)
                line = usage(meant, takes[0], prefix, server=server, platform=platform)
                hint = f" Did you mean {line}?"
            elif len(takes) == 1:
                typed = body[rest:].strip()
                hint = f" Did you mean `{prefix}{name} {takes[0].name} {typed}`?"
            raise CommandError(
                f"`{prefix}{name}` has no {quoted(nxt[0])}.{hint} Choose one of: {', '.join(subs)}."
            )
        command, path, pos = sub, (*path, sub.name), nxt[1]
    if _asks_help(body, pos):  # `/model help` asks how, never sets the model `help`
        raise CommandError(_help_of(command, path, prefix, server, platform))
    return Invocation(path, _options(body, pos, command, path, prefix, server, platform))


def _takes(command: Command, word: str) -> bool:
    """Whether `word` is one of the values a choice option of `command` takes."""
    return any(_accepts(o, word) for o in command.options if not o.secret)


# What asks for a command's own help when it is all that follows the command's name
# (also after a console command: `/attach help`).
HELP_WORDS = ("help", "?", "-h", "--help")


def _asks_help(body: str, pos: int) -> bool:
    return body[pos:].strip().lower() in HELP_WORDS


def _help_of(
    command: Command, path: tuple[str, ...], prefix: str, server: bool, platform: Platform
) -> str:
    """A command's usage line and what it does, one line per subcommand it has, as a
    refusal's `Usage:` shows it (the reply is said as a command error: nothing ran)."""
    leaves = [((*path, s.name), s) for s in command.subcommands] or [(path, command)]
    return "\n".join(
        f"{usage(p, c, prefix, server=server, platform=platform)} — {c.help_on(platform)}"
        for p, c in leaves
    )


def _help_on(
    rest: str, table: tuple[Command, ...], prefix: str, server: bool, platform: Platform
) -> None:
    """`/help <command> [subcommand]`: raise with that command's help (the whole command's
    when the subcommand is not one of its own); a source or nothing goes on to /help
    itself; any other word is said to be neither, with both kinds of topic named."""
    words = rest.lower().split()
    first = _token(rest, 0)
    if not words or first is None:
        return
    named = next((c for c in table if c.name == words[0].removeprefix(prefix)), None)
    if named is None:
        word = first[0].lower().removeprefix(prefix)
        own = {o.name: o for c in table if c.name == "help" for o in c.options}
        topics = next((o.choices for o in own.values() if o.kind is Kind.CHOICE), ())
        if word in topics or word in HELP_WORDS:  # `/help ?`: /help's own usage
            return
        if not _plain(first, own) or _misnamed(first[0], own) is not None:
            return  # `/help topic:openai`, as its usage line writes it: /help's own option
        names = [c.name for c in table]
        raise CommandError(
            f"{quoted(first[0])} is neither a source nor a command."
            f"{suggest(word, [*names, *topics])} {prefix}help <source> shows how to connect "
            f"one ({', '.join(topics)}), {prefix}help <command> what a command takes, and "
            f"{prefix}help alone lists every command."
        )
    sub = named.sub(words[1].removeprefix(prefix)) if len(words) > 1 else None
    path = (named.name, sub.name) if sub else (named.name,)
    raise CommandError(_help_of(sub or named, path, prefix, server, platform))


def _options(
    body: str,
    pos: int,
    command: Command,
    path: tuple[str, ...],
    prefix: str,
    server: bool,
    platform: Platform,
) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    positional = list(command.options)
    by_name = {o.name: o for o in command.options}
    last: Option | None = None  # the option the last bare value went to
    while positional or pos < len(body):
        if positional and positional[0].kind is Kind.TEXT:
            rest = _peel_named(body[pos:].strip(), positional[1:], raw)
            if rest:
                raw[positional[0].name] = rest
            return raw
        secret: Option | None = None
        if (by_its_name := _secret_named_at(body, pos, by_name)) is not None:
            secret, pos = by_its_name  # `key:sk-…`, as Discord shows the option
        elif positional and positional[0].secret and _plain(_token(body, pos), by_name):
            secret = positional[0]
        if secret is not None:
            # A secret takes the rest of the line (but a scope after it): a key pasted
            # with a space in it is refused whole, and no half of it is quoted back.
            others = [o for o in positional if o is not secret]
            rest = _peel_named(body[pos:].strip(), others, raw, bare=True)
            only = _token(rest, 0) if rest else None
            if only is not None and only[1] == len(rest):
                rest = only[0]  # one token: its quotes are not part of it
                meant = _misnamed(rest, by_name)
                if meant is not None and _accepts(by_name[meant[1]], meant[2]):
                    # `scpe:server`: a misspelt option with one of its values, no key
                    said = _misnamed_said(meant, path, command, prefix, server, platform)
                    raise CommandError(said)
            if rest:  # `key:` with nothing after it: asked for, as when left out
                raw[_once(secret, raw)] = SecretValue(rest)
            return raw
        tok = _token(body, pos)
        if tok is None:
            break
        value, pos = tok
        named = _named(value, by_name)
        if named is not None and not named[1] and (nxt := _token(body, pos)) is not None:
            named, pos = (named[0], nxt[0]), nxt[1]  # `bypass: on`, a space after the colon
        if named is None:
            named, pos = _spelled_out(value, by_name, positional, body, pos)
        if named is not None:
            opt, value = named
            if opt in positional:
                positional.remove(opt)
            raw[_once(opt, raw)] = value
            continue
        if (meant := _misnamed(value, by_name)) is not None:
            raise CommandError(_misnamed_said(meant, path, command, prefix, server, platform))
        other = _named_otherwise(raw.get(last.name), last, prefix, value) if last else None
        if other is not None:
            raise CommandError(other)  # `/source lm studio`, `/source OpenAI Compatible`
        if last is not None and _runs_on(raw.get(last.name), last, value, positional):
            raise CommandError(_one_word(str(raw[last.name]), last, value, body, pos))
        if not positional:
            line = usage(path, command, prefix, server=server, platform=platform)
            raise CommandError(
                f"Too many values: {quoted(value)} is one more than "
                f"{prefix}{' '.join(path)} takes. Usage: {line}"
            )
        index = _fitting(positional, value)
        if (skipped := _left_out(command, positional, index, value, raw)) is not None:
            opt = positional[index]
            line = usage(path, command, prefix, server=server, platform=platform)
            raise CommandError(
                f"The {opt.name} is missing before {quoted(skipped)}: one of "
                f"{', '.join(opt.shown_choices(platform))}. Usage: {line}"
            )
        last = opt = positional.pop(index)
        raw[_once(opt, raw)] = SecretValue(value) if opt.secret else value
    return raw


def _left_out(
    command: Command, positional: list[Option], index: int, value: str, raw: dict[str, Any]
) -> str | None:
    """The value typed where an optional choice was left out (`/limits tokens_per_user_day
    5`: no `set`), when `value`, no value of that choice, would go to it: the next value
    was meant for an option after it (the name's value), not for the choice. Said as the
    choice missing, not as "`5` is not a valid action"."""
    opt = positional[index]
    if opt.kind is not Kind.CHOICE or opt.required or opt.choice(value) is not None:
        return None
    later = command.options[command.options.index(opt) + 1 :]
    given = [str(raw[o.name]) for o in later if o.name in raw]
    takes = any(o.kind not in (Kind.CHOICE, Kind.SWITCH) for o in positional[index + 1 :])
    return given[0] if given and takes else None


_GROUPED = re.compile(r"[0-9]{1,3}(?: [0-9]{3})*")
_GROUP = re.compile(r"[0-9]{3}")


def _named_otherwise(typed: Any, opt: Option, prefix: str, after: str = "") -> str | None:
    """Where a source is chosen: the refusal of a name people give one by (`lmstudio`,
    `OpenAI Compatible`, `anthropic`: catalog.KNOWN_AS), saying which it is; None for
    any other value or option. `after`: the next word, for a name of two."""
    if not isinstance(typed, str) or Source.CUSTOM.value not in opt.choices:
        return None
    words = f"{typed} {after}".strip()
    found = known_as(words)
    if found is None:
        return None
    source, said = found
    where = ""
    if source is Source.CUSTOM:
        where = f" Its URL goes in {prefix}proxy set <url> (often ending in /v1)."
    return f"{quoted(words)} is not a source here: {said} the `{source.value}` source.{where}"


def _runs_on(before: Any, opt: Option, value: str, positional: list[Option]) -> bool:
    """`value` is the next word of the one-word value before it (`/model gpt 4o`,
    `/limits set … 1 000`): nothing left takes it (no option, or a choice it is not).
    Said as such, not as "`4o` is not a valid scope"."""
    if opt.kind is not Kind.STRING or not isinstance(before, str):
        return False
    return not positional or (
        positional[0].kind is Kind.CHOICE and positional[0].choice(value) is None
    )


def _one_word(before: str, opt: Option, value: str, body: str, pos: int) -> str:
    """What to say of a one-word value typed as several words."""
    words = [before, value]
    while (nxt := _token(body, pos)) is not None and ":" not in nxt[0] and "=" not in nxt[0]:
        words.append(nxt[0])
        pos = nxt[1]
    if _GROUPED.fullmatch(before) and _GROUP.fullmatch(value):  # `1 000`: a number
        return _spaced_number([before, *takewhile(_GROUP.fullmatch, words[1:])])
    return f"{quoted(' '.join(words))} has a space in it, but `{opt.name}` takes one word."


def _spaced_number(groups: list[str]) -> str:
    """What to say of a number grouped by spaces where a one-word value is asked for."""
    return (
        f"{quoted(' '.join(groups))} has a space in it: if it is one number, write it "
        f"without ({''.join(groups)}) or with commas ({','.join(groups)})."
    )


def _secret_named_at(body: str, pos: int, options: dict[str, Option]) -> tuple[Option, int] | None:
    """`key:sk-…`, `password=…` or `key: sk-…` at `pos`: a secret option written with its
    name, as Discord shows options; the option and where its value starts. (`_named`
    leaves secrets out: it splits a token, and a secret is never split or quoted back.)"""
    start = len(body) - len(body[pos:].lstrip())
    for opt in options.values():
        for sep in NAME_SEPARATORS if opt.secret else ():
            written = opt.name + sep
            if body[start : start + len(written)].lower() == written:
                return opt, start + len(written)
    return None


def _plain(tok: tuple[str, int] | None, options: dict[str, Option]) -> bool:
    """A token that is a value, not an option by name (`scope:server`, `scope server`)."""
    return tok is not None and tok[0].lower() not in options and _named(tok[0], options) is None


def _once(opt: Option, raw: dict[str, Any]) -> str:
    """`opt`'s name, unless a value was already given for it: `/model a id:b` or
    `bypass:on bypass:off` says which it means instead of the last one winning."""
    if opt.name in raw:
        raise CommandError(f"`{opt.name}` is given twice; give it once.")
    return opt.name


def _peel_named(rest: str, others: list[Option], raw: dict[str, Any], *, bare: bool = False) -> str:
    """`You are terse. scope:server`: a choice named at the end of free text is the choice's,
    not part of the text (Discord shows options that way, so people type them so); and at
    its start (`scope:server You are terse.`, the options typed first). At the end it may
    be written with a space after its colon (`scope: server`, as Discord shows it); at the
    start that reads as prose (`Scope: channel moderation only.`) and stays the text. One
    written as one word with a value the choice does not take (`scope:guild`) is the
    choice's all the same, so it is refused (`guild` is not a valid scope) rather than set
    as part of the text.

    `bare`: a choice's value alone at the end is peeled too (`sk-… server`)."""
    choices = {o.name: o for o in others if o.kind in (Kind.CHOICE, Kind.SWITCH)}
    while choices and rest:
        first, *tail = rest.split(None, 1)
        after = tail[0] if tail else ""
        named = _named(first, choices)
        if named is None or not (_accepts(named[0], named[1]) or named[1]):
            break
        raw[_once(named[0], raw)] = named[1]
        del choices[named[0].name]
        rest = after
    while choices:
        head, _, last = rest.rpartition(" ")
        named = _named(last, choices)
        if named is None and head:  # `… scope: server`
            before, _, name = head.rstrip().rpartition(" ")
            spaced = _named(name, choices)
            if spaced is not None and not spaced[1] and _accepts(spaced[0], last):
                named, head = (spaced[0], last), before
        if named is None and bare and head:
            named = next(((o, last) for o in choices.values() if _accepts(o, last)), None)
        if named is None or not (_accepts(named[0], named[1]) or named[1]):
            break
        raw[_once(named[0], raw)] = named[1]
        del choices[named[0].name]
        rest = head.rstrip()
    return rest


def _fitting(positional: list[Option], value: str) -> int:
    """Which optional choice a bare value is for: `/usage week` skips `scope`. One no
    choice names is for the choice it is a typo of or spells with look-alike letters
    (`/usage wееk`, Cyrillic е), so its refusal suggests that one."""
    first = positional[0]
    if first.kind is not Kind.CHOICE or first.required or first.choice(value) is not None:
        return 0
    choices = list(enumerate(positional))
    for i, opt in choices[1:]:
        if opt.kind is not Kind.CHOICE:
            choices = choices[:i]
            break
        if opt.choice(value) is not None:
            return i
    return next((i for i, opt in choices if _meant(opt, value) is not None), 0)


def _meant(opt: Option, word: str, platform: Platform | None = None) -> str | None:
    """The choice of `opt` that `word` is a typo of or spells with look-alike or
    fullwidth letters, in `platform`'s words (`rооm`, Cyrillic о: `channel`, on Matrix
    `room`); None: none is close."""
    if platform is None:
        return closest(Platform.canonical(looks(word)), list(opt.choices))
    close = closest(word, list(opt.shown_choices(platform)))
    if close is None and (stored := _meant(opt, word)) is not None:
        close = platform.named(stored)
    return close


def _named(token: str, options: dict[str, Option]) -> tuple[Option, str] | None:
    """`bypass:on` or `bypass=on` (Discord's way of showing options)."""
    for sep in NAME_SEPARATORS:
        key, found, value = token.partition(sep)
        if found and key.lower() in options and not options[key.lower()].secret:
            return options[key.lower()], value
    return None


# A word of letters before `:` that may be a misspelt option name: 4 letters or more
# (`kid:7b`, a model, is no misspelt `id:`).
_OPTION_NAME = re.compile("[A-Za-z_]{4,30}")
# An option name this similar (difflib) to the word before a `:` is what was meant: a
# letter dropped or swapped (`bypas`, `scpe`, `filtr`), not a model id that shares a few.
_MISNAMED_CUTOFF = 0.8


def _misnamed(token: str, options: dict[str, Option]) -> tuple[str, str, str] | None:
    """`bypas:on`, `scpe=server`: a name close to one of the command's options, then its
    value, as (the name typed, the option meant, the value). Said as a misspelt option,
    not taken for a value (`bypass` "must be on or off, not `bypas:on`"). Only a word of
    letters: a model id such as `llama3:8b` or a Matrix id `@a:b` is a value."""
    names = [name for name, o in options.items() if not o.secret]
    for sep in NAME_SEPARATORS:
        key, found, value = token.partition(sep)
        if found and _OPTION_NAME.fullmatch(key):
            # Closer than a command's typo: `sqlcoder:7b` (a model) is no `scope:`.
            meant = closest(key, names, cutoff=_MISNAMED_CUTOFF)
            return (key, meant, value) if meant is not None else None
    return None


def _misnamed_said(
    meant: tuple[str, str, str],
    path: tuple[str, ...],
    command: Command,
    prefix: str,
    server: bool,
    platform: Platform,
) -> str:
    line = usage(path, command, prefix, server=server, platform=platform)
    return (
        f"`{prefix}{' '.join(path)}` has no option {quoted(meant[0])}. Did you mean "
        f"`{meant[1]}:`? Usage: {line}"
    )


def _spelled_out(
    token: str, options: dict[str, Option], positional: list[Option], body: str, pos: int
) -> tuple[tuple[Option, str] | None, int]:
    """`bypass on` as `bypass:on`: an option's name, then its value.

    Only for switches and choices whose name cannot itself be the value expected next.
    """
    opt = options.get(token.lower())
    if opt is None or opt.secret or opt.kind not in (Kind.SWITCH, Kind.CHOICE):
        return None, pos
    if positional and _accepts(positional[0], token):
        return None, pos
    nxt = _token(body, pos)
    if nxt is None:
        return None, pos
    return (opt, nxt[0]), nxt[1]


def _accepts(opt: Option, word: str) -> bool:
    """Whether `word` is a value of switch or choice `opt` (any case)."""
    if opt.kind is Kind.SWITCH:
        return word.lower() in (*SWITCH_ON, *SWITCH_OFF, DEFAULT)
    return opt.choice(word) is not None


def coerce(
    opt: Option, value: Any, prefix: str = "/", platform: Platform = Platform.DISCORD
) -> Any:
    """Check one option's value against its declaration; raise CommandError if bad.
    `platform`: whose words a refusal uses (Platform.said)."""
    try:
        return _coerce(opt, value, prefix, platform)
    except TextError as err:
        raise CommandError(str(err)) from None


def _coerce(opt: Option, value: Any, prefix: str, platform: Platform) -> Any:
    if opt.kind is Kind.FILE and isinstance(value, Attachment):
        return value  # a front-end's file; a typed path stays text (the console opens it)
    if opt.kind is Kind.SECRET:
        text = value.reveal() if isinstance(value, SecretValue) else str(value)
        if opt.refused is not None and (said := opt.refused(text.strip(), prefix)):
            raise CommandError(said)
        cleaned = header_safe(text, opt.help.removeprefix("the "))
        if len(cleaned) > opt.max_length:
            raise CommandError(
                f"That is too long for {opt.help} ({len(cleaned):,} characters; it takes at "
                f"most {opt.max_length:,}). Nothing was saved: paste {opt.help} alone."
            )
        short = too_short(cleaned)
        if short is not None:
            raise CommandError(
                f"That is too short for {opt.help} {short} here. Nothing was saved (an "
                "endpoint that asks for none needs none set)."
            )
        return SecretValue(cleaned)
    typed = str(value)
    # Free text loses its control characters; a value that names something is refused
    # with one, not silently made to name something else. A TEXT option's value is
    # checked cleaned but handed on as typed: /params' value may be a number, which its
    # setting refuses with one (fields.Field.parse), and the settings clean what they keep.
    if opt.kind is Kind.TEXT:
        text = clean_text(typed).strip()
    else:
        text = refuse_controls(normalize_text(typed), f"`{opt.name}`").strip()
    if not text:
        raise CommandError(f"`{opt.name}` is empty.")
    if holds_key(text):  # not a secret option: it would be echoed, stored and sent on
        raise CommandError(held_secret(f"`{opt.name}` option", prefix))
    if len(text) > opt.max_length:
        raise CommandError(
            f"`{opt.name}` is too long ({len(text):,} > {opt.max_length:,} characters)."
        )
    if opt.kind is Kind.CHOICE:
        chosen = opt.choice(text)
        if chosen is None and (other := _named_otherwise(text, opt, prefix)) is not None:
            raise CommandError(other)
        if chosen is None:
            shown = list(opt.shown_choices(platform))
            meant = _meant(opt, text, platform)
            hint = f" Did you mean {quoted(meant)}?" if meant is not None else ""
            raise CommandError(
                f"{quoted(text)} is not a valid {opt.name}.{hint} "
                f"Choose one of: {', '.join(shown)}."
            )
        return chosen
    if opt.kind is Kind.SWITCH:
        switch = switch_value(text)
        if switch is not None:
            return switch
        if text.lower() == DEFAULT:  # the scope's own value goes: the next scope's applies
            return DEFAULT
        hint = suggest(text, [SWITCH_ON[0], SWITCH_OFF[0], DEFAULT])  # `оn`, Cyrillic о
        raise CommandError(
            f"`{opt.name}` must be on or off (or default), not {quoted(text)}.{hint}"
        )
    if opt.kind in (Kind.NUMBER, Kind.INTEGER):
        whole = opt.kind is Kind.INTEGER
        number = parse_whole_number(text) if whole else parse_decimal(text)
        if number is None:
            hint = decimal_hint(text, whole=whole)
            raise CommandError(f"`{opt.name}` must be a number, not {quoted(text)}.{hint}")
        if out_of_range(number, opt.min_value, opt.max_value):
            raise CommandError(f"`{opt.name}` must be {range_text(opt.min_value, opt.max_value)}.")
        return number
    if opt.kind is Kind.STRING:
        if " " in text and _GROUPED.fullmatch(text):  # `1 000` as one value (Discord, quoted)
            raise CommandError(_spaced_number(text.split(" ")))
        # A name keeps its quotes: they may be a role's own (`"Quoted"`); parse_subject
        # tries it with them, then without.
        return visible_id(text if opt.is_name else unwrapped(text), opt.name, name=opt.is_name)
    if opt.kind is Kind.TEXT:
        return normalize_text(typed).strip()
    return text
