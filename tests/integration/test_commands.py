"""Every command × (admin, non-admin) × (good, bad input) → the reply and the stored state.

The store is real (SQLite), the provider hub is real, and endpoints are the real LiteLLM
proxy started on loopback by the suite.
"""

from __future__ import annotations

import pytest

from bot.commands import TABLE
from bot.commands.spec import Invocation, walk
from bot.store import api_key_name
from bot.types import (
    Actor,
    ChannelRef,
    Incoming,
    ModelInfo,
    Platform,
    Reply,
    Scope,
    SecretValue,
    Source,
)
from tests.integration.conftest import ADMIN, MEMBER, OPERATOR, REF, SERVER_ADMIN, Harness
from tests.peers.litellm import LiteLLMPeer
from tests.peers.llamacpp import LlamaCppPeer

# A valid invocation of every leaf command (network-free where possible).
GOOD: dict[tuple[str, ...], dict[str, object]] = {
    ("source",): {"source": "claude"},
    ("key", "set"): {"source": "openai", "key": SecretValue("sk-test-1234567890abcd")},
    ("key", "clear"): {"source": "openai"},
    ("proxy", "set"): {"url": "https://proxy.example.invalid/v1"},
    ("proxy", "password"): {"password": SecretValue("tabby-pass-0001")},
    ("proxy", "clear"): {},
    ("proxy", "show"): {},
    ("connect",): {"bypass": "on"},
    ("models", "list"): {},
    ("models", "external"): {"state": "off"},
    ("model",): {"id": "gpt-4o"},
    ("settings",): {},
    ("system",): {"prompt": "Be brief."},
    ("prompts",): {"name": "post_history", "text": "Stay in character."},
    ("params",): {"name": "temperature", "value": "0.5"},
    ("reply", "mode"): {"mode": "always"},
    ("regenerate",): {},
    ("continue",): {},
    ("retry",): {},
    ("swipe",): {"direction": "next"},
    ("stop",): {},
    ("reset",): {},
    ("help",): {},
    ("usage",): {"scope": "server", "period": "month"},
    ("limits",): {},
    ("access",): {"action": "allow", "kind": "user", "id": "123"},
    ("character", "import"): {},
    ("character", "show"): {},
    ("character", "clear"): {},
    ("character", "none"): {},
    ("character", "export"): {"format": "json"},
    ("preset", "import"): {},
    ("preset", "export"): {},
}


async def snapshot(h: Harness, ref: ChannelRef = REF) -> tuple[object, ...]:
    """Everything a command could change, to prove that a refused one changed nothing."""
    names = [api_key_name(s) for s in Source] + ["proxy_password"]
    return (
        await h.store.scope_values(ref, Scope.CHANNEL),
        await h.store.scope_values(ref, Scope.SERVER),
        [await h.store.secret_origin(ref, n) for n in names],
        len(await h.store.audit_entries(ref, 1000)),
        len(await h.store.history(ref, 1000)),
    )


async def run(h: Harness, text: str, actor: Actor = ADMIN, ref: ChannelRef = REF) -> Reply:
    return await h.core.run_text_command(Incoming(ref, actor, text))


def test_table_covers_every_command() -> None:
    assert {path for path, _ in walk(TABLE)} == set(GOOD)


@pytest.mark.parametrize("path", [p for p, c in walk(TABLE) if c.admin], ids=" ".join)
async def test_non_admin_is_refused_and_nothing_changes(
    harness: Harness, path: tuple[str, ...]
) -> None:
    before = await snapshot(harness)
    reply = await harness.core.run_command(REF, MEMBER, Invocation(path, dict(GOOD[path])))
    assert not reply.ok
    assert reply.private
    assert "Only admins" in reply.text
    assert await snapshot(harness) == before


