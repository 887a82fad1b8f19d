"""Slash commands built from the table, driven through the real discord.py client by simcord."""

from __future__ import annotations

import logging
from typing import Any

import discord
import pytest
import simcord
from simcord.backend.models import User

from bot.commands import TABLE
from bot.commands.spec import Kind, walk
from bot.frontends.discord.client import ChatClient
from bot.frontends.discord.commands import SWITCH_CHOICES
from bot.store import api_key_name
from bot.types import ModelInfo, Platform, ReplyMode, Source
from tests.discord.conftest import OPERATOR_ID, World
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import bot_messages, callback_types, config_of, ref_of, reply_text

pytestmark = pytest.mark.simcord(settle_timeout=30)


async def test_every_table_command_is_registered_with_its_options(world: World) -> None:
    registered = {c.name: c for c in await _tree(world).fetch_commands()}
    assert set(registered) == {c.name for c in TABLE}
    for command in TABLE:
        app = registered[command.name]
        assert app.description == command.help_on(Platform.DISCORD)
        assert "{" not in app.description, app.description  # the table's {place} said
        admin_only = all(c.admin for c in (command.subcommands or (command,)))
        perms = app.default_member_permissions
        assert (perms is not None and perms.manage_guild) == admin_only, command.name
    for path, leaf in walk(TABLE):
        app = registered[path[0]]
        options = app.options
        if len(path) == 2:
            sub = next(o for o in options if o.name == path[1])
            assert isinstance(sub, discord.app_commands.AppCommandGroup)
            assert sub.description == leaf.help_on(Platform.DISCORD)
            options = sub.options
        by_name = {o.name: o for o in options}
        expected = [o for o in leaf.options if not o.secret]
        assert set(by_name) == {o.name for o in expected}, path
        for opt in expected:
            got = by_name[opt.name]
            assert isinstance(got, discord.app_commands.Argument)
            assert got.required == opt.required
            assert got.description == opt.help_on(Platform.DISCORD)
            assert "{" not in got.description, (path, got.description)
            shown = opt.shown_choices(Platform.DISCORD)
            values = SWITCH_CHOICES if opt.kind is Kind.SWITCH else shown
            assert [c.value for c in got.choices] == list(values), (path, opt.name)
            assert got.autocomplete == bool(opt.autocomplete)
    visible = set(world.admin.available_commands(world.channel))
    assert visible == {" ".join(p) for p, _ in walk(TABLE)}
    assert registered["reset"].description == "Forget this channel's conversation history."


async def test_members_see_only_commands_open_to_them(world: World) -> None:
    visible = set(world.member.available_commands(world.channel))
    open_groups = {c.name for c in TABLE if not all(s.admin for s in (c.subcommands or (c,)))}
    assert visible == {" ".join(p) for p, _ in walk(TABLE) if p[0] in open_groups}
    assert "model" not in visible and "settings" in visible


def _tree(world: World) -> discord.app_commands.CommandTree[ChatClient]:
    assert isinstance(world.env.bot, ChatClient)
    return world.env.bot.tree


GOOD: list[tuple[str, dict[str, Any], str]] = [
    ("model", {"id": "m-large"}, "Model set to m-large"),
    ("params", {"name": "temperature", "value": "0.5"}, "temperature set to 0.5"),
    ("reply mode", {"mode": "always"}, "Reply mode: always"),
    ("system", {"prompt": "Be brief."}, "System prompt set."),
    ("reset", {}, "Forgot 0 messages"),
    ("models list", {}, "models external"),
    ("settings", {}, "Source: custom"),
    ("help", {"topic": "custom"}, "/"),
    ("proxy show", {}, "Proxy URL: http://127.0.0.1"),
]


@pytest.mark.parametrize(("name", "options", "expect"), GOOD, ids=[g[0] for g in GOOD])
async def test_admin_runs_commands(
    world: World, core: Any, name: str, options: dict[str, Any], expect: str
) -> None:
    result = await world.admin.slash(world.channel, name, **options)
    assert result.acknowledged and result.ephemeral
    assert result.response is not None and not result.followups
    assert expect in reply_text(result)
    config = await config_of(core, world.channel, world.guild)
    if name == "model":
        assert config.model == "m-large"
    if name == "params":
        assert config.value("temperature") == 0.5
    if name == "reply mode":
        assert config.reply_mode is ReplyMode.ALWAYS
    if name == "system":
        assert config.system_prompt == "Be brief."


