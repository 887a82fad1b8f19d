"""Quotas and who may chat through the real discord.py client (simcord)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.types import limits
from tests.discord.conftest import World
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import bot_messages, reply_text, requests

pytestmark = pytest.mark.simcord(settle_timeout=30)


async def test_a_refused_turn_gets_a_reply_that_deletes_itself(
    world: World, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "REFUSAL_SECONDS", 0.3)  # 15 s in production
    done = await world.admin.slash(
        world.channel, "limits", action="set", name="messages_per_user_minute", value="1"
    )
    assert "set to 1" in reply_text(done)
    await world.member.send(world.channel, f"<@{world.bot_id}> one")
    asking = await world.member.send(world.channel, f"<@{world.bot_id}> two")
    assert len(endpoint.requests) == 1  # nothing sent for the second
    [posted] = [
        r.json
        for r in requests(world.env, "POST", f"/channels/{world.channel.id}/messages")
        if isinstance(r.json, dict) and "Limit reached" in str(r.json.get("content"))
    ]
    assert isinstance(posted, dict)
    assert "messages_per_user_minute" in posted["content"] and "frees up at" in posted["content"]
    assert posted["message_reference"]["message_id"] == asking.id  # a reply to the asker
    assert posted["allowed_mentions"]["replied_user"] is False  # without a ping
    for _ in range(50):
        if requests(world.env, "DELETE", f"/channels/{world.channel.id}/messages/"):
            break
        await asyncio.sleep(0.05)
    assert requests(world.env, "DELETE", f"/channels/{world.channel.id}/messages/")
    assert bot_messages(world.channel, world.bot_id) == ["Hello there!"]  # the refusal is gone
    shown = await world.member.slash(world.channel, "limits")
    assert shown.ephemeral and "0 of 1 messages left for you" in reply_text(shown)


async def test_a_limit_grouped_by_spaces_in_one_value_says_how_to_write_it(world: World) -> None:
    """Discord hands `1 000` over as one value: it was refused as "The value has a space
    at position 2.", where a typed `/limits set … 1 000` says how to write it."""
    done = await world.admin.slash(
        world.channel, "limits", action="set", name="tokens_per_user_day", value="1 000"
    )
    said = reply_text(done)
    assert "`1 000` has a space in it" in said and "(1000) or with commas (1,000)" in said
    shown = await world.admin.slash(world.channel, "limits")
    assert "No limits hold here" in reply_text(shown)  # nothing was set


