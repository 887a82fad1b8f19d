"""The command table and router shared by every front-end."""

from bot.commands.spec import Command, Invocation, Kind, Option, secret_prompt, usage, walk
from bot.commands.table import TABLE

__all__ = ["TABLE", "Command", "Invocation", "Kind", "Option", "secret_prompt", "usage", "walk"]
