"""Quotas and access rules, pure: parsing, which limits hold, fit and frees-up, matching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.types import (
    Actor,
    ChannelConfig,
    ChannelRef,
    ChatMessage,
    PlaceName,
    Platform,
    Role,
    Source,
)
from bot.types.limits import AccessKind, AccessRule, Counts, Effect, LimitName, ScopeLimits
from bot.usage.access import AccessError, OperatorAccess, may_chat, parse_subject
from bot.usage.limits import (
    DEFAULT,
    InForce,
    LimitError,
    TurnCost,
    allowance,
    check,
    frees_at,
    in_force,
    parse_value,
    refusal_text,
    turn_cost,
    when,
)
from bot.usage.quota import Gate

NOW = datetime(2026, 12, 3, 14, 0, 0, tzinfo=UTC)
REF = ChannelRef(Platform.DISCORD, "c1", "g1")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("5", 5),
        (" 1,000 ", 1000),
        ("1 000 000", 1_000_000),
        ("1\u00a0000", 1000),  # a no-break space (French, a phone's keyboard)
        ("10\u202f000", 10_000),  # a narrow no-break space
        ("OFF", None),
    ],
)
def test_values_people_type(text: str, value: int | None) -> None:
    assert parse_value(text) == value


def test_default_is_its_own_word() -> None:
    assert parse_value("default") == DEFAULT


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "-1",
        "+5",
        "0_1",
        "1_000",
        "1e3",
        "1.5",
        "0x10",
        "٣",
        "５",
        "1,00",
        "1.000",  # one in English, a thousand in German
        "1,000 000",  # two separators
        "1234,567",
        "\x00",
        "9" * 14,
    ],
)
def test_junk_is_no_limit(text: str) -> None:
    with pytest.raises(LimitError):
        parse_value(text)


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("1.000", "If the dot separates thousands, write 1000."),
        ("\u0661\u0660\u0660", "Write it with the digits 0-9: 100."),
        ("-1", "(the server's or the operator's)."),
        ("\u2212" + "1", "(the server's or the operator's)."),  # no hint to write it -1
        ("9" * 14, "(the server's or the operator's)."),
    ],
)
def test_a_limit_refused_says_how_to_write_it_as_params_does(typed: str, said: str) -> None:
    with pytest.raises(LimitError) as err:
        parse_value(typed)
    assert str(err.value).endswith(said), str(err.value)


def test_channel_and_server_both_hold_and_off_hides_the_operator_default() -> None:
    defaults = {"tokens_per_user_day": 100, "messages_per_user_minute": 3}
    stored = ScopeLimits(
        channel={"tokens_per_user_day": 500, "messages_per_user_minute": None},
        server={"tokens_per_user_day": 200},
    )
    held = in_force(stored, defaults)
    assert held == {LimitName.TOKENS_PER_USER_DAY: InForce(200, "server")}
    assert in_force(ScopeLimits(), defaults)[LimitName.MESSAGES_PER_USER_MINUTE] == InForce(
        3, "operator"
    )


def test_a_tie_is_held_as_the_one_its_holder_alone_can_raise() -> None:
    """A channel's value equal to its server's: raising the channel's lifts nothing, so
    the refusal names the server's (scope:server); a DM's equal to the operator's, the
    operator's (a DM may not go higher)."""
    stored = ScopeLimits(channel={"tokens_per_user_day": 200}, server={"tokens_per_user_day": 200})
    assert in_force(stored, {}) == {LimitName.TOKENS_PER_USER_DAY: InForce(200, "server")}
    dm = ScopeLimits(channel={"messages_per_user_minute": 3})
    assert in_force(dm, {"messages_per_user_minute": 3}, direct=True) == {
        LimitName.MESSAGES_PER_USER_MINUTE: InForce(3, "operator")
    }


def test_a_turn_fits_until_the_estimate_would_cross_the_limit() -> None:
    held = {LimitName.TOKENS_PER_SERVER_DAY: InForce(1000, "server")}
    assert check(held, Counts(server_tokens_today=700), 300, NOW) is None
    refusal = check(held, Counts(server_tokens_today=701), 300, NOW)
    assert refusal is not None and refusal.frees_at == datetime(2026, 12, 4, tzinfo=UTC)
    assert "at 00:00 UTC (in 10 h 0 min)" in refusal.text
    huge = check(held, Counts(), 5000, NOW)
    assert huge is not None and huge.frees_at is None and "shorten it" in huge.text