@pytest.mark.parametrize(
    "typed", ["\u00abm-large\u00bb", "\u201em-large\u201c", "\u300cm-large\u300d"]
)
async def test_a_model_id_in_another_keyboards_quotes_is_stored_without_them(
    world: World, core: Any, typed: str
) -> None:
    """`/model «m-large»` stored `«m-large»`, and every chat then failed."""
    result = await world.admin.slash(world.channel, "model", id=typed)
    assert "Model set to m-large" in reply_text(result), reply_text(result)
    assert (await config_of(core, world.channel, world.guild)).model == "m-large"


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("params", {"name": "temperature", "value": "hot"}, "number"),
    ("params", {"name": "top_p", "value": "7"}, "top_p"),
    ("key clear", {"source": "openai"}, "No openai key was stored"),
    ("system", {"prompt": "x" * 6000}, ""),
]


@pytest.mark.parametrize(("name", "options", "expect"), BAD[:3], ids=["temp", "top_p", "keyclr"])
async def test_bad_values_are_explained_and_change_nothing(
    world: World, core: Any, name: str, options: dict[str, Any], expect: str
) -> None:
    before = await config_of(core, world.channel, world.guild)
    result = await world.admin.slash(world.channel, name, **options)
    assert result.ephemeral
    assert expect in reply_text(result)
    assert await config_of(core, world.channel, world.guild) == before


async def test_discord_refuses_values_the_table_does_not_allow(world: World) -> None:
    with pytest.raises(simcord.OptionError):
        await world.admin.slash(world.channel, "source", source="gemini")
    with pytest.raises(simcord.OptionError):
        await world.admin.slash(world.channel, "model", id="")


async def _open_to_everyone(world: World, name: str) -> None:
    """What a server does in Integrations settings: let @everyone use a config command."""
    app = next(c for c in await _tree(world).fetch_commands() if c.name == name)
    world.guild.set_command_permissions(app, {world.guild.default_role: True})


async def test_members_are_refused_by_the_core_even_when_discord_lets_them(
    world: World, core: Any
) -> None:
    await _open_to_everyone(world, "model")
    assert "model" in world.member.available_commands(world.channel)
    result = await world.member.slash(world.channel, "model", id="m-large")
    assert result.ephemeral
    said = reply_text(result)  # and who they are (a new admin could not tell)
    assert said.startswith("Only admins of this channel can use /model (members with "), said
    assert "Manage Server or a bot-admin role" in said and "ADMIN_IDS" in said, said
    assert (await config_of(core, world.channel, world.guild)).model == "m-small"


async def test_members_get_no_suggestions_for_a_command_they_may_not_run(
    world: World, endpoint: FakeOpenAI
) -> None:
    endpoint.script.models = ["m-small", "m-large", "secret-finetune"]
    await world.admin.slash(world.channel, "models external")
    await _open_to_everyone(world, "model")
    assert await world.member.autocomplete(world.channel, "model", "id", "") == []
    offered = await world.admin.autocomplete(world.channel, "model", "id", "")
    assert {c["value"] for c in offered} == {"m-small", "m-large", "secret-finetune"}


async def test_members_may_list_models_but_not_fetch_them(world: World) -> None:
    listed = await world.member.slash(world.channel, "models list")
    assert "No models known for custom" in reply_text(listed)
    fetched = await world.member.slash(world.channel, "models external")
    assert "Only admins" in reply_text(fetched)


async def test_operator_ids_are_admins_without_discord_rights(world: World, core: Any) -> None:
    user = User(id=OPERATOR_ID, name="opal")
    world.env.backend.users[user.id] = user
    opal = world.guild.add_member(simcord.UserHandle(world.env, user))
    await _open_to_everyone(world, "model")
    result = await opal.slash(world.channel, "model", id="m-large")
    assert "Model set to m-large" in reply_text(result)
    assert (await config_of(core, world.channel, world.guild)).model == "m-large"


