"""`chatbot copy-database`: a deployment that outgrows one machine moves from SQLite to
PostgreSQL (and back) with its channels, keys, conversations and usage, through the real
entry points (`chatbot console`, `chatbot copy-database`, `chatbot usage export`)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import inspect, make_url, text

from bot.store import Claim, generate_key
from bot.store.copy import LOCK_WAIT_SECONDS
from bot.store.db import create_engine
from bot.store.leases import Lease
from bot.store.migrate import current, upgrade
from tests.discord.fake_openai import Script, fake_openai
from tests.peers.postgres import PostgresDatabase

KEY = "sk-copy-me-0123456789abcdef"
pytestmark = pytest.mark.postgres


async def chatbot(cwd: Path, *args: str, stdin: str = "", **env: str) -> tuple[int, str, str]:
    """`python -m bot …` as an operator runs it; (exit code, stdout, stderr)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEFAULT_", "DISCORD", "MATRIX", "OPENAI", "PG"))
    }
    base.update(ALLOW_PRIVATE_ENDPOINTS="true", LOG_LEVEL="INFO", **env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=base,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_deployment_moves_to_postgresql_and_back_with_all_it_holds(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path}/data/chatbot.db"
    env = {"BOT_SECRET_KEYS": generate_key(), "DATA_DIR": str(tmp_path / "data")}
    picture = tmp_path / "red.png"
    PILImage.new("RGB", (64, 48), "red").save(picture)
    async with fake_openai(Script(chunks=["The first", " answer."])) as model:
        code, out, err = await chatbot(
            tmp_path,
            "console",
            stdin="\n".join(
                [
                    "/source custom",
                    f"/proxy set {model.url_v1}",
                    "/key set custom",
                    f"  {KEY}  ",
                    "/model m-small",
                    f"/attach {picture}",
                    "The first question?",
                    "",
                ]
            ),
            DATABASE_URL=sqlite_url,
            **env,
        )
        assert code == 0 and "The first answer." in out, out + err

        code, out, err = await chatbot(
            tmp_path, "copy-database", "--to", postgres_url, DATABASE_URL=sqlite_url, **env
        )
        assert code == 0, err
        assert out.startswith("Copied ") and "set DATABASE_URL to it" in out, out
        copied = dict(line.split() for line in out.splitlines()[1:-1])
        assert copied["messages"] == "2" and copied["secrets"] == "1", out
        assert copied["blobs"] == "1" and copied["message_images"] == "1", out
        assert copied["usage"] == "1" and copied["channel_configs"] == "1", out
        assert KEY not in out + err
        assert "alembic" not in err, err  # operator probe: 20 lines of its migrations

        # Again: the copy is there already; nothing is written twice.
        code, out, err = await chatbot(
            tmp_path, "copy-database", "--to", postgres_url, DATABASE_URL=sqlite_url, **env
        )
        assert code == 1 and "already holds bot data" in err and "Nothing was changed" in err
        assert "Traceback" not in err

        # The bot on PostgreSQL: the same channel, key and conversation, and new rows
        # take ids after the copied ones.
        model.script.chunks = ["The second", " answer."]
        code, out, err = await chatbot(
            tmp_path,
            "console",
            stdin="/settings\nAnd the second?\n",
            DATABASE_URL=postgres_url,
            **env,
        )
        assert code == 0 and "The second answer." in out, out + err
        assert "m-small" in out and "API key: set (…cdef, channel)" in out, out
        assert model.authorizations[-1] == f"Bearer {KEY}"
        sent = model.requests[-1]["messages"]
        assert isinstance(sent, list)
        said = [m["content"] for m in sent if isinstance(m, dict)]
        assert "The first answer." in said and "And the second?" in said, said
        assert any("The first question?" in str(s) for s in said), said

        since = datetime.now(UTC).date().isoformat()
        code, out, err = await chatbot(
            tmp_path, "usage", "export", "--since", since, DATABASE_URL=postgres_url, **env
        )
        assert code == 0 and len(out.strip().splitlines()) == 1 + 2, out + err

    # Back to a new SQLite file, with the turn made on PostgreSQL.
    back = tmp_path / "back" / "chatbot.db"
    code, out, err = await chatbot(
        tmp_path,
        "copy-database",
        "--to",
        f"sqlite+aiosqlite:///{back}",
        DATABASE_URL=postgres_url,
        **env,
    )
    assert code == 0, err
    with sqlite3.connect(back) as conn:
        rows = conn.execute("SELECT role, content FROM messages ORDER BY id").fetchall()
        assert [r[1] for r in rows] == [
            rows[0][1],
            "The first answer.",
            "And the second?",
            "The second answer.",
        ]
        assert rows[0][1].startswith("The first question?")
        assert conn.execute("SELECT count(*) FROM usage").fetchone() == (2,)
        assert KEY.encode() not in b"".join(
            bytes(r[0]) for r in conn.execute("SELECT ciphertext FROM secrets")
        )


async def test_a_copy_is_refused_clearly_and_writes_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path}/data/chatbot.db"
    env = {"BOT_SECRET_KEYS": generate_key(), "DATABASE_URL": sqlite_url}
    assert (await chatbot(tmp_path, "migrate", **env))[0] == 0

    async def refused(to: str, code: int = 1) -> str:
        got, out, err = await chatbot(tmp_path, "copy-database", "--to", to, **env)
        assert got == code and out == "", (got, out, err)
        lines = err.strip().splitlines()
        if code == 2:  # argparse's: its usage line, then what is wrong
            assert lines[0].startswith("usage: chatbot copy-database"), err
            lines = lines[1:]
        assert "Traceback" not in err and len(lines) == 1, err
        return err

    # Its own database, however it is written.
    same = await refused(f"sqlite+aiosqlite:///{tmp_path}/data/../data/chatbot.db")
    assert "names the bot's own database" in same
    # Unreachable, with a password in the URL: named without it.
    gone = await refused("postgresql+asyncpg://bot:pw-secret-777@127.0.0.1:1/bot")
    assert "cannot reach the database at 127.0.0.1:1" in gone and "correct --to" in gone
    assert "pw-secret-777" not in gone
    # Not a URL the bot takes: argparse's line, without the URL.
    odd = await refused("mysql://bot:pw-secret-777@db/bot", code=2)
    assert "--to" in odd and "pw-secret-777" not in odd
    assert "no database file" in await refused("sqlite+aiosqlite://")

    # While a process serves the bot's database.
    engine = create_engine(sqlite_url)
    lease = Lease(engine)
    try:
        assert await lease.take([Claim("discord bot 1")])
        busy = await refused(postgres_url)
        assert "is using the bot's database: stop it first" in busy
    finally:
        await lease.close()
        await engine.dispose()
    target = create_engine(postgres_url)
    try:
        async with target.connect() as conn:
            made = text(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            )
            assert (await conn.execute(made)).scalar() == 0  # not even the schema
    finally:
        await target.dispose()