def test_messages_per_minute_free_up_when_the_oldest_leaves_the_window() -> None:
    recent = (NOW - timedelta(seconds=50), NOW - timedelta(seconds=20), NOW - timedelta(seconds=5))
    counts = Counts(user_recent=recent)
    held = {LimitName.MESSAGES_PER_USER_MINUTE: InForce(3, "channel")}
    refusal = check(held, counts, 10, NOW)
    assert refusal is not None and refusal.frees_at == NOW + timedelta(seconds=10)
    assert "at 14:00:10 UTC (in 10 s)" in refusal.text
    # Lowered to 2: the second-oldest must leave too.
    assert frees_at(LimitName.MESSAGES_PER_USER_MINUTE, 2, counts, NOW) == recent[1] + timedelta(
        minutes=1
    )
    assert frees_at(LimitName.MESSAGES_PER_USER_MINUTE, 0, counts, NOW) is None
    assert check({LimitName.MESSAGES_PER_USER_MINUTE: InForce(4, "x")}, counts, 10, NOW) is None


def test_the_allowance_says_when_a_used_message_comes_back() -> None:
    """One of three used a minute: "2 of 3 left, frees up … (in 0 s)" said nothing true;
    the message used 20 s ago gives its place back in 40 s."""
    counts = Counts(user_recent=(NOW - timedelta(seconds=20),))
    held = {LimitName.MESSAGES_PER_USER_MINUTE: InForce(3, "channel")}
    [line] = allowance(held, counts, NOW)
    assert line == (
        "messages_per_user_minute: 2 of 3 messages left for you, "
        "one more frees up at 14:00:40 UTC (in 40 s)"
    )
    full = Counts(user_recent=(*counts.user_recent, NOW - timedelta(seconds=5), NOW))
    [line] = allowance(held, full, NOW)
    assert line.endswith("0 of 3 messages left for you, frees up at 14:00:40 UTC (in 40 s)")
    assert allowance(held, Counts(), NOW) == [
        "messages_per_user_minute: 3 of 3 messages left for you"
    ]


def test_a_limit_of_0_reads_as_none_allowed_not_as_a_count_run_down() -> None:
    """`/limits` showed "0 of 0 messages left for you", as if some had been used."""
    held = {
        LimitName.MESSAGES_PER_USER_MINUTE: InForce(0, "channel"),
        LimitName.TOKENS_PER_CHANNEL_DAY: InForce(0, "server"),
    }
    assert allowance(held, Counts(), NOW) == [
        "messages_per_user_minute: none allowed for you (the limit is 0)",
        "tokens_per_channel_day: none allowed for this channel (the limit is 0)",
    ]
    # On Matrix the place is a room (Platform.place), and the limit is named for it.
    assert allowance(held, Counts(), NOW, PlaceName(Platform.MATRIX))[1] == (
        "tokens_per_room_day: none allowed for this room (the limit is 0)"
    )
    # A direct chat is said as one; the name typed stays the platform's (ChannelRef.place).
    assert allowance(held, Counts(), NOW, PlaceName(Platform.DISCORD, direct=True))[1] == (
        "tokens_per_channel_day: none allowed for this DM (the limit is 0)"
    )
    assert allowance(held, Counts(), NOW, PlaceName(Platform.MATRIX, direct=True))[1] == (
        "tokens_per_room_day: none allowed for this direct chat (the limit is 0)"
    )


def test_a_message_larger_than_the_limit_itself_points_members_to_an_admin() -> None:
    """Members were told to "start afresh with /reset", a command only admins may run."""
    # Said where commands are typed in order after a `!` (Discord names its options).
    here = PlaceName(Platform.CONSOLE)
    text = refusal_text(LimitName.TOKENS_PER_USER_DAY, 500, 0, 900, None, NOW, "!", place=here)
    assert "alone needs more than that" in text
    assert "shorten it, or an admin of this channel can start afresh with !reset" in text
    assert "can raise it with !limits set tokens_per_user_day <value>" in text


def test_a_token_refusal_counts_what_answers_being_written_hold() -> None:
    """Review: "4,196 used … frees up at 00:00 UTC" while nothing was spent yet: the
    first answer's room was held, and it frees as soon as that answer ends."""
    text = refusal_text(
        LimitName.TOKENS_PER_USER_DAY, 2000, 4196, 356, NOW + timedelta(hours=10), NOW, held=4100
    )
    assert "96 used and 4,100 held by answers being written, this message needs about 356" in text
    assert (
        "(in 10 h 0 min) (or sooner, if the answers being written use less than they hold); "
        in text
    )


