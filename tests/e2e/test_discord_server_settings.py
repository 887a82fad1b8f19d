"""Server-wide settings walked as a server admin walks them: `chatbot run` as its own
process against the loopback fake Discord, with the operator's defaults in its
environment (source, endpoint, key and model), and loopback endpoints that record each
request. After each change `/settings` names where a value comes from, and the request
the model gets carries what it says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai
from tests.integration.test_characters import CARD, ST_DEFAULT

TOKEN = "loopback.bot.token-server-settings-0123"
OPERATOR_KEY = "operator-key-5a4b3c2d1e0f"
SERVER_KEY = "server-key-9f8e7d6c5b4a"


async def _asked(fake: FakeDiscord, endpoint: FakeOpenAI, text: str) -> dict[str, Any]:
    """Bob mentions the bot; the request `endpoint` got for it, once its answer is shown."""
    asked, answers = len(endpoint.requests), _answers(fake)
    await fake.user_says(f"<@{fake.bot_id}> {text}")
    await fake.wait_until(lambda: _answers(fake) > answers, 60)
    assert len(endpoint.requests) == asked + 1, [m["content"] for m in fake.messages.values()]
    return endpoint.requests[-1]


def _answers(fake: FakeDiscord) -> int:
    """Answers shown to the end (their 🔄 button is on)."""
    return sum("cc:regen:" in repr(m["components"]) for m in fake.messages.values())


async def test_a_server_admin_walks_server_wide_settings(tmp_path: Path) -> None:
    fake = FakeDiscord(TOKEN)
    operator = {"DEFAULT_CUSTOM_API_KEY": OPERATOR_KEY}
    async with (
        chatbot_run(tmp_path, fake, Script(), **operator) as (bot, ours),
        fake_openai(Script()) as servers,
    ):
        settings = await fake.command_says("settings")
        assert "Source: custom (operator default)" in settings, settings
        assert f"Endpoint: {ours.url_v1} (operator default)" in settings, settings

        said = await fake.command_says("params", name="temperature", value="0.7", scope="server")
        assert said.startswith("temperature set to 0.7 for this server."), said
        assert "Params (server-wide): temperature=0.7" in await fake.command_says("settings")
        assert (await _asked(fake, ours, "one"))["temperature"] == 0.7
        await fake.command_says("params", name="temperature", value="0.3")
        assert "Params (this channel): temperature=0.3" in await fake.command_says("settings")
        assert (await _asked(fake, ours, "two"))["temperature"] == 0.3
        said = await fake.command_says("params", name="temperature", value="default")
        assert said.startswith("temperature now follows the server's (or operator's)"), said
        assert (await _asked(fake, ours, "three"))["temperature"] == 0.7
        # A member may not, and nothing changes.
        refused = await fake.command_says(
            "params", manager=False, name="temperature", value="1", scope="server"
        )
        assert refused.startswith("Only admins"), refused

        # The server's own URL: the operator's key is not sent to it; the server's is.
        said = await fake.command_says("proxy", "set", url=servers.url_v1, scope="server")
        assert f"Endpoint set to {servers.url_v1} for this server." in said, said
        settings = await fake.command_says("settings")
        assert f"Endpoint: {servers.url_v1} (server-wide)" in settings, settings
        assert "not sent to an endpoint URL set server-wide" in settings, settings
        await _asked(fake, servers, "four")
        assert servers.authorizations[-1] == ""
        await fake.slash("key", "set", manager=True, source="custom", scope="server")
        await fake.wait_until(lambda: any(r.get("type") == 9 for r in fake.responses), 30)
        known, followups = set(fake.originals), len(fake.followups)
        await fake.submit_modal({"secret:key": SERVER_KEY}, manager=True)
        said = await fake.answer_since(known, followups)
        assert said.startswith("Saved the custom key for this server (ends …5b4a)."), said
        settings = await fake.command_says("settings")
        assert "API key: set (…5b4a, server)" in settings, settings
        assert (await _asked(fake, servers, "five"))["temperature"] == 0.7
        assert servers.authorizations[-1] == f"Bearer {SERVER_KEY}"

        # The source changed server-wide where this channel has its own model: the
        # server's model, chosen for the old source, goes (said), this channel's stays (said).
        await fake.command_says("model", id="m-large")
        await fake.command_says("model", id="gpt-4o", scope="server")
        said = await fake.command_says("source", source="mistral", scope="server")
        assert "gpt-4o was the model for the old source, so pick one for mistral with " in said
        assert "/model scope:server (offered: " in said, said
        assert "This channel has its own model (m-large), which wins here" in said, said
        settings = await fake.command_says("settings")
        assert "Source: mistral (server-wide)" in settings, settings
        assert "Model: m-large (this channel)" in settings, settings
        request = await _asked(fake, servers, "six")
        assert request["model"] == "m-large" and "safe_prompt" not in request, request
        await bot.stop()
    assert "Traceback" not in bot.log, bot.log[-3000:]
    assert OPERATOR_KEY not in bot.log and SERVER_KEY not in bot.log


async def _key_form(fake: FakeDiscord, secret: str, source: str = "custom", **options: str) -> str:
    """A server admin runs `/key set <source> …` and types `secret` into its form: the reply."""
    fake.responses.clear()
    await fake.slash("key", "set", manager=True, source=source, **options)
    await fake.wait_until(lambda: any(r.get("type") == 9 for r in fake.responses), 30)
    known, followups = set(fake.originals), len(fake.followups)
    await fake.submit_modal({"secret:key": secret}, manager=True)
    return await fake.answer_since(known, followups)


async def test_server_wide_text_holding_the_servers_key_is_refused_in_any_channel(
    tmp_path: Path,
) -> None:
    """A server's prompt, preset or character goes to every channel of the server, so the
    server's own key in it is refused wherever it is typed: also in a channel with a key
    of its own (whose key alone was looked for), where any member's /settings then showed
    the server's key whole (it is only that channel's own secrets it is cleaned of)."""
    own_key = "channel-key-0a1b2c3d4e5f6789"
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script()) as (bot, ours):
        await fake.command_says("proxy", "set", url=ours.url_v1, scope="server")
        said = await _key_form(fake, SERVER_KEY, scope="server")
        assert said.startswith("Saved the custom key for this server"), said
        said = await _key_form(fake, own_key)
        assert said.startswith("Saved the custom key for this channel"), said

        said = await fake.command_says(
            "system", prompt=f"The door code is {SERVER_KEY}.", scope="server"
        )
        assert said.startswith("That text for the system prompt holds what looks like a key"), said
        card = json.dumps({**CARD, "data": {**CARD["data"], "nickname": SERVER_KEY}}).encode()
        said = await fake.command_says(
            "character",
            "import",
            files={"file": ("c.json", "application/json", card)},
            scope="server",
        )
        assert said.startswith("That card's name holds what looks like a key"), said
        preset = {**ST_DEFAULT, "prompts": [{**ST_DEFAULT["prompts"][0], "content": SERVER_KEY}]}
        said = await fake.command_says(
            "preset",
            "import",
            files={"file": ("p.json", "application/json", json.dumps(preset).encode())},
            scope="server",
        )
        assert "system_prompt holds what looks like a key" in said, said
        # The channel's own key is still refused server-wide too.
        said = await fake.command_says("system", prompt=f"Use {own_key}.", scope="server")
        assert said.startswith("That text for the system prompt holds what looks like a key"), said

        settings = await fake.command_says("settings", manager=False)
        assert SERVER_KEY not in settings and "System prompt" not in settings, settings
        assert "Character:" not in settings, settings
        await bot.stop()
    assert SERVER_KEY not in bot.log and own_key not in bot.log


async def test_a_server_wide_url_change_drops_the_model_lists_of_the_old_endpoint(
    tmp_path: Path,
) -> None:
    """The model list a channel's last status check fetched belongs to that endpoint: once
    the server's URL moves to another, a channel that follows it offers that list no more
    (it was offered by /models list, /model's choices and warnings as the endpoint's), but
    the list the move's own check fetched of the new one, as every channel on it does."""
    fake = FakeDiscord(TOKEN, channels=6)
    other = fake.channel_id + 5
    async with (
        chatbot_run(tmp_path, fake, Script()) as (bot, ours),
        fake_openai(Script(models=["b-one", "b-two"])) as moved,
    ):
        await fake.command_says("models", "external", state="on", scope="server")
        await fake.command_says("connect", channel_id=other)
        listed = await fake.command_says("models", "list", channel_id=other)
        assert listed.startswith("custom models (the endpoint): m-small, m-large"), listed

        said = await fake.command_says("proxy", "set", url=moved.url_v1, scope="server")
        assert f"Endpoint set to {moved.url_v1} for this server." in said, said
        settings = await fake.command_says("settings", channel_id=other)
        assert f"Endpoint: {moved.url_v1} (server-wide)" in settings, settings
        listed = await fake.command_says("models", "list", channel_id=other)
        assert listed.startswith("custom models (the endpoint): b-one, b-two\n"), listed
        await fake.command_says("connect", channel_id=other)
        listed = await fake.command_says("models", "list", channel_id=other)
        assert listed.startswith("custom models (the endpoint): b-one, b-two"), listed

        # A channel's own URL moving elsewhere: its list from the old one goes too.
        await fake.command_says("proxy", "set", url=ours.url_v1, channel_id=other)
        await fake.command_says("proxy", "set", url="http://127.0.0.1:9/v1", channel_id=other)
        listed = await fake.command_says("models", "list", channel_id=other)
        assert listed.startswith("No models known for custom."), listed
        await bot.stop()
    assert "Traceback" not in bot.log


