"""The `chatbot` command as an operator runs it: help, keygen, migrate, rotate-keys, and
the console's terminal kept for the chat (its log goes to a file)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.app import NO_PLATFORM
from bot.logfilter import REDACTED
from bot.store import SecretBox, Store, generate_key, migrate
from bot.types import Actor, ChannelConfig, ChannelRef, Platform, Scope, SecretValue, Source
from tests.peers.postgres import PostgresServer
from tests.unit.test_settings import docker_env_file

ROOT = Path(__file__).resolve().parents[2]
# A line of the log format (bot/logfilter.py): "2026-01-02 03:04:05,678 INFO name: ...".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", re.M)


def chatbot(
    tmp_path: Path,
    *args: str,
    stdin: str | None = None,
    preexec_fn: Callable[[], None] | None = None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISCORD", "MATRIX", "DATA_DIR", "LOG_LEVEL", "PROVIDER_"))
    }
    # DATABASE_URL="" means the default: SQLite in DATA_DIR.
    base.update({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/data/bot.db", **env})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=base,
        timeout=120,
        check=False,
        preexec_fn=preexec_fn,
    )


def test_help_lists_every_subcommand(tmp_path: Path) -> None:
    result = chatbot(tmp_path, "--help")
    assert result.returncode == 0
    for name in ("run", "console", "migrate", "keygen", "rotate-keys"):
        assert name in result.stdout


def test_each_subcommand_says_what_it_does_and_the_version_is_shown(tmp_path: Path) -> None:
    """`chatbot run --help` showed only its usage line; there was no --version."""
    for args, said in [
        (("run",), "Apply migrations and run the configured front-ends."),
        (("console",), "Chat in this terminal"),
        (("usage", "export"), "Print usage rows to stdout."),
    ]:
        result = chatbot(tmp_path, *args, "--help")
        assert result.returncode == 0 and said in result.stdout, result.stdout
    version = chatbot(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("chatbot 0."), version.stdout


def test_keygen_prints_a_usable_key(tmp_path: Path) -> None:
    made = chatbot(tmp_path, "keygen")
    first = made.stdout.strip()
    second = chatbot(tmp_path, "keygen").stdout.strip()
    assert first != second
    SecretBox.from_setting(f"{first},{second}")  # parses: valid keys
    # The id rotate-keys and the log name it by, beside it (not in what a pipe takes).
    key_id = SecretBox.from_setting(first).primary_key_id
    said = f"(its id is {key_id}: rotate-keys and the log name keys by it)"
    assert made.stderr.strip() == said


def test_migrate_creates_the_database_on_first_run(tmp_path: Path) -> None:
    result = chatbot(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert "Database is at revision" in result.stdout
    assert (tmp_path / "data" / "bot.db").is_file()
    again = chatbot(tmp_path, "migrate")
    assert again.stdout == result.stdout


def test_a_postgresql_url_as_managed_services_give_it_works(
    tmp_path: Path, postgres_url: str
) -> None:
    """`?sslmode=…` (libpq's name, in the URLs managed PostgreSQL hands out) ended
    `chatbot migrate` in an 80-line TypeError; `?connect_timeout=5` too."""
    result = chatbot(tmp_path, "migrate", DATABASE_URL=f"{postgres_url}?sslmode=disable")
    assert result.returncode == 0, result.stderr
    assert "Database is at revision" in result.stdout
    refused = chatbot(tmp_path, "migrate", DATABASE_URL=f"{postgres_url}?connect_timeout=5")
    said = one_line_failure(refused)
    assert "?connect_timeout= is no option asyncpg takes" in said and "ssl=" in said, said


@pytest.mark.parametrize(
    "query",
    [
        "prepared_statement_cache_size=abc",  # an 80-line ValueError
        "prepared_statement_cache_size=-1",  # `chatbot migrate` never ended
        "ssl=disable&ssl=require",  # "cannot reach the database (ConnectionError)"
        "target_session_attrs=master",  # "one of <built-in method values of mappingproxy…>"
    ],
)
def test_a_postgresql_option_value_asyncpg_cannot_take_is_one_line_at_start(
    tmp_path: Path, postgres_url: str, query: str
) -> None:
    password = "Pg0ptionPassw0rd"
    url = postgres_url.replace("postgres@", f"postgres:{password}@") + f"?{query}"
    result = chatbot(tmp_path, "migrate", DATABASE_URL=url)
    said = one_line_failure(result)
    assert said.startswith("chatbot: Setting DATABASE_URL is invalid: ?"), said
    assert password not in said
    assert not (tmp_path / "data").exists()  # refused before anything was opened


def test_postgresql_option_values_in_capitals_work(tmp_path: Path, postgres_url: str) -> None:
    """libpq's values as some tools write them: `sslmode=Disable` was refused by asyncpg."""
    query = "sslmode=Disable&target_session_attrs=Read-Write&prepared_statement_cache_size=0"
    result = chatbot(tmp_path, "migrate", DATABASE_URL=f"{postgres_url}?{query}")
    assert result.returncode == 0, result.stderr
    assert "Database is at revision" in result.stdout


def test_the_bots_files_are_its_users_only_also_those_an_older_version_left(
    tmp_path: Path,
) -> None:
    """A fresh DATA_DIR gets files only the bot's user reads; one an older version made
    (before the bot set its umask) had them readable by everyone, chat history included."""
    data = tmp_path / "data"
    result = chatbot(tmp_path, "migrate", DATABASE_URL="", DATA_DIR=str(data))
    assert result.returncode == 0, result.stderr
    database = data / "chatbot.db"
    assert database.stat().st_mode & 0o777 == 0o600
    # As an upgraded install has them: the database, the log and its rotation, the
    # Matrix store; and a file of the operator's own, which is not the bot's to change.
    store = data / "matrix"
    store.mkdir()
    ours = [database, data / "chatbot.log", data / "chatbot.log.1", store / "bot.db"]
    for path in ours[1:]:
        path.write_text("x")
    notes = data / "notes.txt"
    notes.write_text("mine")
    for path in [*ours, notes, store, data]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    result = chatbot(tmp_path, "migrate", DATABASE_URL="", DATA_DIR=str(data))
    assert result.returncode == 0, result.stderr
    assert {p.name: p.stat().st_mode & 0o777 for p in ours} == {p.name: 0o600 for p in ours}
    assert store.stat().st_mode & 0o777 == 0o700
    assert notes.stat().st_mode & 0o777 == 0o644
    # The folder itself: a backup the README's sqlite3 .backup writes into it is made
    # readable by all (the umask); in a folder only the bot enters, nobody else reads it.
    assert data.stat().st_mode & 0o777 == 0o700


def test_rotate_keys_re_encrypts_under_the_first_key(tmp_path: Path) -> None:
    old = chatbot(tmp_path, "keygen").stdout.strip()
    new = chatbot(tmp_path, "keygen").stdout.strip()
    assert chatbot(tmp_path, "migrate").returncode == 0
    url = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"
    ref = ChannelRef(Platform.CONSOLE, channel_id="x")
    admin = Actor("a", "A", is_channel_admin=True)

    async def store_two(keys: str) -> None:
        store = await Store.open(
            url, SecretBox.from_setting(keys), defaults=ChannelConfig.of(source=Source.OPENAI)
        )
        await store.set_secret(
            ref, Scope.CHANNEL, "openai_api_key", SecretValue("sk-rotate-me-111"), admin
        )
        await store.set_secret(
            ref, Scope.CHANNEL, "proxy_password", SecretValue("pw-rotate-me-222"), admin
        )
        await store.close()

    async def read(keys: str) -> list[str | None]:
        store = await Store.open(
            url, SecretBox.from_setting(keys), defaults=ChannelConfig.of(source=Source.OPENAI)
        )
        try:
            values = [
                await store.resolve_secret(ref, n) for n in ("openai_api_key", "proxy_password")
            ]
            return [v.reveal() if v else None for v in values]
        finally:
            await store.close()

    asyncio.run(store_two(old))
    result = chatbot(tmp_path, "rotate-keys", BOT_SECRET_KEYS=f"{new},{old}")
    assert result.returncode == 0, result.stderr
    assert "Re-encrypted 2 secret(s)" in result.stdout
    # The old key can now be removed.
    assert asyncio.run(read(new)) == ["sk-rotate-me-111", "pw-rotate-me-222"]
    assert "rotate-me" not in result.stdout + result.stderr
    # With one key there are no others to drop, and the output says none.
    alone = chatbot(tmp_path, "rotate-keys", BOT_SECRET_KEYS=new)
    new_id = SecretBox.from_setting(new).primary_key_id
    assert alone.stdout.strip() == f"Re-encrypted 2 secret(s) under key {new_id}."


def test_rotate_keys_without_the_old_key_fails_clearly_and_changes_nothing(tmp_path: Path) -> None:
    old = chatbot(tmp_path, "keygen").stdout.strip()
    other = chatbot(tmp_path, "keygen").stdout.strip()
    assert chatbot(tmp_path, "migrate").returncode == 0
    url = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"

    async def put() -> None:
        store = await Store.open(
            url, SecretBox.from_setting(old), defaults=ChannelConfig.of(source=Source.OPENAI)
        )
        await store.set_secret(
            ChannelRef(Platform.CONSOLE, channel_id="x"),
            Scope.CHANNEL,
            "openai_api_key",
            SecretValue("sk-keep-me-333"),
            Actor("a", "A"),
        )
        await store.close()

    asyncio.run(put())

    def stored() -> list[tuple[object, ...]]:
        with sqlite3.connect(tmp_path / "data" / "bot.db") as conn:
            return conn.execute("SELECT key_id, nonce, ciphertext FROM secrets").fetchall()

    before = stored()
    result = chatbot(tmp_path, "rotate-keys", BOT_SECRET_KEYS=other)
    assert result.returncode == 2
    assert "The openai key stored for" in result.stderr and "Traceback" not in result.stderr
    assert "sk-keep-me" not in result.stderr
    assert stored() == before
    assert chatbot(tmp_path, "rotate-keys", BOT_SECRET_KEYS=f"{other},{old}").returncode == 0
    assert stored() != before


def test_run_without_platform_names_commands_that_work(tmp_path: Path) -> None:
    result = chatbot(tmp_path, "run", BOT_SECRET_KEYS=generate_key())
    assert result.returncode == 2
    assert "DISCORD_TOKEN" in result.stderr and "Traceback" not in result.stderr
    assert "./scripts/run.sh console" in result.stderr
    assert "chat-completion-bot console" in result.stderr
    readme = (ROOT / "README.md").read_text()
    for command in re.findall(r"`([^`]+)`", NO_PLATFORM):
        assert command in readme, command


# A failing provider: the status check and the chat turn log at INFO, their retries too.
SESSION = "/source custom\n/proxy set http://127.0.0.1:9\n/model m\nhello\n/help\n"


def test_started_away_from_its_env_file_it_says_so_and_writes_nothing(tmp_path: Path) -> None:
    """`.venv/bin/chatbot console` in another folder: the .env is not read from there.
    It said only that BOT_SECRET_KEYS was empty (to a user who had one), and left a
    data/chatbot.log behind."""
    for command in ("console", "run"):
        result = chatbot(tmp_path, command, stdin="", BOT_SECRET_KEYS="", DATABASE_URL="")
        assert result.returncode == 2, result.stderr
        assert f"There is no .env in {tmp_path}: run chatbot in the folder" in result.stderr
        assert "BOT_SECRET_KEYS is empty: run `./scripts/run.sh keygen`" in result.stderr
        assert "Traceback" not in result.stderr
        assert list(tmp_path.iterdir()) == [], command


def console_env(**env: str) -> dict[str, str]:
    return {
        "BOT_SECRET_KEYS": generate_key(),
        "ALLOW_PRIVATE_ENDPOINTS": "true",
        "PROVIDER_MAX_RETRIES": "1",
        "LOG_LEVEL": "INFO",
        **env,
    }


def test_console_keeps_log_lines_out_of_the_terminal(tmp_path: Path) -> None:
    result = chatbot(tmp_path, "console", stdin=SESSION, **console_env())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "How to connect" in result.stdout
    assert not LOG_LINE.search(result.stdout), result.stdout
    log = (tmp_path / "data" / "chatbot.log").read_text()
    assert "console ran /source" in log
    assert "retry 1 in" in log  # the retry of the unreachable endpoint: in the file only
    assert "alembic" not in log  # migration chatter stays out at INFO


def test_console_logs_to_stderr_only_when_verbose_at_any_level(tmp_path: Path) -> None:
    """--verbose prints the log; LOG_LEVEL says how much of it there is. A DEBUG level
    left in .env for `chatbot run` does not flood the console's chat."""
    verbose = chatbot(tmp_path, "console", "--verbose", stdin="/help\n", **console_env())
    assert verbose.returncode == 0, verbose.stderr
    assert "console ran /help" in verbose.stderr
    assert not LOG_LINE.search(verbose.stdout)
    debug = chatbot(tmp_path, "console", stdin="/help\n", **console_env(LOG_LEVEL="DEBUG"))
    assert debug.returncode == 0, debug.stderr
    assert debug.stderr == "" and not LOG_LINE.search(debug.stdout)
    log = (tmp_path / "data" / "chatbot.log").read_text()
    assert "console ran /help" in log and " DEBUG " in log  # DEBUG went to the file
    both = chatbot(
        tmp_path, "console", "--verbose", stdin="/help\n", **console_env(LOG_LEVEL="DEBUG")
    )
    assert both.returncode == 0, both.stderr
    assert "console ran /help" in both.stderr and " DEBUG " in both.stderr


def test_console_without_a_writable_log_folder_still_chats_quietly(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = chatbot(
        tmp_path,
        "console",
        stdin=SESSION,
        **console_env(DATA_DIR=str(tmp_path / "a-file" / "data")),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "How to connect" in result.stdout and not LOG_LINE.search(result.stdout)


def test_the_log_file_is_redacted_too(tmp_path: Path) -> None:
    script = (
        "import logging, pathlib, sys\n"
        "from bot.logfilter import configure_logging\n"
        "path = configure_logging('INFO', log_file=pathlib.Path('logs/x.log'), to_stderr=False)\n"
        "print(path)\n"
        "logging.getLogger('t').warning('key %s', 'sk-proj-abcdefghijklmnop1234')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "logs" / "x.log")
    assert result.stderr == ""
    text = (tmp_path / "logs" / "x.log").read_text()
    assert REDACTED in text and "abcdefghijklmnop1234" not in text


def one_line_failure(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The stderr of a start that stopped with one line and no traceback."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr


def test_console_refuses_an_id_that_is_not_text(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 (a terminal's `$'\\xff\\xfe'`) arrive as lone surrogates,
    which no database or terminal encoder takes: refused at start, named."""
    for args in (["--channel", "\udcff\udcfe"], ["--user=\udcff\udcfe"], ["--user", "a b"]):
        result = chatbot(tmp_path, "console", *args, stdin="hi\n", **console_env())
        stderr = result.stderr  # argparse's usage line, then its error
        assert result.returncode == 2, stderr
        assert "Traceback" not in stderr and "\udcff" not in stderr
        assert args[0].split("=")[0] in stderr
        assert ("U+DCFF" if "\udcff" in args[-1] else "has a space at position 2") in stderr
    # Empty (a script's unset variable): it chatted as the operator, an admin.
    empty = chatbot(tmp_path, "console", "--user", "", stdin="/model m\n", **console_env())
    assert empty.returncode == 2 and "argument --user: The user id is empty" in empty.stderr
    assert not (tmp_path / "data" / "bot.db").exists()  # stopped before the database


def test_an_abbreviated_option_is_no_option(tmp_path: Path) -> None:
    """argparse took `--forget` for `--forget-unreadable`, which deletes secrets."""
    result = chatbot(tmp_path, "rotate-keys", "--forget", **console_env())
    assert result.returncode == 2 and "unrecognized arguments: --forget" in result.stderr
    assert not (tmp_path / "data" / "bot.db").exists()


def test_a_console_option_given_twice_is_refused(tmp_path: Path) -> None:
    result = chatbot(
        tmp_path, "console", "--channel", "a", "--channel", "b", stdin="", **console_env()
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "argument --channel: given more than once" in result.stderr


UNREACHABLE_DB = "postgresql+asyncpg://u:DbPassw0rdSecret@127.0.0.1:1/x"


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    for args in (["console"], ["migrate"], ["run"], ["rotate-keys"]):
        result = chatbot(
            tmp_path,
            *args,
            stdin="hi\n",
            **console_env(DATABASE_URL=UNREACHABLE_DB, DISCORD_TOKEN="MTIz.abc.def"),
        )
        stderr = one_line_failure(result, code=1)
        assert "cannot reach the database at 127.0.0.1:1" in stderr, args
        assert "DATABASE_URL" in stderr
        assert "DbPassw0rdSecret" not in stderr + result.stdout


def test_a_database_a_newer_version_upgraded_is_one_line(tmp_path: Path) -> None:
    """Likely while several processes are upgraded one by one: an older one met revision
    0010 and printed Alembic's 110-line traceback ("Can't locate revision")."""
    assert chatbot(tmp_path, "migrate").returncode == 0
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "bot.db")) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
        conn.commit()
    for args in (["migrate"], ["console"], ["run"]):
        result = chatbot(tmp_path, *args, stdin="hi\n", **console_env(DISCORD_TOKEN="MTIz.abc.def"))
        stderr = one_line_failure(result, code=1)
        assert "schema revision 0099, which this version of the bot does not know" in stderr
        assert "a newer version upgraded it" in stderr, args


def _at_revision(tmp_path: Path, revision: str) -> Path:
    """The default SQLite database, at an older schema revision (an install to upgrade)."""
    assert chatbot(tmp_path, "migrate").returncode == 0
    database = tmp_path / "data" / "bot.db"
    asyncio.run(migrate.downgrade(f"sqlite+aiosqlite:///{database}", revision))
    return database


def _tables(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def test_processes_starting_together_on_an_old_database_all_start(tmp_path: Path) -> None:
    """A restarted bot and an operator's console upgrading one SQLite file together: one
    migrates, the others wait for it ("table usage already exists" stopped them)."""
    database = _at_revision(tmp_path, "0005")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISCORD", "MATRIX", "DATA_DIR", "LOG_LEVEL", "PROVIDER_"))
    }
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    for _ in range(4):
        starts = [
            subprocess.Popen(
                [sys.executable, "-m", "bot", "migrate"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(5)
        ]
        for start in starts:
            out, err = start.communicate(timeout=120)
            assert start.returncode == 0, err
            assert f"Database is at revision {migrate.head()}." in out
        asyncio.run(migrate.downgrade(env["DATABASE_URL"], "0005"))


def test_a_start_behind_another_process_s_database_lock_says_it_is_waiting(
    tmp_path: Path,
) -> None:
    """Another process holding SQLite's write lock (a second `chatbot run`, a long
    migration, an operator's `sqlite3` session): the start waited up to 5 minutes without
    a word. Now it says once that it is waiting and for which file, then upgrades when
    the lock is let go."""
    database = _at_revision(tmp_path, "0005")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATA_DIR", "LOG_LEVEL"))}
    env.update(DATABASE_URL=f"sqlite+aiosqlite:///{database}", LOG_LEVEL="INFO")
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    start = subprocess.Popen(
        [sys.executable, "-m", "bot", "migrate"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert start.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in start.stderr or ()])
    reader.start()
    try:
        said = ""
        while "waiting for the database lock" not in said:
            said = lines.get(timeout=100)  # well within the 5 minutes it waits
    finally:
        holder.rollback()
        holder.close()
    assert start.wait(timeout=120) == 0, said
    reader.join()
    out = start.stdout.read() if start.stdout else ""
    assert f"Database is at revision {migrate.head()}." in out
    assert f"WARNING bot.store.migrate: waiting for the database lock on {database}: " in said
    assert not any("waiting for the database lock" in line for line in lines.queue)  # once
    assert asyncio.run(migrate.current(env["DATABASE_URL"])) == migrate.head()


def test_an_upgrade_that_fails_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    """It left the file half upgraded (0006 and 0007 applied, 0008 not) and blamed
    DATA_DIR, though the folder was fine."""
    database = _at_revision(tmp_path, "0005")
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.execute("CREATE TABLE limits (id INTEGER)")  # 0008 makes one: it fails there
        conn.commit()
    result = chatbot(tmp_path, "migrate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    stderr = result.stderr.splitlines()[-1]  # after Alembic's lines of what it ran
    assert stderr.startswith("chatbot: could not upgrade the database file")
    assert "from schema revision 0005 (table limits already exists); it was left as it was" in (
        stderr
    )
    assert "DATA_DIR" not in stderr
    assert "usage" not in _tables(database)  # 0006's table: rolled back with the rest
    assert asyncio.run(migrate.current(f"sqlite+aiosqlite:///{database}")) == "0005"


def test_an_upgrade_on_a_full_disk_says_the_disk_and_keeps_every_row(tmp_path: Path) -> None:
    """Storage probe: a database made by the first migration, with conversations in it,
    upgraded on a disk that takes little more (a file size limit just above its size).
    SQLite rolled the whole upgrade back on the full disk, Alembic's clean-up of its
    half-made table then failed, and that was what the operator read: "no such table:
    _alembic_tmp_messages", and to check the file's rights."""
    database = _at_revision(tmp_path, "0001")
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.executemany(
            "INSERT INTO messages (platform, server_id, channel_id, thread_id, role, "
            "content, token_estimate, created_at) VALUES ('console', '', 'c', '', ?, ?, 1, "
            "CURRENT_TIMESTAMP)",
            [("user" if i % 2 else "assistant", f"turn {i} " + "x" * 4000) for i in range(300)],
        )
        conn.commit()
    limit = database.stat().st_size + 16_384  # 0005 and 0010 each copy every message

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = chatbot(tmp_path, "migrate", preexec_fn=small_files, PYTHONDONTWRITEBYTECODE="1")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    stderr = result.stderr.splitlines()[-1]  # after Alembic's lines of what it ran
    assert stderr.startswith(f"chatbot: cannot write the database file {database}"), stderr
    assert "the disk may be full or failing" in stderr and "Free space there" in stderr
    assert "The upgrade from schema revision 0001 was not made" in stderr
    assert "_alembic_tmp" not in stderr and "may write that file" not in stderr
    assert asyncio.run(migrate.current(f"sqlite+aiosqlite:///{database}")) == "0001"
    with contextlib.closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (300,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    # With room again, the same upgrade goes through and keeps every turn.
    assert chatbot(tmp_path, "migrate").returncode == 0
    with contextlib.closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (300,)


@pytest.mark.postgres
def test_a_database_that_refuses_the_start_says_why(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A missing database and a wrong password both said "failed at start (Error)": the
    name of SQLAlchemy's adapter class, not the server's reason."""
    url = postgres_server.url("no_such_database_here")
    result = chatbot(tmp_path, "migrate", **console_env(DATABASE_URL=url))
    stderr = one_line_failure(result, code=1)
    assert 'database "no_such_database_here" does not exist' in stderr, stderr
    assert "(Error)" not in stderr


@pytest.mark.postgres
def test_a_database_that_will_not_speak_tls_as_asked_says_why_in_one_line(
    tmp_path: Path, postgres_url: str
) -> None:
    """The test server has no TLS. `?ssl=require` said "cannot reach the database
    (ConnectionError)"; `?sslmode=verify-full` without a root certificate took two lines
    (PostgreSQL's HINT on the second)."""
    assert chatbot(tmp_path, "migrate").returncode == 0  # an SQLite source for the copy
    cases = {"ssl=require": "rejected SSL upgrade", "sslmode=verify-full": "root certificate"}
    for query, reason in cases.items():
        url = f"{postgres_url}?{query}"
        started = chatbot(tmp_path, "migrate", HOME=str(tmp_path), DATABASE_URL=url)
        copied = chatbot(tmp_path, "copy-database", "--to", url, HOME=str(tmp_path))
        for result in (started, copied):
            said = one_line_failure(result, code=1)
            assert reason in said, said


def test_a_data_dir_that_cannot_hold_the_database_is_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    for command in ("console", "migrate"):
        result = chatbot(
            tmp_path,
            command,
            stdin="hi\n",
            **console_env(DATA_DIR=str(tmp_path / "a-file" / "data"), DATABASE_URL=""),
        )
        stderr = one_line_failure(result, code=1)
        assert "DATA_DIR" in stderr and str(tmp_path / "a-file" / "data") in stderr


def test_a_damaged_database_file_is_named_as_such_not_as_a_folder_to_fix(
    tmp_path: Path,
) -> None:
    """ "Set DATA_DIR to a folder the bot can write" led to an empty database beside the
    damaged one."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "chatbot.db").write_bytes(b"this is not SQLite, but a text file of some sort\n" * 99)
    for command in ("console", "migrate"):
        result = chatbot(tmp_path, command, stdin="hi\n", **console_env(DATABASE_URL=""))
        stderr = one_line_failure(result, code=1)
        assert "is damaged or is no database" in stderr and "Restoring a backup" in stderr
        assert "set DATA_DIR" not in stderr


def damage(db: Path, table: str) -> None:
    """Write over the first page of `table` inside a sound file (its header intact)."""
    with sqlite3.connect(db) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
    with db.open("r+b") as f:
        f.seek((root[0] - 1) * page)
        f.write(b"\xa5" * page)


def test_a_database_damaged_inside_is_named_as_such(tmp_path: Path) -> None:
    """Operator probe: a file damaged past its header stopped the start with a traceback
    (`database disk image is malformed` in the secrets' key check); damage in another
    table answered each turn "Something went wrong (DatabaseError)", and the log never
    said the file was damaged."""
    env = console_env()
    db = tmp_path / "data" / "bot.db"
    assert chatbot(tmp_path, "console", stdin="/system Be brief.\n", **env).returncode == 0
    damage(db, "secrets")
    result = chatbot(tmp_path, "console", stdin="hi\n", **env)
    stderr = one_line_failure(result, code=1)
    assert "is damaged or is no database (database disk image is malformed)" in stderr
    assert "Restoring a backup" in stderr and str(db) in stderr

    tmp_path = tmp_path / "second"
    tmp_path.mkdir()
    db = tmp_path / "data" / "bot.db"
    assert chatbot(tmp_path, "console", stdin="/system Be brief.\n", **env).returncode == 0
    damage(db, "channel_configs")  # the console's settings are in it
    result = chatbot(tmp_path, "console", stdin="/settings\n", **env)
    assert result.returncode == 0 and "Traceback" not in result.stderr + result.stdout
    assert "The bot's database is damaged, so nothing was saved." in result.stdout
    log = (tmp_path / "data" / "chatbot.log").read_text()
    assert "the database is damaged (DatabaseError: database disk image is malformed)" in log
    assert "restore a backup (README: Restoring a backup)" in log


def test_a_disk_that_takes_no_more_is_not_blamed_on_the_folder(tmp_path: Path) -> None:
    """Operator probe: under a file size limit the start said DATA_DIR must be a folder
    the bot can write, which it was."""

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))

    env = console_env(DATABASE_URL="", DATA_DIR=str(tmp_path / "data"))
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a .pyc cut at the limit would break later imports
    result = chatbot(tmp_path, "console", stdin="/settings\n", preexec_fn=small_files, **env)
    stderr = one_line_failure(result, code=1)
    assert "the disk may be full or failing, or a file size limit" in stderr
    assert "DATA_DIR" not in stderr


def _stdout_on_a_full_disk() -> None:
    """In the child: stdout to a file on a disk that takes nothing more (/dev/full)."""
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, 1)
    os.close(full)


def _stdout_closed() -> None:
    os.close(1)  # `>&-`


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_result_that_cannot_be_written_out_is_said_with_what_stands(tmp_path: Path) -> None:
    """Storage probe: `chatbot migrate > migrate.log`, `rotate-keys`, `copy-database` and
    `keygen >> .env` on a full disk ended in a traceback, though the upgrade, the
    re-encryption or the copy was done; `keygen >&-` printed no key and said it had
    (status 0, the key's id on stderr)."""
    env = console_env(LOG_LEVEL="WARNING")
    copy = tmp_path / "copy.db"
    said = {
        ("migrate",): f"Database is at revision {migrate.head()}.",
        ("rotate-keys",): "The stored secrets were re-encrypted all the same.",
        ("copy-database", "--to", f"sqlite+aiosqlite:///{copy}"): (
            "Every row was copied into the --to database all the same."
        ),
        ("keygen",): "No key was given: delete any part of one that was written, and run "
        "keygen again.",
    }
    for args, done in said.items():
        result = chatbot(tmp_path, *args, preexec_fn=_stdout_on_a_full_disk, **env)
        stderr = one_line_failure(result, code=1)
        assert stderr == (
            f"chatbot: cannot write to standard output (No space left on device). {done}\n"
        ), args
    assert copy.is_file()  # the copy stands
    closed = chatbot(tmp_path, "keygen", preexec_fn=_stdout_closed)
    assert one_line_failure(closed, code=1) == (
        "chatbot: cannot write to standard output (it is closed). " + said[("keygen",)] + "\n"
    )


def test_operator_setting_mistakes_stop_the_start(tmp_path: Path) -> None:
    """README: "A mistake stops chatbot before it connects anywhere"."""
    (tmp_path / "prices.txt").write_text("# a comment line\n" * 70_000)  # over 1 MB
    for setting, value in (
        ("DEFAULT_PROXY_URL", "localhost:18081"),
        ("MATRIX_USER_ID", "bot"),
        ("USAGE_PRICES_FILE", str(tmp_path / "prices.txt")),
    ):
        result = chatbot(tmp_path, "console", stdin="hi\n", **console_env(**{setting: value}))
        stderr = one_line_failure(result)
        assert f"Setting {setting} is invalid" in stderr
        assert not (tmp_path / "data" / "bot.db").exists()


def test_a_comment_after_a_value_is_named_where_it_is_read_as_part_of_it(
    tmp_path: Path,
) -> None:
    """`MEDIA_STORE_MB=512  # megabytes`, as copied from docs: .env drops the comment (as
    python-dotenv and docker compose read one), but `docker run --env-file` passes it on
    as part of the value, and the start said only "not a whole number". Now it says the
    comment is the cause, naming the setting and never a key's value."""
    key = "sk-proj-commented0123456789abcdef"
    lines = (
        "MEDIA_STORE_MB=512  # megabytes\n"
        "PROVIDER_MAX_RETRIES=1 # retries\n"
        f"DEFAULT_OPENAI_API_KEY={key}  # the team's key\n"
    )
    (tmp_path / ".env").write_text(lines)
    from_dotenv = chatbot(tmp_path, "console", stdin="/help\n", **console_env())
    assert from_dotenv.returncode == 0, from_dotenv.stderr
    (tmp_path / ".env").unlink()
    env = docker_env_file(lines, host={})
    docker = chatbot(tmp_path, "console", stdin="/help\n", **console_env(**env))
    assert docker.returncode == 2 and "Traceback" not in docker.stderr, docker.stderr
    said = docker.stderr.removeprefix("chatbot: ").splitlines()
    assert [line.split(" is invalid")[0] for line in said] == [
        "Setting DEFAULT_OPENAI_API_KEY",
        "Setting PROVIDER_MAX_RETRIES",
        "Setting MEDIA_STORE_MB",
    ], said
    for line in said:
        assert "comment after a value is part of the value in the environment" in line, line
        assert "put the comment on a line of its own" in line, line
    assert key not in docker.stderr and key[-8:] not in docker.stderr
    # In quotes in .env, the comment is part of the value there too: said as such.
    (tmp_path / ".env").write_text('MEDIA_STORE_MB="512 # megabytes"\n')
    quoted = chatbot(tmp_path, "console", stdin="/help\n", **console_env())
    assert "Setting MEDIA_STORE_MB is invalid: not a whole number." in quoted.stderr
    assert "comment inside the quotes is part of the value" in one_line_failure(quoted)


def test_a_private_default_proxy_url_stops_the_start_naming_the_fix(tmp_path: Path) -> None:
    """Every turn would be refused: the start is, in one line, before the database."""
    for command, url, what in (
        ("console", "http://localhost:1234/v1/chat/completions", "localhost (127.0.0.1)"),
        ("run", "http://[::1]:8080/v1", "::1 is a loopback address"),
        ("run", "http://10.1.2.3/v1/models/", "10.1.2.3 is a private-network address"),
    ):
        result = chatbot(
            tmp_path,
            command,
            stdin="hi\n",
            **console_env(
                ALLOW_PRIVATE_ENDPOINTS="false",
                DEFAULT_PROXY_URL=url,
                DISCORD_TOKEN="MTIz.abc.def",
            ),
        )
        stderr = one_line_failure(result)
        assert stderr.startswith(f"chatbot: Setting DEFAULT_PROXY_URL is refused: {what}")
        assert "Fix: set ALLOW_PRIVATE_ENDPOINTS=true, or give DEFAULT_PROXY_URL a public" in stderr
        assert not (tmp_path / "data" / "bot.db").exists()


def test_default_proxy_url_with_a_pasted_route_is_used_as_proxy_set_keeps_it(
    tmp_path: Path,
) -> None:
    pasted = "http://127.0.0.1:9/v1/chat/completions"
    session = f"/proxy show\n/proxy set {pasted}\n/proxy show\n"
    result = chatbot(tmp_path, "console", stdin=session, **console_env(DEFAULT_PROXY_URL=pasted))
    assert result.returncode == 0, result.stderr
    shown = re.findall(r"Proxy URL: (\S+)", result.stdout)
    assert shown == ["http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"], result.stdout
    log = (tmp_path / "data" / "chatbot.log").read_text()
    assert log.count("DEFAULT_PROXY_URL is used as http://127.0.0.1:9/v1;") == 1


def test_one_secret_no_key_opens_can_be_forgotten_so_the_rest_rotate(tmp_path: Path) -> None:
    """One secret under a lost key blocked every rotation, and the old key could never be
    retired without SQL. A start with keys that open no stored secret said nothing."""
    lost, old, new = (chatbot(tmp_path, "keygen").stdout.strip() for _ in range(3))
    assert chatbot(tmp_path, "migrate").returncode == 0
    url = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"
    admin = Actor("a", "A", is_channel_admin=True)

    async def put(keys: str, channel: str, value: str) -> None:
        store = await Store.open(
            url, SecretBox.from_setting(keys), defaults=ChannelConfig.of(source=Source.OPENAI)
        )
        ref = ChannelRef(Platform.CONSOLE, channel_id=channel)
        await store.set_secret(ref, Scope.CHANNEL, "openai_api_key", SecretValue(value), admin)
        await store.close()

    asyncio.run(put(lost, "gone", "sk-lost-key-444"))
    asyncio.run(put(old, "kept", "sk-kept-key-555"))

    refused = chatbot(tmp_path, "rotate-keys", BOT_SECRET_KEYS=f"{new},{old}")
    assert refused.returncode == 2, refused.stderr
    assert "`chatbot rotate-keys --forget-unreadable` deletes the secrets" in refused.stderr

    started = chatbot(
        tmp_path, "console", "--verbose", stdin="/quit\n", BOT_SECRET_KEYS=f"{new},{old}"
    )
    lost_id = SecretBox.from_setting(lost).primary_key_id
    assert started.returncode == 0, started.stderr
    assert (
        f"1 stored secret(s) were encrypted with key {lost_id}, which BOT_SECRET_KEYS lacks"
        in started.stderr
    )
    assert SecretBox.from_setting(old).primary_key_id not in started.stderr

    # Keys that open none of them (another .env): nothing is deleted.
    wrong = chatbot(tmp_path, "rotate-keys", "--forget-unreadable", BOT_SECRET_KEYS=new)
    assert wrong.returncode == 1, wrong.stderr
    assert "none of the 2 stored secret(s) was encrypted with a key in BOT_SECRET_KEYS" in (
        wrong.stderr
    )
    done = chatbot(tmp_path, "rotate-keys", "--forget-unreadable", BOT_SECRET_KEYS=f"{new},{old}")
    assert done.returncode == 0, done.stderr
    new_id = SecretBox.from_setting(new).primary_key_id
    assert done.stdout.splitlines() == [
        "Forgot the openai_api_key of channel gone on console: no key opened it.",
        f"Re-encrypted 1 secret(s) under key {new_id} (the first in BOT_SECRET_KEYS); the "
        "others can go once every process runs with it first.",
    ]
    assert "sk-" not in done.stdout + done.stderr
    with sqlite3.connect(tmp_path / "data" / "bot.db") as conn:
        assert conn.execute("SELECT key_id FROM secrets").fetchall() == [(new_id,)]
        assert conn.execute(
            "SELECT actor_id, action, detail FROM audit_log WHERE action = 'secret.forget'"
        ).fetchall() == [("operator", "secret.forget", "openai_api_key unreadable")]


@pytest.mark.parametrize("between", [" ", ";", "\n", ""])
def test_two_keys_not_separated_by_a_comma_stop_the_start_and_delete_nothing(
    tmp_path: Path, between: str
) -> None:
    """`BOT_SECRET_KEYS=NEW OLD` (a space, not a comma) was read as NEW alone: the secrets
    under OLD were unreadable, and `rotate-keys --forget-unreadable`, which the refusal
    names, deleted them."""
    old, new = (chatbot(tmp_path, "keygen").stdout.strip() for _ in range(2))
    assert chatbot(tmp_path, "migrate").returncode == 0
    url = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"
    admin = Actor("a", "A", is_channel_admin=True)

    async def put(keys: str, channel: str, value: str) -> None:
        store = await Store.open(
            url, SecretBox.from_setting(keys), defaults=ChannelConfig.of(source=Source.OPENAI)
        )
        ref = ChannelRef(Platform.CONSOLE, channel_id=channel)
        await store.set_secret(ref, Scope.CHANNEL, "openai_api_key", SecretValue(value), admin)
        await store.close()

    asyncio.run(put(old, "before", "sk-under-old-666"))  # before the new key came
    asyncio.run(put(f"{new},{old}", "after", "sk-under-new-777"))  # set since

    def stored() -> list[tuple[object, ...]]:
        with sqlite3.connect(tmp_path / "data" / "bot.db") as conn:
            return conn.execute("SELECT key_id, nonce, ciphertext FROM secrets").fetchall()

    before = stored()
    keys = f"{new}{between}{old}"
    for args in (["rotate-keys", "--forget-unreadable"], ["console"]):
        result = chatbot(tmp_path, *args, stdin="/quit\n", BOT_SECRET_KEYS=keys)
        stderr = one_line_failure(result)
        assert "BOT_SECRET_KEYS entry #1" in stderr, args
        if between:
            assert "separate keys with commas" in stderr
        assert new.rstrip("=") not in stderr and old.rstrip("=") not in stderr
        assert "sk-under" not in result.stdout + stderr
        assert stored() == before, args


# Ctrl-C as the command's modules load: a hook on the import system sends it when the
# named module is first looked for, so it lands inside an import, where a real one does.
_CTRL_C_WHILE_LOADING = """
import os, runpy, signal, sys, tomllib

loading, entry = sys.argv[1:3]

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == loading:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.argv = ["chatbot", *sys.argv[3:]]
sys.meta_path.insert(0, CtrlC())
if entry == "-m":
    runpy.run_module("bot", run_name="__main__", alter_sys=True)
else:
    with open("pyproject.toml", "rb") as f:
        module, _, name = tomllib.load(f)["project"]["scripts"]["chatbot"].partition(":")
    sys.exit(getattr(__import__(module, fromlist=[name]), name)())
"""


@pytest.mark.parametrize("entry", ["-m", "chatbot"])
@pytest.mark.parametrize("loading", ["bot.cli", "sqlalchemy"])
def test_ctrl_c_while_the_command_starts_ends_it_quietly(
    tmp_path: Path, entry: str, loading: str
) -> None:
    """Ctrl-C in the second or so `chatbot copy-database` (or any command) takes to load
    its modules printed a Python traceback of the import it broke, and the shell saw the
    process killed by SIGINT (operator probe). It now ends quietly with status 130, as a
    Ctrl-C once it runs does; `python -m bot` and the installed `chatbot` alike."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "MATRIX"))}
    done = subprocess.run(
        [
            *(sys.executable, "-c", _CTRL_C_WHILE_LOADING, loading, entry),
            *("copy-database", "--to", f"sqlite+aiosqlite:///{tmp_path}/to.db"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**base, "DATA_DIR": str(tmp_path / "data"), "BOT_SECRET_KEYS": generate_key()},
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "")
    assert not (tmp_path / "to.db").exists()
