"""The console's hidden prompt and the terminal's echo (the rest of the console is
driven at a real pseudo-terminal in tests/e2e/test_hostile_console.py)."""

from __future__ import annotations

import os
import termios

from bot.frontends.console import _Reader


def test_a_hidden_prompt_after_the_console_ended_leaves_the_echo_on() -> None:
    """Review: a signal ending the console in the instant a key's prompt was about to
    turn the echo off restored it first; the prompt then turned it off, and the
    terminal was left without echo after the console had gone."""
    master, slave = os.openpty()
    try:
        reader = _Reader(slave, True, "utf-8")
        reader.restore_echo(ending=True)  # the console ends first
        os.write(master, b"typed-ahead\n")  # without the guard: read, not refused
        assert reader._read_hidden("Key (input hidden): ") is None
        assert termios.tcgetattr(slave)[3] & termios.ECHO
    finally:
        os.close(master)
        os.close(slave)
