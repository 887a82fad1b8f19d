"""The real entry point (`python -m bot console`) driven through stdin, as a script would.

Runs against the real llama.cpp server; the database is inspected afterwards.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.store import generate_key
from tests.peers.llamacpp import LlamaCppPeer

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-console-e2e-0123456789abcdef"


def console(tmp_path: Path, lines: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DEFAULT_", "DISCORD", "MATRIX"))
    }
    base.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/data/chatbot.db",
        BOT_SECRET_KEYS=env.pop("BOT_SECRET_KEYS", ""),
        ALLOW_PRIVATE_ENDPOINTS="true",
        LOG_LEVEL="INFO",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "bot", "console", "--channel", "e2e"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=base,
        timeout=180,
        check=False,
    )


@pytest.mark.llamacpp
def test_console_session_end_to_end(tmp_path: Path, llamacpp_peer: LlamaCppPeer) -> None:
    secret_keys = generate_key()
    first = console(
        tmp_path,
        [
            "/source custom",
            f"/proxy set {llamacpp_peer.url}",
            "/key set custom",
            KEY,
            "/models external",
            f"/model {llamacpp_peer.model}",
            "/params max_tokens 24",
            "Name one colour.",
            "/settings",
        ],
        BOT_SECRET_KEYS=secret_keys,
    )
    out = first.stdout
    assert first.returncode == 0, first.stderr
    assert "Source set to custom" in out
    assert f"Using {llamacpp_peer.url_v1} (added /v1 for you)" in out
    assert "Saved the custom key for this channel (ends …cdef)" in out
    assert llamacpp_peer.model in out
    assert "Model set to" in out
    assert "API key: set (…cdef, channel)" in out
    assert KEY not in out + first.stderr

    db = tmp_path / "data" / "chatbot.db"
    raw = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith("chatbot.db"))
    assert KEY.encode() not in raw
    with sqlite3.connect(db) as conn:
        source, url, resolved, model = conn.execute(
            "SELECT source, proxy_url, resolved_url, model FROM channel_configs "
            "WHERE platform='console' AND channel_id='e2e'"
        ).fetchone()
        assert (source, url, resolved, model) == (
            "custom",
            llamacpp_peer.url,
            llamacpp_peer.url_v1,
            llamacpp_peer.model,
        )
        rows = conn.execute("SELECT role, content FROM messages ORDER BY id").fetchall()
        assert [r[0] for r in rows] == ["user", "assistant"]
        assert rows[0][1] == "Name one colour."
        assert rows[1][1].strip() and rows[1][1].strip() in out  # the streamed answer was printed
        (secret_rows,) = conn.execute("SELECT count(*) FROM secrets").fetchone()
        assert secret_rows == 1

    second = console(tmp_path, ["/reset", "/settings"], BOT_SECRET_KEYS=secret_keys)
    assert second.returncode == 0, second.stderr
    assert "Forgot 2 messages" in second.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (0,)


def test_console_without_secret_key_says_how_to_fix(tmp_path: Path) -> None:
    result = console(tmp_path, ["hello"])
    assert result.returncode == 2
    assert "BOT_SECRET_KEYS" in result.stderr and "./scripts/run.sh keygen" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_platform_points_to_console(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "MATRIX"))}
    env.update(BOT_SECRET_KEYS=generate_key(), DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/x.db")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "DISCORD_TOKEN" in result.stderr and "./scripts/run.sh console" in result.stderr
    assert "Traceback" not in result.stderr


def test_attach_clear_says_what_it_did(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("some notes")
    result = console(
        tmp_path,
        ["/attach clear", "/attach notes.txt", "/attach clear", "/attach"],
        BOT_SECRET_KEYS=generate_key(),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Nothing was attached.", lines  # it said "Dropped the attached files."
    assert "Dropped the attached files." in lines and lines[-1].startswith("Nothing is attached")


def test_a_file_name_in_a_refusal_reads_as_written(tmp_path: Path) -> None:
    """Chat platforms get its markdown escaped (`\\_\\_init\\_\\_`); a terminal shows none."""
    name = "__init__ [v2] *draft*.bin"
    (tmp_path / name).write_bytes(bytes(range(256)) * 4)
    result = console(tmp_path, [f'/attach "{name}"'], BOT_SECRET_KEYS=generate_key())
    assert result.returncode == 0, result.stderr
    assert f"{name} looks like a binary file" in result.stdout, result.stdout


def test_backslashes_typed_are_shown_as_typed(tmp_path: Path) -> None:
    """Undoing chat platforms' markdown escapes for the terminal took out backslashes
    that were really there: the prompt showed `Use * for bullets; shrug ¯_(ツ)_/¯`."""
    prompt = r"Use \* for bullets; shrug ¯\_(ツ)_/¯ in C:\data\.env"
    result = console(tmp_path, [f"/system {prompt}", "/settings"], BOT_SECRET_KEYS=generate_key())
    assert result.returncode == 0, result.stderr
    assert prompt in result.stdout, result.stdout


def test_quit_and_exit_leave_the_console(tmp_path: Path) -> None:
    for leave in ("/quit", "/EXIT"):
        result = console(tmp_path, ["/help", leave, "/help"], BOT_SECRET_KEYS=generate_key())
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("How to connect:") == 1, leave  # nothing after it ran
        assert "Unknown command" not in result.stdout
