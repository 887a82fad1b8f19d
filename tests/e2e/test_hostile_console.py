"""`python -m bot console` as a real process, fed hostile input and a hostile endpoint.

Each test runs the console in a fresh temporary directory (a clean environment, its own
SQLite database under `data/`, or a fresh PostgreSQL database) against the loopback
endpoint in `hostile_endpoint.py`, feeds stdin as bytes (so invalid UTF-8 and NUL bytes
reach the bot as a terminal would send them) and then inspects stdout, stderr, the
database rows, the raw database files and the log file.

Every test's docstring names the item of the hardening issue it covers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pwd
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import httpx
import pytest

from bot.store import generate_key
from tests.e2e.hostile_endpoint import (
    HostileEndpoint,
    Stream,
    echo_auth_401,
    redirect,
    status_only,
)

CHANNEL = "hostile"
HANG_GUARD = 90.0  # seconds; only ever a guard against a hung console, never asserted
HELP_MARK = "How to connect:"  # the first line of /help's answer
SENTINEL = "/system"  # a harmless command whose answer starts with SENTINEL_ANSWER
SENTINEL_ANSWER = "System prompt:"

# Settings that must come from the test, never from the environment running pytest.
_INHERITED_NOT = (
    "DEFAULT_",
    "DISCORD",
    "MATRIX",
    "PROVIDER_",
    "ADMIN_IDS",
    "ALLOW_PRIVATE_ENDPOINTS",
    "BOT_SECRET_KEYS",
    "DATABASE_URL",
    "DATA_DIR",
    "LOG_LEVEL",
    "MAX_ANSWER_CHARS",
    "CUSTOM_EXTRA_HEADERS",
    "PYTHONUTF8",
    "PYTHONIOENCODING",
)


# --------------------------------------------------------------------------------------
# Running the console
# --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One finished console process. returncode None: killed by the hang guard."""

    returncode: int | None
    stdout_bytes: bytes
    stderr_bytes: bytes

    @property
    def out(self) -> str:
        return self.stdout_bytes.decode("utf-8", errors="replace")

    @property
    def err(self) -> str:
        return self.stderr_bytes.decode("utf-8", errors="replace")

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def describe(self) -> str:
        rc = "killed by the hang guard" if self.timed_out else self.returncode
        out = self.out
        if HELP_MARK in out:  # the /help answer itself says nothing about the failure
            out = out.split(HELP_MARK, 1)[0] + "[the /help answer]"
        return (
            f"\n--- returncode: {rc}\n--- stdout (last 3000 chars):\n{out[-3000:]}"
            f"\n--- stderr (last 3000 chars):\n{self.err[-3000:]}"
        )

    def assert_survived(self) -> None:
        """Exit 0 without a hang, no Python traceback, and the final /help was answered."""
        assert not self.timed_out, "the console hung" + self.describe()
        assert self.returncode == 0, "the console did not exit cleanly" + self.describe()
        assert "Traceback" not in self.err, "a traceback reached stderr" + self.describe()
        assert HELP_MARK in self.out, "the /help after the hostile lines went unanswered" + (
            self.describe()
        )

    def before_help(self) -> str:
        """stdout up to the /help answer: what the lines before it printed."""
        return self.out.split(HELP_MARK, 1)[0]


def _as_bytes(line: bytes | str) -> bytes:
    return line if isinstance(line, bytes) else line.encode("utf-8")


def _stdin(lines: Sequence[bytes | str]) -> bytes:
    return b"".join(_as_bytes(line) + b"\n" for line in lines)


class Live:
    """A console process driven line by line (for locks and kill -9)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._out = bytearray()
        self._err = bytearray()
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._pump, args=(proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: Any, sink: bytearray) -> None:
        while True:
            chunk = stream.read1(65536)
            if not chunk:
                return
            with self._lock:
                sink.extend(chunk)

    @property
    def stdout(self) -> bytes:
        with self._lock:
            return bytes(self._out)

    def send(self, *lines: bytes | str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(_stdin(lines))
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait_for(self, needle: bytes, timeout: float = 30.0, start: int = 0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.stdout[start:]:
                return True
            if self.proc.poll() is not None:
                return needle in self.stdout[start:]
            time.sleep(0.05)
        return False

    def finish(self, timeout: float = HANG_GUARD) -> Run:
        try:
            returncode: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            returncode = None
        for reader in self._readers:
            reader.join(10)
        with self._lock:
            return Run(returncode, bytes(self._out), bytes(self._err))


@dataclass
class Workspace:
    """A temp directory the console runs in, its secret keys and its database."""

    cwd: Path
    secret_keys: str
    db_url: str = ""
    pg_dsn: str = ""  # set when the database is PostgreSQL (asyncpg DSN)
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.db_url:
            self.db_url = f"sqlite+aiosqlite:///{self.db_path}"

    @property
    def data_dir(self) -> Path:
        return self.cwd / "data"  # DATA_DIR's default, relative to the console's cwd

    @property
    def db_path(self) -> Path:
        return self.data_dir / "chatbot.db"

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_NOT)}
        base.update(
            DATABASE_URL=self.db_url,
            BOT_SECRET_KEYS=self.secret_keys,
            ALLOW_PRIVATE_ENDPOINTS="true",
            LOG_LEVEL="INFO",
            PROVIDER_CONNECT_TIMEOUT="3",
            PROVIDER_MAX_RETRIES="0",
        )
        base.update(self.extra_env)
        base.update(extra)
        return base

    def command(self, args: Sequence[str] = ()) -> list[str]:
        return [sys.executable, "-m", "bot", "console", "--channel", CHANNEL, *args]

    def run(
        self,
        lines: Sequence[bytes | str],
        *,
        args: Sequence[str] = (),
        timeout: float = HANG_GUARD,
        preexec_fn: Callable[[], None] | None = None,
        **env: str,
    ) -> Run:
        try:
            done = subprocess.run(
                self.command(args),
                input=_stdin(lines),
                capture_output=True,
                cwd=self.cwd,
                env=self.env(**env),
                timeout=timeout,
                preexec_fn=preexec_fn,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return Run(None, exc.stdout or b"", exc.stderr or b"")
        return Run(done.returncode, done.stdout, done.stderr)

    def live(self, *, args: Sequence[str] = (), **env: str) -> Live:
        proc = subprocess.Popen(
            self.command(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.cwd,
            env=self.env(**env),
        )
        return Live(proc)

    def at_terminal(self, **env: str) -> tuple[Live, int]:
        """A console whose stdin is a terminal (a pty); the fd of its end to type into."""
        master, slave = os.openpty()
        proc = subprocess.Popen(
            self.command(()),
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.cwd,
            env=self.env(**env),
        )
        os.close(slave)
        return Live(proc), master

    # ---- the database ----------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on whichever database the console used."""
        if self.pg_dsn:
            return asyncio.run(_pg_query(self.pg_dsn, sql, params))
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(self.db_path, timeout=30)
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        finally:
            conn.close()

    def config(self) -> dict[str, Any] | None:
        """The console channel's channel_configs row, or None."""
        rows = self.query(
            "SELECT * FROM channel_configs WHERE platform='console' AND server_id='' "
            f"AND channel_id='{CHANNEL}'"
        )
        if not rows:
            return None
        names = (
            [
                r[0]
                for r in self.query(
                    "SELECT column_name FROM information_schema.columns WHERE "
                    "table_name='channel_configs' ORDER BY ordinal_position"
                )
            ]
            if self.pg_dsn
            else [r[1] for r in self.query("PRAGMA table_info(channel_configs)")]
        )
        return dict(zip(names, rows[0], strict=True))

    def messages(self) -> list[tuple[str, str, str | None]]:
        """(role, content, error) of every stored message, in order."""
        return [
            (r[0], r[1], r[2])
            for r in self.query("SELECT role, content, error FROM messages ORDER BY id")
        ]

    def secret_names(self) -> list[str]:
        return [r[0] for r in self.query("SELECT name FROM secrets ORDER BY id")]

    def stored_files(self) -> dict[str, bytes]:
        """Every file the bot wrote under data/: database, -wal, -shm, log files."""
        if not self.data_dir.exists():
            return {}
        return {
            str(p.relative_to(self.cwd)): p.read_bytes()
            for p in sorted(self.data_dir.rglob("*"))
            if p.is_file()
        }

    def log_files(self) -> dict[str, bytes]:
        return {k: v for k, v in self.stored_files().items() if "chatbot.log" in k}


async def _pg_query(dsn: str, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    import asyncpg  # the bot's own PostgreSQL driver

    # asyncpg numbers its parameters; the queries here use none or `$1`-style ones.
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *params)]
    finally:
        await conn.close()


def custom_setup(ep: HostileEndpoint, model: str = "m") -> list[bytes | str]:
    """Lines that point the console channel at the fake endpoint, ready to chat."""
    return ["/source custom", f"/proxy set {ep.url_v1}", f"/model {model}"]


def segments(out: str) -> list[str]:
    """stdout split at each sentinel answer: what the line before each sentinel printed."""
    return out.split(SENTINEL_ANSWER)[:-1]


def with_sentinels(lines: Sequence[bytes | str]) -> list[bytes | str]:
    """Each line followed by the sentinel, so every line's answer can be told apart."""
    return [x for line in lines for x in (line, SENTINEL)]


def find_leaks(needles: dict[str, str], haystacks: dict[str, bytes]) -> list[str]:
    """Each needle found in a haystack, with a little context around the first hit."""
    leaks = []
    for form, needle in needles.items():
        raw = needle.encode("utf-8")
        for where, data in haystacks.items():
            at = data.find(raw)
            if at >= 0:
                context = data[max(0, at - 80) : at + len(raw) + 40]
                leaks.append(f"{form} form found in {where}: …{context!r}…")
    return leaks


