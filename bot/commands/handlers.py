"""What each command in the table does. One function per leaf command."""

from __future__ import annotations

from typing import Any

from bot.commands.catalog import BUILTIN_MODELS, SETUP_STEPS
from bot.commands.context import CommandContext
from bot.commands.parse import CommandError, coerce, suggest
from bot.commands.table import Command, Kind, Option, walk
from bot.connection import PROXY_PASSWORD, endpoint_for, run_status_check
from bot.providers import StatusResult
from bot.providers.policy import EndpointRefused
from bot.store import api_key_name
from bot.types import ChannelConfig, ModelInfo, Reply, Scope, SecretValue, Source

_MAX_LISTED = 60


def _status_line(result: StatusResult, p: str) -> str:
    if result.ok:
        seen = f" — {len(result.models)} models available" if result.models else ""
        fixed = f"\nUsing {result.base_url} (added /v1 for you)." if result.corrected else ""
        return f"Status check: OK{seen}.{fixed}"
    return (
        f"Status check failed: {result.reason}\n"
        f"Fix it and run {p}connect again, or {p}connect bypass:on to chat anyway."
    )


async def _offered_models(ctx: CommandContext, config: ChannelConfig) -> list[str]:
    """The models /model offers: the endpoint's list when shown, else the built-in one."""
    if config.show_external_models:
        cached = await ctx.store.cached_models(ctx.ref, config.source)
        if cached:
            return [m.id for m in cached]
    return list(BUILTIN_MODELS[config.source])


async def model_choices(ctx: CommandContext, typed: str, limit: int = 25) -> list[str]:
    """Autocomplete for /model: offered ids containing what was typed, prefix matches first."""
    config = await ctx.store.effective_config(ctx.ref)
    needle = typed.strip().lower()
    ids = await _offered_models(ctx, config)
    hits = [m for m in ids if needle in m.lower()]
    hits.sort(key=lambda m: (not m.lower().startswith(needle), m))
    return hits[:limit]