async def test_slow_commands_defer_then_follow_up(
    world: World, core: Any, endpoint: FakeOpenAI
) -> None:
    env = world.env
    for name, options, expect in (
        ("source", {"source": "custom"}, "Source set to custom"),
        ("connect", {"bypass": "on"}, "Bypass API status check: on."),
        ("models external", {}, "m-small, m-large"),
    ):
        since = len(env.http_requests)
        result = await world.admin.slash(world.channel, name, **options)
        assert callback_types(env, since) == [5], name  # deferred at once, then followed up
        assert result.ephemeral and expect in reply_text(result)
        assert result.response is not None and not result.response.message.flags.loading
    config = await config_of(core, world.channel, world.guild)
    assert config.bypass_status_check and config.show_external_models
    assert config.status is not None and config.status.ok


async def test_a_slow_command_refused_is_answered_at_once_without_thinking(
    world: World,
) -> None:
    """A member's /source showed "thinking…" first, then the refusal."""
    await _open_to_everyone(world, "source")  # a server that shows it to everyone
    since = len(world.env.http_requests)
    result = await world.member.slash(world.channel, "source", source="custom")
    assert callback_types(world.env, since) == [4]  # the message itself, not deferred
    assert result.ephemeral and "Only admins" in reply_text(result)


async def test_long_replies_are_split_into_follow_ups(world: World) -> None:
    result = await world.admin.slash(world.channel, "help")
    pages = [result.response, *result.followups]
    assert len(pages) == 2  # /help is a little over 2000 characters
    assert all(p is not None and len(p.content) <= 2000 for p in pages)
    assert "/model" in reply_text(result)


KEY = "sk-test-Zq8LmN3pR7vX2cW9yT4u"


