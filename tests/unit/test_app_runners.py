"""How `chatbot run` keeps its front-ends: until a stop signal, or until one cannot go on."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import weakref

import pytest

from bot.app import _until_stopped, settle_start_up
from bot.frontends import FrontendError


async def forever(cancelled: list[str], name: str) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.append(name)
        raise


async def test_a_stop_signal_cancels_every_front_end_and_returns() -> None:
    cancelled: list[str] = []

    async def send_sigterm() -> None:
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        await forever(cancelled, "Matrix")

    await _until_stopped({"Discord": forever(cancelled, "Discord"), "Matrix": send_sigterm()})
    assert sorted(cancelled) == ["Discord", "Matrix"]
    # The handlers are gone again: the default action is back for SIGTERM.
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler)


@pytest.mark.parametrize(
    ("ending", "message"),
    [
        (FrontendError("refused the token"), "Discord: refused the token"),
        (RuntimeError("boom"), "Discord stopped after an unexpected error (RuntimeError)"),
        (None, "Discord stopped on its own"),
    ],
)
async def test_a_front_end_that_ends_stops_the_others_with_a_clear_error(
    ending: BaseException | None, message: str
) -> None:
    cancelled: list[str] = []

    async def ends() -> None:
        await asyncio.sleep(0.01)
        if ending is not None:
            raise ending

    with pytest.raises(FrontendError) as err:
        await _until_stopped({"Discord": ends(), "Matrix": forever(cancelled, "Matrix")})
    assert message in str(err.value)
    assert "boom" not in str(err.value)  # the type, never the text of an unexpected error
    assert cancelled == ["Matrix"]


def test_front_ends_and_pdf_reader_load_only_when_used() -> None:
    """matrix-nio, discord.py and pypdf are a third of the process's memory: a bot that
    runs one platform (or never sees a PDF) must not load the others at start."""
    code = (
        "import sys, bot.cli, bot.core\n"
        "print(sorted(m for m in ('nio', 'discord', 'pypdf') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_what_start_up_made_is_left_out_of_later_collections() -> None:
    """`chatbot run` freezes what exists once it has started (the collector's full runs
    then walk only newer objects); garbage start-up left is collected first."""

    class Node:
        other: object = None

    gc.unfreeze()
    node = Node()
    node.other = node  # a cycle: only the collector frees it
    dropped = weakref.ref(node)
    del node
    try:
        settle_start_up()
        assert gc.get_freeze_count() > 10_000  # the modules, classes and the rest
        assert dropped() is None  # start-up's garbage was not frozen with the rest
        assert gc.isenabled()  # later objects are still collected
    finally:
        gc.unfreeze()