@pytest.mark.parametrize("path", [p for p, c in walk(TABLE) if not c.admin], ids=" ".join)
async def test_everyone_commands_work_for_members(harness: Harness, path: tuple[str, ...]) -> None:
    before = await snapshot(harness)
    reply = await harness.core.run_command(REF, MEMBER, Invocation(path, dict(GOOD[path])))
    assert reply.ok, reply.text
    assert await snapshot(harness) == before


async def test_operator_admin_is_always_allowed(harness: Harness) -> None:
    reply = await run(harness, "/system Operator says hi", OPERATOR)
    assert reply.ok, reply.text
    assert (await harness.store.effective_config(REF)).system_prompt == "Operator says hi"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("/source gemini", "not a valid source"),
        ("/model", "Missing `id`"),
        ("/params temperature 3", "from 0 to 2"),
        ("/params max_tokens lots", "whole number"),
        ("/params stop " + ",".join("abcdefghijklmnopq"), "up to 16"),
        ("/params reasoning maybe", "on or off"),
        ("/reply mode sometimes", "not a valid mode"),
        ("/proxy set ftp://host/v1", "Only http:// and https://"),
        # As LM Studio shows it: said what to put in front, not only what is allowed.
        ("/proxy set localhost:1234", "`localhost:1234` needs http:// or https:// in front"),
        ("/proxy set http://user:pw@host.example/v1", "must not contain a user name"),
        ("/proxy set http://169.254.169.254/latest", "never contacts"),
        ("/proxy set http://10.0.0.5/v1", "private-network"),
        ("/key clear openai", "No openai key was stored"),
        ("/key set openai scope:server", "Only server admins"),
        ("/connect bypass:perhaps", "on or off"),
        ("/frobnicate", "Unknown command"),
        ("/help klingon", "neither a source nor a command"),
    ],
)
async def test_bad_input_gets_a_clear_message_and_changes_nothing(
    harness: Harness, text: str, fragment: str
) -> None:
    if "10.0.0.5" in text:
        # The harness allows loopback for the peers; this case needs the default policy.
        from tests.integration.conftest import make_core

        core = await make_core(harness.url, allow_private=False)
        try:
            reply = await core.run_text_command(Incoming(REF, ADMIN, text))
        finally:
            await core.close()
    else:
        before = await snapshot(harness)
        reply = await run(harness, text)
        assert await snapshot(harness) == before
    assert not reply.ok
    assert fragment in reply.text, reply.text
    assert "Traceback" not in reply.text


async def test_source_names_the_proxy_it_goes_through_and_where_to_clear_it(
    harness: Harness,
) -> None:
    """A channel's `/proxy clear` removes neither a server's URL nor the operator's: the
    reply said so for any of them."""
    url = "http://127.0.0.1:9/v1"
    await harness.store.update_config(
        REF, Scope.SERVER, SERVER_ADMIN, {"proxy_url": url}, action="proxy"
    )
    reply = await run(harness, "/source openai")
    assert (
        f"Source set to openai, through the proxy at {url} (the server's; /proxy clear "
        "scope:server to reach openai itself)." in reply.text
    ), reply.text
    await harness.store.update_config(REF, Scope.CHANNEL, ADMIN, {"proxy_url": url}, action="proxy")
    reply = await run(harness, "/source mistral")
    assert f"through the proxy at {url} (/proxy clear to reach mistral itself)." in reply.text


async def test_source_without_key_says_what_to_do(harness: Harness) -> None:
    reply = await run(harness, "/source claude")
    assert "Source set to claude" in reply.text
    assert "No API key for claude" in reply.text and "/key set claude" in reply.text
    assert "Next: No API key" in reply.text and "failed" not in reply.text  # a step, no fault
    # The step named comes first: not "pick a model", then "next: a key".
    assert "Pick a model" not in reply.text, reply.text
    custom = await run(harness, "/source custom")
    assert custom.text.startswith("Source set to custom.\nNext: The custom source needs an")
    config = await harness.store.effective_config(REF)
    assert config.source is Source.CUSTOM
    assert config.status is not None and not config.status.ok
    audit = await harness.store.audit_entries(REF)
    assert any(e.action == "source" for e in audit)


