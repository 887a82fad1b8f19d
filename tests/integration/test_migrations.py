"""Migrations: empty → head → base on SQLite and a real PostgreSQL, and no model drift."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, Integer, MetaData, event, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from bot.app import StartError
from bot.app import migrate as start_migration
from bot.core import Core
from bot.media.files import file_block
from bot.providers import ProviderHub, ProviderSettings
from bot.settings import load_settings
from bot.store import SecretBox, Store, generate_key, migrate
from bot.store.db import create_engine
from bot.store.models import Base
from bot.types import Actor, ChannelConfig, ChannelRef, Platform, Reply, Role, Source
from tests.discord.fake_openai import Script, fake_openai
from tests.unit.test_migration_0022 import M as migration_0022

ROOT = Path(__file__).resolve().parents[2]

TABLES = {
    "channel_configs",
    "secrets",
    "messages",
    "model_cache",
    "audit_log",
    "blobs",
    "message_images",
    "posts",
    "usage",
    "limits",
    "access_rules",
    "quota_locks",
    "characters",
    "waiting_turns",
    "lore_timers",
}


async def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version"}


async def _diff(url: str, metadata: MetaData) -> list[Any]:
    def compare(sync: Connection) -> list[Any]:
        context = MigrationContext.configure(
            sync, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))

    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def test_upgrade_then_downgrade_then_upgrade_again(database_url: str) -> None:
    assert await migrate.current(database_url) is None
    assert await _tables(database_url) == set()

    assert await migrate.upgrade_to_head(database_url) == migrate.head()
    assert await _tables(database_url) == TABLES

    await migrate.downgrade(database_url, "base")
    assert await migrate.current(database_url) is None
    assert await _tables(database_url) == set()

    await migrate.upgrade(database_url)
    assert await migrate.current(database_url) == migrate.head()
    assert await _tables(database_url) == TABLES


async def test_upgrade_is_idempotent(database_url: str) -> None:
    await migrate.upgrade(database_url)
    await migrate.upgrade(database_url)
    assert await migrate.current(database_url) == migrate.head()


async def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    await migrate.upgrade(database_url)
    diff = await _diff(database_url, Base.metadata)
    print(f"\n[drift] {database_url.split(':')[0]}: {len(diff)} difference(s)")
    assert diff == []


async def test_drift_check_notices_a_difference(database_url: str) -> None:
    """The drift test can fail: an extra column in the models is reported."""
    await migrate.upgrade(database_url)
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        copy = table.to_metadata(changed)
        if table.name == "messages":
            copy.append_column(Column("extra", Integer, nullable=True))
    diff = await _diff(database_url, changed)
    assert any(op[0] == "add_column" and op[3].name == "extra" for op in diff)


def test_migrations_are_found_as_a_package() -> None:
    config = migrate.alembic_config()
    location = config.get_main_option("script_location")
    assert location is not None and location.endswith("migrations")
    assert migrate.head() == "0024"


def test_the_newest_revision_read_from_the_files_is_alembics_head() -> None:
    # upgrade_to_head skips Alembic when the database is already at this revision.
    assert migrate.newest_file_revision() == migrate.head()


_START = """
import asyncio, sys
from bot.store.migrate import upgrade_to_head
import bot.app, bot.characters, bot.commands.usage_report, bot.frontends.discord
from bot.store import SecretBox, Store, generate_key
from bot.types import Actor, ChannelConfig, ChannelRef, Platform, Scope

async def serve(url):
    head = await upgrade_to_head(url)
    box = SecretBox.from_setting(generate_key())
    store = await Store.open(url, box, defaults=ChannelConfig.of())
    ref = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
    await store.update_config(ref, Scope.CHANNEL, Actor("u1", "Ada"), {"model": "m"}, action="t")
    await store.close()
    return head

