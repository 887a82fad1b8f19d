"""Peer fixture: a real PostgreSQL cluster on loopback, started once per test session."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers._common import free_port, peer_missing, wait_for_port

_SYSTEM_USER = "postgres"
_SUPERUSER = "postgres"


def _find_bin_dir() -> Path | None:
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0,
    )
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


@dataclass(frozen=True)
class PostgresServer:
    """A running test cluster: trust auth on 127.0.0.1:port, superuser `postgres`."""

    bin_dir: Path
    data_dir: Path
    port: int
    as_root: bool

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def client(self, program: str, *args: str) -> bytes:
        """Run a client program (psql, pg_dump) against this cluster; its stdout."""
        command = [
            str(self.bin_dir / program),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            _SUPERUSER,
            *args,
        ]
        done = subprocess.run(command, capture_output=True, check=False, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def stop(self) -> None:
        """What an operator's `pg_ctl stop -m fast` does: every connection ended, none
        taken until `start`."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        """Up again on the same port after `stop`."""
        root = self.data_dir.parent
        options = f"-k {root} -p {self.port} -h 127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._pg_ctl("-l", str(root / "server.log"), "-w", "-t", "60", "-o", options, "start")
        wait_for_port(self.port, timeout=30)

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        _run(_as_server_user(command, self.as_root), cwd=self.data_dir.parent)

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self.client(
            "psql", "-d", database, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement
        ).decode()


def _sbin(tool: str) -> str:
    """`tool` from PATH, or from the sbin folders a root PATH may lack (`env -i`)."""
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin") or tool


def _as_server_user(command: list[str], as_root: bool) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root.
    return [_sbin("runuser"), "-u", _SYSTEM_USER, "--", *command] if as_root else command


def _ensure_system_user() -> None:
    if subprocess.run(["id", "-u", _SYSTEM_USER], capture_output=True, check=False).returncode:
        subprocess.run(
            [
                _sbin("useradd"),
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _SYSTEM_USER,
            ],
            check=True,
        )


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, check=False, timeout=120)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{output}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL cluster; stop it and delete its files at session end."""
    bin_dir = _find_bin_dir()
    if bin_dir is None:
        peer_missing(
            "PostgreSQL server (initdb, pg_ctl)",
            "apt-get install postgresql, or run the README's test command",
        )
        raise AssertionError("unreachable")
    as_root = os.geteuid() == 0
    if as_root:
        _ensure_system_user()
    # A short path: the Unix socket lives here too, and socket paths are length-limited.
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    data_dir = root / "data"
    if as_root:
        shutil.chown(root, user=_SYSTEM_USER)
    root.chmod(0o700)
    port = free_port()
    _run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                _SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            as_root,
        ),
        cwd=root,
    )
    server = PostgresServer(bin_dir=bin_dir, data_dir=data_dir, port=port, as_root=as_root)
    server.start()
    try:
        yield server
    finally:
        subprocess.run(
            _as_server_user(
                [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"], as_root
            ),
            cwd=root,
            capture_output=True,
            check=False,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class PostgresDatabase:
    """One fresh, empty database in the session's cluster."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A new empty database per test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    postgres_server.sql(f'CREATE DATABASE "{name}"')
    try:
        yield PostgresDatabase(postgres_server, name)
    finally:
        postgres_server.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_db: PostgresDatabase) -> str:
    """`postgresql+asyncpg://…` of a fresh empty database."""
    return postgres_db.url


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend the bot supports: an SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        # A subdirectory that does not exist yet: the engine must create it.
        return f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def end_advisory_holders(engine: Any) -> None:
    """What a server restart or a dropped network does to every other connection holding
    an advisory lock (the bot's serving claims): ended, from a connection of `engine`."""
    from sqlalchemy import text

    async with engine.connect() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_locks "  # until it has ended
                "WHERE locktype = 'advisory' AND granted AND pid != pg_backend_pid()"
            )
        )
