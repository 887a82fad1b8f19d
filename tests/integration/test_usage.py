"""Usage accounting end to end: rows written by real turns (SQLite and PostgreSQL), the
peers' reported tokens, /usage and who sees what, the chart, the price table."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import respx
from PIL import Image

from bot.conversation.stream import SHOW_FAILED
from bot.core import Core
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.types import (
    Actor,
    ChannelConfig,
    ChannelRef,
    Incoming,
    KeyScope,
    Platform,
    Reply,
    Scope,
    SecretValue,
    Source,
    TurnState,
    UsageQuery,
    UsageRecord,
)
from bot.types.prices import PriceTable
from bot.usage.report import TOP, Totals, summarize
from tests.discord.fake_openai import Script, fake_openai
from tests.peers.litellm import LiteLLMPeer
from tests.peers.llamacpp import LlamaCppPeer

FAKE = "http://127.0.0.1:9/v1"  # only ever answered by respx
REF = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
OTHER_CHANNEL = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
ADMIN = Actor("u-admin", "Ada", is_channel_admin=True)
OWNER = Actor("u-owner", "Olga", is_channel_admin=True, is_server_admin=True)
MEMBER = Actor("u-member", "Bob")
OTHER = Actor("u-other", "Cy")


def today() -> date:
    """The UTC day now, asked when a test runs: a constant taken as the module loaded
    was yesterday for the tests that ran after midnight (a CI run begun at 23:40)."""
    return datetime.now(UTC).date()


class Sink:
    def __init__(self) -> None:
        self.final = ""
        self.error: str | None = None

    async def typing(self) -> None:
        return None

    async def update(self, answer: str, reasoning: str = "") -> None:
        return None

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        self.final, self.error = answer, error


async def open_core(url: str, prices: PriceTable | None = None) -> Core:
    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of(source=Source.OPENAI)
    )
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    return Core(store, hub, prices=prices)


@pytest.fixture
async def core(database_url: str) -> AsyncIterator[Core]:
    core = await open_core(database_url)
    try:
        yield core
    finally:
        await core.close()


async def configure(core: Core, url: str, model: str, ref: ChannelRef = REF) -> None:
    await core.store.update_config(
        ref,
        Scope.CHANNEL,
        ADMIN,
        {"source": "custom", "proxy_url": url, "model": model, "bypass_status_check": True},
        action="test setup",
    )


async def ask(core: Core, text: str, actor: Actor = MEMBER, ref: ChannelRef = REF) -> Sink:
    sink = Sink()
    await core.chat(Incoming(ref, actor, text), sink)
    return sink


async def rows(store: Store, since: date | None = None) -> list[UsageRecord]:
    return [r async for r in store.usage_records(since or today())]


async def command(core: Core, text: str, actor: Actor, ref: ChannelRef = REF) -> Reply:
    return await core.run_text_command(Incoming(ref, actor, text))


def sse(pieces: list[str], usage: dict[str, int] | None) -> bytes:
    chunks: list[object] = [
        {"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage is not None:
        chunks.append({"choices": [], "usage": usage})
    return ("".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n").encode()


def record(
    day: date,
    user: str,
    model: str,
    tokens: tuple[int, int],
    ref: ChannelRef = REF,
    **extra: object,
) -> UsageRecord:
    return UsageRecord(
        at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
        platform=ref.platform.value,
        server_id=ref.server_id,
        channel_id=ref.channel_id,
        thread_id=ref.thread_id,
        user_id=user,
        source="openai",
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        **extra,  # type: ignore[arg-type]
    )


# -- the store -----------------------------------------------------------------------------


async def test_rows_sum_by_day_user_and_model_with_each_filter(core: Core) -> None:
    store = core.store
    yesterday = today() - timedelta(days=1)
    matrix = ChannelRef(Platform.MATRIX, channel_id="!room:hs")
    for r in [
        record(today(), "a", "gpt-x", (10, 5)),
        record(today(), "a", "gpt-x", (1, 1), estimated=True),
        record(today(), "b", "claude-y", (100, 50), error=True, key_scope=KeyScope.SERVER),
        record(yesterday, "a", "gpt-x", (7, 3), ref=OTHER_CHANNEL),
        record(today(), "a", "gpt-x", (1000, 1000), ref=matrix),
        record(today() - timedelta(days=40), "a", "gpt-x", (9, 9)),
    ]:
        await store.record_usage(r)

    def q(**kw: object) -> UsageQuery:
        return UsageQuery("discord", today() - timedelta(days=6), today(), **kw)  # type: ignore[arg-type]

    week = await store.usage_buckets(q())
    assert [
        (b.day, b.user_id, b.model, b.input_tokens, b.output_tokens, b.calls) for b in week
    ] == [
        (yesterday, "a", "gpt-x", 7, 3, 1),
        (today(), "a", "gpt-x", 11, 6, 2),
        (today(), "b", "claude-y", 100, 50, 1),
    ]
    assert [(b.estimated_calls, b.error_calls) for b in week] == [(0, 0), (1, 0), (0, 1)]
    channel = await store.usage_buckets(q(server_id="g1", channel_id="c1"))
    assert sum(b.calls for b in channel) == 3
    mine = await store.usage_buckets(q(user_id="a"))
    assert sum(b.input_tokens for b in mine) == 18
    server = await store.usage_buckets(q(server_id="g1"))
    assert sum(b.calls for b in server) == 4
    assert await store.usage_buckets(q(server_id="g2")) == []
    exported = await rows(store, today() - timedelta(days=1))
    assert len(exported) == 5  # every platform, from that day on, oldest row first
    assert exported[2].key_scope is KeyScope.SERVER and exported[2].error


def rounded(found: object) -> object:
    """Costs to the nano-dollar: summed in another order they differ in the last bit."""
    if isinstance(found, Totals):
        return replace(found, cost=None if found.cost is None else round(found.cost, 9))
    if isinstance(found, tuple):
        return tuple(rounded(item) for item in found)
    return found


async def test_the_summary_the_database_sums_reports_what_every_bucket_does(
    core: Core,
) -> None:
    """/usage reads sums per (day, model) and the top users' own (a busy server's month
    is tens of thousands of (day, user, model) buckets): the same report, ties of the
    top users and prices per model included."""
    store = core.store
    models = ("gpt-4o", "claude-3", "llama")
    for i in range(60):
        day = today() - timedelta(days=i % 9)
        user = f"u{i % 8}" if i % 5 else "u-heavy"
        await store.record_usage(
            record(day, user, models[i % 3], (100 * (i % 4), 10), estimated=i % 7 == 0)
        )
    # Two users tied for the last places: the first ids go, as when every bucket is read.
    for user in ("t-b", "t-a", "t-c"):
        await store.record_usage(record(today(), user, "llama", (1000, 0)))
    await store.record_usage(record(today(), "u1", "gpt-4o", (5, 5), ref=OTHER_CHANNEL))
    prices = PriceTable.parse("gpt-4o=2.5/10,claude-3=3/15")
    for scope in (
        {"server_id": "g1"},
        {"server_id": "g1", "channel_id": "c1"},
        {"user_id": "u-heavy"},
    ):
        query = UsageQuery("discord", today() - timedelta(days=6), today(), **scope)  # type: ignore[arg-type]
        every = summarize(await store.usage_buckets(query), query.since, query.until, prices)
        per_day, users = await store.usage_summary(query, TOP)
        summed = summarize(per_day, query.since, query.until, prices, users=users)
        assert rounded(summed.top_users) == rounded(every.top_users), scope
        assert len(summed.top_users) == (1 if "user_id" in scope else TOP)
        assert rounded(summed.totals) == rounded(every.totals)
        assert summed.totals.estimated_calls > 0
        assert rounded(summed.top_models) == rounded(every.top_models)
        assert summed.models == every.models
        assert summed.per_day == every.per_day
    assert [u for u, _ in summed.top_users] == ["u-heavy"]
    nothing = UsageQuery("discord", today(), today(), user_id="u-never")
    assert await store.usage_summary(nothing, TOP) == ([], [])


async def test_rows_of_turns_ending_together_are_all_kept(core: Core) -> None:
    burst = [record(today(), f"u{i}", "m", (i, 1)) for i in range(120)]
    await asyncio.gather(*(core.store.record_usage(r) for r in burst))
    stored = await rows(core.store)
    assert sorted(r.input_tokens for r in stored) == list(range(120))
    assert {r.user_id for r in stored} == {f"u{i}" for i in range(120)}


# -- turns write rows --------------------------------------------------------------------------


async def test_a_turn_records_the_reported_usage_and_its_asker(core: Core) -> None:
    await configure(core, FAKE, "m1")
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(
            return_value=httpx.Response(
                200,
                content=sse(["Hi", " there"], {"prompt_tokens": 21, "completion_tokens": 4}),
                headers={"content-type": "text/event-stream"},
            )
        )
        mock.get(f"{FAKE}/models").mock(
            return_value=httpx.Response(200, json={"data": [{"id": "m1"}]})
        )
        # Status checks and model lists cost nothing: no row.
        assert (await command(core, "/connect", ADMIN)).ok
        assert (await command(core, "/models external", ADMIN)).ok
        assert await rows(core.store) == []
        assert (await ask(core, "hello")).final == "Hi there"
        assert json.loads(route.calls.last.request.content)["stream_options"] == {
            "include_usage": True
        }
        # Regenerate by an admin is charged to the admin who asked for it.
        reply = await command(core, "/regenerate", ADMIN)
        assert reply.ok, reply.text
    [first, second] = await rows(core.store)
    assert (first.user_id, first.input_tokens, first.output_tokens) == ("u-member", 21, 4)
    assert (first.estimated, first.error, first.key_scope) == (False, False, KeyScope.NONE)
    assert (first.platform, first.server_id, first.channel_id, first.thread_id) == (
        "discord",
        "g1",
        "c1",
        "",
    )
    assert (first.source, first.model) == ("custom", "m1")
    assert second.user_id == "u-admin"


class BrokenSink(Sink):
    """A front-end whose final edit hits a dropped connection (Discord's, say)."""

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        raise ConnectionResetError(104, "Connection reset by peer")


@pytest.mark.parametrize("limited", [False, True])
async def test_a_call_is_recorded_however_showing_its_answer_ended(
    core: Core, limited: bool
) -> None:
    """The model was asked and answered, then the front-end failed to show it: no usage
    row at all was written (or, under a limit, only the reservation's estimate)."""
    await configure(core, FAKE, "m1")
    if limited:
        reply = await command(core, "/limits set tokens_per_user_day 100000", ADMIN)
        assert reply.ok, reply.text
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{FAKE}/chat/completions").mock(
            return_value=httpx.Response(
                200,
                content=sse(["Hi"], {"prompt_tokens": 4000, "completion_tokens": 1000}),
                headers={"content-type": "text/event-stream"},
            )
        )
        with pytest.raises(ConnectionResetError):
            await core.chat(Incoming(REF, MEMBER, "hello"), BrokenSink())
    [row] = await rows(core.store)
    assert (row.user_id, row.input_tokens, row.output_tokens) == ("u-member", 4000, 1000)
    assert not row.estimated