print(asyncio.run(serve(sys.argv[1])))
loaded = ("alembic", "mako", "PIL", "sqlalchemy.dialects.postgresql", "regex")
print(",".join(m for m in loaded if m in sys.modules))
"""


def test_a_start_at_head_loads_neither_alembic_nor_pillow(tmp_path: Path) -> None:
    """~19 MB of a serving process: Alembic only when the schema must change, Pillow
    only with the first image, chart or card, SQLAlchemy's PostgreSQL dialect only with
    PostgreSQL (an SQLite store writes without it), `regex` only with text that needs
    graphemes or Unicode scripts."""
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"

    def start() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", _START, url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            cwd=ROOT,
        )
        return done.stdout.splitlines()

    # A new database: migrated (Alembic brings its PostgreSQL support along).
    assert start() == [migrate.head(), "alembic,mako,sqlalchemy.dialects.postgresql"]
    assert start() == [migrate.head(), ""]  # at head: one SELECT, no Alembic


async def _execute(url: str, *statements: str) -> list[Any]:
    """Run plain SQL on the database; the rows of the last statement."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            result = None
            for statement in statements:
                result = await conn.execute(text(statement))
            return list(result) if result is not None and result.returns_rows else []
    finally:
        await engine.dispose()


_TURN = (
    "INSERT INTO messages (platform, server_id, channel_id, thread_id, role, content, "
    "token_estimate, state, image_count, hidden, created_at) VALUES ('discord', 'g', 'c', "
    "'', 'user', 'hi', 1, 'done', 1, false, CURRENT_TIMESTAMP)"
)


async def test_an_id_is_never_given_twice_after_the_newest_turn_is_forgotten(
    database_url: str,
) -> None:
    """SQLite gave the next turn the id of a newest one deleted: an answer's buttons
    (cc:regen:7) then named another turn."""
    await migrate.upgrade_to_head(database_url)
    await _execute(database_url, _TURN, _TURN)
    [(newest,)] = await _execute(database_url, "SELECT max(id) FROM messages")
    await _execute(database_url, f"DELETE FROM messages WHERE id = {newest}", _TURN)
    [(after,)] = await _execute(database_url, "SELECT max(id) FROM messages")
    assert after > newest


