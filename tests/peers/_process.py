"""Run a peer server as a child process: own process group, log file, HTTP readiness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

# Variables a peer must not inherit: a DATABASE_URL meant for the bot would make the
# LiteLLM proxy try to use it; proxy settings would send loopback traffic elsewhere;
# provider keys must never reach a process that could call an upstream.
_SCRUBBED_PREFIXES = ("OPENAI_", "ANTHROPIC_", "MISTRAL_", "AZURE_", "AWS_", "LITELLM_")
_SCRUBBED = {
    "DATABASE_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
}

# urllib honours *_proxy variables by default; the probes must go straight to loopback.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def peer_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)
    }
    env.update(extra)
    return env


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def http_get_json(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 2.0
) -> object:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    with _DIRECT.open(request, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class PeerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    startup_seconds: float = 0.0

    def stop(self) -> None:
        """Stop the whole group: uvicorn/gunicorn style servers fork workers."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        else:
            # The leader is gone but a forked worker may still hold the port.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# Every peer this session started, for the start-up summary (tests/conftest.py).
STARTED: list[PeerProcess] = []


def start_peer(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str],
    ready_url: str,
    ready_headers: Mapping[str, str] | None = None,
    timeout: float,
    cwd: Path | None = None,
) -> PeerProcess:
    """Start `argv`, wait until GET `ready_url` answers 200 JSON, or fail with the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # its own group, so stop() reaches every child
        )
    peer = PeerProcess(name, proc, log_path)
    deadline = started + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            peer.stop()
            pytest.fail(
                f"{name} exited with code {code} while starting; log {log_path}:\n"
                f"{log_tail(log_path)}",
                pytrace=False,
            )
        try:
            http_get_json(ready_url, ready_headers)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last_error = repr(exc)
            time.sleep(0.2)
            continue
        peer.startup_seconds = time.monotonic() - started
        STARTED.append(peer)
        return peer
    peer.stop()
    pytest.fail(
        f"{name} not ready within {timeout:.0f}s (last probe: {last_error}); log {log_path}:\n"
        f"{log_tail(log_path)}",
        pytrace=False,
    )