def assert_found_nowhere(ws: Workspace, run: Run, needles: dict[str, str]) -> None:
    """None of `needles` in stdout, stderr, the database files or the log file."""
    haystacks = {"stdout": run.stdout_bytes, "stderr": run.stderr_bytes, **ws.stored_files()}
    leaks = find_leaks(needles, haystacks)
    assert not leaks, "\n".join(leaks) + run.describe()


# --------------------------------------------------------------------------------------
# 1. URLs the policy accepts but httpx cannot parse
# --------------------------------------------------------------------------------------

UNPARSEABLE_URLS = [
    "http://010.010.010.010/v1",
    "http://0177.0.0.1/",
    "http://１２７.０.０.１/",
    "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/",
]


def _assert_usable_url(url: str | None) -> None:
    if url is None:
        return
    try:
        httpx.URL(url)
    except httpx.InvalidURL as err:
        pytest.fail(f"a URL httpx cannot use was stored: {url!r} ({err})")


@pytest.mark.parametrize("url", UNPARSEABLE_URLS)
def test_proxy_set_with_unparseable_url_is_refused_or_normalised(ws: Workspace, url: str) -> None:
    """Issue item 1: `/proxy set` with a URL httpx cannot parse is refused (or
    normalised to one that works); the console goes on with every later line."""
    run = ws.run(
        ["/source custom", *with_sentinels([f"/proxy set {url}", "/connect", "hello"]), "/help"]
    )
    run.assert_survived()
    assert "InvalidURL" not in run.out + run.err, run.describe()
    assert len(segments(run.out)) == 3, "a line after /proxy set went unanswered" + run.describe()
    config = ws.config()
    assert config is not None
    _assert_usable_url(config["proxy_url"])
    _assert_usable_url(config["resolved_url"])


@pytest.mark.parametrize("url", UNPARSEABLE_URLS)
def test_unparseable_url_already_stored_does_not_break_the_channel(ws: Workspace, url: str) -> None:
    """Issue item 1: a bad URL already in channel_configs.proxy_url must not crash
    `/connect`, `/models external` or a chat line: each gets a clear answer about the
    URL, and the console goes on."""
    first = ws.run(["/source custom", "/model m"])
    assert first.returncode == 0, first.describe()
    conn = sqlite3.connect(ws.db_path)
    with conn:
        changed = conn.execute(
            "UPDATE channel_configs SET proxy_url=?, resolved_url=NULL, source='custom', "
            "model='m', status_ok=NULL, status_reason=NULL, status_checked_url=NULL "
            "WHERE platform='console' AND server_id='' AND channel_id=?",
            (url, CHANNEL),
        ).rowcount
    conn.close()
    assert changed == 1

    run = ws.run([*with_sentinels(["/connect", "/models external", "hello"]), "/help"])
    run.assert_survived()
    assert "InvalidURL" not in run.out + run.err, run.describe()
    answers = segments(run.out)
    assert len(answers) == 3, "a line went unanswered" + run.describe()
    host = urlsplit(url).hostname or url
    for line, answer in zip(["/connect", "/models external", "hello"], answers, strict=True):
        assert answer.strip(), f"{line} printed nothing" + run.describe()
        named = "url" in answer.lower() or url in answer or host in answer
        assert named, f"{line}'s answer does not name the URL problem: {answer!r}"
    assert not [m for m in ws.messages() if m[0] == "assistant"]


# --------------------------------------------------------------------------------------
# 2. Invalid UTF-8 on stdin
# --------------------------------------------------------------------------------------

# Python reads stdin strictly in an ordinary UTF-8 locale (emulated with
# PYTHONIOENCODING, as no such locale is installed everywhere) and with surrogateescape
# in the C/C.UTF-8 locales or UTF-8 mode: the console must survive both.
STDIN_MODES = [
    pytest.param({"PYTHONIOENCODING": "utf-8:strict"}, id="strict-stdin"),
    pytest.param({"PYTHONUTF8": "1"}, id="surrogateescape-stdin"),
]


@pytest.mark.parametrize("mode", STDIN_MODES)
def test_invalid_utf8_line_does_not_end_the_console(ws: Workspace, mode: dict[str, str]) -> None:
    """Issue item 2: `/system caf\\xe9` as raw bytes must not crash the console; the
    later lines are still answered and nothing undecodable is stored."""
    run = ws.run([b"/system caf\xe9", SENTINEL, "/help"], **mode)
    run.assert_survived()
    assert SENTINEL_ANSWER in run.out, run.describe()
    conn = sqlite3.connect(ws.db_path)
    conn.text_factory = bytes
    try:
        stored = conn.execute(
            "SELECT system_prompt FROM channel_configs WHERE channel_id=?", (CHANNEL,)
        ).fetchall()
    finally:
        conn.close()
    for (prompt,) in stored:
        if prompt is not None:
            prompt.decode("utf-8")  # strict: raises on a stored invalid/surrogate byte


