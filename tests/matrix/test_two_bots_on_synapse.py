"""Two bots of this kind in one room, against the real Synapse: one's answer naming the
other, or a room where both answer everything, must not start them answering each other
(it went on until someone stopped a process: ~100 answers each in 25 s)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.matrix.helpers import SSEEndpoint, UserClient, bot_answering_from
from tests.peers.synapse import SynapseServer

pytestmark = pytest.mark.synapse


async def test_two_bots_do_not_answer_each_other(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    one = synapse_server.register("botone")
    two = synapse_server.register("bottwo")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    try:
        async with (
            # Bot one's answer names bot two, as a pill-less client would.
            SSEEndpoint(chunks=1, span=0.1, text=f"{two.user_id}: what do you think?") as e1,
            SSEEndpoint(chunks=1, span=0.1, text="no idea") as e2,
            bot_answering_from(synapse_server, one, e1, tmp_path / "1"),
            bot_answering_from(synapse_server, two, e2, tmp_path / "2"),
        ):
            room = await alice.create_room([one.user_id, two.user_id])
            await alice.wait_joined(room, one.user_id)
            await alice.wait_joined(room, two.user_id)
            since = time.monotonic()
            await alice.send(room, "!reply mode always")  # both answer every message
            await alice.wait_for(
                lambda: (
                    len(alice.messages(room, two.user_id, since)) >= 1
                    and len(alice.messages(room, one.user_id, since)) >= 1
                ),
                "both bots' notices",
            )
            since = time.monotonic()
            asked = await alice.send(room, "who knows?")
            await alice.wait_for(
                lambda: (
                    len(alice.messages(room, one.user_id, since)) >= 1
                    and len(alice.messages(room, two.user_id, since)) >= 1
                ),
                "both answers",
            )
            # Each answered alice; then nothing more, however long one waits for it (each
            # decides on the other's answer at once: it arrives before the next sync).
            await asyncio.sleep(3)
            for bot in (one, two):
                answers = alice.messages(room, bot.user_id, since)
                replied = [s.content["m.relates_to"]["m.in_reply_to"]["event_id"] for s in answers]
                assert replied == [asked], (bot.user_id, replied)
            assert (e1.requests, e2.requests) == (1, 1)
    finally:
        await alice.close()
