"""`chatbot run` on Discord while its database fails under a streamed answer.

Failure-injection probe: the bot's PostgreSQL connections ended again and again, the
PostgreSQL server stopped and started again, the SQLite disk full. What was shown is
stored, or the asker is told it was not; the next turn works; a stop signal while the
database is down still ends the process by itself; the log says an outage once. (The
console's lock and full-disk cases are in test_hostile_console.py, a killed or stopped
process on Discord in test_discord_run.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.bot_process import BotProcess, chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai
from tests.peers.postgres import PostgresDatabase
from tests.relay import Relay

TOKEN = "loopback.bot.token-0123456789"
READY = "logged in to Discord"
WORDS = [f"w{i} " for i in range(50)]  # about 5 s at 0.1 s a word
ANSWER = "".join(WORDS)


def _ended(fake: FakeDiscord) -> list[str]:
    """The bot's messages whose final edit landed (their ⏹ replaced by the buttons)."""
    return [
        str(m["content"])
        for m in fake.messages.values()
        if m["author"]["id"] == str(fake.bot_id) and "cc:stop:" not in repr(m.get("components"))
    ]


async def _pg_rows(url: str) -> list[tuple[Any, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT role, content, state, error FROM messages ORDER BY id")
            )
            return [tuple(row) for row in found.all()]
    finally:
        await engine.dispose()


def _sqlite_rows(db: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return list(conn.execute("SELECT role, content, state, error FROM messages ORDER BY id"))


async def _asked_and_saved(fake: FakeDiscord, rows: Any) -> None:
    """A mention asks for the long answer; back once its first save is in the database."""
    await fake.user_says(f"<@{fake.bot_id}> count for me")
    path = f"/channels/{fake.channel_id}/messages"
    await fake.wait_until(lambda: bool(fake.bot_calls("POST", path)), 60)
    async with asyncio.timeout(30):  # its first save (every 2 s)
        while len(await rows()) < 2:  # noqa: ASYNC110 (another process writes it)
            await asyncio.sleep(0.2)


async def _next_turn(fake: FakeDiscord, model: FakeOpenAI, bot: BotProcess) -> int:
    """One more question, answered "ok"; then SIGTERM: the exit code."""
    model.script.chunks, model.script.interval = ["ok"], 0.0
    await fake.user_says(f"<@{fake.bot_id}> next")
    await fake.wait_until(lambda: any(s.endswith("ok") for s in _ended(fake)), 60)
    return await bot.stop()


def _asked_last(model: FakeOpenAI) -> list[Any]:
    sent = model.requests[-1]["messages"]
    assert isinstance(sent, list)
    return sent


@pytest.mark.postgres
async def test_connections_ended_again_and_again_lose_no_answer(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """Every connection of the bot's to PostgreSQL ended every 20 ms (what a failover, a
    pooler or an idle-killer does) while two questions are asked and answered: each
    answer is shown whole, stored whole, and the next turn sends the whole history."""
    fake = FakeDiscord(TOKEN)
    url = postgres_db.url
    admin = create_async_engine(postgres_db.server.url("postgres"))
    calm = asyncio.Event()
    ended = 0

    async def storm() -> None:
        nonlocal ended
        async with admin.connect() as conn:
            while not calm.is_set():
                count = await conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid != pg_backend_pid()"
                    ),
                    {"name": postgres_db.name},
                )
                ended += int(count.scalar() or 0)
                await asyncio.sleep(0.02)

    script = Script(chunks=WORDS, interval=0.1)
    try:
        async with chatbot_run(tmp_path, fake, script, DATABASE_URL=url) as (bot, model):
            storming = asyncio.create_task(storm())
            try:
                for asked in range(2):
                    await fake.user_says(f"<@{fake.bot_id}> q{asked}")
                    await fake.wait_until(lambda n=asked: len(_ended(fake)) == n + 1, 120)
            finally:
                calm.set()
                await storming
            code = await _next_turn(fake, model, bot)
    finally:
        await admin.dispose()
    assert code == 0, bot.log[-3000:]
    assert ended > 10  # the bot's connections really were ended, many times
    assert "Traceback" not in bot.log and "ERROR" not in bot.log, bot.log[-3000:]
    assert _ended(fake) == [ANSWER.strip(), ANSWER.strip(), "ok"]
    assert await _pg_rows(url) == [
        ("user", "q0", "done", None),
        ("assistant", ANSWER, "done", None),
        ("user", "q1", "done", None),
        ("assistant", ANSWER, "done", None),
        ("user", "next", "done", None),
        ("assistant", "ok", "done", None),
    ]
    assert [m["content"] for m in _asked_last(model)] == ["q0", ANSWER, "q1", ANSWER, "next"]


@pytest.mark.postgres
async def test_a_database_stopped_mid_answer_and_started_again_loses_nothing(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """PostgreSQL stopped (`pg_ctl stop -m fast`) while an answer streams, for longer
    than a save tries again (20 s), then started again: the answer streams on, ends
    once the database takes it (stored whole, not the part saved before the stop), and
    the next turn sends it."""
    fake = FakeDiscord(TOKEN)
    url = postgres_db.url
    server = postgres_db.server
    script = Script(chunks=WORDS, interval=0.1)
    try:
        async with chatbot_run(tmp_path, fake, script, DATABASE_URL=url) as (bot, model):
            await _asked_and_saved(fake, lambda: _pg_rows(url))
            server.stop()
            await asyncio.sleep(25)
            assert not _ended(fake)  # not ended as stored while it is not
            server.start()
            await fake.wait_until(lambda: bool(_ended(fake)), 60)
            code = await _next_turn(fake, model, bot)
    finally:
        with contextlib.suppress(RuntimeError):  # already up again
            server.start()
    assert code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log and "ERROR" not in bot.log, bot.log[-3000:]
    assert _ended(fake) == [ANSWER.strip(), "ok"]
    assert [r[:3] for r in await _pg_rows(url)] == [
        ("user", "count for me", "done"),
        ("assistant", ANSWER, "done"),
        ("user", "next", "done"),
        ("assistant", "ok", "done"),
    ]
    assert [m["content"] for m in _asked_last(model)] == ["count for me", ANSWER, "next"]


async def test_a_disk_full_mid_answer_is_said_and_the_next_turn_goes_on(tmp_path: Path) -> None:
    """The SQLite disk fills (RLIMIT_FSIZE of the running process, which Python's
    ignoring SIGXFSZ turns into a failed write) after an answer's first save: the answer
    is shown whole, with a line saying it could not be saved and will not be part of the
    history. With room again, the next turn works and the model is not sent the part
    saved before the disk filled (the two questions go as one turn)."""
    fake = FakeDiscord(TOKEN)
    db = tmp_path / "data" / "chatbot.db"

    async def rows() -> list[tuple[Any, ...]]:
        return _sqlite_rows(db)

    async with chatbot_run(tmp_path, fake, Script(chunks=WORDS, interval=0.1)) as (bot, model):
        await _asked_and_saved(fake, rows)
        pid = bot.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, hard))  # no byte more
        try:
            await fake.wait_until(lambda: bool(_ended(fake)), 60)
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))  # room again
        code = await _next_turn(fake, model, bot)
    assert code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log and "ERROR" not in bot.log, bot.log[-3000:]
    [shown, ok] = _ended(fake)
    assert ok == "ok"
    assert shown.startswith(ANSWER + "\n\n⚠️ This answer could not be saved (The bot's database "), (
        shown
    )
    assert "out of disk space" in shown and "It will not be part of the history" in shown
    assert _sqlite_rows(db) == [
        ("user", "count for me", "done", None),
        ("user", "next", "done", None),
        ("assistant", "ok", "done", None),
    ]
    assert _asked_last(model) == [{"role": "user", "content": "count for me\n\nnext"}]


