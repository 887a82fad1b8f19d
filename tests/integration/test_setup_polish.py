"""Command polish found on the user's path: /params, /settings, /models, /model, usage.

A real Core (SQLite) and a loopback OpenAI-compatible endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.commands import TABLE
from bot.commands.parse import parse
from bot.commands.router import find
from bot.commands.spec import usage
from bot.providers import MAX_MODELS
from bot.types import Incoming, Reply
from tests.discord.fake_openai import FakeOpenAI, Script, fake_openai
from tests.integration.conftest import ADMIN, MEMBER, REF, SERVER_ADMIN, Harness, make_core
from tests.integration.test_chat import CollectingSink


@pytest.fixture
async def endpoint() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(Script(models=["local-7b", "gpt-4o"])) as fake:
        yield fake


async def run(h: Harness, text: str) -> Reply:
    return await h.core.run_text_command(Incoming(REF, ADMIN, text))


async def test_params_alone_lists_every_parameter_with_range_and_value(harness: Harness) -> None:
    assert (await run(harness, "/params temperature 0.7")).ok
    assert (await run(harness, '/params stop END, "a,b", \\nUser:')).ok
    listing = (await run(harness, "/params")).text
    assert "temperature = 0.7  (number 0–2" in listing
    assert "top_p = default  (number 0–1" in listing
    assert "seed = default  (whole number -1–2147483647, or off" in listing
    assert 'stop = END, "a,b", \\nUser:' in listing
    assert "safe_prompt = off" in listing
    assert "safety prompt; mistral only, this channel uses openai)" in listing
    assert "e+" not in listing
    one = (await run(harness, "/params context")).text
    assert one.startswith("context = default  (whole number 256–10000000")


async def test_params_values_people_type(harness: Harness) -> None:
    assert (await run(harness, '/params stop "a,b"')).text == 'stop set to "a,b".'
    config = await harness.store.effective_config(REF)
    assert config.value("stop") == ("a,b",)
    reply = await run(harness, "/params safe_prompt on")
    assert reply.ok and "applies to mistral only" in reply.text
    for bad in ("/params seed 0_1", "/params temperature ١", "/params top_p ０.5"):
        assert not (await run(harness, bad)).ok, bad


async def test_settings_omit_empty_sections_and_show_values_plainly(harness: Harness) -> None:
    bare = (await run(harness, "/settings")).text
    assert "System prompt" not in bare and "Params" not in bare and "Proxy password" not in bare
    await run(harness, "/params stop END, STOP")
    await run(harness, "/params context 10000000")
    await run(harness, "/source mistral")
    await run(harness, "/params safe_prompt on")
    shown = (await run(harness, "/settings")).text
    assert (
        "Params (this channel): context=10000000, stop=END, STOP, safe_prompt=on (mistral only)"
        in shown
    )
    assert "1e+07" not in shown
    assert "Last change: params (here) by Ada" in shown  # admins see who changed what last
    # A prompt turned off here over a wider one is shown as off (it had vanished from the
    # list, as if none were set anywhere; characters probe).
    await run(harness, "/system The server's helper. scope:server")
    await run(harness, "/system none")
    off = (await run(harness, "/settings")).text
    assert "System prompt (this channel): none" in off and "server's helper" not in off, off
    member = await harness.core.run_text_command(Incoming(REF, MEMBER, "/settings"))
    assert member.ok and "Last change" not in member.text
    await run(harness, "/key set mistral sk-mistral-key-000000")
    assert "Last change: mistral key set (here) by Ada" in (await run(harness, "/settings")).text
    # A command that clears a secret with its values is named as the command.
    await run(harness, "/proxy password hunter2-proxy-pass")
    assert "Last change: proxy password set (here)" in (await run(harness, "/settings")).text
    # (With no URL here, /proxy clear removes only the password, and that is the change.)
    await run(harness, "/proxy set http://127.0.0.1:9/v1")
    await run(harness, "/proxy clear")
    assert "Last change: proxy clear (here) by Ada" in (await run(harness, "/settings")).text
    await run(harness, "/reset")  # it was "history.clear", the store's own name
    assert "Last change: reset (here) by Ada" in (await run(harness, "/settings")).text


async def test_external_models_come_after_the_sources_own(
    harness: Harness, endpoint: FakeOpenAI
) -> None:
    assert (await run(harness, f"/proxy set {endpoint.url_v1}")).ok
    external = await run(harness, "/models external")
    assert external.ok and "local-7b" in external.text
    listed = (await run(harness, "/models list")).text
    assert listed.index("gpt-5") < listed.index("local-7b")
    ids = listed.split(": ", 1)[1].split(", ")
    assert ids.count("gpt-4o") == 1  # listed once, in the source's own place
    choices = await harness.core.autocomplete(REF, ADMIN, ("model",), "id", "", 25)
    assert choices[0] == "gpt-5" and choices[-1] == "local-7b"
    local = await harness.core.autocomplete(REF, ADMIN, ("model",), "id", "local", 25)
    assert local == ["local-7b"]


async def test_model_accepts_any_id_and_warns_only_when_a_list_says_so(
    harness: Harness, endpoint: FakeOpenAI
) -> None:
    vendor = await run(harness, "/model gpt-99-turbo")
    assert vendor.ok and "not in the bot's openai list" in vendor.text
    assert (await harness.store.effective_config(REF)).model == "gpt-99-turbo"
    await run(harness, "/source custom")
    await run(harness, f"/proxy set {endpoint.url_v1}")
    # The status check of /proxy set listed the endpoint's models: now a list says so.
    anything = await run(harness, "/model anything-goes")
    assert anything.ok and "does not include `anything-goes`" in anything.text
    assert (await harness.store.effective_config(REF)).model == "anything-goes"
    await run(harness, "/models external")
    assert (await run(harness, "/model local-7b")).text == "Model set to local-7b."
    typo = await run(harness, "/model local-7")
    assert typo.ok and "does not include `local-7`" in typo.text and "local-7b" in typo.text


async def test_a_model_past_the_kept_part_of_a_long_list_is_not_called_missing(
    harness: Harness,
) -> None:
    """An endpoint listing 5,001 models: the bot keeps 5,000, and /model of the last one
    warned that the endpoint's list does not include it, as did /models external."""
    ids = [f"m{n}" for n in range(MAX_MODELS + 1)]
    async with fake_openai(Script(models=ids)) as fake:
        await run(harness, "/source custom")
        assert (await run(harness, f"/proxy set {fake.url_v1}")).ok
        last = await run(harness, f"/model {ids[-1]}")
        assert last.ok and "does not include" not in last.text, last.text
        assert f"`{ids[-1]}` could not be checked" in last.text, last.text
        assert (await run(harness, "/model m42")).text == "Model set to m42."
        assert (await run(harness, f"/model {ids[-1]}")).ok
        check = (await run(harness, "/connect")).text
        assert "may refuse it" not in check, check
        assert (
            "Status check: OK — the first 5,000 models of its list kept; m5000 is not among "
            "them, so it could not be checked." in check
        ), check
        external = await run(harness, "/models external")
        assert external.ok and "The list does not name" not in external.text, external.text
        assert "The bot keeps the first 5,000 models of the list" in external.text
    # A short list still says so: the model is not there.
    async with fake_openai(Script(models=ids[:3])) as fake:
        assert (await run(harness, f"/proxy set {fake.url_v1}")).ok
        assert "does not include `m4`" in (await run(harness, "/model m4")).text
        assert "but not m4, so the endpoint may refuse it" in (await run(harness, "/connect")).text


