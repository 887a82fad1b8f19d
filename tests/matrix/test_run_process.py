"""`chatbot run` as its own process on a real Synapse: the production path, end to end.

Settings from the environment, migrations, login, auto-join, a streamed answer, a key
in a direct chat (stored, redacted, never logged), and a clean SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import nio
import pytest

from bot.store import SecretBox, Store
from bot.types import ChannelConfig, ChannelRef, Platform, Source
from tests.bot_process import BotProcess, bot_env, keygen
from tests.matrix.helpers import SSEEndpoint, UserClient
from tests.peers.synapse import MatrixUser, SynapseServer

pytestmark = pytest.mark.synapse

KEY = "custom-key-M4t5r6i7x8K9e0y1"


def _env(
    tmp_path: Path,
    server: SynapseServer,
    bot: MatrixUser,
    keys: str,
    endpoint: SSEEndpoint | None = None,
) -> dict[str, str]:
    """`chatbot run`'s environment; with `endpoint`, the model every room uses."""
    model = (
        {
            "DEFAULT_SOURCE": "custom",
            "DEFAULT_PROXY_URL": f"{endpoint.url}/v1",
            "DEFAULT_MODEL": endpoint.model,
        }
        if endpoint is not None
        else {}
    )
    return bot_env(
        MATRIX_HOMESERVER=server.url,
        MATRIX_USER_ID=bot.user_id,
        MATRIX_PASSWORD=bot.password,
        DATA_DIR=str(tmp_path / "data"),
        BOT_SECRET_KEYS=keys,
        ALLOW_PRIVATE_ENDPOINTS="true",
        LOG_LEVEL="DEBUG",  # nio then logs its requests and events: still no secret
        **model,
    )


async def _stored(tmp_path: Path, keys: str) -> Store:
    """The database the bot process wrote, opened as it would open it."""
    return await Store.open(
        f"sqlite+aiosqlite:///{tmp_path / 'data' / 'chatbot.db'}",
        SecretBox.from_setting(keys),
        defaults=ChannelConfig.of(source=Source.CUSTOM),
    )


