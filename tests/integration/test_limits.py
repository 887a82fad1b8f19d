"""Quotas and who may chat, end to end on SQLite and PostgreSQL: /limits and /access with
hostile input, refusals that send nothing, the atomic charge under a concurrent burst
from two Cores (two processes' worth of engines) on one database, settle and crash
recovery."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from sqlalchemy import event, func, select, update

from bot.commands.spec import Invocation
from bot.conversation.budget import estimate_tokens
from bot.core import Core, Gate, TurnResult
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.store.models import UsageRow
from bot.types import (
    Actor,
    ChannelConfig,
    ChannelRef,
    Incoming,
    Platform,
    Reply,
    Scope,
    Source,
    limits,
)
from bot.types.limits import MAX_ACCESS_RULES, LimitName
from bot.usage.access import NOT_HERE
from bot.usage.limits import Refusal, turn_cost
from bot.usage.quota import Charged, charge, guard
from tests.e2e.hostile_endpoint import HostileEndpoint, status_only
from tests.integration.test_characters import CARD, card_file
from tests.integration.test_chat import sse

FAKE = "http://127.0.0.1:9/v1"  # only ever answered by respx
REF = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
OTHER = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
ADMIN = Actor("u-admin", "Ada", is_channel_admin=True)
OWNER = Actor("u-owner", "Olga", is_channel_admin=True, is_server_admin=True)
MEMBER = Actor("u-member", "Bob", roles=("555",))
STRANGER = Actor("4242", "Sam")
TEXT = "hello there"
# A first turn: it goes when E fits (its prompt and a short answer), holds R while the
# model answers (its prompt and the answer's room: 1,024 with no max_tokens or context).
COST = turn_cost(estimate_tokens(TEXT), 1024)
E, R = COST.needed, COST.reserved


class Sink:
    def __init__(self) -> None:
        self.final: str | None = None
        self.calls = 0

    async def typing(self) -> None:
        self.calls += 1

    async def update(self, answer: str, reasoning: str = "") -> None:
        self.calls += 1

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        self.calls += 1
        self.final = answer if not error else f"{answer} ⚠ {error}"


async def open_core(url: str, gate: Gate | None = None) -> Core:
    await upgrade_to_head(url)
    store = await Store.open(
        url, SecretBox.from_setting(generate_key()), defaults=ChannelConfig.of(source=Source.OPENAI)
    )
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    return Core(store, hub, admin_ids=["u-operator"], gate=gate)


@pytest.fixture
async def core(database_url: str) -> AsyncIterator[Core]:
    core = await open_core(database_url)
    try:
        yield core
    finally:
        await core.close()


async def configure(core: Core, ref: ChannelRef = REF) -> None:
    await core.store.update_config(
        ref,
        Scope.CHANNEL,
        ADMIN,
        {"source": "custom", "proxy_url": FAKE, "model": "m1", "bypass_status_check": True},
        action="test setup",
    )


def answer(
    total: int = E, delay: float = 0.0
) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """An SSE answer reporting `total` tokens in all (the estimate of a first turn)."""
    chunks: list[object] = [
        {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": total - 6, "completion_tokens": 6}},
    ]
    body = ("".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n").encode()

    async def respond(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(delay)
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return respond


async def command(core: Core, text: str, actor: Actor, ref: ChannelRef = REF) -> Reply:
    return await core.run_text_command(Incoming(ref, actor, text))


async def ask(
    core: Core, actor: Actor = MEMBER, ref: ChannelRef = REF, text: str = TEXT
) -> tuple[TurnResult, Sink]:
    sink = Sink()
    result = await core.chat(Incoming(ref, actor, text), sink)
    return result, sink


async def statements_before_the_model(core: Core) -> list[str]:
    """The SQL a turn runs before the model is asked (the turn must then succeed)."""
    seen: list[str] = []

    def note(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    model = answer()

    async def asked(request: httpx.Request) -> httpx.Response:
        seen.append("-- the model is asked")
        return await model(request)

    engine = core.store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        with respx.mock(assert_all_called=False) as mock:
            mock.post(f"{FAKE}/chat/completions").mock(side_effect=asked)
            result, sink = await ask(core)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert result.refusal is None and sink.final == "Hi"
    return seen[: seen.index("-- the model is asked")]


async def states(store: Store) -> dict[str, int]:
    async with store.engine.connect() as conn:
        found = await conn.execute(select(UsageRow.state, func.count()).group_by(UsageRow.state))
        return {str(s): int(n) for s, n in found.all()}


async def tokens(store: Store) -> int:
    async with store.engine.connect() as conn:
        total = await conn.scalar(select(func.sum(UsageRow.input_tokens + UsageRow.output_tokens)))
        return int(total or 0)


# -- /limits --------------------------------------------------------------------------------


async def test_limits_set_show_off_and_default(core: Core) -> None:
    shown = await command(core, "/limits", MEMBER)
    assert shown.ok and "No limits hold here" in shown.text
    reply = await command(core, "/limits set tokens_per_user_day 1,000", ADMIN)
    assert reply.ok and "1,000 for this channel" in reply.text, reply.text
    reply = await command(core, "/limits set tokens_per_user_day 400 scope:server", OWNER)
    assert reply.ok, reply.text
    shown = await command(core, "/limits", MEMBER)
    assert "tokens_per_user_day = 400 (server)" in shown.text, shown.text
    assert "tokens_per_user_day: 400 of 400 tokens left for you" in shown.text
    assert "Change one" not in shown.text  # members only read
    assert (await command(core, "/limits set tokens_per_user_day off scope:server", OWNER)).ok
    shown = await command(core, "/limits", MEMBER)
    assert "tokens_per_user_day = 1,000 (channel)" in shown.text, shown.text
    reply = await command(core, "/limits set tokens_per_user_day default", ADMIN)
    assert reply.ok and "now follows the server's (or operator's) value" in reply.text
    again = await command(core, "/limits set tokens_per_user_day default", ADMIN)
    assert not again.ok and "was not set" in again.text


async def test_a_persons_daily_limit_says_where_it_counts(core: Core) -> None:
    """On a server a person's day counts on the whole server; in a Matrix room (no
    server) in that room alone, which /limits had called "on this server" too."""
    assert (await command(core, "/limits set tokens_per_user_day 500", ADMIN)).ok
    shown = await command(core, "/limits", MEMBER)
    assert "(channel) — tokens one person may spend a day (UTC) on this server" in shown.text
    room = ChannelRef(Platform.MATRIX, channel_id="!r:hs")
    assert (await command(core, "!limits set tokens_per_user_day 500", OWNER, room)).ok
    shown = await command(core, "!limits", MEMBER, room)
    assert "(room) — tokens one person may spend a day (UTC) in this room" in shown.text, shown.text
    assert "server" not in shown.text.split("Your allowance")[0], shown.text


async def test_a_rooms_daily_limit_is_named_for_a_room_on_matrix(core: Core) -> None:
    """Matrix says "room" everywhere but in the limit's name: `!limits` listed
    `tokens_per_channel_day`, and `tokens_per_room_day`, the name a room's people would
    type, was refused. Both are taken now, and the room's name is the one shown; the
    stored limit (and the operator's LIMIT_TOKENS_PER_CHANNEL_DAY) is the same one."""
    room = ChannelRef(Platform.MATRIX, channel_id="!r:hs")
    await configure(core, room)
    done = await command(core, "!limits set tokens_per_room_day 1", OWNER, room)
    assert done.ok and done.text.startswith("tokens_per_room_day set to 1 for this room."), done
    assert (await core.store.quotas.limits(room)).channel == {"tokens_per_channel_day": 1}
    shown = await command(core, "!limits", MEMBER, room)
    assert "tokens_per_room_day = 1 (room)" in shown.text, shown.text
    assert "channel" not in shown.text, shown.text
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        result, _ = await ask(core, ref=room)
    assert route.call_count == 0 and result.refusal is not None
    assert result.refusal.startswith("Limit reached: tokens_per_room_day ("), result.refusal
    assert "!limits set tokens_per_room_day <value>" in result.refusal, result.refusal
    # The name shown before is still taken; on Discord the channel's name is the one.
    assert (await command(core, "!limits set TOKENS_PER_CHANNEL_DAY off", OWNER, room)).ok
    discord = await command(core, "/limits set tokens_per_channel_day 5", ADMIN)
    assert discord.text.startswith("tokens_per_channel_day set to 5 for this channel."), discord


async def test_a_rooms_daily_limit_is_named_for_a_room_in_its_settings(core: Core) -> None:
    """Review: `!limits` named it `tokens_per_room_day`, and `!settings` beside it still
    listed `Limits: tokens_per_channel_day 1`, the name a room's people are not shown."""
    room = ChannelRef(Platform.MATRIX, channel_id="!r:hs")
    await configure(core, room)
    assert (await command(core, "!limits set tokens_per_room_day 1", OWNER, room)).ok
    shown = await command(core, "!settings", MEMBER, room)
    assert "Limits: tokens_per_room_day 1 (!limits shows" in shown.text, shown.text
    assert "tokens_per_channel_day" not in shown.text, shown.text


async def test_a_change_that_another_scopes_limit_overrides_says_which_holds(core: Core) -> None:
    """Limits probe: with 50 tokens a day server-wide, a channel admin raising the
    channel's limit to 100,000 (or turning it off) was told it was set, while the
    server's 50 went on refusing every member; a `default` said it followed the
    operator's value where the operator had none."""
    await configure(core)
    assert (await command(core, "/limits set tokens_per_user_day 50 scope:server", OWNER)).ok
    server_holds = (
        "The server-wide limit of 50 holds here (a channel's and its server's limits both "
        "hold; the smaller wins): server admins change it with /limits action:set "
        "name:tokens_per_user_day value:<value|off> scope:server."
    )
    raised = await command(core, "/limits set tokens_per_user_day 100000", ADMIN)
    assert raised.ok and raised.text == (
        f"tokens_per_user_day set to 100,000 for this channel. {server_holds}"
    ), raised.text
    off = await command(core, "/limits set tokens_per_user_day off", ADMIN)
    assert off.text == f"tokens_per_user_day is off for this channel. {server_holds}", off.text
    back = await command(core, "/limits set tokens_per_user_day default", ADMIN)
    assert "now follows the server's (or operator's) value. The server-wide limit of 50 holds" in (
        back.text
    ), back.text
    assert (await command(core, "/limits set tokens_per_user_day 10", ADMIN)).ok
    wider = await command(core, "/limits set tokens_per_user_day 100000 scope:server", OWNER)
    assert wider.text.endswith(
        "This channel's own limit of 10 holds here (a channel's and its server's limits "
        "both hold; the smaller wins): /limits action:set name:tokens_per_user_day "
        "value:default (without scope:server) removes it."
    ), wider.text
    # Where the value set is the one that holds, nothing more is said.
    assert (await command(core, "/limits set tokens_per_user_day default", ADMIN)).ok
    exact = await command(core, "/limits set tokens_per_user_day 4000 scope:server", OWNER)
    assert exact.text == "tokens_per_user_day set to 4,000 server-wide.", exact.text
    gone = await command(core, "/limits set tokens_per_user_day default scope:server", OWNER)
    assert gone.text == (
        "tokens_per_user_day server-wide now follows the operator's value. "
        "No tokens_per_user_day limit holds here now."
    ), gone.text


async def test_operator_defaults_hold_until_a_scope_sets_the_name(database_url: str) -> None:
    core = await open_core(database_url, Gate.of({"messages_per_user_minute": 3}))
    try:
        shown = await command(core, "/limits", MEMBER)
        assert "messages_per_user_minute = 3 (operator default)" in shown.text, shown.text
        assert (await command(core, "/limits set messages_per_user_minute off", ADMIN)).ok
        assert "No limits hold here" in (await command(core, "/limits", MEMBER)).text
    finally:
        await core.close()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("/limits set tokens_per_user_day", "Usage"),
        ("/limits set tokens_per_user_day -5", "not a limit"),
        ("/limits set tokens_per_user_day 0_1", "not a limit"),
        ("/limits set tokens_per_user_day 1e3", "not a limit"),
        ("/limits set tokens_per_user_day 1.5", "not a limit"),
        ("/limits set tokens_per_user_day ٣", "not a limit"),
        ("/limits set tokens_per_user_day 10000000000001", "not a limit"),
        ("/limits set tokens_per_user_day 9" + "9" * 35, "not a limit"),
        ("/limits set tokens_per_user_day " + "9" * 5000, "too long"),
        ("/limits set tokens_per_user_day '\x00'", "control character (U+0000) at position 1"),
        ("/limits set tokens_per_user_day 1\x000", "control character (U+0000) at position 2"),
        ("/limits set nope 5", "not a valid name"),
        ("/limits set tokens_per_server_day 5", "scope:server"),
        ("/limits set tokens_per_user_day 5 scope:galaxy", "not a valid scope"),
        ("/limits tokens_per_user_day", "/limits action:set name:<name> value:"),
    ],
)
async def test_limits_refuse_hostile_values(core: Core, text: str, why: str) -> None:
    reply = await command(core, text, OWNER)
    assert not reply.ok and why in reply.text, reply.text
    assert "No limits hold here" in (await command(core, "/limits", MEMBER)).text