class UnreachableSink(Sink):
    """A front-end whose server stops answering after the first words (a homeserver
    gone: the Matrix sink raises SendFailed)."""

    def __init__(self) -> None:
        super().__init__()
        self.updates = 0

    async def update(self, answer: str, reasoning: str = "") -> None:
        self.updates += 1
        if self.updates > 1:
            raise ConnectionResetError(104, "Connection reset by peer")


async def test_an_answer_that_cannot_be_shown_stops_is_kept_and_recorded(core: Core) -> None:
    """The sink's failure escaped the turn: the answer stayed marked as streaming, the
    model was read no further but its call was never recorded, and the front-end got
    the exception instead of a result."""
    sink = UnreachableSink()
    async with fake_openai(Script(chunks=[f"w{i} " for i in range(20)], interval=0.05)) as model:
        await configure(core, model.url_v1, "m-small")
        result = await core.chat(Incoming(REF, MEMBER, "count"), sink)
    assert result.error == SHOW_FAILED and sink.updates == 2
    [_, answer] = await core.store.history(REF, 10)
    assert answer.content.strip() == "w0 w1" and answer.error == SHOW_FAILED
    assert answer.state is TurnState.STOPPED
    [row] = await rows(core.store)
    assert row.user_id == "u-member" and row.output_tokens > 0 and row.error


