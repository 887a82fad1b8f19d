"""/limits and /access: quotas and who may chat, per channel or server."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bot.commands.parse import CommandError, suggest
from bot.commands.router import check_scope
from bot.commands.scopes import next_scope, scope_of, scope_place
from bot.commands.spec import CommandContext
from bot.types import PlaceName, Platform, Reply, Scope, params_as, typed_as
from bot.types.limits import MAX_ACCESS_RULES, AccessKind, AccessRule, Effect, LimitName
from bot.usage.access import (
    EVERYONE,
    AccessError,
    describe,
    kinds_here,
    parse_subject,
    role_suggestions,
    shown_subject,
)
from bot.usage.limits import (
    ANSWER_ESTIMATE,
    DEFAULT,
    NAMES,
    OFF,
    SPECS,
    LimitError,
    allowance,
    parse_value,
    set_limit_as,
)
from bot.usage.quota import limits_here

log = logging.getLogger("bot.commands")

LIMIT_ACTIONS = ("show", "set")
LIMIT_NAMES = NAMES
ACTS = ("list", "allow", "deny", "remove", "admin", "unadmin")
ADMIN_ACTS = ("admin", "unadmin")  # a server's bot-admin roles (Discord), not chat rules
ACCESS_KINDS = tuple(k.value for k in AccessKind)


def role_choices(
    ctx: CommandContext, given: Mapping[str, str], typed: str, limit: int
) -> list[str]:
    """Autocomplete for /access's `id` once its kind is role: the server's role names (as
    the front-end knows them) holding what was typed; nothing for a user or a level."""
    kind = given.get("kind", "").strip().lower()
    if kind != AccessKind.ROLE.value or not ctx.server_roles or not ctx.ref.has_server:
        return []
    return role_suggestions(typed, ctx.server_roles, limit)


def _scope(ctx: CommandContext, args: dict[str, Any]) -> Scope:
    check_scope(ctx, args)
    return scope_of(args)


def _names(ctx: CommandContext) -> str:
    """The limits one can set here: a server's budget only where there is a server."""
    return ", ".join(
        ctx.ref.platform.named(n)
        for n in NAMES
        if ctx.ref.has_server or not SPECS[LimitName(n)].server_only
    )


def _set_usage(ctx: CommandContext, *, server: bool = True) -> str:
    """How a limit is set, as typed on the asker's platform: on Discord `set` is the
    `action` option's choice, and each value goes in its own option."""
    scope = " [scope:server]" if ctx.ref.has_server and server else ""
    values = (("action", "set"), ("name", "<name>"), ("value", "<value|off|default>"))
    return typed_as(("limits",), values, ctx.ref.platform, ctx.prefix) + scope


def _access_as(ctx: CommandContext, action: str, kind: str = "", subject: str = "") -> str:
    """An /access command as typed on the asker's platform: on Discord each of its options
    by name (`/access action:allow kind:user id:<id>`: every one is optional there, so a
    positional `/access allow user <id>` fills none), elsewhere in order."""
    named = (("action", action), ("kind", kind), ("id", subject))
    values = tuple((name, value) for name, value in named if value)
    return typed_as(("access",), values, ctx.ref.platform, ctx.prefix)


def _where(scope: Scope, place: PlaceName) -> str:
    return "server-wide" if scope is Scope.SERVER else f"for {scope_place(scope, place)}"