async def test_chatbot_run_joins_answers_takes_a_key_and_stops_on_sigterm(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    bot = synapse_server.register("bot")
    keys = await keygen()
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    async with SSEEndpoint(chunks=40, span=1.0) as endpoint:
        env = _env(tmp_path, synapse_server, bot, keys, endpoint)
        process = await BotProcess.start(tmp_path, env, ready_marker="logged in to")
        try:
            await process.wait_ready()
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
            code = await process.stop()
        finally:
            await process.close()
            await alice.close()
    log = process.log
    assert code == 0, log[-3000:]
    assert "Traceback" not in log
    assert KEY not in log and bot.password not in log
    assert "DEBUG" in log  # debug logging really was on
    store = await _stored(tmp_path, keys)
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
    env = _env(tmp_path, synapse_server, bot, await keygen())
    env["MATRIX_PASSWORD"] = "not-" + bot.password
    async with await BotProcess.start(tmp_path, env, ready_marker="logged in to") as process:
        code = await process.wait_exit()
    err = process.log
    assert code == 1, err
    assert "refused the login" in err and "MATRIX_PASSWORD" in err
    assert "Traceback" not in err and bot.password not in err


async def test_a_password_with_the_line_break_a_secret_file_leaves_logs_in(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """A password from a file (`kubectl create secret --from-file`, `echo pw > file`) or a
    CRLF env file ends in a line break: the homeserver refused the login, and the
    MATRIX_PASSWORD the operator checked looked right."""
    bot = synapse_server.register("bot")
    env = _env(tmp_path, synapse_server, bot, await keygen())
    env["MATRIX_PASSWORD"] = bot.password + "\r\n"
    async with await BotProcess.start(tmp_path, env, ready_marker="logged in to") as process:
        await process.wait_ready()
        code = await process.stop()
    assert code == 0, process.log[-3000:]
    assert "Traceback" not in process.log and bot.password not in process.log


async def test_what_was_sent_while_the_bot_restarted_is_handled_at_its_start(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Restarts probe: `!key set …` sent in a group room while the bot was stopped stayed
    there for everyone to read, and one sent in a direct chat was neither saved nor said:
    the first sync after a start was passed over whole. What came in the minute before
    the start is handled as if it came after (decide.CLOCK_SLACK_MS); an older key is
    taken out of its room (test_decide)."""
    bot = synapse_server.register("bot")
    bob = synapse_server.register("bob")
    keys = await keygen()
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    endpoint = await SSEEndpoint(chunks=2, span=0.1).__aenter__()
    env = _env(tmp_path, synapse_server, bot, keys, endpoint)
    try:
        process = await BotProcess.start(tmp_path, env, ready_marker="logged in to")
        try:
            await process.wait_ready()
            dm = await alice.create_room([bot.user_id], direct=True)
            # A room of three, where the bot may remove messages (a moderator).
            group = await alice.create_room(
                [bot.user_id, bob.user_id], name="group", power={bot.user_id: 50}
            )
            await alice.wait_joined(dm, bot.user_id)
            await alice.wait_joined(group, bot.user_id)
            after = time.monotonic()
            asked = await alice.send(dm, "Something to forget.")
            answer = await alice.reply_to(dm, bot.user_id, after, "the answer")
            await alice.wait_for(
                lambda: alice.shown_text(answer.event.event_id) == endpoint.answer(), "its end"
            )
            assert await process.stop() == 0
        finally:
            await process.close()
        # While it is stopped: a question deleted, keys sent.
        removed = await alice.client.room_redact(dm, asked)
        assert isinstance(removed, nio.RoomRedactResponse), removed
        in_group = await alice.send(group, f"!key set custom {KEY}")
        in_dm = await alice.send(dm, f"!key set custom {KEY}")
        after = time.monotonic()
        process = await BotProcess.start(tmp_path, env, ready_marker="logged in to")
        try:
            await process.wait_ready()
            for room in (group, dm):
                await alice.wait_for(
                    lambda room=room: alice.messages(room, bot.user_id, after), "the notice"
                )
            (said,) = [s.content["body"] for s in alice.messages(group, bot.user_id, after)]
            assert "only take keys and passwords in a direct chat" in said, said
            assert "I deleted your message" in said and KEY not in said
            assert not (await alice.event_content(group, in_group)).get("content")  # redacted
            (said_dm,) = [s.content["body"] for s in alice.messages(dm, bot.user_id, after)]
            assert "Saved the custom key" in said_dm and KEY not in said_dm
            assert not (await alice.event_content(dm, in_dm)).get("content")
            assert await process.stop() == 0
        finally:
            await process.close()
    finally:
        await alice.close()
        await endpoint.__aexit__(None, None, None)
    assert KEY not in process.log and "Traceback" not in process.log
    store = await _stored(tmp_path, keys)
    try:
        stored = await store.resolve_secret(ChannelRef(Platform.MATRIX, dm), "custom_api_key")
        assert stored is not None and stored.reveal() == KEY
        assert (
            await store.resolve_secret(ChannelRef(Platform.MATRIX, group), "custom_api_key") is None
        )
        # The question deleted while the bot was stopped is forgotten, its answer with it.
        assert await store.history(ChannelRef(Platform.MATRIX, dm), 50) == []
    finally:
        await store.close()


async def test_a_question_waiting_its_turn_at_a_sigterm_is_told_not_asked(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Restarts probe: a question sent while an answer was written was dropped without a
    word when a SIGTERM stopped that answer."""
    bot = synapse_server.register("bot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    async with SSEEndpoint(chunks=60, span=12.0) as endpoint:
        env = _env(tmp_path, synapse_server, bot, await keygen(), endpoint)
        process = await BotProcess.start(tmp_path, env, ready_marker="logged in to")
        try:
            await process.wait_ready()
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(dm, bot.user_id)
            after = time.monotonic()
            await alice.send(dm, "A long answer, please.")
            await alice.reply_to(dm, bot.user_id, after, "the answer's first text")
            await alice.send(dm, "And a second question.")
            await asyncio.sleep(3)  # the bot's sync brings it (it waits for the first answer)
            code = await process.stop()
        finally:
            await process.close()

        def said() -> list[str]:
            return [str(s.content["body"]) for s in alice.messages(dm, bot.user_id, after)]

        try:
            notice = "Not answered: the bot is shutting down. Ask again once it is back."
            await alice.wait_for(lambda: notice in said(), "the waiting question's notice")
            assert len(endpoint.asked) == 1
        finally:
            await alice.close()
    assert code == 0 and "Traceback" not in process.log, process.log[-3000:]


async def test_a_question_a_killed_process_left_waiting_is_told_after_the_restart(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """Restarts probe: a killed process (`kill -9`, out of memory) lost the question
    waiting for the answer it was writing, without a word. The process started after it
    replies to it: not answered, ask again."""
    bot = synapse_server.register("bot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    db = tmp_path / "data" / "chatbot.db"
    async with SSEEndpoint(chunks=60, span=12.0) as endpoint:
        env = _env(tmp_path, synapse_server, bot, await keygen(), endpoint)
        process = await BotProcess.start(tmp_path, env, ready_marker="logged in to")
        try:
            await process.wait_ready()
            dm = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(dm, bot.user_id)
            after = time.monotonic()
            await alice.send(dm, "A long answer, please.")
            await alice.reply_to(dm, bot.user_id, after, "the answer's first text")
            waiting = await alice.send(dm, "And a second question.")
            await alice.wait_for(lambda: _waiting_rows(db) == 1, "the waiting question's record")
            process.proc.kill()
            await process.proc.wait()
        finally:
            await process.close()
        try:
            content, process, code = await _told_after_restart(
                tmp_path,
                env,
                alice,
                (dm, bot.user_id, after),
                lambda body: body.endswith(UNANSWERED),
            )
        finally:
            await alice.close()
    relation = content["m.relates_to"]
    assert isinstance(relation, dict)
    assert relation["m.in_reply_to"] == {"event_id": waiting}
    assert content["msgtype"] == "m.notice"
    assert len(endpoint.asked) == 1  # the waiting question was asked by neither process
    assert _waiting_rows(db) == 0
    assert code == 0 and "Traceback" not in process.log, process.log[-3000:]


# What the process after a killed one replies to a question that one left waiting.
UNANSWERED = "Not answered: the bot stopped before it got to this question. Ask again."


async def _told_after_restart(
    tmp_path: Path,
    env: dict[str, str],
    alice: UserClient,
    where: tuple[str, str, float],
    says: Callable[[str], bool],
) -> tuple[dict[str, object], BotProcess, int]:
    """The process started after a killed one: the content of its one message in the
    room (`where`: the room, the bot, since when) whose body `says` takes for the notice
    that the waiting question went unanswered; the process; its exit code after a
    SIGTERM."""
    room_id, bot_id, after = where
    process = await BotProcess.start(tmp_path, env, ready_marker="logged in to")
    try:
        await process.wait_ready()

        def told() -> list[dict[str, object]]:
            return [
                s.event.source["content"]
                for s in alice.messages(room_id, bot_id, after)
                if says(str(s.event.source["content"].get("body", "")))
            ]

        [content] = await alice.wait_for(told, "the waiting question's notice")
        # Its record goes once the notice is sent (Core.told); a stop between the two
        # leaves it to the next process, by design (said twice, never lost).
        db = Path(env["DATA_DIR"]) / "chatbot.db"
        await alice.wait_for(lambda: _waiting_rows(db) == 0, "the notice's record gone")
        return content, process, await process.stop()
    finally:
        await process.close()


def _waiting_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM waiting_turns").fetchone()[0])


async def test_a_question_waiting_behind_a_command_is_told_after_a_kill(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """A question sent while a command ran in its room (a model list being fetched) waited
    unrecorded: a killed process lost it without a word, where Discord's next process
    says it went unanswered."""
    bot = synapse_server.register("bot")
    alice = await UserClient.start(synapse_server, synapse_server.register("alice"), tmp_path / "a")
    db = tmp_path / "data" / "chatbot.db"
    held = asyncio.Event()
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        endpoint.models_held = held
        try:
            env = _env(tmp_path, synapse_server, bot, await keygen(), endpoint)
            process = await BotProcess.start(tmp_path, env, ready_marker="logged in to")
            try:
                await process.wait_ready()
                dm = await alice.create_room([bot.user_id], direct=True)
                await alice.wait_joined(dm, bot.user_id)
                after = time.monotonic()
                await alice.send(dm, "!models external")
                await alice.wait_for(lambda: endpoint.models_auth, "the command's model list")
                waiting = await alice.send(dm, "A question behind the command.")
                await alice.wait_for(lambda: _waiting_rows(db) == 1, "the question's record")
                process.proc.kill()
                await process.proc.wait()
            finally:
                await process.close()
                held.set()
            content, process, code = await _told_after_restart(
                tmp_path, env, alice, (dm, bot.user_id, after), lambda body: body == UNANSWERED
            )
        finally:
            held.set()
            await alice.close()
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": waiting}}
    assert endpoint.asked == []  # asked by neither process
    assert _waiting_rows(db) == 0
    assert code == 0 and "Traceback" not in process.log, process.log[-3000:]
