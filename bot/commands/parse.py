"""Text commands (`/model x`, `!proxy set "url"`) → Invocation. Pure functions."""

from __future__ import annotations

import difflib
from typing import Any

from bot.commands.table import Command, Invocation, Kind, Option, usage, walk
from bot.types import SecretValue


class CommandError(ValueError):
    """Bad command input; the message is shown to the person who typed it."""


def _token(text: str, pos: int) -> tuple[str, int] | None:
    """Next whitespace-separated token from `pos`, honouring "…" and '…' quoting."""
    n = len(text)
    while pos < n and text[pos].isspace():
        pos += 1
    if pos >= n:
        return None
    out: list[str] = []
    quote: str | None = None
    while pos < n:
        c = text[pos]
        if quote:
            if c == "\\" and pos + 1 < n and text[pos + 1] in (quote, "\\"):
                out.append(text[pos + 1])
                pos += 2
                continue
            if c == quote:
                quote = None
            else:
                out.append(c)
        elif c in "\"'":
            quote = c
        elif c.isspace():
            break
        else:
            out.append(c)
        pos += 1
    if quote:
        raise CommandError("A quote is not closed. Close it or remove it.")
    return "".join(out), pos


def suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word.lower(), candidates, n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def parse(text: str, table: tuple[Command, ...], prefix: str = "/") -> Invocation:
    """Parse one command line (with or without its prefix) by the table."""
    body = text.strip()
    if body.startswith(prefix):
        body = body[len(prefix) :]
    first = _token(body, 0)
    if first is None:
        raise CommandError(f"Empty command. Type {prefix}help for the list.")
    name, pos = first[0].lower(), first[1]
    command = next((c for c in table if c.name == name), None)
    if command is None:
        names = [c.name for c in table]
        raise CommandError(
            f"Unknown command `{prefix}{name}`.{suggest(name, names)} "
            f"Type {prefix}help for the list."
        )
    path: tuple[str, ...] = (command.name,)
    if command.subcommands:
        nxt = _token(body, pos)
        subs = [s.name for s in command.subcommands]
        if nxt is None:
            raise CommandError(
                f"`{prefix}{name}` needs one of: {', '.join(subs)}. "
                f"Example: {usage((name, subs[0]), command.subcommands[0], prefix)}"
            )
        sub = command.sub(nxt[0].lower())
        if sub is None:
            raise CommandError(
                f"`{prefix}{name}` has no `{nxt[0]}`.{suggest(nxt[0], subs)} "
                f"Choose one of: {', '.join(subs)}."
            )
        command, path, pos = sub, (*path, sub.name), nxt[1]
    return Invocation(path, _options(body, pos, command, path, prefix))


def _options(
    body: str, pos: int, command: Command, path: tuple[str, ...], prefix: str
) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    positional = list(command.options)
    by_name = {o.name: o for o in command.options}
    while positional or pos < len(body):
        if positional and positional[0].kind is Kind.TEXT:
            rest = body[pos:].strip()
            if rest:
                raw[positional[0].name] = rest
            return raw
        tok = _token(body, pos)
        if tok is None:
            break
        value, pos = tok
        named = _named(value, by_name)
        if named is not None:
            opt, value = named
            if opt in positional:
                positional.remove(opt)
            raw[opt.name] = value
            continue
        if not positional:
            raise CommandError(
                f"Too many values: `{value}` is not expected. Usage: {usage(path, command, prefix)}"
            )
        opt = positional.pop(0)
        raw[opt.name] = SecretValue(value) if opt.secret else value
    return raw


def _named(token: str, options: dict[str, Option]) -> tuple[Option, str] | None:
    """`bypass:on` or `bypass=on` (Discord's way of showing options)."""
    for sep in (":", "="):
        key, found, value = token.partition(sep)
        if found and key.lower() in options and not options[key.lower()].secret:
            return options[key.lower()], value
    return None


def all_paths(table: tuple[Command, ...]) -> list[str]:
    return [" ".join(path) for path, _ in walk(table)]


def coerce(opt: Option, value: Any) -> Any:
    """Check one option's value against its declaration; raise CommandError if bad."""
    if opt.kind is Kind.SECRET:
        text = value.reveal() if isinstance(value, SecretValue) else str(value)
        text = text.strip()
        if not text:
            raise CommandError(f"The {opt.name} is empty.")
        if len(text) > opt.max_length or any(c.isspace() for c in text):
            raise CommandError(f"That does not look like a {opt.name} (too long or has spaces).")
        return SecretValue(text)
    text = str(value).strip()
    if not text:
        raise CommandError(f"`{opt.name}` is empty.")
    if len(text) > opt.max_length:
        raise CommandError(f"`{opt.name}` is too long ({len(text)} > {opt.max_length} characters).")
    if opt.kind is Kind.CHOICE:
        lowered = text.lower()
        if lowered not in opt.choices:
            raise CommandError(
                f"`{text}` is not a valid {opt.name}.{suggest(lowered, list(opt.choices))} "
                f"Choose one of: {', '.join(opt.choices)}."
            )
        return lowered
    if opt.kind is Kind.SWITCH:
        lowered = text.lower()
        if lowered in ("on", "true", "yes", "1"):
            return True
        if lowered in ("off", "false", "no", "0"):
            return False
        raise CommandError(f"`{opt.name}` must be on or off, not `{text}`.")
    if opt.kind in (Kind.NUMBER, Kind.INTEGER):
        try:
            number: float = int(text) if opt.kind is Kind.INTEGER else float(text)
        except ValueError:
            raise CommandError(f"`{opt.name}` must be a number, not `{text}`.") from None
        if opt.min_value is not None and number < opt.min_value:
            raise CommandError(f"`{opt.name}` must be at least {opt.min_value:g}.")
        if opt.max_value is not None and number > opt.max_value:
            raise CommandError(f"`{opt.name}` must be at most {opt.max_value:g}.")
        return number
    return text
