"""README's quick start walked as written: a fresh folder, `.env` made from `.env.example`
as `./scripts/run.sh` makes it plus the quick start's own line, its shell command, and the
lines it says to type, against a real llama.cpp server (no key, as LM Studio) and the
LiteLLM proxy (a master key). `./scripts/run.sh console` is run as what it execs
(`chatbot console`): tests/e2e/test_fresh_clone.py runs the script itself on a fresh clone.
The Discord and Matrix lines are what the README walks there set
(tests/e2e/test_discord_readme_walk.py, tests/matrix/test_readme_walk_on_synapse.py)."""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.store import generate_key
from tests.peers.litellm import LiteLLMPeer
from tests.peers.llamacpp import LlamaCppPeer
from tests.readme import PLACEHOLDER, quick_start

ROOT = Path(__file__).resolve().parents[2]
URL = "http://localhost:1234"  # the quick start's example server (LM Studio's address)
# `/system` alone shows the prompt; none is set, so its line ends each step's output.
SEPARATOR_COMMAND, SEPARATOR = "/system", "System prompt: (none)\n"


def _fresh_folder(folder: Path) -> None:
    """`.env` as `./scripts/run.sh` writes it, then the quick start's `.env` line(s) for
    the console (the block naming neither Discord nor Matrix)."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    text = re.sub(r"^BOT_SECRET_KEYS=.*$", f"BOT_SECRET_KEYS={generate_key()}", text, flags=re.M)
    [local] = [
        block
        for block in quick_start().settings
        if not any(name.startswith(("DISCORD_", "MATRIX_")) for name in block)
    ]
    for name, value in local.items():
        line = re.compile(rf"^{name}=.*$", re.M)
        assert line.search(text), f"{name} is not a line of .env.example"
        text = line.sub(f"{name}={value}", text)
    (folder / ".env").write_text(text, encoding="utf-8")


def _console(folder: Path, steps: list[list[str]]) -> list[str]:
    """The quick start's shell command, `steps` typed into it; each step's output."""
    [command] = quick_start().shell
    program, *args = shlex.split(command)
    assert program == "./scripts/run.sh" and args == ["console"], command
    lines = [line for step in steps for line in [*step, SEPARATOR_COMMAND]]
    result = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=folder,
        # A new user's shell: none of the test run's settings, only where this checkout is.
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(folder),
            "PYTHONPATH": str(ROOT),
        },
        timeout=300,
        check=False,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    *replies, after = result.stdout.split(SEPARATOR)
    assert after == "" and len(replies) == len(steps), result.stdout
    return replies


def _typed(url: str, model: str) -> list[list[str]]:
    """The quick start's lines with the reader's server and model in their places."""
    steps = []
    for line in quick_start().typed:
        line = line.replace(URL, url).replace("<id>", model)
        assert not PLACEHOLDER.search(line), f"a placeholder the walk cannot fill: {line}"
        steps.append([line])
    return steps


def _answered(folder: Path) -> list[str]:
    with sqlite3.connect(folder / "data" / "chatbot.db") as conn:
        rows = conn.execute("SELECT content FROM messages WHERE role = 'assistant'").fetchall()
    return [str(content) for (content,) in rows]


def _no_step_failed(steps: list[list[str]], replies: list[str]) -> None:
    for step, reply in zip(steps, replies, strict=True):
        for bad in ("Refused", "failed", "Unknown", "Usage:", "Missing", "Traceback"):
            assert bad not in reply, (step, reply)


@pytest.mark.llamacpp
def test_the_quick_start_with_a_local_server(tmp_path: Path, llamacpp_peer: LlamaCppPeer) -> None:
    peer = llamacpp_peer
    _fresh_folder(tmp_path)
    steps = _typed(peer.url.replace("127.0.0.1", "localhost"), peer.model)
    replies = _console(tmp_path, steps)
    _no_step_failed(steps, replies)
    assert any("Status check: OK" in r for r in replies), replies
    assert peer.model in replies[-2], replies  # /model
    [answer] = _answered(tmp_path)
    assert answer.strip() and answer.strip() in replies[-1], replies


@pytest.mark.litellm
def test_the_quick_start_with_a_server_that_wants_a_key(
    tmp_path: Path, litellm_peer: LiteLLMPeer
) -> None:
    """The same lines, and the password step the quick start names after `/proxy set`."""
    peer = litellm_peer
    assert "`/proxy password` asks for it" in quick_start_text()
    _fresh_folder(tmp_path)
    steps = _typed(peer.url.replace("127.0.0.1", "localhost"), peer.model)
    at = next(i for i, step in enumerate(steps) if step[0].startswith("/proxy set")) + 1
    steps.insert(at, ["/proxy password", peer.master_key])
    replies = _console(tmp_path, steps)
    assert "Status check failed" in replies[at - 1] and "/proxy password" in replies[at - 1]
    _no_step_failed(steps[at:], replies[at:])
    assert "Status check: OK" in replies[at], replies[at]
    assert replies[-1].strip() == peer.mock_text
    assert _answered(tmp_path) == [peer.mock_text]


def test_the_quick_starts_hosted_source_commands(tmp_path: Path) -> None:
    """`/source openai`, `/key set openai` (the key asked for next) and `/model …` as the
    quick start writes them are taken (OpenAI itself is not reached from here)."""
    text = quick_start_text()
    hosted = re.search(r"`(/source openai)`.*?`(/key set openai)`.*?`(/model [^`]+)`", text, re.S)
    assert hosted, "the quick start's hosted-model commands"
    source, key, model = hosted.groups()
    _fresh_folder(tmp_path)
    replies = _console(tmp_path, [[source], [key, "sk-quick-start-0123456789abcd"], [model]])
    assert replies[0].startswith("Source set to openai."), replies[0]
    assert replies[1].startswith("Saved the openai key for this channel (ends …abcd)."), replies
    assert replies[2].strip() == f"Model set to {model.split()[1]}.", replies[2]


def quick_start_text() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Quick start\n", 1)[1].split("\n## ", 1)[0]
