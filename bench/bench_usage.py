"""What usage accounting costs a turn: one row written, and /usage's sums over a month;
with quotas, the atomic charge before a turn and the settle after it; and 1,000 turns
from two processes at once, every usage row counted afterwards.

Run: .venv/bin/python bench/bench_usage.py [--rows 30000] [--postgres] [--quota-only]
     .venv/bin/python bench/bench_usage.py --year [--rows 1500000] [--postgres] [--explain]

SQLite in a temporary file; with --postgres also a throwaway PostgreSQL cluster (the
test suite's, started the same way). Prints per-call latency of Store.record_usage
(sequential, and 50 turns at once) and of Store.usage_buckets for the queries /usage
makes. No target is asserted; it prints numbers.

--year: a busy year instead (rows over 365 days, 500 channels in 25 servers, 2,000
users, 12 models, a few estimated, erroring or reserved), then `/usage` for every scope
and period, as an admin and as a member, and `/limits` with three limits in force, each
through Core.run_text_command (the command's whole path); --explain prints the plans of
/usage's queries.
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


YEAR_CHANNELS = 500
YEAR_SERVERS = 25
YEAR_USERS = 2000
YEAR_MODELS = 12


def year_rows(rows: int, start: int) -> Iterator[dict[str, object]]:
    """Rows `start` … of a busy year, evenly over 365 days (oldest first): one big server
    (g0: half the channels and half the rows), the other channels over 24 servers; a
    third of the calls by 50 heavy users."""
    for i in range(start, rows):
        at = NOW - timedelta(days=364 * (rows - 1 - i) / max(1, rows - 1))
        channel = (i * 7919) % YEAR_CHANNELS
        server = 0 if channel < YEAR_CHANNELS // 2 else 1 + channel % (YEAR_SERVERS - 1)
        user = ((i * 104729) % YEAR_USERS) if i % 3 else (i % 50)  # 50 heavy users
        yield {
            "created_at": at,
            "day": at.date(),
            "platform": "discord",
            "server_id": f"g{server}",
            "channel_id": f"c{channel}",
            "thread_id": "",
            "user_id": f"u{user}",
            "source": "openai",
            "model": f"model-{(i * 31) % YEAR_MODELS}",
            "input_tokens": 500 + i % 700,
            "output_tokens": 100 + i % 300,
            "estimated": i % 17 == 0,
            "error": i % 101 == 0,
            "key_scope": "channel",
            "state": "reserved" if i > rows - 5 else "settled",
        }


async def seed_year(store: Store, rows: int) -> None:
    batch: list[dict[str, object]] = []
    async with store.engine.begin() as conn:
        for row in year_rows(rows, 0):
            batch.append(row)
            if len(batch) == 10_000:
                await conn.execute(insert(UsageRow), batch)
                batch = []
        if batch:
            await conn.execute(insert(UsageRow), batch)
    async with store.engine.begin() as conn:  # fresh statistics, as a live database has
        from sqlalchemy import text

        await conn.execute(text("ANALYZE"))


async def explain_usage(name: str, store: Store) -> None:
    """The plans of the statements /usage and housekeeping's settling send (as compiled
    for this database)."""
    from sqlalchemy import event

    from bot.core import Core
    from bot.providers import ProviderHub, ProviderSettings
    from bot.types import Actor, ChannelRef, Incoming, Platform

    seen: list[tuple[str, object]] = []

    def catch(conn, cursor, statement, parameters, context, many):  # type: ignore[no-untyped-def]
        first = statement.lstrip().upper()
        if "usage" in statement and not first.startswith(("INSERT", "EXPLAIN")):
            seen.append((statement, parameters))

    core = Core(store, ProviderHub(ProviderSettings()))
    owner = Actor("admin", "Admin", is_channel_admin=True, is_server_admin=True)
    ref = ChannelRef(Platform.DISCORD, "c1", "g0")
    sync = store.engine.sync_engine
    sqlite = "sqlite" in sync.dialect.name
    event.listen(sync, "before_cursor_execute", catch)
    try:
        for text_ in ("/usage server month", "/usage channel month", "/usage me month", ""):
            seen.clear()
            if text_:
                reply = await core.run_text_command(Incoming(ref, owner, text_))
                assert reply.ok, reply.text
            else:
                text_ = "housekeeping's settling"
                await core.settle_reserved()
            for statement, parameters in seen:
                prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
                async with store.engine.connect() as conn:
                    found = await conn.exec_driver_sql(prefix + statement, parameters)
                    plan = [str(r[-1]) for r in found.all()]
                print(f"{name}: plan for {text_}:")
                for line in plan:
                    print(f"    {line}")
    finally:
        event.remove(sync, "before_cursor_execute", catch)


async def measure_year(name: str, url: str, rows: int, explain: bool) -> None:
    from bot.core import Core
    from bot.providers import ProviderHub, ProviderSettings
    from bot.types import Actor, ChannelRef, Incoming, Platform, Scope

    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of()
    )
    try:
        t = time.perf_counter()
        await seed_year(store, rows)
        print(f"{name}: {rows:,} rows over 365 days seeded in {time.perf_counter() - t:.1f} s")
        core = Core(store, ProviderHub(ProviderSettings()))
        owner = Actor("admin", "Admin", is_channel_admin=True, is_server_admin=True)
        heavy = Actor("u1", "Heavy")  # one of the 50 heaviest users
        never = Actor("u-never", "Never")  # used nothing
        ref = ChannelRef(Platform.DISCORD, "c1", "g0")  # on the big server
        for limit in ("tokens_per_user_day", "tokens_per_channel_day"):
            await store.quotas.set_limit(ref, Scope.CHANNEL, limit, 10**9, owner)
        await store.quotas.set_limit(ref, Scope.SERVER, "tokens_per_server_day", 10**9, owner)
        await store.quotas.set_limit(ref, Scope.CHANNEL, "messages_per_user_minute", 1000, owner)
        cases = [
            (f"/usage {scope} {period}", who, label)
            for scope in ("me", "channel", "server")
            for period in ("day", "week", "month")
            for who, label in ((owner, "admin"), (heavy, "member"))
            if not (scope == "me" and label == "admin")
        ]
        cases += [("/usage me month", never, "never used"), ("/limits", heavy, "member")]
        settling = []
        for _ in range(5):
            t = time.perf_counter()
            await core.settle_reserved()  # nothing stale: a start's, and every hour's
            settling.append(time.perf_counter() - t)
        print(
            f"{name}: housekeeping's settling (nothing stale)   median "
            f"{statistics.median(settling) * 1000:8.1f} ms, max {max(settling) * 1000:8.1f} ms"
        )
        for text_, who, label in cases:
            reply = await core.run_text_command(Incoming(ref, who, text_))
            assert reply.ok, reply.text
            times = []
            for _ in range(5):
                t = time.perf_counter()
                await core.run_text_command(Incoming(ref, who, text_))
                times.append(time.perf_counter() - t)
            print(
                f"{name}: {text_:24} as {label:10} median {statistics.median(times) * 1000:8.1f} ms"
                f", max {max(times) * 1000:8.1f} ms"
            )
        if explain:
            await explain_usage(name, store)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--quota-only", action="store_true")
    parser.add_argument("--worker", default="")
    parser.add_argument("--tag", default="a")
    parser.add_argument("--year", action="store_true")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.tag))
        return
    if args.year:
        rows = args.rows if args.rows != 30_000 else 1_500_000
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(
                measure_year("SQLite", f"sqlite+aiosqlite:///{tmp}/year.db", rows, args.explain)
            )
        if args.postgres:
            with postgres() as url:
                asyncio.run(measure_year("PostgreSQL", url, rows, args.explain))
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