def test_a_refusal_speaks_of_answers_being_written_only_when_some_are() -> None:
    """Limits probe: every token refusal said "used or held by answers being written" and
    "or sooner, as answers being written end", with nothing being written: it frees up at
    midnight, not sooner."""
    held = {LimitName.TOKENS_PER_USER_DAY: InForce(600, "channel")}
    refusal = check(held, Counts(user_tokens_today=550), 300, NOW)
    assert refusal is not None
    assert refusal.text == (
        "Limit reached: tokens_per_user_day (600 tokens a day (UTC) per person); 550 used, "
        "this message needs about 300. It frees up at 00:00 UTC (in 10 h 0 min); an admin of "
        "this channel can raise it with /limits action:set name:tokens_per_user_day "
        "value:<value>. Nothing was sent to the model."
    )
    writing = check(held, Counts(user_tokens_today=550, user_held=500, channel_held=900), 300, NOW)
    assert writing is not None
    assert "; 50 used and 500 held by answers being written, this message" in writing.text
    assert "(or sooner, if the answers being written use less than they hold)" in writing.text


@pytest.mark.parametrize(
    ("name", "origin", "has_server", "who"),
    [
        (
            LimitName.TOKENS_PER_SERVER_DAY,
            "server",
            True,
            "a server admin can raise it with !limits set tokens_per_server_day <value> "
            "scope:server",
        ),
        (
            LimitName.TOKENS_PER_SERVER_DAY,
            "operator",
            True,
            "a server admin can raise it with !limits set tokens_per_server_day <value> "
            "scope:server",
        ),
        (
            LimitName.TOKENS_PER_USER_DAY,
            "server",
            True,
            "a server admin can raise it with !limits set tokens_per_user_day <value> scope:server",
        ),
        (
            LimitName.TOKENS_PER_USER_DAY,
            "operator",
            True,
            "an admin of this channel can raise it with !limits set tokens_per_user_day <value>",
        ),
        (
            LimitName.MESSAGES_PER_USER_MINUTE,
            "channel",
            False,
            "an admin of this channel can raise it with !limits set messages_per_user_minute "
            "<value>",
        ),
        (
            LimitName.TOKENS_PER_SERVER_DAY,
            "operator",
            False,
            "only the bot's operator can change it (LIMIT_TOKENS_PER_SERVER_DAY)",
        ),
    ],
)
def test_a_refusal_names_who_can_raise_the_limit_that_holds(
    name: LimitName, origin: str, has_server: bool, who: str
) -> None:
    """Limits probe: a full tokens_per_server_day (or a limit set server-wide) said "an
    admin can raise it with /limits set", which a channel's admin cannot: only a server
    admin, with scope:server (and in a room without a server, nobody but the operator)."""
    # No room at all; a message that alone needs more (a messages limit counts one).
    cases = ((0, 10),) if name is LimitName.MESSAGES_PER_USER_MINUTE else ((0, 10), (100, 300))
    for limit, cost in cases:
        here = PlaceName(Platform.CONSOLE)  # commands typed in order (Discord names them)
        refusal = check(
            {name: InForce(limit, origin)}, Counts(), cost, NOW, "!", has_server, place=here
        )
        assert refusal is not None and f"{who}." in refusal.text, refusal.text
        assert refusal.text.endswith("Nothing was sent to the model."), refusal.text


def test_when_reads_naturally() -> None:
    assert when(NOW + timedelta(seconds=42), NOW) == "at 14:00:42 UTC (in 42 s)"
    assert when(NOW + timedelta(minutes=30), NOW) == "at 14:30:00 UTC (in 30 min)"


def test_a_turn_needs_its_prompt_and_a_short_answer_and_holds_its_answers_room() -> None:
    assert turn_cost(100, 1024) == TurnCost(needed=356, reserved=1124, answer=1024)
    assert turn_cost(100, 50) == TurnCost(needed=150, reserved=150, answer=50)
    assert turn_cost(-5, 4000) == TurnCost(needed=256, reserved=4000, answer=4000)


def _rule(kind: AccessKind, subject: str, effect: Effect, server: bool = False) -> AccessRule:
    return AccessRule(kind, subject, effect, server)


