"""What each settings command does (the endpoint's: bot.commands.endpoint). One
function per leaf command."""

from __future__ import annotations

import unicodedata
from typing import Any

from bot.characters import FORMATS
from bot.commands.catalog import SETUP_STEPS
from bot.commands.endpoint import endpoint_list_offered, key_not_sent, secret_state
from bot.commands.parse import CommandError, suggest
from bot.commands.quotas import access_summary
from bot.commands.scopes import (
    next_scope,
    now_uses_next,
    origin_name,
    origin_note,
    own_value_note,
    passed_over_notes,
    plural,
    room_left_note,
    scope_of,
)
from bot.commands.spec import DEFAULT, Command, CommandContext, walk
from bot.connection import (
    PROXY_PASSWORD,
    NotConnectable,
    endpoint_for,
    secret_check,
    shown_here,
    status_said,
)
from bot.fields import BY_NAME, PARAM_NAMES, PARAMS, Field, FieldError
from bot.fields import Kind as FieldKind
from bot.store import SecretUnreadable, api_key_name
from bot.types import (
    ChannelConfig,
    PlaceName,
    Platform,
    Reply,
    ReplyMode,
    Scope,
    Source,
    typed_as,
)
from bot.types.secrets import held_secret
from bot.types.text import SWITCH_OFF, SWITCH_ON, clean_text, shown_id
from bot.usage.quota import limits_here


def _settings_lines(config: ChannelConfig, place: PlaceName) -> list[str]:
    """`Params (server-wide): name=value, …`: the parameters set, grouped by where."""
    by_origin: dict[str, list[str]] = {}
    for field in PARAMS:
        origin = config.origins.get(field.name, "default")
        if origin != "default":
            value = field.show(config.value(field.name))
            by_origin.setdefault(origin, []).append(f"{field.name}={value}{_only_for(field)}")
    return [
        f"Params ({origin_name(origin, place)}): {', '.join(by_origin[origin])}"
        for origin in ("channel", "server", "operator")
        if origin in by_origin
    ]


async def _own_step(ctx: CommandContext, config: ChannelConfig) -> str | None:
    """The setup step still missing, worded for the admin who takes it ("run …")."""
    try:
        await endpoint_for(ctx.store, ctx.ref, config, ctx.prefix)
    except NotConnectable as err:
        return err.said_to(admin=True)
    except SecretUnreadable:
        return None
    return None


def _offered_anyway(config: ChannelConfig) -> str:
    """What an `off` does not stop: a source with no list of its own (custom) offers the
    endpoint's all the same (README: for custom, the endpoint's list is what is offered)."""
    if config.show_external_models or not endpoint_list_offered(config):
        return ""
    return f"; {config.source.value} has no built-in list, so the endpoint's is offered anyway"


def _only_for(field: Field) -> str:
    if field.sources is None:
        return ""
    return f" ({', '.join(sorted(s.value for s in field.sources))} only)"