async def test_unreported_usage_is_estimated_and_errors_are_flagged(core: Core) -> None:
    await configure(core, FAKE, "m1")
    # The server's key goes to the server's URL, not to one a channel set (`withheld`).
    await core.store.update_config(REF, Scope.CHANNEL, ADMIN, {"proxy_url": None}, action="t")
    await core.store.update_config(REF, Scope.SERVER, OWNER, {"proxy_url": FAKE}, action="t")
    await core.store.set_secret(REF, Scope.SERVER, "custom_api_key", SecretValue("sk-srv-1"), OWNER)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions")
        route.mock(
            return_value=httpx.Response(
                200,
                content=sse(["An answer of several words"], None),
                headers={"content-type": "text/event-stream"},
            )
        )
        await ask(core, "a question of a few words")
        route.mock(return_value=httpx.Response(503, json={"error": {"message": "down"}}))
        failed = await ask(core, "again")
        assert failed.error
        route.mock(
            return_value=httpx.Response(
                200,
                content=sse([" and more"], {"prompt_tokens": 30, "completion_tokens": 2}),
                headers={"content-type": "text/event-stream"},
            )
        )
        assert (await command(core, "/retry", MEMBER)).ok
    [estimated, error, retried] = await rows(core.store)
    assert estimated.estimated and estimated.input_tokens > 0 and estimated.output_tokens > 0
    assert estimated.key_scope is KeyScope.SERVER  # the server's key paid
    # Refused before any text and nothing reported: nothing was billed.
    assert (error.error, error.input_tokens, error.output_tokens) == (True, 0, 0)
    assert (retried.estimated, retried.input_tokens, retried.output_tokens) == (False, 30, 2)


