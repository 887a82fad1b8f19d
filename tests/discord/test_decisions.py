"""Pure decisions of the Discord front-end, without a client or a network."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import discord
import pytest
from discord import app_commands

from bot.commands import TABLE
from bot.commands.parse import typed_command
from bot.commands.spec import Command, Kind, Option
from bot.frontends.discord.client import tree_error_text
from bot.frontends.discord.commands import default_permissions, table_problems
from bot.frontends.discord.events import (
    Blocked,
    MessageFacts,
    actor_for,
    blocked_by,
    channel_ref,
    ignore_reason,
    is_addressed,
    send_check,
    strip_mention,
)
from bot.frontends.discord.logs import ModalValuesFilter
from bot.types import ChannelRef, Platform

PLAIN = MessageFacts(
    author_is_bot=False,
    is_user_message=True,
    readable=True,
    is_dm=False,
    mentions_me=False,
    replies_to_me=False,
    in_my_thread=False,
)


def test_only_readable_messages_from_people_are_considered() -> None:
    assert ignore_reason(PLAIN) is None
    assert ignore_reason(replace(PLAIN, author_is_bot=True, mentions_me=True)) == "sent by a bot"
    assert ignore_reason(replace(PLAIN, is_user_message=False)) == "a system message"
    assert ignore_reason(replace(PLAIN, readable=False, is_dm=True)) == "no readable content"


def test_a_message_that_came_before_is_not_answered_again() -> None:
    """Discord may send a message again after the gateway resumes (same id)."""
    again = replace(PLAIN, is_dm=True, mentions_me=True, repeated=True)
    assert ignore_reason(again) == "already handled (the same message again)"


@pytest.mark.parametrize("field", ["is_dm", "mentions_me", "replies_to_me", "in_my_thread"])
def test_each_way_of_speaking_to_the_bot_addresses_it(field: str) -> None:
    assert not is_addressed(PLAIN)
    assert is_addressed(replace(PLAIN, **{field: True}))


def test_the_bots_own_mention_is_stripped_and_others_are_kept() -> None:
    assert strip_mention("<@42> hello", 42) == "hello"
    assert strip_mention("hey <@!42>, and <@7> too", 42) == "hey , and <@7> too"
    # The bot's own role counts as the bot; another role stays in the text.
    assert strip_mention("<@&900> help <@&901>", 42, role_id=900) == "help <@&901>"
    assert strip_mention("<@42>", 42) == ""
    assert strip_mention("line one\n<@42> line two", 42) == "line one\n line two"


def test_threads_keep_the_parents_configuration_and_their_own_history() -> None:
    assert channel_ref(5, 9) == ChannelRef(Platform.DISCORD, "5", "9")
    assert channel_ref(77, 9, parent_id=5) == ChannelRef(Platform.DISCORD, "5", "9", "77")
    assert channel_ref(3, None) == ChannelRef(Platform.DISCORD, "3", "")


def test_manage_server_or_administrator_makes_an_admin() -> None:
    member = actor_for(1, "Bob", discord.Permissions(send_messages=True), in_dm=False)
    assert not member.is_channel_admin and not member.is_server_admin
    channels = actor_for(1, "Bob", discord.Permissions(manage_channels=True), in_dm=False)
    assert not channels.is_channel_admin
    mod = actor_for(2, "Ada", discord.Permissions(manage_guild=True), in_dm=False)
    assert mod.is_channel_admin and mod.is_server_admin
    owner = actor_for(3, "Olga", discord.Permissions(administrator=True), in_dm=False)
    assert owner.is_server_admin and owner.id == "3" and owner.display_name == "Olga"
    dm = actor_for(4, "Dora", None, in_dm=True)
    assert dm.is_channel_admin and not dm.is_server_admin


def test_posting_needs_send_and_a_reply_needs_history() -> None:
    full = discord.Permissions(view_channel=True, send_messages=True, read_message_history=True)
    assert send_check(full, in_thread=False).can_reply
    assert not send_check(full, in_thread=True).can_send  # threads need their own permission
    assert send_check(full, in_thread=True).blocked == Blocked.missing(
        "Send Messages in Threads", in_thread=True
    )
    no_history = discord.Permissions(view_channel=True, send_messages=True)
    assert not send_check(no_history, in_thread=False).can_reply
    mute = discord.Permissions(view_channel=True)
    assert send_check(mute, in_thread=False).blocked == Blocked.missing("Send Messages")


def test_a_locked_thread_takes_posts_only_with_manage_threads() -> None:
    """Permissions probe: every mention in a locked thread asked the model, whose answer
    Discord then refused (and the one notice blamed Send Messages in Threads)."""
    sends = discord.Permissions(view_channel=True, send_messages_in_threads=True)
    locked = send_check(sends, in_thread=True, locked=True)
    assert not locked.can_send and locked.blocked is not None
    assert (
        locked.blocked.reason == "the thread is locked" and "Manage Threads" in locked.blocked.fix
    )
    manages = discord.Permissions(sends.value | discord.Permissions(manage_threads=True).value)
    assert send_check(manages, in_thread=True, locked=True).can_send
    # Discord's own code for it, when the thread was locked after the check.
    assert blocked_by(160005, sends, in_thread=True).reason == "the thread is locked"


def test_a_refused_post_or_edit_names_what_is_missing_now() -> None:
    full = discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        read_message_history=True,
    )
    # A permission missing now is the one named, whatever Discord's code said.
    muted = discord.Permissions(view_channel=True)
    assert blocked_by(50013, muted, in_thread=False) == Blocked.missing("Send Messages")
    assert blocked_by(50083, muted, in_thread=True) == Blocked.missing(
        "Send Messages in Threads", in_thread=True
    )
    unseen = discord.Permissions(send_messages=True)
    assert blocked_by(50013, unseen, in_thread=False) == Blocked.missing("View Channel")
    # Nothing missing that the bot can see: the code says what happened.
    archived = blocked_by(50083, full, in_thread=True)
    assert archived.reason == "the thread is archived" and "Unarchive" in archived.fix
    assert blocked_by(50001, full, in_thread=False) == Blocked.missing("View Channel")
    assert blocked_by(50013, full, in_thread=False) == Blocked.missing("Send Messages")
    assert blocked_by(0, full, in_thread=True) == Blocked.missing(
        "Send Messages in Threads", in_thread=True
    )
    # No member to ask about (a DM): only the code.
    assert blocked_by(50083, None, in_thread=True).reason == "the thread is archived"
    assert "Send Messages permission" in Blocked.missing("Send Messages").reason


def test_the_shipped_table_fits_discord() -> None:
    assert table_problems(TABLE) == []


def test_a_table_discord_would_refuse_is_reported_in_full() -> None:
    opt = Option("pick", Kind.CHOICE, "one of many", choices=tuple(f"c{i}" for i in range(26)))
    bad = (
        Command("Model", "fine"),
        Command("x" * 33, "fine"),
        Command("long", "d" * 101),
        Command("many", "fine", options=(opt,)),
        Command(
            "opts", "fine", options=tuple(Option(f"o{i}", Kind.STRING, "h") for i in range(26))
        ),
        Command("num", "fine", options=(Option("n", Kind.NUMBER, "h", autocomplete="models"),)),
    )
    problems = table_problems(bad)
    assert any("/Model: name must be" in p for p in problems)
    assert any(p.startswith("/" + "x" * 33) for p in problems)
    assert any("/long: description" in p for p in problems)
    assert any("more than 25 choices" in p for p in problems)
    assert any("/opts: more than 25 options" in p for p in problems)
    assert any("autocomplete needs a text option" in p for p in problems)


def test_config_groups_are_hidden_from_members_only_when_every_subcommand_is_admin() -> None:
    by_name = {c.name: c for c in TABLE}
    assert default_permissions(by_name["key"]) == discord.Permissions(manage_guild=True)
    assert default_permissions(by_name["models"]) is None  # /models list is for everyone
    assert default_permissions(by_name["settings"]) is None


def gateway_record(event: dict[str, Any]) -> logging.LogRecord:
    """The line discord.py logs for a gateway event at DEBUG."""
    return logging.LogRecord(
        "discord.gateway",
        logging.DEBUG,
        __file__,
        1,
        "For Shard ID %s: WebSocket Event: %s",
        (0, event),
        None,
    )


def test_modal_values_are_hidden_from_discord_gateway_debug_logs() -> None:
    key = "sk-modal-0123456789abcdef"
    event = {
        "t": "INTERACTION_CREATE",
        "op": 0,
        "d": {"id": "1", "type": 5, "data": {"components": [{"value": key}]}},
    }
    record = gateway_record(event)
    assert ModalValuesFilter().filter(record)
    assert key not in record.getMessage()
    kept = gateway_record({"t": "MESSAGE_CREATE", "op": 0, "d": {"type": 0, "content": "hi"}})
    ModalValuesFilter().filter(kept)
    assert "hi" in kept.getMessage()


def test_a_message_holding_a_key_is_hidden_from_discord_gateway_debug_logs() -> None:
    """A key split over lines is refused and deleted; the log's redaction, which takes
    key shapes, would have masked only its first half."""
    text = "<@1> look:\nsk-proj-Zq9XwV8uT7sR\n6pO5nM4lK3jI2hG1fE0d"
    for kind in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
        event = {"t": kind, "op": 0, "d": {"id": "5", "type": 0, "content": text}}
        record = gateway_record(event)
        assert ModalValuesFilter().filter(record)
        shown = record.getMessage()
        assert "6pO5nM4lK3jI2hG1fE0d" not in shown and "Zq9XwV8uT7sR" not in shown
        assert "'id': '5'" in shown and "it holds a key" in shown
        assert event["d"]["content"] == text  # what discord.py reads is left alone


def test_commands_discord_py_could_not_route_get_a_useful_answer() -> None:
    stale = app_commands.CommandNotFound("old", [])
    assert "changed since Discord last loaded it" in tree_error_text(stale)
    odd = app_commands.AppCommandError("boom")
    assert "Try again" in tree_error_text(odd) and "boom" not in tree_error_text(odd)


@pytest.mark.parametrize(
    ("text", "named", "secret"),
    [
        ("/key set custom tabby-9f8e7d6c", "key", True),
        ("\uff0fkey set custom x", "key", True),
        ("/kye set custom x", "key", True),  # the command meant, not the typo
        ("/key-set custom x", "key", True),
        ("/password hunter2", "proxy password", True),  # a subcommand's name alone
        ("/\u039a\u0395\u03a5 set custom abc", "key", True),  # Greek capitals (it said help)
        ("/MODEL gpt-4o", "model", False),
        ("/model gpt-4o", "model", False),
        ("/shrug what now?", None, False),  # names no command: chat
        ("/-_-", None, False),  # a face, no name at all: chat (it raised IndexError)
        ("what is /model?", None, False),
    ],
)
def test_a_command_typed_into_a_message_names_its_slash_command(
    text: str, named: str | None, secret: bool
) -> None:
    typed = typed_command(text, TABLE)
    if named is None:
        assert typed is None
    else:
        assert typed is not None and (typed.name, typed.secret) == (named, secret)


@pytest.mark.parametrize(
    ("text", "named", "secret"),
    [
        ("!key set custom tabby-1a2b3c4d", "key", True),
        ("!MODEL gpt-4o", "model", False),
        ("!hey there", None, False),  # a typo away from `key`: chat, not a key command
        ("!see this", None, False),  # nor `proxy set`'s subcommand
        ("!kye set custom tabby-1a2b3c4d", None, False),
    ],
)
def test_a_command_in_another_platforms_form_is_one_only_by_its_own_name(
    text: str, named: str | None, secret: bool
) -> None:
    """Matrix's `!` in a Discord message or the console: chat starts with `!` as often as
    not, so a typo of a command's name is chat there (it was taken for `/key`, and the
    message deleted as holding a key)."""
    typed = typed_command(text, TABLE, "!", exact=True)
    if named is None:
        assert typed is None
    else:
        assert typed is not None and (typed.name, typed.secret) == (named, secret)
