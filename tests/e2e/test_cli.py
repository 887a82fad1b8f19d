"""The `chatbot` command as an operator runs it: help, keygen, migrate, rotate-keys."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from bot.store import SecretBox, Store
from bot.types import Actor, ChannelConfig, ChannelRef, Platform, Scope, SecretValue, Source


def chatbot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "MATRIX"))}
    base.update(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/data/bot.db", **env)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=base,
        timeout=120,
        check=False,
    )


def test_help_lists_every_subcommand(tmp_path: Path) -> None:
    result = chatbot(tmp_path, "--help")
    assert result.returncode == 0
    for name in ("run", "console", "migrate", "keygen", "rotate-keys"):
        assert name in result.stdout


def test_keygen_prints_a_usable_key(tmp_path: Path) -> None:
    first = chatbot(tmp_path, "keygen").stdout.strip()
    second = chatbot(tmp_path, "keygen").stdout.strip()
    assert first != second
    SecretBox.from_setting(f"{first},{second}")  # parses: valid keys


def test_migrate_creates_the_database_on_first_run(tmp_path: Path) -> None:
    result = chatbot(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert "Database is at revision" in result.stdout
    assert (tmp_path / "data" / "bot.db").is_file()
    again = chatbot(tmp_path, "migrate")
    assert again.stdout == result.stdout


def test_rotate_keys_re_encrypts_under_the_first_key(tmp_path: Path) -> None:
    old = chatbot(tmp_path, "keygen").stdout.strip()
    new = chatbot(tmp_path, "keygen").stdout.strip()
    assert chatbot(tmp_path, "migrate").returncode == 0
    url = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"
    ref = ChannelRef(Platform.CONSOLE, channel_id="x")
    admin = Actor("a", "A", is_channel_admin=True)

    async def store_two(keys: str) -> None:
        store = await Store.open(
            url, SecretBox.from_setting(keys), defaults=ChannelConfig(Source.OPENAI)
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
            url, SecretBox.from_setting(keys), defaults=ChannelConfig(Source.OPENAI)
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


def test_rotate_keys_without_the_old_key_fails_clearly_and_changes_nothing(tmp_path: Path) -> None:
    old = chatbot(tmp_path, "keygen").stdout.strip()
    other = chatbot(tmp_path, "keygen").stdout.strip()
    assert chatbot(tmp_path, "migrate").returncode == 0
    url = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"

    async def put() -> None:
        store = await Store.open(
            url, SecretBox.from_setting(old), defaults=ChannelConfig(Source.OPENAI)
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
    assert "openai_api_key" in result.stderr and "Traceback" not in result.stderr
    assert "sk-keep-me" not in result.stderr
    assert stored() == before
    assert chatbot(tmp_path, "rotate-keys", BOT_SECRET_KEYS=f"{other},{old}").returncode == 0
    assert stored() != before
