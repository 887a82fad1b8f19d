"""A terminal chat on the same database and command table: `/…` lines are commands."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from typing import TextIO

from bot.commands.parse import CommandError
from bot.core import Core
from bot.types import Actor, ChannelRef, Incoming, Platform, SecretValue


class ConsoleSink:
    """Prints an answer as it grows; reasoning (when shown) first, marked 💭."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._answer = ""
        self._reasoning = ""

    async def typing(self) -> None:
        return None

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    async def update(self, answer: str, reasoning: str = "") -> None:
        if reasoning.startswith(self._reasoning) and len(reasoning) > len(self._reasoning):
            if not self._reasoning:
                self._write("💭 ")
            self._write(reasoning[len(self._reasoning) :])
            self._reasoning = reasoning
        if answer.startswith(self._answer) and len(answer) > len(self._answer):
            if not self._answer and self._reasoning:
                self._write("\n")
            self._write(answer[len(self._answer) :])
            self._answer = answer

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        await self.update(answer, reasoning)
        if self._answer or self._reasoning:
            self._write("\n")
        if error:
            self._write(f"⚠️ {error}\n")
        elif not self._answer and answer:
            self._write(answer + "\n")


class Console:
    def __init__(self, core: Core, channel: str, stdin: TextIO, stdout: TextIO) -> None:
        self._core = core
        self._in = stdin
        self._out = stdout
        self._ref = ChannelRef(Platform.CONSOLE, channel_id=channel)
        self._tty = stdin.isatty()
        name = os.environ.get("USER") or "you"
        # Whoever holds the terminal holds the database too: admin.
        self._actor = Actor("console", name, is_channel_admin=True, is_server_admin=True)

    async def _readline(self, prompt: str = "") -> str | None:
        if self._tty and prompt:
            self._out.write(prompt)
            self._out.flush()
        line = await asyncio.to_thread(self._in.readline)
        return line.rstrip("\n") if line else None

    async def _read_secret(self, what: str) -> str | None:
        if self._tty:
            try:
                return await asyncio.to_thread(getpass.getpass, f"{what} (not shown): ")
            except EOFError:
                return None
        return await self._readline()

    def _print(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    async def run(self) -> int:
        if self._tty:
            self._print(
                f"chatbot console, channel '{self._ref.channel_id}'. "
                "Lines starting with / are commands (/help); Ctrl-D quits."
            )
        while (line := await self._readline("> ")) is not None:
            text = line.strip()
            if not text:
                continue
            incoming = Incoming(self._ref, self._actor, text)
            if self._core.is_command(incoming):
                await self._command(text)
            else:
                await self._core.chat(incoming, ConsoleSink(self._out))
        return 0

    async def _command(self, text: str) -> None:
        try:
            inv = self._core.parse(text, Platform.CONSOLE)
        except CommandError as err:
            self._print(str(err))
            return
        command = self._core.command(inv.path)
        for opt in command.options if command else ():
            if opt.secret and opt.required and opt.name not in inv.raw:
                value = await self._read_secret(f"{opt.name.capitalize()} for {' '.join(inv.path)}")
                if value is None:
                    self._print(f"No {opt.name} given; nothing changed.")
                    return
                inv.raw[opt.name] = SecretValue(value.strip())
        reply = await self._core.run_command(self._ref, self._actor, inv)
        self._print(reply.text)


async def run_console(core: Core, channel: str) -> int:
    return await Console(core, channel, sys.stdin, sys.stdout).run()
