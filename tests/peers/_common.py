"""What every peer fixture shares: where peers live and what to do when one is missing."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# scripts/install-peers.sh puts each peer here; PEERS_DIR overrides.
PEERS_DIR = Path(os.environ.get("PEERS_DIR", ROOT / ".peers"))


def peer_missing(what: str, how: str) -> None:
    """Skip locally, but fail under CI: a missing peer must never pass silently."""
    message = f"{what} is not installed ({how})."
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} CI=true, so this is a failure, not a skip.", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: object | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        poll = getattr(proc, "poll", None)
        if poll is not None and poll() is not None:
            raise RuntimeError(f"peer process exited early with code {poll()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")