async def test_remaking_the_messages_table_keeps_what_refers_to_it(tmp_path: Path) -> None:
    """0010 makes SQLite's `messages` anew; dropping the old one with foreign keys on
    would have deleted every image link and post of every turn (ON DELETE CASCADE)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    await migrate.upgrade(url, "0009")
    await _execute(
        url,
        _TURN,
        "INSERT INTO blobs (sha256, media_type, data, size, created_at) "
        "VALUES ('ab', 'image/png', x'00', 1, CURRENT_TIMESTAMP)",
        "INSERT INTO message_images (message_id, position, sha256, name, media_type) "
        "VALUES (1, 0, 'ab', 'cat.png', 'image/png')",
    )
    assert await migrate.upgrade_to_head(url) == migrate.head()
    assert await _execute(url, "SELECT message_id, name FROM message_images") == [(1, "cat.png")]
    assert await _execute(url, "SELECT id, content FROM messages") == [(1, "hi")]
    assert await _execute(url, "PRAGMA foreign_key_check") == []


_IMAGE_OF_TURN_1 = (
    "INSERT INTO message_images (message_id, position, sha256, name, media_type) "
    "VALUES (1, 0, 'ab', 'cat.png', 'image/png')"
)


async def test_an_upgrade_that_leaves_rows_referring_to_none_is_not_committed(
    tmp_path: Path,
) -> None:
    """Upgrade probe: SQLite's foreign key check ran after Alembic had committed the
    upgrade itself, so an upgrade that broke references (as remaking `messages` with
    foreign keys on would have: every image link gone) stayed, said to be "left as it was"."""
    from alembic import command

    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    await migrate.upgrade(url, "0016")
    await _execute(url, _TURN, _IMAGE_OF_TURN_1)

    def breaking(config: Any) -> None:  # a migration that loses the turn its image shows
        command.upgrade(config, "head")
        config.attributes["connection"].exec_driver_sql("DELETE FROM messages")

    with pytest.raises(migrate.MigrationBroke, match="1 rows refer to rows that are gone"):
        await migrate._run(url, breaking)
    assert await migrate.current(url) == "0016"
    assert await _execute(url, "SELECT id, content FROM messages") == [(1, "hi")]
    assert "lore_timers" not in await _tables(url)


def test_rows_that_referred_to_none_before_an_upgrade_do_not_stop_it(tmp_path: Path) -> None:
    """Upgrade probe: an image link whose turn was deleted in the sqlite3 shell (foreign
    keys are off there) made every later upgrade say "1 rows refer to rows that are gone
    … it was left as it was. Check that the bot's user may write that file", though the
    upgrade had been committed; the next start then went on without a word."""
    path = tmp_path / "bot.db"
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(migrate.upgrade(url, "0016"))
    shell = sqlite3.connect(path)  # as `sqlite3 bot.db` does: foreign keys off
    shell.execute(_TURN.replace("false", "0"))
    shell.execute(_IMAGE_OF_TURN_1)
    shell.execute("DELETE FROM messages")
    shell.commit()
    shell.close()

    done = subprocess.run(
        [sys.executable, "-m", "bot", "migrate"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "DATABASE_URL": url, "DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)},
    )
    assert (done.returncode, done.stdout) == (0, "Database is at revision 0024.\n"), done.stderr
    assert "1 row(s) of message_images refer to messages rows that are gone" in done.stderr
    assert asyncio.run(migrate.current(url)) == "0024"
    # Left as they were: the upgrade deletes nothing it did not make.
    assert asyncio.run(_execute(url, "SELECT name FROM message_images")) == [("cat.png",)]


def _old_turn(role: str, content: str, channel: str = "c", thread: str = "") -> str:
    """A message as the code before 0005 stored it: no reply_to, no hidden, no author id."""
    return (
        "INSERT INTO messages (platform, server_id, channel_id, thread_id, role, content, "
        f"token_estimate, state, image_count, created_at) VALUES ('discord', 'g', '{channel}', "
        f"'{thread}', '{role}', '{content}', 1, 'done', 0, CURRENT_TIMESTAMP)"
    )


async def test_answers_from_before_0005_answer_their_questions_after_an_upgrade(
    database_url: str,
) -> None:
    """Regenerating an answer stored before 0005 left it shown beside the new one (the
    model read both run together) and /swipe found one answer: it answered no question."""
    await migrate.upgrade(database_url, "0004")
    await _execute(
        database_url,
        _old_turn("assistant", "before any question"),
        _old_turn("user", "q1"),
        _old_turn("user", "q1 in a thread", thread="t"),
        _old_turn("assistant", "a1"),
        _old_turn("user", "q1 elsewhere", channel="d"),
        _old_turn("user", "q2"),
        _old_turn("assistant", "a2"),
        _old_turn("assistant", "a1 in a thread", thread="t"),
    )
    await migrate.upgrade_to_head(database_url)
    rows = await _execute(
        database_url,
        "SELECT a.content, q.content FROM messages a LEFT JOIN messages q ON q.id = a.reply_to "
        "WHERE a.role = 'assistant' ORDER BY a.id",
    )
    assert rows == [
        ("before any question", None),
        ("a1", "q1"),
        ("a2", "q2"),
        ("a1 in a thread", "q1 in a thread"),
    ]

    ref = ChannelRef(Platform.DISCORD, channel_id="c", server_id="g")
    async with fake_openai(Script(chunks=["a2, again"])) as endpoint:
        defaults = ChannelConfig.of(source=Source.CUSTOM, model="m", proxy_url=endpoint.url_v1)
        store = await Store.open(
            database_url, SecretBox.from_setting(generate_key()), defaults=defaults
        )
        core = Core(store, ProviderHub(ProviderSettings(allow_private_endpoints=True)))
        try:
            admin = Actor("u1", "Ada", is_channel_admin=True)
            for command in ("/regenerate", "/swipe prev"):
                inv = core.parse(command, Platform.DISCORD)
                done = await core.run_control(ref, admin, inv, _Quiet())
                assert not isinstance(done, Reply) and not done.notice, done
            history = await store.history(ref, 10)
        finally:
            await core.close()
    # The old answer is shown again after the swipe back, and alone: not both at once.
    assert [(e.role, e.content) for e in history][-2:] == [
        (Role.USER, "q2"),
        (Role.ASSISTANT, "a2"),
    ]
    assert done.alternative == (1, 2)
    # Back to before 0005: the answer not shown goes (that code would show both).
    await migrate.downgrade(database_url, "0004")
    rows = await _execute(
        database_url,
        "SELECT content FROM messages WHERE channel_id = 'c' AND thread_id = '' ORDER BY id",
    )
    assert [content for (content,) in rows] == ["before any question", "q1", "a1", "q2", "a2"]


async def test_0021_guesses_which_questions_from_before_it_carried_files(
    database_url: str,
) -> None:
    """A question stored with images or a file's fenced text says it carried files once
    upgraded to 0021 (its guess: 0022 makes it right)."""
    await migrate.upgrade(database_url, "0020")
    fenced = "read this\nnotes.txt\n```\n42\n```"
    await _execute(
        database_url,
        _old_turn("user", "plain"),
        _old_turn("user", fenced),
        _old_turn("assistant", "an answer\n```\ncode\n```"),
        _old_turn("user", "a picture").replace(", 0, CURRENT", ", 1, CURRENT"),
    )
    await migrate.upgrade(database_url, "0021")
    rows = await _execute(database_url, "SELECT content, files FROM messages ORDER BY id")
    assert [(content, bool(files)) for content, files in rows] == [
        ("plain", False),
        (fenced, True),
        ("an answer\n```\ncode\n```", False),
        ("a picture", True),
    ]
    await migrate.downgrade(database_url, "0020")
    assert len(await _execute(database_url, "SELECT content FROM messages")) == 4


def _rows_since_0021() -> list[tuple[str, str, int, bool, bool]]:
    """(content, role, image_count, files as 0021 or the code after it left it, files
    after 0022): 0021's guess (images, any fence), images alone flagged since; a batch's
    worth and more of them, for the upgrade to go over in several."""
    block = file_block(b"def hello():\n    return 'hi'\n", "hello.py", 10_000).text
    cut = file_block(b"a line of the log\n" * 500, "big.log", 300).text
    assert cut.endswith("characters left out]"), cut[-80:]
    rows = [
        ("plain", "user", 0, False, False),
        ("fix this\n```py\nprint(1)\n```", "user", 0, True, False),  # 0021: a fence
        ("```\nprint(1)\n```\nwhat is wrong?", "user", 0, True, False),
        ("", "user", 1, True, False),  # a picture alone
        ("what colour is it?", "user", 2, True, False),
        ("review this" + block, "user", 0, True, True),
        (block.lstrip("\n"), "user", 1, True, True),  # a file and a picture
        ("summarise" + cut, "user", 0, True, True),
        ("read this" + block, "user", 0, False, True),  # as the bot writes a file's
        ("an answer\n```python\nprint(1)\n```", "assistant", 0, False, False),
    ]
    many = [(f"picture {n}", "user", 1, True, False) for n in range(migration_0022.BATCH + 10)]
    return [*rows, *many, ("last" + block, "user", 0, False, True)]


async def test_the_files_flag_is_made_right_by_0022(database_url: str) -> None:
    """0021 flagged a question with images, or any fenced block, as carrying files, and
    the code after it one with images alone: an edit of theirs was kept out, though their
    text holds nothing of a file's. After 0022 only a question ending with a text file's
    block as the bot writes it keeps its text; a picture's reads as edited."""
    await migrate.upgrade(database_url, "0021")
    rows = _rows_since_0021()
    insert = text(
        "INSERT INTO messages (platform, server_id, channel_id, thread_id, role, content, "
        "token_estimate, state, image_count, hidden, author_id, files, created_at) VALUES "
        "('discord', 'g', 'c', '', :role, :content, 1, 'done', :images, false, 'u1', :files, "
        "CURRENT_TIMESTAMP)"
    )
    link = text("INSERT INTO posts (message_id, platform, post_id) VALUES (:m, 'discord', :p)")
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert,
                [{"content": c, "role": r, "images": i, "files": f} for c, r, i, f, _ in rows],
            )
            found = await conn.execute(text("SELECT id FROM messages ORDER BY id"))
            ids = [row_id for (row_id,) in found]
            await conn.execute(link, [{"m": row_id, "p": f"post{row_id}"} for row_id in ids])
    finally:
        await engine.dispose()
    assert await migrate.upgrade_to_head(database_url) == migrate.head()
    after = await _execute(database_url, "SELECT content, files FROM messages ORDER BY id")
    assert [(c, bool(f)) for c, f in after] == [(c, now) for c, _, _, _, now in rows]

    # An edit of a picture's question is read now; a file's question keeps its text.
    box = SecretBox.from_setting(generate_key())
    store = await Store.open(database_url, box, defaults=ChannelConfig())
    core = Core(store, ProviderHub(ProviderSettings()))
    try:
        for row_id in (ids[3], ids[5]):
            await core.edited(Platform.DISCORD, "c", f"post{row_id}", "what is it?", author="u1")
    finally:
        await core.close()
    edited = await _execute(
        database_url, f"SELECT content FROM messages WHERE id IN ({ids[3]}, {ids[5]}) ORDER BY id"
    )
    assert edited == [("what is it?",), (rows[5][0],)]
    await migrate.downgrade(database_url, "0021")
    assert len(await _execute(database_url, "SELECT id FROM messages")) == len(rows)


