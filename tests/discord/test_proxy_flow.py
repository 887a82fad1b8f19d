"""The proxy and key forms on Discord: which commands answer at once, which open a modal,
and which are refused before any modal opens. simcord drives the real discord.py client;
the endpoint is the real llama.cpp server (no key, served only under /v1).
"""

from __future__ import annotations

from typing import Any

import discord
import pytest
import simcord

from bot.connection import PROXY_PASSWORD
from bot.core import Core
from bot.frontends.discord.client import ChatClient
from bot.store import api_key_name
from bot.types import Source
from tests.discord.conftest import World
from tests.discord.helpers import callback_types, config_of, ref_of, reply_text
from tests.peers.llamacpp import LlamaCppPeer

pytestmark = [pytest.mark.llamacpp, pytest.mark.simcord(settle_timeout=60)]

MODAL = 9  # interaction callback types: 4 message, 5 deferred message, 9 modal
PASSWORD = "pw-proxy-Hq7Lx2Vb9Nc4"
KEY = "sk-server-Wm3Pq8Rt5Yz1"


def _inputs(modal: dict[str, Any]) -> list[dict[str, Any]]:
    """The text inputs of a modal payload (action rows or labelled components)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == discord.ComponentType.text_input.value:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(modal.get("components", []))
    return found


def _labels(modal: dict[str, Any]) -> list[str]:
    """Every label shown in a modal, wherever the payload puts it."""
    labels: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("label"), str):
                labels.append(node["label"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(modal.get("components", []))
    return labels


async def test_proxy_set_without_a_password_answers_at_once_with_the_status_check(
    world: World, core: Core, llamacpp_peer: LlamaCppPeer
) -> None:
    env = world.env
    since = len(env.http_requests)
    result = await world.admin.slash(world.channel, "proxy set", url=llamacpp_peer.url)
    types = callback_types(env, since)
    assert MODAL not in types and result.modal is None, (types, result.modal)
    assert types == [5], types  # slow: deferred at once, then the follow-up
    assert result.ephemeral
    text = reply_text(result)
    assert f"Endpoint set to {llamacpp_peer.url}." in text, text
    assert "Status check: OK" in text, text
    assert f"Using {llamacpp_peer.url_v1} (added /v1 for you)." in text, text

    config = await config_of(core, world.channel, world.guild)
    assert config.proxy_url == llamacpp_peer.url
    assert config.resolved_url == llamacpp_peer.url_v1
    assert config.status is not None and config.status.ok
    ref = ref_of(world.channel, world.guild)
    assert await core.store.resolve_secret(ref, PROXY_PASSWORD) is None


async def test_proxy_password_opens_a_modal_naming_the_proxy_password(
    world: World, core: Core, llamacpp_peer: LlamaCppPeer
) -> None:
    env = world.env
    await world.admin.slash(world.channel, "proxy set", url=llamacpp_peer.url)

    since = len(env.http_requests)
    shown = await world.admin.slash(world.channel, "proxy password")
    assert callback_types(env, since) == [MODAL]
    assert shown.modal is not None
    inputs = _inputs(shown.modal)
    assert [i.get("custom_id") for i in inputs] == ["secret:password"], shown.modal
    labels = _labels(shown.modal)
    assert any("proxy password" in label.lower() for label in labels), labels
    assert not any("api key" in label.lower() for label in labels), labels

    since = len(env.http_requests)
    done = await world.admin.submit_modal(shown, {"secret:password": PASSWORD})
    assert callback_types(env, since) == [5] and done.ephemeral
    text = reply_text(done)
    assert f"Saved the proxy password (ends …{PASSWORD[-4:]})." in text, text
    assert "Status check: OK" in text, text  # llama.cpp takes any bearer

    ref = ref_of(world.channel, world.guild)
    stored = await core.store.resolve_secret(ref, PROXY_PASSWORD)
    assert stored is not None and stored.reveal() == PASSWORD
    for request in env.http_requests:
        assert PASSWORD not in repr(request.json) and PASSWORD not in repr(request.params)
    for message in world.channel.history():
        assert PASSWORD not in message.content


async def test_server_wide_key_in_a_dm_is_refused_before_any_modal(
    simcord_env: simcord.Env, core: Core
) -> None:
    env = simcord_env
    user = env.create_user("dora")
    since = len(env.http_requests)
    result = await user.slash("key set", source="openai", scope="server")
    types = callback_types(env, since)
    assert MODAL not in types and result.modal is None, (types, result.modal)
    text = reply_text(result)
    assert "There is no server here" in text and "scope:server" in text, text
    assert result.ephemeral

    # The same command without scope:server is for the DM itself: the modal opens.
    shown = await user.slash("key set", source="openai")
    assert shown.modal is not None


async def test_server_wide_key_by_a_non_admin_is_refused_before_any_modal(
    world: World, core: Core
) -> None:
    env = world.env
    assert isinstance(env.bot, ChatClient)
    # A server lets @everyone use /key (Integrations settings): the core still refuses.
    app = next(c for c in await env.bot.tree.fetch_commands() if c.name == "key")
    world.guild.set_command_permissions(app, {world.guild.default_role: True})
    assert "key set" in world.member.available_commands(world.channel)

    since = len(env.http_requests)
    result = await world.member.slash(world.channel, "key set", source="openai", scope="server")
    types = callback_types(env, since)
    assert MODAL not in types and result.modal is None, (types, result.modal)
    assert "Only admins" in reply_text(result), reply_text(result)

    # A server admin gets the form, and the key is stored server-wide.
    shown = await world.admin.slash(world.channel, "key set", source="openai", scope="server")
    assert shown.modal is not None
    done = await world.admin.submit_modal(shown, {"secret:key": KEY})
    assert "Saved the openai key for this server" in reply_text(done), reply_text(done)
    ref = ref_of(world.channel, world.guild)
    stored = await core.store.resolve_secret(ref, api_key_name(Source.OPENAI))
    assert stored is not None and stored.reveal() == KEY
