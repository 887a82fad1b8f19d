"""README.md against the code: what can drift without a test noticing (the settings'
names are checked in test_settings.py)."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from bot.commands.spec import SCOPE, Command
from bot.commands.table import TABLE
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _settings_rows() -> dict[str, str]:
    """README's settings table: name → its default cell."""
    return dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", README, re.M))


@pytest.mark.parametrize("name", [f.name for f in fields(Settings)])
def test_readme_gives_each_settings_default_as_the_code_has_it(name: str) -> None:
    f = next(f for f in fields(Settings) if f.name == name)
    default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    cell = _settings_rows()[name.upper()].strip()
    if cell.startswith("`"):  # `50`, `data` (Docker: `/data`): read as the setting reads it
        written = cell.split("`")[1]
        assert f.metadata["read"](written) == default, cell
    elif cell.startswith("empty"):
        assert not default, cell


def _ranges() -> list[tuple[str, int | None, int]]:
    """(setting, lowest, highest) as README's settings table states them: `(100 to
    10,000,000)`, `at most 36500` (not `at most 1 MB`, nor a count of characters)."""
    found = []
    for name, meaning in re.findall(r"^\| `([A-Z0-9_]+)` \|[^|]*\| (.*) \|$", README, re.M):
        unit = r"(?![\d,]*\s*(?:MB|characters))"
        for low, high in re.findall(rf"\b(\d[\d,]*) to (\d[\d,]*)\b{unit}", meaning):
            found.append((name, int(low.replace(",", "")), int(high.replace(",", ""))))
        for high in re.findall(rf"\bat most (\d[\d,]*)\b{unit}", meaning):
            found.append((name, None, int(high.replace(",", ""))))
    return found


@pytest.mark.parametrize(("name", "low", "high"), _ranges())
def test_readme_gives_each_settings_range_as_the_code_has_it(
    name: str, low: int | None, high: int
) -> None:
    read = next(f for f in fields(Settings) if f.name == name.lower()).metadata["read"]
    read(str(high))
    with pytest.raises(ValueError):
        read(str(high + 1))
    if low is not None:
        read(str(low))
        with pytest.raises(ValueError):
            read(str(low - 1))


def test_readme_names_every_benchmark() -> None:
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        assert f"bench/{script.name}" in README, script.name


def _command_rows() -> list[str]:
    """The first cell of each row of README's command table."""
    table = README.split("| command | what it does |", 1)[1].split("\n\n", 1)[0]
    return [line.split(" | ", 1)[0] for line in table.splitlines() if line.startswith("| `/")]


@pytest.mark.parametrize("command", TABLE, ids=lambda c: c.name)
def test_readme_lists_every_command_with_its_subcommands_and_scope(command: Command) -> None:
    rows = [row for row in _command_rows() if re.search(rf"`/{command.name}\b", row)]
    assert rows, f"/{command.name} is not in README's command table"
    cells = " ".join(rows)
    for leaf in command.subcommands or (command,):
        if leaf is not command:
            assert re.search(rf"\b{leaf.name}\b", cells), f"/{command.name} {leaf.name}"
        # A row that lists the subcommands alone (`/character import|show|…`) leaves their
        # options to its own section; any other names `[scope]` where the command takes it.
        compact = re.search(rf"`/{command.name} \w+\\\|", cells)  # `\|` in a table
        if SCOPE in leaf.options and not compact:
            assert "[scope]" in cells, f"/{command.name} {leaf.name}: [scope]"