async def test_setup_steps_are_the_admins_own_and_an_admins_to_members(
    harness: Harness,
) -> None:
    """The admin doing the setup read "an admin runs /proxy set", "an admin picks one with
    /model": the steps are theirs; a member is told an admin takes them."""
    custom = await run(harness, "/source custom")
    assert "Next: The custom source needs an endpoint URL: run /proxy set <url>" in custom.text
    claude = await run(harness, "/source claude")
    assert "Next: No API key for claude. Set one with /key set claude" in claude.text
    await run(harness, "/model claude-sonnet-4-5")
    from tests.integration.test_chat import CollectingSink

    said_by, said = (ADMIN, MEMBER), {}
    for who in said_by:
        sink = CollectingSink()
        await harness.core.chat(Incoming(REF, who, "hi"), sink)
        said[who.display_name] = sink.final
    assert "Set one with /key set claude" in said["Ada"], said
    assert "An admin sets one with /key set claude" in said["Bob"], said
    # Matrix takes keys only in a direct chat: the step names the room, not a key here.
    room = ChannelRef(Platform.MATRIX, channel_id="!group:hs")
    await harness.store.update_config(
        room, Scope.CHANNEL, ADMIN, {"source": "claude", "model": "m"}, action="test"
    )
    sink = CollectingSink()
    await harness.core.chat(Incoming(room, ADMIN, "hi"), sink)
    assert "Set one with !key set claude <key> room:!group:hs (in a direct chat with me)" in str(
        sink.final
    ), sink.final
    changes = {"source": "custom", "proxy_url": "http://127.0.0.1:9/v1", "model": None}
    await harness.store.update_config(REF, Scope.CHANNEL, ADMIN, changes, action="test")
    for who in said_by:
        sink = CollectingSink()
        await harness.core.chat(Incoming(REF, who, "hi"), sink)
        said[who.display_name] = sink.final
    assert "No model is selected for this channel. Pick one with /model <id>" in said["Ada"]
    assert "An admin picks one with /model <id>" in said["Bob"], said
    shown = {w.display_name: (await run(harness, "/character show", w)).text for w in said_by}
    assert shown["Ada"].startswith("No character here. Set one with /character import"), shown
    assert shown["Bob"].startswith("No character here. An admin sets one"), shown


async def test_key_set_and_clear_channel_and_server(harness: Harness) -> None:
    key = "sk-test-abcdefgh12345678"
    reply = await harness.core.run_command(
        REF, ADMIN, Invocation(("key", "set"), {"source": "mistral", "key": SecretValue(key)})
    )
    assert reply.ok and reply.private
    assert key not in reply.text and "…5678" in reply.text
    assert await harness.store.secret_origin(REF, "mistral_api_key") == ("channel", "5678")

    refused = await harness.core.run_command(
        REF,
        ADMIN,
        Invocation(
            ("key", "set"), {"source": "claude", "key": SecretValue(key), "scope": "server"}
        ),
    )
    assert not refused.ok and "server admins" in refused.text
    assert await harness.store.secret_origin(REF, "claude_api_key") is None

    ok = await harness.core.run_command(
        REF,
        SERVER_ADMIN,
        Invocation(
            ("key", "set"), {"source": "claude", "key": SecretValue(key), "scope": "server"}
        ),
    )
    assert ok.ok, ok.text
    other_channel = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
    assert await harness.store.secret_origin(other_channel, "claude_api_key") == ("server", "5678")

    cleared = await run(harness, "/key clear mistral")
    assert cleared.ok
    assert await harness.store.secret_origin(REF, "mistral_api_key") is None
    for entry in await harness.store.audit_entries(REF, 100):
        assert key not in entry.detail


