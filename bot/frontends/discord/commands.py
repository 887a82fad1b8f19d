"""Slash commands built from the shared command table, checked against Discord's limits."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any, Optional, cast

import discord
from discord import app_commands

from bot.commands import Command
from bot.commands.spec import SWITCH_WORDS, Kind, Option
from bot.types import Platform

# Discord's limits for application commands.
MAX_TOP_LEVEL = 100
MAX_OPTIONS = 25
MAX_CHOICES = 25
MAX_DESCRIPTION = 100
MAX_CHOICE_VALUE = 100
MAX_STRING_OPTION = 6000  # a string option's max_length may not exceed this
_NAME = re.compile(r"^[-_\w]{1,32}$")

SWITCH_CHOICES = SWITCH_WORDS
ADMIN_PERMISSIONS = discord.Permissions(manage_guild=True)

# (interaction, table path, option values as Discord delivered them)
Invoke = Callable[[discord.Interaction, tuple[str, ...], dict[str, Any]], Awaitable[None]]
# (interaction, table path, option name, text typed so far)
Complete = Callable[
    [discord.Interaction, tuple[str, ...], str, str], Awaitable[list[app_commands.Choice[str]]]
]


def table_problems(table: tuple[Command, ...]) -> list[str]:
    """Everything in the table that Discord would refuse; empty when it fits."""
    problems: list[str] = []
    if len(table) > MAX_TOP_LEVEL:
        problems.append(f"{len(table)} top-level commands (Discord allows {MAX_TOP_LEVEL})")
    for command in table:
        problems += _command_problems(command, f"/{command.name}")
        if len(command.subcommands) > MAX_OPTIONS:
            problems.append(f"/{command.name} has more than {MAX_OPTIONS} subcommands")
        for sub in command.subcommands:
            problems += _command_problems(sub, f"/{command.name} {sub.name}")
            if sub.subcommands:
                problems.append(f"/{command.name} {sub.name} nests deeper than Discord's groups")
    return problems


def _command_problems(command: Command, where: str) -> list[str]:
    problems = _name_problems(command.name, where)
    if not 1 <= len(command.help_on(Platform.DISCORD)) <= MAX_DESCRIPTION:
        problems.append(f"{where}: description must be 1–{MAX_DESCRIPTION} characters")
    if len(command.options) > MAX_OPTIONS:
        problems.append(f"{where}: more than {MAX_OPTIONS} options")
    for opt in command.options:
        at = f"{where} option {opt.name}"
        problems += _name_problems(opt.name, at)
        if not 1 <= len(opt.help_on(Platform.DISCORD)) <= MAX_DESCRIPTION:
            problems.append(f"{at}: description must be 1–{MAX_DESCRIPTION} characters")
        if len(opt.choices) > MAX_CHOICES:
            problems.append(f"{at}: more than {MAX_CHOICES} choices")
        if any(not 1 <= len(c) <= MAX_CHOICE_VALUE for c in opt.choices):
            problems.append(f"{at}: a choice is longer than {MAX_CHOICE_VALUE} characters")
        if opt.autocomplete and opt.kind not in (Kind.STRING, Kind.TEXT):
            problems.append(f"{at}: autocomplete needs a text option")
    return problems


def _name_problems(name: str, where: str) -> list[str]:
    if name != name.lower() or not _NAME.match(name):
        return [f"{where}: name must be 1–32 lowercase letters, digits, - or _"]
    return []


def default_permissions(command: Command) -> discord.Permissions | None:
    """Config commands start hidden from members without Manage Server (servers may change it)."""
    leaves = command.subcommands or (command,)
    return ADMIN_PERMISSIONS if all(c.admin for c in leaves) else None


def secret_options(command: Command) -> tuple[Option, ...]:
    """Options collected by a modal instead of a slash option: the required secrets.

    An optional secret (`/proxy set`'s password) is left out, so the command answers at
    once; the table offers a command of its own for it (`/proxy password`).
    """
    return tuple(o for o in command.options if o.secret and o.required)


def _annotation(opt: Option) -> Any:
    """The Python type discord.py turns into the option's type (and its range)."""
    rng = cast(Any, app_commands.Range)
    if opt.kind in (Kind.NUMBER, Kind.INTEGER):
        base: type = float if opt.kind is Kind.NUMBER else int
        if opt.min_value is None and opt.max_value is None:
            return base
        lo = None if opt.min_value is None else base(opt.min_value)
        hi = None if opt.max_value is None else base(opt.max_value)
        return rng[base, lo, hi]
    if opt.kind in (Kind.CHOICE, Kind.SWITCH):
        return str
    if opt.kind is Kind.FILE:
        return discord.Attachment  # option type 11
    return rng[str, 1, min(opt.max_length, MAX_STRING_OPTION)]


def _callback(path: tuple[str, ...], command: Command, invoke: Invoke, complete: Complete) -> Any:
    """A callback whose signature declares the table's options for discord.py to read."""

    async def callback(interaction: discord.Interaction, **values: Any) -> None:
        await invoke(interaction, path, values)

    params = [
        inspect.Parameter(
            "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction
        )
    ]
    descriptions: dict[str, str] = {}
    choices: dict[str, list[app_commands.Choice[str]]] = {}
    completers: dict[str, Any] = {}
    for opt in command.options:
        if opt.secret:
            continue
        annotation = _annotation(opt)
        params.append(
            inspect.Parameter(
                opt.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=annotation if opt.required else Optional[annotation],  # noqa: UP045
                default=inspect.Parameter.empty if opt.required else None,
            )
        )
        descriptions[opt.name] = opt.help_on(Platform.DISCORD)
        values = SWITCH_CHOICES if opt.kind is Kind.SWITCH else opt.shown_choices(Platform.DISCORD)
        if values:
            choices[opt.name] = [app_commands.Choice(name=v, value=v) for v in values]
        if opt.autocomplete:
            completers[opt.name] = _completer(path, opt.name, complete)
    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__qualname__ = callback.__name__ = "_".join(path)
    decorated: Any = callback
    if descriptions:
        decorated = app_commands.describe(**descriptions)(decorated)
    if choices:
        decorated = app_commands.choices(**choices)(decorated)
    if completers:
        decorated = app_commands.autocomplete(**completers)(decorated)
    return decorated


def _completer(path: tuple[str, ...], option: str, complete: Complete) -> Any:
    async def completer(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await complete(interaction, path, option, current)

    return completer


def build_commands(
    table: tuple[Command, ...], invoke: Invoke, complete: Complete
) -> list[app_commands.Command[Any, ..., None] | app_commands.Group]:
    """One slash command or group per top-level table entry, in table order."""
    built: list[app_commands.Command[Any, ..., None] | app_commands.Group] = []
    for command in table:
        perms = default_permissions(command)
        if not command.subcommands:
            cmd: app_commands.Command[Any, ..., None] = app_commands.Command(
                name=command.name,
                description=command.help_on(Platform.DISCORD),
                callback=_callback((command.name,), command, invoke, complete),
            )
            cmd.default_permissions = perms
            built.append(cmd)
            continue
        group = app_commands.Group(
            name=command.name,
            description=command.help_on(Platform.DISCORD),
            default_permissions=perms,
        )
        for sub in command.subcommands:
            group.add_command(
                app_commands.Command(
                    name=sub.name,
                    description=sub.help_on(Platform.DISCORD),
                    callback=_callback((command.name, sub.name), sub, invoke, complete),
                )
            )
        built.append(group)
    return built