def test_deny_wins_allow_lists_per_scope_and_admins_always_may() -> None:
    op = OperatorAccess()
    bob = Actor("1", "Bob", roles=("10",))
    eve = Actor("2", "Eve", roles=("20",))
    rules = [_rule(AccessKind.ROLE, "10", Effect.ALLOW, server=True)]
    assert may_chat(REF, bob, rules, op) and not may_chat(REF, eve, rules, op)
    rules.append(_rule(AccessKind.USER, "1", Effect.DENY))
    assert not may_chat(REF, bob, rules, op)
    # A channel allow list and a server allow list must both let one through.
    both = [
        _rule(AccessKind.ROLE, "10", Effect.ALLOW, server=True),
        _rule(AccessKind.USER, "2", Effect.ALLOW),
    ]
    assert not may_chat(REF, bob, both, op) and not may_chat(REF, eve, both, op)
    admin = Actor("3", "Ada", is_channel_admin=True)
    assert may_chat(REF, admin, [_rule(AccessKind.USER, "3", Effect.DENY)], op)


def test_power_levels_match_at_or_above() -> None:
    room = ChannelRef(Platform.MATRIX, "!r:hs")
    rules = [_rule(AccessKind.LEVEL, "50", Effect.ALLOW)]
    op = OperatorAccess()
    assert may_chat(room, Actor("@a:hs", "A", power_level=50), rules, op)
    assert not may_chat(room, Actor("@b:hs", "B", power_level=49), rules, op)
    assert not may_chat(room, Actor("@c:hs", "C"), rules, op)


def test_operator_lists() -> None:
    op = OperatorAccess.of(servers=["g1", ":hs", " "], users=(), admins=["9"])
    assert may_chat(REF, Actor("1", "x"), [], op)
    assert not may_chat(ChannelRef(Platform.DISCORD, "c", "g2"), Actor("1", "x"), [], op)
    assert may_chat(ChannelRef(Platform.DISCORD, "c", "g2"), Actor("9", "op"), [], op)
    assert may_chat(ChannelRef(Platform.MATRIX, "!r:hs"), Actor("@a:hs", "a"), [], op)
    assert not may_chat(ChannelRef(Platform.MATRIX, "!r:evil"), Actor("@a:hs", "a"), [], op)
    assert may_chat(ChannelRef(Platform.CONSOLE, "console"), Actor("x", "x"), [], op)
    users = OperatorAccess.of(users=["1"])
    assert may_chat(REF, Actor("1", "x"), [], users)
    assert not may_chat(REF, Actor("2", "x"), [], users)


@pytest.mark.parametrize(
    ("kind", "text", "platform", "stored"),
    [
        (AccessKind.USER, "<@123>", Platform.DISCORD, "123"),
        (AccessKind.USER, "<@!123>", Platform.DISCORD, "123"),
        (AccessKind.ROLE, "<@&77>", Platform.DISCORD, "77"),
        (AccessKind.USER, "@a:example.org", Platform.MATRIX, "@a:example.org"),
        (AccessKind.LEVEL, "050", Platform.MATRIX, "50"),
        (AccessKind.LEVEL, "-10", Platform.MATRIX, "-10"),
    ],
)
def test_subjects(kind: AccessKind, text: str, platform: Platform, stored: str) -> None:
    assert parse_subject(kind, text, platform) == stored


@pytest.mark.parametrize(
    ("kind", "text", "platform"),
    [
        (AccessKind.USER, "", Platform.DISCORD),
        (AccessKind.USER, "12a", Platform.DISCORD),
        (AccessKind.USER, "1" * 21, Platform.DISCORD),
        (AccessKind.USER, "\x00", Platform.DISCORD),
        (AccessKind.ROLE, "0_1", Platform.DISCORD),
        (AccessKind.ROLE, "5", Platform.MATRIX),
        (AccessKind.LEVEL, "50", Platform.DISCORD),
        (AccessKind.LEVEL, "0_1", Platform.MATRIX),
        (AccessKind.LEVEL, "1" * 17, Platform.MATRIX),
        (AccessKind.USER, "@a", Platform.MATRIX),
        (AccessKind.USER, "@a b:hs", Platform.MATRIX),
        (AccessKind.USER, "a b", Platform.CONSOLE),
    ],
)
def test_junk_subjects(kind: AccessKind, text: str, platform: Platform) -> None:
    with pytest.raises(AccessError):
        parse_subject(kind, text, platform)


@pytest.mark.parametrize(
    ("kind", "platform", "use"),
    [
        (AccessKind.LEVEL, Platform.DISCORD, "here use user or role."),
        (AccessKind.ROLE, Platform.MATRIX, "here use user or a power level (level 50)."),
        # The console is neither: each refusal pointed at the other kind.
        (AccessKind.LEVEL, Platform.CONSOLE, "here use user (the console has no roles"),
        (AccessKind.ROLE, Platform.CONSOLE, "here use user (the console has no roles"),
    ],
)
def test_a_kind_this_platform_lacks_names_the_ones_it_has(
    kind: AccessKind, platform: Platform, use: str
) -> None:
    with pytest.raises(AccessError) as err:
        parse_subject(kind, "50", platform)
    assert use in str(err.value)