async def test_settings_shows_keys_only_as_set_with_last_four(harness: Harness) -> None:
    await harness.core.run_command(
        REF,
        ADMIN,
        Invocation(("key", "set"), {"source": "openai", "key": SecretValue("sk-verysecret9876")}),
    )
    reply = await run(harness, "/settings", MEMBER)
    assert "API key: set (…9876, channel)" in reply.text
    assert "verysecret" not in reply.text
    assert reply.private
    # Behind a reverse proxy the source's own key is never sent: /settings says so.
    assert (await run(harness, "/proxy set http://127.0.0.1:9/v1")).ok
    shown = (await run(harness, "/settings", MEMBER)).text
    assert (
        "API key: set (…9876, channel), not sent: the openai key is never sent to a proxy URL"
        in shown
    )


async def test_system_params_reply_mode_round_trip(harness: Harness) -> None:
    assert (await run(harness, "/system You are Bob.")).ok
    assert "You are Bob." in (await run(harness, "/system")).text
    assert (await run(harness, "/params temperature 0.7")).ok
    assert (await run(harness, "/params stop END, ###")).ok
    assert (await run(harness, "/params reasoning on")).ok
    assert (await run(harness, "/reply mode always")).ok
    config = await harness.store.effective_config(REF)
    assert config.system_prompt == "You are Bob."
    assert config.value("temperature") == 0.7
    assert config.value("stop") == ("END", "###")
    assert config.show_reasoning
    assert config.reply_mode.value == "always"
    assert await harness.core.should_answer(REF, addressed=False)
    assert (await run(harness, "/params temperature default")).ok
    assert (await run(harness, "/system none")).ok
    config = await harness.store.effective_config(REF)
    assert config.value("temperature") is None and config.system_prompt is None


async def test_help_is_generated_from_the_table(harness: Harness) -> None:
    text = (await run(harness, "/help", MEMBER)).text
    for path, _ in walk(TABLE):
        assert "/" + " ".join(path) in text
    for source in Source:
        assert f"{source.value}:" in text
    matrix = (await run(harness, "!help custom", MEMBER, REF_MATRIX)).text
    assert "!proxy set" in matrix
    # Right in a group room and in a room of just the asker and the bot (a direct chat,
    # where keys are taken): it said "not here" there too.
    assert "room:!room:example.org  (sent in a direct chat with the bot: a room with just you" in (
        matrix
    )
    assert "not here" not in matrix


REF_MATRIX = ChannelRef(Platform.MATRIX, channel_id="!room:example.org")


@pytest.mark.litellm
async def test_custom_endpoint_setup_against_litellm(
    harness: Harness, litellm_peer: LiteLLMPeer
) -> None:
    assert (await run(harness, "/source custom")).ok
    reply = await harness.core.run_command(
        REF,
        ADMIN,
        Invocation(
            ("proxy", "set"),
            {"url": litellm_peer.url, "password": SecretValue(litellm_peer.master_key)},
        ),
    )
    assert "Status check: OK" in reply.text, reply.text
    config = await harness.store.effective_config(REF)
    assert config.proxy_url == litellm_peer.url
    # LiteLLM answers both /models and /v1/models: no correction needed.
    assert config.resolved_url == litellm_peer.url
    assert config.status is not None and config.status.ok

    show = await run(harness, "/proxy show")
    assert litellm_peer.url in show.text and "Password: set" in show.text
    assert litellm_peer.master_key not in show.text
    # A member sees what /settings shows them: the URL, and the password only as set.
    seen = await run(harness, "/proxy show", MEMBER)
    assert seen.ok and seen.text == show.text
    assert litellm_peer.url in (await run(harness, "/settings", MEMBER)).text

    external = await run(harness, "/models external")
    assert external.ok and litellm_peer.model in external.text
    cached = await harness.store.cached_models(REF, await harness.store.effective_config(REF))
    assert cached is not None and litellm_peer.model in [m.id for m in cached]
    assert (await harness.store.effective_config(REF)).show_external_models

    offered = await harness.core.autocomplete(REF, ADMIN, ("model",), "id", "mock")
    assert litellm_peer.model in offered
    assert (await run(harness, f"/model {litellm_peer.model}")).text.startswith("Model set")
    warned = await run(harness, "/model not-listed-anywhere")
    assert warned.ok and "Warning" in warned.text


