"""The command table and router shared by every front-end."""

from bot.commands import handlers
from bot.commands.table import Command, Invocation, Kind, Option, build_table

TABLE: tuple[Command, ...] = build_table(handlers)

__all__ = ["TABLE", "Command", "Invocation", "Kind", "Option"]