async def test_a_channel_following_the_server_is_told_what_applies(
    tmp_path: Path,
) -> None:
    """A channel admin's `/key clear custom` where the server's key applies said only "No
    custom key was stored for this channel.", as if no key were left. Now it says the
    server's key still applies and how to clear it, as /proxy clear does for a URL."""
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script()) as (bot, ours):
        await fake.command_says("proxy", "set", url=ours.url_v1, scope="server")
        said = await _key_form(fake, SERVER_KEY, scope="server")
        assert said.startswith("Saved the custom key for this server"), said
        said = await fake.command_says("key", "clear", source="custom")
        assert said == (
            "No custom key was stored for this channel.\nThe server's custom key (…5b4a) "
            "applies here (/key clear custom scope:server removes it)."
        ), said
        said = await fake.command_says("proxy", "clear")
        assert said.endswith(
            f"The server's URL applies here: {ours.url_v1} (/proxy clear scope:server removes it)."
        ), said
        await bot.stop()
    assert "Traceback" not in bot.log and SERVER_KEY not in bot.log


async def test_key_clear_names_no_key_that_is_not_sent_here(tmp_path: Path) -> None:
    """`/key clear openai` in a channel on its own proxy URL said "The server's openai key
    (…) applies here", while /settings said it was not sent (an OpenAI key never goes to
    a proxy URL, and a server's key never to a URL a channel set). Now it names the
    server's key only where requests carry it (as for a custom key, tested above)."""
    openai_key = "sk-proj-" + "S" * 40 + "7c7c"
    fake = FakeDiscord(TOKEN)
    async with chatbot_run(tmp_path, fake, Script()) as (bot, ours):
        said = await _key_form(fake, openai_key, source="openai", scope="server")
        assert said.startswith("Saved the openai key for this server"), said
        await fake.command_says("source", source="openai")
        await fake.command_says("proxy", "set", url=ours.url_v1)
        settings = await fake.command_says("settings")
        assert "API key: set (…7c7c, server), not sent" in settings, settings
        said = await fake.command_says("key", "clear", source="openai")
        assert said == "No openai key was stored for this channel.", said
        await bot.stop()
    assert "Traceback" not in bot.log and openai_key not in bot.log
