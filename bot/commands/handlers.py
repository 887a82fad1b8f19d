"""What each command in the table does. One function per leaf command."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from typing import Any

from bot.commands.catalog import BUILTIN_MODELS, SETUP_STEPS
from bot.commands.parse import CommandError, suggest
from bot.commands.quotas import access_summary
from bot.commands.spec import DEFAULT, Command, CommandContext, walk
from bot.connection import (
    PROXY_PASSWORD,
    NotConnectable,
    endpoint_for,
    endpoint_url,
    run_status_check,
    secret_check,
    shown_here,
    withheld,
)
from bot.fields import BY_NAME, PARAMS, Field, FieldError, conversation_room
from bot.providers import NotFoundError, StatusResult
from bot.providers.policy import EndpointRefused
from bot.store import SecretUnreadable, api_key_name
from bot.types import ChannelConfig, ModelInfo, Platform, Reply, Scope, SecretValue, Source
from bot.types.text import quoted, shown_id
from bot.usage.quota import limits_here

_MAX_LISTED = 60
# A setting's text (a prompt) holding a key or this channel's password: kept in the clear
# and sent with every request, so refused; said as a message holding one is.
HELD_IN_SETTING = (
    "The text for the {what} holds what looks like a key or this channel's password, so it "
    "was not saved. "
    "If others could see it, make a new one; admins store keys with {prefix}key set."
)
_NARROW = " ({p}models list <text> shows the ids containing it)"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


async def _checked(ctx: CommandContext) -> tuple[StatusResult, str]:
    """Run the channel's status check: its result, and the line that says it."""
    result = await run_status_check(ctx.store, ctx.hub, ctx.ref, ctx.prefix)
    model = (await ctx.store.effective_config(ctx.ref)).model
    return result, _status_line(result, ctx.prefix, model)


def _status_line(result: StatusResult, p: str, model: str | None = None) -> str:
    fixed = f"\nUsing {result.base_url} (added /v1 for you)." if result.corrected else ""
    if result.ok:
        seen = f" — {_plural(len(result.models), 'model')} available" if result.models else ""
        ids = [m.id for m in result.models]
        if not model or not ids or model in ids:
            return f"Status check: OK{seen}.{fixed}"
        return (
            f"Status check: OK{seen}, but not {shown_id(model)}, so the endpoint may refuse it."
            f"{suggest(model, ids)} Pick one with {p}model.{fixed}"
        )
    if result.error_kind == "config":  # nothing to check yet: the next setup step
        return f"Next: {result.reason}"
    return (
        f"Status check failed: {result.reason}{fixed}\n"
        f"Fix it and run {p}connect again, or {p}connect bypass:on to chat anyway."
    )


def _scope_of(args: dict[str, Any]) -> Scope:
    """The scope asked for (the router already checked that it may be used here)."""
    return Scope.SERVER if args.get("scope") == "server" else Scope.CHANNEL


def _where(scope: Scope) -> str:
    return "this server" if scope is Scope.SERVER else "this channel"


_ORIGINS = {
    "channel": "this channel",
    "server": "server-wide",
    "operator": "operator default",
    "default": "built-in default",
}


def _from(config: ChannelConfig, name: str) -> str:
    """` (server-wide)`: where a shown value comes from."""
    return f" ({_ORIGINS[config.origins.get(name, 'default')]})"


def _overridden(config: ChannelConfig, scope: Scope, name: str) -> str:
    """After a server-wide change: a note when this channel's own value still wins here."""
    if scope is not Scope.SERVER or config.origins.get(name) != "channel":
        return ""
    shown = BY_NAME[name].show(config.value(name))
    return (
        f"\nThis channel has its own {name} ({shown}), which wins here; "
        f"`default` without scope:server removes it."
    )


async def _offered_models(ctx: CommandContext, config: ChannelConfig) -> list[str]:
    """The models /model offers: the source's own, then the endpoint's when shown (a
    source with no list of its own, custom, always shows the endpoint's).

    As on SillyTavern's page, the endpoint's models come after the source's list.
    """
    ids = list(BUILTIN_MODELS[config.source])
    if config.show_external_models or not ids:
        cached = await ctx.store.cached_models(ctx.ref, config.source) or []
        known = set(ids)
        ids += [m.id for m in cached if m.id not in known]
    return ids


