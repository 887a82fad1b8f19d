"""Slow commands against a real OpenAI-compatible server (llama.cpp): defer, then follow up."""

from __future__ import annotations

import pytest

from bot.core import Core
from tests.discord.conftest import World
from tests.discord.helpers import callback_types, config_of, reply_text
from tests.peers.llamacpp import LlamaCppPeer

pytestmark = [pytest.mark.llamacpp, pytest.mark.simcord(settle_timeout=60)]


async def test_a_real_endpoint_is_set_checked_listed_and_offered(
    world: World, core: Core, llamacpp_peer: LlamaCppPeer
) -> None:
    env = world.env
    # Typed without /v1, as people do; the status check finds the right URL.
    since = len(env.http_requests)
    done = await world.admin.slash(world.channel, "proxy set", url=llamacpp_peer.url)
    assert callback_types(env, since) == [5]  # no form: the answer is deferred at once
    assert "Endpoint set to" in reply_text(done) and "OK" in reply_text(done)
    config = await config_of(core, world.channel, world.guild)
    assert config.resolved_url == llamacpp_peer.url_v1

    since = len(env.http_requests)
    connect = await world.admin.slash(world.channel, "connect")
    assert callback_types(env, since) == [5] and "OK" in reply_text(connect)

    since = len(env.http_requests)
    external = await world.admin.slash(world.channel, "models external")
    assert callback_types(env, since) == [5]
    assert llamacpp_peer.model in reply_text(external)

    offered = await world.admin.autocomplete(world.channel, "model", "id", "smol")
    assert [c["value"] for c in offered] == [llamacpp_peer.model]
    chosen = await world.admin.slash(world.channel, "model", id=llamacpp_peer.model)
    assert f"Model set to {llamacpp_peer.model}" in reply_text(chosen)


async def test_a_real_model_streams_into_discord(
    world: World, core: Core, llamacpp_peer: LlamaCppPeer
) -> None:
    env = world.env
    await world.admin.slash(world.channel, "proxy set", url=llamacpp_peer.url_v1)
    await world.admin.slash(world.channel, "model", id=llamacpp_peer.model)
    await world.admin.slash(world.channel, "system", prompt="Answer in one short sentence.")
    start = len(env.http_requests)
    await world.member.send(world.channel, f"<@{world.bot_id}> Say hello.")
    path = f"/channels/{world.channel.id}/messages"
    made = env.http_requests[start:]
    assert [r.method for r in made if r.path == path] == ["POST"]
    answer = world.channel.last_message
    assert answer is not None and answer.author.id == world.bot_id and answer.content.strip()
    assert "⚠️" not in answer.content