async def test_a_target_in_use_or_holding_a_bots_data_is_left_exactly_as_it_was(
    tmp_path: Path, postgres_url: str
) -> None:
    """The refusals came after the target's schema was upgraded, which cannot be undone:
    the bot it belonged to then refused to start on it (review)."""
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path}/data/chatbot.db"
    env = {"BOT_SECRET_KEYS": generate_key(), "DATABASE_URL": sqlite_url}
    assert (await chatbot(tmp_path, "migrate", **env))[0] == 0

    async def tables() -> int:
        engine = create_engine(postgres_url)
        try:
            async with engine.connect() as conn:
                made = text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                )
                return int((await conn.execute(made)).scalar() or 0)
        finally:
            await engine.dispose()

    # Served by a bot that has not made its schema yet.
    engine = create_engine(postgres_url)
    lease = Lease(engine)
    try:
        assert await lease.take([Claim("matrix @bot:example.org")])
        code, _, err = await chatbot(tmp_path, "copy-database", "--to", postgres_url, **env)
        assert code == 1 and "is using the --to database: stop it first" in err, err
        assert await tables() == 0
    finally:
        await lease.close()
        await engine.dispose()

    # Another bot's data at an older schema: refused, its revision as it was.
    await upgrade(postgres_url, "0005")
    engine = create_engine(postgres_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO messages (platform, server_id, channel_id, thread_id, role, "
                    "content, token_estimate, created_at) VALUES ('discord', 's', 'c', '', "
                    "'user', 'theirs', 1, now())"
                )
            )
        code, _, err = await chatbot(tmp_path, "copy-database", "--to", postgres_url, **env)
        assert code == 1 and "already has a bot's tables (schema revision 0005" in err, err
        assert "Nothing was changed" in err
        assert await current(postgres_url) == "0005"
    finally:
        await engine.dispose()


