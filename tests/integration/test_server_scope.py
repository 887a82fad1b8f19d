"""Server-wide configuration from chat: every configuration command takes `scope:server`
(server admins), a channel's own value wins, `default` removes a scope's value, and
`/settings` says where each value comes from. SQLite and the real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from bot.commands import TABLE
from bot.commands.spec import Command, Invocation, walk
from bot.store.models import ChannelConfigRow
from bot.types import (
    Actor,
    Attachment,
    ChannelRef,
    Incoming,
    Platform,
    Reply,
    Scope,
    SecretValue,
    StatusCheck,
)
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai
from tests.integration.conftest import ADMIN, MEMBER, REF, SERVER_ADMIN, Harness, make_core

SIBLING = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
OTHER_SERVER = ChannelRef(Platform.DISCORD, channel_id="c9", server_id="g2")
NOVA = json.dumps({"name": "Nova", "description": "A star pilot.", "first_mes": "Hi."}).encode()


def _served(data: bytes) -> Callable[[int], Awaitable[bytes]]:
    async def fetch(limit: int) -> bytes:
        return data

    return fetch


NO_SERVER = (
    ChannelRef(Platform.MATRIX, channel_id="!room:example.org"),
    ChannelRef(Platform.CONSOLE, channel_id="console"),
)
CLOSED = "http://127.0.0.1:9/v1"  # nothing listens: status checks fail at once

# Every configuration command, set server-wide, and what the server row then holds.
SERVER_WIDE: dict[tuple[str, ...], tuple[dict[str, object], dict[str, object]]] = {
    ("source",): ({"source": "mistral"}, {"source": "mistral"}),
    ("model",): ({"id": "gpt-4o"}, {"model": "gpt-4o"}),
    ("proxy", "set"): ({"url": CLOSED}, {"proxy_url": CLOSED}),
    ("proxy", "clear"): ({}, {}),
    ("connect",): ({"bypass": "on"}, {"bypass_status_check": True}),
    ("models", "external"): ({"state": "off"}, {"show_external_models": False}),
    ("system",): ({"prompt": "Be brief."}, {"system_prompt": "Be brief."}),
    ("prompts",): (
        {"name": "post_history", "text": "Stay short."},
        {"post_history_prompt": "Stay short."},
    ),
    ("params",): ({"name": "temperature", "value": "0.5"}, {"temperature": 0.5}),
    ("reply", "mode"): ({"mode": "always"}, {"reply_mode": "always"}),
}


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    core = await make_core(database_url)
    try:
        yield Harness(core, core.store, database_url)
    finally:
        await core.close()


async def run(h: Harness, text: str, actor: Actor = ADMIN, ref: ChannelRef = REF) -> Reply:
    return await h.core.run_text_command(Incoming(ref, actor, text))


async def invoke(h: Harness, path: tuple[str, ...], args: dict[str, object], actor: Actor) -> Reply:
    return await h.core.run_command(REF, actor, Invocation(path, {**args, "scope": "server"}))


def test_every_configuration_command_takes_scope() -> None:
    configures = {path for path, c in walk(TABLE) if c.admin and c.handler is not None}
    without = {p for p in configures if "scope" not in {o.name for o in c_of(p).options}}
    # /preset export reads; /reset forgets this channel's conversation; /character none
    # turns off the server's character in this channel.
    assert without == {("preset", "export"), ("reset",), ("character", "none")}
    assert {p for p in configures if p not in without} >= set(SERVER_WIDE)


def c_of(path: tuple[str, ...]) -> Command:
    return next(c for p, c in walk(TABLE) if p == path)


@pytest.mark.parametrize("path", list(SERVER_WIDE), ids=" ".join)
async def test_a_server_admin_sets_it_for_every_channel_of_the_server(
    harness: Harness, path: tuple[str, ...]
) -> None:
    args, stored = SERVER_WIDE[path]
    if path == ("proxy", "clear"):
        await invoke(harness, ("proxy", "set"), {"url": CLOSED}, SERVER_ADMIN)
    reply = await invoke(harness, path, args, SERVER_ADMIN)
    assert "server" in reply.text, reply.text
    server = await harness.store.scope_values(REF, Scope.SERVER)
    for name, value in stored.items():
        assert server[name] == value
    assert await harness.store.scope_values(REF, Scope.CHANNEL) in ({}, {"model": None})
    sibling = await harness.store.effective_config(SIBLING)
    for name, value in stored.items():
        assert sibling.origins[name] == "server", name
        assert sibling.values[name] == value
    elsewhere = await harness.store.effective_config(OTHER_SERVER)
    assert all(elsewhere.origins[name] != "server" for name in stored)
    if path == ("proxy", "clear"):
        assert sibling.proxy_url is None and server.get("proxy_url") is None


@pytest.mark.parametrize("path", list(SERVER_WIDE), ids=" ".join)
async def test_a_channel_admin_cannot_and_nothing_changes(
    harness: Harness, path: tuple[str, ...]
) -> None:
    args, _ = SERVER_WIDE[path]
    reply = await invoke(harness, path, args, ADMIN)
    assert not reply.ok and "server admins" in reply.text
    assert await harness.store.scope_values(REF, Scope.SERVER) == {}
    assert await harness.store.audit_entries(REF) == []


@pytest.mark.parametrize("ref", NO_SERVER, ids=lambda r: r.platform.value)
async def test_where_there_is_no_server_it_is_refused_before_anything(
    harness: Harness, ref: ChannelRef
) -> None:
    prefix = "!" if ref.platform is Platform.MATRIX else "/"
    reply = await run(harness, f"{prefix}system Be brief. scope:server", SERVER_ADMIN, ref)
    assert not reply.ok and "no server here" in reply.text
    assert await harness.store.scope_values(ref, Scope.CHANNEL) == {}


@pytest.mark.parametrize("ref", NO_SERVER, ids=lambda r: r.platform.value)
async def test_where_there_is_no_server_no_reply_offers_one(
    harness: Harness, ref: ChannelRef
) -> None:
    """Matrix newcomer probe: usage lines in a room offered `[scope:channel|server]`,
    `/limits` named the server's budget, and `/character none` spoke of a server's
    character, all of which a room refuses or lacks."""
    p = "!" if ref.platform is Platform.MATRIX else "/"
    said = {
        text: (await run(harness, p + text, ADMIN, ref)).text
        for text in ("model", "key", "limits set", "limits", "prompts")
    }
    said["none"] = (await run(harness, f"{p}character none", ADMIN, ref)).text
    said["show"] = (await run(harness, f"{p}character show", ADMIN, ref)).text
    said["clear"] = (await run(harness, f"{p}character clear", ADMIN, ref)).text
    said["access"] = (await run(harness, f"{p}access allow", ADMIN, ref)).text
    said["default"] = (await run(harness, f"{p}params max_tokens default", ADMIN, ref)).text
    assert said["model"].endswith(f"Usage: {p}model <id>"), said
    assert said["key"].endswith(f"Example: {p}key set <openai|claude|mistral|custom> <key>")
    assert said["limits set"] == (
        f"Usage: {p}limits set <name> <value|off|default>; names: messages_per_user_minute, "
        f"tokens_per_user_day, tokens_per_{ref.platform.place}_day."
    )
    assert said["none"] == "No character answers here."
    assert said["show"].startswith("No character here. Set one")  # to the admin asking
    assert said["clear"] == f"{p}character none is lifted; no character was set here."
    assert said["default"] == "max_tokens now follows the operator's value.", said["default"]
    assert not [t for t in said.values() if "scope" in t], said
    shown = ("limits", "prompts", "none", "show", "clear", "access", "default")
    assert not [k for k in shown if "server" in said[k]], said
    # Where there is a server, the same lines offer it.
    model = await run(harness, "/model")
    assert model.text.endswith("Usage: /model <id> [scope:channel|server]")


async def test_the_channels_own_value_wins_and_default_removes_a_scopes(
    harness: Harness,
) -> None:
    assert (await run(harness, "/model gpt-4o scope:server", SERVER_ADMIN)).ok
    reply = await run(harness, "/model gpt-4o-mini")
    assert reply.ok
    config = await harness.store.effective_config(REF)
    assert config.model == "gpt-4o-mini" and config.origins["model"] == "channel"

    again = await run(harness, "/model o3 scope:server", SERVER_ADMIN)
    assert "has its own model (gpt-4o-mini), which wins here" in again.text
    assert (await harness.store.effective_config(SIBLING)).model == "o3"

    back = await run(harness, "/model default")
    assert back.ok and "server's (or operator's) model (o3)" in back.text
    config = await harness.store.effective_config(REF)
    assert config.model == "o3" and config.origins["model"] == "server"

    gone = await run(harness, "/model default scope:server", SERVER_ADMIN)
    assert gone.ok and "none yet" in gone.text
    assert (await harness.store.effective_config(REF)).model is None


async def test_free_text_ends_with_the_scope_people_type(harness: Harness) -> None:
    """`/system … scope:server` and `/params stop … scope:server`, as Discord shows them."""
    assert (await run(harness, "/system You are terse. scope:server", SERVER_ADMIN)).ok
    assert (await run(harness, '/params stop END, "a,b" scope:server', SERVER_ADMIN)).ok
    server = await harness.store.scope_values(REF, Scope.SERVER)
    assert server["system_prompt"] == "You are terse."
    assert server["stop"] == ("END", "a,b")
    # A prompt that merely ends in something scope-like stays the prompt.
    assert (await run(harness, "/system Answer in scope:wide terms")).ok
    assert (await harness.store.effective_config(REF)).system_prompt == "Answer in scope:wide terms"


async def test_none_means_no_prompt_here_and_default_the_servers(harness: Harness) -> None:
    await run(harness, "/system Server voice. scope:server", SERVER_ADMIN)
    assert (await run(harness, "/system none")).ok
    assert not (await harness.store.effective_config(REF)).system_prompt
    assert (await harness.store.effective_config(SIBLING)).system_prompt == "Server voice."
    reply = await run(harness, "/system default")
    assert reply.text.startswith(
        "This channel now uses the server's (or operator's) system prompt."
    ), reply.text
    assert (await harness.store.effective_config(REF)).system_prompt == "Server voice."
    # Where neither has one, it says so (it spoke as if there were one).
    assert (await run(harness, "/system default scope:server", SERVER_ADMIN)).ok
    assert (await run(harness, "/system Mine.")).ok
    gone = await run(harness, "/system default")
    assert gone.text.startswith(
        "This channel now uses the server's (or operator's) system prompt (none set)."
    ), gone.text


async def test_source_default_follows_the_server_with_its_model(harness: Harness) -> None:
    await run(harness, "/source claude scope:server", SERVER_ADMIN)
    await run(harness, "/model claude-sonnet-4-5 scope:server", SERVER_ADMIN)
    await run(harness, "/source mistral")
    await run(harness, "/model mistral-small-latest")
    reply = await run(harness, "/source default")
    assert reply.ok and "(claude)" in reply.text and "Model: claude-sonnet-4-5." in reply.text
    config = await harness.store.effective_config(REF)
    assert (config.source.value, config.model) == ("claude", "claude-sonnet-4-5")
    assert config.origins["source"] == config.origins["model"] == "server"


async def test_reply_mode_and_params_default_at_each_scope(harness: Harness) -> None:
    await run(harness, "/reply mode always scope:server", SERVER_ADMIN)
    await run(harness, "/reply mode mention")
    assert (await harness.store.effective_config(REF)).reply_mode.value == "mention"
    reply = await run(harness, "/reply mode default")
    assert "(always)" in reply.text
    assert (await harness.store.effective_config(REF)).reply_mode.value == "always"
    await run(harness, "/params temperature 0.3 scope:server", SERVER_ADMIN)
    await run(harness, "/params temperature 0.9")
    await run(harness, "/params temperature default")
    config = await harness.store.effective_config(REF)
    assert (config.values["temperature"], config.origins["temperature"]) == (0.3, "server")


async def test_settings_says_where_each_value_comes_from(harness: Harness) -> None:
    await run(harness, "/source claude scope:server", SERVER_ADMIN)
    await run(harness, "/params temperature 0.5 scope:server", SERVER_ADMIN)
    await run(harness, "/model claude-sonnet-4-5")
    await run(harness, "/params stop END")
    text = (await run(harness, "/settings", MEMBER)).text
    assert "Source: claude (server-wide)" in text
    assert "Model: claude-sonnet-4-5 (this channel)" in text
    assert "Reply mode: mention (built-in default)" in text
    assert "Params (this channel): stop=END" in text
    assert "Params (server-wide): temperature=0.5" in text
    assert "Character:" not in text and "Limits:" not in text  # none set: no line


async def test_settings_names_the_character_and_the_limits_in_force(harness: Harness) -> None:
    """A member's /settings said nothing of a server-wide character or of a limit that
    would refuse their next message."""
    card = Attachment("nova.json", "", len(NOVA), _served(NOVA))
    imported = await harness.core.run_command(
        REF, SERVER_ADMIN, Invocation(("character", "import"), {"file": card, "scope": "server"})
    )
    assert imported.ok, imported.text
    assert (await run(harness, "/limits set messages_per_user_minute 2")).ok
    text = (await run(harness, "/settings", MEMBER)).text
    assert "Character: Nova (server-wide)" in text, text
    assert "Limits: messages_per_user_minute 2 (/limits shows what you have left)" in text


async def test_a_server_wide_endpoint_change_makes_its_channels_check_again(
    harness: Harness,
) -> None:
    """A sibling's status and /v1-corrected URL described the old endpoint: they go, so
    the sibling is not blocked by a stale failure nor sent to the old URL. What it shows
    is the check the change ran, of the new endpoint (made in REF: the server's)."""
    await run(harness, "/proxy set http://127.0.0.1:7/v1 scope:server", SERVER_ADMIN)
    stale = StatusCheck(False, "old failure", checked_url="http://127.0.0.1:7/v1", kind="auth")
    await harness.store.record_status(SIBLING, stale, "http://127.0.0.1:7/v1")
    await harness.store.record_status(SIBLING, None, "http://127.0.0.1:7/v1")
    other = await harness.store.effective_config(OTHER_SERVER)

    await run(harness, f"/proxy set {CLOSED} scope:server", SERVER_ADMIN)
    sibling = await harness.store.effective_config(SIBLING)
    assert sibling.status is not None and sibling.resolved_url is None
    assert sibling.status.reason != "old failure" and sibling.status.kind == "unreachable"
    assert sibling.status.server_wide and sibling.status.checked_url == CLOSED
    assert sibling.proxy_url == CLOSED

    stale = StatusCheck(False, "old failure", checked_url=CLOSED, kind="auth")
    await harness.store.record_status(SIBLING, stale, None)
    assert (await harness.store.effective_config(SIBLING)).status == replace(
        stale, server_wide=True
    )
    key = SecretValue("sk-server-key-00001234")
    await harness.core.run_command(
        REF,
        SERVER_ADMIN,
        Invocation(("key", "set"), {"source": "openai", "key": key, "scope": "server"}),
    )
    status = (await harness.store.effective_config(SIBLING)).status
    assert status is not None and status.reason != "old failure"
    assert await harness.store.effective_config(OTHER_SERVER) == other


async def test_a_channel_with_its_own_url_keeps_its_v1_fix(harness: Harness) -> None:
    await run(harness, "/proxy set http://127.0.0.1:8 ", ADMIN, SIBLING)
    await harness.store.record_status(SIBLING, None, "http://127.0.0.1:8/v1")
    await run(harness, "/model x scope:server", SERVER_ADMIN)
    assert (await harness.store.effective_config(SIBLING)).resolved_url == "http://127.0.0.1:8/v1"


async def test_a_channels_switch_goes_back_to_the_servers_with_default(harness: Harness) -> None:
    """Confused-admin probe: once `/connect bypass:off` or `/models external state:off`
    was run in a channel, it kept its own value for good (the switches took only on or
    off), so the server's bypass never applied there, and the note after the server-wide
    change told them to use a `default` the command refused."""
    assert (await run(harness, f"/proxy set {CLOSED}")).ok
    await run(harness, "/connect bypass:off")
    await run(harness, "/models external state:off")
    server = await run(harness, "/connect bypass:on scope:server", SERVER_ADMIN)
    assert (
        "This channel has its own bypass_status_check (off), which wins here; "
        "/connect bypass:default without scope:server removes it."
    ) in server.text, server.text
    assert not (await harness.store.effective_config(REF)).bypass_status_check

    back = await run(harness, "/connect bypass:default")
    assert back.text.startswith(
        "This channel now follows the server's (or operator's) bypass API status check: on."
    ), back.text
    assert "Bypass is on, so chat goes through." in back.text
    config = await harness.store.effective_config(REF)
    assert config.bypass_status_check and config.origins["bypass_status_check"] == "server"

    listed = await run(harness, "/models external state:default")
    assert listed.ok and listed.text == (
        "This channel now follows the server's (or operator's) show external models: off."
    ), listed.text
    assert await harness.store.scope_values(REF, Scope.CHANNEL) == {"proxy_url": CLOSED}
    # Spelled as the other switch words are, and refused as before when it is none.
    assert not (await run(harness, "/connect bypass:perhaps")).ok
    assert "(or default)" in (await run(harness, "/connect bypass:perhaps")).text


async def test_a_server_wide_key_or_url_this_channel_overrides_says_so(harness: Harness) -> None:
    """Confused-admin probe: `/key set openai scope:server` typed in a channel with its
    own openai key said only "Saved … for this server", then a status check run with the
    channel's key, not the new one; and after `/proxy set … scope:server` the note told
    them `default` removes the channel's URL, which `/proxy set` refuses as a URL."""
    assert (await run(harness, f"/proxy set {CLOSED}")).ok
    server_url = await run(harness, "/proxy set http://127.0.0.1:7/v1 scope:server", SERVER_ADMIN)
    assert (
        "This channel has its own proxy_url (http://127.0.0.1:9/v1), which wins here; "
        "/proxy clear without scope:server removes it."
    ) in server_url.text, server_url.text

    def key(text: str, scope: str = "") -> dict[str, object]:
        return {"source": "openai", "key": SecretValue(text)} | ({"scope": scope} if scope else {})

    own = await harness.core.run_command(
        REF, ADMIN, Invocation(("key", "set"), key("sk-channel-0000002222"))
    )
    assert own.ok, own.text
    server = await harness.core.run_command(
        REF, SERVER_ADMIN, Invocation(("key", "set"), key("sk-server-0000004444", "server"))
    )
    note = (
        "This channel has its own openai key (…2222), which wins here; /key clear openai "
        "without scope:server removes it."
    )
    assert server.text.startswith("Saved the openai key for this server (ends …4444)."), server
    assert f"{note}\nStatus check failed" in server.text, server.text
    assert "sk-server" not in server.text and "sk-channel" not in server.text
    # From a channel without its own key: nothing to say.
    sibling = await harness.core.run_command(
        SIBLING, SERVER_ADMIN, Invocation(("key", "set"), key("sk-server-0000005555", "server"))
    )
    assert "its own" not in sibling.text, sibling.text
    cleared = await harness.core.run_command(
        REF, SERVER_ADMIN, Invocation(("key", "clear"), {"source": "openai", "scope": "server"})
    )
    assert cleared.text.startswith(f"Removed the openai key for this server.\n{note}")
    assert await harness.store.secret_origin(REF, "openai_api_key") == ("channel", "2222")


async def test_a_server_wide_proxy_password_this_channel_overrides_says_so(
    harness: Harness,
) -> None:
    """`/proxy password … scope:server` in a channel with its own password said only
    "Saved the proxy password", then ran the status check with the channel's password."""

    def password(text: str, scope: str = "") -> dict[str, object]:
        return {"password": SecretValue(text)} | ({"scope": scope} if scope else {})

    assert (await run(harness, f"/proxy set {CLOSED}")).ok
    own = await harness.core.run_command(
        REF, ADMIN, Invocation(("proxy", "password"), password("pw-channel-00001111"))
    )
    assert own.ok and "its own" not in own.text, own.text
    server = await harness.core.run_command(
        REF,
        SERVER_ADMIN,
        Invocation(("proxy", "password"), password("pw-server-00003333", "server")),
    )
    assert server.text.startswith(
        "Saved the proxy password (ends …3333).\nThis channel has its own proxy password "
        "(…1111), which wins here; /proxy clear without scope:server (with this channel's "
        "URL) removes it.\nStatus check failed"
    ), server.text
    assert "pw-server" not in server.text and "pw-channel" not in server.text
    assert await harness.store.secret_origin(REF, "proxy_password") == ("channel", "1111")
    # From a channel without its own: nothing to say.
    sibling = await harness.core.run_command(
        SIBLING,
        SERVER_ADMIN,
        Invocation(("proxy", "password"), password("pw-server-00005555", "server")),
    )
    assert "its own" not in sibling.text, sibling.text


async def test_clearing_a_channels_custom_key_says_what_is_sent_in_its_place(
    harness: Harness,
) -> None:
    """`/key clear custom` in a channel under the server's URL, custom key and proxy
    password said "The server's custom key applies here": the proxy password is what
    that endpoint is sent (it replaces the custom key), so nothing of the key applies.
    With no password, the server's key is what goes, and it is said."""

    async def secret(name: str, text: str, scope: str = "") -> Reply:
        args: dict[str, object] = {"password": SecretValue(text)}
        path: tuple[str, ...] = ("proxy", "password")
        if name == "key":
            args, path = {"source": "custom", "key": SecretValue(text)}, ("key", "set")
        args |= {"scope": scope} if scope else {}
        actor = SERVER_ADMIN if scope else ADMIN
        return await harness.core.run_command(REF, actor, Invocation(path, args))

    assert (await run(harness, "/source custom scope:server", SERVER_ADMIN)).ok
    assert (await run(harness, f"/proxy set {CLOSED} scope:server", SERVER_ADMIN)).ok
    assert (await secret("key", "server-custom-key-000011", "server")).ok
    assert (await secret("key", "channel-custom-key-00022")).ok
    cleared = await run(harness, "/key clear custom")
    assert "The server's custom key (…0011) applies here" in cleared.text, cleared.text
    assert (await secret("key", "channel-custom-key-00022")).ok
    assert (await secret("password", "server-proxy-password-33", "server")).ok
    cleared = await run(harness, "/key clear custom")
    assert cleared.text.startswith("Removed the custom key for this channel."), cleared.text
    assert "custom key (…0011) applies" not in cleared.text, cleared.text


class _Sink:
    """What a front-end would show of one answer."""

    def __init__(self) -> None:
        self.final: tuple[str, str | None] | None = None

    async def typing(self) -> None:
        return None

    async def update(self, answer: str, reasoning: str = "") -> None:
        return None

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        self.final = (answer, error)


async def said(h: Harness, ref: ChannelRef, text: str) -> str:
    """A member's chat message in `ref`: what the answer (or the refusal) shows."""
    sink = _Sink()
    await h.core.chat(Incoming(ref, MEMBER, text), sink)
    assert sink.final is not None
    return sink.final[1] or sink.final[0]


def status_line(reply: Reply) -> str:
    return next(line for line in reply.text.splitlines() if line.startswith("Status:"))


@pytest.fixture
async def endpoint() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(Script(chunks=["Hi", "!"])) as fake:
        yield fake


async def _server_endpoint(h: Harness, endpoint: FakeOpenAI, *, v1: bool = False) -> Reply:
    """A server admin points the whole server at `endpoint` from REF (its check runs there);
    without `v1`, the URL typed lacks the /v1 the check finds."""
    assert (await run(h, "/source custom scope:server", SERVER_ADMIN)).ok
    assert (await run(h, "/model m-small scope:server", SERVER_ADMIN)).ok
    url = endpoint.url_v1 if v1 else endpoint.url_v1.removesuffix("/v1")
    return await run(h, f"/proxy set {url} scope:server", SERVER_ADMIN)


async def test_a_check_of_the_servers_endpoint_is_what_its_other_channels_show(
    harness: Harness, endpoint: FakeOpenAI
) -> None:
    """Member probe: the server's endpoint passed its check in REF, and /settings in the
    sibling said "Status: not checked yet" (and the URL without the /v1 the check found)
    until someone ran /connect there: the check was kept on REF's row alone."""
    assert "Status check: OK" in (await _server_endpoint(harness, endpoint)).text
    for ref in (REF, SIBLING):
        shown = await run(harness, "/settings", MEMBER, ref)
        assert status_line(shown) == "Status: OK (checked server-wide)", shown.text
        assert f"Endpoint: {endpoint.url_v1} (server-wide)" in shown.text, shown.text
    asked = endpoint.models_asked
    assert await said(harness, SIBLING, "hello") == "Hi!"
    assert endpoint.models_asked == asked  # chat needs no check of its own
    elsewhere = await run(harness, "/settings", MEMBER, OTHER_SERVER)
    assert status_line(elsewhere) == "Status: not checked yet"
    # A channel with an endpoint of its own shows its own check, not the server's.
    assert (await run(harness, f"/proxy set {CLOSED}", ADMIN, SIBLING)).ok
    own = status_line(await run(harness, "/settings", MEMBER, SIBLING))
    assert own.startswith("Status: failed — ") and "server-wide" not in own, own
    # …and the server's again once it follows the server's URL.
    assert (await run(harness, "/proxy clear", ADMIN, SIBLING)).ok
    back = await run(harness, "/settings", MEMBER, SIBLING)
    assert status_line(back) == "Status: OK (checked server-wide)", back.text


async def test_a_channel_with_its_own_key_for_the_endpoint_is_not_shown_the_servers_check(
    harness: Harness, endpoint: FakeOpenAI
) -> None:
    """The server's check was made with the server's secrets: a channel that sends its
    own key there has not been checked, whatever the server's check said."""
    own = SecretValue("sibling-custom-key-0042")
    invocation = Invocation(("key", "set"), {"source": "custom", "key": own})
    assert (await harness.core.run_command(SIBLING, ADMIN, invocation)).ok  # openai still
    assert "Status check: OK" in (await _server_endpoint(harness, endpoint)).text
    assert status_line(await run(harness, "/settings", MEMBER, REF)).endswith("server-wide)")
    shown = await run(harness, "/settings", MEMBER, SIBLING)
    assert status_line(shown) == "Status: not checked yet", shown.text
    # Its key gone, it uses the server's endpoint; the check /key clear runs is the server's.
    assert (await run(harness, "/key clear custom", ADMIN, SIBLING)).ok
    shown = await run(harness, "/settings", MEMBER, SIBLING)
    assert status_line(shown) == "Status: OK (checked server-wide)", shown.text


async def test_a_channels_own_key_kept_behind_the_servers_password_shares_its_check(
    harness: Harness, endpoint: FakeOpenAI
) -> None:
    """A channel with a custom key of its own, where the server's proxy password is what
    its requests send (the key kept, not sent), counted as having an endpoint of its own:
    the server's failed check, made with the very credential it sends, neither held its
    chat back nor showed in its /settings ("not checked yet")."""
    own = SecretValue("sibling-custom-key-0042")
    invocation = Invocation(("key", "set"), {"source": "custom", "key": own})
    assert (await harness.core.run_command(SIBLING, ADMIN, invocation)).ok
    endpoint.script.models_status = 401
    await _server_endpoint(harness, endpoint, v1=True)
    password = SecretValue("server-proxy-password-0042")
    invocation = Invocation(("proxy", "password"), {"password": password, "scope": "server"})
    checked = await harness.core.run_command(REF, SERVER_ADMIN, invocation)
    assert "Status check failed" in checked.text, checked.text
    shown = await run(harness, "/settings", MEMBER, SIBLING)
    assert "not sent: the proxy password is sent instead" in shown.text, shown.text
    assert status_line(shown).startswith("Status: failed (checked server-wide) — "), shown.text
    refused = await said(harness, SIBLING, "hello")
    assert refused.startswith("I can't answer: the last status check failed"), refused
    assert not endpoint.requests
    # A check made there is the server's, for every channel that sends its password.
    endpoint.script.models_status = 200
    assert "Status check: OK" in (await run(harness, "/connect", ADMIN, SIBLING)).text
    shown = await run(harness, "/settings", MEMBER, REF)
    assert status_line(shown) == "Status: OK (checked server-wide)", shown.text


async def test_the_servers_checked_model_list_is_offered_in_each_channel_that_uses_it(
    harness: Harness, endpoint: FakeOpenAI
) -> None:
    """The server's endpoint passed its check in REF, and the sibling's /settings said so
    ("OK (checked server-wide)"), but its /models list said "No models known for custom"
    and /model suggested nothing: the list the check fetched was kept for REF alone."""
    assert "Status check: OK" in (await _server_endpoint(harness, endpoint, v1=True)).text
    listed = await run(harness, "/models list", MEMBER, SIBLING)
    assert listed.text.startswith("custom models (the endpoint): m-small, m-large"), listed.text
    offered = await harness.core.autocomplete(SIBLING, ADMIN, ("model",), "id", "m-")
    assert offered == ["m-small", "m-large"], offered
    # A channel that sends a key of its own there was not checked: the list is not its.
    own = SecretValue("other-custom-key-0042")
    invocation = Invocation(("key", "set"), {"source": "custom", "key": own})
    third = replace(SIBLING, channel_id="c3")
    endpoint.script.models_status = 401
    saved = await harness.core.run_command(third, ADMIN, invocation)
    assert "Status check failed" in saved.text, saved.text
    listed = await run(harness, "/models list", MEMBER, third)
    assert listed.text.startswith("No models known for custom."), listed.text


async def test_a_chat_answer_in_one_channel_clears_the_servers_failed_check(
    harness: Harness, endpoint: FakeOpenAI
) -> None:
    """The server's failed check holds in every channel that uses its endpoint, and an
    answer that comes through in any of them marks it working for all of them."""
    endpoint.script.models_status = 401  # the check fails; chat itself works
    checked = await _server_endpoint(harness, endpoint, v1=True)
    assert "Status check failed" in checked.text, checked.text
    refused = await said(harness, SIBLING, "hello")
    assert refused.startswith("I can't answer: the last status check failed"), refused
    assert not endpoint.requests
    bypass = await run(harness, "/connect bypass:on scope:server", SERVER_ADMIN)
    assert "Bypass is on, so chat goes through." in bypass.text, bypass.text
    failed = status_line(await run(harness, "/settings", MEMBER, REF))
    assert failed.startswith("Status: failed (checked server-wide) — "), failed
    assert await said(harness, SIBLING, "hello") == "Hi!"
    for ref in (REF, SIBLING):
        shown = await run(harness, "/settings", MEMBER, ref)
        assert status_line(shown) == "Status: OK (checked server-wide)", shown.text


async def test_a_passing_failure_of_the_servers_check_is_checked_again_by_any_channel(
    harness: Harness, endpoint: FakeOpenAI
) -> None:
    """A failure that may pass (the endpoint overloaded) blocks a minute at most: the next
    message in any channel that uses the server's endpoint checks it again, for all."""
    endpoint.script.models_status = 503
    checked = await _server_endpoint(harness, endpoint, v1=True)
    assert "Status check failed" in checked.text, checked.text
    refused = await said(harness, SIBLING, "hello")
    assert "I'll check again on the next message" in refused, refused
    # An hour later (the bot started again: nothing of the rows remembered).
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    async with harness.store.engine.begin() as conn:
        await conn.execute(update(ChannelConfigRow).values(status_checked_at=long_ago))
    core = await make_core(harness.url)
    later = Harness(core, core.store, harness.url)
    try:
        endpoint.script.models_status = 200
        asked = endpoint.models_asked
        assert await said(later, SIBLING, "hello again") == "Hi!"
        assert endpoint.models_asked == asked + 1
        shown = await run(later, "/settings", MEMBER, REF)
        assert status_line(shown) == "Status: OK (checked server-wide)", shown.text
    finally:
        await later.core.close()
