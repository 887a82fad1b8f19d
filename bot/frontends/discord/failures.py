"""How a call to Discord fails: the one list every caller catches."""

from __future__ import annotations

import asyncio

import aiohttp
import discord

# What discord.py lets through when the connection itself fails (dropped, reset, timed
# out). An answer's post or edit that hits one is tried again like a failed HTTP call,
# then given up, never raised into the turn as it is; only an answer none of whose pages
# could be posted ends its turn (sink.NotPosted), which still stores and records it.
NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)

# A call that failed either way (refused, or its connection lost): what every call the
# bot can do without (a notice, a courtesy, a lookup) catches. Caught as
# discord.HTTPException alone, a reset connection escaped the handler: a typed command
# got no answer, a character's webhook set-up lost the whole turn.
CALL_FAILED = (discord.HTTPException, *NETWORK_ERRORS)
