"""The settings registry: one entry is a whole setting (checked, stored, merged, shown,
sent), and the merge along channel → server → operator is a pure function."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy import Integer

from bot.characters import export_preset, parse_preset
from bot.commands import TABLE
from bot.commands.router import find
from bot.fields import FIELDS, PARAM_NAMES, REGISTRY, Field, FieldError, Kind, Registry
from bot.store.config import merge
from bot.store.models import ChannelConfigRow, setting_columns
from bot.types import SOURCE_API, ChannelConfig, ChannelRef, Platform, Source, StatusCheck

REF = ChannelRef(Platform.DISCORD, channel_id="c1", server_id="g1")

# A setting the registry does not have yet: this one entry is all the code needs.
MIN_KEEP = Field(
    "min_keep",
    Kind.INTEGER,
    "keep at least this many tokens when sampling",
    low=1,
    high=500,
    param=True,
    wire={Source.CLAUDE: "min_keep", Source.CUSTOM: "min_keep"},
)
WITH_MIN_KEEP = Registry([*FIELDS, MIN_KEEP])


def row(channel_id: str, **values: object) -> SimpleNamespace:
    """A stored row as the store reads it: every column, NULL where not set."""
    columns: dict[str, object] = {f.key: None for f in WITH_MIN_KEEP.fields}
    columns.update(status_ok=None, status_reason=None, status_checked_url=None)
    columns.update(status_kind=None, status_step=None, status_checked_at=None)
    columns.update(values)
    return SimpleNamespace(channel_id=channel_id, **columns)


def test_a_new_entry_is_checked_parsed_and_shown() -> None:
    assert MIN_KEEP.parse("40") == 40
    with pytest.raises(FieldError, match="from 1 to 500"):
        MIN_KEEP.parse("0")
    with pytest.raises(FieldError, match="whole number"):
        MIN_KEEP.parse("4.5")
    assert WITH_MIN_KEEP.checked({"min_keep": 7}) == {"min_keep": 7}
    with pytest.raises(FieldError, match="unknown setting"):
        REGISTRY.checked({"min_keep": 7})  # not in the real registry
    assert MIN_KEEP.takes() == "whole number 1–500" and MIN_KEEP.show(40) == "40"
    assert "min_keep" in [f.name for f in WITH_MIN_KEEP.params]


def test_a_new_entry_gets_its_column() -> None:
    [column] = [c for c in setting_columns(WITH_MIN_KEEP) if c.name == "min_keep"]
    assert isinstance(column.type, Integer) and column.nullable
    # The real table has exactly the real registry's columns (the drift test in
    # tests/integration/test_migrations.py holds the migrations to the same table).
    table_columns = {c.name for c in ChannelConfigRow.__table__.c}
    assert {f.key for f in FIELDS} <= table_columns and "min_keep" not in table_columns


def test_a_new_entry_is_merged_and_sent_where_the_source_takes_it() -> None:
    config = merge(
        ChannelConfig.of(source=Source.CLAUDE),
        REF,
        [row("c1", min_keep=40), row("", min_keep=10, temperature=0.5)],
        WITH_MIN_KEEP,
    )
    assert config.value("min_keep") == 40 and config.origins["min_keep"] == "channel"
    assert config.value("temperature") == 0.5 and config.origins["temperature"] == "server"
    assert WITH_MIN_KEEP.request_options(config.values, Source.CLAUDE) == {
        "min_keep": 40,
        "temperature": 0.5,
    }
    assert "min_keep" not in WITH_MIN_KEEP.request_options(config.values, Source.OPENAI)


def test_merge_channel_then_server_then_operator_then_default() -> None:
    operator = ChannelConfig.of(source=Source.MISTRAL, model="op-model", max_tokens=512)
    channel = row(
        "c1",
        model="mine",
        show_reasoning=False,
        stop=["X"],
        status_ok=False,
        status_reason="401",
        status_checked_url=SOURCE_API[Source.MISTRAL],  # no URL set: Mistral's own
        status_kind="auth",
    )
    server = row("", model="theirs", temperature=0.3, show_reasoning=True, stop=["Y"])
    config = merge(operator, REF, [channel, server])
    assert config.model == "mine" and config.origins["model"] == "channel"
    assert config.value("temperature") == 0.3 and config.origins["temperature"] == "server"
    assert config.value("max_tokens") == 512 and config.origins["max_tokens"] == "operator"
    assert config.source is Source.MISTRAL and config.origins["source"] == "operator"
    assert config.value("seed") is None and config.origins["seed"] == "default"
    assert config.show_reasoning is False  # a channel's False is set, not "fall through"
    assert config.value("stop") == ("X",)
    assert config.status == StatusCheck(False, "401", SOURCE_API[Source.MISTRAL], "auth")
    # A record made for a URL no longer set (the operator's, removed) is none.
    moved = row("c1", status_ok=False, status_checked_url="http://gone/v1", status_kind="auth")
    assert merge(operator, REF, [moved]).status is None
    # A server's row alone carries no status: status belongs to the channel.
    assert merge(operator, REF, [server]).status is None


def test_the_servers_check_is_the_status_of_channels_that_use_its_endpoint() -> None:
    """The server's row keeps the check of the endpoint its channels share (made in any of
    them): a channel with no endpoint of its own (source, URL, a key or password sent
    there) shows it, the newer of it and one of its own kept from before; one with its own
    does not, and keeps its own check beside the server's /v1 fix of another URL."""
    operator = ChannelConfig.of(source=Source.CUSTOM)
    url, then, later = "http://10.0.0.5:8080", datetime(2026, 1, 1, tzinfo=UTC), datetime.now(UTC)
    checked = {"status_checked_url": f"{url}/v1", "status_reason": "fine"}
    server = row("", proxy_url=url, resolved_url=f"{url}/v1", status_ok=True, **checked)
    server.status_checked_at = later
    config = merge(operator, REF, [row("c1"), server])
    assert config.server_endpoint and config.resolved_url == f"{url}/v1"
    assert config.status == StatusCheck(True, "fine", f"{url}/v1", server_wide=True)
    older = row("c1", status_ok=False, status_kind="auth", status_checked_at=then, **checked)
    assert merge(operator, REF, [older, server]).status == config.status
    newer = row("c1", status_ok=False, status_kind="auth", status_checked_at=later, **checked)
    server.status_checked_at = then
    assert merge(operator, REF, [newer, server]).status == StatusCheck(
        False, "fine", f"{url}/v1", "auth"
    )
    for own in ("custom_api_key", "proxy_password"):
        alone = merge(operator, REF, [row("c1"), server], own_secrets={own})
        assert alone.status is None and not alone.server_endpoint
    # Behind a URL an OpenAI key is not sent (the proxy password is): still the server's.
    openai = merge(ChannelConfig.of(), REF, [row("c1"), server], own_secrets={"openai_api_key"})
    assert openai.server_endpoint and openai.status is not None
    mine = "http://10.0.0.9:1234/v1"
    own_url = row("c1", proxy_url=mine, status_ok=True, status_checked_url=mine)
    config = merge(operator, REF, [own_url, server])
    assert not config.server_endpoint and config.resolved_url is None
    assert config.status == StatusCheck(True, "", mine)
    # A room with no server has no server's check.
    room = ChannelRef(Platform.MATRIX, channel_id="!r:x")
    assert merge(operator, room, [row("!r:x", proxy_url=url)]).server_endpoint is False