async def test_only_admins_set_limits_and_server_admins_server_wide(core: Core) -> None:
    member = await command(core, "/limits set tokens_per_user_day 5", MEMBER)
    assert not member.ok and "Only admins" in member.text
    channel_admin = await command(core, "/limits set tokens_per_user_day 5 scope:server", ADMIN)
    assert not channel_admin.ok and "server admins" in channel_admin.text
    room = ChannelRef(Platform.MATRIX, channel_id="!r:hs")
    no_server = await command(core, "!limits set tokens_per_server_day 5 scope:server", OWNER, room)
    assert not no_server.ok and "no server" in no_server.text


# -- refusals -------------------------------------------------------------------------------


async def test_a_full_daily_limit_refuses_at_once_and_sends_nothing(core: Core) -> None:
    await configure(core)
    # Room for two turns: the second one's estimate includes the first turn's history.
    assert (await command(core, f"/limits set tokens_per_user_day {E * 3}", ADMIN)).ok
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        for _ in range(2):
            result, sink = await ask(core)
            assert result.refusal is None and sink.final == "Hi"
        result, sink = await ask(core)
        assert route.call_count == 2
    assert result.refusal is not None and sink.calls == 0  # the front-end says it, privately
    assert "tokens_per_user_day" in result.refusal and "00:00 UTC" in result.refusal
    assert "Nothing was sent" in result.refusal
    assert len(await core.store.history(REF, 50)) == 4  # the refused question is not stored
    assert await states(core.store) == {"settled": 2}
    # Another person still has their own day's allowance.
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        result, _ = await ask(core, STRANGER)
    assert result.refusal is None
    shown = await command(core, "/limits", MEMBER)
    assert f"tokens_per_user_day: {E:,} of {3 * E:,} tokens left for you" in shown.text