async def show_settings(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    place = ctx.ref.place
    status = "not checked yet"
    if config.status is not None:
        who = ctx.gate.operator.who_admins(ctx.ref)
        reason = status_said(config.status, ctx.prefix, admin=ctx.is_admin, who=who)
        if config.status.kind == "config" and ctx.is_admin:
            reason = await _own_step(ctx, config) or reason
        # The check of the endpoint every channel of the server without one of its own
        # uses, made in any of them: said, as it may not have been made here.
        where = " (checked server-wide)" if config.status.server_wide else ""
        status = f"OK{where}" if config.status.ok else f"failed{where} — {reason}"
    endpoint = config.resolved_url or config.proxy_url
    own_endpoint = "(the source’s own)"
    if config.source is Source.CUSTOM:  # a custom source has none of its own
        own_endpoint = f"(none yet: set one with {ctx.prefix}proxy set <url>)"
    url_from = origin_note(config, "proxy_url", place)
    model = (
        shown_id(config.model) + origin_note(config, "model", place)
        if config.model
        else "(not set)"
    )
    lines = [
        f"Source: {config.source.value}{origin_note(config, 'source', place)}",
        f"Model: {model}",
        f"Endpoint: {endpoint + url_from if endpoint else own_endpoint}",
    ]
    key = await secret_state(ctx, api_key_name(config.source), config)
    password = await secret_state(ctx, PROXY_PASSWORD, config)
    lines.append(f"API key: {key}{await key_not_sent(ctx, config)}")
    if config.proxy_url:
        lines.append(f"Proxy password: {password}")
    elif password != "not set":  # saved first: it goes to the URL set next
        lines.append(f"Proxy password: {password}, waiting for {ctx.prefix}proxy set <url>")
    lines += [
        f"Status: {status}",
        f"Bypass status check: {'on' if config.bypass_status_check else 'off'}"
        + origin_note(config, "bypass_status_check", place),
        f"Show external models: {'on' if config.show_external_models else 'off'}"
        + origin_note(config, "show_external_models", place)
        + _offered_anyway(config),
        f"Reply mode: {config.reply_mode.value}{origin_note(config, 'reply_mode', place)}"
        + _every_message(ctx, config, "."),
    ]
    for setting, title in PROMPTS.values():
        text = config.value(setting)
        if config.origins.get(setting, "default") == "default":
            continue  # no one set it (a format is SillyTavern's default)
        if _switched_off(config, setting):
            shown = SWITCHED_OFF
        elif text == "":
            shown = "none"  # turned off here (a wider scope's prompt is not sent)
        elif isinstance(text, str) and text:
            shown = await _prompt_text(ctx, config, text)
        else:
            continue
        shown += _elsewhere_note(BY_NAME[setting], config, place)
        lines.append(f"{title[0].upper()}{title[1:]}{origin_note(config, setting, place)}: {shown}")
    lines += _settings_lines(config, place)
    lines += passed_over_notes(config, place, ctx.prefix, platform=ctx.ref.platform)
    character = await ctx.store.character(ctx.ref)
    if character is not None:
        where = origin_name(character.scope.value, place)
        lines.append(f"Character: {character.name} ({where})")
    held = await limits_here(ctx.store, ctx.gate, ctx.ref)
    if held:
        limits = ", ".join(f"{place.named(name)} {value.value:,}" for name, value in held.items())
        lines.append(f"Limits: {limits} ({ctx.prefix}limits shows what you have left)")
    lines.append(await access_summary(ctx))
    if ctx.is_admin:
        # Who changed what last: with several admins, the first question after a surprise.
        for entry in await ctx.store.audit_entries(ctx.ref, 1):
            where = "server-wide" if entry.scope is Scope.SERVER else place.here
            when = entry.at.strftime("%Y-%m-%d %H:%M UTC")
            what = _change(entry.action, entry.detail)
            lines.append(f"Last change: {what} ({where}) by {entry.actor_name}, {when}")
    return Reply("\n".join(lines))


def _change(action: str, detail: str) -> str:
    """An audited change as /settings names it: a command, or which secret (`secret.set`
    with `openai_api_key set` is "openai key set")."""
    if action == "history.clear":  # the store's name for what /reset did
        return "reset"
    if not action.startswith("secret."):
        return action
    name, _, verb = detail.rpartition(" ")
    what = "proxy password" if name == PROXY_PASSWORD else name.removesuffix("_api_key") + " key"
    return f"{what} {verb}"


# /prompts' names (SillyTavern's prompt manager's: main, nsfw as auxiliary, jailbreak as
# post-history instructions) → the setting each is, and how replies name it.
PROMPTS = {
    "main": ("system_prompt", "system prompt"),
    "auxiliary": ("auxiliary_prompt", "auxiliary prompt"),
    "post_history": ("post_history_prompt", "post-history instructions"),
    # SillyTavern's Claude "Assistant Prefill": not a prompt there, but text sent as one.
    "prefill": ("assistant_prefill", "assistant prefill"),
    # Its formats of a card's world info, scenario and personality (its Utility Prompts).
    "wi_format": ("wi_format", "world info format"),
    "scenario_format": ("scenario_format", "scenario format"),
    "personality_format": ("personality_format", "personality format"),
}


# Shown for the post-history instructions a preset's order switched off (post_history_off).
SWITCHED_OFF = "off (a character's post-history instructions too)"


def _switched_off(config: ChannelConfig, setting: str) -> bool:
    """The post-history instructions switched off: a card's are not sent either."""
    return setting == "post_history_prompt" and config.value("post_history_off") is True


def _prompt_value(config: ChannelConfig, setting: str) -> object:
    """A /prompts setting's text in force: an unset format is SillyTavern's default."""
    text = config.value(setting)
    return FORMATS.get(setting) if text is None else text


async def set_system(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    return await _set_prompt(ctx, "main", args.get("prompt"), args, action="system")


async def set_prompt(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    which: str | None = args.get("name")
    if which is None:
        config = await ctx.store.effective_config(ctx.ref)
        wider = "the server's" if ctx.ref.has_server else "the operator's"
        lines = [f"Prompts (`none`: none here, `default`: {wider}):"]
        for name, (setting, _) in PROMPTS.items():
            text = _prompt_value(config, setting)
            shown = await _prompt_text(ctx, config, text) if isinstance(text, str) and text else ""
            shown = SWITCHED_OFF if _switched_off(config, setting) else shown
            lines.append(
                f"  {name}{origin_note(config, setting, ctx.ref.place)}: {shown or '(none)'}"
                + _elsewhere_note(BY_NAME[setting], config, ctx.ref.place)
            )
        lines.append(f"Set one with {_as_typed(ctx, 'prompts', '<name>', '<text>')}.")
        return Reply("\n".join(lines))
    return await _set_prompt(ctx, which, args.get("text"), args, action="prompts")


async def _prompt_text(ctx: CommandContext, config: ChannelConfig, text: str) -> str:
    """A stored prompt as /settings and /prompts show it: cleaned of this channel's
    secrets, at most 200 characters."""
    (shown,) = await shown_here(ctx.store, ctx.ref, [text])
    return shown[:200] + "…" if len(shown) > 200 else shown


async def _set_prompt(
    ctx: CommandContext, which: str, prompt: str | None, args: dict[str, Any], action: str
) -> Reply:
    setting, title = PROMPTS[which]
    if prompt is None:  # whole, as an admin may want to copy it; cleaned as everywhere
        config = await ctx.store.effective_config(ctx.ref)
        text = _prompt_value(config, setting)
        shown = "(none)"
        if isinstance(text, str) and text:
            (shown,) = await shown_here(ctx.store, ctx.ref, [text])
        shown = SWITCHED_OFF if _switched_off(config, setting) else shown
        return Reply(f"{title[0].upper()}{title[1:]}: {shown}")
    prompt = clean_text(prompt)  # free text: its control characters go (as the store's)
    scope = scope_of(args)
    # `none`: no prompt here, even if the server has one; `default`: the next scope's.
    # As typed on any keyboard (fullwidth `ｎｏｎｅ`) or in a code span.
    word = unicodedata.normalize("NFKC", prompt).strip().strip("`").strip().lower()
    value = "" if word == "none" else None if word == DEFAULT else prompt
    config = await ctx.store.effective_config(ctx.ref)
    if value and (await secret_check(ctx.store, ctx.ref))(value):
        # Kept in the clear and sent with every request: refused as a message holding one.
        raise CommandError(held_secret(f"text for the {title}", ctx.prefix))
    changes: dict[str, object] = {setting: value}
    if setting == "post_history_prompt" and value != "":
        # Text switches the instructions a preset switched off on again; `default`
        # follows the next scope's in both.
        changes["post_history_off"] = None if value is None else False
    await ctx.store.update_config(ctx.ref, scope, ctx.actor, changes, action=action)
    where = " for this server" if scope is Scope.SERVER else ""
    config = await ctx.store.effective_config(ctx.ref)
    if value is None:
        none = "" if _prompt_value(config, setting) else " (none set)"  # as /model default says
        said = f"{now_uses_next(ctx, scope)} {title}{none}."
    else:
        said = f"{title[0].upper()}{title[1:]} {'removed' if value == '' else 'set'}{where}."
        if value == "" and setting == "wi_format":  # an empty one wraps nothing (prompt.py)
            said = said[:-1] + ": a character's lorebook entries go as they are."
        if value:
            said += _elsewhere_note(BY_NAME[setting], config, ctx.ref.place, sentence=True)
    return Reply(said + own_value_note(config, scope, setting))


def _elsewhere_note(
    field: Field, config: ChannelConfig, place: PlaceName, *, sentence: bool = False
) -> str:
    """That a setting only some sources use is not used here: ` (claude only; this
    channel uses openai)`, or as a sentence after a reply."""
    if field.applies_to(config.source):
        return ""
    only = _only_for(field).strip(" ()")
    if sentence:
        return f" It applies to {only}; this {place} uses {config.source.value}."
    return f" ({only}; this {place} uses {config.source.value})"


def _words(field: Field) -> list[str]:
    """The words /params takes for `field`, besides numbers and text."""
    switch = (SWITCH_ON[0], SWITCH_OFF[0]) if field.kind is FieldKind.SWITCH else ()
    off = (SWITCH_OFF[0],) if field.off is not None else ()
    return list(dict.fromkeys([*field.choices, *switch, *off, DEFAULT]))


def _param_line(field: Field, config: ChannelConfig, place: PlaceName) -> str:
    value = field.show(config.value(field.name))
    note = f"; {_only_for(field).strip(' ()')}" if field.sources is not None else ""
    if note and not field.applies_to(config.source):
        note += f", this {place} uses {config.source.value}"
    return f"  {field.name} = {value}  ({field.takes()}: {field.help}{note})"


def _as_typed(ctx: CommandContext, command: str, name: str, value: str) -> str:
    """`/params <name> <value>` as typed on the asker's platform: on Discord, whose
    options here are all optional, each by name (a positional value fills none there)."""
    option = "text" if command == "prompts" else "value"
    values = (("name", name), (option, value))
    return typed_as((command,), values, ctx.ref.platform, ctx.prefix)


async def set_param(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    p = ctx.prefix
    config = await ctx.store.effective_config(ctx.ref)
    name: str | None = args.get("name")
    if name is None:
        lines = ["Parameters (`default`: the provider's own):"]
        lines += [_param_line(field, config, ctx.ref.place) for field in PARAMS]
        lines += passed_over_notes(config, ctx.ref.place, p, PARAM_NAMES, ctx.ref.platform)
        lines.append(
            f"Set one with {_as_typed(ctx, 'params', '<name>', '<value>')}; "
            f"{_as_typed(ctx, 'params', '<name>', 'default')} removes it."
        )
        return Reply("\n".join(lines))
    field = BY_NAME[name]
    text: str | None = args.get("value")
    if text is None:
        notes = passed_over_notes(
            config, ctx.ref.place, p, [name], ctx.ref.platform
        )  # each names its fix
        return Reply(
            "\n".join([_param_line(field, config, ctx.ref.place).strip(), *notes])
            + ("" if notes else f"\nSet it with {_as_typed(ctx, 'params', name, '<value>')}.")
        )
    try:
        value = None if text.strip().lower() == "default" else field.parse(text)
    except FieldError as err:  # `hіgh` (Cyrillic і), `оn`, `dfault`: which word it is
        raise CommandError(f"{err}{suggest(text, _words(field))}") from None
    scope = scope_of(args)
    await ctx.store.update_config(ctx.ref, scope, ctx.actor, {field.key: value}, action="params")
    overridden = own_value_note(config, scope, name)
    if value is None:
        return Reply(f"{name} now follows the {next_scope(ctx, scope)} value.{overridden}")
    note = _elsewhere_note(field, config, ctx.ref.place, sentence=True)
    if cut := field.sent_in_part(value):
        note += f" {cut}"
    where = " for this server" if scope is Scope.SERVER else ""
    if name in ("max_tokens", "context"):
        note += room_left_note(await ctx.store.effective_config(ctx.ref), ctx)
    return Reply(f"{name} set to {field.show(value)}{where}.{note}{overridden}")


async def set_reply_mode(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    mode: str = args["mode"]
    scope = scope_of(args)
    value = None if mode == DEFAULT else mode
    await ctx.store.update_config(
        ctx.ref, scope, ctx.actor, {"reply_mode": value}, action="reply mode"
    )
    config = await ctx.store.effective_config(ctx.ref)
    here = f"in this {ctx.ref.place}"
    where = "in this server's channels" if scope is Scope.SERVER else here
    said = {
        "always": f"Reply mode: always — the bot answers every message {where}.",
        "mention": "Reply mode: mention — the bot answers when mentioned or replied to.",
    }.get(
        mode,
        f"{now_uses_next(ctx, scope)} reply mode ({config.reply_mode.value}).",
    )
    return Reply(said + _every_message(ctx, config) + own_value_note(config, scope, "reply_mode"))


def _every_message(ctx: CommandContext, config: ChannelConfig, end: str = "") -> str:
    """Where the reply mode says mention in a direct chat: that it answers every message
    all the same (spoken to in a direct chat is every message: the front-ends'
    is_addressed). `end`: what closes the text it follows."""
    if not ctx.ref.direct or config.reply_mode is not ReplyMode.MENTION:
        return ""
    return f"{end} In this {ctx.ref.place} the bot answers every message whatever the mode."


async def reset(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    count = await ctx.store.clear_history(ctx.ref, ctx.actor)
    return Reply(f"Forgot {plural(count, 'message')}; the conversation starts fresh.")


def help_text(
    table: tuple[Command, ...],
    prefix: str,
    topic: Source | None = None,
    secret: str = "",
    platform: Platform = Platform.DISCORD,
) -> str:
    """Setup steps per source and every command, generated from the table; `secret` is
    how this platform takes a secret after its command (`{what}`: key or password);
    `platform`: whose words the commands' help uses (Platform.said)."""
    sources = [topic] if topic else list(Source)
    words = {"p": prefix, "key": secret.format(what="key")}
    words["password"] = secret.format(what="password")
    lines = ["How to connect:"]
    for source in sources:
        lines.append(f"{source.value}:")
        lines += [f"  {i}. {step.format(**words)}" for i, step in enumerate(SETUP_STEPS[source], 1)]
    if topic is None:
        lines.append("Commands (* = admins only):")
        for path, command in walk(table):
            mark = "*" if command.admin else " "
            lines.append(f" {mark} {prefix}{' '.join(path)} — {command.help_on(platform)}")
    return "\n".join(lines)


async def show_help(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    topic = Source(args["topic"]) if "topic" in args else None
    if ctx.personal:  # asked in a Matrix direct chat: the key goes here, for here
        secret = (
            " <{what}>  (sent here: this direct chat's own; for a group room, add "
            "room:<its id or #alias>)"
        )
    elif ctx.ref.platform is Platform.MATRIX:  # no private form: the key goes in a DM
        # A room with just the asker and the bot counts as a direct chat: "not here" was
        # wrong there. Said so it reads right in either kind of room.
        secret = (
            f" <{{what}}> room:{ctx.ref.channel_id}  (sent in a direct chat with the bot: a "
            "room with just you and it that nobody joins unasked)"
        )
    else:
        secret = "  (asked for privately)"
    text = help_text(ctx.table, ctx.prefix, topic, secret, ctx.ref.platform)
    if ctx.ref.platform is Platform.CONSOLE and topic is None:
        if ctx.actor.id == "console":
            who = (
                "an admin: it is the operator's own terminal. `./scripts/run.sh console --user "
                "ID` shows what that user may do (ADMIN_IDS decides)."
            )
        else:
            role = "an admin (ADMIN_IDS lists it)" if ctx.is_admin else "not an admin"
            who = f"user {ctx.actor.id}, {role}."
        own = "".join(f"\n   {line}" for line in dict.fromkeys(CONSOLE_COMMANDS.values()))
        text += f"{own}\nIn this console you are {who}"
    return Reply(text)


# The console's own commands, which its front-end runs (the table holds what every
# platform shares): /help lists them there, and each line is also what `/help attach`
# or `/attach help` shows.
_LEAVE = "/quit or /exit — Leave (Ctrl-D on an empty line does the same)."
CONSOLE_COMMANDS = {
    "attach": (
        "/attach <path> — Attach a file (an image, a text file, a PDF) to your next message; "
        "/attach alone lists them, /attach clear drops them."
    ),
    "quit": _LEAVE,
    "exit": _LEAVE,
}