def test_a_latin1_terminal_is_read_as_latin1_and_bytes_not_text_are_refused(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """On a terminal whose locale is ISO-8859-1 (installed or not), a typed `é` reached the
    model as U+FFFD: the console read every terminal as UTF-8. It reads the locale's
    encoding now; a line with bytes that encoding cannot decode (Latin-1 typed into a
    UTF-8 terminal) is refused with a word, neither sent nor stored."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    for locale, typed, stored in (
        ("en_US.ISO-8859-1", b"caf\xe9 cr\xe8me?\n", ["café crème?"]),
        ("C.UTF-8", b"caf\xe9 au lait?\n", ["café crème?"]),  # refused: nothing added
    ):
        live, master = ws.at_terminal(LC_ALL=locale, LANG=locale)
        try:
            os.write(master, b"/help\n")
            assert live.wait_for(HELP_MARK.encode(), timeout=60), "the console did not start"
            mark = len(live.stdout)
            os.write(master, typed)
            os.write(master, b"/system\n")
            assert live.wait_for(SENTINEL_ANSWER.encode(), timeout=60, start=mark)
            os.write(master, b"\x04")
            done = live.finish(timeout=30)
        finally:
            os.close(master)
        assert done.returncode == 0, done.describe()
        assert [m[1] for m in ws.messages() if m[0] == "user"] == stored, done.describe()
    assert "not utf-8 text" in done.out and "nothing was done with it" in done.out
    assert len(endpoint.chat_requests()) == 1


def test_a_file_whose_name_is_not_utf8_can_be_attached(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A file name is bytes: `/attach caf\\xe9.txt` (Latin-1 bytes on a UTF-8 system)
    was read as `caf\ufffd.txt` and never found. The path is now the bytes typed; the
    name goes on as text, the undecodable byte shown as U+FFFD."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    (ws.cwd / os.fsdecode(b"caf\xe9.txt")).write_text("the menu of the day")
    live, master = ws.at_terminal(LC_ALL="C.UTF-8", LANG="C.UTF-8")
    try:
        os.write(master, b"/help\n")
        assert live.wait_for(HELP_MARK.encode(), timeout=60), "the console did not start"
        mark = len(live.stdout)
        os.write(master, b"/attach caf\xe9.txt\nwhat is in it?\n")
        assert live.wait_for(b"Hello there!", timeout=60, start=mark), live.stdout[mark:]
        os.write(master, b"\x04")
        done = live.finish(timeout=30)
    finally:
        os.close(master)
    assert done.returncode == 0, done.describe()
    assert "Attached caf\ufffd.txt (19 bytes)" in done.out, done.describe()
    [request] = endpoint.chat_requests()
    assert b"the menu of the day" in request.body


@pytest.mark.parametrize("mode", STDIN_MODES)
def test_proxy_password_with_invalid_utf8_is_applied_whole_or_not_at_all(
    ws: Workspace, endpoint: HostileEndpoint, mode: dict[str, str]
) -> None:
    """Issue item 2: `/proxy set <url> pw\\xff` must not half-apply (URL saved, password
    not): either both the proxy_url and a proxy_password secret are stored, or neither."""
    line = f"/proxy set {endpoint.url_v1} ".encode() + b"pw\xff"
    run = ws.run(["/source custom", line, "/help"], **mode)
    run.assert_survived()
    config = ws.config()
    url_saved = config is not None and config["proxy_url"] is not None
    password_saved = "proxy_password" in ws.secret_names()
    assert url_saved == password_saved, (
        f"half applied: proxy_url saved={url_saved}, proxy_password saved={password_saved}"
        + run.describe()
    )


# --------------------------------------------------------------------------------------
# 3. Keys with invisible characters
# --------------------------------------------------------------------------------------

CLEAN_KEY = "sk-clean-0123456789abcdef"


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("\ufeff" + CLEAN_KEY, id="leading-bom"),
        pytest.param(CLEAN_KEY + "\u200b", id="trailing-zwsp"),
        pytest.param("\u200b" + CLEAN_KEY + "\ufeff", id="zwsp-and-bom"),
        pytest.param(" \t\u200b" + CLEAN_KEY + " \u200b ", id="mixed-whitespace"),
        # Invisible probe: copied from a right-to-left page, or after a filler.
        pytest.param("\u200f" + CLEAN_KEY + "\u200e", id="direction-marks"),
        pytest.param("\u2067" + CLEAN_KEY + "\u2069", id="isolates"),
        pytest.param("\u3164 " + CLEAN_KEY + "\u00a0\u200b", id="filler-and-no-break-space"),
    ],
)
def test_key_with_invisible_characters_around_it_is_cleaned(
    ws: Workspace, endpoint: HostileEndpoint, typed: str
) -> None:
    """Issue item 3: BOM/zero-width/whitespace around a pasted key are stripped; the
    endpoint receives exactly `Bearer <clean key>` and the chat works."""
    run = ws.run(
        [
            "/source custom",
            f"/proxy set {endpoint.url_v1}",
            "/key set custom",
            typed,
            "/model m",
            "hello",
            "/help",
        ]
    )
    run.assert_survived()
    assert endpoint.stream.answer in run.out, "the chat was not answered" + run.describe()
    sent = [a for a in endpoint.authorizations() if a is not None]
    assert sent, "no request carried the key" + run.describe()
    assert set(sent) == {f"Bearer {CLEAN_KEY}"}, sent


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("sk-abcdefghi\u200bjklmnop", id="zwsp-inside"),
        pytest.param("sk-abcdefghié-jklmnop", id="e-acute-inside"),
    ],
)
def test_key_with_a_character_no_header_can_carry_is_refused(
    ws: Workspace, endpoint: HostileEndpoint, typed: str
) -> None:
    """Issue item 3: a key with a non-ASCII character inside (position 13) is refused
    with a message naming the position, and nothing is stored."""
    run = ws.run(
        ["/source custom", f"/proxy set {endpoint.url_v1}", "/key set custom", typed, "/help"]
    )
    run.assert_survived()
    assert "custom_api_key" not in ws.secret_names(), run.describe()
    said = run.before_help().split("Status check:", 1)[-1]
    assert re.search(r"(?<![\d:])1[23](?!\d)", said), (
        "the refusal does not name the position (13th character)" + run.describe()
    )


def test_a_key_stored_for_another_source_is_refused_in_a_setting(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A channel's custom key (no provider's shape) stays stored after `/source openai`;
    typed into `/system` it was taken: only the key of the source in use was looked for,
    so it was kept in the clear, shown in /settings, and sent once /source custom came
    back. Every source's key of the channel is looked for now."""
    key = "tabby-key-5e6f7a8b9c0d"
    run = ws.run(
        [
            "/source custom",
            f"/proxy set {endpoint.url_v1}",
            "/key set custom",
            key,
            "/source openai",
            f"/system The door code is {key}.",
            f"/prompts auxiliary Use {key} here.",
            "/settings",
            "/help",
        ]
    )
    run.assert_survived()
    said = run.before_help()
    assert said.count("holds what looks like a key") == 2, run.describe()
    assert "System prompt set" not in said and key not in said, run.describe()
    stored = ws.query("SELECT system_prompt, auxiliary_prompt FROM channel_configs")
    assert all(key not in str(row) for row in stored), stored


def test_a_secret_stored_for_another_source_is_refused_in_a_chat_message(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A channel on its custom endpoint keeps a Claude key too, and a proxy password
    the custom key stands beside. A member who pasted the Claude key, or (on OpenAI
    through the proxy) the custom key, had it sent to the endpoint and kept in the
    history: only the secrets the source in use sends were looked for. Every secret
    stored for the channel is now, as the one in use is."""
    claude, custom = "claudekey-abcdef123456", "tabby-key-5e6f7a8b9c0d"
    run = ws.run(
        [
            *custom_setup(endpoint),
            "/key set custom",
            custom,
            "/key set claude",
            claude,
            f"my claude key is {claude}",
            "/source openai",
            "/model gpt-x",
            f"the custom one: {custom}",
            "/help",
        ]
    )
    run.assert_survived()
    said = run.before_help()
    assert said.count("holds what looks like a key") == 2, run.describe()
    assert endpoint.chat_requests() == [], [r.body for r in endpoint.chat_requests()]
    assert ws.messages() == [], ws.messages()


# --------------------------------------------------------------------------------------
# 4. NUL bytes (SQLite and PostgreSQL)
# --------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_ws(request: pytest.FixtureRequest, tmp_path: Path) -> Workspace:
    if request.param == "sqlite":
        return Workspace(cwd=tmp_path, secret_keys=generate_key())
    url: str = request.getfixturevalue("postgres_url")
    return Workspace(
        cwd=tmp_path,
        secret_keys=generate_key(),
        db_url=url,
        pg_dsn=url.replace("postgresql+asyncpg://", "postgresql://", 1),
    )


def test_nul_bytes_never_reach_the_database(
    any_db_ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Issue item 4: NUL in `/system`, `/model` and a chat line: no crash, the answer
    shown is stored (user and assistant rows), no stored text holds a NUL, and the model
    id is refused rather than changed."""
    ws = any_db_ws
    run = ws.run(
        [
            *custom_setup(endpoint),
            b"/system be\x00nice",
            b"/model fa\x00ke",
            b"hello\x00world",
            "/help",
        ]
    )
    run.assert_survived()
    answer = endpoint.stream.answer
    assert answer in run.out, "the chat was not answered" + run.describe()
    stored = ws.messages()
    assert [m[0] for m in stored] == ["user", "assistant"], stored
    assert stored[1][1] == answer
    # Free text loses the NUL; a model id with one is refused, not made into `fake`.
    assert "has a control character (U+0000) at position 3" in run.out, run.describe()
    assert ("fake",) not in ws.query("SELECT model FROM channel_configs"), run.describe()
    for table in ("channel_configs", "messages", "audit_log"):
        for row in ws.query(f"SELECT * FROM {table}"):
            for value in row:
                assert not (isinstance(value, str) and "\x00" in value), (table, row)


# --------------------------------------------------------------------------------------
# 5. Smaller input checks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("/" + "q" * 100_000, id="unknown-command"),
        pytest.param("/proxy " + "q" * 100_000, id="unknown-subcommand"),
        pytest.param("/reset " + "q" * 100_000, id="extra-value"),
        # A host name no resolver takes (a 1,900-letter label) was named whole.
        pytest.param("/proxy set http://" + "q" * 1900 + ".com", id="unresolvable-host"),
    ],
)
def test_huge_unknown_command_gets_a_short_reply(ws: Workspace, line: str) -> None:
    """Issue item 5: 100 KB of command text is not echoed back (reply under 1 KB)."""
    run = ws.run([line, "/help"])
    run.assert_survived()
    reply = run.before_help()
    assert reply.strip(), "no reply at all" + run.describe()
    assert len(reply.encode()) < 1024, f"a {len(reply.encode())}-byte reply"


def test_a_line_of_200_mb_is_read_in_bounded_memory_and_refused(ws: Workspace) -> None:
    """One line of 200 MB piped in (no end of line for 200 MB): the console read it with
    a rescan of everything so far on every 64 KB, which never finished (~11 s for 40 MB,
    memory growing with it). It is now read once, kept up to 1 MiB, and refused."""
    run = ws.run([b"A" * 200_000_000, "/help"])
    run.assert_survived()
    reply = run.before_help()
    assert "That message is too long for me (1,048,576 characters" in reply, run.describe()
    assert not ws.messages()


