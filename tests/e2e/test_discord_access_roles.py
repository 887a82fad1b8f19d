"""Who-may-chat rules for roles given by name, as server admins type them: `chatbot run`
as its own process against the loopback fake Discord, whose server has roles (some made
while the bot is connected) and members who hold them."""

from __future__ import annotations

from pathlib import Path

from tests.bot_process import chatbot_run
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import Script

TOKEN = "loopback.bot.token-access-roles-0123"
MODERATORS, OLD_CREW, MODS, MODS_LOWER, FANS = (500_000_000_000_000_000 + i for i in range(1, 6))
# The server's roles most tests start from: two that differ only in case, one with emoji.
ROLES = {
    MODERATORS: "Moderators",
    OLD_CREW: "Old crew",
    MODS: "Mods",
    MODS_LOWER: "mods",
    FANS: "\u2764\ufe0f Fans",  # ❤️, as Discord's emoji picker writes it
}
CAROL = (300_000_000_000_000_005, "carol")  # holds Old crew
DAVE = (300_000_000_000_000_006, "dave")  # holds no role


def _answers(fake: FakeDiscord) -> int:
    """Answers shown to the end (their 🔄 button is on)."""
    return sum("cc:regen:" in repr(m["components"]) for m in fake.messages.values())


async def test_a_role_is_given_by_its_name_as_admins_type_it(tmp_path: Path) -> None:
    """Probe: `/access allow role Moderators` (or `@Moderators`, `moderators`) was refused
    as "`Moderators` is not a role id: give its number or mention it": an admin had to
    find the role's id (developer mode) or mention it. A name now names the server's role
    in any case, with or without its `@`, with spaces and emoji in it (the option took one
    word, no emoji's hidden parts); one that several roles have is refused naming them with
    their ids, and one no role has says so."""
    fake = FakeDiscord(TOKEN)
    fake.roles = dict(ROLES)
    fake.member_roles = {CAROL[0]: [OLD_CREW]}
    async with chatbot_run(tmp_path, fake, Script()) as (bot, model):
        for typed in ("Moderators", "@moderators", "  MODERATORS "):
            said = await fake.command_says("access", action="allow", kind="role", id=typed)
            assert said.startswith(f"Rule added: allow role <@&{MODERATORS}> (here)."), said
        said = await fake.command_says("access", action="allow", kind="role", id="@Old Crew")
        assert said.startswith(f"Rule added: allow role <@&{OLD_CREW}> (here)."), said
        for typed in ("\u2764\ufe0f fans", "\u2764 FANS"):  # with the emoji's style or not
            said = await fake.command_says("access", action="deny", kind="role", id=typed)
            assert said.startswith(f"Rule added: deny role <@&{FANS}> (here)."), said

        said = await fake.command_says("access", action="deny", kind="role", id="mods")
        assert said == (
            f"Several roles here are named `mods`: `Mods` (id {MODS}), `mods` (id "
            f"{MODS_LOWER}). Give the id of the one you mean, or mention it. Nothing changed."
        ), said
        said = await fake.command_says("access", action="deny", kind="role", id="@Nobody")
        assert said == (
            "This server has no role named `@Nobody`: give a role's name, its id or its "
            "mention. Nothing changed."
        ), said

        # A role made while the bot is connected is known by its name at once.
        late = await fake.create_role("Late shift")
        said = await fake.command_says("access", action="allow", kind="role", id="late shift")
        assert said.startswith(f"Rule added: allow role <@&{late}> (here)."), said

        listed = await fake.command_says("access")
        for role in (MODERATORS, OLD_CREW, late):
            assert f"allow role <@&{role}> (here)" in listed, listed
        assert f"deny role <@&{FANS}> (here)" in listed, listed
        assert f"<@&{MODS}>" not in listed and f"<@&{MODS_LOWER}>" not in listed, listed

        # The rule holds the role's id: Carol (Old crew) is answered, Dave ignored.
        answers = _answers(fake)
        await fake.user_says(f"<@{fake.bot_id}> from dave", by=DAVE)
        await fake.user_says(f"<@{fake.bot_id}> from carol", by=CAROL)
        await fake.wait_until(lambda: _answers(fake) > answers, 60)
        asked = [str(r["messages"][-1]["content"]) for r in model.requests]
        assert any("from carol" in a for a in asked) and not any("dave" in a for a in asked)

        said = await fake.command_says("access", action="remove", kind="role", id="old crew")
        assert said == f"Removed the rule for role <@&{OLD_CREW}> for this channel.", said
        await bot.stop()
    assert "Traceback" not in bot.log, bot.log[-3000:]


def _offered(choices: list[dict[str, object]]) -> list[object]:
    assert all(c["name"] == c["value"] for c in choices), choices
    return [c["value"] for c in choices]