@pytest.mark.llamacpp
async def test_url_without_v1_is_corrected_and_shown(
    harness: Harness, llamacpp_peer: LlamaCppPeer
) -> None:
    await run(harness, "/source custom")
    reply = await run(harness, f"/proxy set {llamacpp_peer.url}")
    assert "Status check: OK" in reply.text and "added /v1" in reply.text, reply.text
    config = await harness.store.effective_config(REF)
    assert config.proxy_url == llamacpp_peer.url
    assert config.resolved_url == llamacpp_peer.url_v1
    show = await run(harness, "/proxy show")
    assert f"In use: {llamacpp_peer.url_v1}" in show.text
    assert (await run(harness, "/models external")).ok
    assert (await run(harness, f"/model {llamacpp_peer.model}")).text.startswith("Model set")


@pytest.mark.litellm
async def test_wrong_proxy_password_fails_the_check_and_blocks_chat_until_bypass(
    harness: Harness, litellm_peer: LiteLLMPeer
) -> None:
    await run(harness, "/source custom")
    await harness.core.run_command(
        REF,
        ADMIN,
        Invocation(
            ("proxy", "set"),
            {"url": litellm_peer.url_v1, "password": SecretValue("nope-wrong-key")},
        ),
    )
    await run(harness, f"/model {litellm_peer.model}")
    check = await run(harness, "/connect")
    assert not check.ok and "Status check failed" in check.text
    assert "nope-wrong-key" not in check.text

    from tests.integration.test_chat import CollectingSink

    sink = CollectingSink()
    result = await harness.core.chat(Incoming(REF, MEMBER, "hello?"), sink)
    assert not result.called_provider
    assert "status check failed" in sink.final and "/connect bypass:on" in sink.final
    assert await harness.store.history(REF, 10) == []

    bypass = await run(harness, "/connect bypass:on")
    assert "Bypass is on" in bypass.text
    sink = CollectingSink()
    result = await harness.core.chat(Incoming(REF, MEMBER, "hello?"), sink)
    assert result.called_provider
    assert result.error is not None  # the endpoint still refuses the key


async def test_a_check_with_bypass_on_says_so_after_any_command(harness: Harness) -> None:
    """With bypass on, a /proxy set (or /source, /proxy password) whose check failed told
    the admin to run `/connect bypass:on to chat anyway`, which was on already; only
    /connect itself said "Bypass is on"."""
    assert (await run(harness, "/source custom")).ok
    assert "Bypass API status check: on." in (await run(harness, "/connect bypass:on")).text
    for typed in ("/proxy set http://127.0.0.1:9/v1", "/source openai", "/connect"):
        said = (await run(harness, typed)).text
        assert "Status check failed" in said, (typed, said)
        assert "Bypass is on, so chat goes through." in said, (typed, said)
        assert "bypass:on to chat anyway" not in said, (typed, said)


async def test_proxy_clear_removes_url_password_and_stale_status(harness: Harness) -> None:
    await run(harness, "/source custom")
    reply = await harness.core.run_command(
        REF,
        ADMIN,
        Invocation(
            ("proxy", "set"),
            {"url": "http://127.0.0.1:9/v1", "password": SecretValue("pw-to-forget-1234")},
        ),
    )
    assert "Status check failed" in reply.text  # nothing listens on port 9
    assert (await harness.store.effective_config(REF)).status is not None
    cleared = await run(harness, "/proxy clear")
    assert cleared.ok
    config = await harness.store.effective_config(REF)
    assert config.proxy_url is None and config.resolved_url is None and config.status is None
    assert await harness.store.secret_origin(REF, "proxy_password") is None
    assert "No proxy URL is set" in (await run(harness, "/proxy show")).text


