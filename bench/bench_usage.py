"""What usage accounting costs a turn: one row written, and /usage's sums over a month.

Run: .venv/bin/python bench/bench_usage.py [--rows 30000] [--postgres]

SQLite in a temporary file; with --postgres also a throwaway PostgreSQL cluster (the
test suite's, started the same way). Prints per-call latency of Store.record_usage
(sequential, and 50 turns at once) and of Store.usage_buckets for the queries /usage
makes. No target is asserted; it prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.store.models import UsageRow
from bot.types import ChannelConfig, UsageQuery, UsageRecord

NOW = datetime.now(UTC)


def record(i: int, at: datetime = NOW) -> UsageRecord:
    return UsageRecord(
        at=at,
        platform="discord",
        server_id=f"g{i % 20}",
        channel_id=f"c{i % 200}",
        thread_id="",
        user_id=f"u{i % 500}",
        source="openai",
        model=f"model-{i % 6}",
        input_tokens=500 + i % 700,
        output_tokens=100 + i % 300,
    )


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[int(len(values) * 0.95) - 1]
    return f"p50 {statistics.median(values) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms"


async def seed(store: Store, rows: int) -> None:
    """`rows` rows spread over 30 days, inserted in bulk (not what is measured)."""
    values = []
    for i in range(rows):
        at = NOW - timedelta(days=i % 30, minutes=i % 600)
        r = record(i, at)
        values.append(
            {
                "created_at": r.at,
                "day": r.at.date(),
                "platform": r.platform,
                "server_id": r.server_id,
                "channel_id": r.channel_id,
                "thread_id": "",
                "user_id": r.user_id,
                "source": r.source,
                "model": r.model,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "estimated": False,
                "error": False,
                "key_scope": "channel",
            }
        )
    async with store.engine.begin() as conn:
        for start in range(0, len(values), 5000):
            await conn.execute(insert(UsageRow), values[start : start + 5000])


async def measure(name: str, url: str, rows: int) -> None:
    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of()
    )
    try:
        await seed(store, rows)
        for i in range(50):  # warm-up
            await store.record_usage(record(i))
        single = []
        for i in range(500):
            t = time.perf_counter()
            await store.record_usage(record(i))
            single.append(time.perf_counter() - t)
        print(f"{name}: record_usage, one at a time: {ms(single)}")
        burst = []
        for round_ in range(10):
            t = time.perf_counter()
            await asyncio.gather(*(store.record_usage(record(round_ * 50 + i)) for i in range(50)))
            burst.append(time.perf_counter() - t)
        print(f"{name}: record_usage, 50 at once: {ms(burst)} for all 50")
        today = NOW.date()
        queries = {
            "channel, week": UsageQuery("discord", today - timedelta(days=6), today, "g1", "c1"),
            "user, month": UsageQuery("discord", today - timedelta(days=29), today, user_id="u7"),
            "server, month": UsageQuery("discord", today - timedelta(days=29), today, "g3"),
        }
        for label, query in queries.items():
            times = []
            for _ in range(30):
                t = time.perf_counter()
                await store.usage_buckets(query)
                times.append(time.perf_counter() - t)
            print(f"{name}: usage_buckets {label} over {rows:,} rows: {ms(times)}")
    finally:
        await store.close()


@contextmanager
def postgres() -> Iterator[str]:
    from tests.peers.postgres import postgres_server

    # The suite's fixture run by hand (a bench, not a test: pytest's own accessor).
    cluster = postgres_server._get_wrapped_function()()
    server = next(cluster)
    try:
        server.sql('CREATE DATABASE "bench_usage"')
        yield server.url("bench_usage")
    finally:
        next(cluster, None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure("SQLite", f"sqlite+aiosqlite:///{tmp}/bench.db", args.rows))
    if args.postgres:
        with postgres() as url:
            asyncio.run(measure("PostgreSQL", url, args.rows))


if __name__ == "__main__":
    main()
