"""`chatbot run` as its own process on a real Synapse: the production path, end to end.

Settings from the environment, migrations, login, auto-join, a streamed answer, a key
in a direct chat (stored, redacted, never logged), and a clean SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from bot.store import SecretBox, Store
from bot.types import ChannelConfig, ChannelRef, Platform, Source
from tests.matrix.helpers import SSEEndpoint, UserClient
from tests.peers.synapse import MatrixUser, SynapseServer

pytestmark = pytest.mark.synapse

KEY = "custom-key-M4t5r6i7x8K9e0y1"


async def _keygen() -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "keygen", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


def _env(tmp_path: Path, server: SynapseServer, bot: MatrixUser, keys: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "MATRIX"))}
    env.update(
        MATRIX_HOMESERVER=server.url,
        MATRIX_USER_ID=bot.user_id,
        MATRIX_PASSWORD=bot.password,
        DATA_DIR=str(tmp_path / "data"),
        BOT_SECRET_KEYS=keys,
        ALLOW_PRIVATE_ENDPOINTS="true",
        LOG_LEVEL="DEBUG",  # nio then logs its requests and events: still no secret
    )
    return env


async def _collect(stream: asyncio.StreamReader, lines: list[str], seen: asyncio.Event) -> None:
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        lines.append(text)
        if "logged in to" in text:
            seen.set()


async def test_chatbot_run_joins_answers_takes_a_key_and_stops_on_sigterm(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    bot = synapse_server.register("bot")
    keys = await _keygen()
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    async with SSEEndpoint(chunks=40, span=1.0) as endpoint:
        env = _env(tmp_path, synapse_server, bot, keys)
        env.update(
            DEFAULT_SOURCE="custom",
            DEFAULT_PROXY_URL=f"{endpoint.url}/v1",
            DEFAULT_MODEL=endpoint.model,
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        lines: list[str] = []
        ready = asyncio.Event()
        assert proc.stderr is not None
        reader = asyncio.create_task(_collect(proc.stderr, lines, ready))
        try:
            await asyncio.wait_for(ready.wait(), 60)
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(dm, bot.user_id)

            after = time.monotonic()
            await alice.send(dm, "Stream me something.")
            first = await alice.reply_to(dm, bot.user_id, after, "the answer")
            await alice.wait_for(
                lambda: alice.shown_text(first.event.event_id) == endpoint.answer(),
                "the final edit",
            )
            answer = await alice.command(dm, bot.user_id, f"!key set custom {KEY}")
            assert "Saved the custom key" in answer and KEY not in answer, answer
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await reader
            await alice.close()
    log = "\n".join(lines)
    assert code == 0, log[-3000:]
    assert "Traceback" not in log
    assert KEY not in log and bot.password not in log
    assert "DEBUG" in log  # debug logging really was on
    store = await Store.open(
        f"sqlite+aiosqlite:///{tmp_path / 'data' / 'chatbot.db'}",
        SecretBox.from_setting(keys),
        defaults=ChannelConfig(Source.CUSTOM),
    )
    try:
        stored = await store.resolve_secret(ChannelRef(Platform.MATRIX, dm), "custom_api_key")
    finally:
        await store.close()
    assert stored is not None and stored.reveal() == KEY
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


async def test_a_wrong_password_stops_the_bot_with_a_fix(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    bot = synapse_server.register("bot")
    env = _env(tmp_path, synapse_server, bot, await _keygen())
    env["MATRIX_PASSWORD"] = "not-" + bot.password
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = err_bytes.decode()
    assert proc.returncode == 1, err
    assert "refused the login" in err and "MATRIX_PASSWORD" in err
    assert "Traceback" not in err and bot.password not in err
