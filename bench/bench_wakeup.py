"""What a wakeup costs on this machine: the floor under the bot's CPU per turn.

Run: .venv/bin/python bench/bench_wakeup.py

A turn is ~2 s of waiting broken by short bursts of work: a model's tokens, a database
answer, a timer. On a virtual machine, waking an idle process costs CPU whatever the
process then does. This measures it on asyncio's loop and on uvloop (which `chatbot
run` uses):

1. a timer that wakes an idle loop every `gap` ms (0: back to back, never idle);
2. one SQLite statement through aiosqlite itself (execute, fetch, close: three hops to
   its worker thread and back), back to back and after an idle spell;
3. the same SELECT through SQLAlchemy: on its own aiosqlite adapter (four hops) and on
   the store's engine (`bot.store.db.create_engine`: two hops).

CPU is this process's (every thread), per wakeup or per statement. No target is
asserted; it prints numbers.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
import uvloop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.store.db import create_engine

GAPS_MS = (0, 1, 10, 50)
ROUNDS = 200
LOOPS = ("asyncio", "uvloop")


async def timer_wakeups(gap: float) -> float:
    """CPU µs per wakeup of a loop that sleeps `gap` seconds between them."""
    start = time.process_time()
    for _ in range(ROUNDS):
        await asyncio.sleep(gap)
    return (time.process_time() - start) / ROUNDS * 1e6


async def statements(gap: float) -> float:
    """CPU µs per `SELECT … LIMIT 1` through aiosqlite, `gap` seconds apart."""
    with tempfile.TemporaryDirectory() as tmp:
        async with aiosqlite.connect(Path(tmp) / "b.db") as db:
            await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            await db.execute("INSERT INTO t (v) VALUES ('x')")
            await db.commit()
            start = time.process_time()
            for _ in range(ROUNDS):
                async with db.execute("SELECT v FROM t LIMIT 1") as cursor:
                    await cursor.fetchall()
                if gap:
                    await asyncio.sleep(gap)
            spent = time.process_time() - start
            # The sleeps' own wakeups are measured above; count only the statement's part.
            idle = await timer_wakeups(gap) * ROUNDS / 1e6 if gap else 0.0
            return (spent - idle) / ROUNDS * 1e6


async def through(make: Callable[[str], AsyncEngine], gap: float) -> float:
    """CPU µs per `SELECT … LIMIT 1` through a SQLAlchemy engine, `gap` seconds apart."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = make(f"sqlite+aiosqlite:///{Path(tmp) / 'b.db'}")
        try:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
                await conn.execute(text("INSERT INTO t (v) VALUES ('x')"))
            async with engine.connect() as conn:
                select = text("SELECT v FROM t LIMIT 1")
                start = time.process_time()
                for _ in range(ROUNDS):
                    (await conn.execute(select)).all()
                    if gap:
                        await asyncio.sleep(gap)
                spent = time.process_time() - start
        finally:
            await engine.dispose()
        idle = await timer_wakeups(gap) * ROUNDS / 1e6 if gap else 0.0
        return (spent - idle) / ROUNDS * 1e6


ENGINES: dict[str, Callable[[str], AsyncEngine]] = {
    "SQLAlchemy's adapter": create_async_engine,
    "the store's engine": create_engine,
}


def on(loop: str, job: Callable[[], Coroutine[Any, Any, float]]) -> float:
    if loop == "uvloop":
        return uvloop.run(job())
    return asyncio.run(job())


def main() -> None:
    print(f"CPU per wakeup of an idle event loop, µs ({ROUNDS} wakeups each)")
    for gap_ms in GAPS_MS:
        gap = gap_ms / 1000
        cells = [f"{name} {on(name, partial(timer_wakeups, gap)):6.1f}" for name in LOOPS]
        print(f"   every {gap_ms:3d} ms: " + "   ".join(cells))
    print("\nCPU per SQLite statement through aiosqlite (execute, fetch, close), µs")
    for gap_ms in (0, 10):
        gap = gap_ms / 1000
        cells = [f"{name} {on(name, partial(statements, gap)):6.1f}" for name in LOOPS]
        what = "back to back" if not gap_ms else f"one every {gap_ms} ms"
        print(f"   {what:>16}: " + "   ".join(cells))
    print("\nCPU per SQLite SELECT through SQLAlchemy, µs")
    for label, make in ENGINES.items():
        for gap_ms in (0, 10):
            gap = gap_ms / 1000
            cells = [f"{name} {on(name, partial(through, make, gap)):6.1f}" for name in LOOPS]
            what = "back to back" if not gap_ms else f"one every {gap_ms} ms"
            print(f"   {label:>20}, {what:>16}: " + "   ".join(cells))


if __name__ == "__main__":
    main()
