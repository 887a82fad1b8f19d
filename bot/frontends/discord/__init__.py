"""Discord front-end on discord.py: slash commands from the command table, streamed answers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
import discord
import yarl

from bot.core import Core
from bot.frontends import FrontendError
from bot.frontends.discord.client import ChatClient
from bot.types import SecretValue

log = logging.getLogger("bot.discord")


@dataclass(frozen=True, slots=True)
class DiscordOptions:
    token: SecretValue
    shard_count: int | None = None  # None: as many as Discord recommends
    shard_ids: tuple[int, ...] = ()  # empty: every shard (needs shard_count when set)
    message_content: bool = True
    command_guilds: tuple[int, ...] = ()  # empty: global commands
    api_url: str = ""  # empty: discord.py's Route.BASE
    gateway_url: str = ""  # empty: discord.py's default gateway


def point_at(api_url: str, gateway_url: str) -> None:
    """Aim discord.py at another Discord-compatible API (a test double, a proxy)."""
    if api_url:
        discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


async def run_discord(core: Core, options: DiscordOptions) -> None:
    """Log in and serve until cancelled; FrontendError when it cannot run."""
    point_at(options.api_url, options.gateway_url)
    client = ChatClient(core, options)
    try:
        async with client:
            await client.start(options.token.reveal())
    except discord.LoginFailure:
        raise FrontendError(
            "Discord refused the bot token. Copy a fresh token from the Developer Portal "
            "(your application → Bot → Reset Token) into DISCORD_TOKEN."
        ) from None
    except discord.PrivilegedIntentsRequired:
        raise FrontendError(
            "Discord refused the Message Content intent. Turn on 'Message Content Intent' "
            "in the Developer Portal (your application → Bot → Privileged Gateway Intents), "
            "or set DISCORD_MESSAGE_CONTENT=false (the bot then only reads mentions and DMs)."
        ) from None
    except (aiohttp.ClientError, discord.GatewayNotFound, OSError) as err:
        where = options.api_url or "discord.com"
        raise FrontendError(
            f"cannot reach Discord at {where} ({type(err).__name__}). Check the network "
            "(and DISCORD_API_URL / DISCORD_GATEWAY_URL if you set them)."
        ) from None
    except discord.HTTPException as err:
        raise FrontendError(
            f"Discord answered {err.status} while logging in ({type(err).__name__}); "
            "try again later."
        ) from None