async def test_an_allowed_role_chats_and_others_are_ignored(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    chatters = world.guild.create_role("Chatters")
    carol = world.guild.add_member(world.env.create_user("carol"), roles=[chatters])
    done = await world.admin.slash(
        world.channel, "access", action="allow", kind="role", id=f"<@&{chatters.id}>"
    )
    assert "allow role" in reply_text(done), reply_text(done)
    await world.member.send(world.channel, f"<@{world.bot_id}> may I?")
    assert bot_messages(world.channel, world.bot_id) == [] and endpoint.requests == []
    await carol.send(world.channel, f"<@{world.bot_id}> and I?")
    assert bot_messages(world.channel, world.bot_id) == ["Hello there!"]
    settings = await world.member.slash(world.channel, "settings")
    assert f"allow role <@&{chatters.id}> (here)" in reply_text(settings)


async def test_a_rule_for_a_deleted_role_is_marked_and_a_missing_role_refused(
    world: World, endpoint: FakeOpenAI, core: Any
) -> None:
    """A rule naming a role deleted since matched nobody, and /access list showed it like
    any other; a rule for a role id the server does not have was added without a word."""
    gone = world.guild.create_role("Old crew")
    done = await world.admin.slash(
        world.channel, "access", action="allow", kind="role", id=str(gone.id)
    )
    assert "allow role" in reply_text(done), reply_text(done)
    world.env.backend.delete_role(world.guild.id, gone.id)
    await world.env.settle()
    listed = reply_text(await world.admin.slash(world.channel, "access"))
    assert (
        f": this role was deleted and matches nobody; remove the rule with /access action:remove "
        f"kind:role id:{gone.id}" in listed
    ), listed

    refused = reply_text(
        await world.admin.slash(world.channel, "access", action="deny", kind="role", id="12345")
    )
    assert refused == (
        "This server has no role 12345: give the name or id of one of its roles, or mention "
        "it. Nothing changed."
    )
    assert "12345" not in reply_text(await world.admin.slash(world.channel, "access"))
    # Removing the deleted role's rule still works.
    removed = await world.admin.slash(
        world.channel, "access", action="remove", kind="role", id=str(gone.id)
    )
    assert "Removed the rule" in reply_text(removed), reply_text(removed)


async def test_a_turn_refused_in_a_dm_says_dm_and_in_a_server_channel_channel(
    world: World, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chat turn a limit refused in a DM said "for this channel" and "an admin of this
    channel can …": the DM's own words there, the limit's name as it is typed."""
    monkeypatch.setattr(limits, "REFUSAL_SECONDS", 0.3)  # 15 s in production
    dora = world.env.create_user("dora")
    done = await dora.slash("limits", action="set", name="tokens_per_channel_day", value="0")
    assert reply_text(done).startswith("tokens_per_channel_day set to 0 for this DM"), done
    await dora.send_dm("hello")
    done = await world.admin.slash(
        world.channel, "limits", action="set", name="tokens_per_channel_day", value="0"
    )
    assert "for this channel" in reply_text(done)
    await world.member.send(world.channel, f"<@{world.bot_id}> hello")
    assert endpoint.requests == []
    for channel, where in ((dora.dm_channel, "DM"), (world.channel, "channel")):
        [said] = [
            str(r.json.get("content"))
            for r in requests(world.env, "POST", f"/channels/{channel.id}/messages")
            if isinstance(r.json, dict) and "Limit reached" in str(r.json.get("content"))
        ]
        assert said.startswith(
            f"Limit reached: tokens_per_channel_day (0 tokens a day (UTC) for this {where})"
        ), said
        # As Discord takes it: `set` is /limits' optional action, picked by name there.
        raise_it = "/limits action:set name:tokens_per_channel_day value:<value>"
        assert f"an admin of this {where} can raise it with {raise_it}" in said, said


async def test_a_role_rule_in_a_dm_is_refused(world: World, endpoint: FakeOpenAI) -> None:
    """Probe: `/access allow role 123` in a DM said "Rule added: allow role <@&123>"
    though a DM has no roles (a rule that matches nobody there). Refused, saying why, a
    role given by its name too (not as "not a role id"); nothing changes."""
    dora = world.env.create_user("dora")
    for action, role in (("allow", "123"), ("deny", "123"), ("allow", "Moderators")):
        said = reply_text(await dora.slash("access", action=action, kind="role", id=role))
        assert said == (
            f"A DM has no roles (they belong to a server): name the person with /access "
            f"action:{action} kind:user id:<id>. Nothing changed."
        ), said
    listed = reply_text(await dora.slash("access"))
    assert listed == "Who may chat: everyone (no allow or deny rules here).", listed
    await dora.send_dm("still answered")
    assert bot_messages(dora.dm_channel, world.bot_id) == ["Hello there!"]


async def test_a_rule_for_everyone_takes_the_role_as_discord_writes_it(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Probe: `@everyone` in the id was refused as "not a role id: give its number or
    mention it", though that is how Discord writes its mention (the role's number is the
    server's own id, shown nowhere). It names the server's @everyone role: a deny keeps
    the channel to its admins, and removing the rule opens it again."""
    said = reply_text(
        await world.admin.slash(
            world.channel, "access", action="deny", kind="role", id=" @everyone "
        )
    )
    assert said.startswith(f"Rule added: deny role <@&{world.guild.id}> (here)."), said
    await world.member.send(world.channel, f"<@{world.bot_id}> may I?")
    assert bot_messages(world.channel, world.bot_id) == [] and endpoint.requests == []
    await world.admin.send(world.channel, f"<@{world.bot_id}> and I?")
    assert bot_messages(world.channel, world.bot_id) == ["Hello there!"]
    removed = reply_text(
        await world.admin.slash(
            world.channel, "access", action="remove", kind="role", id="@everyone"
        )
    )
    assert removed.startswith("Removed the rule for role"), removed
    listed = reply_text(await world.admin.slash(world.channel, "access"))
    assert listed == "Who may chat: everyone (no allow or deny rules here).", listed
    await world.member.send(world.channel, f"<@{world.bot_id}> now?")
    assert len(bot_messages(world.channel, world.bot_id)) == 2


async def test_removing_what_was_set_server_wide_without_scope_names_the_command(
    world: World,
) -> None:
    """Probe: /access listed "allow role @Chatters (server-wide)"; `/access remove role`
    of it without scope:server said only "There was no rule for role 2000… for this
    channel" (its raw id, where the list shows the role), and `/limits set … default`
    of a server-wide limit "was not set for this channel": nothing said it is set
    server-wide, nor how to remove it there."""
    chatters = world.guild.create_role("Chatters")
    mention = f"<@&{chatters.id}>"
    added = await world.admin.slash(
        world.channel, "access", action="allow", kind="role", id=mention, scope="server"
    )
    assert f"allow role {mention} (server-wide)" in reply_text(added), reply_text(added)
    said = reply_text(
        await world.admin.slash(world.channel, "access", action="remove", kind="role", id=mention)
    )
    assert said == (
        f"There was no rule for role {mention} for this channel. There is one server-wide: "
        f"/access action:remove kind:role id:{chatters.id} scope:server removes it."
    ), said
    listed = reply_text(await world.admin.slash(world.channel, "access"))
    assert f"allow role {mention} (server-wide)" in listed, listed  # nothing changed
    said = reply_text(
        await world.admin.slash(
            world.channel, "access", action="remove", kind="role", id=mention, scope="server"
        )
    )
    assert said == f"Removed the rule for role {mention} server-wide.", said

    await world.admin.slash(
        world.channel,
        "limits",
        action="set",
        name="tokens_per_user_day",
        value="5000",
        scope="server",
    )
    said = reply_text(
        await world.admin.slash(
            world.channel, "limits", action="set", name="tokens_per_user_day", value="default"
        )
    )
    assert said == (
        "tokens_per_user_day was not set for this channel; nothing changed. It is set "
        "server-wide (5,000): /limits action:set name:tokens_per_user_day value:default "
        "scope:server removes "
        "that."
    ), said


async def test_removing_a_bot_admin_roles_rule_names_unadmin(world: World) -> None:
    """Probe: `/access remove role Helpers` of a role that is a bot-admin role (no allow
    or deny rule) said only "There was no rule for role @Helpers for this channel. There
    is one server-wide: /access remove role … scope:server removes it", and that one said
    there was no rule: the grant is removed by /access unadmin, which it names now."""
    helpers = world.guild.create_role("Helpers")
    mention = f"<@&{helpers.id}>"
    made = await world.admin.slash(
        world.channel, "access", action="admin", kind="role", id="Helpers"
    )
    assert "administers the bot now" in reply_text(made), reply_text(made)
    unadmin = f"/access action:unadmin kind:role id:{helpers.id} removes that."
    for scope in ({}, {"scope": "server"}):
        said = reply_text(
            await world.admin.slash(
                world.channel, "access", action="remove", kind="role", id="Helpers", **scope
            )
        )
        where = "server-wide" if scope else "for this channel"
        assert said == (
            f"There was no rule for role {mention} {where}. It is a bot-admin role: {unadmin}"
        ), said
    listed = reply_text(await world.admin.slash(world.channel, "access"))
    assert f"role {mention} administers the bot" in listed, listed  # nothing changed


async def test_allow_rules_of_the_channel_and_the_server_both_hold_and_say_so(
    world: World, endpoint: FakeOpenAI
) -> None:
    """Probe: with `allow role @Members` server-wide, `/access allow role @VIP` in a
    channel said "Only those an allow rule names may chat here now", yet a VIP without
    Members was ignored there (quietly, as anyone not allowed is): each scope's allow
    rules hold, so one of each must match. The reply and the list say so."""
    members = world.guild.create_role("Members")
    vip = world.guild.create_role("VIP")
    carol = world.guild.add_member(world.env.create_user("carol"), roles=[vip])
    dave = world.guild.add_member(world.env.create_user("dave"), roles=[vip, members])
    await world.admin.slash(
        world.channel, "access", action="allow", kind="role", id=str(members.id), scope="server"
    )
    said = reply_text(
        await world.admin.slash(
            world.channel, "access", action="allow", kind="role", id=str(vip.id)
        )
    )
    assert said == (
        f"Rule added: allow role <@&{vip.id}> (here). Only those an allow rule names may chat "
        "here now (admins always may), and the server's allow rules hold here too: one of "
        "this channel's rules and one of the server's must name them."
    ), said
    listed = reply_text(await world.admin.slash(world.channel, "access"))
    assert listed.startswith(
        "Who may chat (deny wins; admins always may; one allow rule here and one "
        "server-wide must both match):"
    ), listed
    await carol.send(world.channel, f"<@{world.bot_id}> VIP only")
    assert bot_messages(world.channel, world.bot_id) == [] and endpoint.requests == []
    await dave.send(world.channel, f"<@{world.bot_id}> VIP and member")
    assert bot_messages(world.channel, world.bot_id) == ["Hello there!"]


async def test_a_mention_of_the_other_kind_says_which_kind_it_is(world: World) -> None:
    """Probe: kind:user with a role's mention (or kind:role with a person's) was told
    "is not a Discord user id: give the number or mention" — a mention is what was
    given. The reply names the kind to choose; nothing is added."""
    chatters = world.guild.create_role("Chatters")
    for kind, given, said in (
        ("user", f"<@&{chatters.id}>", "mentions a role, not a person: choose role as the kind"),
        ("user", "@everyone", "mentions a role, not a person: choose role as the kind"),
        (
            "role",
            f"<@!{world.member.id}>",
            "mentions a person, not a role: choose user as the kind",
        ),
        ("role", f"<@{world.member.id}>", "mentions a person, not a role: choose user as the kind"),
    ):
        reply = reply_text(
            await world.admin.slash(world.channel, "access", action="allow", kind=kind, id=given)
        )
        assert reply == f"`{given}` {said}.", reply
    listed = reply_text(await world.admin.slash(world.channel, "access"))
    assert listed == "Who may chat: everyone (no allow or deny rules here).", listed