async def test_a_model_id_that_markdown_would_read_is_shown_quoted(
    harness: Harness, endpoint: FakeOpenAI
) -> None:
    """An endpoint lists what it likes: `[Sign in](https://…)` came back bare in the bot's
    replies, a link in the bot's voice on Discord and Matrix. Plain ids stay as they are."""
    link = "[Sign-in](https://phish.example/login)"
    endpoint.script = Script(models=["local-7b", link, "**loud**", "<@&123>"])
    await run(harness, "/source custom")
    await run(harness, f"/proxy set {endpoint.url_v1}")
    listed = (await run(harness, "/models external")).text
    assert f"`{link}`" in listed and "`**loud**`" in listed and "`<@&123>`" in listed
    assert "local-7b," in listed and "`local-7b`" not in listed
    assert (await run(harness, f"/model {link}")).text.startswith(f"Model set to `{link}`.")
    assert f"Model: `{link}` (this channel)" in (await run(harness, "/settings")).text
    assert f"In use: `{link}`" in (await run(harness, "/models list")).text
    assert (await run(harness, "/model a.b/c:Q4_K_M@x+y=z,1")).text.startswith(
        "Model set to a.b/c:Q4_K_M@x+y=z,1."
    )


async def test_a_new_source_keeps_the_model_its_endpoint_lists(
    harness: Harness, endpoint: FakeOpenAI
) -> None:
    """The model was dropped when the new source had not listed it yet, although the
    status check run by `/source` itself then found it on the endpoint."""
    await run(harness, "/source custom")
    await run(harness, f"/proxy set {endpoint.url_v1}")
    assert (await run(harness, "/model local-7b")).ok
    switched = (await run(harness, "/source openai")).text
    assert "Model: local-7b." in switched and "was the model for" not in switched, switched
    assert (await harness.store.effective_config(REF)).model == "local-7b"
    # One the endpoint does not list still goes, and the check does not name it.
    assert (await run(harness, "/model not-offered-here")).ok
    back = (await run(harness, "/source custom")).text
    assert "not-offered-here was the model for openai, so pick one for custom" in back, back
    assert "but not not-offered-here" not in back and "Status check: OK" in back, back
    assert (await harness.store.effective_config(REF)).model is None