async def test_new_proxy_url_without_password_drops_the_old_password(harness: Harness) -> None:
    await harness.core.run_command(
        REF,
        ADMIN,
        Invocation(
            ("proxy", "set"),
            {"url": "http://127.0.0.1:9/v1", "password": SecretValue("pw-old-host-5678")},
        ),
    )
    reply = await run(harness, "/proxy set http://127.0.0.1:10/v1")
    assert (
        "The proxy password set for http://127.0.0.1:9/v1 was removed: a key or password goes "
        "only to the server it was set for." in reply.text
    ), reply.text
    assert await harness.store.secret_origin(REF, "proxy_password") is None


async def test_the_custom_key_stays_with_the_server_it_was_set_for(harness: Harness) -> None:
    """The custom key goes to the endpoint URL, as the proxy password does: whoever may
    set the URL must not have a key another admin set sent to a server of theirs."""
    await run(harness, "/source custom")
    await run(harness, "/key set custom sk-custom-first-order-1111")  # before any URL
    first = await run(harness, "/proxy set http://127.0.0.1:9")
    assert "removed" not in first.text, first.text
    again = await run(harness, "/proxy set http://127.0.0.1:9/v1/chat/completions")
    assert "removed" not in again.text, again.text
    assert await harness.store.secret_origin(REF, "custom_api_key") is not None
    moved = await run(harness, "/proxy set http://127.0.0.1:10/v1")
    assert "The custom key set for http://127.0.0.1:9/v1 was removed" in moved.text, moved.text
    assert "If it needs a key, set it with /key set custom." in moved.text, moved.text
    assert await harness.store.secret_origin(REF, "custom_api_key") is None


async def test_a_custom_key_removed_under_another_source_asks_for_nothing(
    harness: Harness,
) -> None:
    """Review: the step to set the custom key again was said to a channel on OpenAI behind a
    reverse proxy, which sends no custom key."""
    await run(harness, "/source custom")
    await run(harness, "/proxy set http://127.0.0.1:9/v1")
    await run(harness, "/key set custom sk-custom-unused-3333")
    await run(harness, "/source openai")
    moved = await run(harness, "/proxy set http://127.0.0.1:10/v1")
    assert "The custom key set for http://127.0.0.1:9/v1 was removed" in moved.text, moved.text
    assert "If it needs a key" not in moved.text, moved.text


async def test_a_cleared_url_takes_its_secrets_with_it(harness: Harness) -> None:
    """`/proxy clear` then `/proxy set` elsewhere: no secret of the old server follows."""
    await run(harness, "/source custom")
    await harness.core.run_command(
        REF,
        ADMIN,
        Invocation(
            ("proxy", "set"),
            {"url": "http://127.0.0.1:9/v1", "password": SecretValue("pw-old-host-5678")},
        ),
    )
    await run(harness, "/key set custom sk-custom-old-host-2222")
    cleared = await run(harness, "/proxy clear")
    assert cleared.text == (
        "Removed the proxy URL and its proxy password and custom key for this channel."
    ), cleared.text
    await run(harness, "/proxy set http://127.0.0.1:10/v1")
    assert await harness.store.secret_origin(REF, "custom_api_key") is None
    assert await harness.store.secret_origin(REF, "proxy_password") is None
    assert (await run(harness, "/proxy clear")).text == "Removed the proxy URL for this channel."


async def test_a_removed_custom_key_is_set_again_from_a_direct_chat_on_matrix(
    harness: Harness,
) -> None:
    """Review: `!proxy set` to another server in a Matrix group room said "set it with
    !key set custom", which pasted there shows the key to the room; Matrix takes keys
    only in a direct chat, naming the room (as every other key step says)."""
    room = ChannelRef(Platform.MATRIX, channel_id="!group:hs")
    await run(harness, "!source custom", ref=room)
    await run(harness, "!proxy set http://127.0.0.1:9/v1", ref=room)
    await harness.store.set_secret(
        room, Scope.CHANNEL, "custom_api_key", SecretValue("sk-custom-group-4444"), ADMIN
    )
    moved = await run(harness, "!proxy set http://127.0.0.1:10/v1", ref=room)
    assert "The custom key set for http://127.0.0.1:9/v1 was removed" in moved.text, moved.text
    assert (
        "If it needs a key, set it with !key set custom <key> room:!group:hs (in a direct "
        "chat with me)." in moved.text
    ), moved.text


