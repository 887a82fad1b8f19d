"""The endpoint's commands: source, key, proxy, status check, model lists and model."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from math import ceil
from typing import Any

from bot.commands.catalog import BUILTIN_MODELS
from bot.commands.parse import CommandError, suggest
from bot.commands.scopes import (
    next_scope,
    now_uses_next,
    origin_name,
    own_value_note,
    plural,
    scope_of,
    scope_place,
)
from bot.commands.spec import DEFAULT, CommandContext
from bot.connection import (
    ENDPOINT_SECRETS,
    PROXY_PASSWORD,
    NotConnectable,
    blocked_reason,
    clear_step,
    endpoint_for,
    endpoint_url,
    key_step,
    missing_url,
    password_step,
    provider_error_text,
    run_status_check,
    withheld,
)
from bot.providers import (
    MAX_MODELS,
    Endpoint,
    NotFoundError,
    ProviderError,
    StatusResult,
    maybe_cut,
)
from bot.providers.policy import EndpointRefused, server_of
from bot.store import FOLLOWING_CLEARED, SecretUnreadable, api_key_name
from bot.types import ChannelConfig, ModelInfo, Reply, Scope, SecretValue, Source, typed_as
from bot.types.secrets import MIN_SECRET_CHARS, too_short
from bot.types.text import quoted, seconds_in_words, shown_id, unmarked

_MAX_LISTED = 60


def _narrow(ctx: CommandContext) -> str:
    """How to see the ids a list leaves out: /models list's filter, which Discord fills
    only by name (it is optional there)."""
    narrowed = typed_as(("models", "list"), (("filter", "<text>"),), ctx.ref.platform, ctx.prefix)
    return f" ({narrowed} shows the ids containing it)"


async def _checked(ctx: CommandContext, *, model_step: bool = True) -> tuple[StatusResult, str]:
    """Run the channel's status check: its result, and the line that says it.

    `model_step`: a check that passed where no model is chosen yet also names that step
    (as chat would refuse it), unless the caller says it itself (/source)."""
    who = ctx.gate.operator.who_admins(ctx.ref)
    result = await run_status_check(ctx.store, ctx.hub, ctx.ref, ctx.prefix, ctx.is_admin, who)
    config = await ctx.store.effective_config(ctx.ref)
    line = _status_line(result, ctx.prefix, config.model, bypass=config.bypass_status_check)
    for name in (api_key_name(config.source), PROXY_PASSWORD):
        short = await _short_secret(ctx, name)
        if short:
            line += f"\n{short[0]} {short[1]}."
    if result.ok and model_step and not config.model:
        step = blocked_reason(config, ctx.prefix, ctx.is_admin, place=ctx.ref.place, who=who)
        line += f"\n{step}" if step else ""
    return result, line


def _status_line(
    result: StatusResult, p: str, model: str | None = None, *, bypass: bool = False
) -> str:
    fixed = f"\nUsing {result.base_url} (added /v1 for you)." if result.corrected else ""
    if result.ok:
        seen = f" — {plural(len(result.models), 'model')} available" if result.models else ""
        ids = [m.id for m in result.models]
        if result.cut:
            seen = f" — the first {len(ids):,} models of its list kept"
        if not model or not ids or model in ids:
            return f"Status check: OK{seen}.{fixed}"
        if result.cut:  # it may come after them
            return (
                f"Status check: OK{seen}; {shown_id(model)} is not among them, so it could "
                f"not be checked.{fixed}"
            )
        return (
            f"Status check: OK{seen}, but not {shown_id(model)}, so the endpoint may refuse it."
            f"{suggest(model, ids)} Pick one with {p}model.{fixed}"
        )
    if result.error_kind == "config":  # nothing to check yet: the next setup step
        return f"Next: {result.reason}"
    said = f"Status check failed{_reused(_earlier(result), f'{p}connect')}: {result.reason}{fixed}"
    if bypass:  # "run /connect bypass:on" where it is on already (after a /proxy set, say)
        return f"{said}\nBypass is on, so chat goes through."
    return f"{said}\nFix it and run {p}connect again, or {p}connect bypass:on to chat anyway."


def _earlier(result: StatusResult) -> tuple[float, float] | None:
    return None if result.checked_ago is None else (result.checked_ago, result.recheck_in)


def _reused(earlier: tuple[float, float] | None, command: str) -> str:
    """When the failure shown is an earlier check's (`earlier`: seconds since it, and
    until `command` asks anew; a flood of checks asks the endpoint once): how old it is
    and when a check asks anew, or a fix looks like it did nothing."""
    if earlier is None:
        return ""
    ago = int(earlier[0])
    said = f"{seconds_in_words(ago)} ago" if ago else "under a second ago"
    again = ceil(earlier[1])
    when = f"in {seconds_in_words(again)}" if again else "now"
    return f" (checked {said}; run {command} again {when} to check anew)"


def endpoint_list_offered(config: ChannelConfig) -> bool:
    """Whether /model offers the endpoint's list: shown, or the source has no list of its
    own (custom), so the endpoint's is the one there is."""
    return config.show_external_models or not BUILTIN_MODELS[config.source]


