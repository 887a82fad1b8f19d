"""How a call to Discord fails: the one list every caller catches."""

from __future__ import annotations

import asyncio

import aiohttp
import discord

# What discord.py lets through when the connection itself fails (dropped, reset, timed
# out). An answer's post or edit that hits one is lost like a failed HTTP call, never
# raised into the turn, which still stores and records what the model said.
NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)

# A call that failed either way (refused, or its connection lost): what every call the
# bot can do without (a notice, a courtesy, a lookup) catches. Caught as
# discord.HTTPException alone, a reset connection escaped the handler: a typed command
# got no answer, a character's webhook set-up lost the whole turn.
CALL_FAILED = (discord.HTTPException, *NETWORK_ERRORS)