async def test_a_limit_smaller_than_any_message_is_said_so_with_the_platforms_commands(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tokens_per_user_day 10` was taken in silence, then refused every message with
    "shorten it" (no message can fit: its answer is counted too); and a Matrix room was
    told to type /limits."""
    monkeypatch.setattr(limits, "REFUSAL_SECONDS", 0.0)  # each refusal's words are read
    await upgrade_to_head(database_url)
    store = await Store.open(
        database_url,
        SecretBox.from_setting(generate_key()),
        defaults=ChannelConfig.of(source=Source.OPENAI),
    )
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    core = Core(store, hub, admin_ids=["u-operator"], prefixes={Platform.MATRIX: "!"})
    room = ChannelRef(Platform.MATRIX, channel_id="!room:hs")
    try:
        await configure(core, room)
        reply = await command(core, "!limits set tokens_per_user_day 10", ADMIN, room)
        assert reply.ok and "a limit this small refuses most messages" in reply.text, reply.text
        assert "!params max_tokens" in reply.text
        with respx.mock(assert_all_called=False) as mock:
            route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
            result, _ = await ask(core, ref=room, text="hi")
        assert route.call_count == 0 and result.refusal is not None
        assert "the prompts or character card, and room for its answer count too" in (
            result.refusal
        )
        assert "!limits" in result.refusal and "!reset" in result.refusal
        assert "/" not in result.refusal, result.refusal
        assert (await command(core, "!limits set tokens_per_user_day 0", ADMIN, room)).ok
        result, _ = await ask(core, ref=room, text="hi")
        assert result.refusal is not None and "raise it with !limits" in result.refusal
        assert "/" not in result.refusal, result.refusal
    finally:
        await core.close()


async def test_a_refusal_says_what_answers_being_written_hold_only_while_they_are(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Limits probe: every token refusal said "used or held by answers being written" and
    "(or sooner, as answers being written end)", also with nothing being written: then it
    frees up at midnight and not sooner. The counts now say what reserved rows hold."""
    monkeypatch.setattr(limits, "REFUSAL_SECONDS", 0.0)  # each refusal's words are read
    await configure(core)
    assert (await command(core, f"/limits set tokens_per_user_day {R + E - 1}", ADMIN)).ok
    writing, release = asyncio.Event(), asyncio.Event()
    model = answer()

    async def slow(request: httpx.Request) -> httpx.Response:
        writing.set()
        await release.wait()
        return await model(request)

    here = ChannelRef(Platform.DISCORD, "c1", "g1", "t1")
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=slow)
        first = asyncio.create_task(ask(core, MEMBER, here))
        await writing.wait()
        refused, _ = await ask(core)
        shown = await command(core, "/limits", MEMBER)
        release.set()
        went, sink = await first
        assert route.call_count == 1
    assert went.refusal is None and sink.final == "Hi"
    assert refused.refusal is not None, refused
    assert f"; 0 used and {R:,} held by answers being written, this message needs about" in (
        refused.refusal
    )
    assert "(or sooner, if the answers being written use less than they hold)" in refused.refusal
    assert f"({R:,} of what is used held by answers being written until they end)" in shown.text

    # The answer ended (and counted what it used): nothing is held, nothing frees sooner.
    assert (await command(core, f"/limits set tokens_per_user_day {E + E - 1}", ADMIN)).ok
    again, _ = await ask(core)
    assert again.refusal is not None
    # Within the hour before midnight the time says its seconds too (00:00:00 UTC).
    assert re.search(
        rf"; {E:,} used, this message needs about {E:,}\. It frees up at 00:00(:00)? UTC",
        again.refusal,
    ), again.refusal
    assert "held" not in again.refusal and "sooner" not in again.refusal, again.refusal
    raise_it = "/limits action:set name:tokens_per_user_day"  # a Discord channel's form
    assert f"an admin of this channel can raise it with {raise_it}" in (again.refusal)
    assert "held" not in (await command(core, "/limits", MEMBER)).text


async def test_a_server_limits_refusal_and_limits_name_the_server_admin(core: Core) -> None:
    """Limits probe: a full tokens_per_server_day said "an admin can raise it with
    /limits set", and /limits showed a channel's admin "Change one with … [scope:server]":
    only a server admin can change a server's budget, or a value set server-wide."""
    await configure(core)
    assert (await command(core, "/limits set tokens_per_server_day 0 scope:server", OWNER)).ok
    assert (await command(core, "/limits set tokens_per_user_day 5000 scope:server", OWNER)).ok
    assert (await command(core, "/limits set messages_per_user_minute 9", ADMIN)).ok
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        result, _ = await ask(core)
        assert route.call_count == 0
    assert result.refusal is not None
    assert result.refusal.endswith(
        "It does not free up by itself: a server admin can raise it with /limits action:set "
        "name:tokens_per_server_day value:<value> scope:server. Nothing was sent to the model."
    ), result.refusal
    shown = await command(core, "/limits", ADMIN)
    assert shown.text.endswith(
        "Change this channel's limits with /limits action:set name:<name> "
        "value:<value|off|default>. "
        "tokens_per_user_day and tokens_per_server_day here are the server's: only a server "
        "admin can change them (scope:server)."
    ), shown.text
    owner = await command(core, "/limits", OWNER)
    assert owner.text.endswith(
        "Change one with /limits action:set name:<name> value:<value|off|default> [scope:server]."
    ), owner.text
    assert "Change" not in (await command(core, "/limits", MEMBER)).text


async def test_messages_per_minute_says_when_it_frees_up(core: Core) -> None:
    await configure(core)
    assert (await command(core, "/limits set messages_per_user_minute 2", ADMIN)).ok
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        for _ in range(2):
            assert (await ask(core))[0].refusal is None
        result, _ = await ask(core)
        assert route.call_count == 2
    assert result.refusal is not None and "messages_per_user_minute" in result.refusal
    assert "(in 6" in result.refusal or "(in 5" in result.refusal, result.refusal
    # A minute later the oldest turn has left the window.
    async with core.store.engine.begin() as conn:
        old = datetime.now(UTC) - timedelta(seconds=61)
        await conn.execute(update(UsageRow).values(created_at=old))
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        assert (await ask(core))[0].refusal is None


async def test_failed_questions_are_given_back_up_to_the_limit(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A question the endpoint refused does not use up a person's minute while their
    failed ones are no more than the limit (each backend's one statement tells them
    apart); past that they count, and an answered one counts as ever."""
    monkeypatch.setattr(limits, "REFUSAL_SECONDS", 0.0)  # each refusal's words are read
    endpoint = HostileEndpoint().start()
    try:
        await core.store.update_config(
            REF,
            Scope.CHANNEL,
            ADMIN,
            {"source": "custom", "proxy_url": endpoint.url_v1, "model": "m"},
            action="test setup",
        )
        await core.store.update_config(
            REF, Scope.CHANNEL, ADMIN, {"bypass_status_check": True}, action="test setup"
        )
        assert (await command(core, "/limits set messages_per_user_minute 2", ADMIN)).ok
        endpoint.on_chat = status_only(429, "slow down")
        failed = [(await ask(core))[0] for _ in range(4)]
        assert [r.refusal for r in failed] == [None] * 4  # the 4th: 3 failed, 1 past 2
        assert len(endpoint.chat_requests()) == 4
        refused, _ = await ask(core)
        assert refused.refusal is not None, "4 failed: 2 past the limit of 2"
        assert "4 questions of the last minute failed, which count past 2" in refused.refusal
        shown = (await command(core, "/limits", MEMBER)).text
        assert "0 of 2 messages left for you (4 questions" in shown, shown
        # Their minute over, an answered question counts in full.
        async with core.store.engine.begin() as conn:
            await conn.execute(
                update(UsageRow).values(created_at=datetime.now(UTC) - timedelta(seconds=61))
            )
        endpoint.on_chat = None
        assert [(await ask(core))[0].refusal is None for _ in range(3)] == [True, True, False]
        assert len(endpoint.chat_requests()) == 6
    finally:
        endpoint.stop()


async def test_an_id_longer_than_the_store_keeps_is_still_limited(core: Core) -> None:
    """Ids are stored cut to 255 characters, but the sums looked for the whole id: a
    longer one never found its own rows and escaped every per-user limit."""
    await configure(core)
    assert (await command(core, "/limits set messages_per_user_minute 1", ADMIN)).ok
    long = Actor("u" * 300, "Lola")
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        results = [(await ask(core, long))[0] for _ in range(3)]
    assert route.call_count == 1
    assert results[1].refusal is not None  # the third: told nothing again while it is recent
    assert results[2].refusal is None and results[2].ignored and not results[2].called_provider


async def test_a_member_refused_again_while_told_is_told_nothing_and_others_are_told(
    core: Core,
) -> None:
    """A member flooding past a limit had a refusal posted for each message (Discord's
    channel, a Matrix room: every one in the rate limit others' answers wait in). While
    the one told them in a conversation is recent, their further refused messages there
    show nothing; another member, or they in another conversation, are told."""
    await configure(core)
    await configure(core, OTHER)
    assert (await command(core, "/limits set messages_per_user_minute 1", ADMIN)).ok
    assert (await command(core, "/limits set messages_per_user_minute 1", ADMIN, OTHER)).ok
    carol = Actor("u-carol", "Carol")
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        went = [(await ask(core, who))[0] for who in (MEMBER, carol)]
        told, again = [(await ask(core))[0] for _ in range(2)]
        carol_told = (await ask(core, carol))[0]
        elsewhere = (await ask(core, ref=OTHER))[0]
        assert route.call_count == 2
    assert [r.refusal for r in went] == [None, None]
    assert told.refusal is not None and "messages_per_user_minute" in told.refusal
    assert again.ignored and again.refusal is None and again.answer == ""
    assert carol_told.refusal is not None and not carol_told.ignored
    assert elsewhere.refusal is not None and not elsewhere.ignored  # his minute counts there too


async def test_a_member_refused_by_another_limit_while_told_is_told_the_new_one(
    core: Core,
) -> None:
    """A member refused by the minute's limit and then, while that refusal was recent
    (REFUSAL_SECONDS), by a day's limit too was told nothing: they waited out the minute
    the first named, to be refused again. A refusal by other limits is told; the same
    one again is still not."""
    await configure(core)
    assert (await command(core, "/limits set messages_per_user_minute 1", ADMIN)).ok
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        went, told = [(await ask(core))[0] for _ in range(2)]
        assert (await command(core, "/limits set tokens_per_channel_day 0", ADMIN)).ok
        other, again = [(await ask(core))[0] for _ in range(2)]
        assert route.call_count == 1
    assert went.refusal is None
    assert told.refusal is not None and "tokens_per_channel_day" not in told.refusal
    assert other.refusal is not None and not other.ignored
    assert "tokens_per_channel_day" in other.refusal and "Waiting will not do" in other.refusal
    assert again.ignored and again.refusal is None


async def test_a_charge_adds_one_statement_before_the_model_is_asked(core: Core) -> None:
    """The charge runs in the question's transaction and adds one statement there: the
    reserved row and the sums together, on PostgreSQL with the server's lock row (a
    refusal would delete the row again)."""
    await configure(core)
    assert (await command(core, f"/limits set tokens_per_user_day {E * 3}", ADMIN)).ok
    assert (await command(core, "/limits set messages_per_user_minute 5", ADMIN)).ok
    await ask(core, STRANGER)  # warms the caches: only the turn's own statements count
    before = await statements_before_the_model(core)
    charge = [s for s in before if re.search(r"\b(usage|quota_locks)\b", s)]
    assert len(charge) == 1, charge
    assert await states(core.store) == {"settled": 2}


async def test_a_channel_not_remembered_reads_everything_before_storing_the_question(
    database_url: str,
) -> None:
    """A turn in a channel this process does not remember (new, or quiet past the
    caches' time) reads config, secrets, history, limits and card side by side first;
    after the question is stored nothing is read before the model is asked."""
    first = await open_core(database_url)
    await configure(first)
    await first.close()
    core = await open_core(database_url)  # remembers nothing
    try:
        before = await statements_before_the_model(core)
    finally:
        await core.close()
    stored = next(i for i, s in enumerate(before) if s.lstrip().startswith("INSERT INTO messages"))
    # The call's usage row goes in the same transaction (no limit here: only held).
    after = [s for s in before[stored + 1 :] if not s.lstrip().startswith("INSERT INTO usage")]
    assert after == [], before[stored:]
    reads = " ".join(before[:stored])
    for table in ("channel_configs", "secrets", "messages", "limits", "characters"):
        assert f"FROM {table}" in reads, table


async def test_regenerate_is_charged_and_refused_as_a_notice(core: Core) -> None:
    await configure(core)
    assert (await command(core, f"/limits set tokens_per_channel_day {E + 10}", ADMIN)).ok
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        assert (await ask(core))[0].refusal is None
        reply = await command(core, "/regenerate", MEMBER)
        assert route.call_count == 1
    assert "tokens_per_channel_day" in reply.text, reply.text


async def test_a_character_cards_text_is_held_and_limited_as_it_is_sent(core: Core) -> None:
    """Usage probe: the charge before the model is asked estimated the history and the
    prompts but not a character card's text, examples and lore, which every request
    carries; with a card of ~4,000 tokens a `tokens_per_user_day 1000` let each "hi"
    through (it held 5 tokens of prompt, and the call then counted ~4,200)."""
    await configure(core)
    card = copy.deepcopy(CARD)
    card["data"]["description"] = "The Meridian has many decks, each with its story. " * 300
    imported = await core.run_command(
        REF, ADMIN, Invocation(("character", "import"), {"file": card_file(card)})
    )
    assert imported.ok, imported.text
    assert (await command(core, "/limits set tokens_per_user_day 1000000", ADMIN)).ok
    held: list[int] = []
    body = sse("Aye.")  # no usage reported: the call counts the request's own estimate

    async def respond(request: httpx.Request) -> httpx.Response:
        async with core.store.engine.connect() as conn:
            found = select(UsageRow.input_tokens).where(UsageRow.state == "reserved")
            held.append(int(await conn.scalar(found) or 0))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=respond)
        result, sink = await ask(core, text="hi")
        assert result.refusal is None and sink.final == "Aye.", sink.final
        regenerated = await command(core, "/regenerate", MEMBER)
        assert route.call_count == 2, regenerated.text
    async with core.store.engine.connect() as conn:
        counted = select(UsageRow.input_tokens).where(UsageRow.state == "settled")
        sent = [int(n) for n in (await conn.scalars(counted.order_by(UsageRow.id))).all()]
    # What each call held before the model was asked is what its request was counted at.
    assert held == sent and min(sent) > 3000, (held, sent)

    # So a limit smaller than the card refuses before anything is sent, and says why.
    assert (await command(core, "/limits set tokens_per_user_day 1000", ADMIN)).ok
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=respond)
        result, sink = await ask(core, STRANGER, text="hi")
        assert route.call_count == 0
    assert result.refusal is not None and "tokens_per_user_day" in result.refusal
    assert sink.calls == 0


# -- the atomic charge ------------------------------------------------------------------------


async def test_a_server_limit_holds_exactly_under_a_burst_from_two_engines(
    database_url: str,
) -> None:
    first = await open_core(database_url)
    second = await open_core(database_url)
    try:
        await configure(first, REF)
        await configure(first, OTHER)
        # Room for exactly ten turns at once: nine held answers and one more that fits.
        limit = 9 * R + E + R // 2
        reply = await command(
            first, f"/limits set tokens_per_server_day {limit} scope:server", OWNER
        )
        assert reply.ok, reply.text
        with respx.mock(assert_all_called=False) as mock:
            # Each answer spends what its turn held: none is let through by one that ended.
            answered = answer(total=R, delay=0.05)
            route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answered)
            turns = []
            for i in range(30):
                core = first if i % 2 else second
                channel = REF if i % 3 else OTHER
                # A thread each: its own conversation, so the turns really run at once.
                ref = ChannelRef(Platform.DISCORD, channel.channel_id, "g1", f"t{i}")
                actor = Actor(f"u{i % 4}", f"user {i % 4}")
                turns.append(ask(core, actor, ref))
            results = await asyncio.gather(*turns)
            calls = route.call_count
        refused = [r for r, _ in results if r.refusal is not None]
        assert calls == 10 and len(refused) == 20
        assert all("tokens_per_server_day" in r.refusal for r in refused if r.refusal)
        assert await states(first.store) == {"settled": 10}
        # Over the limit by less than the last turn's answer room (R - E), as the README says.
        assert limit < await tokens(first.store) == 10 * R <= limit + R - E
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("max_tokens", [None, 1000])
async def test_turns_at_once_by_one_person_overshoot_a_token_limit_by_one_answer_at_most(
    core: Core, max_tokens: int | None
) -> None:
    """Quotas probe: eight threads asked at once against 2,000 tokens a day, each answer
    1,100 tokens: seven went (each held its prompt and 256), 7,700 tokens spent. Each
    turn now holds its answer's whole room while it runs."""
    await configure(core)
    if max_tokens:
        assert (await command(core, f"/params max_tokens {max_tokens}", ADMIN)).ok
    assert (await command(core, "/limits set tokens_per_user_day 2000", ADMIN)).ok
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{FAKE}/chat/completions").mock(
            side_effect=answer(total=1100, delay=0.05)
        )
        refs = [ChannelRef(Platform.DISCORD, "c1", "g1", f"t{i}") for i in range(8)]
        results = await asyncio.gather(*(ask(core, MEMBER, ref) for ref in refs))
        calls = route.call_count
    went = [r for r, _ in results if r.refusal is None]
    assert calls == len(went) == 2, [r.refusal for r, _ in results]
    room = max_tokens or 1024
    assert 2000 < await tokens(core.store) == 2200 <= 2000 + room
    assert await states(core.store) == {"settled": 2}


async def test_a_charge_that_waited_for_the_lock_counts_the_one_before_it(
    database_url: str,
) -> None:
    """Two charges of one server at once: the second waits for the first's transaction,
    and its counts then hold the first's reservation, though it committed after the
    second began (PostgreSQL reads the counts again after the lock; SQLite waits for the
    write lock before reading)."""
    core = await open_core(database_url)
    store = core.store
    try:
        assert (await command(core, "/limits set tokens_per_server_day 150 scope:server", OWNER)).ok
        held = await guard(store, Gate(), REF, "u1", source="openai", model="m", estimate=100)
        assert held is not None
        async with store.engine.connect() as conn:
            await conn.begin()
            assert await held.run(conn)
            second = asyncio.create_task(
                charge(store, Gate(), OTHER, "u2", source="openai", model="m", estimate=100)
            )
            await asyncio.sleep(0.3)
            assert not second.done()  # it waits for the first's lock
            await conn.commit()
        refused = await second
        assert isinstance(refused, Refusal), refused
        assert refused.name is LimitName.TOKENS_PER_SERVER_DAY
        assert await states(store) == {"reserved": 1}
        again = await charge(store, Gate(), OTHER, "u2", source="openai", model="m", estimate=50)
        assert isinstance(again, Charged) and again.reserved is not None  # 150 fits exactly
    finally:
        await core.close()


async def test_a_crash_leaves_one_estimate_that_the_next_start_settles(core: Core) -> None:
    await configure(core)
    assert (await command(core, "/limits set tokens_per_user_day 100000", ADMIN)).ok
    # A reservation as a process leaves it when it dies mid-answer, ten minutes ago.
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        assert (await ask(core))[0].refusal is None
    async with core.store.engine.begin() as conn:
        await conn.execute(
            update(UsageRow).values(
                state="reserved", created_at=datetime.now(UTC) - timedelta(minutes=10)
            )
        )
    # Until it is settled, /usage and the export say it has not ended (two-process
    # probe: it read as a finished, estimated call).
    said = (await command(core, "/usage channel", ADMIN)).text
    assert "Of these, 1 not ended yet (being answered, or cut off by a bot that stopped" in said
    assert "estimated" not in said, said
    [row] = [r async for r in core.store.usage_records(datetime.now(UTC).date())]
    assert row.reserved and row.as_dict()["reserved"] is True
    assert await core.settle_reserved() == 1
    assert await states(core.store) == {"settled": 1}
    assert await core.settle_reserved() == 0
    [row] = [r async for r in core.store.usage_records(datetime.now(UTC).date())]
    assert not row.reserved
    assert "not ended yet" not in (await command(core, "/usage channel", ADMIN)).text


async def test_a_reservation_a_crash_leaves_keeps_the_model_named_as_a_settled_row_does(
    core: Core,
) -> None:
    """A model id stored past the checks of /model (a row written by SQL) with control
    characters in it: a settled row cleaned it, the reservation kept it raw, so a turn cut
    off by a crash was settled as a model of its own, an escape sequence and all, in
    /usage and the export (one that ended was not). Both rows take it by one rule."""
    await configure(core)
    assert (await command(core, "/limits set tokens_per_user_day 100000", ADMIN)).ok
    raw = "m1\x1b[2J\x07\x9b"
    for estimate in (50, 60):  # one with a limit to judge it, one only held
        done = await charge(
            core.store, Gate(), REF, "u1", source="custom", model=raw, estimate=estimate
        )
        assert isinstance(done, Charged), done
        if estimate == 50:
            assert (await command(core, "/limits set tokens_per_user_day default", ADMIN)).ok
    async with core.store.engine.begin() as conn:
        await conn.execute(
            update(UsageRow).values(created_at=datetime.now(UTC) - timedelta(minutes=10))
        )
    assert await core.settle_reserved() == 2
    rows = [r async for r in core.store.usage_records(datetime.now(UTC).date())]
    assert [r.model for r in rows] == ["m1[2J", "m1[2J"]


async def test_a_reservation_left_by_a_bot_down_for_weeks_is_settled_at_its_start(
    core: Core,
) -> None:
    """A crash, then the bot stayed stopped for ten days: the next start settles the row
    it left (settling read only the last week's rows, so it stayed "not ended yet" in
    /usage and the export for good)."""
    await configure(core)
    assert (await command(core, "/limits set tokens_per_user_day 100000", ADMIN)).ok
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        assert (await ask(core))[0].refusal is None
    then = datetime.now(UTC) - timedelta(days=10)
    async with core.store.engine.begin() as conn:
        await conn.execute(
            update(UsageRow).values(state="reserved", created_at=then, day=then.date())
        )
    said = (await command(core, "/usage channel month", ADMIN)).text
    assert "1 not ended yet" in said, said
    assert await core.settle_reserved() == 1
    assert await states(core.store) == {"settled": 1}
    said = (await command(core, "/usage channel month", ADMIN)).text
    assert "not ended yet" not in said and "Total: " in said, said
    [row] = [r async for r in core.store.usage_records(then.date())]
    assert not row.reserved


async def test_the_running_bots_settling_leaves_its_own_turns_alone(core: Core) -> None:
    """Review: settling now runs every hour, beside this process's own turns; one whose
    reservation is old (a slow status check before a long answer) still runs."""
    await configure(core)
    assert (await command(core, "/limits set tokens_per_user_day 100000", ADMIN)).ok
    asked, release = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        asked.set()
        await release.wait()
        return await answer()(request)

    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{FAKE}/chat/completions").mock(side_effect=slow)
        turn = asyncio.create_task(ask(core))
        await asyncio.wait_for(asked.wait(), 5)
        async with core.store.engine.begin() as conn:
            await conn.execute(
                update(UsageRow).values(created_at=datetime.now(UTC) - timedelta(minutes=10))
            )
        await core.housekeeping()
        assert await states(core.store) == {"reserved": 1}  # its turn still runs
        release.set()
        result, _ = await asyncio.wait_for(turn, 5)
    assert result.refusal is None
    assert await states(core.store) == {"settled": 1}
    assert await tokens(core.store) == E  # what the endpoint reported, not the reservation


# -- who may chat -----------------------------------------------------------------------------


async def test_denied_users_are_ignored_quietly(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    await configure(core)
    reply = await command(core, "/access deny user <@4242>", ADMIN)
    assert reply.ok, reply.text
    assert "Admins may chat whatever the rules say." in reply.text
    with respx.mock(assert_all_called=False) as mock, caplog.at_level("DEBUG", "bot"):
        route = mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        result, sink = await ask(core, STRANGER)
        assert result.ignored and sink.calls == 0 and route.call_count == 0
        empty, sink = await ask(core, STRANGER, text="")  # not even the "ask me" hint
        assert empty.ignored and sink.calls == 0
        assert (await ask(core))[0].answer == "Hi"
    lines = [r for r in caplog.records if "not allowed to chat" in r.getMessage()]
    assert len(lines) == 2 and all(r.levelname == "DEBUG" for r in lines)
    control = await command(core, "/regenerate", STRANGER)
    assert "may not chat" in control.text
    settings = await command(core, "/settings", MEMBER)
    assert "deny user <@4242> (here)" in settings.text, settings.text  # Discord: by name


async def test_allow_lists_by_role_and_server_wide(core: Core) -> None:
    await configure(core)
    assert (await command(core, "/access allow role <@&555> scope:server", OWNER)).ok
    listed = await command(core, "/access", ADMIN)
    assert "allow role <@&555> (server-wide)" in listed.text, listed.text
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        assert not (await ask(core, MEMBER))[0].ignored  # has the role
        assert (await ask(core, STRANGER))[0].ignored
        assert not (await ask(core, ADMIN))[0].ignored  # admins always may
        assert (await command(core, "/access remove role 555 scope:server", OWNER)).ok
        assert not (await ask(core, STRANGER))[0].ignored
    gone = await command(core, "/access remove role 555 scope:server", OWNER)
    assert not gone.ok and "no rule" in gone.text


async def test_matrix_power_levels(core: Core) -> None:
    room = ChannelRef(Platform.MATRIX, channel_id="!room:hs")
    await configure(core, room)
    mod = Actor("@mod:hs", "Mod", power_level=50)
    pleb = Actor("@pleb:hs", "Pleb", power_level=0)
    assert (await command(core, "!access allow level 50", ADMIN, room)).ok
    assert (await command(core, "!access deny user @mod:hs", ADMIN, room)).ok
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
        assert (await ask(core, pleb, room))[0].ignored
        assert (await ask(core, mod, room))[0].ignored  # deny wins
        assert (await command(core, "!access remove user @mod:hs", ADMIN, room)).ok
        assert not (await ask(core, mod, room))[0].ignored


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("/access allow user", "Usage"),
        ("/access allow user ''", "needs a value"),
        ("/access allow user '\x00\x00'", "control character"),
        # Dropping the NUL would allow someone else than the id typed: 1234.
        ("/access allow user 12\x0034", "control character (U+0000) at position 3"),
        ("/access allow user <@12\x1b34>", "control character (U+001B) at position 5"),
        ("/access allow user abc", "not a Discord user id"),
        ("/access allow user -1", "not a Discord user id"),
        ("/access allow user 0_1", "not a Discord user id"),
        ("/access allow user " + "1" * 300, "not a Discord user id"),
        ("/access allow user " + "1" * 301, "too long"),
        ("/access allow role <@&x>", "not a role id"),
        ("/access allow level 50", "Matrix"),
        ("/access allow group 5", "not a valid kind"),
        ("/access ban user 5", "not a valid action"),
        ("/access list user 5", "Usage"),
        ("/access allow user 5 scope:server", "server admins"),
    ],
)
async def test_access_refuses_hostile_input(core: Core, text: str, why: str) -> None:
    reply = await command(core, text, ADMIN)
    assert not reply.ok and why in reply.text, reply.text
    assert "everyone" in (await command(core, "/access", ADMIN)).text


async def test_an_option_value_with_a_nul_is_refused_as_it_comes_from_discord(core: Core) -> None:
    """A slash command's options arrive as values, not as a line: the same rule holds."""
    inv = Invocation(("access",), {"action": "deny", "kind": "user", "id": "12\x0034"})
    reply = await core.run_command(REF, ADMIN, inv)
    assert not reply.ok and "control character (U+0000) at position 3" in reply.text
    assert "everyone" in (await command(core, "/access", ADMIN)).text


async def test_matrix_hostile_levels_and_ids(core: Core) -> None:
    room = ChannelRef(Platform.MATRIX, channel_id="!room:hs")
    for text, why in [
        ("!access allow level 0_1", "not a power level"),
        ("!access allow level 1e3", "not a power level"),
        ("!access allow level 99999999999999999", "not a power level"),
        ("!access allow user bob", "not a Matrix user id"),
        # 266 characters: no one's (the spec's ids end at 255); it was added as typed,
        # stored cut to 255 and listed so, a rule that matched nobody.
        (f"!access allow user @{'a' * 200}:{'b' * 60}.org", "longer than a Matrix user id"),
        ("!access allow role 5", "Discord"),
    ]:
        reply = await command(core, text, ADMIN, room)
        assert not reply.ok and why in reply.text, (text, reply.text)
    assert "everyone" in (await command(core, "!access", ADMIN, room)).text
    longest = f"@{'a' * 200}:{'b' * 49}.org"  # 255
    assert (await command(core, f"!access allow user {longest}", ADMIN, room)).ok
    assert (await command(core, "!access allow level -10", ADMIN, room)).ok


async def test_a_channel_keeps_at_most_fifty_rules_of_its_own(core: Core) -> None:
    """Limits probe: /access took any number of rules, and /access and /settings list
    every one (on Discord, a flood of 2,000-character messages)."""
    for n in range(MAX_ACCESS_RULES):
        assert (await command(core, f"/access allow user {1000 + n}", ADMIN)).ok
    full = await command(core, "/access allow user 9999", ADMIN)
    assert not full.ok and full.text == (
        "There are already 50 rules for this channel, the most kept: remove one with "
        "/access action:remove kind:<user|role> id:<id>, or name many people at once with a "
        "role. "
        "Nothing changed."
    ), full.text
    assert "9999" not in (await command(core, "/access", ADMIN)).text
    # A rule already there may change its effect; the server keeps its own 50.
    assert (await command(core, "/access deny user 1000", ADMIN)).ok
    assert (await command(core, "/access allow user 9999 scope:server", OWNER)).ok
    assert (await command(core, "/access remove user 1001", ADMIN)).ok
    assert (await command(core, "/access allow user 9999", ADMIN)).ok


async def test_a_server_full_of_rules_says_how_to_remove_one_server_wide(core: Core) -> None:
    """The refusal past 50 server-wide rules told `/access remove <user|role|level> <id>`
    without scope:server (which looks for the channel's rule), and bot-admin roles count
    among the 50 but are removed with /access unadmin, which it did not name; the
    refusal of an `/access admin` past them was worded apart. One refusal says both."""
    assert (await command(core, "/access admin role 777", OWNER)).ok
    for n in range(MAX_ACCESS_RULES - 1):
        assert (await command(core, f"/access allow user {1000 + n} scope:server", OWNER)).ok
    said = (
        "There are already 50 rules server-wide, the most kept: remove one with /access "
        "action:remove kind:<user|role> id:<id> scope:server (a bot-admin role: /access "
        "action:unadmin kind:role id:<id>), or name many people at once with a role. "
        "Nothing changed."
    )
    full = await command(core, "/access allow user 9999 scope:server", OWNER)
    assert not full.ok and full.text == said, full.text
    full = await command(core, "/access admin role 778", OWNER)
    assert not full.ok and full.text == said, full.text


async def test_a_bot_admin_role_counts_among_the_servers_fifty_rules(core: Core) -> None:
    """Review probe: a server's bot-admin role is one of its 50 rules, but a who-may-chat
    rule for the same role passed the limit as if it were that rule changing its effect
    (it is a row of its own): a server at 50 kept a 51st."""
    assert (await command(core, "/access admin role 777", OWNER)).ok
    for n in range(MAX_ACCESS_RULES - 1):
        assert (await command(core, f"/access allow user {1000 + n} scope:server", OWNER)).ok
    full = await command(core, "/access allow role 777 scope:server", OWNER)
    assert not full.ok and full.text.startswith("There are already 50 rules server-wide"), full
    assert "allow role <@&777>" not in (await command(core, "/access", OWNER)).text


async def test_operator_lists_keep_a_bot_private(database_url: str) -> None:
    gate = Gate.of(servers=["g1"], users=["u-member", "4242"])
    core = await open_core(database_url, gate)
    try:
        await configure(core)
        dm = ChannelRef(Platform.DISCORD, channel_id="dm1")
        other = ChannelRef(Platform.DISCORD, channel_id="c9", server_id="g9")
        with respx.mock(assert_all_called=False) as mock:
            mock.post(f"{FAKE}/chat/completions").mock(side_effect=answer())
            assert not (await ask(core, MEMBER))[0].ignored
            assert (await ask(core, Actor("u-x", "X")))[0].ignored  # not in ALLOWED_USERS
            assert (await ask(core, MEMBER, other))[0].ignored  # not in ALLOWED_SERVERS
            assert (await ask(core, MEMBER, dm))[0].ignored
            operator = Actor("u-operator", "Op")  # ADMIN_IDS: everywhere
            assert not (await ask(core, operator, other))[0].ignored
        listed_admin = Actor("u-member", "Bob", is_channel_admin=True)
        assert "operator limits" in (await command(core, "/access", listed_admin)).text
        assert (await command(core, "/access", ADMIN)).text == NOT_HERE  # not in ALLOWED_USERS
        # Outside the lists an admin there runs no command either (no setting, key or
        # call to the operator's endpoint); a turn control says why, to the presser.
        outsider = Actor("u-member", "Admin there", is_channel_admin=True)
        for text in ("/model stolen", "/models external", "/settings", "/help"):
            reply = await command(core, text, outsider, other)
            assert not reply.ok and reply.private and reply.text == NOT_HERE, (text, reply)
        assert (await core.store.scope_values(other, Scope.CHANNEL)).get("model") is None
        control = await core.run_command(other, outsider, Invocation(("regenerate",), {}))
        assert control.private and control.text == NOT_HERE, control
    finally:
        await core.close()


async def test_a_burst_of_new_channels_reads_limits_and_rules_once(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    """Fifty channels nobody spoke in yet, at once: their scopes' limits and who-may-chat
    rules come in one query each, and each channel still gets its own (and its server's)."""
    from bot.types.limits import AccessKind, AccessRule, Effect

    refs = [ChannelRef(Platform.DISCORD, channel_id=f"b{n}", server_id="g1") for n in range(50)]
    await core.store.quotas.set_limit(refs[7], Scope.CHANNEL, "tokens_per_user_day", 70, ADMIN)
    await core.store.quotas.set_limit(refs[0], Scope.SERVER, "tokens_per_server_day", 900, OWNER)
    deny = AccessRule(AccessKind.USER, "4242", Effect.DENY)
    await core.store.quotas.set_rule(refs[9], Scope.CHANNEL, deny, ADMIN)
    fresh = await open_core(core.store.engine.url.render_as_string(hide_password=False))
    try:
        with caplog.at_level("INFO", logger="sqlalchemy.engine"):
            limits, rules = await asyncio.gather(
                asyncio.gather(*(fresh.store.quotas.limits(r) for r in refs)),
                asyncio.gather(*(fresh.store.quotas.rules(r) for r in refs)),
            )
        reads = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SELECT")]
        assert sum("FROM limits" in q for q in reads) == 1
        assert sum("FROM access_rules" in q for q in reads) == 1
        assert limits[7].channel == {"tokens_per_user_day": 70}
        assert all(not lim.channel for n, lim in enumerate(limits) if n != 7)
        assert all(lim.server == {"tokens_per_server_day": 900} for lim in limits)
        assert [n for n, found in enumerate(rules) if found] == [9]
        assert rules[9][0].subject == "4242" and not rules[9][0].server_wide
    finally:
        await fresh.close()


@pytest.mark.parametrize(
    ("text", "ref", "said"),
    [
        (
            '!access allow role "Old crew"',
            ChannelRef(Platform.MATRIX, channel_id="!r:hs"),
            "Roles are Discord's; here use user or a power level (level 50).",
        ),
        (
            "/access allow role Moderators",
            ChannelRef(Platform.CONSOLE, channel_id="console"),
            "Roles are Discord's; here use user (the console has no roles or power levels).",
        ),
    ],
)
async def test_a_role_named_where_there_are_none_says_roles_are_discords(
    core: Core, text: str, ref: ChannelRef, said: str
) -> None:
    """A role's name (Discord's rule takes one now) on Matrix, where power levels stand
    for roles, or on the console: refused as before, saying what is taken there."""
    reply = await command(core, text, OWNER, ref)
    assert not reply.ok and reply.text == said, reply.text


async def test_a_bot_admin_roles_member_is_told_a_blocked_turns_step_as_theirs(
    core: Core,
) -> None:
    """A member of a bot-admin role chatting where no model is picked is an admin of the
    channel: told to pick one, not that an admin picks one. The turn reads the role's
    grant with its other reads (not in a round trip of its own before them)."""
    assert (await command(core, "/access admin role 555", OWNER)).ok
    await core.store.update_config(
        REF, Scope.CHANNEL, ADMIN, {"source": "custom", "proxy_url": FAKE}, action="test setup"
    )
    result, _ = await ask(core, MEMBER)
    assert "Pick one with /model" in result.answer, result
    result, _ = await ask(core, replace(MEMBER, roles=("556",)))
    assert "An admin picks one" in result.answer, result