@pytest.mark.postgres
async def test_a_stop_signal_while_the_database_is_down_still_ends_the_answer_shown(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """A stop signal while PostgreSQL was down mid-answer: storing the end tried again
    for 20 s (the save under way, then the end's own), past the shutdown's 10 s, so the
    process went away with the answer still showing ⏹ and no word of the stop or of
    what was not saved. The end is given until the shutdown's time runs short; then the
    answer ends as stopped, saying it could not be saved and that the part saved before
    is kept as cut off, which the next process says at the next turn."""
    fake = FakeDiscord(TOKEN)
    url = postgres_db.url
    server = postgres_db.server
    await fake.start()
    try:
        async with fake_openai(Script(chunks=WORDS * 4, interval=0.1)) as model:
            env = await fake.bot_env(tmp_path / "data", model.url_v1, DATABASE_URL=url)
            async with await BotProcess.start(tmp_path, env, ready_marker=READY) as bot:
                await bot.wait_ready()
                await _asked_and_saved(fake, lambda: _pg_rows(url))
                try:
                    server.stop()
                    bot.proc.send_signal(signal.SIGTERM)
                    # Shown while the process still runs (a `docker stop` kills it 10 s on).
                    await fake.wait_until(lambda: bool(_ended(fake)), 60)
                    code = await bot.wait_exit()
                finally:
                    server.start()
            [shown] = _ended(fake)
            async with await BotProcess.start(tmp_path, env, ready_marker=READY) as again:
                await again.wait_ready()
                assert await _next_turn(fake, model, again) == 0
    finally:
        await fake.stop()
    assert code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log and "ERROR" not in bot.log, bot.log[-3000:]
    assert shown.startswith("w0 w1 ") and "⚠️ Stopped: the bot is shutting down." in shown, shown
    assert "This answer could not be saved before the bot stopped" in shown, shown
    [cut, ok] = [r for r in await _pg_rows(url) if r[0] == "assistant"]
    assert cut[2] == "interrupted" and shown.startswith(cut[1])  # the part saved before
    assert ok[1] == "ok"
    assert _ended(fake)[-1].startswith("(My last answer here was cut off when the bot stopped.")


@pytest.mark.postgres
async def test_a_stop_signal_while_the_database_stays_down_exits_giving_up_its_writes(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """PostgreSQL stopped mid-answer, then a stop signal: the answer was shown ended (not
    saved) within the shutdown's 10 s, but closing the store waited for the writes still
    queued (the answer's end, its usage row), each retried for 20 s: the process stayed
    about 40 s, past `docker stop`'s 10 s, with nothing said. Now those writes are given
    up when the shutdown's time is up, one log line saying how many, and the process ends
    by itself (the harness kills one that does not and fails the test), as usual (0)."""
    fake = FakeDiscord(TOKEN)
    url = postgres_db.url
    server = postgres_db.server
    try:
        script = Script(chunks=WORDS * 4, interval=0.1)
        async with chatbot_run(tmp_path, fake, script, DATABASE_URL=url) as (bot, _):
            await _asked_and_saved(fake, lambda: _pg_rows(url))
            server.stop()
            code = await bot.stop()
    finally:
        with contextlib.suppress(RuntimeError):  # already up again
            server.start()
    assert code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log and "ERROR" not in bot.log, bot.log[-3000:]
    given_up = [line for line in bot.lines if "queued write" in line]
    assert len(given_up) == 1, bot.log[-3000:]
    said = re.search(
        r"WARNING bot\.store: shutting down without storing (\d+) queued write\(s\) "
        r"\(history: (\d+), usage: (\d+)\): the database did not take them in time$",
        given_up[0],
    )
    assert said is not None, given_up
    total, history, usage = (int(n) for n in said.groups())
    assert total == history + usage and history >= 1, given_up  # the answer's end at least
    assert "INFO bot.app: stopped" in bot.log, bot.log[-3000:]


def _claim_lines(bot: BotProcess, level: str) -> list[str]:
    return [line for line in bot.lines if f" {level} bot.app: Discord:" in line]


@pytest.mark.postgres
async def test_a_database_outage_is_said_once_as_it_starts_and_once_as_it_ends(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """The check that this process still holds its Discord claim (every 2 s) logged
    "could not check the claim" as a WARNING at every check while PostgreSQL was down.
    Now each outage is one warning as it starts and one line as the database answers
    again (the claim taken back); the bot answers afterwards as before."""
    fake = FakeDiscord(TOKEN)
    url = postgres_db.url
    server = postgres_db.server
    try:
        async with chatbot_run(tmp_path, fake, Script(chunks=["ok"]), DATABASE_URL=url) as (
            bot,
            model,
        ):
            for outage in (1, 2):
                server.stop()
                await asyncio.sleep(9)  # four checks or so, every 2 s
                server.start()
                async with asyncio.timeout(30):
                    while len(_claim_lines(bot, "INFO")) < outage:  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
            code = await _next_turn(fake, model, bot)
    finally:
        with contextlib.suppress(RuntimeError):  # already up again
            server.start()
    assert code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log and "ERROR" not in bot.log, bot.log[-3000:]
    warned = _claim_lines(bot, "WARNING")
    assert len(warned) == 2, "\n".join(warned)
    assert all(
        "could not check the claim on this Discord bot (" in line
        and line.endswith("); checking again every 2 s")
        for line in warned
    ), warned
    back = _claim_lines(bot, "INFO")
    assert len(back) == 2, "\n".join(back)
    assert all(
        line.endswith("the database answers again; the claim on this Discord bot is held again")
        for line in back
    ), back
    assert [r[:3] for r in await _pg_rows(url)][-2:] == [
        ("user", "next", "done"),
        ("assistant", "ok", "done"),
    ]


@pytest.mark.postgres
async def test_a_stop_signal_while_the_database_is_silent_exits_giving_up_its_writes(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """PostgreSQL gone silent mid-answer (packets dropped, the bot's connections left
    open: a partition, a dead VM), then a stop signal: the writes under way waited on
    their sockets until the kernel gave up (~15 minutes) and the process with them. Now
    the answer is shown ended, the writes the database did not take are given up when
    the shutdown's time is up (one log line), and the process ends by itself (the
    harness kills one that does not and fails the test), as usual (0). The answer says it
    was not saved; what was saved before the silence is there once the network is back."""
    fake = FakeDiscord(TOKEN)
    relay = Relay(postgres_db.server.port)
    await relay.start()
    try:
        script = Script(chunks=WORDS * 4, interval=0.1)
        url = relay.url(postgres_db.url)
        async with chatbot_run(tmp_path, fake, script, DATABASE_URL=url) as (bot, _):
            await _asked_and_saved(fake, lambda: _pg_rows(postgres_db.url))
            relay.swallow()
            await asyncio.sleep(3)  # the next save (every 2 s) under way
            code = await bot.stop()
            shown = _ended(fake)
    finally:
        await relay.close()
    assert code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log and "ERROR" not in bot.log, bot.log[-3000:]
    assert [s[:6] for s in shown] == ["w0 w1 "], shown
    assert "⚠️ Stopped: the bot is shutting down." in shown[0], shown
    assert "This answer could not be saved before the bot stopped" in shown[0], shown
    given_up = [line for line in bot.lines if "queued write" in line]
    assert len(given_up) == 1, bot.log[-3000:]
    assert "INFO bot.app: stopped" in bot.log, bot.log[-3000:]
    [question, cut] = await _pg_rows(postgres_db.url)
    assert question == ("user", "count for me", "done", None)
    # The part saved before, as the process left it: the next start says it was cut off.
    assert cut[:1] == ("assistant",) and cut[2] == "streaming" and shown[0].startswith(cut[1])


@pytest.mark.postgres
async def test_a_stop_signal_while_the_database_is_silent_and_the_bot_idle_exits(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """PostgreSQL gone silent while the bot was idle after an answer, then a stop
    signal: closing the pooled connections waited for the server's goodbye with no
    limit, and the process never ended (the harness kills it and fails the test). Now it
    ends as usual (0), with no traceback, and the answer is stored."""
    fake = FakeDiscord(TOKEN)
    relay = Relay(postgres_db.server.port)
    await relay.start()
    try:
        url = relay.url(postgres_db.url)
        async with chatbot_run(tmp_path, fake, Script(chunks=["ok"]), DATABASE_URL=url) as (
            bot,
            _,
        ):
            await fake.user_says(f"<@{fake.bot_id}> hello")
            await fake.wait_until(lambda: _ended(fake) == ["ok"], 60)
            await asyncio.sleep(3)  # the answer's writes done, its connections back
            relay.swallow()
            code = await bot.stop()
    finally:
        await relay.close()
    assert code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log and "ERROR" not in bot.log, bot.log[-3000:]
    assert "INFO bot.app: stopped" in bot.log, bot.log[-3000:]
    assert [r[:3] for r in await _pg_rows(postgres_db.url)] == [
        ("user", "hello", "done"),
        ("assistant", "ok", "done"),
    ]


@pytest.mark.postgres
async def test_a_question_asked_while_the_database_is_down_is_answered_with_why(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """PostgreSQL stopped, then a member mentions the bot in a channel it has not spoken
    in yet: reading the channel's character (before the turn) failed, the event ended in
    the log ("Discord event on_message failed: StoreUnavailable") and the asker was told
    nothing; a key typed as chat (`/key set custom …`) stayed in the channel. Now they are
    told the database cannot be reached and nothing was sent to the model, the key's
    message is taken out; with the database back, the next question is answered."""
    fake = FakeDiscord(TOKEN)
    url = postgres_db.url
    server = postgres_db.server
    try:
        async with chatbot_run(tmp_path, fake, Script(chunks=["ok"]), DATABASE_URL=url) as (
            bot,
            model,
        ):
            server.stop()
            await fake.user_says(f"<@{fake.bot_id}> during the outage")
            # A key typed as chat, not mentioning the bot: its message must not stay.
            key = await fake.user_says("/key set custom tabby-9f8e7d6c5b4a3210", mention_bot=False)
            path = f"/channels/{fake.channel_id}/messages"
            gone = f"{path}/{key}"
            await fake.wait_until(
                lambda: (
                    len(fake.bot_calls("POST", path)) == 2 and bool(fake.bot_calls("DELETE", gone))
                ),
                60,
            )
            [told] = [
                str(m["content"]) for m in fake.messages.values() if "database" in m["content"]
            ]
            server.start()
            code = await _next_turn(fake, model, bot)
    finally:
        with contextlib.suppress(RuntimeError):  # already up again
            server.start()
    assert code == 0, bot.log[-3000:]
    assert "Traceback" not in bot.log and "ERROR" not in bot.log, bot.log[-3000:]
    assert told == (
        "The bot cannot reach its database, so nothing was saved. Try again shortly; if it "
        "keeps happening, tell the bot's operator. Nothing was sent to the model."
    ), told
    assert "on_message failed" not in bot.log and "tabby-9f8e" not in bot.log, bot.log[-3000:]
    assert [r[:3] for r in await _pg_rows(url)] == [
        ("user", "next", "done"),
        ("assistant", "ok", "done"),
    ]
    assert [m["content"] for m in _asked_last(model)] == ["next"]
    assert len(model.requests) == 1  # the question asked in the outage never went