async def test_status_line_counts_in_the_singular(harness: Harness, endpoint: FakeOpenAI) -> None:
    endpoint.script = Script(models=["only-one"])
    await run(harness, "/source custom")
    reply = await run(harness, f"/proxy set {endpoint.url_v1}")
    assert "1 model available" in reply.text and "1 models" not in reply.text


def test_connect_bypass_spelled_out_and_usage_shows_name_value() -> None:
    assert parse("/connect bypass on", TABLE).raw == {"bypass": "on"}
    assert parse("/key set openai scope server", TABLE).raw == {
        "source": "openai",
        "scope": "server",
    }
    connect = find(TABLE, ("connect",))
    key = find(TABLE, ("key", "set"))
    assert connect is not None and key is not None
    assert usage(("connect",), connect) == "/connect [bypass:on|off|default] [scope:channel|server]"
    assert usage(("key", "set"), key) == (
        "/key set <openai|claude|mistral|custom> <key> [scope:channel|server]"
    )


async def test_connect_with_an_empty_value_changes_nothing(harness: Harness) -> None:
    reply = await run(harness, "/connect bypass:")
    assert not reply.ok and "needs a value (on, off or default)" in reply.text
    assert (await harness.store.effective_config(REF)).bypass_status_check is False


async def test_settings_word_a_missing_step_for_whoever_reads_it(harness: Harness) -> None:
    """New-user probe: /settings told the admin doing the setup that "an admin runs
    /proxy set" (the status kept in the members' wording); a member still reads that."""
    await run(harness, "/source custom")
    mine = (await run(harness, "/settings")).text
    assert "Status: failed — The custom source needs an endpoint URL: run /proxy set" in mine
    member = await harness.core.run_text_command(Incoming(REF, MEMBER, "/settings"))
    assert "needs an endpoint URL: an admin runs /proxy set" in member.text, member.text