async def test_key_set_collects_the_key_in_a_modal_and_never_shows_it(
    world: World, core: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shown = await world.admin.slash(world.channel, "key set", source="custom")
    assert shown.modal is not None
    assert "secret:key" in str(shown.modal)
    since = len(world.env.http_requests)
    done = await world.admin.submit_modal(shown, {"secret:key": KEY})
    assert callback_types(world.env, since) == [5] and done.ephemeral
    text = reply_text(done)
    assert "Saved the custom key for this channel (ends …T4u" not in text  # only 4 chars
    assert "ends …" + KEY[-4:] in text
    ref = ref_of(world.channel, world.guild)
    stored = await core.store.resolve_secret(ref, api_key_name(Source.CUSTOM))
    assert stored is not None and stored.reveal() == KEY
    # Nowhere to be seen: REST bodies, channel messages, the audit log, log records.
    for request in world.env.http_requests:
        assert KEY not in repr(request.json) and KEY not in repr(request.params)
    for message in world.channel.history():
        assert KEY not in message.content
    for entry in await core.store.audit_entries(ref):
        assert KEY not in repr(entry)
    for record in caplog.records:
        assert KEY not in record.getMessage() and KEY not in repr(record.args)


async def test_a_bad_key_is_refused_and_nothing_is_stored(world: World, core: Any) -> None:
    shown = await world.admin.slash(world.channel, "key set", source="openai")
    done = await world.admin.submit_modal(shown, {"secret:key": "two words"})
    assert "has a space at position 4" in reply_text(done)
    ref = ref_of(world.channel, world.guild)
    assert await core.store.resolve_secret(ref, api_key_name(Source.OPENAI)) is None


async def test_a_key_form_sent_with_spaces_only_changes_nothing(world: World, core: Any) -> None:
    """It answered with the usage `/key set <source> <key>`, as if the key were typed in
    the channel, where Discord's command has no key option."""
    shown = await world.admin.slash(world.channel, "key set", source="openai")
    done = await world.admin.submit_modal(shown, {"secret:key": "   "})
    assert reply_text(done) == "No key given; nothing changed." and done.ephemeral
    ref = ref_of(world.channel, world.guild)
    assert await core.store.resolve_secret(ref, api_key_name(Source.OPENAI)) is None


async def test_proxy_set_answers_at_once_and_the_password_has_its_own_form(
    world: World, core: Any, endpoint: FakeOpenAI
) -> None:
    refused = await world.admin.slash(world.channel, "proxy set", url="ftp://example.com")
    assert refused.ephemeral and "http" in reply_text(refused)
    assert (await config_of(core, world.channel, world.guild)).proxy_url == endpoint.url_v1
    base = endpoint.url_v1.removesuffix("/v1")
    accepted = await world.admin.slash(world.channel, "proxy set", url=base)
    assert "Endpoint set to" in reply_text(accepted)
    shown = await world.admin.slash(world.channel, "proxy password")
    saved = await world.admin.submit_modal(shown, {"secret:password": "hunter2-hunter2"})
    assert "Saved the proxy password" in reply_text(saved)
    config = await config_of(core, world.channel, world.guild)
    assert config.proxy_url == base and config.status is not None and config.status.ok


async def test_model_autocomplete_offers_at_most_25_filtered_choices(
    world: World, endpoint: FakeOpenAI
) -> None:
    endpoint.script.models = [f"model-{i:02d}" for i in range(40)] + ["other"]
    await world.admin.slash(world.channel, "models external")
    everything = await world.admin.autocomplete(world.channel, "model", "id", "")
    assert len(everything) == 25
    narrowed = await world.admin.autocomplete(world.channel, "model", "id", "model-3")
    assert [c["value"] for c in narrowed] == [f"model-3{i}" for i in range(10)]
    assert await world.admin.autocomplete(world.channel, "model", "id", "zzz") == []


async def test_typing_a_model_never_asks_the_endpoint(world: World, endpoint: FakeOpenAI) -> None:
    """A guard: suggestions come from the list the last fetch stored, so a slow or down
    endpoint (whose key may be the operator's) is not asked once per keystroke."""
    await world.admin.slash(world.channel, "models external")
    asked = endpoint.models_asked
    endpoint.script.models_delay = 10.0
    for end in range(1, 21):
        typed = "m-large"[: 1 + end % 7]
        offered = await world.admin.autocomplete(world.channel, "model", "id", typed)
        assert offered and all(typed in c["value"] for c in offered)
    assert endpoint.models_asked == asked


# vLLM serves a model by its path unless told a name: ids past Discord's 100 characters.
_SNAPSHOTS = "/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-7B-Instruct/snapshots/"


async def test_model_ids_longer_than_discord_allows_are_suggested_and_picked(
    world: World, core: Any, endpoint: FakeOpenAI
) -> None:
    long_ids = [f"{_SNAPSHOTS}{i:02d}{'a0' * 20}" for i in range(30)]
    endpoint.script.models = [*long_ids, "m-short"]
    await world.admin.slash(world.channel, "models external")
    everything = await world.admin.autocomplete(world.channel, "model", "id", "")
    assert len(everything) == 25  # not thinned out after Discord's 25 were chosen
    assert all(1 <= len(c["name"]) <= 100 and len(c["value"]) <= 100 for c in everything)
    assert (await world.admin.autocomplete(world.channel, "model", "id", "short")) == [
        {"name": "m-short", "value": "m-short"}
    ]
    [picked] = await world.admin.autocomplete(world.channel, "model", "id", "snapshots/07")
    assert picked["name"] == picked["value"] and "…" in picked["value"]
    assert picked["value"].startswith(_SNAPSHOTS[:40]) and picked["value"].endswith("a0a0")
    # Picked and typed on from, it is still offered.
    again = await world.admin.autocomplete(world.channel, "model", "id", picked["value"])
    assert again == [picked]
    chosen = await world.admin.slash(world.channel, "model", id=picked["value"])
    assert "Model set to" in reply_text(chosen) and "Warning" not in reply_text(chosen)
    assert (await config_of(core, world.channel, world.guild)).model == long_ids[7]
    # Once the last list fetched holds it no more, the suggestion stands for nothing.
    ref = ref_of(world.channel, world.guild)
    config = await core.store.effective_config(ref)
    await core.store.cache_models(ref, config, [ModelInfo("m-short")])
    gone = await world.admin.slash(world.channel, "model", id=picked["value"])
    assert gone.ephemeral and "no longer listed" in reply_text(gone)
    assert (await config_of(core, world.channel, world.guild)).model == long_ids[7]
    # Two ids alike but for their middles show as one suggestion, which picks neither.
    twins = [f"{_SNAPSHOTS}{middle}{'a0' * 20}" for middle in ("x1" + "x" * 28, "x2" + "x" * 28)]
    await core.store.cache_models(ref, config, [ModelInfo(t) for t in twins])
    [both] = await world.admin.autocomplete(world.channel, "model", "id", "")
    twice = await world.admin.slash(world.channel, "model", id=both["value"])
    assert twice.ephemeral and "2 listed models begin and end" in reply_text(twice)
    assert (await config_of(core, world.channel, world.guild)).model == long_ids[7]


async def test_commands_work_in_dms_without_a_server_scope(simcord_env: simcord.Env) -> None:
    user = simcord_env.create_user("dora")
    settings = await user.slash("settings")
    assert "Source: custom" in reply_text(settings)
    # The DM user administers their own DM.
    model = await user.slash("model", id="m-large")
    assert "Model set to m-large" in reply_text(model)
    # Refused before the form: the key is never typed for nothing.
    done = await user.slash("key set", source="openai", scope="server")
    assert "server" in reply_text(done).lower() and "Saved" not in reply_text(done)


async def test_a_dm_is_called_a_dm_and_a_server_channel_a_channel(world: World) -> None:
    """In a DM with the bot every reply said "this channel" ("Params (this channel)",
    "This channel now uses …", a limit "for this channel"): Discord calls it a DM. The
    names people type keep Discord's word (`/usage channel`, `tokens_per_channel_day`):
    its commands are registered once, for DMs and servers alike."""
    dora = world.env.create_user("dora")
    for run, where in (
        (dora.slash, "DM"),
        (lambda *a, **o: world.admin.slash(world.channel, *a, **o), "channel"),
    ):
        said = reply_text(await run("params", name="temperature", value="0.5"))
        assert said.startswith("temperature set to 0.5."), said
        settings = reply_text(await run("settings"))
        assert f"Params (this {where}): temperature=0.5" in settings, settings
        said = reply_text(await run("model", id="default"))
        assert said.startswith(f"This {where} now uses the "), said
        said = reply_text(await run("reply mode", mode="always"))
        assert f"answers every message in this {where}." in said, said
        said = reply_text(
            await run("limits", action="set", name="tokens_per_channel_day", value="9000")
        )
        assert said.startswith(f"tokens_per_channel_day set to 9,000 for this {where}"), said
        limits = reply_text(await run("limits"))
        assert "tokens_per_channel_day = 9,000 " in limits, limits
        assert f"9,000 tokens left for this {where}" in limits, limits
        usage = reply_text(await run("usage"))
        assert usage.startswith(f"This {where}'s usage"), usage
        if where == "DM":
            assert "channel" not in (settings + limits).replace("tokens_per_channel_day", "")
            said = reply_text(await run("usage", scope="server"))
            # scope by name: on Discord /usage's options are all optional (none positional)
            assert said == (
                "There is no server here; /usage scope:channel shows this DM's usage."
            ), said


async def test_settings_in_a_dm_say_every_message_is_answered(world: World) -> None:
    """Probe: `/settings` in a DM showed "Reply mode: mention" alone, where the bot answers
    every message; it says so as `/reply mode` does. A server channel's do not."""
    dora = world.env.create_user("dora")
    line = next(
        x for x in reply_text(await dora.slash("settings")).splitlines() if "Reply mode" in x
    )
    assert line.startswith("Reply mode: mention"), line
    assert line.endswith(". In this DM the bot answers every message whatever the mode."), line
    await dora.slash("reply mode", mode="always")
    shown = reply_text(await dora.slash("settings"))
    assert "Reply mode: always" in shown and "whatever the mode" not in shown, shown
    shown = reply_text(await world.admin.slash(world.channel, "settings"))
    assert "Reply mode: mention" in shown and "whatever the mode" not in shown, shown


async def test_reply_mode_mention_in_a_dm_says_every_message_is_answered(world: World) -> None:
    """`/reply mode mention` in a DM said "the bot answers when mentioned or replied to",
    where the bot answers every message (there is nobody else to speak to); `default`
    named the mode alone."""
    dora = world.env.create_user("dora")
    note = " In this DM the bot answers every message whatever the mode."
    said = reply_text(await dora.slash("reply mode", mode="mention"))
    assert said == f"Reply mode: mention — the bot answers when mentioned or replied to.{note}"
    said = reply_text(await dora.slash("reply mode", mode="default"))
    assert said == f"This DM now uses the operator's reply mode (mention).{note}", said
    said = reply_text(await dora.slash("reply mode", mode="always"))
    assert said == "Reply mode: always — the bot answers every message in this DM.", said
    said = reply_text(await world.admin.slash(world.channel, "reply mode", mode="mention"))
    assert said == "Reply mode: mention — the bot answers when mentioned or replied to.", said
    await dora.send_dm("still answered")
    assert world.env.bot.user is not None
    assert bot_messages(dora.dm_channel, world.env.bot.user.id) == ["Hello there!"]


async def test_a_server_wide_source_names_itself_where_the_channel_has_its_own(
    world: World,
) -> None:
    """Probe: in a channel with its own source (claude), `/source mistral scope:server`
    dropped the server's model (chosen for the old source) and said to "pick one for
    claude with /model scope:server": the channel's source, not the one the server now
    has, so the admin was told to choose a server-wide model for the wrong source."""
    await world.admin.slash(world.channel, "source", source="claude")
    await world.admin.slash(world.channel, "model", id="gpt-4o", scope="server")
    said = reply_text(
        await world.admin.slash(world.channel, "source", source="mistral", scope="server")
    )
    assert "gpt-4o was the model for the old source, so pick one for mistral with " in said
    assert "/model scope:server (" in said, said
    assert "This channel has its own source (claude), which wins here" in said, said


async def test_access_offers_on_discord_only_the_kinds_that_exist_there(world: World) -> None:
    """A new admin found `level` among /access's kinds on Discord (the choice list, the
    option's description and the usage line), where power levels are Matrix's."""
    registered = {c.name: c for c in await _tree(world).fetch_commands()}
    app = registered["access"]
    assert "power level" not in app.description, app.description
    by_name = {o.name: o for o in app.options}
    kind = by_name["kind"]
    assert isinstance(kind, discord.app_commands.Argument)
    assert [c.value for c in kind.choices] == ["user", "role"]
    action = by_name["action"]  # a server's bot-admin roles are offered beside them
    assert isinstance(action, discord.app_commands.Argument)
    assert [c.value for c in action.choices][-2:] == ["admin", "unadmin"]
    assert "level" not in kind.description and "level" not in by_name["id"].description
    done = await world.admin.slash(world.channel, "access", action="allow")
    said = reply_text(done)
    assert "kind:<user|role> id:<id>" in said and "level" not in said, said


async def test_a_limit_without_its_action_says_it_as_discord_takes_it(
    world: World,
) -> None:
    """/limits with a name and value but no action said "/limits set <name> …", which on
    Discord means choosing action:set."""
    done = await world.admin.slash(
        world.channel, "limits", name="messages_per_user_minute", value="5"
    )
    said = reply_text(done)
    assert "/limits action:set name:<name> value:<value|off|default>" in said, said
    assert "/limits set" not in said, said


async def test_params_and_prompts_hints_name_their_options_as_discord_takes_them(
    world: World,
) -> None:
    """`/params` and `/prompts` take only optional options on Discord, where a positional
    `/params temperature 0.7` fills none of them: their hint lines said it so all the
    same. They now name each option, as /limits and /access do."""
    listed = reply_text(await world.admin.slash(world.channel, "params"))
    assert (
        "Set one with /params name:<name> value:<value>; "
        "/params name:<name> value:default removes it."
    ) in listed, listed
    one = reply_text(await world.admin.slash(world.channel, "params", name="temperature"))
    assert one.endswith("Set it with /params name:temperature value:<value>."), one
    prompts = reply_text(await world.admin.slash(world.channel, "prompts"))
    assert prompts.endswith("Set one with /prompts name:<name> text:<text>."), prompts