async def test_the_server_key_is_judged_by_the_server_url_not_the_channel_one(
    harness: Harness,
) -> None:
    """`/proxy set … scope:server` from a channel with a URL of its own: the server's
    custom key goes with the server's URL, so that URL is what a move is judged by. The
    same server URL again keeps it; the channel's own server does not let it follow."""
    await run(harness, "/source custom scope:server", SERVER_ADMIN)
    await run(harness, "/proxy set http://127.0.0.1:9/v1 scope:server", SERVER_ADMIN)
    await run(harness, "/key set custom sk-custom-server-wide-3333 scope:server", SERVER_ADMIN)
    await run(harness, "/proxy set http://127.0.0.1:10/v1")  # this channel's own
    same = await run(harness, "/proxy set http://127.0.0.1:9 scope:server", SERVER_ADMIN)
    assert "removed" not in same.text, same.text
    assert await harness.store.secret_origin(REF, "custom_api_key") is not None
    moved = await run(harness, "/proxy set http://127.0.0.1:10/v1 scope:server", SERVER_ADMIN)
    assert "The custom key set for http://127.0.0.1:9 was removed" in moved.text, moved.text
    assert await harness.store.secret_origin(REF, "custom_api_key") is None


async def test_a_server_url_moved_takes_the_keys_its_channels_set_for_it(
    harness: Harness,
) -> None:
    """Review: a channel's own custom key, used with the server's URL, followed that URL
    when a server admin moved it (`/proxy set http://theirs/v1 scope:server`): a channel
    admin's key sent to a server of the server admin's choice. A channel with a URL of
    its own keeps its key, and the same server again keeps every one."""
    own = ChannelRef(Platform.DISCORD, channel_id="c2", server_id="g1")
    await run(harness, "/source custom scope:server", SERVER_ADMIN)
    await run(harness, "/proxy set http://127.0.0.1:9/v1 scope:server", SERVER_ADMIN)
    await run(harness, "/key set custom sk-custom-of-channel-one-4444")  # for the server's URL
    await run(harness, "/proxy set http://127.0.0.1:11/v1", ADMIN, own)
    await run(harness, "/key set custom sk-custom-of-channel-two-5555", ADMIN, own)
    same = await run(harness, "/proxy set http://127.0.0.1:9 scope:server", SERVER_ADMIN)
    assert "removed" not in same.text, same.text
    moved = await run(harness, "/proxy set http://127.0.0.1:10/v1 scope:server", SERVER_ADMIN)
    assert "The channels that use the server's URL had their own proxy password or custom key" in (
        moved.text
    ), moved.text
    assert await harness.store.secret_origin(REF, "custom_api_key") is None
    assert (await harness.store.secret_origin(own, "custom_api_key") or ("",))[0] == "channel"
    said = [(e.scope, e.action, e.detail) for e in await harness.store.audit_entries(REF, 5)]
    assert (Scope.CHANNEL, "secret.clear", "custom_api_key cleared") in said, said


async def test_a_short_key_is_saved_without_showing_any_of_it(harness: Harness) -> None:
    """A key under 16 characters shows no tail: not 4 of its characters, nor a "…****"
    that reads like one."""
    reply = await run(harness, "/key set openai sk-short-99")
    assert reply.text.startswith("Saved the openai key for this channel."), reply.text
    assert "99" not in reply.text and "ends" not in reply.text


async def test_bypass_does_not_promise_chat_where_nothing_can_be_reached(harness: Harness) -> None:
    """Bypass skips a failed check; it cannot stand in for a missing URL."""
    await run(harness, "/source custom")
    reply = await run(harness, "/connect bypass:on")
    assert not reply.ok
    assert "Next: The custom source needs an endpoint URL" in reply.text, reply.text
    assert "chat goes through" not in reply.text


