"""Quotas and who may chat on a real Synapse: a refused turn is a notice in the thread
(nothing reaches the model), power-level allow rules ignore the others quietly."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import nio
import pytest

from bot.core import Core
from bot.providers import ProviderHub, ProviderSettings
from bot.store import SecretBox, Store, generate_key
from bot.store.migrate import upgrade_to_head
from bot.types import ChannelConfig, ChannelRef, Platform, Source
from bot.usage.quota import Gate
from tests.bot_process import BotProcess, bot_env, keygen
from tests.matrix.helpers import SSEEndpoint, UserClient, bot_options, make_core, running_bot
from tests.peers.synapse import SynapseServer

pytestmark = [pytest.mark.synapse]


async def test_refusal_notice_and_power_level_access(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    server = synapse_server
    bot = server.register("limitbot")
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        bob = await UserClient.start(server, server.register("bob"), tmp_path / "bob")
        carol = await UserClient.start(server, server.register("carol"), tmp_path / "carol")
        try:
            async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
                invite = [bot.user_id, bob.user.user_id, carol.user.user_id]
                room_id = await alice.create_room(invite, power={bob.user.user_id: 10})
                await alice.wait_joined(room_id, bot.user_id)
                await bob.join(room_id)
                await carol.join(room_id)
                for text, expect in [
                    ("!reply mode always", "always"),
                    ("!limits set messages_per_user_minute 1", "set to 1"),
                    ("!access allow level 10", "power level 10 and above"),
                ]:
                    said = await alice.command(room_id, bot.user_id, text)
                    assert expect in said, said
                # Bob (level 10) is answered once, then refused with a notice in reply.
                after = time.monotonic()
                await bob.send(room_id, "first question")
                await bob.reply_to(room_id, bot.user_id, after, "the answer")
                after = time.monotonic()
                asking = await bob.send(room_id, "second question")

                def refusal() -> list[object]:
                    return [
                        s
                        for s in bob.messages(room_id, bot.user_id, after)
                        if isinstance(s.event, nio.RoomMessageNotice)
                        and "messages_per_user_minute" in s.content["body"]
                    ]

                [seen] = await bob.wait_for(refusal, "the refusal notice")
                content = seen.content
                assert content["m.relates_to"]["m.in_reply_to"]["event_id"] == asking
                assert "frees up at" in content["body"]
                assert endpoint.request_for("second question") is None
                # Carol (level 0) is ignored: no answer, nothing sent.
                after = time.monotonic()
                await carol.send(room_id, "carol asks")
                await asyncio.sleep(2)
                assert bob.messages(room_id, bot.user_id, after) == []
                assert endpoint.request_for("carol asks") is None
                # Carol picked from the client's mention list: her name in the body, her
                # id only in the pill's link (it was refused as "not a Matrix user id").
                carol_id = carol.user.user_id
                pill = f'<a href="https://matrix.to/#/{carol_id}">carol</a>'
                said = await alice.command(
                    room_id,
                    bot.user_id,
                    "!access deny user carol",
                    format="org.matrix.custom.html",
                    formatted_body=f"!access deny user {pill}",
                )
                assert said.startswith("Rule added") and carol_id in said, said
        finally:
            for user in (alice, bob, carol):
                await user.close()
            await core.close()


async def test_a_bot_that_may_no_longer_post_does_not_ask_the_model(
    synapse_server: SynapseServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An admin lowered the bot's power level below what posting takes: every mention
    still asked (and paid for) the model, and stored an answer nobody saw."""
    server = synapse_server
    bot = server.register("mutedbot")
    caplog.set_level(logging.WARNING, logger="bot.matrix")
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        core = await make_core(f"sqlite+aiosqlite:///{tmp_path}/bot.db", defaults=defaults)
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        try:
            async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
                room_id = await alice.create_room([bot.user_id])
                await alice.wait_joined(room_id, bot.user_id)
                assert "always" in await alice.command(room_id, bot.user_id, "!reply mode always")
                after = time.monotonic()
                await alice.send(room_id, "while it may post")
                answer = await alice.reply_to(room_id, bot.user_id, after, "the answer")
                levels = await alice.client.room_get_state_event(room_id, "m.room.power_levels")
                assert isinstance(levels, nio.RoomGetStateEventResponse), levels
                content = dict(levels.content)
                content["users"] = {**content.get("users", {}), bot.user_id: -1}
                await alice.client.room_put_state(room_id, "m.room.power_levels", content)
                await asyncio.sleep(1)  # the bot's sync brings the new levels
                for text in ("after it was muted", "and again"):
                    await alice.send(room_id, text)
                # Room admin probe: the turn controls still asked the model, and commands
                # ran without a word (a !reset forgot the conversation unseen).
                asked = len(endpoint.asked)
                await alice.send(room_id, "!regenerate")
                await alice.send(room_id, "!reset")
                regenerate = {"rel_type": "m.annotation", "event_id": answer.event.event_id}
                await alice.client.room_send(
                    room_id, "m.reaction", {"m.relates_to": {**regenerate, "key": "🔄"}}
                )
                await asyncio.sleep(3)
                assert endpoint.request_for("after it was muted") is None
                assert endpoint.request_for("and again") is None
                assert len(endpoint.asked) == asked
                said = [r for r in caplog.records if "may not post in" in r.getMessage()]
                assert len(said) == 1, caplog.text  # once, not at every message
                ref = ChannelRef(Platform.MATRIX, room_id)
                assert len(await core.store.history(ref, 10)) == 2  # not reset
        finally:
            await alice.close()
            await core.close()