def test_a_stored_number_outside_todays_range_is_passed_over() -> None:
    """Upgrade probe: `seed -5`, taken by an older version, was still sent after the
    upgrade, though `/params seed -5` is refused now."""
    channel = row("c1", seed=-5, temperature=0.4)
    server = row("", seed=7)
    config = merge(ChannelConfig.of(source=Source.OPENAI), REF, [channel, server])
    assert config.value("seed") == 7 and config.origins["seed"] == "server"
    assert config.value("temperature") == 0.4
    alone = merge(ChannelConfig.of(source=Source.OPENAI), REF, [channel])
    assert "seed" not in REGISTRY.request_options(alone.values, Source.OPENAI)


def test_a_stored_choice_since_renamed_is_passed_over_and_kept_as_passed() -> None:
    """A choice an older version took (a reply mode, a source since renamed) made every
    read of `config.reply_mode` fail; it is passed over as a number out of range is,
    and what was passed over, nearest first, is kept for /settings to say."""
    channel = row("c1", reply_mode="sometimes", source="openrouter", context_tokens=100)
    server = row("", reply_mode="always", context_tokens=50)
    config = merge(ChannelConfig.of(source=Source.MISTRAL), REF, [channel, server])
    assert config.reply_mode.value == "always" and config.origins["reply_mode"] == "server"
    assert config.source is Source.MISTRAL and config.origins["source"] == "operator"
    assert config.value("context") is None and config.origins["context"] == "default"
    assert config.passed_over == {
        "reply_mode": (("channel", "sometimes"),),
        "source": (("channel", "openrouter"),),
        "context": (("channel", 100), ("server", 50)),
    }
    assert not REGISTRY.by_name["reasoning"].outside(False)  # a switch is never outside
    assert REGISTRY.by_name["vision"].shown_stored("ma`ybe\u202e") == "``ma`ybe<U+202E>``"


def test_the_command_table_offers_the_registrys_params() -> None:
    params = find(TABLE, ("params",))
    assert params is not None
    [name, _, scope] = params.options
    assert scope.name == "scope"
    assert name.choices == PARAM_NAMES == tuple(f.name for f in REGISTRY.params)


def test_a_new_entry_comes_and_goes_with_presets() -> None:
    """A preset export left a new parameter out, and an import listed it as ignored."""
    names = {f.name: f.kind.value for f in WITH_MIN_KEEP.params}
    exported = export_preset({"min_keep": 40, "temperature": 0.5}, names)
    assert json.loads(exported)["min_keep"] == 40
    imported = parse_preset(exported, WITH_MIN_KEEP.by_name, names)
    assert imported.values["min_keep"] == 40 and imported.values["temperature"] == 0.5
    assert "min_keep" not in imported.ignored and "min_keep" not in imported.not_supported
    # A connection setting is never taken from a preset, under any name.
    hostile = json.dumps({"temperature": 1, "proxy_url": "http://evil.example", "model": "x"})
    taken = parse_preset(hostile, WITH_MIN_KEEP.by_name, names)
    assert set(taken.values) == {"temperature"} and set(taken.ignored) == {"proxy_url", "model"}


def test_a_new_source_fails_here_until_every_table_has_it() -> None:
    """Review: a source added to `Source` alone crashed /help, /model and /settings at run
    time (KeyError, ValueError), and mypy could not tell."""
    from bot.commands.catalog import BUILTIN_MODELS, SETUP_STEPS
    from bot.providers.hub import _BY_SOURCE
    from bot.store import SECRET_NAMES, api_key_name

    for source in Source:
        assert source in BUILTIN_MODELS and source in SETUP_STEPS, source
        assert source in _BY_SOURCE and api_key_name(source) in SECRET_NAMES, source
