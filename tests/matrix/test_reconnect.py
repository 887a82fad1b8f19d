"""The homeserver goes away and comes back: the bot keeps syncing and answers again."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from pathlib import Path

import pytest

from tests.matrix.helpers import UserClient, bot_options, make_core, running_bot
from tests.peers._common import peer_missing
from tests.peers.synapse import launch_synapse, relaunch_synapse, synapse_installed

pytestmark = pytest.mark.synapse


async def test_sync_errors_are_retried_until_the_homeserver_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not synapse_installed():
        peer_missing("Synapse", "run scripts/install-peers.sh")
    caplog.set_level(logging.INFO, logger="bot.frontends.matrix")
    workdir = tmp_path / "synapse"
    workdir.mkdir()
    # A homeserver of its own: this test stops it.
    server, proc = await asyncio.to_thread(launch_synapse, workdir)
    port = urllib.parse.urlsplit(server.url).port
    assert port is not None
    bot = server.register("bot")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "a")
    core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    try:
        async with running_bot(core, bot_options(server, bot, tmp_path / "store")) as task:
            room_id = await alice.create_room([bot.user_id])
            await alice.wait_joined(room_id, bot.user_id)
            assert "Source:" in await alice.command(room_id, bot.user_id, "!settings")

            await asyncio.to_thread(proc.stop)
            while "sync failed" not in caplog.text:
                assert not task.done(), "the bot gave up while the homeserver was away"
                await asyncio.sleep(0.2)
            proc = await asyncio.to_thread(relaunch_synapse, workdir, port, "synapse-2.log")

            assert "Source:" in await alice.command(room_id, bot.user_id, "!settings")
            assert not task.done()
    finally:
        await alice.close()
        await core.close()
        await asyncio.to_thread(proc.stop)
