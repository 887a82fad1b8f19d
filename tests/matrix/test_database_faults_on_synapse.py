"""`chatbot run` on a real Synapse while its PostgreSQL server is down: the reads before a
turn (whether to answer, the room's keys) fail, and a member who spoke to the bot is told
so in the words a turn uses; a key typed in a direct chat is still taken out; the log
names the room, once a message, without a stack trace. (Discord's case:
tests/e2e/test_discord_database_faults.py.)"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from bot.frontends.matrix.events import replied_to
from tests.bot_process import BotProcess, keygen
from tests.matrix.helpers import SSEEndpoint, UserClient
from tests.matrix.test_run_process import _env
from tests.peers.postgres import PostgresDatabase
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse, pytest.mark.postgres]

KEY = "custom-key-D4t5b6a7s8e9D0wn"
TOLD = (
    "The bot cannot reach its database, so nothing was saved. Try again shortly; if it "
    "keeps happening, tell the bot's operator. Nothing was sent to the model."
)


async def test_a_question_asked_while_the_database_is_down_is_answered_with_why(
    synapse_server: SynapseServer, tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """Database-fault probe: PostgreSQL stopped, the bot invited to a group room and a
    direct chat. A mention in the group was told "The bot could not check the room's keys
    in its database", not what a turn says; a message not for the bot ended in the log as
    "handling a message failed: StoreUnavailable", naming no room. Now the group's and
    the direct chat's questions are told what a turn that cannot store its question says,
    a message not for the bot gets nothing, `/key set custom …` in the direct chat is
    taken out, and with the database back the next question is answered."""
    server = synapse_server
    bot = server.register("dbbot")
    bob = server.register("bob")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "a")
    pg = postgres_db.server
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        env = _env(tmp_path, server, bot, await keygen(), endpoint)
        env.update(DATABASE_URL=postgres_db.url, LOG_LEVEL="INFO")
        process = await BotProcess.start(tmp_path, env, ready_marker="logged in to")
        try:
            await process.wait_ready()
            pg.stop()
            group = await alice.create_room(
                [bot.user_id, bob.user_id], name="group", power={bot.user_id: 50}
            )
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(group, bot.user_id)
            await alice.wait_joined(dm, bot.user_id)
            after = time.monotonic()
            asked = await alice.send(group, f"{bot.user_id} during the outage")
            await alice.send(group, "not for the bot")
            typed = await alice.send(dm, f"/key set custom {KEY}")
            asked_dm = await alice.send(dm, "hello during the outage")

            def told(room: str) -> list[tuple[str, str]]:
                return [
                    (str(s.content.get("body")), replied_to(s.content))
                    for s in alice.messages(room, bot.user_id, after)
                ]

            await alice.wait_for(lambda: told(group) and len(told(dm)) == 2, "the notices", 150)
            assert told(group) == [(TOLD, asked)], told(group)
            assert (TOLD, asked_dm) in told(dm), told(dm)
            assert not (await alice.event_content(dm, typed)).get("content")  # redacted
            pg.start()
            after = time.monotonic()
            await alice.send(group, f"{bot.user_id} and now?")
            answer = await alice.reply_to(group, bot.user_id, after, "the answer")
            await alice.wait_for(
                lambda: alice.shown_text(answer.event.event_id) == endpoint.answer(), "its end"
            )
            code = await process.stop()
        finally:
            with contextlib.suppress(RuntimeError):  # already up again
                pg.start()
            await process.close()
            await alice.close()
    log = process.log
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    assert "handling a message failed" not in log, log[-3000:]
    assert f"could not read how to answer a message in {group}" in log, log[-3000:]
    assert KEY not in log and KEY[-8:] not in log
    assert [a.question for a in endpoint.asked if "outage" in a.question] == []
