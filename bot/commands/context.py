"""What a command handler is given."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.table import Command
from bot.providers import ProviderHub
from bot.store import Store
from bot.types import Actor, ChannelRef


@dataclass(frozen=True, slots=True)
class CommandContext:
    store: Store
    hub: ProviderHub
    ref: ChannelRef
    actor: Actor
    is_admin: bool  # channel admin by the platform, or an operator admin
    is_server_admin: bool
    table: tuple[Command, ...]
    prefix: str = "/"
