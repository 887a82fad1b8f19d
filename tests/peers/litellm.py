"""Peer fixture: a real LiteLLM proxy on loopback, answering from `mock_response` models.

Installed by scripts/install-peers.sh into $PEERS_DIR/litellm/venv. Nothing here can
reach an upstream: every model answers with a mock, and `api_base` points at a closed
loopback port in case a mock were ever bypassed.
"""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers._common import PEERS_DIR, free_port, peer_missing
from tests.peers._process import peer_env, start_peer

LITELLM_DIR = PEERS_DIR / "litellm"
LITELLM_BIN = LITELLM_DIR / "venv" / "bin" / "litellm"

MOCK_MODEL = "mock-chat"
RATE_LIMITED_MODEL = "mock-ratelimited"
# An OpenAI reasoning model under a deployment name of its own: LiteLLM refuses what
# OpenAI's o-series refuse (a temperature other than 1) with a 400, before the mock.
REASONER_MODEL = "mock-reasoner"
MOCK_TEXT = "Hello from the LiteLLM mock peer: one, two, three."
STARTUP_TIMEOUT = 120.0  # ~10 s when warm; a cold page cache on 2 busy cores is slower

# Without a database the proxy answers any non-master key with 400 "No connected db",
# unlike a real deployment (401). This custom auth restores the real contract: the
# master key is admin, anything else is a 401 auth_error.
_AUTH_MODULE = """\
import os

from fastapi import HTTPException, Request
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

_MASTER = os.environ["PEER_MASTER_KEY"]


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    if api_key == _MASTER:
        return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN)
    raise HTTPException(status_code=401, detail="Invalid proxy key.")
"""


@dataclass(frozen=True)
class LiteLLMPeer:
    url: str  # root, WITHOUT /v1 (what a user might type)
    master_key: str
    model: str
    rate_limited_model: str
    mock_text: str
    startup_seconds: float
    log_path: Path

    @property
    def url_v1(self) -> str:
        return f"{self.url}/v1"

    @property
    def reasoner_model(self) -> str:
        return REASONER_MODEL

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model, self.rate_limited_model, REASONER_MODEL)


def _config(master_key_env: str) -> str:
    # A closed loopback port (discard) as api_base: should the mock ever be skipped,
    # the call fails locally instead of leaving the machine.
    nowhere = "http://127.0.0.1:9/v1"
    return textwrap.dedent(
        f"""\
        model_list:
          - model_name: {MOCK_MODEL}
            litellm_params:
              model: openai/{MOCK_MODEL}
              api_key: not-used
              api_base: {nowhere}
              mock_response: "{MOCK_TEXT}"
          - model_name: {RATE_LIMITED_MODEL}
            litellm_params:
              model: openai/{RATE_LIMITED_MODEL}
              api_key: not-used
              api_base: {nowhere}
              mock_response: "litellm.RateLimitError"
          - model_name: {REASONER_MODEL}
            litellm_params:
              model: openai/o3-mini
              api_key: not-used
              api_base: {nowhere}
              mock_response: "{MOCK_TEXT}"
        litellm_settings:
          num_retries: 0
          telemetry: false
          request_timeout: 30
        general_settings:
          master_key: {master_key_env}
          custom_auth: peer_auth.user_api_key_auth
        """
    )


@pytest.fixture(scope="session")
def litellm_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLMPeer]:
    if not (LITELLM_DIR / ".installed").is_file() or not LITELLM_BIN.is_file():
        peer_missing("The LiteLLM proxy", f"run scripts/install-peers.sh; looked in {LITELLM_DIR}")
    workdir = tmp_path_factory.mktemp("litellm")
    master_key = "sk-peer-" + secrets.token_hex(12)
    (workdir / "peer_auth.py").write_text(_AUTH_MODULE)
    config = workdir / "config.yaml"
    # The key goes in through the environment (LiteLLM's os.environ/ syntax), so it is
    # not written to disk.
    config.write_text(_config("os.environ/PEER_MASTER_KEY"))
    port = free_port()
    env = peer_env(
        {
            "PEER_MASTER_KEY": master_key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else it fetches a price list at start
            "LITELLM_TELEMETRY": "False",
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
            "NO_DOCS": "True",
            "PYTHONPATH": str(workdir),  # lets the proxy import peer_auth
        }
    )
    peer_proc = start_peer(
        "LiteLLM proxy",
        [
            str(LITELLM_BIN),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        log_path=workdir / "litellm.log",
        env=env,
        cwd=workdir,
        ready_url=f"http://127.0.0.1:{port}/v1/models",
        ready_headers={"Authorization": f"Bearer {master_key}"},
        timeout=STARTUP_TIMEOUT,
    )
    print(f"\n[peers] LiteLLM proxy ready in {peer_proc.startup_seconds:.1f}s on port {port}")
    try:
        yield LiteLLMPeer(
            url=f"http://127.0.0.1:{port}",
            master_key=master_key,
            model=MOCK_MODEL,
            rate_limited_model=RATE_LIMITED_MODEL,
            mock_text=MOCK_TEXT,
            startup_seconds=peer_proc.startup_seconds,
            log_path=peer_proc.log_path,
        )
    finally:
        peer_proc.stop()
