"""Who may chat, pure: the operator's lists, then the channel's and server's rules.

A matching deny anywhere wins; where a scope has allow rules, only people matching one
of them may chat; admins always may (so nobody locks the admins out of their channel).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from bot.types import Actor, ChannelRef, PlaceName, Platform
from bot.types.limits import AccessKind, AccessRule, Effect
from bot.types.text import QUOTE_CHARS, quoted, strip_invisible, unmarked, unwrapped

MAX_LEVEL = 10**15  # Matrix power levels are canonical-JSON integers (±2^53)


@dataclass(frozen=True, slots=True)
class OperatorAccess:
    """ALLOWED_SERVERS / ALLOWED_USERS (empty: everyone) and the operator's admins."""

    servers: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    matrix_level: int = 50  # MATRIX_ADMIN_POWER_LEVEL: who administers a Matrix room

    @classmethod
    def of(
        cls,
        servers: Iterable[str] = (),
        users: Iterable[str] = (),
        admins: Iterable[str] = (),
        matrix_level: int = 50,
    ) -> OperatorAccess:
        def clean(items: Iterable[str]) -> frozenset[str]:
            return frozenset(i.strip() for i in items if i.strip())

        return cls(clean(servers), clean(users), clean(admins), matrix_level)

    def who_admins(self, ref: ChannelRef) -> str:
        """Who the admins of `ref`'s place are, as its platform decides it: what a refusal
        for admins only, or a failure only an admin can fix, names (README: Discord,
        Matrix, the console)."""
        if ref.platform is Platform.DISCORD:
            if ref.direct:  # its one person administers it (README: "In a DM you …")
                return "the person whose DM it is, and the operator's ADMIN_IDS"
            # A bot-admin role (/access admin) configures the bot as Manage Server does.
            return "members with Manage Server or a bot-admin role, and the operator's ADMIN_IDS"
        if ref.platform is Platform.MATRIX:
            return (
                f"members with power level {self.matrix_level} or more, the room's "
                "creators, and the operator's ADMIN_IDS"
            )
        return "the console run without --user, and the operator's ADMIN_IDS"

    def admin(self, actor: Actor) -> bool:
        """Who may configure a channel: its admins by the platform, and the operator's
        (ADMIN_IDS) everywhere."""
        return actor.is_channel_admin or actor.id in self.admins

    def server_admin(self, actor: Actor) -> bool:
        """Who may configure a whole server: its admins by the platform, and the
        operator's."""
        return actor.is_server_admin or actor.id in self.admins


# Said where ALLOWED_SERVERS / ALLOWED_USERS leave someone out: no admin here can change it.
NOT_HERE = (
    "This bot does not serve this place or person: its operator chose where it does. Ask "
    "them if it should."
)


def operator_allows(ref: ChannelRef, actor: Actor, operator: OperatorAccess) -> bool:
    """The operator's lists; the console is the operator's own terminal."""
    return not operator_refusal(ref, actor, operator)


def operator_refusal(ref: ChannelRef, actor: Actor, operator: OperatorAccess) -> str:
    """Why the operator's lists leave `actor` out here, for the log ("" when they let
    them in)."""
    if ref.platform is Platform.CONSOLE or actor.id in operator.admins:
        return ""
    if operator.users and actor.id not in operator.users:
        return "ALLOWED_USERS does not list them"
    # A Matrix room has no server: its room id (or its homeserver) may be listed instead.
    place = {ref.server_id, ref.channel_id, ":" + ref.channel_id.partition(":")[2]}
    if not operator.servers or place & operator.servers:
        return ""
    if ref.platform is Platform.DISCORD and not ref.server_id:
        # Membership of a listed server does not let them in: its /access rules and
        # budgets do not reach a DM, where the operator's key would answer them all the same.
        return "a DM is in no server, and ALLOWED_SERVERS is set: only ADMIN_IDS chat in DMs"
    if ref.platform is Platform.MATRIX:
        return "ALLOWED_SERVERS lists neither this room nor its homeserver"
    return "ALLOWED_SERVERS does not list this server"


def matches(rule: AccessRule, actor: Actor) -> bool:
    if rule.kind is AccessKind.USER:
        return rule.subject == actor.id
    if rule.kind is AccessKind.ROLE:
        return rule.subject in actor.roles
    if actor.power_level is None:
        return False
    try:
        return actor.power_level >= int(rule.subject)
    except ValueError:
        return False