async def test_console_help_says_who_you_are(harness: Harness) -> None:
    """`chatbot console --user 123`: /help ended "you are not an admin: it is the
    operator's own terminal", which reads as a contradiction."""
    console = ChannelRef(Platform.CONSOLE, channel_id="main")
    operator = Actor("console", "you", is_channel_admin=True, is_server_admin=True)
    shown = await run(harness, "/help", operator, console)
    assert "you are an admin: it is the operator's own terminal" in shown.text
    member = await run(harness, "/help", Actor("123", "123"), console)
    assert "In this console you are user 123, not an admin." in member.text
    assert "operator's own terminal" not in member.text


async def test_max_tokens_that_leaves_no_room_for_the_conversation_is_said(
    harness: Harness,
) -> None:
    """`/params max_tokens 5000` against a context of 4096 said only "set": the model then
    read the newest message alone, and forgot the rest without a word."""
    quiet = await run(harness, "/params max_tokens 1000")
    assert quiet.ok and quiet.text == "max_tokens set to 1000."
    warned = await run(harness, "/params max_tokens 7000")
    assert warned.ok
    assert warned.text == (
        "max_tokens set to 7000. Note: max_tokens 7,000 leaves 1,192 of the 8,192-token "
        "context (assumed: /params name:context is unset) for the conversation, so the model "
        "reads little or none of what came before. Set /params name:context to the model's "
        "context size, or lower max_tokens."
    )
    fixed = await run(harness, "/params context 128000")
    assert fixed.ok and fixed.text == "context set to 128000."
    smaller = await run(harness, "/params context 4096")
    assert "leaves 0 of the 4,096-token context for the conversation" in smaller.text


async def test_a_long_model_list_can_be_narrowed(harness: Harness) -> None:
    """OpenRouter lists hundreds: past the first 60 there was no way to see the rest."""
    await run(harness, "/source custom")
    ids = [f"vendor-{i:03}/model" for i in range(100)] + ["meta-llama/llama-3.1-8b-instruct"]
    config = await harness.store.effective_config(REF)
    await harness.store.cache_models(REF, config, [ModelInfo(i) for i in ids])
    listed = (await run(harness, "/models list", MEMBER)).text
    assert "… and 41 more (/models list filter:<text> shows the ids containing it)" in listed
    narrowed = await run(harness, "/models list LLAMA", MEMBER)
    assert narrowed.ok and "meta-llama/llama-3.1-8b-instruct" in narrowed.text
    assert "vendor-" not in narrowed.text
    none = await run(harness, "/models list mixtral", MEMBER)
    assert none.text == "No custom model id here contains `mixtral`."


async def test_a_proxy_password_of_a_letter_is_refused_not_blanked_from_every_word(
    harness: Harness,
) -> None:
    """Probe: `/proxy set <url> a` was taken, and every answer and error the channel was
    shown lost the letter from inside every word (the channel's own secrets are cleaned
    whatever their length): "I have a cat" read "I h****ve **** c****t". The log's
    registry, for its part, leaves out secrets under 6 characters. Under 6 is refused."""
    url = "http://127.0.0.1:9/v1"
    for typed in (f"/proxy set {url} a", "/proxy password abcde", "/key set custom abc"):
        said = await harness.core.run_text_command(Incoming(REF, ADMIN, typed))
        assert not said.ok and "it takes at least 6" in said.text, (typed, said.text)
        assert "Nothing was saved (an endpoint that asks for none" in said.text, said.text
    assert await harness.store.scope_values(REF, Scope.CHANNEL) == {}
    assert await harness.store.secret_origin(REF, "proxy_password") is None
    taken = await harness.core.run_text_command(Incoming(REF, ADMIN, f"/proxy set {url} q7Zx9w"))
    assert taken.ok and "with a password" in taken.text, taken.text