def claude_sse(events: list[tuple[str, dict[str, object]]]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


async def test_a_claude_answer_cut_by_overloaded_error_counts_what_arrived(core: Core) -> None:
    """Claude's message_start says output_tokens 1 before any text; an answer an
    `overloaded_error` event cut after many words was recorded as 1 output token,
    reported (not estimated), though the words had been written and billed."""
    await configure(core, FAKE, "claude-x")
    await core.store.update_config(REF, Scope.CHANNEL, ADMIN, {"source": "claude"}, action="t")
    words = "Once upon a time there was a dragon who lived in a cave by the sea, " * 4
    usage = {"input_tokens": 25, "output_tokens": 1}
    start = {"type": "message_start", "message": {"id": "msg_1", "usage": usage}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    text = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
    text["delta"]["text"] = words  # type: ignore[index]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    stream = claude_sse(
        [
            ("message_start", start),
            ("content_block_start", block),
            ("content_block_delta", text),
            ("error", error),
        ]
    )
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{FAKE}/messages").mock(
            return_value=httpx.Response(
                200, content=stream, headers={"content-type": "text/event-stream"}
            )
        )
        sink = await ask(core, "Tell me a story")
    assert sink.final.strip() == words.strip()
    assert sink.error is not None and "overloaded" in sink.error
    [_, answer] = await core.store.history(REF, 10)
    assert answer.content.strip() == words.strip() and answer.state is TurnState.STOPPED
    [row] = await rows(core.store)
    assert (row.source, row.error, row.input_tokens) == ("claude", True, 25)
    assert row.estimated and row.output_tokens > 10  # counted from the words that came


