"""The bot's own words (a limit's refusal, a typed command's hint, the word that a key's
message could not be deleted) where it may not post as itself, on the loopback Discord
with the real discord.py client: through the character's webhook where that may post,
else by DM, and the log names the channel. They were lost without a word."""

from __future__ import annotations

import logging

import pytest

from bot.commands import Invocation
from bot.core import Core
from bot.types import Platform, limits
from tests.discord.fake_discord import SEND_MESSAGES, FakeDiscord
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import running
from tests.discord.test_persona import ADMIN, TOKEN, _by_webhook, _import, _ref


async def _character_without_send() -> FakeDiscord:
    """A character channel where the bot has Manage Webhooks but not Send Messages."""
    fake = FakeDiscord(TOKEN, manage_webhooks=True, bot_denied=SEND_MESSAGES)
    await fake.start()
    return fake


def _own(fake: FakeDiscord) -> list[str]:
    """What the bot said through the webhook under its own name (not the character's)."""
    return [m["content"] for m in _by_webhook(fake) if m["author"]["username"] != "Aurelia"]


async def test_a_limits_refusal_comes_through_the_webhook_and_goes_again(
    core: Core, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "REFUSAL_SECONDS", 0.3)  # 15 s in production
    fake = await _character_without_send()
    try:
        await _import(core, fake)
        limit = {"action": "set", "name": "messages_per_user_minute", "value": "1"}
        assert (await core.run_command(_ref(fake), ADMIN, Invocation(("limits",), limit))).ok
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> one")
            await fake.wait_until(lambda: len(_by_webhook(fake)) == 1, 30)
            await fake.user_says(f"<@{fake.bot_id}> two")
            await fake.wait_until(lambda: any("Limit reached" in t for t in _own(fake)), 30)
            [said] = [m for m in _by_webhook(fake) if "Limit reached" in m["content"]]
            assert said["content"].startswith(f"<@{fake.user_id}> ")  # whom it is for
            assert said["author"]["username"] == "Chatbot"  # the bot's word, not the character's
            await fake.wait_until(lambda: int(said["id"]) not in fake.messages, 30)
        assert len(endpoint.requests) == 1  # nothing sent for the second
        assert not fake.bot_calls("POST", f"/channels/{fake.channel_id}/messages")  # no 403s
        assert not fake.dms
    finally:
        await fake.stop()


async def test_a_typed_command_hint_comes_through_the_webhook(
    core: Core, endpoint: FakeOpenAI
) -> None:
    fake = await _character_without_send()
    try:
        await _import(core, fake)
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> /settings")
            await fake.wait_until(lambda: bool(_own(fake)), 30)
        [said] = _own(fake)
        assert "type `/settings`" in said and said.startswith(f"<@{fake.user_id}> ")
        assert endpoint.requests == [] and not fake.dms
    finally:
        await fake.stop()


async def test_a_key_message_not_deleted_is_said_through_the_webhook(
    core: Core, endpoint: FakeOpenAI
) -> None:
    fake = await _character_without_send()
    key = "sk-proj-" + "Zq8" * 8
    try:
        await _import(core, fake)
        async with running(core, fake):
            fake.drop_deletes = 10  # the delete never gets through
            await fake.user_says(f"<@{fake.bot_id}> here is my key {key} use it")
            await fake.wait_until(lambda: any("delete it yourself" in t for t in _own(fake)), 30)
        texts = [m["content"] for m in _by_webhook(fake)]
        assert any("looks like a key or password" in t for t in texts)
        assert all(key not in t for t in texts)
        assert endpoint.requests == [] and not fake.dms
    finally:
        await fake.stop()


async def test_where_the_bot_may_not_post_at_all_a_typed_hint_goes_by_dm(
    core: Core, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """No Send Messages and no character webhook: the hint went nowhere (the reply was
    refused, logged at info)."""
    caplog.set_level(logging.INFO, logger="bot")
    fake = FakeDiscord(TOKEN, bot_denied=SEND_MESSAGES)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> /settings")
            await fake.wait_until(lambda: bool(fake.dms), 30)
        [told] = fake.dms
        assert "type `/settings`" in told["content"] and "#general" in told["content"]
        assert not fake.bot_calls("POST", f"/channels/{fake.channel_id}/messages")
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(str(fake.channel_id) in w for w in warned), warned
    finally:
        await fake.stop()


async def test_questions_left_unanswered_are_told_through_the_webhook_after_a_restart(
    core: Core, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A question a killed process left waiting, in a character channel where the bot may
    post only through the character's webhook: after the restart the notice was only
    logged ("could not say … that questions went unanswered: I'm missing the Send
    Messages permission there"), and its record deleted. Now it comes through the
    webhook under the bot's name, with a link to the question (a webhook cannot reply)."""
    caplog.set_level(logging.INFO, logger="bot")
    fake = await _character_without_send()
    asked = 400_000_000_000_000_000  # the question the killed process left waiting
    try:
        await _import(core, fake)
        core.serve(Platform.DISCORD, "this-bot")
        await core.store.waiting.add(_ref(fake), str(asked), "this-bot", "a-killed-process")
        async with running(core, fake):  # told as it connects
            await fake.wait_until(lambda: bool(_own(fake)), 30)
        [said] = _own(fake)
        link = f"https://discord.com/channels/{fake.guild_id}/{fake.channel_id}/{asked}"
        assert said == (
            f"Not answered: the bot stopped before it got to this question. Ask again. ({link})"
        )
        assert not fake.bot_calls("POST", f"/channels/{fake.channel_id}/messages")  # no 403s
        assert not fake.dms and endpoint.requests == []
        assert await core.unanswered(Platform.DISCORD) == []
        assert not any("went unanswered" in r.getMessage() for r in caplog.records)
    finally:
        await fake.stop()
