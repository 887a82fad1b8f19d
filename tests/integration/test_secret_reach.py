"""Where an inherited secret may go: only to an endpoint URL set as widely as the secret.

An operator's DEFAULT_CUSTOM_API_KEY went to any URL an admin of one channel (anyone, in
a direct message with the bot) set with /proxy set: a server of theirs received it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core import Core
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.types import Actor, ChannelConfig, ChannelRef, Incoming, Platform, SecretValue, Source
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai

REF = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")
OTHER = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
ADMIN = Actor("u-admin", "Ada", is_channel_admin=True)
OWNER = Actor("u-owner", "Olga", is_channel_admin=True, is_server_admin=True)
OPERATOR_KEY = "operator-custom-secret-77aa88bb99"


class Sink:
    final = ""

    async def typing(self) -> None:
        return None

    async def update(self, answer: str, reasoning: str = "") -> None:
        return None

    async def finish(self, answer: str, reasoning: str = "", error: str | None = None) -> None:
        self.final = answer + (f"\n{error}" if error else "")


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    async with (
        fake_openai(Script(chunks=["ok"])) as ours,
        fake_openai(Script(chunks=["ok"])) as theirs,
    ):
        yield ours, theirs


@pytest.fixture
async def core(tmp_path: Path, servers: tuple[FakeOpenAI, FakeOpenAI]) -> AsyncIterator[Core]:
    url = f"sqlite+aiosqlite:///{tmp_path}/reach.db"
    await upgrade_to_head(url)
    defaults = ChannelConfig.of(source=Source.CUSTOM, model="m-small", proxy_url=servers[0].url_v1)
    store = await Store.open(
        url,
        SecretBox.from_setting(generate_key()),
        defaults=defaults,
        default_secrets={
            "custom_api_key": SecretValue(OPERATOR_KEY),
            "openai_api_key": SecretValue("sk-operator-openai-0123456789"),
        },
    )
    hub = ProviderHub(ProviderSettings(allow_private_endpoints=True, max_retries=0))
    core = Core(store, hub)
    try:
        yield core
    finally:
        await core.close()


async def say(core: Core, text: str, ref: ChannelRef = REF) -> str:
    sink = Sink()
    await core.chat(Incoming(ref, ADMIN, text), sink)
    return sink.final


async def command(core: Core, text: str, actor: Actor = ADMIN, ref: ChannelRef = REF) -> str:
    return (await core.run_text_command(Incoming(ref, actor, text))).text


async def settings_line(core: Core, start: str) -> str:
    """The one line of /settings that starts so."""
    [line] = [ln for ln in (await command(core, "/settings")).splitlines() if ln.startswith(start)]
    return line


async def test_the_operators_key_goes_only_to_the_operators_url(
    core: Core, servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    ours, theirs = servers
    assert await say(core, "hi") == "ok"
    assert ours.authorizations[-1] == f"Bearer {OPERATOR_KEY}"

    # A channel admin points the channel at a server of theirs: the status check and
    # every turn reach it without the operator's key, and /settings says why.
    set_url = await command(core, f"/proxy set {theirs.url_v1}")
    assert "Endpoint set" in set_url and OPERATOR_KEY not in set_url
    await say(core, "hi again")
    assert theirs.authorizations and all(a == "" for a in theirs.authorizations)
    settings = await command(core, "/settings")
    assert "not sent to an endpoint URL set for this channel" in settings
    assert "/key set custom" in settings

    # Their own key goes to their own URL.
    await command(core, "/key set custom their-own-key-123456")
    await say(core, "and now")
    assert theirs.authorizations[-1] == "Bearer their-own-key-123456"

    # Another channel still uses the operator's URL and key.
    assert await say(core, "hi", OTHER) == "ok"
    assert ours.authorizations[-1] == f"Bearer {OPERATOR_KEY}"


async def test_the_operators_extra_headers_go_only_to_the_operators_url(
    tmp_path: Path, servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    """CUSTOM_EXTRA_HEADERS (often a gateway's key) went to any URL a channel set, and an
    answer or error quoting them was shown as it was."""
    ours, theirs = servers
    gateway = "gateway-secret-5566778899"
    ours.script.chunks = [f"you sent {gateway} ok"]
    url = f"sqlite+aiosqlite:///{tmp_path}/headers.db"
    await upgrade_to_head(url)
    store = await Store.open(
        url,
        SecretBox.from_setting(generate_key()),
        defaults=ChannelConfig.of(source=Source.CUSTOM, model="m-small", proxy_url=ours.url_v1),
    )
    headers = {"X-Api-Key": gateway, "X-Team": "bots"}
    settings = ProviderSettings(
        allow_private_endpoints=True, max_retries=0, custom_extra_headers=headers
    )
    core = Core(store, ProviderHub(settings))
    try:
        answer = await say(core, "hi")
        assert ours.headers[-1]["x-api-key"] == gateway and ours.headers[-1]["x-team"] == "bots"
        assert gateway not in answer and "you sent" in answer  # redacted as a key is
        await command(core, f"/proxy set {theirs.url_v1}")
        await say(core, "hi again")
        assert theirs.headers  # the status check and the turn
        assert all("x-api-key" not in h and "x-team" not in h for h in theirs.headers)
    finally:
        await core.close()


async def test_a_servers_key_goes_to_the_servers_url_not_a_channels(
    core: Core, servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    ours, theirs = servers
    await command(core, f"/proxy set {ours.url_v1} scope:server", OWNER)
    await command(core, "/key set custom server-key-abcdef123 scope:server", OWNER)
    await say(core, "hi")
    assert ours.authorizations[-1] == "Bearer server-key-abcdef123"
    await command(core, f"/proxy set {theirs.url_v1}")  # a channel admin, this channel
    await say(core, "hi")
    assert theirs.authorizations and theirs.authorizations[-1] == ""
    await command(core, "/proxy password pw-of-this-channel-1")  # set here: sent here
    await say(core, "hi")
    assert theirs.authorizations[-1] == "Bearer pw-of-this-channel-1"


async def test_settings_says_not_sent_only_of_a_secret_that_would_go_to_the_url(
    core: Core, servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    """Behind a proxy OpenAI's key is never sent (its proxy password is): advice to set
    one for the proxy would change nothing; that it is not sent is said."""
    await command(core, "/source openai")
    await command(core, f"/proxy set {servers[1].url_v1}")
    key_line = await settings_line(core, "API key:")
    assert "operator" in key_line and "the openai key is never sent to a proxy URL" in key_line
    assert "set one for it" not in key_line


async def test_settings_says_a_custom_key_is_not_sent_while_a_proxy_password_is(
    core: Core, servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    ours, _ = servers
    await command(core, f"/proxy set {ours.url_v1}")
    await command(core, "/key set custom custom-key-abcdef123")
    await command(core, "/proxy password pw-of-this-channel-1")
    await say(core, "hi")
    assert ours.authorizations[-1] == "Bearer pw-of-this-channel-1"
    key_line = await settings_line(core, "API key:")
    assert key_line.endswith("not sent: the proxy password is sent instead"), key_line


async def test_a_custom_key_saved_behind_a_proxy_password_says_it_is_not_sent(
    core: Core, servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    """Matrix probe: "Saved the custom key … Status check: OK" while the proxy password
    went in its place; only /settings said so."""
    ours, _ = servers
    await command(core, f"/proxy set {ours.url_v1}")
    await command(core, "/proxy password pw-of-this-channel-1")
    said = await command(core, "/key set custom custom-key-abcdef123")
    assert (
        "Saved the custom key for this channel (ends …f123). It is kept, not sent: the proxy "
        "password is sent instead."
    ) in said, said


async def test_settings_does_not_say_so_when_the_proxy_password_is_withheld(
    core: Core, servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    """A server's password is kept from a channel's own URL: the custom key goes there."""
    ours, theirs = servers
    await command(core, f"/proxy set {ours.url_v1} scope:server", OWNER)
    await command(core, "/proxy password pw-of-the-server-1 scope:server", OWNER)
    await command(core, f"/proxy set {theirs.url_v1}")
    await command(core, "/key set custom custom-key-abcdef123")
    await say(core, "hi")
    assert theirs.authorizations[-1] == "Bearer custom-key-abcdef123"
    key_line = await settings_line(core, "API key:")
    assert "the proxy password is sent instead" not in key_line, key_line


ROOM = ChannelRef(Platform.MATRIX, channel_id="!group:hs")
ROOM_STEP = "!proxy password <password> room:!group:hs (in a direct chat with me)"


async def test_a_matrix_rooms_password_hints_name_the_room(tmp_path: Path) -> None:
    """A group room takes no password (only a direct chat naming it with room:): the
    hints to set one said `!proxy password`, refused there, or from a direct chat set
    the direct chat's own."""
    async with (
        fake_openai(Script(chunks=["ok"])) as ours,
        fake_openai(Script(chunks=["ok"], models_status=401)) as locked,
    ):
        url = f"sqlite+aiosqlite:///{tmp_path}/hints.db"
        await upgrade_to_head(url)
        store = await Store.open(
            url,
            SecretBox.from_setting(generate_key()),
            defaults=ChannelConfig.of(source=Source.CUSTOM, model="m", proxy_url=ours.url_v1),
            default_secrets={"proxy_password": SecretValue("operator-proxy-pw-123")},
        )
        core = Core(store, ProviderHub(ProviderSettings(allow_private_endpoints=True)))
        try:
            # The endpoint refuses a check that sent no password: the step names the room.
            refused = await command(core, f"!proxy set {locked.url_v1}", ref=ROOM)
            step = f"Set a proxy password for it with {ROOM_STEP}, or a key with"
            assert step in refused
            # Listing the models there says the same step (it said "Set a key or a proxy
            # password for it." with no command).
            listed = await command(core, "!models external", ref=ROOM)
            assert "Listing failed" in listed and step in listed, listed
            # The operator's password is kept from the room's own URL: the same step.
            line = [
                ln
                for ln in (await command(core, "!settings", ref=ROOM)).splitlines()
                if "not sent to an endpoint URL set" in ln
            ]
            assert line and line[0].endswith(f"set one for it with {ROOM_STEP}"), line
        finally:
            await core.close()
