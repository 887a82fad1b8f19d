"""Fixtures shared by the console's e2e files: a workspace (its own key, its own
folder) and the loopback endpoint that records every request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.store import generate_key
from tests.e2e.hostile_endpoint import HostileEndpoint
from tests.e2e.test_hostile_console import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(cwd=tmp_path, secret_keys=generate_key())


@pytest.fixture
def endpoint() -> Iterator[HostileEndpoint]:
    served = HostileEndpoint().start()
    try:
        yield served
    finally:
        served.stop()
