"""The store's write-through memory: hits skip the database, every write is seen at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import event

from bot.store import SecretBox, Store, migrate
from bot.store.cache import ScopedCache
from bot.store.secrets import generate_key
from bot.types import (
    Actor,
    ChannelConfig,
    ChannelRef,
    HistoryEntry,
    Platform,
    Role,
    Scope,
    SecretValue,
    Source,
    StatusCheck,
)

CHAN = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
SIBLING = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
OTHER_SERVER = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g2")
THREAD = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1", thread_id="t1")
ADMIN = Actor("u1", "Ada", is_channel_admin=True, is_server_admin=True)
KEY = generate_key()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---- the cache itself ---------------------------------------------------------------


def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache: ScopedCache[str] = ScopedCache(ttl=30, max_entries=10, clock=clock)
    cache.put("k", ("p", "s", "c"), "v", generation=cache.generation())
    clock.now += 29.9
    assert cache.get("k") == "v"
    clock.now += 0.2
    assert cache.get("k") is None
    assert len(cache) == 0


def test_entries_past_the_ttl_go_as_others_come() -> None:
    """A long-running bot sees channels once and never again: their entries went only
    when max_entries newer ones pushed them out (tens of MB held for days). Now each put
    lets those past their TTL go, least recently used first."""
    clock = FakeClock()
    cache: ScopedCache[str] = ScopedCache(ttl=30, max_entries=20_000, clock=clock)
    for n in range(5000):
        cache.put(f"c{n}", ("p", "s", f"c{n}"), "v", generation=cache.generation())
        clock.now += 0.1  # 10 new channels a second
    assert len(cache) <= 301
    assert cache.get("c4999") == "v" and cache.get("c0") is None
    busy = "c4800"
    assert cache.get(busy) == "v"  # used: stays until its own TTL
    clock.now += 60
    cache.put("new", ("p", "s", "new"), "v", generation=cache.generation())
    assert len(cache) == 1 and cache.get("new") == "v"


def test_a_read_that_raced_a_write_is_not_cached() -> None:
    cache: ScopedCache[str] = ScopedCache(ttl=30, max_entries=10)
    before = cache.generation()  # a reader starts...
    cache.drop_scope(("p", "s", "c"))  # ...a write lands meanwhile...
    cache.put("k", ("p", "s", "c"), "old", generation=before)  # ...the old value stays out
    assert cache.get("k") is None
    cache.put("k", ("p", "s", "c"), "new", generation=cache.generation())
    assert cache.get("k") == "new"


def test_a_server_write_drops_every_channel_of_that_server_only() -> None:
    cache: ScopedCache[str] = ScopedCache(ttl=30, max_entries=10)
    for key, scope in [
        ("a", ("discord", "g1", "c1")),
        ("b", ("discord", "g1", "c2")),
        ("c", ("discord", "g2", "c1")),
        ("d", ("matrix", "g1", "c1")),
    ]:
        cache.put(key, scope, key, generation=cache.generation())
    cache.drop_scope(("discord", "g1", "c1"))
    assert [cache.get(k) for k in "abcd"] == [None, "b", "c", "d"]
    cache.drop_scope(("discord", "g1", ""))
    assert [cache.get(k) for k in "abcd"] == [None, None, "c", "d"]


def test_least_recently_used_goes_first_by_count_and_by_weight() -> None:
    cache: ScopedCache[str] = ScopedCache(ttl=30, max_entries=3, max_weight=10, weigh=len)
    scope = ("p", "s", "c")
    for key in ("a", "b", "c"):
        cache.put(key, scope, key * 3, generation=cache.generation())
    assert cache.get("a") == "aaa"  # now the newest used
    cache.put("d", scope, "ddd", generation=cache.generation())
    assert cache.get("b") is None and cache.get("a") == "aaa"
    cache.put("e", scope, "eeeee", generation=cache.generation())  # 3+3+3+5 > 10
    assert cache.weight <= 10
    assert cache.get("e") == "eeeee"
    cache.put("huge", scope, "x" * 11, generation=cache.generation())
    assert cache.get("huge") is None  # bigger than the whole budget: never kept


# ---- the store through it -----------------------------------------------------------


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    await migrate.upgrade(database_url)
    opened = await Store.open(
        database_url, SecretBox.from_setting(KEY), defaults=ChannelConfig.of(source=Source.OPENAI)
    )
    try:
        yield opened
    finally:
        await opened.close()


@contextmanager
def counting_selects(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    engine = store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def test_config_is_read_once_and_writes_are_seen_at_once(store: Store) -> None:
    await store.effective_config(CHAN)
    await store.effective_config(SIBLING)
    with counting_selects(store) as selects:
        assert (await store.effective_config(CHAN)).model is None
    assert selects == []

    await store.update_config(CHAN, Scope.CHANNEL, ADMIN, {"model": "m-chan"}, action="t")
    assert (await store.effective_config(CHAN)).model == "m-chan"
    await store.update_config(CHAN, Scope.SERVER, ADMIN, {"model": "m-server"}, action="t")
    assert (await store.effective_config(SIBLING)).model == "m-server"  # dropped with its server
    assert (await store.effective_config(CHAN)).model == "m-chan"  # the channel row still wins
    assert (await store.effective_config(OTHER_SERVER)).model is None
    await store.update_config(CHAN, Scope.CHANNEL, ADMIN, {"model": None}, action="t")
    assert (await store.effective_config(CHAN)).model == "m-server"


async def test_status_writes_are_seen_at_once(store: Store) -> None:
    assert (await store.effective_config(CHAN)).status is None
    await store.update_config(
        CHAN, Scope.CHANNEL, ADMIN, {"proxy_url": "http://127.0.0.1:9"}, action="t"
    )
    await store.record_status(CHAN, None, "http://127.0.0.1:9/v1")
    assert (await store.effective_config(CHAN)).resolved_url == "http://127.0.0.1:9/v1"


async def test_a_channels_own_key_is_seen_at_once_by_whose_check_it_shows(store: Store) -> None:
    """A check of the server's endpoint is shown in the channels that use that endpoint; a
    channel's own key makes the endpoint its own, so the check is not its (and the config
    remembered from before the key is not used)."""
    ok = StatusCheck(True, "fine", checked_url="https://api.openai.com/v1")
    assert await store.record_status(CHAN, ok, None)
    assert (await store.effective_config(SIBLING)).status == replace(ok, server_wide=True)
    name, key = "openai_api_key", SecretValue("sk-own-0000000003333")
    await store.set_secret(SIBLING, Scope.CHANNEL, name, key, ADMIN)
    config = await store.effective_config(SIBLING)
    assert config.status is None and not config.server_endpoint
    await store.clear_secret(SIBLING, Scope.CHANNEL, name, ADMIN)
    assert (await store.effective_config(SIBLING)).status == replace(ok, server_wide=True)


async def test_secrets_are_read_once_and_changes_are_seen_at_once(store: Store) -> None:
    name = "openai_api_key"
    assert await store.resolve_secret(CHAN, name) is None
    with counting_selects(store) as selects:
        assert await store.resolve_secret(CHAN, name) is None
    assert selects == []

    await store.set_secret(CHAN, Scope.SERVER, name, SecretValue("sk-server-key-0001"), ADMIN)
    found = await store.resolve_secret(SIBLING, name)
    assert found is not None and found.reveal() == "sk-server-key-0001"
    await store.set_secret(CHAN, Scope.CHANNEL, name, SecretValue("sk-chan-key-0002"), ADMIN)
    assert await store.secret_origin(CHAN, name) == ("channel", "0002")
    await store.clear_secret(CHAN, Scope.CHANNEL, name, ADMIN)
    assert await store.secret_origin(CHAN, name) == ("server", "0001")
    await store.clear_secret(CHAN, Scope.SERVER, name, ADMIN)
    assert await store.resolve_secret(SIBLING, name) is None


async def test_history_is_kept_in_step_with_the_database(store: Store, database_url: str) -> None:
    assert await store.history(CHAN, 10) == []
    turn = [
        HistoryEntry(Role.USER, "hello", author="Ada", tokens=2),
        HistoryEntry(Role.ASSISTANT, "hi there", tokens=3, error="cut"),
    ]
    await store.add_messages(CHAN, turn)
    await store.add_messages(THREAD, [HistoryEntry(Role.USER, "in a thread", tokens=3)])
    with counting_selects(store) as selects:
        remembered = await store.history(CHAN, 10)
    assert selects == []
    fresh = await Store.open(
        database_url, SecretBox.from_setting(KEY), defaults=ChannelConfig.of(source=Source.OPENAI)
    )
    try:
        assert remembered == await fresh.history(CHAN, 10) == turn
        assert await fresh.history(THREAD, 10) == await store.history(THREAD, 10)
    finally:
        await fresh.close()
    assert await store.history(CHAN, 1) == turn[-1:]

    await store.clear_history(CHAN, ADMIN)
    assert await store.history(CHAN, 10) == []
    assert len(await store.history(THREAD, 10)) == 1


async def test_a_longer_history_than_remembered_is_read_again(store: Store) -> None:
    for i in range(5):
        await store.add_messages(CHAN, [HistoryEntry(Role.USER, f"m{i}", tokens=1)])
    assert [e.content for e in await store.history(CHAN, 2)] == ["m3", "m4"]
    with counting_selects(store) as selects:
        assert [e.content for e in await store.history(CHAN, 4)] == ["m1", "m2", "m3", "m4"]
    assert len(selects) == 1


async def test_turns_finishing_together_commit_together_and_a_bad_one_fails_alone(
    store: Store,
) -> None:
    refs = [ChannelRef(Platform.DISCORD, channel_id=f"c{i}", server_id="g9") for i in range(30)]
    broken = HistoryEntry(Role.ASSISTANT, None)  # type: ignore[arg-type]

    def turn(i: int) -> list[HistoryEntry]:
        return [
            HistoryEntry(Role.USER, f"q{i}", author="Ada", tokens=1),
            HistoryEntry(Role.ASSISTANT, f"a{i}", tokens=1),
        ]

    commits: list[str] = []
    event.listen(store.engine.sync_engine, "commit", lambda conn: commits.append("c"))
    saves = [
        store.add_messages(ref, [*turn(i), broken] if i == 7 else turn(i))
        for i, ref in enumerate(refs)
    ]
    results = await asyncio.gather(*saves, return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, BaseException)] == [7]
    assert len(commits) < len(refs)  # shared commits, not one per turn
    fresh = await Store.open(
        store.engine.url.render_as_string(hide_password=False),
        SecretBox.from_setting(KEY),
        defaults=ChannelConfig.of(source=Source.OPENAI),
    )
    try:
        for i, ref in enumerate(refs):
            stored = await fresh.history(ref, 10)
            assert stored == ([] if i == 7 else turn(i))  # all of a turn, in order, or nothing
    finally:
        await fresh.close()


async def test_prefetch_reads_a_turn_in_one_go_then_nothing(store: Store) -> None:
    await store.update_config(CHAN, Scope.SERVER, ADMIN, {"model": "m-server"}, action="t")
    await store.set_secret(
        CHAN, Scope.SERVER, "openai_api_key", SecretValue("sk-srv-0000001111"), ADMIN
    )
    await store.set_secret(
        CHAN, Scope.CHANNEL, "openai_api_key", SecretValue("sk-ch-00000002222"), ADMIN
    )
    await store.add_messages(CHAN, [HistoryEntry(Role.USER, "earlier", author="Ada", tokens=1)])
    fresh = await Store.open(
        store.engine.url.render_as_string(hide_password=False),
        SecretBox.from_setting(KEY),
        defaults=ChannelConfig.of(source=Source.OPENAI),
    )
    try:
        with counting_selects(fresh) as selects:
            await fresh.prefetch(CHAN, 200)
        # config, secrets, history in one batch; who may chat, the limits and the card
        # beside it
        assert len(selects) == 6
        assert sum("FROM access_rules" in s for s in selects) == 1
        assert sum("FROM limits" in s for s in selects) == 1
        assert sum("FROM characters" in s for s in selects) == 1
        with counting_selects(fresh) as selects:
            assert (await fresh.effective_config(CHAN)).model == "m-server"
            assert await fresh.secret_origin(CHAN, "openai_api_key") == ("channel", "2222")
            assert [e.content for e in await fresh.history(CHAN, 200)] == ["earlier"]
            assert not (await fresh.quotas.limits(CHAN)).channel
            assert await fresh.quotas.rules(CHAN) == []
            assert await fresh.character(CHAN) is None
            await fresh.prefetch(CHAN, 200)
        assert selects == []
        # A room without a server never picks up a row of the "no server" server.
        room = ChannelRef(Platform.MATRIX, channel_id="!r:example.org")
        await fresh.prefetch(room, 10)
        assert (await fresh.effective_config(room)).model is None
    finally:
        await fresh.close()


async def test_channels_read_together_share_queries_and_each_gets_its_own(
    store: Store,
) -> None:
    servers = ["g1", "g2"]
    refs = [
        ChannelRef(Platform.DISCORD, channel_id=f"c{i}", server_id=servers[i % 2])
        for i in range(40)
    ]
    rooms = [ChannelRef(Platform.MATRIX, channel_id=f"!r{i}:x") for i in range(5)]
    threads = [ChannelRef(Platform.DISCORD, "c0", "g1", thread_id=f"t{i}") for i in range(3)]
    await store.update_config(refs[0], Scope.SERVER, ADMIN, {"model": "m-g1"}, action="t")
    await store.update_config(refs[3], Scope.CHANNEL, ADMIN, {"model": "m-c3"}, action="t")
    key = "openai_api_key"
    await store.set_secret(refs[1], Scope.SERVER, key, SecretValue("sk-g2-00000007777"), ADMIN)
    await store.set_secret(refs[5], Scope.CHANNEL, key, SecretValue("sk-c5-00000008888"), ADMIN)
    for i, ref in enumerate([*refs[:6], *threads]):
        await store.add_messages(ref, [HistoryEntry(Role.USER, f"said in {i}", tokens=1)] * (i + 1))
    fresh = await Store.open(
        store.engine.url.render_as_string(hide_password=False),
        SecretBox.from_setting(KEY),
        defaults=ChannelConfig.of(source=Source.OPENAI),
    )
    everyone = [*refs, *rooms, *threads]
    try:
        with counting_selects(fresh) as selects:
            await asyncio.gather(*(fresh.prefetch(ref, 3) for ref in everyone))
        assert len(selects) < len(everyone) / 4  # a few grouped queries, not one per channel
        with counting_selects(fresh) as selects:
            models = [(await fresh.effective_config(r)).model for r in refs]
            origins = [await fresh.secret_origin(r, "openai_api_key") for r in refs]
            histories = [await fresh.history(r, 3) for r in [*refs[:6], *threads]]
        assert selects == []
    finally:
        await fresh.close()
    assert models == [
        "m-c3" if i == 3 else "m-g1" if i % 2 == 0 else None for i in range(len(refs))
    ]
    assert origins == [
        ("channel", "8888") if i == 5 else ("server", "7777") if i % 2 == 1 else None
        for i in range(len(refs))
    ]
    assert [len(h) for h in histories] == [1, 2, 3, 3, 3, 3, 3, 3, 3]
    assert [h[0].content for h in histories] == [f"said in {i}" for i in range(9)]


@pytest.mark.parametrize(
    "text", ["plain English words here " * 4, "😀🎉 emoji " * 10, "漢字の文" * 25]
)
def test_a_remembered_historys_weight_is_no_less_than_its_memory(text: str) -> None:
    """Soak probe: the history cache, capped at 32 M characters, took 119 MB of emoji
    text: a character was weighed as a byte, an entry's own objects as 64 bytes."""
    import gc
    import tracemalloc

    from bot.store.reads import _History, _history_bytes

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        entries = tuple(
            HistoryEntry(
                Role.USER,
                "".join([text, str(n)]),
                author=f"user {n}",
                author_id=f"u{n}",
                tokens=n,
                id=n,
            )
            for n in range(2000)
        )
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert _history_bytes(_History(entries, True)) >= held, held