async def test_a_target_holding_another_programs_tables_is_refused_and_left_alone(
    tmp_path: Path, postgres_url: str
) -> None:
    """`--to` naming a database another program uses (a wrong database name; the README
    asks for an empty one): the bot's 16 tables were made in it beside that program's, or,
    where one of them shared a name (`messages`), the upgrade failed saying "start again"
    (operator probe)."""
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path}/data/chatbot.db"
    env = {"BOT_SECRET_KEYS": generate_key(), "DATABASE_URL": sqlite_url}
    assert (await chatbot(tmp_path, "migrate", **env))[0] == 0

    async def names(url: str) -> list[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                found = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
                return sorted(found)
        finally:
            await engine.dispose()

    other = tmp_path / "notes.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    engine = create_engine(postgres_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE users (id integer, name text)"))
            await conn.execute(text("CREATE TABLE messages (id serial, body text)"))
    finally:
        await engine.dispose()

    for to, theirs in (
        (postgres_url, ["messages", "users"]),
        (f"sqlite+aiosqlite:///{other}", ["notes"]),
    ):
        code, out, err = await chatbot(tmp_path, "copy-database", "--to", to, **env)
        assert code == 1 and out == "", (code, out, err)
        assert "the --to database is not empty" in err and ", ".join(theirs) in err, err
        assert "Nothing was changed" in err and "Traceback" not in err, err
        assert await names(to) == theirs


async def test_a_target_its_user_may_not_make_tables_in_says_so(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """`createdb chatbot` run as postgres, the bot's own role given in --to: PostgreSQL 15
    lets only the owner create tables in `public`. The line said "Check the database's
    log, then start again", though no start was made and --to is what to correct
    (operator probe)."""
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path}/data/chatbot.db"
    env = {"BOT_SECRET_KEYS": generate_key(), "DATABASE_URL": sqlite_url}
    assert (await chatbot(tmp_path, "migrate", **env))[0] == 0
    server = postgres_db.server
    role = f"bot_{uuid.uuid4().hex[:8]}"
    server.sql(f"CREATE ROLE {role} LOGIN")
    try:
        to = f"postgresql+asyncpg://{role}@127.0.0.1:{server.port}/{postgres_db.name}"
        code, out, err = await chatbot(tmp_path, "copy-database", "--to", to, **env)
        assert code == 1 and out == "", (code, out, err)
        assert "could not make the bot's tables in the --to database" in err, err
        assert "permission denied for schema public" in err, err
        assert "may create tables in, then run the command again." in err, err
        assert "start again" not in err and "Traceback" not in err, err
        assert (
            server.sql(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", postgres_db.name
            ).strip()
            == "0"
        )
    finally:
        server.sql(f"DROP OWNED BY {role}; DROP ROLE {role}", postgres_db.name)


async def test_a_fresh_database_with_extensions_objects_is_empty_enough(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """A new database whose template (or its host) installs an extension into `public`
    (pg_stat_statements' views, PostGIS's `spatial_ref_sys`): those are the extension's,
    not another program's data, and the copy goes ahead (review: it was refused as "not
    empty", with no way to make it emptier short of dropping the extension)."""
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path}/data/chatbot.db"
    env = {"BOT_SECRET_KEYS": generate_key(), "DATABASE_URL": sqlite_url}
    assert (await chatbot(tmp_path, "migrate", **env))[0] == 0
    postgres_db.server.sql("CREATE EXTENSION pg_stat_statements", postgres_db.name)
    code, out, err = await chatbot(tmp_path, "copy-database", "--to", postgres_db.url, **env)
    assert code == 0, (code, out, err)
    assert "not empty" not in err, err