async def _offered_models(ctx: CommandContext, config: ChannelConfig) -> list[str]:
    """The models /model offers: the source's own, then the endpoint's when shown (a
    source with no list of its own, custom, always shows the endpoint's).

    As on SillyTavern's page, the endpoint's models come after the source's list.
    """
    ids = list(BUILTIN_MODELS[config.source])
    if endpoint_list_offered(config):
        cached = await ctx.store.cached_models(ctx.ref, config) or []
        known = set(ids)
        ids += [m.id for m in cached if m.id not in known]
    return ids


# The longest suggestion /model's autocompletion offers: Discord's limit for a choice's
# name and value. A longer id (up to MODEL_ID_CHARS: a local path vLLM serves, an ARN) is
# offered as its start and its end around "…", which /model takes back as that id.
SUGGESTION_CHARS = 100
_HEAD = (SUGGESTION_CHARS - 1) // 2
_TAIL = SUGGESTION_CHARS - 1 - _HEAD


def suggestion(model_id: str) -> str:
    """The id as a suggestion shows it, and as it comes back when picked."""
    if len(model_id) <= SUGGESTION_CHARS:
        return model_id
    return f"{model_id[:_HEAD]}…{model_id[-_TAIL:]}"


async def model_choices(ctx: CommandContext, typed: str, limit: int = 25) -> list[str]:
    """Autocomplete for /model: offered ids containing what was typed, prefix matches
    first, each as `suggestion` shows it (once: two long ids may show alike)."""
    config = await ctx.store.effective_config(ctx.ref)
    needle = typed.strip().casefold()
    shown = [(suggestion(m), m.casefold()) for m in await _offered_models(ctx, config)]
    # A suggestion picked and typed on from comes back cut, and matches itself.
    hits = [(s, m) for s, m in shown if needle in m or needle in s.casefold()]
    # Prefix matches first; otherwise the offered order (the source's own, then the endpoint's).
    hits.sort(key=lambda hit: not hit[1].startswith(needle))
    return list(dict.fromkeys(s for s, _ in hits))[:limit]


async def _suggested_id(ctx: CommandContext, config: ChannelConfig, model: str) -> str:
    """The offered id a picked `suggestion` stands for (`model` itself when it is no
    cut suggestion, or is offered as it is). CommandError when none or several are."""
    if len(model) != SUGGESTION_CHARS or model[_HEAD] != "…":
        return model
    offered = await _offered_models(ctx, config)
    if model in offered:
        return model
    meant = [m for m in offered if suggestion(m) == model]
    if len(meant) == 1:
        return meant[0]
    p = ctx.prefix
    if meant:
        raise CommandError(
            f"{len(meant)} listed models begin and end as that suggestion; nothing changed. "
            f"Type the full id ({p}models list shows them)."
        )
    raise CommandError(
        "That suggestion stands for a model no longer listed here; nothing changed. "
        f"Type the full id ({p}models list shows the models listed now)."
    )


