"""Look a command up in the table, check access and options, run it, return a Reply."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from bot.commands.parse import CommandError, coerce
from bot.commands.spec import Command, CommandContext, Invocation, Kind, usage
from bot.connection import NotConnectable, provider_error_text
from bot.fields import FieldError
from bot.providers import ProviderError
from bot.store import StoreError
from bot.store.secrets import SecretUnreadable
from bot.types import Platform, Reply, failure, went_wrong
from bot.usage.access import NOT_HERE, operator_allows

log = logging.getLogger("bot.commands")


def find(table: tuple[Command, ...], path: tuple[str, ...]) -> Command | None:
    command = next((c for c in table if c.name == path[0]), None) if path else None
    for name in path[1:]:
        command = command.sub(name) if command else None
    return command if command and not command.subcommands else None


def bind(
    command: Command,
    inv: Invocation,
    prefix: str,
    *,
    secrets_later: bool = False,
    server: bool = True,
    platform: Platform = Platform.DISCORD,
) -> dict[str, Any]:
    """Validate raw option values against the table; CommandError when one is bad.

    `secrets_later`: a missing required secret is fine (the front-end asks for it next).
    `server`: whether the channel has a server (usage lines offer `scope` only then).
    `platform`: whose words refusals use (Platform.said).
    """
    known = {o.name for o in command.options}
    extra = sorted(set(inv.raw) - known)
    if extra:
        raise CommandError(
            f"Unknown option `{extra[0]}`. "
            f"Usage: {usage(inv.path, command, prefix, server=server, platform=platform)}"
        )
    args: dict[str, Any] = {}
    for opt in command.options:
        value = inv.raw.get(opt.name)
        if opt.name in inv.raw and not opt.secret and not str(value).strip():
            what = (
                "on, off or default"
                if opt.kind is Kind.SWITCH
                else ", ".join(opt.shown_choices(platform))
            )
            raise CommandError(
                f"`{opt.name}:` needs a value ({what})."
                if what
                else f"`{opt.name}:` needs a value: {opt.help_on(platform)}."
            )
        if value is None or value == "":
            if opt.required and not (opt.secret and secrets_later):
                line = usage(inv.path, command, prefix, server=server, platform=platform)
                raise CommandError(f"Missing `{opt.name}` ({opt.help_on(platform)}). Usage: {line}")
            continue
        args[opt.name] = coerce(opt, value, prefix, platform)
    return args


def check_scope(ctx: CommandContext, args: dict[str, Any]) -> None:
    """`scope:server` needs a server here and a server admin asking."""
    if args.get("scope") != "server":
        return
    if not ctx.ref.has_server:
        raise CommandError(
            "There is no server here, so nothing can be set server-wide; leave out "
            f"`scope:server` to set it for this {ctx.ref.place}."
        )
    if not ctx.is_server_admin:
        raise CommandError(
            "Only server admins can change server-wide settings; without scope:server it "
            f"changes {ctx.ref.place.whose('own value')}."
        )


def accessible(
    table: tuple[Command, ...], path: tuple[str, ...], ctx: CommandContext
) -> Command | Reply:
    """The command at `path` if it is the asker's to run here, whatever its values; else
    why not: unknown, outside the operator's allow lists, or for admins only."""
    command = find(table, path)
    if command is None or (command.handler is None and not command.control):
        return Reply(f"Unknown command. Type {ctx.prefix}help for the list.", True, ok=False)
    if not operator_allows(ctx.ref, ctx.actor, ctx.gate.operator):
        # ALLOWED_SERVERS / ALLOWED_USERS: no setting, no key and no call to the
        # operator's endpoint from outside them.
        return Reply(NOT_HERE, private=True, ok=False)
    if command.admin and not ctx.is_admin:
        return Reply(
            f"Only admins of this {ctx.ref.place} can use {ctx.prefix}{' '.join(path)} "
            f"({ctx.gate.operator.who_admins(ctx.ref)}). Ask one of them, or see "
            f"{ctx.prefix}settings for the current configuration.",
            private=True,
            ok=False,
        )
    return command


def prepare(
    table: tuple[Command, ...], inv: Invocation, ctx: CommandContext
) -> tuple[Command, dict[str, Any]] | Reply:
    """Everything that can refuse a command before it runs: name, access, values, scope.

    Front-ends call it before collecting a secret, so a refused command never swallows
    a key typed after it.
    """
    command = accessible(table, inv.path, ctx)
    if isinstance(command, Reply):
        return command
    try:
        args = bind(
            command,
            inv,
            ctx.prefix,
            secrets_later=True,
            server=ctx.ref.has_server,
            platform=ctx.ref.platform,
        )
        if command.admin:  # settings' scope; /usage's scope:server only reads
            check_scope(ctx, args)
    except CommandError as err:
        return Reply(str(err), private=True, ok=False)
    return command, args


async def execute(table: tuple[Command, ...], inv: Invocation, ctx: CommandContext) -> Reply:
    prepared = prepare(table, inv, ctx)
    if isinstance(prepared, Reply):
        return prepared
    command, _ = prepared
    if command.handler is None:  # a turn control: the core runs those (Core.run_control)
        return Reply(f"{ctx.prefix}{inv.path[0]} works in a chat.", private=True, ok=False)
    name = ctx.prefix + " ".join(inv.path)
    try:
        args = bind(command, inv, ctx.prefix, server=ctx.ref.has_server, platform=ctx.ref.platform)
        reply = await command.handler(ctx, args)
    except CommandError as err:
        return Reply(str(err), private=True, ok=False)
    except NotConnectable as err:
        return Reply(err.said_to(ctx.is_admin), private=True, ok=False)
    except (SecretUnreadable, StoreError, FieldError) as err:
        return Reply(str(err), private=True, ok=False)
    except ProviderError as err:
        who = ctx.gate.operator.who_admins(ctx.ref)
        said = provider_error_text(err, ctx.prefix, admin=ctx.is_admin, who=who, ref=ctx.ref)
        return Reply(said, private=True, ok=False)
    except Exception as err:  # a bug: said, logged by kind and place, never a traceback
        log.error("%s failed: %s", name, failure(err))
        # The console's reader is the operator, who reads the log themselves.
        own_log = "the log" if ctx.ref.platform is Platform.CONSOLE else None
        return Reply(went_wrong(err, name, log=own_log), private=True, ok=False)
    log.info("%s ran %s in %s", ctx.actor.id, name, ctx.ref)
    return replace(reply, private=command.private)
