"""`python -m bot …` as its own process, the way an operator runs it: for e2e tests and benches."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the fakes import this module (FakeDiscord.bot_env)
    from tests.discord.fake_discord import FakeDiscord
    from tests.discord.fake_openai import FakeOpenAI, Script

STOP_SECONDS = 30.0


async def keygen() -> str:
    """A fresh BOT_SECRET_KEYS value from `chatbot keygen`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "keygen", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


def bot_env(**settings: str) -> dict[str, str]:
    """This environment without any platform settings of its own, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "MATRIX"))}
    env.update(settings)
    return env


class BotProcess:
    """`python -m bot run`, its log lines (stderr) collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, ready_marker: str) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._marker = ready_marker
        self._ready = asyncio.Event()
        assert proc.stderr is not None
        self._reader = asyncio.create_task(self._collect(proc.stderr))

    @classmethod
    async def start(
        cls, cwd: Path | str, env: dict[str, str], ready_marker: str, *, nohup: bool = False
    ) -> BotProcess:
        """`nohup`: started as `nohup` starts it, with SIGHUP ignored."""

        def hangup_ignored() -> None:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bot", "run"),
            cwd=cwd,
            env=env,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=hangup_ignored if nohup else None,
        )
        return cls(proc, ready_marker)

    async def _collect(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            if self._marker in text:
                self._ready.set()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_ready(self, seconds: float = 60.0) -> None:
        """Until a log line holds the ready marker; fails with the log if it exits first."""
        waiter = asyncio.create_task(self._ready.wait())
        exited = asyncio.create_task(self.proc.wait())
        await asyncio.wait({waiter, exited}, timeout=seconds, return_when="FIRST_COMPLETED")
        waiter.cancel()
        exited.cancel()
        if not self._ready.is_set():
            raise AssertionError(f"the bot did not get ready:\n{self.log[-3000:]}")

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """SIGTERM (or `sig`), then the exit code (a bot that hangs is killed and fails
        the caller)."""
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), STOP_SECONDS)

    async def wait_exit(self, seconds: float = 60.0) -> int:
        """For a bot expected to stop by itself (a bad setting): its exit code."""
        code = await asyncio.wait_for(self.proc.wait(), seconds)
        await self._reader
        return code

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._reader

    async def __aenter__(self) -> BotProcess:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()


@contextlib.asynccontextmanager
async def chatbot_run(
    tmp_path: Path, fake: FakeDiscord, script: Script, **settings: str
) -> AsyncIterator[tuple[BotProcess, FakeOpenAI]]:
    """`chatbot run`, ready, against `fake` and a loopback model answering by `script`."""
    from tests.discord.fake_openai import fake_openai

    await fake.start()
    try:
        async with fake_openai(script) as model:
            env = await fake.bot_env(tmp_path / "data", model.url_v1, **settings)
            bot = await BotProcess.start(tmp_path, env, ready_marker="logged in to Discord")
            try:
                await bot.wait_ready()
                yield bot, model
            finally:
                await bot.close()
    finally:
        await fake.stop()