async def test_an_answer_stopped_before_its_first_word_counts_the_prompt_it_sent(
    core: Core,
) -> None:
    """Quotas probe: a long question stopped (or its message deleted) before the first
    token was recorded as 0 tokens, though the endpoint had been sent its prompt."""
    await configure(core, FAKE, "m1")
    sent = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        sent.set()
        await asyncio.sleep(5)
        return httpx.Response(200, content=sse(["late"], None))

    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{FAKE}/chat/completions").mock(side_effect=slow)
        turn = asyncio.create_task(ask(core, "a long question " * 200))
        await asyncio.wait_for(sent.wait(), 5)
        assert core.stop(REF)
        await asyncio.wait_for(turn, 5)
    [row] = await rows(core.store)
    assert (row.error, row.output_tokens, row.estimated) == (False, 0, True)
    assert row.input_tokens >= 600  # the question's estimate, at least


@pytest.mark.litellm
async def test_a_real_turn_through_litellm_records_its_reported_tokens(
    core: Core, litellm_peer: LiteLLMPeer
) -> None:
    await configure(core, litellm_peer.url_v1, litellm_peer.model)
    await core.store.set_secret(
        REF, Scope.CHANNEL, "custom_api_key", SecretValue(litellm_peer.master_key), ADMIN
    )
    assert (await ask(core, "Say hello")).final == litellm_peer.mock_text
    [row] = await rows(core.store)
    # LiteLLM honours stream_options: the counts are its own, not the bot's estimate.
    assert not row.estimated and not row.error
    assert row.input_tokens > 0 and row.output_tokens > 0
    assert row.key_scope is KeyScope.CHANNEL


@pytest.mark.llamacpp
async def test_a_real_turn_on_llamacpp_records_tokens(
    core: Core, llamacpp_peer: LlamaCppPeer
) -> None:
    await configure(core, llamacpp_peer.url_v1, llamacpp_peer.model)
    await core.store.update_config(REF, Scope.CHANNEL, ADMIN, {"max_tokens": 16}, action="t")
    sink = await ask(core, "Say hello in one short sentence.")
    # A small model may go on past 16 tokens: the answer then says it was cut there.
    assert sink.final and (sink.error is None or "length limit" in sink.error), sink.error
    [row] = await rows(core.store)
    assert row.input_tokens > 0 and row.output_tokens > 0 and not row.error
    assert row.key_scope is KeyScope.NONE
    # llama-cpp-python takes stream_options without a word but streams no usage: the
    # bot's estimate, flagged.
    assert row.estimated


# -- /usage ------------------------------------------------------------------------------------


async def seed(store: Store) -> None:
    yesterday = today() - timedelta(days=1)
    for r in [
        record(today(), "u-member", "gpt-4o", (1000, 500)),
        record(yesterday, "u-member", "claude-3", (200, 100)),
        record(today(), "u-other", "gpt-4o", (5000, 2500)),
        record(today(), "u-other", "gpt-4o", (70, 30), ref=OTHER_CHANNEL),
    ]:
        await store.record_usage(r)


async def test_members_see_only_their_own_usage(core: Core) -> None:
    await seed(core.store)
    for text in ("/usage", "/usage me", "/usage channel week", "/usage server"):
        reply = await command(core, text, MEMBER)
        assert reply.ok and reply.private, text
        assert "1,800 tokens" in reply.text, (text, reply.text)  # 1500 today + 300 yesterday
        assert "u-other" not in reply.text and "7,500" not in reply.text
        assert "Top users" not in reply.text
    assert "only admins see everyone's" in (await command(core, "/usage channel", MEMBER)).text
    today = await command(core, "/usage period:day", MEMBER)
    assert "1,500 tokens (1,000 in, 500 out)" in today.text