async def test_a_copy_stopped_by_a_signal_says_what_stands_and_runs_again(
    tmp_path: Path, postgres_url: str
) -> None:
    """Ctrl-C or SIGTERM during a copy ended it with status 130 and not a word (SIGTERM:
    killed, its insert left waiting in the server), and a Ctrl-C at the wrong moment
    left it hanging in asyncpg's executemany (operator probe). It now says what stands
    and what to do; the same command then copies it all."""
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path}/data/chatbot.db"
    env = {"BOT_SECRET_KEYS": generate_key(), "DATABASE_URL": sqlite_url}
    assert (await chatbot(tmp_path, "migrate", **env))[0] == 0
    with sqlite3.connect(tmp_path / "data" / "chatbot.db") as conn:
        conn.executemany(
            "INSERT INTO messages (platform, server_id, channel_id, thread_id, role, content, "
            "token_estimate, created_at) VALUES ('discord', 's', 'c', '', 'user', ?, 1, "
            "'2026-01-01 00:00:00')",
            [(f"question {i}",) for i in range(3)],
        )
    # The --to database made ready beforehand (`chatbot migrate` on it), and its
    # messages table held by another session, so the copy waits there.
    code, _, err = await chatbot(tmp_path, "migrate", **{**env, "DATABASE_URL": postgres_url})
    assert code == 0, err
    engine = create_engine(postgres_url)
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE 'INSERT INTO messages%'"
    )
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            async with engine.connect() as holder:
                await holder.execute(text("LOCK TABLE messages IN SHARE MODE"))
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot",
                    "copy-database",
                    "--to",
                    postgres_url,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    cwd=tmp_path,
                    env={**os.environ, "LOG_LEVEL": "INFO", **env},
                )
                while True:  # pg_stat_activity is read once per transaction
                    async with engine.connect() as looking:
                        if (await looking.execute(waiting)).scalar():
                            break
                    await asyncio.sleep(0.1)
                process.send_signal(sig)
                out, said = await asyncio.wait_for(process.communicate(), 60)
                await holder.rollback()
            err = said.decode()
            assert process.returncode == 128 + sig, (process.returncode, err)
            assert out == b"" and "Traceback" not in err and len(err.splitlines()) == 1, err
            assert "stopped" in err and "while copying the table messages" in err, err
            assert "Nothing was copied" in err and "Run the same command again" in err, err
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT count(*) FROM messages"))).scalar() == 0
        code, out, err = await chatbot(tmp_path, "copy-database", "--to", postgres_url, **env)
        assert code == 0, err
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM messages"))).scalar() == 3
    finally:
        await engine.dispose()


async def test_the_bots_own_database_spelled_otherwise_is_refused_and_left_alone(
    tmp_path: Path, postgres_url: str
) -> None:
    """`--to` naming the bot's own PostgreSQL database by another spelling (`localhost`
    for 127.0.0.1, the host in the query, IPv4 written as IPv6) was not seen as such: an
    empty one was "copied" into itself ("Copied 0 row(s) … The old database was left as
    it was"), and one holding data was called "already holds bot data", as if --to were
    another bot's (operator probe). Now each is refused as the bot's own, and so is its
    SQLite file reached through a symbolic or a hard link."""
    env = {"BOT_SECRET_KEYS": generate_key(), "DATABASE_URL": postgres_url}
    assert (await chatbot(tmp_path, "migrate", **env))[0] == 0
    url = make_url(postgres_url)
    spellings = [
        url.set(host="localhost"),
        url.set(host="::ffff:127.0.0.1"),
        url.set(host="").update_query_dict({"host": "127.0.0.1"}),
    ]

    async def revision_and_rows() -> tuple[str | None, int]:
        engine = create_engine(postgres_url)
        try:
            async with engine.connect() as conn:
                count = "SELECT count(*) FROM channel_configs"
                return await current(postgres_url), int((await conn.scalar(text(count))) or 0)
        finally:
            await engine.dispose()

    for rows in ("none", "some"):
        if rows == "some":
            code, _, err = await chatbot(tmp_path, "console", stdin="/source custom\n", **env)
            assert code == 0, err
        before = await revision_and_rows()
        for to in spellings:
            shown = to.render_as_string(hide_password=False)
            code, out, err = await chatbot(tmp_path, "copy-database", "--to", shown, **env)
            assert code == 1 and out == "", (shown, code, out, err)
            assert "--to names the bot's own database" in err, (shown, err)
            assert "Nothing was changed" in err and len(err.splitlines()) == 1, err
        assert await revision_and_rows() == before

    data = tmp_path / "lite"
    sqlite_env = {**env, "DATABASE_URL": f"sqlite+aiosqlite:///{data}/chatbot.db"}
    assert (await chatbot(tmp_path, "migrate", **sqlite_env))[0] == 0
    (tmp_path / "linked").symlink_to(data)
    os.link(data / "chatbot.db", tmp_path / "hard.db")
    for to in (f"{tmp_path}/linked/chatbot.db", "./lite/chatbot.db", f"{tmp_path}/hard.db"):
        code, out, err = await chatbot(
            tmp_path, "copy-database", "--to", f"sqlite+aiosqlite:///{to}", **sqlite_env
        )
        assert code == 1 and "--to names the bot's own database" in err, (to, err)


def _gave_up(code: int, out: str, err: str, session: str) -> None:
    """copy-database gave up a lock after LOCK_WAIT_SECONDS in one line, naming the
    session holding it (`session`: where and its pid), copying nothing."""
    assert code == 1 and out == "" and len(err.splitlines()) == 1, (code, out, err)
    assert f"waited {LOCK_WAIT_SECONDS} s for a lock" in err, err
    assert session in err and "idle in transaction" in err, err
    assert "Nothing was copied" in err and "run the same command again" in err, err