def admin_by_role(ref: ChannelRef, actor: Actor, rules: Sequence[AccessRule]) -> bool:
    """Whether one of `actor`'s roles is a bot-admin role of this channel's server (set
    server-wide by its admins): an admin of its channels then. A DM has no server."""
    return ref.has_server and any(
        r.effect is Effect.ADMIN and r.server_wide and r.subject in actor.roles for r in rules
    )


def may_chat(
    ref: ChannelRef, actor: Actor, rules: Sequence[AccessRule], operator: OperatorAccess
) -> bool:
    if not operator_allows(ref, actor, operator):
        return False
    if operator.admin(actor) or admin_by_role(ref, actor, rules):
        return True
    if any(r.effect is Effect.DENY and matches(r, actor) for r in rules):
        return False
    for server_wide in (False, True):
        allows = [r for r in rules if r.effect is Effect.ALLOW and r.server_wide is server_wide]
        if allows and not any(matches(r, actor) for r in allows):
            return False
    return True


class AccessError(ValueError):
    """A subject that cannot be a rule's; the message says what would be."""


_SNOWFLAKE = re.compile(r"[0-9]{1,20}")
_PERSON_MENTION = re.compile(r"<@!?[0-9]{1,20}>")  # Discord's mention of a user
_MATRIX_USER = re.compile(r"@[!-9;-~]{1,200}:[A-Za-z0-9.\-\[\]:]{1,250}")
MATRIX_ID_CHARS = 255  # the spec's longest user id, sigil and server included
# A person's link as Matrix clients share it ("Copy link", "Share"): matrix.to's, or the
# matrix: URI; the id maybe percent-encoded, `?via=…` or `?action=chat` after it.
_MATRIX_USER_LINK = re.compile(
    r"(?:(?:https?://)?matrix\.to/#/(?P<to>[^?#\s]+)|matrix:u/(?P<uri>[^?#\s]+))(?:\?\S*)?",
    re.IGNORECASE,
)
_CONSOLE_USER = re.compile(r"[A-Za-z0-9_.\-@:]{1,100}")


# The kinds of rule that exist on one platform only (the rest, user, exist everywhere).
KINDS_ON: Mapping[AccessKind, Platform] = {
    AccessKind.ROLE: Platform.DISCORD,
    AccessKind.LEVEL: Platform.MATRIX,
}


def _kinds_on(platform: Platform) -> list[AccessKind]:
    return [k for k in AccessKind if platform.has(KINDS_ON.get(k, platform))]


def kinds_here(platform: Platform) -> str:
    """`user|role` on Discord: the kinds of rule a usage line offers there."""
    return "|".join(k.value for k in _kinds_on(platform))


# How a refusal names each kind of rule (said where KINDS_ON has it), and it missing.
_KIND_SAID = {
    AccessKind.USER: ("user", "users"),
    AccessKind.ROLE: ("role", "roles"),
    AccessKind.LEVEL: ("a power level (level 50)", "power levels"),
}


def _kinds_said(platform: Platform) -> str:
    """What a rule may name on `platform`, as its refusals say it: `user or role`; where
    only users: `user (the console has no roles or power levels)`."""
    here = _kinds_on(platform)
    said = " or ".join(_KIND_SAID[k][0] for k in here)
    if len(here) > 1:
        return said
    lacks = " or ".join(_KIND_SAID[k][1] for k in AccessKind if k not in here)
    return f"{said} (the {platform.value} has no {lacks})"


# How Discord writes a mention of the role every member has, in a message or an option:
# no `<@&id>`, though the role has an id (its server's own, shown nowhere).
EVERYONE = "@everyone"


