"""Peer fixture: a real Synapse homeserver on loopback (SQLite, no federation).

Installed by scripts/install-peers.sh into $PEERS_DIR/synapse/venv. Users are made with
the shared-secret admin registration API (stdlib HMAC + urllib only).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.peers._common import PEERS_DIR, free_port, peer_missing
from tests.peers._process import PeerProcess, peer_env, start_peer

SYNAPSE_DIR = PEERS_DIR / "synapse"
SYNAPSE_PYTHON = SYNAPSE_DIR / "venv" / "bin" / "python"
SERVER_NAME = "synapse.test"
STARTUP_TIMEOUT = 60.0  # ~2 s when warm; first start compiles nothing but reads a lot

# Synapse's own defaults for rc_message. The config leaves rc_message at them; every user
# registered here is exempt (a per-user override) unless registered with rate_limited=True.
DEFAULT_MESSAGE_RATE = 0.2
DEFAULT_MESSAGE_BURST = 10

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_HIGH = {"per_second": 1000, "burst_count": 10000}


@dataclass(frozen=True)
class MatrixUser:
    user_id: str
    password: str
    access_token: str
    device_id: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


@dataclass
class SynapseServer:
    url: str
    server_name: str
    shared_secret: str
    log_path: Path
    startup_seconds: float
    _names: Iterator[int] = field(default_factory=itertools.count)
    _admin: MatrixUser | None = None

    def _request(
        self, method: str, path: str, body: object | None = None, token: str = ""
    ) -> dict[str, object]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        with _DIRECT.open(request, timeout=10) as response:
            result: dict[str, object] = json.loads(response.read())
            return result

    def register(
        self, name: str, *, admin: bool = False, password: str = "", rate_limited: bool = False
    ) -> MatrixUser:
        """A new user via the shared-secret API; `name` gets a unique suffix.

        rate_limited: keep Synapse's default rc_message for this user (others are exempt).
        """
        localpart = f"{name}{next(self._names)}{secrets.token_hex(2)}"
        password = password or "pw-" + secrets.token_hex(8)
        nonce = self._request("GET", "/_synapse/admin/v1/register")["nonce"]
        assert isinstance(nonce, str)
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode()]))
        mac.update(b"\x00admin" if admin else b"\x00notadmin")
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        done = self._request("POST", "/_synapse/admin/v1/register", body)
        user = MatrixUser(
            user_id=str(done["user_id"]),
            password=password,
            access_token=str(done["access_token"]),
            device_id=str(done["device_id"]),
        )
        if not rate_limited:
            self._exempt(user if admin and self._admin is None else self.admin(), user.user_id)
        return user

    def admin(self) -> MatrixUser:
        if self._admin is None:
            self._admin = self.register("synadmin", admin=True)
        return self._admin

    def _exempt(self, admin: MatrixUser, user_id: str) -> None:
        """No rate limits for `user_id` (Synapse: an override of 0 messages per second)."""
        path = f"/_synapse/admin/v1/users/{urllib.request.quote(user_id)}/override_ratelimit"
        body = {"messages_per_second": 0, "burst_count": 0}
        self._request("POST", path, body, token=admin.access_token)

    def put(self, path: str, body: object, token: str) -> dict[str, object]:
        return self._request("PUT", path, body, token=token)

    def get(self, path: str, token: str) -> dict[str, object]:
        """A raw client-API GET as the owner of `token` (what the server really holds)."""
        return self._request("GET", path, token=token)

    def devices(self, user_id: str) -> set[str]:
        """The user's device ids, as the homeserver knows them (admin API)."""
        path = f"/_synapse/admin/v2/users/{urllib.request.quote(user_id)}/devices"
        found = self._request("GET", path, token=self.admin().access_token)["devices"]
        assert isinstance(found, list)
        return {str(d["device_id"]) for d in found}

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def synapse_config(workdir: Path, port: int, shared_secret: str) -> dict[str, object]:
    """A homeserver for tests: one loopback client listener, no federation, high limits."""
    return {
        "server_name": SERVER_NAME,
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {
            "name": "sqlite3",
            "args": {"database": str(workdir / "homeserver.db")},
        },
        "media_store_path": str(workdir / "media"),
        "signing_key_path": str(workdir / "signing.key"),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_hex(16),
        "form_secret": secrets.token_hex(16),
        "enable_registration": False,
        "report_stats": False,
        "enable_metrics": False,
        "url_preview_enabled": False,
        "federation_domain_whitelist": [],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "presence": {"enabled": False},
        # rc_message stays at Synapse's default (0.2/s, burst 10): users are exempted one
        # by one, so the rate-limit test meets the limit a real deployment has.
        "rc_registration": _HIGH,
        "rc_login": {"address": _HIGH, "account": _HIGH, "failed_attempts": _HIGH},
        "rc_joins": {"local": _HIGH, "remote": _HIGH},
        "rc_joins_per_room": _HIGH,
        "rc_invites": {"per_room": _HIGH, "per_user": _HIGH, "per_issuer": _HIGH},
        "rc_room_creation": _HIGH,
        "rc_key_requests": _HIGH,
        "rc_delayed_event_mgmt": _HIGH,
        "rc_3pid_validation": _HIGH,
        "rc_presence": {"per_user": _HIGH},
    }


def launch_synapse(workdir: Path) -> tuple[SynapseServer, PeerProcess]:
    """Write a test config, generate the signing key, start Synapse, wait until it answers."""
    port = free_port()
    shared_secret = secrets.token_hex(16)
    config_path = workdir / "homeserver.yaml"
    # JSON is YAML: no quoting surprises in paths or secrets.
    config_path.write_text(json.dumps(synapse_config(workdir, port, shared_secret), indent=2))
    env = peer_env({})
    homeserver = [str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "--config-path"]
    keys = subprocess.run(
        [*homeserver, str(config_path), "--generate-keys"],
        cwd=workdir,
        env=env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    if keys.returncode != 0:
        pytest.fail(
            f"synapse --generate-keys failed:\n{(keys.stdout + keys.stderr).decode()[-2000:]}",
            pytrace=False,
        )
    peer_proc = relaunch_synapse(workdir, port)
    server = SynapseServer(
        url=f"http://127.0.0.1:{port}",
        server_name=SERVER_NAME,
        shared_secret=shared_secret,
        log_path=peer_proc.log_path,
        startup_seconds=peer_proc.startup_seconds,
    )
    return server, peer_proc


def relaunch_synapse(workdir: Path, port: int, log_name: str = "synapse.log") -> PeerProcess:
    """Start Synapse on the config (and database) already in `workdir`."""
    return start_peer(
        "Synapse",
        [
            str(SYNAPSE_PYTHON),
            "-m",
            "synapse.app.homeserver",
            "--config-path",
            str(workdir / "homeserver.yaml"),
        ],
        log_path=workdir / log_name,
        env=peer_env({}),
        cwd=workdir,
        ready_url=f"http://127.0.0.1:{port}/_matrix/client/versions",
        timeout=STARTUP_TIMEOUT,
    )


def synapse_installed() -> bool:
    return (SYNAPSE_DIR / ".installed").is_file() and SYNAPSE_PYTHON.is_file()


@pytest.fixture(scope="session")
def synapse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    if not synapse_installed():
        peer_missing("Synapse", f"run scripts/install-peers.sh; looked in {SYNAPSE_DIR}")
    server, peer_proc = launch_synapse(tmp_path_factory.mktemp("synapse"))
    print(f"\n[peers] Synapse ready in {peer_proc.startup_seconds:.1f}s at {server.url}")
    try:
        yield server
    finally:
        peer_proc.stop()
