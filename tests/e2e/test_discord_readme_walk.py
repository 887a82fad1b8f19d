"""The README's Discord set-up walked as a new user walks it: `chatbot run` as its own
process in a fresh folder, with only what the README says to set (a `.env` made from
`.env.example`, the token pasted as the Developer Portal's page invites), against the
loopback fake Discord and a real llama.cpp server standing in for LM Studio; with the
steps people take out of order and the forms they paste on the way."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.bot_process import BotProcess, keygen
from tests.discord.fake_discord import FakeDiscord
from tests.peers.llamacpp import LlamaCppPeer
from tests.readme import PLACEHOLDER, settings_for

TOKEN = "loopback.bot.token-0123456789"
KEY = "tabby-7c6b5a4f3e2d1c0b"  # no provider's shape: only the bot's care hides it
PASSWORD = "lmstudio-5f4e3d2c1b0a9988"
ROOT = Path(__file__).resolve().parents[2]


def _readme_env(folder: Path, fake: FakeDiscord, secret_keys: str) -> None:
    """`.env` as `./scripts/run.sh` writes it, then the README's edits: the token (pasted
    with `Bot `, quotes and a trailing space), the operator's switch for a local server;
    the fake's URLs stand in for Discord's own."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    # README's quick start names what to set: its lines, the token in its placeholder.
    pasted = f'"Bot {TOKEN} "'
    quick = {
        f"{name}=": f"{name}={PLACEHOLDER.sub(pasted, value)}"
        for name, value in settings_for("DISCORD_").items()
    }
    assert f'DISCORD_TOKEN="Bot {TOKEN} "' in quick.values(), quick
    edits = {
        "BOT_SECRET_KEYS=": f"BOT_SECRET_KEYS={secret_keys}",
        **quick,
        "DISCORD_API_URL=": f"DISCORD_API_URL={fake.api_url}",
        "DISCORD_GATEWAY_URL=": f"DISCORD_GATEWAY_URL={fake.gateway_url}",
        "ALLOW_PRIVATE_ENDPOINTS=false": "ALLOW_PRIVATE_ENDPOINTS=true",
    }
    lines = [edits.get(line, line) for line in text.splitlines()]
    assert all(edit in lines for edit in edits.values()), "a line .env.example no longer has"
    (folder / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _clean_env() -> dict[str, str]:
    """`env -i` with PATH and HOME; PYTHONPATH only where it points at the code under test."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def _replies(fake: FakeDiscord) -> list[str]:
    """What each of Bob's commands answered: a message at once, or after "thinking…" a
    follow-up (in the order they came)."""
    shown = [str((r.get("data") or {}).get("content") or "") for r in fake.responses]
    return [s for s in shown if s] + [str(f.get("content", "")) for f in fake.followups]


async def _command(fake: FakeDiscord, *names: str, **options: Any) -> str:
    """Bob, with Manage Server, runs a command; the reply he sees once it came."""
    before = set(_replies(fake))
    await fake.slash(*names, manager=True, **options)
    await fake.wait_until(lambda: bool(set(_replies(fake)) - before), 60)
    [reply] = set(_replies(fake)) - before
    return reply


async def _posted(fake: FakeDiscord, count: int) -> list[str]:
    """The bot's messages in #general once there are `count` of them."""
    await fake.wait_until(lambda: len(fake.messages) >= count, 120)
    return [str(m["content"]) for m in fake.messages.values()]


def _rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return list(conn.execute(query))


@pytest.mark.llamacpp
async def test_the_readme_discord_walk_with_a_local_server(
    tmp_path: Path, llamacpp_peer: LlamaCppPeer
) -> None:
    fake = FakeDiscord(TOKEN)
    await fake.start()
    _readme_env(tmp_path, fake, await keygen())
    bot = await BotProcess.start(tmp_path, _clean_env(), ready_marker="logged in to Discord")
    cleo = (fake.user_id + 5, "cleo")  # a member without Manage Server
    try:
        await bot.wait_ready()
        # Before anything is set: the chat says what is missing and who sets it.
        await fake.user_says(f"<@{fake.bot_id}> hello?")
        [first] = await _posted(fake, 1)
        assert "An admin picks one with /model" in first
        said = await _command(fake, "source", source="custom")
        assert "Source set to custom." in said and "/proxy set <url>" in said
        # A member types the admins' command into a mention: told only admins can, not
        # sent to pick from a menu that does not show it to them.
        await fake.user_says(f"<@{fake.bot_id}> /model smollm2", by=cleo)
        refused = (await _posted(fake, 2))[-1]
        assert refused.startswith(
            "Only admins of this channel can use /model (members with Manage"
        ), refused
        # The key command typed as a message, no mention: taken out of the channel.
        asked = await fake.user_says(f"/key set custom {KEY}", mention_bot=False)
        hint = (await _posted(fake, 3))[-1]
        assert "I deleted your message" in hint and KEY not in hint
        assert fake.bot_calls("DELETE", f"/channels/{fake.channel_id}/messages/{asked}")
        # The URL as LM Studio shows it, in Discord's no-preview brackets, with its route.
        said = await _command(
            fake, "proxy", "set", url=f" <{llamacpp_peer.url_v1}/chat/completions> "
        )
        assert f"Endpoint set to {llamacpp_peer.url_v1}." in said, said
        assert "Status check: OK" in said and "Pick one with /model" in said
        said = await _command(fake, "models", "external")
        assert llamacpp_peer.model in said
        said = await _command(fake, "model", id=f"<{llamacpp_peer.model}>")
        assert said.startswith(f"Model set to {llamacpp_peer.model}.")
        # A password pasted into the form with quotes, spaces and a line break around it.
        before = set(_replies(fake))
        await fake.slash("proxy", "password", manager=True)
        await fake.wait_until(lambda: any(r.get("type") == 9 for r in fake.responses), 30)
        await fake.submit_modal({"secret:password": f"  '{PASSWORD}' \n"}, manager=True)
        await fake.wait_until(lambda: bool(set(_replies(fake)) - before), 60)
        [said] = set(_replies(fake)) - before
        assert said.startswith(f"Saved the proxy password (ends …{PASSWORD[-4:]})"), said
        assert "Status check: OK" in said
        await fake.user_says(f"<@{fake.bot_id}> Say hello.")
        await fake.wait_until(
            lambda: any("cc:regen:" in repr(m["components"]) for m in fake.messages.values()),
            180,
        )
        code = await bot.stop()
    finally:
        await bot.close()
        await fake.stop()
    log = bot.log
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and TOKEN not in log, log[-3000:]
    assert KEY not in log and PASSWORD not in log, log[-3000:]
    assert all(KEY not in repr(c.body) and PASSWORD not in repr(c.body) for c in fake.calls)
    db = tmp_path / "data" / "chatbot.db"  # DATA_DIR's default, in the folder it ran in
    assert _rows(db, "SELECT count(*) FROM secrets") == [(1,)]  # the password; not the key
    answered = _rows(db, "SELECT content FROM messages WHERE role = 'assistant'")
    assert len(answered) == 1 and answered[0][0].strip()
    assert all(KEY not in str(row) for row in _rows(db, "SELECT content FROM messages"))
    asked_model = _rows(db, "SELECT content FROM messages WHERE role = 'user'")
    assert [row[0] for row in asked_model] == ["Say hello."]