async def show_limits(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    """The limits in force here and what the asker has left; admins set them."""
    if args.get("action") == "set":
        return await _set_limit(ctx, args)
    if "name" in args or "value" in args:
        raise CommandError(f"To change a limit: {_set_usage(ctx)}.")
    held = await limits_here(ctx.store, ctx.gate, ctx.ref)
    if not held:
        text = "No limits hold here."
        if ctx.is_admin:
            text += f" Set one with {_set_usage(ctx)} (names: {_names(ctx)})."
        return Reply(text)
    lines = ["Limits here:"]
    said = {"operator": "operator default", "channel": str(ctx.ref.place)}
    for name, value in held.items():
        origin = said.get(value.origin, value.origin)
        about = SPECS[name].about(ctx.ref.place, ctx.ref.has_server)
        lines.append(f"  {ctx.ref.platform.named(name)} = {value.value:,} ({origin}) — {about}")
    counts = await ctx.store.quotas.counts(ctx.ref, ctx.actor.id, datetime.now(UTC))
    lines.append("Your allowance:")
    lines += [f"  {line}" for line in allowance(held, counts, datetime.now(UTC), ctx.ref.place)]
    place = ctx.ref.place
    change = None
    if ctx.is_server_admin:
        change = f"Change one with {_set_usage(ctx)}."
    elif ctx.is_admin:
        change = f"Change {place.whose('limits')} with {_set_usage(ctx, server=False)}."
        # The smaller of a channel's and its server's holds: raising the channel's
        # cannot lift a server's, and a server's budget is set server-wide only.
        servers = [
            ctx.ref.platform.named(name)
            for name, value in held.items()
            if SPECS[name].server_only or value.origin == "server"
        ]
        if servers and ctx.ref.has_server:
            them = "it" if len(servers) == 1 else "them"
            change += (
                f" {' and '.join(servers)} here {'is' if len(servers) == 1 else 'are'} the "
                f"server's: only a server admin can change {them} (scope:server)."
            )
    if change is not None:
        # Its one person is its admin: the operator's limits only go lower there, for
        # ADMIN_IDS too (_set_limit).
        ceilings = [ctx.ref.platform.named(n) for n in held if n.value in ctx.gate.defaults]
        if ceilings and ctx.ref.direct:
            change += (
                f" The operator's {' and '.join(ceilings)} "
                f"{'holds' if len(ceilings) == 1 else 'hold'} in every {place.word}: here you can "
                f"set {'it' if len(ceilings) == 1 else 'them'} lower, not off or higher."
            )
        lines.append(change)
    return Reply("\n".join(lines))


async def _set_limit(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    p = ctx.prefix
    if not ctx.is_admin:
        raise CommandError(
            f"Only admins of this {ctx.ref.place} can change limits "
            f"({ctx.gate.operator.who_admins(ctx.ref)}); {p}limits shows them."
        )
    if "name" not in args or "value" not in args:
        raise CommandError(f"Usage: {_set_usage(ctx)}; names: {_names(ctx)}.")
    name = LimitName(args["name"])
    shown = ctx.ref.platform.named(name)
    scope = _scope(ctx, args)
    if SPECS[name].server_only and scope is not Scope.SERVER:
        if not ctx.ref.has_server:
            channel_day = ctx.ref.platform.named(LimitName.TOKENS_PER_CHANNEL_DAY)
            raise CommandError(f"There is no server here; use {channel_day} instead.")
        raise CommandError(f"{shown} is the server's budget: add scope:server (server admins).")
    try:
        value = parse_value(str(args["value"]), ctx.ref.platform)
    except LimitError as err:  # `ｏｆｆ` (fullwidth), `оff` (Cyrillic о): which word it is
        raise CommandError(f"{err}{suggest(str(args['value']), [OFF, DEFAULT])}") from None
    where = _where(scope, ctx.ref.place)
    ceiling = ctx.gate.defaults.get(name.value) if ctx.ref.direct else None
    if ceiling is not None and value != DEFAULT and (value is None or value > ceiling):
        # Its one person is its admin: lifting the operator's limit would be anyone's.
        raise CommandError(
            f"The operator's {shown} of {ceiling:,} holds in every {ctx.ref.place.word}: here you "
            f"can set a lower one, not {'off' if value is None else 'a higher one'}. "
            "Nothing changed."
        )
    if value == DEFAULT:
        removed = await ctx.store.quotas.clear_limit(ctx.ref, scope, name.value)
        if not removed:
            text = f"{shown} was not set {where}; nothing changed."
            return Reply(text + await _set_elsewhere(ctx, name, scope), ok=False)
        head = f"{shown} {where} now follows the {next_scope(ctx, scope)} value."
        return Reply(head + await _holds_here(ctx, name, scope, value))
    await ctx.store.quotas.set_limit(ctx.ref, scope, name.value, value, ctx.actor)
    if value is None:
        return Reply(f"{shown} is off {where}." + await _holds_here(ctx, name, scope, value))
    note = ""
    if value == 0:
        # Many tools read 0 as "no limit"; here it is none at all, for admins too.
        anywhere = "on this server" if scope is Scope.SERVER else f"in this {ctx.ref.place}"
        note = (
            f" A limit of 0 allows nothing: no one, admins included, can chat {anywhere} "
            f"until it is raised ({set_limit_as(shown, 'off', p, ctx.ref.platform)}: no limit)."
        )
    elif SPECS[name].unit == "tokens" and value < ANSWER_ESTIMATE:
        note = (
            f" Each message counts its prompt and room for its answer (up to "
            f"{ANSWER_ESTIMATE} tokens, or {params_as(p, ctx.ref.platform, 'max_tokens')} if "
            "lower): a limit this "
            "small refuses most messages."
        )
    held = await _holds_here(ctx, name, scope, value)
    return Reply(f"{shown} set to {value:,} {where}.{held}{note}")


def _other(ctx: CommandContext, scope: Scope) -> tuple[Scope, str, str] | None:
    """The scope a value not found at `scope` may be set at instead, how it is said, and
    the option that names it (None where there is no other: no server)."""
    if not ctx.ref.has_server:
        return None
    if scope is Scope.SERVER:
        return Scope.CHANNEL, f"for this {ctx.ref.place}", ""
    return Scope.SERVER, "server-wide", " scope:server"


async def _set_elsewhere(ctx: CommandContext, name: LimitName, scope: Scope) -> str:
    """After a `default` that found nothing to remove at `scope`: the other scope's value
    of `name` and how to remove it, when it has one."""
    other = _other(ctx, scope)
    if other is None:
        return ""
    stored = await ctx.store.quotas.limits(ctx.ref)
    values = stored.server if other[0] is Scope.SERVER else stored.channel
    if name.value not in values:
        return ""
    value = values[name.value]
    shown = ctx.ref.platform.named(name)
    return (
        f" It is set {other[1]} ({'off' if value is None else f'{value:,}'}): "
        f"{set_limit_as(shown, DEFAULT, ctx.prefix, ctx.ref.platform)}{other[2]} removes that."
    )


async def _holds_here(
    ctx: CommandContext, name: LimitName, scope: Scope, value: int | str | None
) -> str:
    """After a change: what now holds here when it is not what was just set. A channel's
    and its server's limits both hold (the smaller wins), so raising or turning off one
    leaves the other in force."""
    held = (await limits_here(ctx.store, ctx.gate, ctx.ref)).get(name)
    shown = ctx.ref.platform.named(name)
    if held is None:
        return "" if value is None else f" No {shown} limit holds here now."
    if held.origin == scope.value and held.value == value:
        return ""
    p = ctx.prefix
    if held.origin == "operator":
        return f" Here the operator default of {held.value:,} holds."
    if held.origin == "server":
        change = set_limit_as(shown, "<value|off>", p, ctx.ref.platform)
        change = f"server admins change it with {change} scope:server"
        whose = "The server-wide limit"
    else:
        change = set_limit_as(shown, DEFAULT, p, ctx.ref.platform)
        change = f"{change} (without scope:server) removes it"
        whose = ctx.ref.place.whose("own limit", capital=True)
    both = " (a channel's and its server's limits both hold; the smaller wins)"
    if value == DEFAULT or not ctx.ref.has_server:  # no server: no server's limit
        both = ""
    return f" {whose} of {held.value:,} holds here{both}: {change}."


async def access(ctx: CommandContext, args: dict[str, Any]) -> Reply:
    """List, add or remove who-may-chat rules (admins; server-wide: server admins)."""
    action = args.get("action") or "list"
    kinds = f"<{kinds_here(ctx.ref.platform)}>"
    if action == "list":
        if "kind" in args or "id" in args:
            raise CommandError(f"Usage: {_access_as(ctx, 'allow|deny|remove', kinds, '<id>')}.")
        return Reply(await access_summary(ctx))
    if action in ADMIN_ACTS:
        return await _admin_role(ctx, args, grant=action == "admin")
    if "kind" not in args or "id" not in args:
        example = ("level", "50") if ctx.ref.platform is Platform.MATRIX else ("user", "<id>")
        raise CommandError(
            f"Usage: {_access_as(ctx, action, kinds, '<id>')}"
            f"{' [scope:server]' if ctx.ref.has_server else ''}, "
            f"e.g. {_access_as(ctx, action, *example)}."
        )
    kind = AccessKind(args["kind"])
    scope = _scope(ctx, args)
    if (
        kind is AccessKind.ROLE
        and action != "remove"
        and ctx.ref.platform is Platform.DISCORD
        and not ctx.ref.has_server
    ):
        # Its front-end knows no roles there, so any id would pass as one that exists.
        raise CommandError(
            f"A {ctx.ref.place.word} has no roles (they belong to a server): name the person "
            f"with {_access_as(ctx, action, 'user', '<id>')}. Nothing changed."
        )
    try:
        subject = parse_subject(
            kind, str(args["id"]), ctx.ref.platform, ctx.ref.server_id, ctx.server_roles
        )
    except AccessError as err:
        raise CommandError(str(err)) from None
    where = _where(scope, ctx.ref.place)
    if kind is AccessKind.ROLE and action != "remove" and not _role_exists(ctx, subject):
        raise CommandError(
            f"This server has no role {subject}: give the name or id of one of its roles, "
            "or mention it. Nothing changed."
        )
    if action == "remove":
        named = f"{kind.value} {shown_subject(kind, subject, ctx.ref.platform)}"
        if not await ctx.store.quotas.remove_rule(ctx.ref, scope, kind, subject):
            text = f"There was no rule for {named} {where}."
            return Reply(text + await _rule_elsewhere(ctx, kind, subject, scope), ok=False)
        return Reply(f"Removed the rule for {named} {where}.")
    rule = AccessRule(kind, subject, Effect(action), scope is Scope.SERVER)
    kept = [r for r in await ctx.store.quotas.rules(ctx.ref) if r.server_wide == rule.server_wide]
    # A rule there already may change its effect; a bot-admin role is a row of its own.
    if len(kept) >= MAX_ACCESS_RULES and not any(
        (r.kind, r.subject) == (kind, subject) and r.effect is not Effect.ADMIN for r in kept
    ):
        raise _too_many(ctx, scope, kept)
    await ctx.store.quotas.set_rule(ctx.ref, scope, rule, ctx.actor)
    note = ""
    if rule.effect is Effect.ALLOW:
        note = " Only those an allow rule names may chat here now (admins always may)."
        if _allows_both(await ctx.store.quotas.rules(ctx.ref)):
            # Each scope's allow rules hold: someone named by this rule alone is ignored.
            place = ctx.ref.place
            others = (
                "the server's allow rules"
                if scope is Scope.CHANNEL
                else place.whose("own allow rules")
            )
            note = (
                f"{note[:-1]}, and {others} hold here too: one of "
                f"{place.whose('rules')} and one of the server's must name them."
            )
    else:
        note = " Admins may chat whatever the rules say."
    return Reply(f"Rule added: {describe(rule, ctx.ref.place)}.{note}")


def _too_many(ctx: CommandContext, scope: Scope, kept: list[AccessRule]) -> CommandError:
    """The refusal of a rule past MAX_ACCESS_RULES at `scope` (`kept`: the rules there,
    bot-admin roles among them: they count too, and /access unadmin removes those)."""
    kinds = f"<{kinds_here(ctx.ref.platform)}>"
    option = " scope:server" if scope is Scope.SERVER else ""
    remove = f"{_access_as(ctx, 'remove', kinds, '<id>')}{option}"
    if any(r.effect is Effect.ADMIN for r in kept):
        remove += f" (a bot-admin role: {_access_as(ctx, 'unadmin', 'role', '<id>')})"
    many = {Platform.DISCORD: "a role", Platform.MATRIX: "a power level"}.get(ctx.ref.platform)
    instead = f", or name many people at once with {many}" if many else ""
    return CommandError(
        f"There are already {MAX_ACCESS_RULES} rules {_where(scope, ctx.ref.place)}, the most "
        f"kept: remove one with {remove}{instead}. Nothing changed."
    )


# Where there are no roles, who administers the bot instead (said to /access admin).
_NO_ROLES = {
    Platform.MATRIX: (
        "Bot-admin roles are a Discord server's. In a Matrix room, members at the bot's admin "
        "power level (the operator's MATRIX_ADMIN_POWER_LEVEL, 50 unless set) administer it: "
        "raise a moderator to that level in the room's settings. Nothing changed."
    ),
    Platform.CONSOLE: "The console has no roles: its operator administers it. Nothing changed.",
}


async def _admin_role(ctx: CommandContext, args: dict[str, Any], *, grant: bool) -> Reply:
    """Make a role of this server a bot-admin role (its members administer every channel
    of the server, as Manage Server's holders do, but not server-wide settings or who is
    a bot-admin), or no longer one: the server's admins only."""
    act = "admin" if grant else "unadmin"
    if ctx.ref.platform in _NO_ROLES:
        raise CommandError(_NO_ROLES[ctx.ref.platform])
    if not ctx.ref.has_server:
        raise CommandError(
            f"A {ctx.ref.place.word} has no server and no roles: bot-admin roles are a server's. "
            "Nothing changed."
        )
    if not ctx.is_server_admin:
        raise CommandError(
            "Only server admins (Manage Server, or the operator's ADMIN_IDS) choose who "
            "administers the bot. Nothing changed."
        )
    if args.get("kind") != AccessKind.ROLE.value or "id" not in args:
        raise CommandError(
            f"Usage: {_access_as(ctx, act, 'role', '<name>')}, "
            f"e.g. {_access_as(ctx, act, 'role', 'Mods')}."
        )
    if args.get("scope", "server") != "server":
        raise CommandError(
            "A bot-admin role holds in every channel of the server: leave out scope. "
            "Nothing changed."
        )
    try:
        subject = parse_subject(
            AccessKind.ROLE, str(args["id"]), ctx.ref.platform, ctx.ref.server_id, ctx.server_roles
        )
    except AccessError as err:
        raise CommandError(str(err)) from None
    role = shown_subject(AccessKind.ROLE, subject, ctx.ref.platform)
    if not grant:
        if not await ctx.store.quotas.remove_rule(
            ctx.ref, Scope.SERVER, AccessKind.ROLE, subject, admin=True
        ):
            return Reply(f"Role {role} is no bot-admin role here; nothing changed.", ok=False)
        return Reply(f"Role {role} no longer administers the bot here.")
    if subject == ctx.ref.server_id or str(args["id"]).strip().lower() == EVERYONE:
        raise CommandError(
            f"{EVERYONE} is every member's role: all of them would administer the bot. "
            "Name the role of those who should. Nothing changed."
        )
    if not _role_exists(ctx, subject):
        raise CommandError(
            f"This server has no role {subject}: give the name or id of one of its roles, "
            "or mention it. Nothing changed."
        )
    rule = AccessRule(AccessKind.ROLE, subject, Effect.ADMIN, server_wide=True)
    kept = [r for r in await ctx.store.quotas.rules(ctx.ref) if r.server_wide]
    if len(kept) >= MAX_ACCESS_RULES and rule not in kept:
        raise _too_many(ctx, Scope.SERVER, kept)
    await ctx.store.quotas.set_rule(ctx.ref, Scope.SERVER, rule, ctx.actor)
    return Reply(
        f"Role {role} administers the bot now: its members configure every channel of "
        "this server as admins do, not server-wide settings or who administers it "
        f"({_access_as(ctx, 'unadmin', 'role', '…')} undoes it). Discord still hides the "
        "admin commands from them: show the role this bot's commands under Server "
        "Settings → Integrations."
    )


async def _rule_elsewhere(ctx: CommandContext, kind: AccessKind, subject: str, scope: Scope) -> str:
    """After a remove that found no rule at `scope`: how to remove the other scope's rule
    for the same subject, when it has one, or its bot-admin grant (/access unadmin)."""
    other = _other(ctx, scope)
    rules = await ctx.store.quotas.rules(ctx.ref)
    said = ""
    if other is not None and any(
        (r.kind, r.subject, r.server_wide, r.effect is Effect.ADMIN)
        == (kind, subject, other[0] is Scope.SERVER, False)
        for r in rules
    ):
        remove = f"{_access_as(ctx, 'remove', kind.value, subject)}{other[2]}"
        said = f" There is one {other[1]}: {remove} removes it."
    if kind is AccessKind.ROLE and any(
        (r.subject, r.effect) == (subject, Effect.ADMIN) for r in rules
    ):
        # A grant, not a who-may-chat rule: remove takes none.
        unadmin = _access_as(ctx, "unadmin", "role", subject)
        said += f" It is a bot-admin role: {unadmin} removes that."
    return said


async def access_summary(ctx: CommandContext) -> str:
    """One line per rule, or that everyone may chat (also shown by /settings)."""
    every = await ctx.store.quotas.rules(ctx.ref)
    rules = [r for r in every if r.effect is not Effect.ADMIN]
    admins = [r for r in every if r.effect is Effect.ADMIN and ctx.ref.has_server]
    operator = ctx.gate.operator
    lines = []
    if operator.servers or operator.users:
        lines.append("The operator limits who may use this bot (ALLOWED_SERVERS / ALLOWED_USERS).")
    if not rules:
        lines.append("Who may chat: everyone (no allow or deny rules here).")
    else:
        both = "; one allow rule here and one server-wide must both match" * _allows_both(rules)
        lines.append(f"Who may chat (deny wins; admins always may{both}):")
        for rule in rules:
            line = f"  {describe(rule, ctx.ref.place)}"
            if rule.kind is AccessKind.ROLE and not _role_exists(ctx, rule.subject):
                scope = " scope:server" if rule.server_wide else ""
                line += (
                    f": this role was deleted and matches nobody; remove the rule with "
                    f"{_access_as(ctx, 'remove', 'role', rule.subject)}{scope}"
                )
            lines.append(line)
    for rule in admins:
        line = f"  {describe(rule, ctx.ref.place)}"
        if not _role_exists(ctx, rule.subject):
            line += (
                f": this role was deleted and matches nobody; "
                f"{_access_as(ctx, 'unadmin', 'role', rule.subject)} removes it"
            )
        lines.append(line)
    if admins:
        lines.insert(len(lines) - len(admins), "Bot-admin roles (besides Manage Server):")
    return "\n".join(lines)


def _allows_both(rules: list[AccessRule]) -> bool:
    """Whether the channel and its server both have allow rules: each holds (may_chat)."""
    return {r.server_wide for r in rules if r.effect is Effect.ALLOW} == {False, True}


def _role_exists(ctx: CommandContext, role: str) -> bool:
    """Whether the server has this role now (True when the front-end did not say)."""
    return ctx.server_roles is None or role in ctx.server_roles