async def test_role_names_are_offered_as_the_admin_types_and_picking_one_adds_it(
    tmp_path: Path,
) -> None:
    """Probe: `/access allow role <name>` took names, but the `id` option suggested
    nothing, where Discord users expect the server's roles to pick from. With the kind set
    to role it offers the server's role names holding what is typed (those beginning with
    it first, one made while the bot runs too); a name two roles share comes once for each
    with its id, and picking any suggestion adds the rule for that role. A user or a level
    gets no role names, and a member who may not run /access gets nothing."""
    fake = FakeDiscord(TOKEN)
    fake.roles = dict(ROLES)
    role = {"action": "allow", "kind": "role"}
    async with chatbot_run(tmp_path, fake, Script()) as (bot, _):
        everything = _offered(await fake.autocomplete("access", manager=True, filled=role, id=""))
        assert everything == [
            "@everyone",
            "Moderators",
            "Old crew",
            f"Mods (id {MODS})",
            f"mods (id {MODS_LOWER})",
            "\u2764\ufe0f Fans",
        ], everything
        typed = _offered(await fake.autocomplete("access", manager=True, filled=role, id="@MO"))
        assert typed == ["Moderators", f"Mods (id {MODS})", f"mods (id {MODS_LOWER})"], typed
        late = await fake.create_role("Late shift")
        shift = _offered(await fake.autocomplete("access", manager=True, filled=role, id="shift"))
        assert shift == ["Late shift"], shift

        for picked, rid in (("Old crew", OLD_CREW), (f"mods (id {MODS_LOWER})", MODS_LOWER)):
            said = await fake.command_says("access", **role, id=picked)
            assert said.startswith(f"Rule added: allow role <@&{rid}> (here)."), said
        said = await fake.command_says("access", **role, id="Late shift")
        assert said.startswith(f"Rule added: allow role <@&{late}> (here)."), said

        for other in ({"action": "allow", "kind": "user"}, {"action": "deny", "kind": "level"}):
            assert await fake.autocomplete("access", manager=True, filled=other, id="mo") == []
        assert await fake.autocomplete("access", manager=False, filled=role, id="mo") == []
        await bot.stop()
    assert "Traceback" not in bot.log, bot.log[-3000:]


async def test_a_role_whose_name_has_quotes_is_named_with_them_or_within_them(
    tmp_path: Path,
) -> None:
    """Probe: the `id` option lost one pair of quotes around what was typed before the
    role was looked up, so a role whose name is in quotes of its own (`"Quoted"`,
    `«Guillemets»`, `'Single'`) could be given only by its id, and was refused as "no
    role named `Quoted`" even as its suggestion. A name is now looked up as typed, then
    without one pair of quotes around it (`"Old crew"`, `@"Old crew"`), so every role is
    reachable by its name, and `The "A" team` too."""
    fake = FakeDiscord(TOKEN)
    quoted_role, single, guillemets, a_team = (MODERATORS, MODS, MODS_LOWER, FANS)
    fake.roles = {
        OLD_CREW: "Old crew",
        quoted_role: '"Quoted"',
        single: "'Single'",
        guillemets: "«Guillemets»",
        a_team: 'The "A" team',
    }
    async with chatbot_run(tmp_path, fake, Script()) as (bot, _):
        cases = [
            ('"Quoted"', quoted_role),
            ('@"quoted"', quoted_role),
            ("'Single'", single),
            ("«Guillemets»", guillemets),
            ('"Old crew"', OLD_CREW),
            ("\u201cOld crew\u201d", OLD_CREW),
            ('@"Old crew"', OLD_CREW),
            ('The "A" team', a_team),
            ('"The "A" team"', a_team),
        ]
        for typed, rid in cases:
            said = await fake.command_says("access", action="deny", kind="role", id=typed)
            assert said.startswith(f"Rule added: deny role <@&{rid}> (here)."), (typed, said)
        role = {"action": "deny", "kind": "role"}
        offered = await fake.autocomplete("access", manager=True, filled=role, id='"Quo')
        assert _offered(offered) == ['"Quoted"'], offered
        said = await fake.command_says("access", action="deny", kind="role", id="Quoted")
        assert said.startswith("This server has no role named `Quoted`"), said
        await bot.stop()
    assert "Traceback" not in bot.log, bot.log[-3000:]