async def test_model_lists_from_before_0023_are_taken_as_their_urls(database_url: str) -> None:
    """A list stored while the channel or its server set a URL is that URL's once
    upgraded; one fetched for the operator's URL or the source's own API (not told apart
    in the database) is offered no more until a check fetches it anew."""
    await migrate.upgrade(database_url, "0022")
    config = (
        "INSERT INTO channel_configs (platform, server_id, channel_id, proxy_url, "
        "created_at, updated_at) VALUES ('discord', 's', '{}', {}, CURRENT_TIMESTAMP, "
        "CURRENT_TIMESTAMP)"
    )
    listed = (
        "INSERT INTO model_cache (platform, server_id, channel_id, source, models, "
        "fetched_at) VALUES ('discord', 's', '{}', 'custom', '[]', CURRENT_TIMESTAMP)"
    )
    await _execute(
        database_url,
        config.format("", "'http://server.test/v1'"),
        config.format("own", "'http://own.test/v1'"),
        config.format("follows", "NULL"),
        *(listed.format(channel) for channel in ("own", "follows")),
        "INSERT INTO model_cache (platform, server_id, channel_id, source, models, "
        "fetched_at) VALUES ('console', '', 'e2e', 'custom', '[]', CURRENT_TIMESTAMP)",
    )
    await migrate.upgrade_to_head(database_url)
    rows = await _execute(
        database_url, "SELECT channel_id, endpoint_url FROM model_cache ORDER BY channel_id"
    )
    assert rows == [
        ("e2e", None),
        ("follows", "http://server.test/v1"),
        ("own", "http://own.test/v1"),
    ]
    await migrate.downgrade(database_url, "0022")
    assert len(await _execute(database_url, "SELECT id FROM model_cache")) == 3


