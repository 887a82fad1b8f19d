"""Look a command up in the table, check access and options, run it, return a Reply."""

from __future__ import annotations

import logging
from typing import Any

from bot.commands.context import CommandContext
from bot.commands.parse import CommandError, coerce
from bot.commands.table import Command, Invocation, usage
from bot.connection import NotConnectable
from bot.providers import ProviderError
from bot.store.secrets import SecretUnreadable
from bot.types import Reply

log = logging.getLogger("bot.commands")


def find(table: tuple[Command, ...], path: tuple[str, ...]) -> Command | None:
    command = next((c for c in table if c.name == path[0]), None) if path else None
    for name in path[1:]:
        command = command.sub(name) if command else None
    return command if command and not command.subcommands else None


def bind(command: Command, inv: Invocation, prefix: str) -> dict[str, Any]:
    """Validate raw option values against the table; CommandError when one is bad."""
    known = {o.name for o in command.options}
    extra = sorted(set(inv.raw) - known)
    if extra:
        raise CommandError(
            f"Unknown option `{extra[0]}`. Usage: {usage(inv.path, command, prefix)}"
        )
    args: dict[str, Any] = {}
    for opt in command.options:
        value = inv.raw.get(opt.name)
        if value is None or value == "":
            if opt.required:
                raise CommandError(
                    f"Missing `{opt.name}` ({opt.help}). Usage: {usage(inv.path, command, prefix)}"
                )
            continue
        args[opt.name] = coerce(opt, value)
    return args


async def execute(table: tuple[Command, ...], inv: Invocation, ctx: CommandContext) -> Reply:
    command = find(table, inv.path)
    if command is None or command.handler is None:
        return Reply(f"Unknown command. Type {ctx.prefix}help for the list.", True, ok=False)
    name = ctx.prefix + " ".join(inv.path)
    if command.admin and not ctx.is_admin:
        return Reply(
            f"Only admins of this channel can use {name}. Ask one of them, or see "
            f"{ctx.prefix}settings for the current configuration.",
            private=True,
            ok=False,
        )
    try:
        args = bind(command, inv, ctx.prefix)
        reply = await command.handler(ctx, args)
    except CommandError as err:
        return Reply(str(err), private=True, ok=False)
    except (NotConnectable, SecretUnreadable) as err:
        return Reply(str(err), private=True, ok=False)
    except ProviderError as err:
        return Reply(err.user_message, private=True, ok=False)
    log.info("%s ran %s in %s", ctx.actor.id, name, ctx.ref)
    return Reply(reply.text, private=command.private, ok=reply.ok)