async def test_a_lock_another_session_holds_is_waited_for_a_while_then_named(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """A session left open in a transaction (a psql window, a forgotten `LOCK TABLE`)
    holding a lock on a table of either database made the copy wait without a word, for
    good: it sets no statement timeout, as it may run long (operator probe). A lock it
    waits for is now given up after LOCK_WAIT_SECONDS, naming the table, the database and
    the session that holds it; nothing is copied, and the same command copies once it is
    gone."""
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path}/data/chatbot.db"
    source_url = postgres_db.url
    postgres_db.server.sql(f'CREATE DATABASE "{postgres_db.name}_to"')
    target_url = f"{source_url}_to"
    env = {"BOT_SECRET_KEYS": generate_key(), "DATABASE_URL": sqlite_url}
    try:
        for url in (source_url, target_url):
            assert (await chatbot(tmp_path, "migrate", **{**env, "DATABASE_URL": url}))[0] == 0
        code, _, err = await chatbot(
            tmp_path, "console", stdin="/source custom\n", **{**env, "DATABASE_URL": source_url}
        )
        assert code == 0, err
        env["DATABASE_URL"] = source_url
        for held, table, which in (
            (target_url, "channel_configs", "In the --to database: session "),
            (source_url, "messages", "In the bot's database: session "),
        ):
            engine = create_engine(held)
            try:
                async with engine.connect() as holder:
                    pid = await holder.scalar(text("SELECT pg_backend_pid()"))
                    await holder.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
                    code, out, err = await chatbot(
                        tmp_path, "copy-database", "--to", target_url, **env
                    )
                    await holder.rollback()
            finally:
                await engine.dispose()
            _gave_up(code, out, err, f"{which}{pid} (")
            assert f"on the table {table}" in err, err
        code, out, err = await chatbot(tmp_path, "copy-database", "--to", target_url, **env)
        assert code == 0 and "Copied 2 row(s)" in out, (code, out, err)
    finally:
        postgres_db.server.sql(f'DROP DATABASE IF EXISTS "{postgres_db.name}_to" WITH (FORCE)')


@pytest.mark.parametrize(
    ("fresh", "locked", "which"),
    [
        (False, "target", "In the --to database: session "),
        (True, "source", "In the bot's database: session "),
        # Its upgrade: a transaction left open after making a table the upgrade makes.
        (True, "target", "In the --to database: session "),
    ],
)
async def test_a_lock_on_either_schemas_revision_is_given_up_too(
    tmp_path: Path, postgres_db: PostgresDatabase, fresh: bool, locked: str, which: str
) -> None:
    """A forgotten session holding a lock on alembic_version (a psql window left in a
    transaction after a `LOCK TABLE` or a `TRUNCATE`) of either database made the copy
    wait for good, silent: LOCK_WAIT_SECONDS covered the rows' copy, not the reads of
    each database's schema revision nor the upgrade of --to's schema. Those now give up
    after as long, naming the session; nothing is copied, and the same command copies
    once it is gone. (A session holding an advisory lock, as a hung `chatbot migrate`
    does, is refused at once as a process using the database.)"""
    source_url = postgres_db.url
    postgres_db.server.sql(f'CREATE DATABASE "{postgres_db.name}_to"')
    target_url = f"{source_url}_to"
    env = {"BOT_SECRET_KEYS": generate_key(), "DATABASE_URL": source_url}
    try:
        if not fresh:  # made beforehand, as an operator may
            assert (await chatbot(tmp_path, "migrate", **{**env, "DATABASE_URL": target_url}))[
                0
            ] == 0
        code, _, err = await chatbot(tmp_path, "console", stdin="/source custom\n", **env)
        assert code == 0, err
        engine = create_engine(source_url if locked == "source" else target_url)
        try:
            async with engine.connect() as holder:
                pid = await holder.scalar(text("SELECT pg_backend_pid()"))
                if fresh and locked == "target":
                    await holder.execute(text("CREATE TABLE alembic_version (v text)"))
                else:
                    lock = "LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"
                    await holder.execute(text(lock))
                code, out, err = await chatbot(tmp_path, "copy-database", "--to", target_url, **env)
                await holder.rollback()
        finally:
            await engine.dispose()
        _gave_up(code, out, err, f"{which}{pid} (")
        code, out, err = await chatbot(tmp_path, "copy-database", "--to", target_url, **env)
        assert code == 0 and "Copied 2 row(s)" in out, (code, out, err)
    finally:
        postgres_db.server.sql(f'DROP DATABASE IF EXISTS "{postgres_db.name}_to" WITH (FORCE)')