async def set_source(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    scope = scope_of(args)
    changes: dict[str, object]
    dropped = ""  # said when the model chosen for the old source goes
    source: Source | None = None  # the source chosen here (None: the next scope's)
    before: object = None
    old_model: object = None
    if args["source"] == DEFAULT:
        # The model was chosen for this scope's source: both follow the next scope now.
        changes = {"source": None, "model": None}
        said = f"{now_uses_next(ctx, scope)} source"
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
    result, checked = await _checked(ctx, model_step=False)  # said below, with the source
    if source is not None and before != source and old_model:
        # A model id belongs to one source; an old one would fail on the new source,
        # unless that source lists it too: its built-in list (`claude-sonnet-4-5` set
        # before `/source`), or what the endpoint listed to the check just run.
        if not await _known_to(ctx, source, old_model):
            drop = {"model": None}
            await ctx.store.update_config(ctx.ref, scope, ctx.actor, drop, action="source")
            was = before.value if isinstance(before, Source) else before or "the old source"
            dropped = f"{shown_id(str(old_model))} was the model for {was}, so "
            bypass = (await ctx.store.effective_config(ctx.ref)).bypass_status_check
            checked = _status_line(result, ctx.prefix, bypass=bypass)
    after = await ctx.store.effective_config(ctx.ref)
    if dropped and source is not None:
        # Said whatever model still applies here: a server's went for every channel that
        # has none of its own (this one may have its own: the note says it wins here).
        # The model is picked for the source chosen, not this channel's own, which wins
        # here and may be another.
        where = " scope:server" if scope is Scope.SERVER else ""
        model = f"{dropped}pick one for {source.value} with {ctx.prefix}model{where}"
        model += await _some_offered(ctx, after, source) + "."
        origin = after.origins.get("model", "default")
        if after.model and not (scope is Scope.SERVER and origin == "channel"):
            shown = f"{shown_id(after.model)} ({origin_name(origin, ctx.ref.place)})"
            model += f" Until then {shown} applies."
    elif after.model:
        model = f"Model: {shown_id(after.model)}."
    elif result.error_kind == "config":
        model = ""  # the step the check names (a URL, a key) comes first; the model after
    else:
        model = f"Pick a model with {ctx.prefix}model."
    if args["source"] == DEFAULT:
        said += f" ({after.source.value})"
    if after.source is not Source.CUSTOM and after.proxy_url:
        # The URL set for custom stays: the new source is reached through it, as a proxy.
        said += f", through the proxy at {shown_id(after.proxy_url)} ({_unproxied(after, ctx)})"
    # The server's source goes to its channels; one with its own model keeps it, chosen
    # for another source maybe: said, as its own source would be.
    note = own_value_note(after, scope, "source", "model")
    return Reply(f"{' '.join(filter(None, (said + '.', model)))}{note}\n{checked}")


_NAMED_AT_ONCE = 3  # the offered models a step names; /models list has them all


async def _some_offered(ctx: CommandContext, config: ChannelConfig, source: Source) -> str:
    """` (offered: a, b, c; /models list shows all 12)`: a few of the models `source`
    offers here, or where its list comes from when there is none yet."""
    p = ctx.prefix
    if config.source is not source:  # a server's source; this channel keeps its own
        return f" ({p}models list in a channel that uses it shows the models offered)"
    ids = await _offered_models(ctx, config)
    if not ids:
        return f" (none is listed yet: {p}models external fetches the endpoint's list)"
    named = ", ".join(map(shown_id, ids[:_NAMED_AT_ONCE]))
    if len(ids) <= _NAMED_AT_ONCE:
        return f" (offered: {named})"
    return f" (offered: {named} …; {p}models list shows all {len(ids):,})"


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


async def key_set(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    source = Source(args["source"])
    scope = scope_of(args)
    key: SecretValue = args["key"]
    await ctx.store.set_secret(
        ctx.ref, scope, api_key_name(source), key, ctx.actor, personal=ctx.personal
    )
    shown = f" (ends …{key.last4})" if key.last4 else ""
    text = f"Saved the {source.value} key for {scope_place(scope, ctx.ref.place)}{shown}."
    own = await _own_key_note(ctx, scope, source)
    if source is not Source.CLAUDE and key.reveal().startswith("sk-ant-"):
        text += (
            f" It looks like a Claude key (sk-ant-…): {ctx.prefix}key set claude stores it "
            "for Claude."
        )
    config = await ctx.store.effective_config(ctx.ref)
    if config.source is source:
        # Saved, but another secret may go in its place (Matrix probe: said only by
        # /settings, so the status check's OK read as the key working).
        not_sent = await key_not_sent(ctx, config)
        if not_sent:
            text += f" It is kept{not_sent}."
        # The check that follows is run with this channel's own key, when it has one.
        text += own + "\n" + (await _checked(ctx))[1]
    else:
        place = ctx.ref.place
        text += f" This {place} uses {config.source.value}; {ctx.prefix}source {source.value} "
        text += "switches to it." + own
    return Reply(text)


async def _own_key_note(ctx: CommandContext, scope: Scope, source: Source) -> str:
    """After a server-wide key change: a note when this channel has a key of its own for
    `source`, which is the one its requests (and the status check that follows) use."""
    removal = f"{ctx.prefix}key clear {source.value} without scope:server"
    return await _own_secret_note(ctx, scope, api_key_name(source), f"{source.value} key", removal)


async def _own_secret_note(
    ctx: CommandContext, scope: Scope, name: str, label: str, removal: str
) -> str:
    """After a server-wide change of secret `name`: a note when this channel has its own,
    which wins here (`removal`: the command that removes the channel's own)."""
    if scope is not Scope.SERVER:
        return ""
    try:
        origin = await ctx.store.secret_origin(ctx.ref, name)
    except SecretUnreadable:
        return ""  # /settings says so on its own line
    if origin is None or origin[0] != "channel":
        return ""
    ends = f" (…{origin[1]})" if origin[1] else ""
    return (
        f"\nThis {ctx.ref.place} has its own {label}{ends}, which wins here; {removal} removes it."
    )


async def key_clear(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    source = Source(args["source"])
    scope = scope_of(args)
    name = api_key_name(source)
    removed = await ctx.store.clear_secret(ctx.ref, scope, name, ctx.actor)
    if removed:
        text = f"Removed the {source.value} key for {scope_place(scope, ctx.ref.place)}."
    else:
        text = f"No {source.value} key was stored for {scope_place(scope, ctx.ref.place)}."
    config = await ctx.store.effective_config(ctx.ref)
    with contextlib.suppress(SecretUnreadable):  # /settings says so on its own line
        found = await ctx.store.secret_origin(ctx.ref, name)
        password = await ctx.store.secret_origin(ctx.ref, PROXY_PASSWORD)
        if found and _key_sent(config, source, found[0], password[0] if password else None):
            ends = f" (…{found[1]})" if found[1] else ""
            what = (f"{source.value} key{ends}", f"DEFAULT_{name.upper()}{ends}")
            text += _wider_applies(ctx, scope, found[0], what, "", f"key clear {source.value}")
    if not removed:
        return Reply(text, ok=False)
    text += await _own_key_note(ctx, scope, source)
    if config.source is source:
        # The last check passed with that key: check again, or /settings keeps saying OK.
        text += "\n" + (await _checked(ctx))[1]
    return Reply(text)


def url_rest(password: str, prefix: str) -> str | None:
    """`/proxy set http://host:1234 /v1`: the rest of the URL, typed after a space, read
    as the password. Said so (before any check of a password's), nothing saved or sent."""
    if not password.startswith("/"):
        return None
    return (
        "Nothing was saved: the password would start with /, which looks like the rest "
        "of the URL typed after a space. Type the URL without the space; a password "
        f"goes after the URL or in {prefix}proxy password."
    )


async def proxy_set(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    password: SecretValue | None = args.get("password")
    base, cut = endpoint_url(args["url"])
    try:
        url = await ctx.hub.policy.check(base)
    except EndpointRefused as err:
        raise CommandError(str(err)) from None
    # The URL and the endpoint's secrets change together: an old password or custom key
    # must not follow the channel to a new host, and a command is applied whole or not
    # at all. A secret saved while no URL was set (`/proxy password` first) was meant for
    # this one, and stays. The same server again (`/v1` or a route pasted, a default port
    # written out: server_of) keeps them.
    scope = scope_of(args)
    before = await _url_at(ctx, scope)
    moved = before is not None and server_of(before) != server_of(url)
    kept = password is None and not moved
    state = await secret_state(ctx, PROXY_PASSWORD) if kept else "not set"
    has_one = state != "not set" and not state.startswith("held")  # a held one is not used
    secrets: dict[str, SecretValue | None] = dict.fromkeys(ENDPOINT_SECRETS) if moved else {}
    if password is not None:
        secrets[PROXY_PASSWORD] = password
    cleared = await ctx.store.update_config(
        ctx.ref,
        scope,
        ctx.actor,
        {"proxy_url": url, "resolved_url": None},
        action="proxy set",
        secrets=secrets,
        personal=ctx.personal,
        # The server's channels that use its URL had their own secrets set for it too.
        following=ENDPOINT_SECRETS if moved and scope is Scope.SERVER else (),
    )
    removed = _removed(cleared)
    if password is not None:
        note = " with a password"
    elif has_one:
        note = " with the proxy password saved before" + (" it" if not before else "")
    else:
        note = ""
    lines = [f"Endpoint set to {url}{note}{' for this server' * (scope is Scope.SERVER)}."]
    if removed and before is not None:
        # Named, so `localhost` after `127.0.0.1` shows why it counts as another server.
        lines[0] += (
            f" The {removed} set for {shown_id(before)} {'were' if ' and ' in removed else 'was'}"
            " removed: a key or password goes only to the server it was set for."
        )
    after = await ctx.store.effective_config(ctx.ref)
    if cleared.get(api_key_name(Source.CUSTOM)) and after.source is Source.CUSTOM:
        lines.append(f"If it needs a key, set it with {key_step(ctx.ref, 'custom', ctx.prefix)}.")
    if cleared.get(FOLLOWING_CLEARED):
        lines.append(
            "The channels that use the server's URL had their own proxy password or custom "
            "key, set for the previous server, removed too."
        )
    if cut:
        lines.append(cut)
    overridden = own_value_note(after, scope, "proxy_url", remove=f"{ctx.prefix}proxy clear")
    if overridden:
        lines.append(overridden.strip())
    lines.append((await _checked(ctx))[1])
    return Reply("\n".join(lines))


async def _url_at(ctx: CommandContext, scope: Scope) -> str | None:
    """The URL the secrets at `scope` go to now: the channel's, or for the server's the
    server's own, not a channel's URL that wins over it here (the operator's default is
    not seen from a channel with a URL of its own)."""
    config = await ctx.store.effective_config(ctx.ref)
    if scope is Scope.SERVER and config.origins.get("proxy_url") == "channel":
        url = (await ctx.store.scope_values(ctx.ref, Scope.SERVER)).get("proxy_url")
        return url if isinstance(url, str) else None
    return config.proxy_url


# The endpoint's secrets as a reply names them.
_NAMED = {PROXY_PASSWORD: "proxy password", api_key_name(Source.CUSTOM): "custom key"}


def _removed(cleared: dict[str, bool]) -> str:
    """The endpoint's secrets a change removed: `proxy password and custom key`, or ""."""
    return " and ".join(_NAMED[name] for name in ENDPOINT_SECRETS if cleared.get(name))


async def proxy_password(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    password: SecretValue = args["password"]
    scope = scope_of(args)
    await ctx.store.set_secret(
        ctx.ref, scope, PROXY_PASSWORD, password, ctx.actor, personal=ctx.personal
    )
    shown = f" (ends …{password.last4})" if password.last4 else ""
    # The channel's own password wins over a server-wide one, and is what the check uses.
    removal = f"{ctx.prefix}proxy clear without scope:server"
    if config.origins.get("proxy_url") == "channel":
        removal += " (with this channel's URL)"
    own = await _own_secret_note(ctx, scope, PROXY_PASSWORD, "proxy password", removal)
    if not config.proxy_url:  # steps in either order: the URL comes next
        return Reply(
            f"Saved the proxy password{shown}. It goes to the endpoint you set next with "
            f"{ctx.prefix}proxy set <url>.{own}"
        )
    checked = (await _checked(ctx))[1]
    return Reply(f"Saved the proxy password{shown}.{own}\n{checked}")


async def proxy_clear(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    scope = scope_of(args)
    # A scope without a URL of its own (the server's or the operator's in use) has none to
    # remove: saying "Removed the proxy URL" there was false, and that URL still applies.
    own = (await ctx.store.scope_values(ctx.ref, scope)).get("proxy_url") is not None
    cleared = await ctx.store.update_config(
        ctx.ref,
        scope,
        ctx.actor,
        {"proxy_url": None, "resolved_url": None} if own else {},
        action="proxy clear",
        secrets=dict.fromkeys(ENDPOINT_SECRETS),
    )
    removed = _removed(cleared)
    place = scope_place(scope, ctx.ref.place)
    if own:
        text = f"Removed the proxy URL{f' and its {removed}' if removed else ''} for {place}."
    elif removed:
        whose = scope_place(scope, ctx.ref.place, capital=True)
        text = f"{whose} had no proxy URL of its own; removed its {removed}."
    else:
        text = f"No proxy URL was set for {place}; nothing changed."
    if own or removed:
        await ctx.store.record_status(ctx.ref, None, None)
    after = await ctx.store.effective_config(ctx.ref)
    if after.proxy_url:
        text += _wider_applies(
            ctx,
            scope,
            after.origins.get("proxy_url"),
            ("URL", "DEFAULT_PROXY_URL"),
            f": {shown_id(after.proxy_url)}",
            "proxy clear",
        )
    return Reply(text, ok=own or bool(removed))


def _key_sent(
    config: ChannelConfig, source: Source, origin: str, password_from: str | None
) -> bool:
    """Whether a key of `source` set at `origin` is one this channel's requests with that
    source carry (Endpoint.credential): not one kept from a URL set more narrowly than
    itself (`withheld`, any source's), nor a provider's key, which no proxy URL is sent,
    nor a custom key where a proxy password set at `password_from` is sent instead."""
    key = SecretValue("key")  # stand-ins: too short for the log's registry of secrets
    sent_password = password_from is not None and not withheld(password_from, config)
    endpoint = Endpoint(
        source=source,
        proxy_url=config.proxy_url,
        api_key=key,
        proxy_password=SecretValue("pw") if sent_password and config.proxy_url else None,
    )
    return not withheld(origin, config) and endpoint.credential() is key


def _wider_applies(
    ctx: CommandContext,
    scope: Scope,
    origin: str | None,
    what: tuple[str, str],
    shown: str,
    clear: str,
) -> str:
    """After a clear at `scope`: the server's or the operator's value that still applies
    here (`what`: its name, and the operator's setting), and how to clear the server's."""
    if origin == "operator":
        return f"\nThe operator's {what[1]} applies here{shown}."
    if origin == "server" and scope is Scope.CHANNEL:
        return (
            f"\nThe server's {what[0]} applies here{shown} ({ctx.prefix}{clear} scope:server "
            "removes it)."
        )
    return ""


async def _short_secret(ctx: CommandContext, name: str) -> tuple[str, str] | None:
    """A key or password an older version stored that is too short to take now
    (too_short): which it is (`The custom key stored for this channel`), and what that
    does and how to mend it; said without it or its length. None for any other."""
    try:
        found = await ctx.store.effective_secret(ctx.ref, name)
    except SecretUnreadable:
        return None
    # The operator's cannot be: the start refuses it.
    if found is None or found[0] == "operator" or too_short(found[1].reveal()) is None:
        return None
    p, server = ctx.prefix, found[0] == "server"
    scope = " scope:server" if server else ""
    if name == PROXY_PASSWORD:
        what, again = "proxy password", password_step(ctx.ref, p) + scope
        remove = f"{clear_step(ctx.ref, f'{p}proxy clear{scope}')} (with the proxy URL)"
    else:
        source = name.removesuffix("_api_key")
        what, again = f"{source} key", key_step(ctx.ref, source, p) + scope
        remove = clear_step(ctx.ref, f"{p}key clear {source}{scope}")
    where = "this server" if server else f"this {ctx.ref.place}"
    return (
        f"The {what} stored for {where}",
        f"is shorter than {MIN_SECRET_CHARS} characters (an older version took it): "
        f"answers here show **** for it where it stands as a word; set it again with "
        f"{again}, or remove it with {remove} (an endpoint that asks for no key needs none)",
    )


async def secret_state(ctx: CommandContext, name: str, config: ChannelConfig | None = None) -> str:
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
        if name in await ctx.store.held_secrets(ctx.ref):
            return (
                "held: set when this was a direct chat, so not used now the room is not "
                "private; an admin sets it again from a direct chat with room:, or clears it"
            )
        return "not set"
    where, last4 = origin
    named = str(ctx.ref.place) if where == "channel" else where
    state = f"set (…{last4}, {named})" if last4 else f"set ({named})"
    # Behind a proxy only a custom source's key and the proxy password go to that URL.
    sent_there = name == PROXY_PASSWORD or (config is not None and config.source is Source.CUSTOM)
    if config is not None and sent_there and withheld(where, config):
        how = (
            password_step(ctx.ref, ctx.prefix)
            if name == PROXY_PASSWORD
            else key_step(ctx.ref, config.source.value, ctx.prefix)
        )
        set_at = config.origins.get("proxy_url", "default")
        url_from = origin_name(set_at, ctx.ref.place)  # `server-wide`, `this channel`
        url_from = f"for {url_from}" if set_at == "channel" else url_from
        state += f", not sent to an endpoint URL set {url_from}: set one for it with {how}"
    short = await _short_secret(ctx, name)
    return state + (f"; it {short[1]}" if short else "")


async def key_not_sent(ctx: CommandContext, config: ChannelConfig) -> str:
    """Why the channel's stored key is not what its requests carry, as the connection
    decides it (Endpoint.credential); "" when it is, or when there is none. (A key kept
    from the channel's URL is said by secret_state.)"""
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
        return ", not sent: the proxy password is sent instead"
    return f", not sent: the {config.source.value} key is never sent to a proxy URL"


async def proxy_show(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    if not config.proxy_url:
        return Reply(f"No proxy URL is set. Set one with {ctx.prefix}proxy set <url>.")
    lines = [f"Proxy URL: {config.proxy_url}"]
    if config.resolved_url and config.resolved_url != config.proxy_url:
        lines.append(f"In use: {config.resolved_url} (/v1 added automatically)")
    lines.append(f"Password: {await secret_state(ctx, PROXY_PASSWORD, config)}")
    return Reply("\n".join(lines))


async def connect(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    lines = []
    if "bypass" in args:
        scope = scope_of(args)
        value = None if args["bypass"] == DEFAULT else bool(args["bypass"])
        await ctx.store.update_config(
            ctx.ref,
            scope,
            ctx.actor,
            {"bypass_status_check": value},
            action="connect bypass",
        )
        after = await ctx.store.effective_config(ctx.ref)
        if value is None:
            said = _follows(ctx, scope, "bypass API status check", after.bypass_status_check)
        else:
            where = " for this server" if scope is Scope.SERVER else ""
            said = f"Bypass API status check{where}: {'on' if value else 'off'}."
        remove = f"{ctx.prefix}connect bypass:default"
        lines.append(said + own_value_note(after, scope, "bypass_status_check", remove=remove))
    result, checked = await _checked(ctx)
    lines.append(checked)
    if result.error_kind == "config":  # no URL or key yet: bypass has nothing to let through
        return Reply("\n".join(lines), ok=False)
    return Reply("\n".join(lines), ok=result.ok)


def _follows(ctx: CommandContext, scope: Scope, setting: str, now: bool) -> str:
    """What a switch set to `default` says: whose value applies now, and what it is."""
    return (
        f"{scope_place(scope, ctx.ref.place, capital=True)} now follows the "
        f"{next_scope(ctx, scope)} {setting}: {'on' if now else 'off'}."
    )


def _list(ids: list[str], narrow: str = "") -> str:
    """Ids, the first _MAX_LISTED of them; `narrow`: how to see the rest."""
    shown = ", ".join(map(shown_id, ids[:_MAX_LISTED]))
    more = len(ids) - _MAX_LISTED
    return shown + (f" … and {more} more{narrow}" if more > 0 else "")


async def models_list(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    config = await ctx.store.effective_config(ctx.ref)
    ids = await _offered_models(ctx, config)
    missing = missing_url(config, ctx.prefix)
    if not ids and missing is not None:  # no endpoint to list them yet: its URL comes first
        return Reply(f"No models known for custom. {missing.said_to(ctx.is_admin)}")
    wanted: str = args.get("filter", "").strip()
    if wanted:
        ids = [i for i in ids if wanted.casefold() in i.casefold()]
        if not ids:
            return Reply(f"No {config.source.value} model id here contains {quoted(wanted)}.")
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
    listed = _list(ids, _narrow(ctx))
    return Reply(f"{config.source.value} models ({where}): {listed}{current}")


async def _known_to(ctx: CommandContext, source: Source, model: object) -> bool:
    """Whether `model` is in `source`'s built-in list or its list fetched here."""
    if not isinstance(model, str) or not model:
        return False
    if model in BUILTIN_MODELS[source]:
        return True
    config = await ctx.store.effective_config(ctx.ref)
    fetched = await ctx.store.cached_models(ctx.ref, config, source)
    return any(m.id == model for m in fetched or ())


async def models_external(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    scope = scope_of(args)
    remove = f"{ctx.prefix}models external state:default"
    if args.get("state") == DEFAULT:
        await ctx.store.update_config(
            ctx.ref, scope, ctx.actor, {"show_external_models": None}, action="models"
        )
        after = await ctx.store.effective_config(ctx.ref)
        said = _follows(ctx, scope, "show external models", after.show_external_models)
        note = own_value_note(after, scope, "show_external_models", remove=remove)
        return Reply(f"{said}{note}")
    if not args.get("state", True):
        await ctx.store.update_config(
            ctx.ref, scope, ctx.actor, {"show_external_models": False}, action="models"
        )
        where = " for this server" if scope is Scope.SERVER else ""
        source = (await ctx.store.effective_config(ctx.ref)).source
        if BUILTIN_MODELS[source]:
            offered = "offers the built-in list"
        else:  # as _offered_models does: custom has no list but the endpoint's
            offered = (
                f"still offers the models the endpoint listed: {source.value} has no "
                f"built-in list ({ctx.prefix}models list)"
            )
        note = own_value_note(
            await ctx.store.effective_config(ctx.ref), scope, "show_external_models", remove=remove
        )
        return Reply(f"Show external models{where}: off. {ctx.prefix}model {offered}.{note}")
    config = await ctx.store.effective_config(ctx.ref)
    endpoint = await endpoint_for(ctx.store, ctx.ref, config, ctx.prefix)
    asked = time.monotonic()
    again = f"{ctx.prefix}models external"
    try:
        models: list[ModelInfo] = await ctx.hub.provider(endpoint).list_models()
    except NotFoundError as err:
        return Reply(
            f"The endpoint has no model list (HTTP 404 for /models)"
            f"{_reused(ctx.hub.reused(err, asked), again)}: some servers offer none. Type "
            f"the model id with {ctx.prefix}model <id>; if chat fails too, check the URL "
            f"({ctx.prefix}proxy show).",
            ok=False,
        )
    except ProviderError as err:
        # Another call's failure, not asked anew: said, as /connect says it, or a fix made
        # since looks like it did nothing.
        earlier = ctx.hub.reused(err, asked)
        if earlier is None:
            raise
        said = provider_error_text(err, ctx.prefix, admin=ctx.is_admin, ref=ctx.ref)
        return Reply(f"Listing failed{_reused(earlier, again)}: {said}", private=True, ok=False)
    if not models:
        return Reply("The endpoint reported no models. Check the URL and key.", ok=False)
    await ctx.store.cache_models(ctx.ref, config, models)
    changes: dict[str, object] = {"show_external_models": True}
    ids = [m.id for m in models]
    note = ""
    if config.model and config.model not in ids:
        # Listing is for browsing: a model that answers stays (any id is accepted).
        said = (
            f"The bot keeps the first {MAX_MODELS:,} models of the list, and they do not "
            f"name {shown_id(config.model)}"
            if maybe_cut(models)
            else f"The list does not name {shown_id(config.model)}"
        )
        note = (
            f"\n{said}; it stays selected. If chat fails, pick one of these with {ctx.prefix}model."
        )
    elif not config.model:
        note = f"\nPick one with {ctx.prefix}model <id>."
    await ctx.store.update_config(ctx.ref, scope, ctx.actor, changes, action="models")
    offered = _list(ids, _narrow(ctx))
    where = " for this server" if scope is Scope.SERVER else ""
    after = await ctx.store.effective_config(ctx.ref)
    note += own_value_note(after, scope, "show_external_models", remove=remove)
    return Reply(f"Show external models{where}: on. The endpoint offers: {offered}{note}")


async def set_model(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    model = unmarked(args["id"])  # `/model <gpt-4o>`, as its usage line reads
    scope = scope_of(args)
    if model.lower() == DEFAULT:
        await ctx.store.update_config(ctx.ref, scope, ctx.actor, {"model": None}, action="model")
        after = await ctx.store.effective_config(ctx.ref)
        now = after.model or "none yet"
        # With none to fall back to, chat is refused until one is picked: say how.
        place = ctx.ref.place
        step = "" if after.model else f"\n{blocked_reason(after, ctx.prefix, True, place=place)}"
        return Reply(f"{now_uses_next(ctx, scope)} model ({now}).{step}")
    config = await ctx.store.effective_config(ctx.ref)
    model = await _suggested_id(ctx, config, model)
    await ctx.store.update_config(ctx.ref, scope, ctx.actor, {"model": model}, action="model")
    where = " for this server" if scope is Scope.SERVER else ""
    warning = await _model_warning(ctx, config, model)
    overridden = own_value_note(config, scope, "model")
    return Reply(f"Model set to {shown_id(model)}{where}.{warning}{overridden}")


async def _model_warning(ctx: CommandContext, config: ChannelConfig, model: str) -> str:
    """Any id is accepted (new models appear before lists know them); say when it looks off.

    Only a list the endpoint itself reported, or the built-in list of a vendor's own
    endpoint, can make an id look unknown.
    """
    builtin = BUILTIN_MODELS[config.source]
    fetched = await ctx.store.cached_models(ctx.ref, config)
    listed = [m.id for m in fetched] if fetched else []
    if model in builtin or model in listed:
        return ""
    p = ctx.prefix
    if listed and maybe_cut(fetched or []):  # the model may come after what was kept
        return (
            f"\nNote: {quoted(model)} could not be checked: it is not in the first "
            f"{MAX_MODELS:,} models of the endpoint's list, which is all the bot keeps."
            f"{suggest(model, listed)} If chat fails, check the spelling ({p}models list)."
        )
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