def parse_subject(
    kind: AccessKind,
    text: str,
    platform: Platform,
    everyone: str = "",
    roles: Mapping[str, str] | None = None,
) -> str:
    """The stored form of a rule's subject: an id as the platform writes it, or a level;
    `everyone`: the id of the role every member has here (Discord: the server's id);
    `roles`: the server's roles, id → name, when known (a role may be named)."""
    typed = strip_invisible(text)  # a role's name as given, quotes and all
    raw = unwrapped(typed)  # an id, a mention, a level: one pair of quotes is not theirs
    shown = quoted(raw)
    if kind is AccessKind.LEVEL:
        if platform is not Platform.MATRIX:
            raise AccessError(f"Power levels are Matrix's; here use {_kinds_said(platform)}.")
        if not re.fullmatch(r"-?[0-9]{1,16}", raw) or abs(int(raw)) > MAX_LEVEL:
            raise AccessError(f"{shown} is not a power level: give a whole number like 50.")
        return str(int(raw))
    if kind is AccessKind.ROLE:
        if platform is not Platform.DISCORD:
            raise AccessError(f"Roles are Discord's; here use {_kinds_said(platform)}.")
        if _PERSON_MENTION.fullmatch(raw):
            raise AccessError(f"{shown} mentions a person, not a role: choose user as the kind.")
        mentioned = raw.startswith("<@&") and raw.endswith(">")
        raw = raw.removeprefix("<@&").removesuffix(">")
        if raw.lower() == EVERYONE and everyone:
            return everyone
        if mentioned or roles is None:
            if not _SNOWFLAKE.fullmatch(raw):
                raise AccessError(f"{shown} is not a role id: give its number or mention it.")
            return raw
        if raw in roles or (_SNOWFLAKE.fullmatch(raw) and not _named(raw, roles)):
            return raw  # an id (one the server lacks is the caller's to refuse)
        return _role_named(typed, roles)
    if platform is Platform.DISCORD:
        if raw.startswith("<@&") or raw.lower() == EVERYONE:
            raise AccessError(f"{shown} mentions a role, not a person: choose role as the kind.")
        raw = raw.removeprefix("<@").removeprefix("!").removesuffix(">")
        if not _SNOWFLAKE.fullmatch(raw):
            raise AccessError(f"{shown} is not a Discord user id: give the number or mention.")
        return raw
    if platform is Platform.MATRIX:
        raw = _matrix_user(raw)
        if not _MATRIX_USER.fullmatch(raw):
            raise AccessError(f"{shown} is not a Matrix user id like @name:example.org.")
        if len(raw) > MATRIX_ID_CHARS:
            # No one has such an id: the rule would name nobody (and was kept cut short).
            raise AccessError(
                f"{shown} is longer than a Matrix user id can be ({MATRIX_ID_CHARS} "
                "characters): check it and give it again."
            )
        return raw
    if not _CONSOLE_USER.fullmatch(raw):
        raise AccessError(f"{shown} is not a user name.")
    return raw


MAX_NAMED = 10  # the roles an ambiguous name's refusal lists


def _role_key(name: str) -> str:
    """A role's name as people type it: in any case, with or without its `@` or an emoji's
    style (❤️ or ❤)."""
    plain = name.replace("\ufe0e", "").replace("\ufe0f", "")
    return " ".join(plain.split()).removeprefix("@").casefold()


