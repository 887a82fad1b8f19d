"""The provider layer's network layer again, on uvloop: the loop `chatbot run` serves on.

uvloop's transports are not asyncio's classes, and its timers and pause/resume of
reading are its own; every test of test_network.py runs here on a uvloop loop.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import httpcore
import pytest
import pytest_asyncio
import uvloop

from bot.providers._network import AsyncioBackend
from tests.unit import test_network
from tests.unit.test_network import *  # noqa: F403  (collected again, on this module's loop)

del test_addresses_alternate_between_families_starting_with_the_first_listed  # noqa: F821
del test_the_connect_time_check_refuses_what_the_url_check_refuses  # noqa: F821  (no loop)

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    # The documented way in pytest-asyncio 1.x; its replacement hook would parametrize
    # every async test of the suite. If a release removes it, the test below fails.
    pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture'),
]


@pytest.fixture(scope="module")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    return uvloop.EventLoopPolicy()


@pytest_asyncio.fixture(loop_scope="module")
async def pool() -> AsyncIterator[httpcore.AsyncConnectionPool]:
    async with httpcore.AsyncConnectionPool(network_backend=AsyncioBackend()) as p:
        yield p


async def test_these_tests_run_on_uvloop() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    tests = [
        name
        for name, test in vars(test_network).items()
        if name.startswith("test_") and inspect.iscoroutinefunction(test)
    ]
    assert len(tests) >= 16 and all(name in globals() for name in tests)
