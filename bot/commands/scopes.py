"""What the configuration commands share: the scope asked for, and where a value
comes from and which applies once a scope's own is gone."""

from __future__ import annotations

from typing import Any

from bot.commands.spec import CommandContext
from bot.fields import BY_NAME
from bot.types import ChannelConfig, Scope


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def scope_of(args: dict[str, Any]) -> Scope:
    """The scope asked for (the router already checked that it may be used here)."""
    return Scope.SERVER if args.get("scope") == "server" else Scope.CHANNEL


def scope_place(scope: Scope) -> str:
    return "this server" if scope is Scope.SERVER else "this channel"


ORIGINS = {
    "channel": "this channel",
    "server": "server-wide",
    "operator": "operator default",
    "default": "built-in default",
}


def origin_note(config: ChannelConfig, name: str) -> str:
    """` (server-wide)`: where a shown value comes from."""
    return f" ({ORIGINS[config.origins.get(name, 'default')]})"


def own_value_note(config: ChannelConfig, scope: Scope, name: str) -> str:
    """After a server-wide change: a note when this channel's own value still wins here."""
    if scope is not Scope.SERVER or config.origins.get(name) != "channel":
        return ""
    shown = BY_NAME[name].show(config.value(name))
    return (
        f"\nThis channel has its own {name} ({shown}), which wins here; "
        f"`default` without scope:server removes it."
    )


def next_scope(ctx: CommandContext, scope: Scope) -> str:
    """Whose value applies once `scope`'s own is gone."""
    if scope is Scope.SERVER or not ctx.ref.has_server:
        return "operator's"
    return "server's (or operator's)"
