"""Hourly housekeeping (Core.housekeeping) on a big PostgreSQL database: how long each of
its statements takes, under the bot's own 15 s statement deadline (PG_STATEMENT_SECONDS).

Run: .venv/bin/python bench/bench_prune.py [--conversations 10000] [--rows 2000000]
         [--big 1500] [--over 100] [--explain] [--url postgresql+asyncpg://…]

A throwaway PostgreSQL cluster (the test suite's, started the same way; fsync off) unless
--url names an empty database. Seeded in the server (not measured): `--conversations`
Discord channels, `--big` of them holding KEPT_MESSAGES + `--over` messages, the rest
sharing what is left of `--rows`; the conversations' messages interleaved in id order as
they would be written; one posts row a message (its platform message); an image every
50th message, over 3,000 blobs of ~250 kB (by their size column) spread over 40 days;
200,000 usage rows, 20 of them reserved and stale. Then VACUUM ANALYZE (what autovacuum
does). Then Core.housekeeping() runs three times through Store.open's engines, each
statement timed (SQLAlchemy's cursor events) and named by what it does; --explain
prints EXPLAIN (ANALYZE, BUFFERS) of prune_old's survey. No target is asserted; it
prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.conversation.engine import KEPT_MESSAGES, PRUNED_AT_ONCE
from bot.core import Core, TurnLimits
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.db import create_engine
from bot.store.migrate import upgrade_to_head
from bot.types import ChannelConfig

SLICES = 20  # the fill's passes: each takes every conversation's next 1/20, shuffled

# What a statement is, by its SQL (first match wins).
KINDS = [
    ("survey (GROUP BY … HAVING)", re.compile(r"GROUP BY.*HAVING", re.S)),
    ("chunk delete (messages)", re.compile(r"^DELETE FROM messages")),
    ("orphan blobs delete", re.compile(r"^DELETE FROM blobs WHERE NOT \(EXISTS")),
    ("images: age delete", re.compile(r"^DELETE FROM blobs WHERE blobs.created_at")),
    ("images: size sum", re.compile(r"sum\(blobs.size\)")),
    ("images: oldest first", re.compile(r"FROM blobs ORDER BY")),
    ("images: size delete", re.compile(r"^DELETE FROM blobs WHERE blobs.sha256 IN")),
    ("settle: read", re.compile(r"^SELECT usage.id .*state = 'reserved'", re.S)),
    ("settle: update", re.compile(r"^UPDATE usage")),
    ("waiting: prune", re.compile(r"waiting_turns")),
]


def kind_of(sql: str) -> str:
    for name, pattern in KINDS:
        if pattern.search(sql):
            return name
    return "other: " + " ".join(sql.split())[:60]


class Timings:
    """Every statement's time on the engines watched, by kind."""

    def __init__(self) -> None:
        self.seen: dict[str, list[float]] = defaultdict(list)

    def watch(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine

        @event.listens_for(sync, "before_cursor_execute")
        def before(conn: Any, _cursor: Any, *_: Any) -> None:
            conn.info.setdefault("started", []).append(time.perf_counter())

        @event.listens_for(sync, "after_cursor_execute")
        def after(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            took = time.perf_counter() - conn.info["started"].pop()
            self.seen[kind_of(statement)].append(took)

    def report(self, label: str) -> None:
        for kind, times in sorted(self.seen.items()):
            median = statistics.median(times) * 1000
            print(
                f"  {label}: {kind:30} n={len(times):5}  median {median:9.1f} ms"
                f"  max {max(times) * 1000:9.1f} ms  total {sum(times):7.2f} s"
            )
        self.seen.clear()


def fill_statements(conversations: int, big: int, over: int, rows: int) -> list[str]:
    big_rows = KEPT_MESSAGES + over
    small = max(1, (rows - big * big_rows) // max(1, conversations - big))
    convs = (
        "CREATE TEMP TABLE convs AS SELECT c, 'g' || (c % 200) AS server_id, "
        f"(100000000000000000 + c)::text AS channel_id, "
        f"CASE WHEN c < {big} THEN {big_rows} ELSE {small} END AS n "
        f"FROM generate_series(0, {conversations - 1}) c"
    )
    fills = [
        "INSERT INTO messages (platform, server_id, channel_id, thread_id, role, author, "
        "content, token_estimate, state, image_count, hidden, author_id, created_at) "
        "SELECT 'discord', s.server_id, s.channel_id, '', "
        "CASE WHEN j % 2 = 0 THEN 'user' ELSE 'assistant' END, 'someone', "
        "repeat(md5(s.c::text || '-' || j::text), 6), 60, 'done', "
        "CASE WHEN (s.c + j) % 50 = 0 THEN 1 ELSE 0 END, false, 'u' || (j % 97), "
        "now() - make_interval(mins => (s.n - j) * 5) "
        f"FROM convs s, generate_series(s.n * {k} / {SLICES}, s.n * {k + 1} / {SLICES} - 1) j "
        "ORDER BY random()"
        for k in range(SLICES)
    ]
    return [
        convs,
        *fills,
        "INSERT INTO posts (message_id, platform, post_id) "
        "SELECT id, 'discord', (200000000000000000 + id)::text FROM messages",
        "INSERT INTO blobs (sha256, media_type, data, size, created_at) "
        "SELECT md5(b::text) || md5((-b)::text), 'image/webp', '\\x00'::bytea, 250000, "
        "now() - make_interval(mins => b * 19) FROM generate_series(0, 2999) b",
        "INSERT INTO message_images (message_id, position, sha256, name, media_type) "
        "SELECT id, 0, md5((id % 3000)::text) || md5((-(id % 3000))::text), 'cat.webp', "
        "'image/webp' FROM messages WHERE image_count = 1",
        "INSERT INTO usage (created_at, day, platform, server_id, channel_id, thread_id, "
        "user_id, source, model, input_tokens, output_tokens, estimated, error, key_scope, state) "
        "SELECT now() - make_interval(mins => u), (now() - make_interval(mins => u))::date, "
        "'discord', 'g' || (u % 200), (100000000000000000 + u % 5000)::text, '', "
        "'u' || (u % 997), 'openai', 'm', 500, 100, false, false, 'channel', "
        "CASE WHEN u % 10000 = 5000 THEN 'reserved' ELSE 'settled' END "
        "FROM generate_series(0, 199999) u",
    ]


async def fill(url: str, conversations: int, big: int, over: int, rows: int) -> None:
    engine = create_engine(url)  # no deadline: the fill is not what is measured
    started = time.perf_counter()
    try:
        async with engine.begin() as conn:
            for statement in fill_statements(conversations, big, over, rows):
                await conn.execute(text(statement))
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
            sizes = await conn.execute(
                text(
                    "SELECT relname, n_live_tup, pg_size_pretty(pg_total_relation_size(relid)) "
                    "FROM pg_stat_user_tables WHERE relname IN "
                    "('messages', 'posts', 'message_images', 'blobs', 'usage') ORDER BY relname"
                )
            )
            for name, live, size in sizes:
                print(f"  {name:15} {live:>11,} rows  {size}")
    finally:
        await engine.dispose()
    print(f"  (filled in {time.perf_counter() - started:.0f} s)")


async def explain_survey(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            plan = await conn.execute(
                text(
                    "EXPLAIN (ANALYZE, BUFFERS) SELECT platform, server_id, channel_id, "
                    "thread_id FROM messages GROUP BY platform, server_id, channel_id, "
                    f"thread_id HAVING count(*) > {KEPT_MESSAGES}"
                )
            )
            for (line,) in plan:
                print("    " + line)
    finally:
        await engine.dispose()


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def measure(url: str, args: argparse.Namespace) -> None:
    print(
        f"{args.conversations:,} conversations, {args.big:,} of them at "
        f"{KEPT_MESSAGES + args.over:,} messages, ~{args.rows:,} messages "
        f"(keep {KEPT_MESSAGES:,}, at most {PRUNED_AT_ONCE:,} deleted a run):"
    )
    await upgrade_to_head(url)
    await fill(url, args.conversations, args.big, args.over, args.rows)
    if args.explain:
        print("  the survey's plan, after VACUUM ANALYZE:")
        await explain_survey(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of()
    )
    core = Core(store, ProviderHub(ProviderSettings()), limits=TurnLimits())
    timings = Timings()
    for engine in {store.engine, store._long.engine}:  # the bot's, and the long reads'
        timings.watch(engine)
    warnings = Warnings()
    logging.getLogger("bot").addHandler(warnings)
    try:
        for run in range(1, args.runs + 1):
            started = time.perf_counter()
            await core.housekeeping()
            took = time.perf_counter() - started
            print(f" housekeeping run {run}: {took:.1f} s, warnings: {warnings.lines or 'none'}")
            timings.report(f"run {run}")
            warnings.lines.clear()
        if args.explain:
            print("  the survey's plan, after the runs (no VACUUM since):")
            await explain_survey(url)
    finally:
        await core.close()


@contextmanager
def postgres() -> Iterator[str]:
    from tests.peers.postgres import postgres_server

    # The suite's fixture run by hand (a bench, not a test: pytest's own accessor).
    cluster = postgres_server._get_wrapped_function()()
    server = next(cluster)
    try:
        server.sql('CREATE DATABASE "bench_prune"')
        yield server.url("bench_prune")
    finally:
        next(cluster, None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--big", type=int, default=1_500)
    parser.add_argument("--over", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--url", default="")
    args = parser.parse_args()
    if args.url:
        asyncio.run(measure(args.url, args))
        return
    with postgres() as url:
        asyncio.run(measure(url, args))


if __name__ == "__main__":
    main()
