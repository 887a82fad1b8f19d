"""What the configuration commands share: the scope asked for, where a value comes from
and which applies once a scope's own is gone, and the notes that follow a change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.commands.spec import CommandContext
from bot.fields import BY_NAME, conversation_room
from bot.types import ChannelConfig, PlaceName, Platform, Scope, params_as, typed_as


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def scope_of(args: dict[str, Any]) -> Scope:
    """The scope asked for (the router already checked that it may be used here)."""
    return Scope.SERVER if args.get("scope") == "server" else Scope.CHANNEL


def scope_place(scope: Scope, place: PlaceName, *, capital: bool = False) -> str:
    """`this server`, or `this room` / `this channel` / `this DM` (ChannelRef.place);
    `capital`: `This …`, to begin a sentence (str.capitalize would say `This dm`)."""
    this = "This" if capital else "this"
    return f"{this} server" if scope is Scope.SERVER else f"{this} {place}"


_ORIGINS = {
    "server": "server-wide",
    "operator": "operator default",
    "default": "built-in default",
}


def origin_name(origin: str, place: PlaceName) -> str:
    """Where a value comes from, as shown after it: `this room`, `server-wide` …"""
    return f"this {place}" if origin == "channel" else _ORIGINS[origin]


def origin_note(config: ChannelConfig, name: str, place: PlaceName) -> str:
    """` (server-wide)`: where a shown value comes from."""
    return f" ({origin_name(config.origins.get(name, 'default'), place)})"


# The command that sets a setting that is no parameter (a parameter's is /params <name>),
# and what it takes in place of a value.
_SET_WITH = {"source": ("source", "<source>"), "reply_mode": ("reply mode", "<mode>")}


def passed_over_notes(
    config: ChannelConfig,
    place: PlaceName,
    prefix: str,
    names: Iterable[str] | None = None,
    platform: Platform = Platform.CONSOLE,
) -> list[str]:
    """A line for each stored value today's range refuses (ChannelConfig.passed_over), of
    `names` (None: every setting): that it is not used, what applies instead, and the
    command that sets a valid one or removes it, as typed on `platform` (/params names
    its options on Discord, where they are all optional)."""
    lines = []
    for name in BY_NAME if names is None else names:
        field = BY_NAME[name]
        origin = config.origins.get(name, "default")
        value = config.value(name)
        instead = origin_name(origin, place)
        if value is not None:
            instead = f"{field.show(value)} ({instead})"
        elif origin == "default":
            instead = "the built-in default"
        command, placeholder = _SET_WITH.get(name, ("params", "<value>"))
        # /params's options are all optional: on Discord a positional value fills none.
        setting, removing = (f"{prefix}{command} {v}" for v in (placeholder, "default"))
        if command == "params":
            setting, removing = (
                typed_as((command,), (("name", name), ("value", v)), platform, prefix)
                for v in (placeholder, "default")
            )
        for where, stored in config.passed_over.get(name, ()):
            scope = " scope:server" if where == "server" else ""
            lines.append(
                f"{name} {field.shown_stored(stored)} ({origin_name(where, place)}) is not a "
                f"value it takes today ({field.takes()}), so it is not used; {instead} "
                f"applies instead. Set a valid one with {setting}"
                f"{scope}, or remove it with {removing}{scope}."
            )
    return lines


def own_value_note(
    config: ChannelConfig, scope: Scope, *names: str, remove: str = "`default`"
) -> str:
    """After a server-wide change: a note naming those of `names` this channel has a value
    of its own for, which still wins here; `remove`: what, typed here, removes it."""
    own = [n for n in names if config.origins.get(n) == "channel"]
    if scope is not Scope.SERVER or not own:
        return ""
    shown = ", ".join(f"{n} ({BY_NAME[n].show(config.value(n))})" for n in own)
    wins, removes = ("wins", "it") if len(own) == 1 else ("win", "each")
    return (
        f"\nThis channel has its own {shown}, which {wins} here; {remove} without "
        f"scope:server removes {removes}."
    )


def room_left_note(config: ChannelConfig, ctx: CommandContext) -> str:
    """A warning when the answer's length takes most of the context: the conversation,
    trimmed to what is left, would be little or none of it."""
    context_as = params_as(ctx.prefix, ctx.ref.platform, "context")
    answer = config.number("max_tokens")
    context = config.number("context")
    size, room = conversation_room(context, answer)
    if answer is None or room >= size // 4:
        return ""
    assumed = "" if context else f" (assumed: {context_as} is unset)"
    return (
        f" Note: max_tokens {answer:,} leaves {max(0, room):,} of the {size:,}-token "
        f"context{assumed} for the conversation, so the model reads little or none of what "
        f"came before. Set {context_as} to the model's context size, or lower "
        "max_tokens."
    )


def next_scope(ctx: CommandContext, scope: Scope) -> str:
    """Whose value applies once `scope`'s own is gone."""
    if scope is Scope.SERVER or not ctx.ref.has_server:
        return "operator's"
    return "server's (or operator's)"


def now_uses_next(ctx: CommandContext, scope: Scope) -> str:
    """`This room now uses the operator's`: said when `scope`'s own value is removed."""
    whose = scope_place(scope, ctx.ref.place, capital=True)
    return f"{whose} now uses the {next_scope(ctx, scope)}"
