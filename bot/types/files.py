"""How the bot names a file someone sent (in a prompt, and in its own messages), and how
long one message's files may take to download."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.types.secrets import holds_key, redact
from bot.types.text import literal, shorten, shown_name


def file_label(name: str) -> str:
    """A file name as a prompt names it: one line, bounded, without a right-to-left
    override or zero-width characters (`invoice\u202efdp.exe` showed as "invoiceexe.pdf")."""
    return shorten(shown_name(name), 100) or "the attachment"


def display_name(name: str) -> str:
    """A file name in the bot's own message: its label, with no markdown of its own
    (`[Log in](https://…).png` is no link in the bot's voice), and without a key pasted
    into it (the bot's refusal would have repeated it where its sender cannot delete it)."""
    label = shown_name(name)  # zero-width characters out first: `sk-…` seen whole
    if holds_key(label):
        label = redact(label, known=False)
    return literal(file_label(label))


# What one message's downloads may take together (a chat message's files, a command's
# card or preset): the conversation's next turns wait for them, and a stalled CDN or
# homeserver held it (discord.py waits 5 minutes for each file, ten files 50). The
# time an image takes to prepare between two downloads is not counted.
DOWNLOAD_SECONDS = 120.0


class Downloads:
    """One message's downloads, one after another, within DOWNLOAD_SECONDS in all."""

    def __init__(self) -> None:
        self.left = DOWNLOAD_SECONDS

    @asynccontextmanager
    async def one(self) -> AsyncIterator[None]:
        """One download, within what is left: TimeoutError once it runs out (as when the
        platform's own timeout ends it)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(max(0.0, self.left)):
                yield
        finally:
            self.left -= loop.time() - started


def too_slow(shown: str, outcome: str) -> str:
    """What a person is told of a download that ran out of time: `outcome`, what came of
    their message ("sent nothing")."""
    return f"Downloading {shown} took too long, so I stopped and {outcome}. Try again later."


class FetchFailed(Exception):
    """A front-end could not fetch an attached file, for the reason its message gives
    (a homeserver's refusal, a file failing its check): words of the bot's own, for the
    operator's log; the person who sent it is told it could not be downloaded."""