def _named(text: str, roles: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (id, name) of each role `text` names, in the server's order: its name as
    typed, else without one pair of quotes around it (`"Old crew"`, `@"Old crew"`), so a
    role whose name has quotes of its own (`"Quoted"`, `The "A" team`) is named too."""
    for each in dict.fromkeys((text, unwrapped(text), unwrapped(_role_key(text)))):
        key = _role_key(each)
        found = [(rid, name) for rid, name in roles.items() if _role_key(name) == key]
        if found:
            return found
    return []


# A role as the bot writes it, by its name and id (role_suggestions: a name several roles
# share; an ambiguous name's refusal): `Mods (id 123)`.
_NAME_AND_ID = re.compile(r"(.*)\(id ([0-9]{1,20})\)", re.DOTALL)


def _written_as(name: str, role: str) -> bool:
    """Whether `name`, before the id the bot wrote it with, is the name of `role` (or its
    start, cut with `…` where a suggestion had no room for the whole)."""
    key, own = _role_key(name), _role_key(role)
    if name.strip().endswith("…"):
        return bool(key[:-1]) and own.startswith(key[:-1].rstrip())
    return key == own


def _role_named(text: str, roles: Mapping[str, str]) -> str:
    """The id of the one role of `roles` (id → name) that `text` names; AccessError when
    none does, or several do (naming them with their ids)."""
    found = _named(text, roles)
    picked = _NAME_AND_ID.fullmatch(unwrapped(text).replace("`", ""))
    if picked is not None and picked[2] in roles:
        rid = picked[2]
        # The form the bot writes a role in names that role, whatever another is named: a
        # role named `Mods (id 123)` (123 another role's) does not take the place of the
        # one picked from the suggestions, which list that look-alike with its own id.
        if not found or _written_as(picked[1], roles[rid]):
            return rid
        others = ", ".join(f"{quoted(name)} (id {other})" for other, name in found[:MAX_NAMED])
        raise AccessError(
            f"{quoted(text.strip())} names more than one role: {others}, named so, and "
            f"{quoted(roles[rid])} (id {rid}), written so. Give the id of the one you mean, "
            "or mention it. Nothing changed."
        )
    if len(found) == 1:
        return found[0][0]
    shown = quoted(text.strip())
    if not found:
        raise AccessError(
            f"This server has no role named {shown}: give a role's name, its id or its "
            "mention. Nothing changed."
        )
    listed = ", ".join(f"{quoted(name)} (id {rid})" for rid, name in found[:MAX_NAMED])
    if len(found) > MAX_NAMED:
        listed += f" and {len(found) - MAX_NAMED} more"
    raise AccessError(
        f"Several roles here are named {shown}: {listed}. Give the id of the one you mean, "
        "or mention it. Nothing changed."
    )


CHOICE_CHARS = 100  # the longest suggestion Discord shows (and hands back when picked)


def role_suggestions(typed: str, roles: Mapping[str, str], limit: int = 25) -> list[str]:
    """The server's roles (id → name, in its order) whose names hold what was typed, as
    parse_subject takes them back: names that begin with it first; a name several roles
    share as `name (id 123)`, one for each, and so a name written so already (a role named
    to look like another's suggestion), which that form would name otherwise."""
    shared = Counter(_role_key(name) for name in roles.values())
    needle = _role_key(typed)
    if not any(needle in key for key in shared):  # `"Old` typed for `Old crew`
        needle = _role_key(typed.strip(QUOTE_CHARS + "`@"))
    hits: list[tuple[bool, str]] = []
    for rid, name in roles.items():
        key = _role_key(name)
        if needle not in key:
            continue
        shown = name
        if shared[key] > 1 or _NAME_AND_ID.fullmatch(name.replace("`", "")):
            tail = f" (id {rid})"
            room = CHOICE_CHARS - len(tail)
            shown = (name if len(name) <= room else name[: room - 1] + "…") + tail
        hits.append((not key.startswith(needle), shown))
    hits.sort(key=lambda hit: hit[0])  # stable: the server's order within each
    return [shown for _, shown in hits][:limit]


def _matrix_user(text: str) -> str:
    """The user id in what people paste for one: the id, a link to them (matrix.to or
    matrix:u/), or the id in `<…>` as a reply's quote writes it; else `text`."""
    raw = unmarked(text)
    link = _MATRIX_USER_LINK.fullmatch(raw)
    if link is None:
        return raw
    # matrix.to's fragment has the sigil; the URI's `u/` says it is a user instead.
    return unquote(link["to"]) if link["to"] else "@" + unquote(link["uri"])


def shown_subject(kind: AccessKind, subject: str, platform: Platform) -> str:
    """A stored user or role id as the platform shows it by name: Discord renders
    `<@id>` and `<@&id>` as the name (a reply mentions no one), elsewhere the id reads."""
    if platform is Platform.DISCORD and kind is AccessKind.USER:
        return f"<@{subject}>"
    if platform is Platform.DISCORD and kind is AccessKind.ROLE:
        return f"<@&{subject}>"
    return subject


def describe(rule: AccessRule, place: PlaceName) -> str:
    """A rule as /access lists it; `place`: where it is listed (ChannelRef.place)."""
    where = "server-wide" if rule.server_wide else place.here
    subject = shown_subject(rule.kind, rule.subject, place.platform)
    if rule.effect is Effect.ADMIN:
        return f"role {subject} administers the bot in every channel ({where})"
    if rule.kind is AccessKind.LEVEL:
        who = f"power level {subject} and above"
    elif rule.kind is AccessKind.ROLE:
        who = f"role {subject}"
    else:
        who = f"user {subject}"
    return f"{rule.effect.value} {who} ({where})"
