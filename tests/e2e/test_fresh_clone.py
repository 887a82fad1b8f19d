"""The README's "Run it" on a fresh clone with a bare environment, as a newcomer runs it.

It clones HEAD, so it tests committed code. It installs .venv from the package indexes
(pip's cache under HOME keeps later runs fast).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.integration.test_characters import CARD

ROOT = Path(__file__).resolve().parents[2]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", re.M)


def bare_environment() -> dict[str, str]:
    """Only PATH, HOME and LANG: no CI, DATABASE_URL, BOT_SECRET_KEYS or active venv."""
    # An activated outer venv would hand its python to the clone's scripts.
    path = [
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if entry and not Path(entry).resolve().is_relative_to(ROOT)
    ]
    return {"PATH": os.pathsep.join(path), "HOME": str(Path.home()), "LANG": "C.UTF-8"}


def run_sh(
    clone: Path, *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The clone's `scripts/run.sh`, run from `cwd` (default: the clone)."""
    return subprocess.run(
        [str(clone / "scripts" / "run.sh"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or clone,
        env=bare_environment(),
        timeout=900,
        check=False,
    )


def test_readme_run_command_on_a_fresh_clone(tmp_path: Path) -> None:
    git = shutil.which("git")
    assert git, "git is needed to clone the repository"
    clone = tmp_path / "clone"
    subprocess.run(
        [git, "clone", "--quiet", str(ROOT), str(clone)],
        check=True,
        env=bare_environment(),
        timeout=300,
    )
    assert not (clone / ".venv").exists() and not (clone / ".peers").exists()

    first = run_sh(clone)
    assert first.returncode == 2, first.stdout + first.stderr
    assert "No chat platform is configured" in first.stderr
    assert "./scripts/run.sh console" in first.stderr
    assert "Traceback" not in first.stderr
    assert "Created .env" in first.stderr
    assert (clone / ".venv" / "bin" / "chatbot").is_file()
    env_file = clone / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert re.search(r"^BOT_SECRET_KEYS=\S+$", env_file.read_text(), re.M)

    console = run_sh(clone, "console", stdin="/help\n")
    assert console.returncode == 0, console.stdout + console.stderr
    assert console.stderr == ""
    # Piped input: no banner, no prompt; the only output is /help's answer.
    assert console.stdout.startswith("How to connect"), console.stdout[:300]
    assert "/source" in console.stdout
    assert not LOG_LINE.search(console.stdout), console.stdout
    for setup_line in ("Created .env", "Creating .venv", "Installing"):
        assert setup_line not in console.stdout and setup_line not in console.stderr
    assert "console ran /help" in (clone / "data" / "chatbot.log").read_text()

    # Started from another folder: the files people name are theirs, not the clone's.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "aurelia.json").write_text(json.dumps(CARD))
    away = run_sh(
        clone,
        "console",
        stdin="/character import aurelia.json\n/character export\n",
        cwd=elsewhere,
    )
    assert away.returncode == 0, away.stdout + away.stderr
    assert (
        "Character set for this channel: Captain Aurelia Voss (speaking as Aurelia)." in away.stdout
    ), away.stdout
    exported = elsewhere / "Captain_Aurelia_Voss.png"
    assert f"Saved {exported}" in away.stdout, away.stdout
    assert exported.is_file() and not (clone / exported.name).exists()

    # `keygen` as the first command of a clone: it prints the key .env was made with, the
    # only line on stdout (`$(./scripts/run.sh keygen)` takes it), not a second one.
    env_file.unlink()
    made = run_sh(clone, "keygen")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "Created .env" in made.stderr
    [key] = made.stdout.splitlines()
    assert f"\nBOT_SECRET_KEYS={key}\n" in env_file.read_text()
    again = run_sh(clone, "keygen")  # .env is there: a new key, for rotation
    assert again.stdout.strip() not in ("", key)
    assert again.stderr.startswith("(its id is ")  # what rotate-keys will name it by