async def test_a_stored_value_todays_range_refuses_is_said_not_dropped_unseen(
    tmp_path: Path, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """Upgrade probe: a value an older version stored (a context below today's minimum,
    a max_tokens above today's maximum, a reply mode since renamed) was passed over as
    unset, and /settings and /params showed the default with no word of it; a renamed
    choice made /settings fail. Written here with plain SQL, as the older version did,
    and the bot started again."""
    url = f"sqlite+aiosqlite:///{tmp_path}/bot.db"
    core = await make_core(url)
    harness = Harness(core, core.store, url)
    assert (await run(harness, f"/proxy set {endpoint.url_v1}")).ok
    assert (await run(harness, "/model m-small")).ok
    assert (await run(harness, "/params temperature 0.5")).ok
    server_admin = Incoming(REF, SERVER_ADMIN, "/params max_tokens 300 scope:server")
    assert (await harness.core.run_text_command(server_admin)).ok
    await core.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.db")) as conn, conn:
        conn.execute(
            "UPDATE channel_configs SET context_tokens = 100, max_tokens = 2000000, "
            "reply_mode = 'sometimes\u202e' WHERE channel_id = 'c1'"
        )
        conn.execute("UPDATE channel_configs SET vision = 'maybe' WHERE channel_id = ''")
    core = await make_core(url)
    harness = Harness(core, core.store, url)
    try:
        await _passed_over_said(harness, endpoint, caplog)
    finally:
        await core.close()


async def _passed_over_said(
    harness: Harness, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:

    shown = (await run(harness, "/settings")).text
    assert "Reply mode: mention (built-in default)" in shown, shown
    assert (
        "context 100 (this channel) is not a value it takes today (whole number "
        "256–10000000), so it is not used; the built-in default applies instead. Set a "
        "valid one with /params name:context value:<value>, or remove it with "
        "/params name:context value:default."
    ) in shown
    assert (
        "max_tokens 2000000 (this channel) is not a value it takes today (whole number "
        "1–1000000), so it is not used; 300 (server-wide) applies instead." in shown
    )
    # Shown as stored, cleaned as any quoted value (the override character named).
    assert "reply_mode `sometimes<U+202E>` (this channel) is not a value" in shown
    assert "Set a valid one with /reply mode <mode>, or remove it with /reply mode" in shown
    assert (
        "vision `maybe` (server-wide) is not a value it takes today (auto/on/off), so it is "
        "not used; auto (built-in default) applies instead. Set a valid one with /params "
        "name:vision value:<value> scope:server, or remove it with /params name:vision "
        "value:default scope:server."
    ) in shown
    one = (await run(harness, "/params context")).text
    assert one.startswith("context = default  (whole number 256–10000000")
    assert "\ncontext 100 (this channel) is not a value it takes today" in one
    assert "max_tokens" not in one  # the one asked about only
    listing = (await run(harness, "/params")).text
    assert "max_tokens 2000000 (this channel) is not a value" in listing

    # A turn goes on without them, and the log says so once per setting, not every turn.
    with caplog.at_level(logging.WARNING, logger="bot.conversation"):
        for _ in range(2):
            sink = CollectingSink()
            await harness.core.chat(Incoming(REF, MEMBER, "hello"), sink)
            assert sink.error is None and sink.final == endpoint.script.answer
    sent = endpoint.requests[-1]
    assert sent["max_tokens"] == 300 and sent["temperature"] == 0.5  # the server's
    said = [r.getMessage() for r in caplog.records if "not a value it takes" in r.getMessage()]
    assert len(said) == 4, said  # context, max_tokens, reply_mode, vision: once each
    assert any("stored context 100 (channel)" in line for line in said), said

    # Set to a valid value, the note goes.
    assert (await run(harness, "/params context 4096")).ok
    assert "context 100" not in (await run(harness, "/settings")).text
