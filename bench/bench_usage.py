"""What usage accounting costs a turn: one row written, and /usage's sums over a month;
with quotas, the atomic charge before a turn and the settle after it; and 1,000 turns
from two processes at once, every usage row counted afterwards.

Run: .venv/bin/python bench/bench_usage.py [--rows 30000] [--postgres] [--quota-only]

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


async def measure_quota(name: str, url: str, rows: int) -> None:
    """A turn's quota work: the charge before the call (limits read, lock, sums, reserved
    row) and the settle after it, with limits in force; and the charge where none are."""
    from bot.types import Actor, ChannelRef, Platform, Scope
    from bot.usage.quota import Gate, charge

    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of()
    )
    gate = Gate()
    try:
        await seed(store, rows)
        limited = ChannelRef(Platform.DISCORD, "c1", "g1")
        free = ChannelRef(Platform.DISCORD, "c2", "g2")
        admin = Actor("admin", "Admin", is_channel_admin=True, is_server_admin=True)
        big = 10**12
        await store.quotas.set_limit(limited, Scope.SERVER, "tokens_per_server_day", big, admin)
        await store.quotas.set_limit(limited, Scope.CHANNEL, "tokens_per_user_day", big, admin)
        await store.quotas.set_limit(limited, Scope.CHANNEL, "messages_per_user_minute", big, admin)
        charged, settled, whole, unlimited = [], [], [], []
        for i in range(550):
            user = f"u{i % 500}"
            t0 = time.perf_counter()
            done = await charge(
                store, gate, limited, user, source="openai", model="m", estimate=300
            )
            t1 = time.perf_counter()
            reserved = getattr(done, "reserved", None)
            assert reserved is not None, done
            await store.record_usage(record(1), reserved)
            t2 = time.perf_counter()
            nothing = await charge(store, gate, free, user, source="openai", model="m", estimate=1)
            t3 = time.perf_counter()
            # No limit there: the call's row is only held (its end settles it), not counted.
            held_only = getattr(nothing, "reserved", None)
            assert held_only is not None, nothing
            await store.quotas.release(held_only)
            if i >= 50:  # warm-up
                charged.append(t1 - t0)
                settled.append(t2 - t1)
                whole.append(t2 - t0)
                unlimited.append(t3 - t2)
        print(f"{name}: charge with 3 limits in force over {rows:,} rows: {ms(charged)}")
        print(f"{name}: settle (UPDATE of the reserved row): {ms(settled)}")
        print(f"{name}: charge + settle: {ms(whole)}")
        print(
            f"{name}: charge where no limit holds (its row held, nothing counted): {ms(unlimited)}"
        )
        # What a new question costs now: its store with the charge in the same transaction,
        # against the same store without a charge (no limit here).
        from bot.types import HistoryEntry, Role
        from bot.usage.quota import guard

        plain, guarded = [], []
        for i in range(550):
            user = f"u{i % 500}"
            question = HistoryEntry(Role.USER, f"question {i}", author="U", tokens=3)
            t0 = time.perf_counter()
            await store.add_messages(free, [question])
            t1 = time.perf_counter()
            held = await guard(store, gate, limited, user, source="openai", model="m", estimate=300)
            assert held is not None
            await store.add_messages(limited, [question], (), held)
            t2 = time.perf_counter()
            assert held.reserved is not None
            await store.record_usage(record(1), held.reserved)
            if i >= 50:
                plain.append(t1 - t0)
                guarded.append(t2 - t1)
        print(f"{name}: question stored, no limit: {ms(plain)}")
        print(f"{name}: question stored with the charge in its transaction: {ms(guarded)}")
        added = statistics.median(guarded) - statistics.median(plain)
        print(f"{name}: added by the charge (difference of the p50s): {added * 1000:.2f} ms")
        # The charge alone, inside a write transaction, next to one trivial statement
        # there: their ratio says how many round trips the charge costs, a number that
        # moves less with the machine's load than the milliseconds do.
        from sqlalchemy import text

        inside, trivial = [], []
        for i in range(550):
            held = await guard(
                store, gate, limited, f"u{i % 500}", source="openai", model="m", estimate=300
            )
            assert held is not None
            async with store.engine.begin() as conn:
                await conn.execute(text("SELECT 1"))  # BEGIN: the question's write pays it
                t0 = time.perf_counter()
                assert await held.run(conn)
                t1 = time.perf_counter()
                await conn.execute(text("SELECT 1"))
                t2 = time.perf_counter()
            if i >= 50:
                inside.append(t1 - t0)
                trivial.append(t2 - t1)
        ratio = statistics.median(inside) / statistics.median(trivial)
        print(
            f"{name}: the charge inside a transaction: {ms(inside)}; one SELECT 1 there: "
            f"{ms(trivial)} (the charge costs {ratio:.1f} of them)"
        )
        floor = []
        for i in range(300):
            t = time.perf_counter()
            await store.quotas.release(-1)  # one write transaction that changes nothing
            if i >= 50:
                floor.append(time.perf_counter() - t)
        print(f"{name}: floor, an empty write transaction: {ms(floor)}")
    finally:
        await store.close()


WORKER_TURNS = 500
WORKER_CONVERSATIONS = 50


async def worker(url: str, tag: str) -> None:
    """One process's share of the two-process run: WORKER_TURNS chat turns through a real
    Core (engine, charge, history, settle), the model answered by respx, in ≤ 10 s."""
    import httpx
    import respx

    from bot.core import Core
    from bot.providers import ProviderHub, ProviderSettings
    from bot.types import Actor, ChannelRef, Incoming, Platform, Scope

    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of()
    )
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    core = Core(store, hub)
    admin = Actor("admin", "Admin", is_channel_admin=True)
    fake = "http://127.0.0.1:9/v1"
    body = (
        'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n'
        'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2}}\n\n'
        "data: [DONE]\n\n"
    )

    class Sink:
        async def typing(self) -> None:
            return None

        async def update(self, answer: str, reasoning: str = "") -> None:
            return None

        async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
            return None

    refs = [
        ChannelRef(Platform.DISCORD, f"c{i % 5}", "g-shared", f"{tag}-t{i}")
        for i in range(WORKER_CONVERSATIONS)
    ]
    for channel in {r.channel_id for r in refs}:
        await store.update_config(
            ChannelRef(Platform.DISCORD, channel, "g-shared"),
            Scope.CHANNEL,
            admin,
            {"source": "custom", "proxy_url": fake, "model": "m", "bypass_status_check": True},
            action="bench",
        )
    per = WORKER_TURNS // WORKER_CONVERSATIONS

    async def conversation(ref: ChannelRef, n: int) -> None:
        for k in range(per):
            user = Actor(f"{tag}-u{(n + k) % 20}", "U")
            await core.chat(Incoming(ref, user, f"question {k}"), Sink())

    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{fake}/chat/completions").mock(
            return_value=httpx.Response(
                200, content=body.encode(), headers={"content-type": "text/event-stream"}
            )
        )
        t = time.perf_counter()
        await asyncio.gather(*(conversation(r, n) for n, r in enumerate(refs)))
        took = time.perf_counter() - t
    await core.close()
    print(f"  worker {tag}: {WORKER_TURNS} turns in {took:.2f} s")


async def two_processes(name: str, url: str) -> None:
    """1,000 turns from two processes on one database under a server-wide limit that
    holds them all; then every usage row is counted."""
    from sqlalchemy import func, select

    from bot.types import Actor, ChannelRef, Platform, Scope

    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of()
    )
    admin = Actor("admin", "Admin", is_channel_admin=True, is_server_admin=True)
    shared = ChannelRef(Platform.DISCORD, "c0", "g-shared")
    await store.quotas.set_limit(shared, Scope.SERVER, "tokens_per_server_day", 10**9, admin)
    t = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", url, "--tag", tag
        )
        for tag in ("a", "b")
    ]
    codes = [await p.wait() for p in procs]
    took = time.perf_counter() - t
    async with store.engine.connect() as conn:
        found = await conn.execute(
            select(UsageRow.state, func.count(), func.sum(UsageRow.input_tokens))
            .where(UsageRow.server_id == "g-shared")
            .group_by(UsageRow.state)
        )
        states = {str(s): (int(n), int(tokens or 0)) for s, n, tokens in found.all()}
    await store.close()
    print(
        f"{name}: two processes, {2 * WORKER_TURNS} turns in {took:.2f} s (exit {codes}): "
        f"usage rows by state {states}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--quota-only", action="store_true")
    parser.add_argument("--worker", default="")
    parser.add_argument("--tag", default="a")
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.tag))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if not args.quota_only:
            asyncio.run(measure("SQLite", f"sqlite+aiosqlite:///{tmp}/bench.db", args.rows))
        asyncio.run(measure_quota("SQLite", f"sqlite+aiosqlite:///{tmp}/quota.db", args.rows))
        asyncio.run(two_processes("SQLite", f"sqlite+aiosqlite:///{tmp}/two.db"))
    if args.postgres:
        with postgres() as url:
            if not args.quota_only:
                asyncio.run(measure("PostgreSQL", url, args.rows))
            asyncio.run(measure_quota("PostgreSQL", url, args.rows))
            asyncio.run(two_processes("PostgreSQL", url))


if __name__ == "__main__":
    main()
