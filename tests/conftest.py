import pytest

from tests.peers._process import STARTED

pytest_plugins = [
    "tests.peers.postgres",
    "tests.peers.litellm",
    "tests.peers.llamacpp",
    "tests.peers.synapse",
]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for peer in STARTED:
        terminalreporter.write_line(
            f"peer start-up: {peer.name} ready in {peer.startup_seconds:.2f}s"
        )