def test_the_operators_admins_are_one_rule_however_they_are_given() -> None:
    """Who is an admin was written three times (Core's two checks, may_chat) over two
    copies of the list, one trimmed and one not: ` op ` in Core(admin_ids=…) could chat
    past every rule but not configure a channel (review)."""
    op = Actor("op", "Op")
    gate = Gate().with_admins([" op "])
    assert gate.operator.admin(op) and gate.operator.server_admin(op)
    here = ChannelRef(Platform.DISCORD, channel_id="c", server_id="g")
    deny = AccessRule(AccessKind.USER, "op", Effect.DENY, server_wide=False)
    assert may_chat(here, op, [deny], gate.operator)  # admins always may
    member = Actor("m", "M")
    assert not gate.operator.admin(member) and not gate.operator.server_admin(member)
    channel_admin = Actor("a", "A", is_channel_admin=True)
    assert gate.operator.admin(channel_admin) and not gate.operator.server_admin(channel_admin)


@pytest.mark.parametrize(("source", "held"), [(Source.CLAUDE, 9000), (Source.OPENAI, 1000)])
def test_a_turn_holds_what_claude_may_think_on_top_of_its_answer(source: Source, held: int) -> None:
    """Review: with thinking_budget 8000 a Claude request asks for max_tokens 9000, but
    the turn held 1000: each turn at once could spend 8,000 past what it held."""
    from bot.conversation.engine import _estimate
    from bot.providers import ChatRequest

    config = ChannelConfig.of(source=source, max_tokens=1000, thinking_budget=8000)
    request = ChatRequest("m", (ChatMessage(Role.USER, "hi"),), input_estimate=2)
    cost = _estimate(config, request)
    assert cost.reserved == 2 + held and cost.needed == 2 + 256


ROLES = {"900": "@everyone", "1": "Moderators", "2": "Old crew", "3": "Mods", "4": "mods"}
ROLES |= {"5": "2024", "6": "<@&1>"}


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("Moderators", "1"),
        ("@moderators", "1"),
        (" MODERATORS ", "1"),
        ("old  crew", "2"),  # a space too many
        ("@everyone", "900"),  # Discord's own word for it: the server's id
        ("everyone", "900"),  # the role's name without its @
        ("2024", "5"),  # no role has that id, one has that name
        ("3", "3"),  # an id the server has, whatever the names
        ("<@&4>", "4"),
        ("12345", "12345"),  # an id the server lacks: Core refuses it, remove takes it
    ],
)
def test_a_discord_role_is_named_by_its_name_or_its_id(text: str, stored: str) -> None:
    """An admin types a role's name as Discord shows it ("Moderators", "@Moderators", in
    any case); a name was refused as "not a role id"."""
    assert parse_subject(AccessKind.ROLE, text, Platform.DISCORD, "900", ROLES) == stored


def test_a_name_several_roles_share_is_refused_naming_them_with_their_ids() -> None:
    with pytest.raises(AccessError) as err:
        parse_subject(AccessKind.ROLE, "@MODS", Platform.DISCORD, "900", ROLES)
    assert str(err.value) == (
        "Several roles here are named `@MODS`: `Mods` (id 3), `mods` (id 4). Give the id of "
        "the one you mean, or mention it. Nothing changed."
    )
    many = {str(i): "Crew" for i in range(12)}
    with pytest.raises(AccessError) as err:
        parse_subject(AccessKind.ROLE, "crew", Platform.DISCORD, "900", many)
    assert str(err.value).endswith(
        "`Crew` (id 9) and 2 more. Give the id of the one you mean, or mention it. Nothing changed."
    ), err.value


@pytest.mark.parametrize("text", ["Nobody", "<@&Moderators>", "Moderators!"])
def test_a_name_no_role_has_is_refused(text: str) -> None:
    with pytest.raises(AccessError) as err:
        parse_subject(AccessKind.ROLE, text, Platform.DISCORD, "900", ROLES)
    assert "no role named" in str(err.value) or "not a role id" in str(err.value), err.value


def test_a_role_name_elsewhere_is_refused_as_roles_are_discords() -> None:
    with pytest.raises(AccessError) as err:
        parse_subject(AccessKind.ROLE, "Moderators", Platform.MATRIX, "", ROLES)
    assert str(err.value).startswith("Roles are Discord's; here use user or a power level")