async def test_admins_see_everyone_with_top_users_and_models_and_a_chart(core: Core) -> None:
    await seed(core.store)
    reply = await command(core, "/usage", ADMIN)  # the channel, by default for admins
    assert "This channel's usage, the last 7 days (UTC)" in reply.text
    assert "Total: 9,300 tokens (6,200 in, 3,100 out) in 3 calls." in reply.text
    users = reply.text.split("Top users:")[1].split("Top models:")[0]
    # Each by id as Discord shows it by name (the reply mentions no one).
    assert users.index("<@u-other>:") < users.index("<@u-member>:")
    assert "gpt-4o: 9,000 tokens" in reply.text and "claude-3: 300 tokens" in reply.text
    assert reply.file is not None and reply.file.media_type == "image/png"
    image = Image.open(io.BytesIO(reply.file.data))
    image.verify()
    assert image.format == "PNG" and image.size == (720, 360)
    # A channel admin is not a server admin: server-wide, only their own.
    assert "No usage recorded" in (await command(core, "/usage server", ADMIN)).text
    server = await command(core, "/usage server month", OWNER)
    assert "Total: 9,400 tokens" in server.text


async def test_console_prints_a_per_day_table_and_prices_give_a_cost(database_url: str) -> None:
    core = await open_core(database_url, PriceTable.parse("gpt-4o*=2.5/10"))
    try:
        console = ChannelRef(Platform.CONSOLE, channel_id="console")
        await core.store.record_usage(
            record(today(), "me", "gpt-4o", (1_000_000, 100_000), console)
        )
        await core.store.record_usage(record(today(), "me", "llama", (10, 10), console))
        reply = await command(core, "/usage me week", Actor("me", "Me"), console)
        assert reply.file is None
        assert "Tokens per day:" in reply.text and today().isoformat() in reply.text
        assert "~$3.50" in reply.text  # 1M in at $2.5 + 100k out at $10
        assert "20 tokens are of models without a price" in reply.text
    finally:
        await core.close()


async def test_a_command_that_fails_unexpectedly_says_so_and_logs_where(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows an older version stored from a hostile endpoint (2^62 tokens twice) overflow
    SQLite's sum (PostgreSQL sums bigints as numeric): /usage then says it went wrong,
    names no value, and the log says where (the same holds for any command's unexpected
    failure, on every front-end)."""
    core = await open_core(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        await _overflowing_usage(core, caplog)
    finally:
        await core.close()


async def _overflowing_usage(core: Core, caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(2):
        await core.store.record_usage(record(today(), "u1", "m", (2**62, 2**62)))
    reply = await command(core, "/usage channel", ADMIN)
    assert not reply.ok
    assert reply.text.startswith("Something went wrong running /usage (OperationalError)")
    assert "SELECT" not in reply.text and "4611686018427387904" not in reply.text
    logged = [r.getMessage() for r in caplog.records if "/usage failed" in r.getMessage()]
    assert logged and "OperationalError in bot/" in logged[0], logged
    assert "SELECT" not in logged[0]
    assert (await command(core, "/settings", ADMIN)).ok  # and the bot goes on


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/usage everyone", "is not a valid scope"),
        ("/usage me year", "`year` is not a valid period"),
        ("/usage period:decade", "is not a valid period"),
        ("/usage me week extra", "Too many values"),
        ("/usage scope:", "needs a value"),
        ("/usage colour:red", "`colour:red` is not a valid scope"),
        ("/usage \x00\u202e", "control character (U+0000) at position 1"),
        ("/usage \u202e\u202ex", "is not a valid scope"),
    ],
)
async def test_junk_arguments_get_a_clear_message(core: Core, text: str, expected: str) -> None:
    reply = await command(core, text, MEMBER)
    assert not reply.ok and expected in reply.text, reply.text
    assert reply.file is None


async def test_a_direction_mark_alone_after_usage_is_no_argument(core: Core) -> None:
    """What shows nothing is nothing, a bidi override as a zero-width space (one table of
    them): `/usage <U+202E>` is `/usage`, as `/usage <U+200B>` was."""
    for hidden in ("\u202e", "\u200b", "\u2066\u200f"):
        reply = await command(core, f"/usage {hidden}", MEMBER)
        assert reply.ok and reply.text.startswith("Your usage"), (hidden, reply.text)


async def test_server_usage_where_there_is_no_server(core: Core) -> None:
    room = ChannelRef(Platform.MATRIX, channel_id="!r:hs")
    reply = await command(core, "!usage server", ADMIN, room)
    assert not reply.ok and "There is no server here" in reply.text