async def set_source(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    source = Source(args["source"])
    before = await ctx.store.effective_config(ctx.ref)
    changes: dict[str, object] = {"source": source.value}
    if before.source is not source:
        # A model id belongs to one source; an old one would fail on the new source.
        changes["model"] = None
    await ctx.store.update_config(ctx.ref, Scope.CHANNEL, ctx.actor, changes, action="source")
    result = await run_status_check(ctx.store, ctx.hub, ctx.ref, ctx.prefix)
    after = await ctx.store.effective_config(ctx.ref)
    model = f"Model: {after.model}." if after.model else f"Pick a model with {ctx.prefix}model."
    return Reply(f"Source set to {source.value}. {model}\n{_status_line(result, ctx.prefix)}")


def _scope(ctx: CommandContext, args: dict[str, Any]) -> Scope:
    if args.get("scope") != "server":
        return Scope.CHANNEL
    if not ctx.ref.has_server:
        raise CommandError("There is no server here; the key applies to this channel only.")
    if not ctx.is_server_admin:
        raise CommandError("Only server admins can set server-wide keys.")
    return Scope.SERVER


async def key_set(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    source = Source(args["source"])
    scope = _scope(ctx, args)
    key: SecretValue = args["key"]
    await ctx.store.set_secret(ctx.ref, scope, api_key_name(source), key, ctx.actor)
    where = "this server" if scope is Scope.SERVER else "this channel"
    text = f"Saved the {source.value} key for {where} (ends …{key.last4 or '****'})."
    config = await ctx.store.effective_config(ctx.ref)
    if config.source is source:
        result = await run_status_check(ctx.store, ctx.hub, ctx.ref, ctx.prefix)
        text += "\n" + _status_line(result, ctx.prefix)
    else:
        text += f" This channel uses {config.source.value}; {ctx.prefix}source {source.value} "
        text += "switches to it."
    return Reply(text)


async def key_clear(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    source = Source(args["source"])
    scope = _scope(ctx, args)
    removed = await ctx.store.clear_secret(ctx.ref, scope, api_key_name(source), ctx.actor)
    where = "this server" if scope is Scope.SERVER else "this channel"
    if not removed:
        return Reply(f"No {source.value} key was stored for {where}.", ok=False)
    return Reply(f"Removed the {source.value} key for {where}.")


async def proxy_set(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    try:
        url = await ctx.hub.policy.check(args["url"])
    except EndpointRefused as err:
        raise CommandError(str(err)) from None
    changes: dict[str, object] = {"proxy_url": url, "resolved_url": None}
    await ctx.store.update_config(ctx.ref, Scope.CHANNEL, ctx.actor, changes, action="proxy set")
    password: SecretValue | None = args.get("password")
    if password is not None:
        await ctx.store.set_secret(ctx.ref, Scope.CHANNEL, PROXY_PASSWORD, password, ctx.actor)
        note = " with a password"
    else:
        # An old password must not follow the channel to a new host.
        cleared = await ctx.store.clear_secret(ctx.ref, Scope.CHANNEL, PROXY_PASSWORD, ctx.actor)
        note = " (the previous proxy password was removed)" if cleared else ""
    result = await run_status_check(ctx.store, ctx.hub, ctx.ref, ctx.prefix)
    return Reply(f"Endpoint set to {url}{note}.\n{_status_line(result, ctx.prefix)}")


async def proxy_clear(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    changes: dict[str, object] = {"proxy_url": None, "resolved_url": None}
    await ctx.store.update_config(ctx.ref, Scope.CHANNEL, ctx.actor, changes, action="proxy clear")
    await ctx.store.record_status(ctx.ref, None, None)
    await ctx.store.clear_secret(ctx.ref, Scope.CHANNEL, PROXY_PASSWORD, ctx.actor)
    return Reply("Removed the proxy URL and password for this channel.")


async def proxy_show(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    if not config.proxy_url:
        return Reply(f"No proxy URL is set. Set one with {ctx.prefix}proxy set <url>.")
    lines = [f"Proxy URL: {config.proxy_url}"]
    if config.resolved_url and config.resolved_url != config.proxy_url:
        lines.append(f"In use: {config.resolved_url} (/v1 added automatically)")
    origin = await ctx.store.secret_origin(ctx.ref, PROXY_PASSWORD)
    lines.append(f"Password: set (…{origin[1]})" if origin else "Password: not set")
    return Reply("\n".join(lines))


async def connect(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    lines = []
    if "bypass" in args:
        await ctx.store.update_config(
            ctx.ref,
            Scope.CHANNEL,
            ctx.actor,
            {"bypass_status_check": args["bypass"]},
            action="connect bypass",
        )
        lines.append(f"Bypass API status check: {'on' if args['bypass'] else 'off'}.")
    result = await run_status_check(ctx.store, ctx.hub, ctx.ref, ctx.prefix)
    lines.append(_status_line(result, ctx.prefix))
    if not result.ok and (await ctx.store.effective_config(ctx.ref)).bypass_status_check:
        lines[-1] = f"Status check failed: {result.reason}\nBypass is on, so chat goes through."
    return Reply("\n".join(lines), ok=result.ok)


def _list(ids: list[str]) -> str:
    shown = ", ".join(ids[:_MAX_LISTED])
    more = len(ids) - _MAX_LISTED
    return shown + (f" … and {more} more" if more > 0 else "")


async def models_list(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    ids = await _offered_models(ctx, config)
    where = "the endpoint" if config.show_external_models else "the built-in list"
    if not ids:
        return Reply(
            f"No models known for {config.source.value}. Run {ctx.prefix}models external "
            "to fetch them from the endpoint."
        )
    current = f"\nIn use: {config.model}" if config.model else ""
    return Reply(f"{config.source.value} models ({where}): {_list(ids)}{current}")


async def models_external(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    if not args.get("state", True):
        await ctx.store.update_config(
            ctx.ref, Scope.CHANNEL, ctx.actor, {"show_external_models": False}, action="models"
        )
        return Reply(f"Show external models: off. {ctx.prefix}model offers the built-in list.")
    config = await ctx.store.effective_config(ctx.ref)
    endpoint = await endpoint_for(ctx.store, ctx.ref, config, ctx.prefix)
    models: list[ModelInfo] = await ctx.hub.provider(endpoint).list_models()
    if not models:
        return Reply("The endpoint reported no models. Check the URL and key.", ok=False)
    await ctx.store.cache_models(ctx.ref, config.source, models)
    changes: dict[str, object] = {"show_external_models": True}
    ids = [m.id for m in models]
    note = ""
    if config.model and config.model not in ids:
        changes["model"] = None
        note = f"\nThe endpoint does not offer {config.model}, so it was unset; pick one."
    await ctx.store.update_config(ctx.ref, Scope.CHANNEL, ctx.actor, changes, action="models")
    return Reply(f"Show external models: on. The endpoint offers: {_list(ids)}{note}")


async def set_model(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    model: str = args["id"]
    config = await ctx.store.effective_config(ctx.ref)
    offered = await _offered_models(ctx, config)
    warning = ""
    if model not in offered:
        if config.source is not Source.CUSTOM:
            hint = (
                ""
                if config.show_external_models
                else f" If it is new, run {ctx.prefix}models external to fetch the real list."
            )
            raise CommandError(
                f"{config.source.value} does not offer `{model}`.{suggest(model, offered)}"
                f" See {ctx.prefix}models list.{hint}"
            )
        warning = (
            "\nWarning: the endpoint did not list this model; check the spelling if chat fails."
        )
    await ctx.store.update_config(
        ctx.ref, Scope.CHANNEL, ctx.actor, {"model": model}, action="model"
    )
    return Reply(f"Model set to {model}.{warning}")


async def show_settings(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    p = config.params
    key = await ctx.store.secret_origin(ctx.ref, api_key_name(config.source))
    password = await ctx.store.secret_origin(ctx.ref, PROXY_PASSWORD)
    status = "not checked yet"
    if config.status is not None:
        status = "OK" if config.status.ok else f"failed — {config.status.reason}"
    prompt = config.system_prompt or "(none)"
    if len(prompt) > 200:
        prompt = prompt[:200] + "…"
    lines = [
        f"Source: {config.source.value}",
        f"Model: {config.model or '(not set)'}",
        f"Endpoint: {config.resolved_url or config.proxy_url or '(default)'}",
        f"API key: {f'set (…{key[1]}, {key[0]})' if key else 'not set'}",
        f"Proxy password: {f'set (…{password[1]})' if password else 'not set'}",
        f"Status: {status}",
        f"Bypass status check: {'on' if config.bypass_status_check else 'off'}",
        f"Show external models: {'on' if config.show_external_models else 'off'}",
        f"Reply mode: {config.reply_mode.value}",
        f"System prompt: {prompt}",
        "Params: "
        + ", ".join(
            f"{name}={value}"
            for name, value in (
                ("temperature", p.temperature),
                ("top_p", p.top_p),
                ("max_tokens", p.max_tokens),
                ("context", p.context_tokens),
                ("seed", p.seed),
                ("stop", list(p.stop) or None),
            )
            if value is not None
        )
        or "Params: provider defaults",
        f"Show reasoning: {'on' if config.show_reasoning else 'off'}",
    ]
    if config.source is Source.MISTRAL:
        lines.append(f"Mistral safe prompt: {'on' if config.mistral_safe_prompt else 'off'}")
    return Reply("\n".join(lines))


async def set_system(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    prompt: str | None = args.get("prompt")
    if prompt is None:
        config = await ctx.store.effective_config(ctx.ref)
        return Reply(f"System prompt: {config.system_prompt or '(none)'}")
    value = None if prompt.lower() == "none" else prompt
    await ctx.store.update_config(
        ctx.ref, Scope.CHANNEL, ctx.actor, {"system_prompt": value}, action="system"
    )
    return Reply("System prompt removed." if value is None else "System prompt set.")


def _number(text: str, name: str, lo: float, hi: float, integer: bool) -> float | int:
    try:
        value: float | int = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise CommandError(f"{name} must be {kind}, not `{text}`.") from None
    if not lo <= value <= hi:
        raise CommandError(f"{name} must be between {lo:g} and {hi:g}.")
    return value


_PARAM_COLUMN = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_tokens",
    "context": "context_tokens",
    "seed": "seed",
    "stop": "stop",
    "reasoning": "show_reasoning",
    "safe_prompt": "mistral_safe_prompt",
}


def _param_value(name: str, text: str) -> object:
    if name == "temperature":
        return _number(text, name, 0, 2, integer=False)
    if name == "top_p":
        return _number(text, name, 0, 1, integer=False)
    if name == "max_tokens":
        return _number(text, name, 1, 1_000_000, integer=True)
    if name == "context":
        return _number(text, name, 256, 10_000_000, integer=True)
    if name == "seed":
        return _number(text, name, -(2**31), 2**31 - 1, integer=True)
    if name == "stop":
        stops = [s.strip() for s in text.split(",") if s.strip()]
        if len(stops) > 4 or any(len(s) > 100 for s in stops):
            raise CommandError("stop takes up to 4 comma-separated sequences of ≤100 characters.")
        return stops
    return bool(coerce(Option(name, Kind.SWITCH, name), text))


async def set_param(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    name: str = args["name"]
    text: str = args["value"]
    value = None if text.lower() == "default" else _param_value(name, text)
    await ctx.store.update_config(
        ctx.ref, Scope.CHANNEL, ctx.actor, {_PARAM_COLUMN[name]: value}, action="params"
    )
    if value is None:
        return Reply(f"{name} now follows the server/operator default.")
    shown = ", ".join(value) if isinstance(value, list) else value
    if isinstance(value, bool):
        shown = "on" if value else "off"
    return Reply(f"{name} set to {shown}.")


async def set_reply_mode(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    mode: str = args["mode"]
    await ctx.store.update_config(
        ctx.ref, Scope.CHANNEL, ctx.actor, {"reply_mode": mode}, action="reply mode"
    )
    if mode == "always":
        return Reply("Reply mode: always — the bot answers every message in this channel.")
    return Reply("Reply mode: mention — the bot answers when mentioned or replied to.")


async def reset(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    count = await ctx.store.clear_history(ctx.ref, ctx.actor)
    return Reply(f"Forgot {count} message(s); the conversation starts fresh.")


def help_text(table: tuple[Command, ...], prefix: str, topic: Source | None = None) -> str:
    """Setup steps per source and every command, generated from the table."""
    sources = [topic] if topic else list(Source)
    lines = ["How to connect:"]
    for source in sources:
        lines.append(f"{source.value}:")
        lines += [
            f"  {i}. {step.format(p=prefix)}" for i, step in enumerate(SETUP_STEPS[source], 1)
        ]
    if topic is None:
        lines.append("Commands (* = admins only):")
        for path, command in walk(table):
            mark = "*" if command.admin else " "
            lines.append(f" {mark} {prefix}{' '.join(path)} — {command.help}")
    return "\n".join(lines)


async def show_help(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    topic = Source(args["topic"]) if "topic" in args else None
    return Reply(help_text(ctx.table, ctx.prefix, topic))