async def test_a_bot_admin_role_configures_channels_but_grants_nothing(tmp_path: Path) -> None:
    """Probe: a server that wanted its moderators to set the bot up had to give their role
    Manage Server (which also lets them add bots and edit the server) or have the operator
    list each in ADMIN_IDS. `/access admin role Moderators`, by a server admin, now makes
    the role's members admins of every channel of the server: not of server-wide settings,
    nor of who is a bot-admin. Their roles come with each command, so a member whose role
    was taken away, or whose role is no longer one, is refused again; a DM has no roles."""
    fake = FakeDiscord(TOKEN)
    fake.roles = {MODERATORS: "Moderators", OLD_CREW: "Old crew"}
    bob = fake.user_id  # who runs the commands
    fake.member_roles = {bob: [MODERATORS]}
    member = {"manager": False}  # Bob without Manage Server
    # The refusal names who the admins are, bot-admin roles too: a member is told the
    # role that would let them, not only Manage Server.
    refused = (
        "Only admins of this channel can use /model (members with Manage Server or a "
        "bot-admin role, and the operator's ADMIN_IDS)."
    )
    not_server = "Only server admins (Manage Server, or the operator's ADMIN_IDS) choose"
    async with chatbot_run(tmp_path, fake, Script()) as (bot, _):
        said = await fake.command_says("model", **member, id="m-large")
        assert said.startswith(refused), said
        grant = {"action": "admin", "kind": "role", "id": "Moderators"}
        said = await fake.command_says("access", **member, **grant)
        assert said.startswith("Only admins of this channel can use /access ("), said
        said = await fake.command_says("access", **{**grant, "id": "@everyone"})
        assert said.startswith("@everyone is every member's role"), said

        said = await fake.command_says("access", **grant)
        assert said.startswith(f"Role <@&{MODERATORS}> administers the bot now"), said
        said = await fake.command_says("model", **member, id="m-large")
        assert said.startswith("Model set to"), said
        listed = await fake.command_says("access", **member)
        assert f"role <@&{MODERATORS}> administers the bot in every channel" in listed, listed

        # A bot-admin grants nothing: no other role, no undoing, nothing server-wide.
        said = await fake.command_says("access", **member, **{**grant, "id": "Old crew"})
        assert said.startswith(not_server), said
        said = await fake.command_says("access", **member, **{**grant, "action": "unadmin"})
        assert said.startswith(not_server), said
        said = await fake.command_says("model", **member, id="m-large", scope="server")
        assert said.startswith("Only server admins can change server-wide settings"), said

        fake.member_roles = {bob: [OLD_CREW]}  # the role taken from Bob
        said = await fake.command_says("model", **member, id="m-large")
        assert said.startswith(refused), said
        fake.member_roles = {bob: [MODERATORS]}
        said = await fake.command_says("model", **member, id="m-large")
        assert said.startswith("Model set to"), said

        said = await fake.command_says("access", **{**grant, "action": "unadmin"})
        assert said == f"Role <@&{MODERATORS}> no longer administers the bot here.", said
        said = await fake.command_says("model", **member, id="m-large")
        assert said.startswith(refused), said

        said = await fake.command_says("access", **grant, where="dm")
        assert said.startswith("A DM has no server and no roles"), said
        await bot.stop()
    assert "Traceback" not in bot.log, bot.log[-3000:]


async def test_a_role_named_like_another_roles_suggestion_does_not_take_its_place(
    tmp_path: Path,
) -> None:
    """Probe: a role named `Mods (id <Mods' id>)` (anyone with Manage Roles can name one
    so) was what the suggestion `Mods (id …)` picked: its name matched first, so a server
    admin picking Mods from the list made the look-alike a bot-admin role, or the rule
    named it. The form the bot writes a role in now names that role; the look-alike is
    suggested with its own id, and a name that is one role's and written as another's
    (its name differs) is refused naming both."""
    fake = FakeDiscord(TOKEN)
    lookalike, crew = 500_000_000_000_000_011, 500_000_000_000_000_012
    fake.roles = {**ROLES, lookalike: f"Mods (id {MODS})", crew: f"Crew (id {MODS})"}
    role = {"action": "allow", "kind": "role"}
    async with chatbot_run(tmp_path, fake, Script()) as (bot, _):
        offered = _offered(await fake.autocomplete("access", manager=True, filled=role, id="mods"))
        mods, twin = f"Mods (id {MODS})", f"Mods (id {MODS}) (id {lookalike})"
        assert offered == [mods, f"mods (id {MODS_LOWER})", twin], offered
        said = await fake.command_says("access", action="admin", kind="role", id=mods)
        assert said.startswith(f"Role <@&{MODS}> administers the bot now"), said
        for picked, rid in ((mods, MODS), (twin, lookalike)):
            said = await fake.command_says("access", **role, id=picked)
            assert said.startswith(f"Rule added: allow role <@&{rid}> (here)."), said
        said = await fake.command_says("access", **role, id=f"Crew (id {MODS})")
        assert said == (
            f"`Crew (id {MODS})` names more than one role: `Crew (id {MODS})` (id {crew}), "
            f"named so, and `Mods` (id {MODS}), written so. Give the id of the one you mean, "
            "or mention it. Nothing changed."
        ), said
        listed = await fake.command_says("access")
        assert f"<@&{crew}>" not in listed, listed
        await bot.stop()
    assert "Traceback" not in bot.log, bot.log[-3000:]