class _Quiet:
    async def typing(self) -> None:
        pass

    async def update(self, answer: str, reasoning: str = "") -> None:
        pass

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        pass


async def test_a_start_waiting_for_another_upgrade_on_postgresql_says_so(
    postgres_url: str, caplog: Any
) -> None:
    """Upgrade probe: a start behind another process's long upgrade (or a killed one's,
    whose server process still ran it) waited on PostgreSQL's lock without a word."""
    import asyncio
    import logging

    engine = create_engine(postgres_url, poolclass=NullPool)
    try:
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_advisory_lock(:key)"), {"key": migrate._LOCK})
            with caplog.at_level(logging.INFO, logger="bot.store.migrate"):
                waiting = asyncio.create_task(migrate.upgrade(postgres_url))
                async with asyncio.timeout(30):
                    while "another process is upgrading" not in caplog.text:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                assert not waiting.done()
                await other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": migrate._LOCK})
                await waiting  # then it goes on
    finally:
        await engine.dispose()
    assert await migrate.current(postgres_url) == migrate.head()


async def test_a_direct_chats_secrets_know_their_owner_after_0015(database_url: str) -> None:
    """The owner of a secret set in a Matrix direct chat before 0015 is whoever set it
    last, as the audit log says; a room's other secrets have none."""

    blob = "X'00'" if database_url.startswith("sqlite") else "'\\x00'::bytea"

    def secret(room: str, name: str, mark: str) -> str:
        return (
            "INSERT INTO secrets (platform, server_id, channel_id, name, key_id, nonce, "
            f"ciphertext, direct_chat, created_at, updated_at) VALUES ('matrix', '', '{room}', "
            f"'{name}', 'k', {blob}, {blob}, {mark}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )

    def audit(room: str, actor: str, detail: str) -> str:
        return (
            "INSERT INTO audit_log (platform, server_id, channel_id, actor_id, actor_name, "
            f"action, detail, created_at) VALUES ('matrix', '', '{room}', '{actor}', 'n', "
            f"'secret.set', '{detail}', CURRENT_TIMESTAMP)"
        )

    await migrate.upgrade(database_url, "0014")
    await _execute(
        database_url,
        secret("!dm:hs", "openai_api_key", "'personal'"),
        secret("!dm:hs", "proxy_password", "'legacy'"),
        secret("!group:hs", "openai_api_key", "NULL"),
        audit("!dm:hs", "@first:hs", "openai_api_key set"),
        audit("!dm:hs", "@alice:hs", "openai_api_key set"),  # the last one to set it
        audit("!dm:hs", "@bob:hs", "proxy_password set"),
        audit("!group:hs", "@carol:hs", "openai_api_key set"),
    )
    await migrate.upgrade_to_head(database_url)
    rows = await _execute(
        database_url, "SELECT channel_id, name, owner FROM secrets ORDER BY channel_id, name"
    )
    assert [tuple(row) for row in rows] == [
        ("!dm:hs", "openai_api_key", "@alice:hs"),
        ("!dm:hs", "proxy_password", "@bob:hs"),
        ("!group:hs", "openai_api_key", None),
    ]


# A second process holding SQLite's write lock until its stdin closes.
_HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
"""


async def test_an_upgrade_behind_a_held_write_lock_names_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage probe: another process holding SQLite's write lock past the upgrade's
    wait (a stuck process, an sqlite3 shell in a transaction) stopped the start with
    "database is locked" and the advice to check the file's rights, which were fine."""
    path = tmp_path / "bot.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(url, "0005")
    monkeypatch.setattr(migrate, "MIGRATION_WAIT_MS", 500)  # 5 minutes, in a start
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLD_WRITE_LOCK,
        str(path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert await holder.stdout.readline() == b"held\n"
        with pytest.raises(StartError) as failed:
            await start_migration(load_settings(database_url=url, data_dir=str(tmp_path)))
    finally:
        holder.stdin.close()
        await holder.wait()
    said = str(failed.value)
    assert said.startswith(f"could not upgrade the database file {path}: another process held")
    assert "The upgrade from schema revision 0005 was not made" in said
    assert "End what holds it" in said and "may write that file" not in said
    assert await migrate.current(url) == "0005"


async def test_a_refusal_at_the_upgrades_first_begin_other_than_the_lock_is_a_driver_error(
    tmp_path: Path,
) -> None:
    """Review: the upgrade's first BEGIN IMMEDIATE (a short wait, to say when another
    process holds the lock) ran on the driver's own cursor, outside SQLAlchemy's
    wrapping: any other refusal came out as a bare sqlite3 error, which the start's
    callers (they catch DBAPIError and say it in words) let through as a traceback. A
    connection the driver left inside a transaction is one such refusal."""
    engine = migrate.migration_engine(f"sqlite+aiosqlite:///{tmp_path}/bot.db")

    @event.listens_for(engine.sync_engine, "connect")
    def _left_in_a_transaction(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("BEGIN")
        cursor.close()

    try:
        with pytest.raises(DBAPIError, match="within a transaction"):
            async with engine.begin():
                pass
    finally:
        await engine.dispose()