async def model_choices(ctx: CommandContext, typed: str, limit: int = 25) -> list[str]:
    """Autocomplete for /model: offered ids containing what was typed, prefix matches first."""
    config = await ctx.store.effective_config(ctx.ref)
    needle = typed.strip().lower()
    ids = await _offered_models(ctx, config)
    hits = [m for m in ids if needle in m.lower()]
    # Prefix matches first; otherwise the offered order (the source's own, then the endpoint's).
    hits.sort(key=lambda m: not m.lower().startswith(needle))
    return hits[:limit]


async def set_source(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    scope = _scope_of(args)
    changes: dict[str, object]
    dropped = ""  # said when the model chosen for the old source goes
    source: Source | None = None  # the source chosen here (None: the next scope's)
    before: object = None
    old_model: object = None
    if args["source"] == DEFAULT:
        # The model was chosen for this scope's source: both follow the next scope now.
        changes = {"source": None, "model": None}
        said = f"{_where(scope).capitalize()} now uses the {_next_scope(ctx, scope)} source"
    else:
        source = Source(args["source"])
        if scope is Scope.SERVER:
            values = await ctx.store.scope_values(ctx.ref, scope)
            before, old_model = values.get("source"), values.get("model")
        else:
            config = await ctx.store.effective_config(ctx.ref)
            before, old_model = config.source, config.model
        changes = {"source": source.value}
        said = f"Source set to {source.value}"
        if scope is Scope.SERVER:
            said += " for this server"
    await ctx.store.update_config(ctx.ref, scope, ctx.actor, changes, action="source")
    result, checked = await _checked(ctx)
    if source is not None and before != source and old_model:
        # A model id belongs to one source; an old one would fail on the new source,
        # unless that source lists it too: its built-in list (`claude-sonnet-4-5` set
        # before `/source`), or what the endpoint listed to the check just run.
        if not await _known_to(ctx, source, old_model):
            drop = {"model": None}
            await ctx.store.update_config(ctx.ref, scope, ctx.actor, drop, action="source")
            was = before.value if isinstance(before, Source) else before or "the old source"
            dropped = f"{shown_id(str(old_model))} was the model for {was}, so "
            checked = _status_line(result, ctx.prefix)
    after = await ctx.store.effective_config(ctx.ref)
    if after.model:
        model = f"Model: {shown_id(after.model)}."
    elif dropped:
        model = f"{dropped}pick one for {after.source.value} with {ctx.prefix}model."
    elif result.error_kind == "config":
        model = ""  # the step the check names (a URL, a key) comes first; the model after
    else:
        model = f"Pick a model with {ctx.prefix}model."
    if args["source"] == DEFAULT:
        said += f" ({after.source.value})"
    if after.source is not Source.CUSTOM and after.proxy_url:
        # The URL set for custom stays: the new source is reached through it, as a proxy.
        said += f", through the proxy at {shown_id(after.proxy_url)} ({_unproxied(after, ctx)})"
    note = _overridden(after, scope, "source")
    return Reply(f"{' '.join(filter(None, (said + '.', model)))}{note}\n{checked}")


def _unproxied(config: ChannelConfig, ctx: CommandContext) -> str:
    """How to reach the source itself instead of through the proxy in use: clearing it
    where it was set (a channel's `/proxy clear` leaves a server's or the operator's)."""
    reach = f"to reach {config.source.value} itself"
    origin = config.origins.get("proxy_url")
    if origin == "server":
        return f"the server's; {ctx.prefix}proxy clear scope:server {reach}"
    if origin == "operator":
        return "the operator's DEFAULT_PROXY_URL"
    return f"{ctx.prefix}proxy clear {reach}"


def _next_scope(ctx: CommandContext, scope: Scope) -> str:
    """Whose value applies once `scope`'s own is gone."""
    if scope is Scope.SERVER or not ctx.ref.has_server:
        return "operator's"
    return "server's (or operator's)"


async def key_set(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    source = Source(args["source"])
    scope = _scope_of(args)
    key: SecretValue = args["key"]
    await ctx.store.set_secret(ctx.ref, scope, api_key_name(source), key, ctx.actor)
    shown = f" (ends …{key.last4})" if key.last4 else ""
    text = f"Saved the {source.value} key for {_where(scope)}{shown}."
    if source is not Source.CLAUDE and key.reveal().startswith("sk-ant-"):
        text += (
            f" It looks like a Claude key (sk-ant-…): {ctx.prefix}key set claude stores it "
            "for Claude."
        )
    config = await ctx.store.effective_config(ctx.ref)
    if config.source is source:
        # Saved, but another secret may go in its place (Matrix probe: said only by
        # /settings, so the status check's OK read as the key working).
        not_sent = await _key_not_sent(ctx, config)
        if not_sent:
            text += f" It is kept{not_sent}."
        text += "\n" + (await _checked(ctx))[1]
    else:
        text += f" This channel uses {config.source.value}; {ctx.prefix}source {source.value} "
        text += "switches to it."
    return Reply(text)


async def key_clear(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    source = Source(args["source"])
    scope = _scope_of(args)
    removed = await ctx.store.clear_secret(ctx.ref, scope, api_key_name(source), ctx.actor)
    if not removed:
        return Reply(f"No {source.value} key was stored for {_where(scope)}.", ok=False)
    text = f"Removed the {source.value} key for {_where(scope)}."
    if (await ctx.store.effective_config(ctx.ref)).source is source:
        # The last check passed with that key: check again, or /settings keeps saying OK.
        text += "\n" + (await _checked(ctx))[1]
    return Reply(text)


async def proxy_set(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    password: SecretValue | None = args.get("password")
    if password is not None and password.reveal().startswith("/"):
        # `/proxy set http://host:1234 /v1`: the rest of the URL, typed after a space, was
        # read as the password. Said so, and nothing is saved or sent anywhere.
        raise CommandError(
            "Nothing was saved: the password would start with /, which looks like the rest "
            "of the URL typed after a space. Type the URL without the space; a password "
            f"goes after the URL or in {ctx.prefix}proxy password."
        )
    base, cut = endpoint_url(args["url"])
    try:
        url = await ctx.hub.policy.check(base)
    except EndpointRefused as err:
        raise CommandError(str(err)) from None
    # URL and password change together: an old password must not follow the channel to
    # a new host, and a command is applied whole or not at all. A password saved while
    # no URL was set (`/proxy password` first) was meant for this one, and stays.
    # The same server again (`/v1` or a route pasted this time) keeps it too.
    scope = _scope_of(args)
    before = (await ctx.store.effective_config(ctx.ref)).proxy_url
    kept = password is None and (not before or _origin(before) == _origin(url))
    has_one = kept and await _secret_state(ctx, PROXY_PASSWORD) != "not set"
    cleared = await ctx.store.update_config(
        ctx.ref,
        scope,
        ctx.actor,
        {"proxy_url": url, "resolved_url": None},
        action="proxy set",
        secrets={} if kept else {PROXY_PASSWORD: password},
    )
    if password is not None:
        note = " with a password"
    elif has_one:
        note = " with the proxy password saved before" + (" it" if not before else "")
    elif cleared.get(PROXY_PASSWORD):
        note = " (the previous proxy password was removed)"
    else:
        note = ""
    lines = [f"Endpoint set to {url}{note}{' for this server' * (scope is Scope.SERVER)}."]
    if cut:
        lines.append(cut)
    overridden = _overridden(await ctx.store.effective_config(ctx.ref), scope, "proxy_url")
    if overridden:
        lines.append(overridden.strip())
    result, checked = await _checked(ctx)
    lines.append(checked)
    if password is None and result.error_kind == "auth":
        lines.append(f"If the endpoint wants a password, set it with {ctx.prefix}proxy password.")
    return Reply("\n".join(lines))


def _origin(url: str) -> tuple[str, str]:
    """Scheme and host:port: which server a URL reaches (what a password belongs to)."""
    scheme, _, rest = url.partition("://")
    return scheme.lower(), rest.split("/", 1)[0].lower()


async def proxy_password(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    password: SecretValue = args["password"]
    await ctx.store.set_secret(ctx.ref, _scope_of(args), PROXY_PASSWORD, password, ctx.actor)
    shown = f" (ends …{password.last4})" if password.last4 else ""
    if not config.proxy_url:  # steps in either order: the URL comes next
        return Reply(
            f"Saved the proxy password{shown}. It goes to the endpoint you set next with "
            f"{ctx.prefix}proxy set <url>."
        )
    checked = (await _checked(ctx))[1]
    return Reply(f"Saved the proxy password{shown}.\n{checked}")


async def proxy_clear(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    scope = _scope_of(args)
    await ctx.store.update_config(
        ctx.ref,
        scope,
        ctx.actor,
        {"proxy_url": None, "resolved_url": None},
        action="proxy clear",
        secrets={PROXY_PASSWORD: None},
    )
    await ctx.store.record_status(ctx.ref, None, None)
    return Reply(f"Removed the proxy URL and password for {_where(scope)}.")


async def _secret_state(ctx: CommandContext, name: str, config: ChannelConfig | None = None) -> str:
    """`set (…abcd, channel)`, `not set`, or `unreadable …` for a secret; with `config`,
    also when it is kept from the channel's endpoint URL (`withheld`)."""
    try:
        origin = await ctx.store.secret_origin(ctx.ref, name)
    except SecretUnreadable:
        return (
            "unreadable (stored under an encryption key this bot's BOT_SECRET_KEYS lacks: "
            "the operator restarts it with that key, or an admin sets it again)"
        )
    if origin is None:
        return "not set"
    where, last4 = origin
    state = f"set (…{last4}, {where})" if last4 else f"set ({where})"
    # Behind a proxy only a custom source's key and the proxy password go to that URL.
    sent_there = name == PROXY_PASSWORD or (config is not None and config.source is Source.CUSTOM)
    if config is not None and sent_there and withheld(where, config):
        how = (
            f"{ctx.prefix}proxy password"
            if name == PROXY_PASSWORD
            else f"{ctx.prefix}key set {config.source.value}"
        )
        url_from = _ORIGINS[config.origins.get("proxy_url", "default")]
        state += f", not sent to an endpoint URL set {url_from}: set one for it with {how}"
    return state


async def _key_not_sent(ctx: CommandContext, config: ChannelConfig) -> str:
    """Why the channel's stored key is not what its requests carry, as the connection
    decides it (Endpoint.credential); "" when it is, or when there is none. (A key kept
    from the channel's URL is said by _secret_state.)"""
    try:
        stored = await ctx.store.resolve_secret(ctx.ref, api_key_name(config.source))
        endpoint = await endpoint_for(ctx.store, ctx.ref, config, ctx.prefix)
    except (NotConnectable, SecretUnreadable):
        return ""  # /settings says what is missing or unreadable on its own lines
    if stored is None:
        return ""
    sent = replace(endpoint, api_key=stored).credential()
    if sent is stored:
        return ""
    if sent is not None and sent is endpoint.proxy_password:
        return ", not sent: the proxy password is, in its place"
    return f", not sent: behind a proxy URL the {config.source.value} key never is"


async def proxy_show(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    if not config.proxy_url:
        return Reply(f"No proxy URL is set. Set one with {ctx.prefix}proxy set <url>.")
    lines = [f"Proxy URL: {config.proxy_url}"]
    if config.resolved_url and config.resolved_url != config.proxy_url:
        lines.append(f"In use: {config.resolved_url} (/v1 added automatically)")
    lines.append(f"Password: {await _secret_state(ctx, PROXY_PASSWORD, config)}")
    return Reply("\n".join(lines))


async def connect(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    lines = []
    if "bypass" in args:
        scope = _scope_of(args)
        await ctx.store.update_config(
            ctx.ref,
            scope,
            ctx.actor,
            {"bypass_status_check": args["bypass"]},
            action="connect bypass",
        )
        where = " for this server" if scope is Scope.SERVER else ""
        lines.append(f"Bypass API status check{where}: {'on' if args['bypass'] else 'off'}.")
    result, checked = await _checked(ctx)
    lines.append(checked)
    if result.error_kind == "config":  # no URL or key yet: bypass has nothing to let through
        return Reply("\n".join(lines), ok=False)
    if not result.ok and (await ctx.store.effective_config(ctx.ref)).bypass_status_check:
        lines[-1] = f"Status check failed: {result.reason}\nBypass is on, so chat goes through."
    return Reply("\n".join(lines), ok=result.ok)


def _list(ids: list[str], narrow: str = "") -> str:
    """Ids, the first _MAX_LISTED of them; `narrow`: how to see the rest."""
    shown = ", ".join(map(shown_id, ids[:_MAX_LISTED]))
    more = len(ids) - _MAX_LISTED
    return shown + (f" … and {more} more{narrow}" if more > 0 else "")


async def models_list(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    ids = await _offered_models(ctx, config)
    wanted: str = args.get("filter", "").strip()
    if wanted:
        ids = [i for i in ids if wanted.casefold() in i.casefold()]
        if not ids:
            return Reply(f"No {config.source.value} model id here contains {quoted(wanted, 100)}.")
    if not BUILTIN_MODELS[config.source]:
        where = "the endpoint"
    elif not config.show_external_models:
        where = "the built-in list"
    else:
        where = "the built-in list, then the endpoint's"
    if not ids:
        return Reply(
            f"No models known for {config.source.value}. Run {ctx.prefix}models external "
            "to fetch them from the endpoint."
        )
    current = f"\nIn use: {shown_id(config.model)}" if config.model else ""
    listed = _list(ids, _NARROW.format(p=ctx.prefix))
    return Reply(f"{config.source.value} models ({where}): {listed}{current}")


async def _known_to(ctx: CommandContext, source: Source, model: object) -> bool:
    """Whether `model` is in `source`'s built-in list or its list fetched here."""
    if not isinstance(model, str) or not model:
        return False
    if model in BUILTIN_MODELS[source]:
        return True
    fetched = await ctx.store.cached_models(ctx.ref, source)
    return any(m.id == model for m in fetched or ())


async def models_external(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    scope = _scope_of(args)
    if not args.get("state", True):
        await ctx.store.update_config(
            ctx.ref, scope, ctx.actor, {"show_external_models": False}, action="models"
        )
        where = " for this server" if scope is Scope.SERVER else ""
        return Reply(
            f"Show external models{where}: off. {ctx.prefix}model offers the built-in list."
        )
    config = await ctx.store.effective_config(ctx.ref)
    endpoint = await endpoint_for(ctx.store, ctx.ref, config, ctx.prefix)
    try:
        models: list[ModelInfo] = await ctx.hub.provider(endpoint).list_models()
    except NotFoundError:
        return Reply(
            "The endpoint has no model list (HTTP 404 for /models): some servers offer "
            f"none. Type the model id with {ctx.prefix}model <id>; if chat fails too, check "
            f"the URL ({ctx.prefix}proxy show).",
            ok=False,
        )
    if not models:
        return Reply("The endpoint reported no models. Check the URL and key.", ok=False)
    await ctx.store.cache_models(ctx.ref, config.source, models)
    changes: dict[str, object] = {"show_external_models": True}
    ids = [m.id for m in models]
    note = ""
    if config.model and config.model not in ids:
        # Listing is for browsing: a model that answers stays (any id is accepted).
        note = (
            f"\nThe list does not name {shown_id(config.model)}; it stays selected. "
            f"If chat fails, pick one of these with {ctx.prefix}model."
        )
    await ctx.store.update_config(ctx.ref, scope, ctx.actor, changes, action="models")
    offered = _list(ids, _NARROW.format(p=ctx.prefix))
    return Reply(f"Show external models: on. The endpoint offers: {offered}{note}")


async def set_model(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    model: str = args["id"]
    scope = _scope_of(args)
    if model.lower() == DEFAULT:
        await ctx.store.update_config(ctx.ref, scope, ctx.actor, {"model": None}, action="model")
        after = await ctx.store.effective_config(ctx.ref)
        now = after.model or "none yet"
        return Reply(
            f"{_where(scope).capitalize()} now uses the {_next_scope(ctx, scope)} model ({now})."
        )
    config = await ctx.store.effective_config(ctx.ref)
    await ctx.store.update_config(ctx.ref, scope, ctx.actor, {"model": model}, action="model")
    where = " for this server" if scope is Scope.SERVER else ""
    warning = await _model_warning(ctx, config, model)
    overridden = _overridden(config, scope, "model")
    return Reply(f"Model set to {shown_id(model)}{where}.{warning}{overridden}")


async def _model_warning(ctx: CommandContext, config: ChannelConfig, model: str) -> str:
    """Any id is accepted (new models appear before lists know them); say when it looks off.

    Only a list the endpoint itself reported, or the built-in list of a vendor's own
    endpoint, can make an id look unknown.
    """
    builtin = BUILTIN_MODELS[config.source]
    fetched = await ctx.store.cached_models(ctx.ref, config.source)
    listed = [m.id for m in fetched] if fetched else []
    if model in builtin or model in listed:
        return ""
    p = ctx.prefix
    if listed:
        return (
            f"\nWarning: the endpoint's model list does not include {quoted(model)}."
            f"{suggest(model, listed)} If chat fails, check the spelling ({p}models list)."
        )
    if config.proxy_url or config.source is Source.CUSTOM:
        return ""
    close = suggest(model, list(builtin))
    return (
        f"\nNote: {quoted(model)} is not in the bot's {config.source.value} list.{close} New "
        f"models work before the list knows them; if chat fails, check the spelling "
        f"({p}models external lists what the endpoint offers)."
    )


def _settings_lines(config: ChannelConfig) -> list[str]:
    """`Params (server-wide): name=value, …`: the parameters set, grouped by where."""
    by_origin: dict[str, list[str]] = {}
    for field in PARAMS:
        origin = config.origins.get(field.name, "default")
        if origin != "default":
            value = field.show(config.value(field.name))
            by_origin.setdefault(origin, []).append(f"{field.name}={value}{_only_for(field)}")
    return [
        f"Params ({_ORIGINS[origin]}): {', '.join(by_origin[origin])}"
        for origin in ("channel", "server", "operator")
        if origin in by_origin
    ]


def _only_for(field: Field) -> str:
    if field.sources is None:
        return ""
    return f" ({', '.join(sorted(s.value for s in field.sources))} only)"


async def show_settings(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    status = "not checked yet"
    if config.status is not None:
        status = "OK" if config.status.ok else f"failed — {config.status.reason}"
    endpoint = config.resolved_url or config.proxy_url
    own_endpoint = "(the source’s own)"
    if config.source is Source.CUSTOM:  # a custom source has none of its own
        own_endpoint = f"(none yet: set one with {ctx.prefix}proxy set <url>)"
    model = shown_id(config.model) + _from(config, "model") if config.model else "(not set)"
    lines = [
        f"Source: {config.source.value}{_from(config, 'source')}",
        f"Model: {model}",
        f"Endpoint: {endpoint + _from(config, 'proxy_url') if endpoint else own_endpoint}",
    ]
    key = await _secret_state(ctx, api_key_name(config.source), config)
    password = await _secret_state(ctx, PROXY_PASSWORD, config)
    lines.append(f"API key: {key}{await _key_not_sent(ctx, config)}")
    if config.proxy_url:
        lines.append(f"Proxy password: {password}")
    elif password != "not set":  # saved first: it goes to the URL set next
        lines.append(f"Proxy password: {password}, waiting for {ctx.prefix}proxy set <url>")
    lines += [
        f"Status: {status}",
        f"Bypass status check: {'on' if config.bypass_status_check else 'off'}"
        + _from(config, "bypass_status_check"),
        f"Show external models: {'on' if config.show_external_models else 'off'}"
        + _from(config, "show_external_models"),
        f"Reply mode: {config.reply_mode.value}{_from(config, 'reply_mode')}",
    ]
    for setting, title in PROMPTS.values():
        text = config.value(setting)
        if isinstance(text, str) and text:
            shown = await _prompt_text(ctx, config, text)
            lines.append(f"{title[0].upper()}{title[1:]}{_from(config, setting)}: {shown}")
    lines += _settings_lines(config)
    character = await ctx.store.character(ctx.ref)
    if character is not None:
        where = _ORIGINS["server" if character.scope is Scope.SERVER else "channel"]
        lines.append(f"Character: {character.name} ({where})")
    held = await limits_here(ctx.store, ctx.gate, ctx.ref)
    if held:
        limits = ", ".join(f"{name.value} {value.value:,}" for name, value in held.items())
        lines.append(f"Limits: {limits} ({ctx.prefix}limits shows what you have left)")
    lines.append(await access_summary(ctx))
    if ctx.is_admin:
        # Who changed what last: with several admins, the first question after a surprise.
        for entry in await ctx.store.audit_entries(ctx.ref, 1):
            where = "server-wide" if entry.scope is Scope.SERVER else "here"
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
}


async def set_system(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    return await _set_prompt(ctx, "main", args.get("prompt"), args, action="system")


async def set_prompt(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    which: str | None = args.get("name")
    if which is None:
        config = await ctx.store.effective_config(ctx.ref)
        wider = "the server's" if ctx.ref.has_server else "the operator's"
        lines = [f"Prompts (`none`: none here, `default`: {wider}):"]
        for name, (setting, _) in PROMPTS.items():
            text = config.value(setting)
            shown = await _prompt_text(ctx, config, text) if isinstance(text, str) and text else ""
            lines.append(f"  {name}{_from(config, setting)}: {shown or '(none)'}")
        lines.append(f"Set one with {ctx.prefix}prompts <name> <text>.")
        return Reply("\n".join(lines))
    return await _set_prompt(ctx, which, args.get("text"), args, action="prompts")


async def _prompt_text(ctx: CommandContext, config: ChannelConfig, text: str) -> str:
    """A stored prompt as /settings and /prompts show it: cleaned of this channel's
    secrets, at most 200 characters."""
    (shown,) = await shown_here(ctx.store, ctx.ref, config, [text])
    return shown[:200] + "…" if len(shown) > 200 else shown


async def _set_prompt(
    ctx: CommandContext, which: str, prompt: str | None, args: dict[str, Any], action: str
) -> Reply:
    setting, title = PROMPTS[which]
    if prompt is None:  # whole, as an admin may want to copy it; cleaned as everywhere
        config = await ctx.store.effective_config(ctx.ref)
        text = config.value(setting)
        shown = "(none)"
        if isinstance(text, str) and text:
            (shown,) = await shown_here(ctx.store, ctx.ref, config, [text])
        return Reply(f"{title[0].upper()}{title[1:]}: {shown}")
    scope = _scope_of(args)
    # `none`: no prompt here, even if the server has one; `default`: the next scope's.
    # As typed on any keyboard (fullwidth `ｎｏｎｅ`) or in a code span.
    word = unicodedata.normalize("NFKC", prompt).strip().strip("`").strip().lower()
    value = "" if word == "none" else None if word == DEFAULT else prompt
    config = await ctx.store.effective_config(ctx.ref)
    if value and (await secret_check(ctx.store, ctx.ref, config))(value):
        raise CommandError(HELD_IN_SETTING.format(what=title, prefix=ctx.prefix))
    await ctx.store.update_config(ctx.ref, scope, ctx.actor, {setting: value}, action=action)
    where = " for this server" if scope is Scope.SERVER else ""
    if value is None:
        said = f"{_where(scope).capitalize()} now uses the {_next_scope(ctx, scope)} {title}."
    else:
        said = f"{title[0].upper()}{title[1:]} {'removed' if value == '' else 'set'}{where}."
    config = await ctx.store.effective_config(ctx.ref)
    return Reply(said + _overridden(config, scope, setting))


def _param_line(field: Field, config: ChannelConfig) -> str:
    value = field.show(config.value(field.name))
    note = f"; {_only_for(field).strip(' ()')}" if field.sources is not None else ""
    if note and not field.applies_to(config.source):
        note += f", this channel uses {config.source.value}"
    return f"  {field.name} = {value}  ({field.takes()}: {field.help}{note})"


async def set_param(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    p = ctx.prefix
    config = await ctx.store.effective_config(ctx.ref)
    name: str | None = args.get("name")
    if name is None:
        lines = ["Parameters (`default`: the provider's own):"]
        lines += [_param_line(field, config) for field in PARAMS]
        lines.append(f"Set one with {p}params <name> <value>; {p}params <name> default removes it.")
        return Reply("\n".join(lines))
    field = BY_NAME[name]
    text: str | None = args.get("value")
    if text is None:
        return Reply(
            _param_line(field, config).strip() + f"\nSet it with {p}params {name} <value>."
        )
    try:
        value = None if text.strip().lower() == "default" else field.parse(text)
    except FieldError as err:
        raise CommandError(str(err)) from None
    scope = _scope_of(args)
    await ctx.store.update_config(ctx.ref, scope, ctx.actor, {field.key: value}, action="params")
    overridden = _overridden(config, scope, name)
    if value is None:
        return Reply(f"{name} now follows the {_next_scope(ctx, scope)} value.{overridden}")
    note = ""
    if not field.applies_to(config.source):
        only = _only_for(field).strip(" ()")
        note = f" It applies to {only}; this channel uses {config.source.value}."
    where = " for this server" if scope is Scope.SERVER else ""
    if name in ("max_tokens", "context"):
        note += _room_left(await ctx.store.effective_config(ctx.ref), p)
    return Reply(f"{name} set to {field.show(value)}{where}.{note}{overridden}")


def _room_left(config: ChannelConfig, p: str) -> str:
    """A warning when the answer's length takes most of the context: the conversation,
    trimmed to what is left, would be little or none of it."""
    answer = config.number("max_tokens")
    context = config.number("context")
    size, room = conversation_room(context, answer)
    if answer is None or room >= size // 4:
        return ""
    assumed = "" if context else f" (assumed: {p}params context is unset)"
    return (
        f" Note: max_tokens {answer:,} leaves {max(0, room):,} of the {size:,}-token "
        f"context{assumed} for the conversation, so the model reads little or none of what "
        f"came before. Set {p}params context to the model's context size, or lower "
        "max_tokens."
    )


async def set_reply_mode(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    mode: str = args["mode"]
    scope = _scope_of(args)
    value = None if mode == DEFAULT else mode
    await ctx.store.update_config(
        ctx.ref, scope, ctx.actor, {"reply_mode": value}, action="reply mode"
    )
    config = await ctx.store.effective_config(ctx.ref)
    where = "in this server's channels" if scope is Scope.SERVER else "in this channel"
    said = {
        "always": f"Reply mode: always — the bot answers every message {where}.",
        "mention": "Reply mode: mention — the bot answers when mentioned or replied to.",
    }.get(
        mode,
        f"{_where(scope).capitalize()} now uses the {_next_scope(ctx, scope)} reply mode "
        f"({config.reply_mode.value}).",
    )
    return Reply(said + _overridden(config, scope, "reply_mode"))


async def reset(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    count = await ctx.store.clear_history(ctx.ref, ctx.actor)
    return Reply(f"Forgot {count} message(s); the conversation starts fresh.")


def help_text(
    table: tuple[Command, ...], prefix: str, topic: Source | None = None, secret: str = ""
) -> str:
    """Setup steps per source and every command, generated from the table; `secret` is
    how this platform takes a secret after its command (`{what}`: key or password)."""
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
            lines.append(f" {mark} {prefix}{' '.join(path)} — {command.help}")
    return "\n".join(lines)


async def show_help(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    topic = Source(args["topic"]) if "topic" in args else None
    if ctx.ref.platform is Platform.MATRIX:  # no private form: the key goes in a DM
        # A room with just the asker and the bot counts as a direct chat: "not here" was
        # wrong there. Said so it reads right in either kind of room.
        secret = (
            f" <{{what}}> room:{ctx.ref.channel_id}  (sent in a direct chat with the bot: a "
            "room with just you and it that nobody joins unasked)"
        )
    else:
        secret = "  (asked for privately)"
    text = help_text(ctx.table, ctx.prefix, topic, secret)
    if ctx.ref.platform is Platform.CONSOLE and topic is None:
        if ctx.actor.id == "console":
            who = (
                "an admin: it is the operator's own terminal. `chatbot console --user ID` "
                "shows what that user may do (ADMIN_IDS decides)."
            )
        else:
            role = "an admin (ADMIN_IDS lists it)" if ctx.is_admin else "not an admin"
            who = f"user {ctx.actor.id}, {role}."
        text += (
            "\n   /attach <path> — Attach a file (an image, a text file, a PDF) to your next "
            f"message; /attach alone lists them, /attach clear drops them.\n   /quit or /exit — "
            f"Leave (as Ctrl-D).\nIn this console "
            f"you are {who}"
        )
    return Reply(text)