async def test_the_operators_limit_holds_in_a_private_direct_chat(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """In a private direct chat its one person is its admin: the operator's LIMIT_* holds
    there whatever they set (`off` and a higher value refused, a lower one taken), and a
    turn it refuses says only the operator can change it."""
    server = synapse_server
    bot = server.register("dmlimitbot")
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        defaults = ChannelConfig.of(
            source=Source.CUSTOM, proxy_url=f"{endpoint.url}/v1", model=endpoint.model
        )
        url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
        await upgrade_to_head(url)
        store = await Store.open(url, SecretBox.from_setting(generate_key()), defaults=defaults)
        gate = Gate.of({"messages_per_user_minute": 1, "tokens_per_channel_day": 100_000})
        settings = ProviderSettings(allow_private_endpoints=True, max_retries=0)
        core = Core(store, ProviderHub(settings), gate=gate)
        alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
        try:
            async with running_bot(core, bot_options(server, bot, tmp_path / "store")):
                room = await alice.create_room([bot.user_id], direct=True)
                await alice.wait_joined(room, bot.user_id)
                for name, value, word in (
                    ("messages_per_user_minute", "off", "not off"),
                    ("messages_per_user_minute", "5", "not a higher one"),
                    ("tokens_per_room_day", "off", "not off"),
                ):
                    said = await alice.command(room, bot.user_id, f"!limits set {name} {value}")
                    ceiling = 1 if name.startswith("messages") else 100_000
                    assert said == (
                        f"The operator's {name} of {ceiling:,} holds in every direct chat: "
                        f"here you can set a lower one, {word}. Nothing changed."
                    ), said
                shown = await alice.command(room, bot.user_id, "!limits")
                assert "messages_per_user_minute = 1 (operator default)" in shown, shown
                assert shown.endswith(
                    "Change this direct chat's limits with !limits set <name> <value|off|default>. "
                    "The operator's messages_per_user_minute and tokens_per_room_day hold in "
                    "every direct chat: here you can set them lower, not off or higher."
                ), shown  # `off` is refused for those
                assert "channel" not in shown, shown
                settings_said = await alice.command(room, bot.user_id, "!settings")
                assert (
                    "In this direct chat the bot answers every message whatever the mode."
                    in settings_said
                ), settings_said
                # A turn past the limit: refused, saying only the operator can change it.
                after = time.monotonic()
                await alice.send(room, "one")
                await alice.reply_to(room, bot.user_id, after, "the answer")
                after = time.monotonic()
                await alice.send(room, "two")

                def refusal() -> list[str]:
                    return [
                        str(s.content["body"])
                        for s in alice.messages(room, bot.user_id, after)
                        if "Limit reached" in str(s.content.get("body", ""))
                    ]

                [refused] = await alice.wait_for(refusal, "the refusal")
                assert refused.startswith("Limit reached: messages_per_user_minute"), refused
                assert (
                    "only the bot's operator can change it (LIMIT_MESSAGES_PER_USER_MINUTE)"
                    in refused
                ), refused
                assert "channel" not in refused, refused
                assert endpoint.request_for("two") is None
                # A lower value is theirs to set.
                said = await alice.command(
                    room, bot.user_id, "!limits set messages_per_user_minute 0"
                )
                assert said.startswith("messages_per_user_minute set to 0 for this direct chat."), (
                    said
                )
        finally:
            await alice.close()
            await core.close()


FLOOD = 10


async def test_a_member_flooding_past_the_minute_limit_gets_one_notice_not_one_a_message(
    synapse_server: SynapseServer, tmp_path: Path
) -> None:
    """README: a refused turn sends nothing to the model and tells the asker in a notice.
    A member sending 10 messages past `LIMIT_MESSAGES_PER_USER_MINUTE=1` got 10 notices,
    each a send in the homeserver's rate limit that other members' answers wait in too:
    now one while the refusal is recent (a slow machine: again after 15 s)."""
    server = synapse_server
    bot = server.register("floodbot")
    alice = await UserClient.start(server, server.register("alice"), tmp_path / "alice")
    async with SSEEndpoint(chunks=2, span=0.1) as endpoint:
        env = bot_env(
            MATRIX_HOMESERVER=server.url,
            MATRIX_USER_ID=bot.user_id,
            MATRIX_PASSWORD=bot.password,
            DATA_DIR=str(tmp_path / "data"),
            BOT_SECRET_KEYS=await keygen(),
            ALLOW_PRIVATE_ENDPOINTS="true",
            DEFAULT_SOURCE="custom",
            DEFAULT_PROXY_URL=f"{endpoint.url}/v1",
            DEFAULT_MODEL=endpoint.model,
            LIMIT_MESSAGES_PER_USER_MINUTE="1",
        )
        process = await BotProcess.start(tmp_path, env, ready_marker="logged in to")
        try:
            await process.wait_ready()
            room = await alice.create_room([bot.user_id], direct=True)
            await alice.wait_joined(room, bot.user_id)
            after = time.monotonic()
            await alice.send(room, "first question")
            await alice.reply_to(room, bot.user_id, after, "the answer")
            flood = {await alice.send(room, f"again {i}") for i in range(FLOOD)}
            refused = "was refused by messages_per_user_minute"
            await alice.wait_for(lambda: process.log.count(refused) == FLOOD, "the refusals")
            code = await process.stop()  # what it was saying is said: every send is done
            history = await alice.client.room_messages(room, limit=100)
        finally:
            await process.close()
            await alice.close()
    assert code == 0, process.log[-3000:]
    assert "Traceback" not in process.log
    assert isinstance(history, nio.RoomMessagesResponse), history
    told = [
        e.source["content"]["body"]
        for e in history.chunk
        if isinstance(e, nio.RoomMessageNotice)
        and e.sender == bot.user_id
        and e.source["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        in flood
    ]
    assert 1 <= len(told) <= 2, told
    assert all("messages_per_user_minute" in text for text in told), told
    assert len(endpoint.asked) == 1  # the first question only