def test_a_file_that_grew_after_it_was_attached_is_not_read_whole(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Sizes are checked when a file is attached; one made 1 GB (sparse) before the
    message goes out is refused as changed, reading at most one byte past its old size
    (it was read whole: 1.6 GB of memory for a 1.5 GB file). A path of 1 MB is not
    echoed back whole."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    notes = ws.cwd / "grow.txt"
    notes.write_text("hello world\n")
    live = ws.live()
    live.send("/attach grow.txt")
    assert live.wait_for(b"Attached grow.txt (12 bytes)", timeout=60), "not attached"
    with notes.open("r+b") as grown:
        grown.truncate(1 << 30)
    mark = len(live.stdout)
    live.send("what is in the file", "/attach " + "F" * 1_000_000, SENTINEL)
    assert live.wait_for(SENTINEL_ANSWER.encode(), timeout=60, start=mark), "no answer"
    live.close_stdin()
    done = live.finish()
    assert done.returncode == 0 and "Traceback" not in done.err, done.describe()
    said = done.out[done.out.index("Attached grow.txt") :]
    assert "I could not download grow.txt; attach it again." in said, said[:2000]
    assert len(said.encode()) < 4096, f"{len(said.encode())} bytes printed"
    assert not endpoint.chat_requests()


def test_a_file_the_bot_cannot_take_is_refused_at_attach_not_with_the_message(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A binary file attached beside good ones was refused only when the message went
    out, and the message and every file went with it."""
    (ws.cwd / "notes.txt").write_text("The answer is 42.\n")
    (ws.cwd / "blob.bin").write_bytes(bytes(range(256)) * 4)
    run = ws.run(
        [
            *custom_setup(endpoint),
            "/attach notes.txt",
            "/attach blob.bin",
            "/attach",
            "what do the notes say",
            "/help",
        ]
    )
    run.assert_survived()
    assert "Not attached: blob.bin looks like a binary file" in run.out, run.describe()
    assert "Attached to your next message: notes.txt." in run.out, run.describe()
    [request] = endpoint.chat_requests()
    assert b"The answer is 42." in request.body
    assert endpoint.stream.answer in run.out


def test_an_image_past_the_per_message_cap_is_refused_at_attach(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Five `/attach red.png` each said "Attached", then the message was refused (at most
    4 images) and every file was lost with it. The fifth is refused where it is attached,
    and `/ATTACH` is `/attach` (every command ignores case; it was "Unknown command")."""
    from PIL import Image as PILImage

    PILImage.new("RGB", (32, 24), "red").save(ws.cwd / "red.png")
    run = ws.run(
        [
            *custom_setup(endpoint),
            *["/attach red.png"] * 4,
            "/ATTACH red.png",
            "what colour",
            "/help",
        ]
    )
    run.assert_survived()
    assert run.out.count("Attached red.png") == 4, run.describe()
    assert "Not attached: You attached 5 images; I take at most 4" in run.out, run.describe()
    assert "Unknown command" not in run.out
    [request] = endpoint.chat_requests()
    assert request.body.count(b"[image: red.png]") == 4  # the model "m" sees no images
    assert endpoint.stream.answer in run.out


def test_the_database_and_log_are_readable_by_their_user_only(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """data/chatbot.db and chatbot.log hold the conversations; they were created 644 in
    a 755 folder (the usual umask) beside a 600 .env."""
    run = ws.run([*custom_setup(endpoint), "hello", "/help"], preexec_fn=lambda: os.umask(0o022))
    run.assert_survived()
    data = ws.cwd / "data"
    made = [data, *data.iterdir()]
    assert {p.name for p in made} >= {"data", "chatbot.db", "chatbot.log"}, made
    for path in made:
        assert path.stat().st_mode & 0o077 == 0, (path.name, oct(path.stat().st_mode))


def test_quoted_stop_sequence_is_stored_without_quotes(ws: Workspace) -> None:
    """Issue item 5: `/params stop "a,b"` stores no `"` inside the stop sequences."""
    run = ws.run(['/params stop "a,b"', "/help"])
    run.assert_survived()
    config = ws.config()
    assert config is not None and config["stop"] is not None, run.describe()
    stops = json.loads(config["stop"])
    assert stops and all(s and '"' not in s for s in stops), stops


def test_smart_quoted_stop_sequence_is_one_stop_string(ws: Workspace) -> None:
    """A phone's `/params stop “a,b”, END` was stored as three: `“a`, `b”`, `END`."""
    run = ws.run(["/params stop \u201ca,b\u201d, don\u2019t, END", "/help"])
    run.assert_survived()
    config = ws.config()
    assert config is not None and config["stop"] is not None, run.describe()
    assert json.loads(config["stop"]) == ["a,b", "don\u2019t", "END"]


def test_connect_bypass_with_empty_value_is_an_error(ws: Workspace) -> None:
    """Issue item 5: `/connect bypass:` (no value) says it needs on/off and leaves
    bypass_status_check as it was."""
    first = ws.run(["/connect bypass:on"])
    assert first.returncode == 0, first.describe()
    config = ws.config()
    assert config is not None and config["bypass_status_check"] == 1

    run = ws.run(["/connect bypass:", "/help"])
    run.assert_survived()
    reply = run.before_help().lower()
    assert re.search(r"\bon\b", reply) and re.search(r"\boff\b", reply), (
        "the reply does not say bypass needs on or off" + run.describe()
    )
    config = ws.config()
    assert config is not None and config["bypass_status_check"] == 1


def test_model_ids_no_one_could_choose_are_not_listed(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """An endpoint offering a 100,000-character model id and ids with invisible or
    control characters: `/models external on` and `/models list` leave them out (each
    would be ~50 Discord messages, and `/model` refuses them anyway); the rest is listed."""
    huge = "x" * 100_000
    endpoint.models = ["m", huge, "zero\u200bwidth", "bell\x07", "m-large"]
    run = ws.run(
        [
            *custom_setup(endpoint),
            "/models external on",
            "/models list",
            "/help",
        ]
    )
    run.assert_survived()
    assert "x" * 1_000 not in run.out
    assert "zero\u200bwidth" not in run.out and "bell\x07" not in run.out
    assert len(run.out) < 10_000, len(run.out)
    assert run.out.count("m-large") >= 2, run.describe()  # listed by both commands


def test_zero_width_space_is_not_a_model_id(ws: Workspace) -> None:
    """Issue item 5: a lone zero-width space is refused as a model id; model unchanged."""
    run = ws.run(["/source custom", "/model good-model", "/model \u200b", "/help"])
    run.assert_survived()
    config = ws.config()
    assert config is not None and config["model"] == "good-model", (config, run.describe())


@pytest.mark.parametrize(
    ("name", "value", "column"),
    [
        ("seed", "0_1", "seed"),
        ("temperature", "\u0661", "temperature"),  # ARABIC-INDIC DIGIT ONE
        ("max_tokens", "1_000", "max_tokens"),
        ("top_p", "\uff10.5", "top_p"),  # FULLWIDTH DIGIT ZERO
    ],
)
def test_numbers_in_odd_notations_are_refused(
    ws: Workspace, name: str, value: str, column: str
) -> None:
    """Issue item 5: `/params seed 0_1`, `/params temperature ١` (and the like) are
    refused, not silently read as numbers."""
    run = ws.run([f"/params {name} {value}", "/help"])
    run.assert_survived()
    config = ws.config()
    stored = None if config is None else config[column]
    assert stored is None, f"{name} {value!r} was accepted as {stored!r}" + run.describe()


def test_a_number_typed_the_way_of_a_locale_is_explained_not_misread(ws: Workspace) -> None:
    """`/params max_tokens 1.000` (German for a thousand) said "Write it in digits: 1.",
    which set 1; `1,000` said "Write decimals with a dot: 1.000.", which led there; `١٠٠`
    and `−0.5` were refused with no word of how to write them."""
    run = ws.run(
        with_sentinels(
            [
                "/params max_tokens 1.000",
                "/params temperature \u22120.5",
                "/params max_tokens \u0661\u0660\u0660",
                "/params max_tokens 1,000",
                "/help",
            ]
        )
    )
    run.assert_survived()
    said = segments(run.out)
    assert "If the dot separates thousands, write 1000." in said[0], said[0]
    assert "Write it with a - sign: -0.5." in said[1], said[1]
    assert "Write it with the digits 0-9: 100." in said[2], said[2]
    config = ws.config()
    assert config is not None and config["max_tokens"] == 1000, run.describe()
    assert config["temperature"] is None


def test_seed_range_message_prints_plain_integers(ws: Workspace) -> None:
    """Issue item 5: the seed range in the error reads -1 … 2147483647, not 2.14748e+09
    (-1 is SillyTavern's "no seed", what `off` sets)."""
    run = ws.run(["/params seed 99999999999", "/help"])
    run.assert_survived()
    reply = run.before_help()
    assert "e+" not in reply, reply
    assert "seed must be from -1 to 2147483647." in reply, reply


# --------------------------------------------------------------------------------------
# 6. A key echoed back in escaped forms
# --------------------------------------------------------------------------------------

ESCAPE_KEY = 'sk-Esc"ape\\back+sl/ash=eq%25pct'
ESCAPE_CORE = "ape\\back+sl/ash=eq%25"  # the part no key-shape pattern would catch


def _escaped_needles(value: str) -> dict[str, str]:
    """`value` as each escaping writes it, without the wrapping quotes; in base64 also
    as it reads inside the encoded `Authorization` header (`Bearer ` before it)."""
    once = repr(value)[1:-1]
    header = base64.b64encode(f"Bearer {value}".encode()).decode()
    return {
        "base64": base64.b64encode(value.encode()).decode(),
        # "Bearer " is 7 bytes: from the 10th character on, only the value's bytes count;
        # the last 3 may share bits with the padding.
        "base64_in_header": header[10:-3],
        "base64_url_in_header": header[10:-3].replace("+", "-").replace("/", "_"),
        "raw": value,
        "bytes_repr": repr(value.encode())[2:-1],
        "json": json.dumps(value)[1:-1],
        "url_quote": quote(value, safe=""),
        "url_quote_keep_slash": quote(value),
        "url_quote_plus": quote_plus(value),
        "double_repr": repr(once)[1:-1],
        "double_json": json.dumps(json.dumps(value)[1:-1])[1:-1],
    }


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
@pytest.mark.parametrize("body_kind", ["text", "json"])
def test_key_echoed_in_escaped_forms_is_redacted_everywhere(
    ws: Workspace, endpoint: HostileEndpoint, body_kind: str, level: str
) -> None:
    """Issue item 6: an endpoint echoing the Authorization header raw, as bytes repr,
    JSON-escaped, URL-encoded and double-escaped must not get the key into stdout,
    stderr, the database files or the log file (also at LOG_LEVEL=DEBUG)."""
    endpoint.on_models = echo_auth_401(body_kind)
    endpoint.on_chat = echo_auth_401(body_kind)
    run = ws.run(
        [
            "/source custom",
            f"/proxy set {endpoint.url_v1}",
            "/key set custom",
            ESCAPE_KEY,
            "/connect",
            "/settings",
            "/model m",
            "/connect bypass:on",
            "hello",
            "/help",
        ],
        LOG_LEVEL=level,
    )
    run.assert_survived()
    assert f"Bearer {ESCAPE_KEY}" in endpoint.authorizations(), "the key was never sent"
    needles = {f"key:{k}": v for k, v in _escaped_needles(ESCAPE_KEY).items()}
    needles.update({f"core:{k}": v for k, v in _escaped_needles(ESCAPE_CORE).items()})
    assert_found_nowhere(ws, run, needles)
    config = ws.config()
    assert config is not None and config["status_reason"], "no status was recorded"


# --------------------------------------------------------------------------------------
# 7. Short proxy passwords
# --------------------------------------------------------------------------------------


def test_short_proxy_password_is_redacted(ws: Workspace, endpoint: HostileEndpoint) -> None:
    """Issue item 7: a 5-character proxy password that the endpoint reflects in a
    redirect (Location and body) appears nowhere: stdout, DEBUG stderr, DB, log file."""
    password = "Zq7x9"
    bounce = redirect(f"{endpoint.url}/?leak=Bearer%20{password}")
    endpoint.on_models = bounce
    endpoint.on_chat = bounce
    run = ws.run(
        [
            "/source custom",
            f"/proxy set {endpoint.url_v1} {password}",
            "/connect",
            "/settings",
            "/proxy show",
            "/model m",
            "/connect bypass:on",
            "hello",
            "/help",
        ],
        LOG_LEVEL="DEBUG",
    )
    run.assert_survived()
    if "proxy_password" in ws.secret_names():  # (refusing so short a password is fine too)
        assert f"Bearer {password}" in endpoint.authorizations(), "the password was not sent"
    assert_found_nowhere(ws, run, {"raw": password})


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_a_credential_in_a_redirect_s_query_stays_out_of_the_log(
    ws: Workspace, endpoint: HostileEndpoint, level: str
) -> None:
    """An endpoint that redirects its routes on its own server to a URL carrying a
    credential of its own (`?api_key=…`, a signature): the log's line for the request
    followed showed the URL whole, the credential too (too short for a key's shape)."""
    bounce = redirect(f"{endpoint.url}/v1/x?model=m&api_key=Zx9Qw8Er7Ty6&X-Amz-Signature=Sig5Tr4Xy")
    endpoint.on_models = bounce
    endpoint.on_chat = bounce
    run = ws.run([*custom_setup(endpoint), "hello", "/help"], LOG_LEVEL=level)
    run.assert_survived()
    log = b"".join(ws.log_files().values()).decode()
    assert any(r.path == "/v1/x" for r in endpoint.requests), "the redirect was not followed"
    assert "/v1/x?model=m&api_key=****&X-Amz-Signature=****" in log, log
    assert "Zx9Qw8Er7Ty6" not in log and "Sig5Tr4Xy" not in log


def test_a_proxy_password_echoed_in_base64_is_redacted_everywhere(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A proxy password with no key shape, echoed in base64: alone (a 401's message, the
    status shown to members by /settings) and inside the encoded `Authorization` header;
    and a model's answer that spells it in base64. None of it reaches stdout, DEBUG
    stderr, the database or the log file."""
    password = "TabbyPw+x/9Secret"
    encoded = base64.b64encode(password.encode()).decode()
    endpoint.on_models = echo_auth_401("json")
    endpoint.stream = Stream(chunks=["your password in base64 is ", encoded, " - bye"])
    run = ws.run(
        [
            "/source custom",
            f"/proxy set {endpoint.url_v1}",
            "/proxy password",
            password,
            "/connect",
            "/settings",
            "/model m",
            "/connect bypass:on",
            "hello",
            "/help",
        ],
        LOG_LEVEL="DEBUG",
    )
    run.assert_survived()
    assert f"Bearer {password}" in endpoint.authorizations(), "the password was never sent"
    assert "your password in base64 is" in run.out, "no answer" + run.describe()
    assert_found_nowhere(ws, run, _escaped_needles(password))


# --------------------------------------------------------------------------------------
# 8. The key reflected into the model's answer
# --------------------------------------------------------------------------------------

REFLECT_KEY = "sk-reflect-0123456789abcdef"


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param(["Your key is ", "{auth}", " - keep it safe."], id="whole-chunk"),
        pytest.param(
            ["Your key is Bearer ", REFLECT_KEY[:13], REFLECT_KEY[13:], " - keep it safe."],
            id="split-across-chunks",
        ),
    ],
)
def test_key_reflected_into_the_answer_is_neither_shown_nor_stored(
    ws: Workspace, endpoint: HostileEndpoint, chunks: list[str]
) -> None:
    """Issue item 8: an answer containing the channel's key is not printed or stored
    with the key in it."""
    endpoint.stream = Stream(chunks=chunks)
    run = ws.run(
        [
            "/source custom",
            f"/proxy set {endpoint.url_v1}",
            "/key set custom",
            REFLECT_KEY,
            "/model m",
            "hello",
            "/help",
        ]
    )
    run.assert_survived()
    assert "Your key is" in run.out, "the answer was not shown at all" + run.describe()
    assert REFLECT_KEY not in run.out, "the key was printed" + run.describe()
    stored = [m[1] for m in ws.messages() if m[0] == "assistant"]
    assert stored, "the answer was not stored"
    assert not any(REFLECT_KEY in content for content in stored), stored
    leaks = find_leaks({"raw": REFLECT_KEY}, ws.stored_files())
    assert not leaks, leaks


# --------------------------------------------------------------------------------------
# 9. Database failures
# --------------------------------------------------------------------------------------


def _said_database_not_saved(text: str) -> bool:
    return bool(re.search(r"database", text, re.I) and re.search(r"sav|stor", text, re.I))


def test_exclusive_lock_during_a_turn_loses_nothing_silently(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Issue item 9: a 15 s `BEGIN EXCLUSIVE` held while `/system x` and a chat line
    arrive: the console exits 0 without a traceback; each line either took effect after
    the lock was released or the console said (mentioning the database) it was not
    saved; a printed answer is stored unless the output says it was not saved."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()

    live = ws.live(LOG_LEVEL="WARNING")
    live.send(SENTINEL)
    assert live.wait_for(SENTINEL_ANSWER.encode()), "the console did not start"
    ready_at = len(live.stdout)

    locked = threading.Event()
    failure: list[BaseException] = []

    def hold_lock() -> None:
        try:
            conn = sqlite3.connect(ws.db_path, timeout=30, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            locked.set()
            time.sleep(15)
            conn.execute("COMMIT")
            conn.close()
        except BaseException as exc:
            failure.append(exc)
            locked.set()

    holder = threading.Thread(target=hold_lock, daemon=True)
    holder.start()
    assert locked.wait(30) and not failure, failure
    live.send("/system x", "hello", "/help")
    live.close_stdin()
    run = live.finish()
    holder.join(30)

    run.assert_survived()
    after = run.out[ready_at:]  # what the console told its user
    config = ws.config()
    assert config is not None
    assert config["system_prompt"] == "x" or _said_database_not_saved(after), (
        "/system x was neither applied nor reported as not saved" + run.describe()
    )
    answer = endpoint.stream.answer
    stored = ws.messages()
    if answer in run.out[ready_at:]:
        assert ("assistant", answer, None) in stored or _said_database_not_saved(after), (
            f"the printed answer was lost silently; stored: {stored}" + run.describe()
        )
    else:
        assert _said_database_not_saved(after), "the chat line was dropped" + run.describe()


def test_read_only_database_gives_a_clear_message(ws: Workspace, endpoint: HostileEndpoint) -> None:
    """Issue item 9: on a read-only database, writes give a clear message mentioning the
    database, no traceback, and the console goes on (a following /help is answered)."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    read_only = f"sqlite+aiosqlite:///file:{ws.db_path}?mode=ro&uri=true"
    run = ws.run(["/system x", "hello", "/help"], DATABASE_URL=read_only, LOG_LEVEL="WARNING")
    run.assert_survived()
    said = run.before_help()
    assert re.search(r"database", said, re.I), "no message about the database" + run.describe()
    if endpoint.stream.answer in run.out:
        assert _said_database_not_saved(said), "a printed answer was not stored, silently"


def test_full_disk_gives_a_clear_message(ws: Workspace, endpoint: HostileEndpoint) -> None:
    """Issue item 9: when the disk is full (RLIMIT_FSIZE just above the database's size,
    SIGXFSZ ignored) a turn whose answer cannot be stored gives a clear message, no
    traceback, and the console goes on."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    limit = max(len(data) for data in ws.stored_files().values()) + 4096
    # 150,000 three-byte characters: far more than `limit` must be written to store it
    # (also when the bot keeps only its first 100,000 characters).
    endpoint.stream = Stream(kind="huge", total_chars=150_000, piece_chars=5_000, fill="€")

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = ws.run(["hello", "/help"], preexec_fn=full_disk, LOG_LEVEL="WARNING")
    run.assert_survived()
    said = run.before_help()
    assert re.search(r"database|disk", said, re.I), "no clear message" + run.describe()


def test_settings_with_an_unreadable_secret_still_shows_the_settings(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Issue item 9: `/settings` works when a stored secret cannot be decrypted (stored
    under another BOT_SECRET_KEYS key): the settings are shown, that secret is marked
    unreadable."""
    first = ws.run(
        ["/source custom", f"/proxy set {endpoint.url_v1}", "/key set custom", CLEAN_KEY]
    )
    assert first.returncode == 0, first.describe()
    assert "custom_api_key" in ws.secret_names()

    run = ws.run(["/settings", "/help"], BOT_SECRET_KEYS=generate_key())
    run.assert_survived()
    shown = run.before_help()
    assert "Source: custom" in shown and "Model:" in shown, run.describe()
    assert re.search(
        r"unreadable|not readable|cannot be (read|decrypted)|can't be (read|decrypted)", shown, re.I
    ), run.describe()


def test_setup_commands_apply_and_name_an_unreadable_secret_in_plain_words(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A key stored under another BOT_SECRET_KEYS: `/proxy set` is applied, and its status
    check says which secret cannot be read and what to do (it said only the error, with
    the row's name `custom_api_key`). `/models external on`, which needs the list read
    with that key, says the same and changes nothing."""
    first = ws.run(
        ["/source custom", f"/proxy set {endpoint.url_v1}", "/key set custom", CLEAN_KEY]
    )
    assert first.returncode == 0, first.describe()
    run = ws.run(
        [f"/proxy set {endpoint.url}", "/models external on", "/settings", "/help"],
        BOT_SECRET_KEYS=generate_key(),
    )
    run.assert_survived()
    shown = run.before_help()
    assert f"Endpoint set to {endpoint.url}" in shown, run.describe()
    assert "Status check failed: The custom key stored for" in shown, run.describe()
    assert "set it again with the key set command." in shown, run.describe()
    assert "custom_api_key" not in shown and "proxy password for a" not in shown
    assert shown.count("cannot be decrypted") == 3  # the check, /models, /settings' status
    assert "Show external models: off" in shown, run.describe()


# --------------------------------------------------------------------------------------
# 10. Overall deadline and answer size
# --------------------------------------------------------------------------------------

DEADLINES = {"PROVIDER_ANSWER_TIMEOUT": "4", "PROVIDER_IDLE_TIMEOUT": "2"}


@pytest.mark.parametrize(
    ("stream", "keeps_text"),
    [
        pytest.param(Stream(kind="endless", chunks=["tick "], interval=0.2), True, id="endless"),
        pytest.param(Stream(kind="keepalive", interval=0.2), False, id="keepalive-only"),
        pytest.param(Stream(kind="drip", chunks=["Hello"], interval=0.5), True, id="byte-drip"),
    ],
)
def test_an_answer_that_never_ends_is_cut_at_the_deadline(
    ws: Workspace, endpoint: HostileEndpoint, stream: Stream, keeps_text: bool
) -> None:
    """Issue item 10: with PROVIDER_ANSWER_TIMEOUT=4 and PROVIDER_IDLE_TIMEOUT=2 a stream
    that never ends (endless text, keep-alive comments only, one byte every 0.5 s) ends
    the turn; what arrived is kept and marked; the next line is answered."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.stream = stream
    run = ws.run(["hello", "/help"], timeout=60, **DEADLINES)
    run.assert_survived()
    assert run.before_help().strip(), "the turn printed nothing" + run.describe()
    stored = ws.messages()
    assert stored and stored[0][0] == "user", stored
    if keeps_text:
        kept = [m for m in stored if m[0] == "assistant"]
        assert kept, f"what arrived was not kept: {stored}"
        assert kept[0][1].strip() and kept[0][2] is not None, kept


def test_max_answer_chars_caps_what_is_shown_and_stored(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Issue item 10: with MAX_ANSWER_CHARS=1000, a 200 KB answer is printed and stored
    as at most about 1000 characters plus a short marker."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.stream = Stream(kind="huge", total_chars=200_000, piece_chars=4096, fill="Ω")
    run = ws.run(["hello", "/help"], MAX_ANSWER_CHARS="1000")
    run.assert_survived()
    assert 0 < run.out.count("Ω") <= 1000, f"{run.out.count('Ω')} characters printed"
    assistant = [m for m in ws.messages() if m[0] == "assistant"]
    assert assistant, "the answer was not stored"
    content = assistant[0][1]
    assert content.count("Ω") <= 1000 and len(content) <= 1200, len(content)


@pytest.mark.parametrize(
    "usage",
    [
        pytest.param({"prompt_tokens": -5, "completion_tokens": 10**30}, id="beyond-int64"),
        pytest.param({"prompt_tokens": 2**62, "completion_tokens": 2**62}, id="sum-overflows"),
        pytest.param({"prompt_tokens": "12", "completion_tokens": True}, id="not-numbers"),
    ],
)
def test_impossible_token_counts_are_estimated_and_usage_still_adds_up(
    any_db_ws: Workspace, endpoint: HostileEndpoint, usage: dict[str, object]
) -> None:
    """An endpoint's usage report beyond any model (or negative, or not a number) is no
    report: the turn is counted by estimate, and neither the turn nor /usage breaks (a
    count of 2^62 twice overflowed SQLite's sum; 10^30 did not fit its column)."""
    ws = any_db_ws
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.stream = Stream(chunks=["Hello", " there"], usage=usage)
    run = ws.run(["hello", "hello again", "/usage", "/help"])
    run.assert_survived()
    assert run.out.count("Hello there") == 2, run.describe()
    rows = ws.query("SELECT input_tokens, output_tokens, estimated FROM usage")
    assert len(rows) == 2 and all(r[2] for r in rows), rows
    assert all(0 < r[0] < 10_000 and 0 < r[1] < 10_000 for r in rows), rows
    assert "Something went wrong" not in run.out, run.describe()
    assert re.search(r"Total: [0-9,]{1,6} tokens", run.out), run.describe()


# --------------------------------------------------------------------------------------
# 11. Huge answers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "must_store"),
    [
        pytest.param(
            Stream(kind="huge", total_chars=50_000_000, piece_chars=64 * 1024),
            True,
            id="50MB-chunks",
        ),
        # One line this long may also be refused as a whole; then nothing needs storing.
        pytest.param(Stream(kind="single_line", total_chars=20_000_000), False, id="20MB-one-line"),
    ],
)
def test_huge_answer_is_stored_capped(
    ws: Workspace, endpoint: HostileEndpoint, stream: Stream, must_store: bool
) -> None:
    """Issue item 11: with default settings, a 50 MB answer (many SSE events) or a 20 MB
    single SSE line is stored as at most 100,000 characters plus a short marker, and the
    console survives."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.stream = stream
    run = ws.run(["hello", "/help"])
    run.assert_survived()
    assert run.before_help().strip(), "the turn printed nothing" + run.describe()
    stored = [content for role, content, _error in ws.messages() if role == "assistant"]
    assert stored or not must_store, "the answer was not stored at all"
    for content in stored:
        assert len(content) <= 100_200, f"a {len(content):,}-character answer was stored"


# --------------------------------------------------------------------------------------
# 12. Crashes and failed turns
# --------------------------------------------------------------------------------------


def streaming(
    ws: Workspace,
    endpoint: HostileEndpoint,
    question: str,
    *,
    words: int = 300,
    interval: float = 0.05,
    shown: str = "w010",
) -> Live:
    """A console set up for `endpoint`, its answer to `question` streaming (`words` words
    `interval` s apart, `shown` already printed)."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.stream = Stream(chunks=[f"w{i:03d} " for i in range(words)], interval=interval)
    live = ws.live()
    live.send(question)
    assert live.wait_for(f"{shown} ".encode(), timeout=60), "the answer did not stream"
    return live


def test_kill_9_during_an_answer_keeps_the_turn_so_far(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Issue item 12: SIGKILL while an answer streams (a chunk every 0.2 s for 30 s):
    the database already holds the user's message and a non-empty prefix of what was
    printed; after a restart and one more chat line that row is marked interrupted."""
    live = streaming(ws, endpoint, "hello", words=150, interval=0.2, shown="w040")
    live.proc.send_signal(signal.SIGKILL)
    killed = live.finish(timeout=30)
    assert killed.returncode == -signal.SIGKILL, killed.describe()
    printed = killed.out.strip()

    stored = ws.messages()
    assert stored and stored[0][:2] == ("user", "hello"), stored
    partial = [m for m in stored if m[0] == "assistant"]
    assert partial, f"nothing of the printed answer was stored: {stored}"
    content = partial[0][1].strip()
    assert content and printed.startswith(content), (content[:200], printed[:200])
    # Operator probe: with no limit set, the call's usage was written only at its end,
    # so a killed process left no record of a call the endpoint billed.
    [(state, tokens)] = ws.query("SELECT state, input_tokens FROM usage")
    assert state == "reserved" and tokens > 0

    endpoint.stream = Stream()
    after = ws.run(["hello again", "/help"])
    after.assert_survived()
    stored = ws.messages()
    interrupted = [m for m in stored if m[0] == "assistant" and m[1].strip().startswith("w000")]
    assert interrupted and interrupted[0][2] is not None, stored
    # The next start settles it once no answer could still be running; till then it counts.
    assert sorted(r[0] for r in ws.query("SELECT state FROM usage")) == ["reserved", "settled"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_during_an_answer_ends_it_as_a_stop(
    ws: Workspace, endpoint: HostileEndpoint, sig: signal.Signals
) -> None:
    """Console probe: SIGTERM, or SIGHUP (the terminal closed), killed the console in
    mid-answer: what had streamed was lost, and its usage stayed reserved. It ends as
    /stop ends an answer (kept, marked stopped, its usage recorded), then the console."""
    live = streaming(ws, endpoint, "hello", words=150, interval=0.2, shown="w020")
    live.proc.send_signal(sig)
    ended = live.finish(timeout=30)
    assert ended.returncode == 128 + sig, ended.describe()
    assert "Traceback" not in ended.err
    [(content, state)] = ws.query("SELECT content, state FROM messages WHERE role = 'assistant'")
    assert content.strip().startswith("w000 w001") and state == "stopped", (content, state)
    assert [r[0] for r in ws.query("SELECT state FROM usage")] == ["settled"]


def test_turn_failing_before_any_answer_marks_the_user_message(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Issue item 12: a turn that fails before any answer (HTTP 500, no retries) leaves
    the user's row marked failed (non-NULL error), never a bare orphan."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    endpoint.on_chat = status_only(500)
    run = ws.run(["hello", "/help"], PROVIDER_MAX_RETRIES="0")
    run.assert_survived()
    stored = ws.messages()
    users = [m for m in stored if m[0] == "user"]
    assert users, f"the user's message was not stored: {stored}"
    assert all(m[2] is not None for m in users), f"bare user row without error: {stored}"


@pytest.mark.parametrize(
    ("script", "said"),
    [
        ({"on_chat": status_only(401, "bad key")}, "rejected the credentials (HTTP 401)"),
        ({"on_chat": status_only(429, "slow down")}, "is rate-limiting requests (HTTP 429)"),
        ({"stream": Stream(kind="drip", chunks=["Once "], interval=0.5)}, "stopped sending"),
    ],
    ids=["401", "429", "cut-mid-answer"],
)
def test_a_failed_turn_is_in_the_log_with_its_channel(
    ws: Workspace, endpoint: HostileEndpoint, script: dict[str, Any], said: str
) -> None:
    """An answer the endpoint failed (a refused key, a rate limit, a stream that stopped
    coming) is one WARNING naming the channel and what failed: the log had only the HTTP
    status, with no channel, or nothing at all for a stream cut mid-answer."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    for name, value in script.items():
        setattr(endpoint, name, value)
    run = ws.run(["hello", "/help"], PROVIDER_MAX_RETRIES="0", PROVIDER_IDLE_TIMEOUT="1")
    run.assert_survived()
    log = b"".join(ws.log_files().values()).decode()
    warned = [line for line in log.splitlines() if " failed: " in line and "WARNING" in line]
    assert len(warned) == 1, log
    assert f"a turn in console:-:{CHANNEL} failed:" in warned[0] and said in warned[0], warned


# --------------------------------------------------------------------------------------
# 14. Who is an admin on the console
# --------------------------------------------------------------------------------------

_HELP_LEGEND = "Commands (* = admins only):"


def test_pasted_forms_people_type_are_understood_or_explained(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """What people paste: a model id in backticks (as the bot's own messages show ids),
    a key with its `Bearer ` scheme, a decimal comma, a Claude key given to openai, an
    endpoint without a model list, and /help naming the console's /attach."""

    endpoint.on_models = status_only(404, "not here")
    run = ws.run(
        with_sentinels(
            [
                "/source custom",
                f"/proxy set {endpoint.url_v1}",
                "/model `fake-model`",
                "/key set custom Bearer sk-pasted-with-scheme-0123456789",
                "/params temperature 0,7",
                "/key set openai sk-ant-api03-abcdefghijklmnop",
                "/models external",
                "/help",
            ]
        )
    )
    run.assert_survived()
    said = segments(run.out)
    assert "Model set to fake-model." in said[2], said[2]
    assert "Saved the custom key for this channel (ends …6789)" in said[3], said[3]
    assert "Write decimals with a dot: 0.7." in said[4], said[4]
    assert "It looks like a Claude key (sk-ant-…): /key set claude" in said[5], said[5]
    assert "The endpoint has no model list (HTTP 404 for /models)" in said[6], said[6]
    assert "/attach <path>" in said[7], said[7]
    assert ("fake-model",) in ws.query("SELECT model FROM channel_configs")


def test_console_help_says_the_user_is_an_admin(ws: Workspace) -> None:
    """Issue item 14: the console's /help says the console user is an admin."""
    run = ws.run(["/help"])
    run.assert_survived()
    lines = [
        line
        for line in run.out.splitlines()
        if "admin" in line.lower()
        and line.strip() != _HELP_LEGEND
        and not re.match(r"\s*\*?\s*/", line)  # a command's own description
    ]
    assert lines, "no line of /help says the console user is an admin" + run.describe()


def test_console_user_not_in_admin_ids_is_refused(ws: Workspace) -> None:
    """Issue item 14: `console --user 123` without ADMIN_IDS is not an admin:
    `/source openai` is refused and channel_configs is unchanged."""
    first = ws.run(["/source custom"])
    assert first.returncode == 0, first.describe()
    run = ws.run(["/source openai", "/help"], args=["--user", "123"])
    run.assert_survived()
    assert "admin" in run.before_help().lower(), run.describe()
    config = ws.config()
    assert config is not None and config["source"] == "custom", config


def test_console_user_in_admin_ids_is_allowed(ws: Workspace) -> None:
    """Issue item 14: `console --user 123` with ADMIN_IDS=123 may run admin commands."""
    first = ws.run(["/source custom"])
    assert first.returncode == 0, first.describe()
    run = ws.run(["/source openai", "/help"], args=["--user", "123"], ADMIN_IDS="123")
    run.assert_survived()
    config = ws.config()
    assert config is not None and config["source"] == "openai", (config, run.describe())


def test_another_console_user_is_told_whose_question_it_was_by_name(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """With no USER in the environment the operator's name was "you": user 555 was told
    "Only you or an admin …", and a card's greeting said "Nice to meet you you."."""
    endpoint.stream = Stream(chunks=["hello"], interval=0.0)
    asked = ws.run([*custom_setup(endpoint), "hi"], USER="", LOGNAME="")
    assert asked.returncode == 0, asked.describe()
    run = ws.run(["/regenerate"], args=["--user", "555"], USER="", LOGNAME="")
    assert run.returncode == 0 and "Traceback" not in run.err, run.describe()
    me = pwd.getpwuid(os.getuid()).pw_name
    assert f"Only {me} or an admin of this channel can do that." in run.out, run.describe()
    assert [("hi", me)] == ws.query("SELECT content, author FROM messages WHERE role = 'user'")


# --------------------------------------------------------------------------------------
# The first ten minutes: Ctrl-C, and a refused command never swallows the key after it
# --------------------------------------------------------------------------------------


def test_ctrl_c_stops_the_answer_then_leaves_at_the_prompt(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Ctrl-C while an answer streams stops that answer (kept, marked stopped); the console
    goes on; Ctrl-C at the prompt leaves with exit code 0."""
    live = streaming(ws, endpoint, "count for me")
    live.proc.send_signal(signal.SIGINT)
    assert live.wait_for("⚠️ Stopped.".encode(), timeout=30), "the answer was not stopped"
    live.send("/help")
    assert live.wait_for(HELP_MARK.encode(), timeout=30), "the console did not go on"
    live.proc.send_signal(signal.SIGINT)
    done = live.finish(timeout=30)
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.err
    [user, answer] = [m for m in ws.messages() if m[0] in ("user", "assistant")]
    assert user[:2] == ("user", "count for me")
    assert answer[1].startswith("w000 ") and "w299" not in answer[1]
    assert answer[2] == "Stopped."
    assert answer[1].strip() in done.out  # what was shown is what was kept
    with sqlite3.connect(ws.db_path) as conn:  # a stop is no error in /usage
        assert conn.execute("SELECT error, output_tokens > 0 FROM usage").fetchall() == [(0, 1)]


def test_stop_typed_during_an_answer_stops_it_and_other_lines_wait_their_turn(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """`/stop` typed while an answer streams stops it at once, as Ctrl-C does (it used to
    wait for the answer's end); a question typed meanwhile is asked after the answer."""
    live = streaming(ws, endpoint, "count for me")
    live.send(" ／STOP ")  # as people type it: spaces, a full-width slash, any case
    assert live.wait_for("⚠️ Stopped.".encode(), timeout=30), "the answer was not stopped"
    assert live.wait_for(b"Stopped the answer.", timeout=30)
    mark = len(live.stdout)
    live.send("count again")
    assert live.wait_for(b"w010 ", timeout=60, start=mark), "the second answer did not stream"
    live.send("/help")  # not /stop: it runs once this answer has ended
    assert live.wait_for(HELP_MARK.encode(), timeout=60, start=mark), "the line was lost"
    live.send("/stop")  # at the prompt: nothing to stop
    assert live.wait_for(b"No answer is being written here.", timeout=30, start=mark)
    live.close_stdin()
    done = live.finish(timeout=30)
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.err
    answers = [m for m in ws.messages() if m[0] == "assistant"]
    assert [a[2] for a in answers] == ["Stopped.", None], answers
    assert "w299" in answers[1][1]  # the second answer ran to its end
    second = live.stdout[mark:]
    assert second.index(b"w299") < second.index(HELP_MARK.encode())  # /help waited for it


def _echo(master: int) -> bytes:
    """What the terminal has echoed to the screen since this was last called."""
    shown = b""
    os.set_blocking(master, False)
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except (BlockingIOError, OSError):
                return shown
            if not chunk:
                return shown
            shown += chunk
    finally:
        os.set_blocking(master, True)


def test_a_key_pasted_with_its_command_at_a_terminal_keeps_the_lines_after_it(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """`/key set custom`, the key and `/settings` pasted in one go: the key line arrived
    before the echo went off (shown, without a word), and getpass's TCSAFLUSH dropped
    every line pasted after it without a word. Nothing typed ahead is dropped now, and a
    key that was shown is said to have been (never printed). A key typed at the hidden
    prompt is not echoed, and nothing is said of it."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    pasted, typed = "Paste4Key7Shown2X1abc", "Typed8Key3Hidden5Y2def"
    live, master = ws.at_terminal()
    try:
        os.write(master, b"/help\n")
        assert live.wait_for(HELP_MARK.encode(), timeout=60), "the console did not start"
        mark = len(live.stdout)
        os.write(master, f"/key set custom\n{pasted}\n/settings\n/system\n".encode())
        assert live.wait_for(SENTINEL_ANSWER.encode(), timeout=30, start=mark), "lines lost"
        first = live.stdout[mark:].decode()
        mark = len(live.stdout)
        os.write(master, b"/key set custom\n")
        assert live.wait_for(b"(input hidden): ", timeout=30, start=mark)
        _echo(master)
        os.write(master, f"{typed}\n".encode())
        assert live.wait_for(b"Saved the custom key", timeout=30, start=mark)
        time.sleep(0.3)
        echoed = _echo(master)
        os.write(master, b"\x04")
        done = live.finish(timeout=30)
    finally:
        os.close(master)
    assert done.returncode == 0, done.describe()
    assert "Saved the custom key" in first and "Last change:" in first, first
    assert "showed it on the screen" in first and "scrollback" in first, first
    second = done.out.split(first, 1)[1]
    assert "showed it on the screen" not in second, second
    assert typed.encode() not in echoed, echoed
    for key in (pasted, typed):
        assert key not in done.out + done.err
    assert ws.messages() == []
    assert not endpoint.chat_requests()


def test_ctrl_c_at_a_key_prompt_cancels_it_and_the_console_goes_on(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Ctrl-C while the console waits for a key does not quit: it cancels the prompt, so
    whatever is typed next is not saved as the key (a command typed next runs), and an
    empty answer cancels too. A command typed at the prompt is never taken as the key."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    live = ws.live()
    live.send("/help")
    assert live.wait_for(HELP_MARK.encode(), timeout=60), "the console did not start"
    live.send("/key set custom")
    time.sleep(0.5)  # the prompt is waiting (nothing to see on a pipe)
    live.proc.send_signal(signal.SIGINT)
    assert live.wait_for(b"Cancelled: nothing will be saved", timeout=30), "no word at Ctrl-C"
    mark = len(live.stdout)
    live.send("not-a-key-after-ctrl-c")
    live.send("/help")  # the line after Ctrl-C is not the key, and says nothing more
    assert live.wait_for(HELP_MARK.encode(), timeout=30, start=mark), "the console stopped"
    assert b"No key given" not in live.stdout[mark:], live.stdout[mark:]
    mark = len(live.stdout)
    live.send("/key set custom")
    time.sleep(0.5)
    live.proc.send_signal(signal.SIGINT)
    assert live.wait_for(b"Cancelled: nothing will be saved", timeout=30, start=mark)
    live.send("/model typed-after-ctrl-c")  # what people do next: it runs, not as the key
    assert live.wait_for(b"Model set to typed-after-ctrl-c", timeout=30), "command lost"
    mark = len(live.stdout)
    live.send("/proxy password")
    time.sleep(0.5)
    live.send("/settings")  # no Ctrl-C: a command at the prompt is still no password
    assert live.wait_for(b"Last change:", timeout=30, start=mark), "/settings did not run"
    live.send("")
    live.send("/system")
    assert live.wait_for(SENTINEL_ANSWER.encode(), timeout=30), "the console did not go on"
    live.proc.send_signal(signal.SIGINT)
    done = live.finish(timeout=30)
    assert done.returncode == 0, done.describe()
    assert ws.secret_names() == []


def test_a_command_typed_with_a_fullwidth_slash_is_a_command(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A CJK keyboard types `／`: `／key set custom` asks for the key (it was chatted
    with, and the key on the next line sent to the model), `／model x` sets the model."""
    key = "sk-proj-fullwidth0123456789abcd"
    run = ws.run(
        [*custom_setup(endpoint), "\uff0fkey set custom", key, "\uff0fmodel wide-model", "/help"]
    )
    run.assert_survived()
    assert "Saved the custom key" in run.out, run.describe()
    assert "Model set to wide-model" in run.out, run.describe()
    assert not endpoint.chat_requests()
    assert key not in run.out + run.err
    assert len(ws.secret_names()) == 1, ws.secret_names()


def test_a_secret_command_missing_its_subcommand_still_drops_the_secret_line(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """`/key` alone, `/key custom` (no `set`), `/key-set custom`, `/proxy` alone and
    `/password` (a subcommand's name alone) were refused, and the key typed on the next
    line went to the model as chat and into the history in plain text."""
    key = "Qz3Xc6Vb9Nm2Lk5Jh800"  # no key shape: only its place says it is a secret
    lines = []
    for command in ("/key", "/key custom", "/key-set custom", "/proxy", "/password"):
        lines += [command, key]
    result = ws.run([*custom_setup(endpoint), *lines, "/help"])
    result.assert_survived()
    assert result.out.count("taken as the secret it asked for and dropped") == 5, result.out
    assert HELP_MARK in result.out
    assert key not in result.out + result.err
    assert not any(key.encode() in r.body for r in endpoint.requests)
    assert not endpoint.chat_requests()
    with sqlite3.connect(ws.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    assert key.encode() not in ws.db_path.read_bytes()


def test_a_refused_secret_command_pasted_with_its_key_at_a_terminal_drops_the_key(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """At a terminal, `/key set custom scope:server` and the key pasted in one go: the
    command was refused, and the key, read as the next line, went to the model as chat.
    What was typed ahead of the refusal is dropped now, and that is said."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    key = "Tty9Paste4Key7Leak2X1"
    live, master = ws.at_terminal()
    try:
        os.write(master, b"/help\n")
        assert live.wait_for(HELP_MARK.encode(), timeout=60), "the console did not start"
        mark = len(live.stdout)
        os.write(master, f"/key set custom scope:server\n{key}\n".encode())  # one paste
        assert live.wait_for(b"typed after it was dropped", timeout=30, start=mark)
        mark = len(live.stdout)
        os.write(master, b"/help\n")  # typed afterwards: read as usual
        assert live.wait_for(HELP_MARK.encode(), timeout=30, start=mark), "did not go on"
        os.write(master, b"\x04")  # Ctrl-D leaves
        done = live.finish(timeout=30)
    finally:
        os.close(master)
    assert done.returncode == 0, done.describe()
    assert "no server here" in done.out
    assert key not in done.out + done.err
    assert not endpoint.chat_requests()
    assert ws.messages() == []


def test_ctrl_d_at_a_terminal_leaves_at_once_on_a_line_of_its_own(ws: Workspace) -> None:
    """Ctrl-D at the prompt was read as an empty line first: a second `> `, and the
    shell's prompt was left on the console's last line."""
    live, master = ws.at_terminal()
    try:
        os.write(master, b"/help\n")
        assert live.wait_for(HELP_MARK.encode(), timeout=60), "the console did not start"
        assert live.wait_for(b"> ", timeout=30, start=len(live.stdout) - 2)
        os.write(master, b"\x04")  # Ctrl-D
        done = live.finish(timeout=30)
    finally:
        os.close(master)
    assert done.returncode == 0, done.describe()
    assert done.out.endswith("\n> \n") and "> > " not in done.out, repr(done.out[-200:])


def test_ctrl_d_on_a_half_typed_line_sends_nothing_and_enter_sends_the_line_shown(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """Ctrl-D pressed twice on a half-typed line sent it as a question and left; as in a
    shell, it now does nothing: the line goes on and only Enter sends what the screen
    shows. Ctrl-D on an empty line still leaves."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    live, master = ws.at_terminal()
    try:
        os.write(master, b"/help\n")
        assert live.wait_for(HELP_MARK.encode(), timeout=60), "the console did not start"
        mark = len(live.stdout)
        os.write(master, b"half a quest\x04")
        time.sleep(0.3)
        os.write(master, b"\x04")
        time.sleep(0.3)
        os.write(master, b"\x04")
        time.sleep(1.5)  # nothing is to happen: give a wrong send the time to show
        assert not endpoint.chat_requests(), live.stdout[mark:]
        assert live.proc.poll() is None, "the console left"
        os.write(master, b"ion\n")  # Enter: the line on screen is sent
        assert live.wait_for(b"Hello there!", timeout=60, start=mark), "the line was not sent"
        os.write(master, b"\x04")  # on an empty line: leaves
        done = live.finish(timeout=30)
    finally:
        os.close(master)
    assert done.returncode == 0, done.describe()
    assert [m[1] for m in ws.messages() if m[0] == "user"] == ["half a question"]


def test_a_line_cut_by_the_terminal_is_refused_not_sent_half(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """At a terminal a line past 4,095 bytes loses its end in the terminal itself: a
    /system prompt was saved without its last part and a long message sent cut, without
    a word. Such a line is now refused whole, and the next one is read as usual."""
    setup = ws.run(custom_setup(endpoint))
    assert setup.returncode == 0, setup.describe()
    live, master = ws.at_terminal()
    try:
        os.write(master, b"/help\n")
        assert live.wait_for(HELP_MARK.encode(), timeout=60), "the console did not start"
        for line in ("/system " + "x" * 6000 + " TAIL", "y" * 9000 + " END-OF-MESSAGE"):
            mark = len(live.stdout)
            os.write(master, line.encode() + b"\n")
            assert live.wait_for(b"cut off its end", timeout=30, start=mark), line[:20]
        mark = len(live.stdout)
        os.write(master, b"/help\n")
        assert live.wait_for(HELP_MARK.encode(), timeout=30, start=mark), "did not go on"
        os.write(master, b"\x04")
        done = live.finish(timeout=30)
    finally:
        os.close(master)
    assert done.returncode == 0, done.describe()
    assert not endpoint.chat_requests()
    assert ws.messages() == []
    config = ws.config()
    assert config is not None and not config.get("system_prompt")


def test_a_refused_secret_command_read_from_a_pipe_drops_the_secret_line(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A refused `/key set` or `/proxy password` in a piped console (the README's piped
    form puts the secret on the next line): that line is dropped, and that is said,
    whatever it looks like. It is neither chatted with, sent, stored, printed nor logged.
    A command on the next line still runs."""
    key = "sk-proj-swallowed0123456789abcd"
    password = "hunter2-proxy-pass"  # no key shape: only its place says it is a secret
    result = ws.run(
        [
            *custom_setup(endpoint),
            "/key set openai scope:server",
            key,
            "/key set nope",
            password,
            "/proxy password scope:server",
            password,
            "/kye set custom",  # a typo of the command: its secret still follows
            password,
            "/proxy pasword",
            password,
            "/key set opneai",
            "/help",
        ]
    )
    result.assert_survived()
    assert "no server here" in result.out
    assert "not a valid source" in result.out
    assert "Did you mean `key`?" in result.out and "Did you mean `password`?" in result.out
    assert result.out.count("taken as the secret it asked for and dropped") == 5
    assert HELP_MARK in result.out  # the command after a refusal is not dropped
    for secret in (key, password):
        assert secret not in result.out + result.err
        assert not any(secret.encode() in r.body for r in endpoint.requests)
    assert not endpoint.chat_requests()
    with sqlite3.connect(ws.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM secrets").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (0,)
