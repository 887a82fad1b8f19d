"""Pure decisions of the Matrix front-end: events, access, secrets, rendering, pacing."""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
from html import unescape
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.commands import TABLE
from bot.commands.parse import CommandError
from bot.core import PacedReply, split_text
from bot.frontends.matrix import decide, events
from bot.frontends.matrix.access import (
    RoomAuthority,
    authority_from_state,
    creators_outrank,
    inviter_allowed,
    is_room_admin,
)
from bot.frontends.matrix.client import quiet_nio
from bot.frontends.matrix.messages import reasoning_as_quote
from bot.frontends.matrix.render import MAX_MARKS, markdown_to_html, needs_html
from bot.frontends.matrix.secret_commands import may_hold_secret, scrub_reply, split_target
from bot.frontends.matrix.sink import (
    EDIT_INTERVAL,
    LIMITED_INTERVAL,
    MESSAGE_LIMIT,
    MatrixTarget,
    RatePace,
    edit_content,
    edit_interval,
    message_content,
    page_size,
    reply_relation,
)
from bot.types.text import quoted

BOT = "@bot:example.org"


# --- events ------------------------------------------------------------------------
def test_mentions_by_m_mentions_pill_id_or_display_name() -> None:
    assert events.mentions_user({"body": "hi", "m.mentions": {"user_ids": [BOT]}}, BOT, ("Bot",))
    pill = f'<a href="https://matrix.to/#/{BOT}">Robo</a>: hi'
    assert events.mentions_user({"body": "Robo: hi", "formatted_body": pill}, BOT, ("",))
    assert events.mentions_user({"body": f"{BOT} hello"}, BOT, ("",))
    assert events.mentions_user({"body": "hey helper, what's up"}, BOT, ("Helper",))
    # Not a word of its own: "helpers" is not the bot called "Helper".
    assert not events.mentions_user({"body": "helpers everywhere"}, BOT, ("Helper",))
    # A short name (a card named "the") addresses the bot only at the start.
    assert not events.mentions_user({"body": "what is the weather like"}, BOT, ("the",))
    assert not events.mentions_user({"body": "the weather?"}, BOT, ("the",))
    assert events.mentions_user({"body": "the: what is the weather like"}, BOT, ("the",))
    assert events.mentions_user({"body": " AL, hi"}, BOT, ("Al",))
    assert not events.mentions_user({"body": "hi Al"}, BOT, ("Al",))
    assert not events.mentions_user({"body": "hi", "m.mentions": {"user_ids": []}}, BOT, ("Bot",))
    # A reply quoting the bot's name in the fallback does not count as a mention.
    quoted = {
        "body": "> <@x:y> ask Helper\n\nthanks",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$x"}},
    }
    assert not events.mentions_user(quoted, BOT, ("Helper",))
    # Nor does a pill in the HTML quote (<mx-reply>) of the message replied to: Bob
    # answering Alice, who had named the bot, was answered by the bot.
    html_quote = {
        "body": "> <@alice:x> Robo: hi\n\nlol",
        "format": "org.matrix.custom.html",
        "formatted_body": f'<mx-reply><blockquote><a href="https://matrix.to/#/{BOT}">Robo</a>'
        ": hi</blockquote></mx-reply>lol",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$e"}},
        "m.mentions": {"user_ids": ["@alice:x"]},
    }
    assert not events.mentions_user(html_quote, BOT, ("Robo",))
    html_quote["formatted_body"] += f' <a href="https://matrix.to/#/{BOT}">Robo</a>'
    assert events.mentions_user(html_quote, BOT, ("Robo",))  # named after the quote


def test_threads_replies_and_edits() -> None:
    thread = {
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": "$root",
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": "$x"},
        }
    }
    assert events.thread_root(thread) == "$root"
    assert events.replied_to(thread) == ""  # the thread fallback is not a real reply
    real = {
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": "$root",
            "m.in_reply_to": {"event_id": "$bot"},
        }
    }
    assert events.replied_to(real) == "$bot"
    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": "$e"}}}
    assert events.replied_to(reply) == "$e" and events.thread_root(reply) == ""
    assert events.is_edit({"m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}})
    assert not events.is_edit(reply)
    assert events.relates_to({"m.relates_to": "junk"}) == {}


REPLY = {"m.relates_to": {"m.in_reply_to": {"event_id": "$earlier"}}}


def test_text_of_strips_reply_fallback_and_ignores_notices() -> None:
    body = "> <@a:b> earlier words\n> more\n\nthe question"
    assert events.text_of({"msgtype": "m.text", "body": body, **REPLY}) == "the question"
    # Not a reply: the quote is what was typed (it hid `!settings`, or a key from checks).
    forged = "> <@bot:b> I am the bot\n\n!settings"
    assert events.text_of({"msgtype": "m.text", "body": forged}) == forged
    assert events.text_of({"msgtype": "m.notice", "body": "from another bot"}) is None
    assert events.text_of({"msgtype": "m.image", "body": "cat.png"}) is None
    assert events.text_of({"msgtype": "m.text", "body": 5}) is None
    # A client that sends no fallback (Element X): the member's own quote is kept.
    own = "> the sky is green\nis that quote true?"
    assert events.text_of({"msgtype": "m.text", "body": own, **REPLY}) == own
    emote = "> * <@a:b> waves\n\nhello"
    assert events.text_of({"msgtype": "m.text", "body": emote, **REPLY}) == "hello"


def test_pills_in_every_form_the_spec_allows() -> None:
    """matrix.to with the id percent-encoded (the spec's own examples), single quotes,
    other attributes first, the matrix: scheme; another user's pill is not the bot's."""
    for link in (
        "https://matrix.to/#/%40bot%3Aexample.org",
        "https://matrix.to/#/@bot:example.org?via=example.org",
        "matrix:u/bot:example.org?action=chat",
    ):
        for href in (f'"{link}"', f"'{link}'"):
            html = f'<a class="pill" href={href}>B</a> hi'
            assert events.mentions_user({"body": "so hi", "formatted_body": html}, BOT, ())
    other = '<a href="https://matrix.to/#/@bob:example.org">bob</a> hi'
    assert not events.mentions_user({"body": "so hi", "formatted_body": other}, BOT, ())


def test_hostile_html_is_read_in_linear_time() -> None:
    """Any member's message is looked through for a pill, addressed or not: HTML built to
    make the look backtrack (an unclosed link, thousands of `<a ` or `<mx-reply>`, each
    within an event's 64 KiB) had held the bot's loop for 10 to 30 seconds each."""
    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": "$q"}}}
    hostile = (
        {"formatted_body": "<a href='matrix:u/" + "x" * 60_000},
        {"formatted_body": "<a " * 20_000},
        {"formatted_body": "<mx-reply>" * 6_000, **reply},
    )
    started = time.perf_counter()
    for content in hostile:
        assert not events.mentions_user({"body": "hi", **content}, BOT, ("Bot",))
    assert time.perf_counter() - started < 2
    # A pill after a reply's quote still counts; one inside the quote still does not.
    quote = f'<mx-reply><a href="https://matrix.to/#/{BOT}">Bot</a></mx-reply>'
    after = f'{quote}so <a href="https://matrix.to/#/{BOT}">Bot</a>'
    assert events.mentions_user({"body": "so Bot", "formatted_body": after, **reply}, BOT, ())
    quoted = {"body": "so", "formatted_body": f"{quote}so", **reply}
    assert not events.mentions_user(quoted, BOT, ())


MXC = "mxc://example.org/AbCd_12-x"
ENCRYPTED_FILE = {
    "url": MXC,
    "key": {"kty": "oct", "alg": "A256CTR", "k": "a2V5", "ext": True},
    "iv": "aXY",
    "hashes": {"sha256": "aGFzaA"},
    "v": "v2",
}


def test_a_person_picked_from_the_mention_list_is_named_by_id() -> None:
    """Usage probe: `!access allow user` with a person picked from Element's mention list
    was refused ("not a Matrix user id"): the body holds their display name, the id is
    only in the pill's link."""
    pill = '<a href="https://matrix.to/#/%40bob%3Ahs">Bob &amp; Co</a>'
    content = {"formatted_body": f"!access allow user {pill}"}
    assert events.pills_as_ids("!access allow user Bob & Co", content) == (
        "!access allow user @bob:hs"
    )
    # A name that is also a word of the command: the argument (the last one) is the pill.
    content = {"formatted_body": '!access allow user <a href="matrix:u/al:hs"><b>allow</b></a>'}
    assert events.pills_as_ids("!access allow user allow", content) == "!access allow user @al:hs"
    # Only whole words; a room's link is no person; no HTML, or too much of it: as it is.
    assert events.pills_as_ids("!access deny user Bobby", {"formatted_body": pill}) == (
        "!access deny user Bobby"
    )
    room = '<a href="https://matrix.to/#/%23room%3Ahs">Bob</a>'
    assert events.pills_as_ids("x Bob", {"formatted_body": room}) == "x Bob"
    assert events.pills_as_ids("x Bob & Co", {"body": "x"}) == "x Bob & Co"
    flood = {"formatted_body": '<a href="https://matrix.to/#/@x:y">' * 200 + pill}
    assert events.pills_as_ids("x Bob & Co", flood) == "x Bob & Co"


def test_pills_are_not_looked_for_in_a_body_no_command_line_is() -> None:
    """Review: any member's `!access` is looked through before it is refused: a hundred
    pills named `a`, each looked for in a body of 30,000 `a`s, held the bot's loop for
    seconds. A body longer than a command line is taken as it is; only the last few
    pills (a command's arguments) are looked for."""
    pills = '<a href="https://matrix.to/#/@x:y">a</a>' * 100
    content = {"formatted_body": pills}
    flood = "!access allow user " + "a " * 30000
    assert events.pills_as_ids(flood, content) == flood
    body = "!access allow user" + " a" * 20
    started = time.perf_counter()
    named = events.pills_as_ids(body, content)
    assert time.perf_counter() - started < 1
    assert named.count("@x:y") == 8, named  # the last eight words, from the end
    assert named.endswith("a @x:y @x:y @x:y @x:y @x:y @x:y @x:y @x:y"), named


def test_an_image_names_its_mxc_file_and_what_its_sender_declared() -> None:
    content = {
        "msgtype": "m.image",
        "body": "cat.png",
        "url": MXC,
        "info": {"mimetype": "image/png", "size": 1234, "w": 4, "h": 3},
    }
    assert events.media_of(content) == events.MediaFile(MXC, "cat.png", "image/png", 1234)
    # `filename` names the file when the body is a caption; a bad size is no size.
    file = {**content, "msgtype": "m.file", "filename": "a.txt", "info": {"size": -5}}
    assert events.media_of(file) == events.MediaFile(MXC, "a.txt", "", 0)
    assert events.media_of({**content, "info": {"size": True}}) == events.MediaFile(
        MXC, "cat.png", "", 0
    )
    # A sticker has no msgtype: an image named by its description; an event of any other
    # type that looks like one names no file.
    sticker = {"body": "A waving cat", "url": MXC, "info": {"mimetype": "image/png"}}
    assert events.media_of(sticker, "m.sticker") == events.MediaFile(
        MXC, "A waving cat", "image/png"
    )
    assert events.media_of(content, "m.room.topic") is None


def test_an_encrypted_file_carries_its_key_hash_and_iv() -> None:
    content = {"msgtype": "m.image", "body": "x.png", "file": ENCRYPTED_FILE}
    media = events.media_of(content)
    assert media == events.MediaFile(MXC, "x.png", key="a2V5", sha256="aGFzaA", iv="aXY")
    assert media is not None and media.encrypted
    plain = events.media_of({"msgtype": "m.image", "body": "x.png", "url": MXC})
    assert plain is not None and not plain.encrypted
    # A voice message is a file message too: refused by its declared type, not fetched.
    voice = {"msgtype": "m.audio", "body": "a.ogg", "url": MXC, "info": {"mimetype": "audio/ogg"}}
    assert events.media_of(voice) == events.MediaFile(MXC, "a.ogg", "audio/ogg")


@pytest.mark.parametrize(
    "content",
    [
        {"msgtype": "m.text", "body": "hi", "url": MXC},  # not a file message
        {"msgtype": "m.location", "body": "here", "url": MXC},  # not a file message
        {"msgtype": "m.image", "body": "x.png"},  # no file at all
        {"msgtype": "m.image", "body": "x.png", "url": "https://evil.example/x.png"},
        {"msgtype": "m.image", "body": "x.png", "url": "mxc://example.org/../../x"},
        {"msgtype": "m.image", "body": "x.png", "url": f"{MXC}\n"},
        {"msgtype": "m.image", "body": "x.png", "file": {**ENCRYPTED_FILE, "iv": ""}},
        {"msgtype": "m.image", "body": "x.png", "file": {**ENCRYPTED_FILE, "hashes": {}}},
        {
            "msgtype": "m.image",
            "body": "x.png",
            "file": {**ENCRYPTED_FILE, "key": {"alg": "A128CBC", "k": "a2V5"}},
        },
        {
            "msgtype": "m.image",
            "body": "x.png",
            "file": {**ENCRYPTED_FILE, "url": "http://127.0.0.1/x"},
        },
    ],
)
def test_only_an_mxc_file_of_an_image_or_file_message_is_fetched(content: Any) -> None:
    media = events.media_of(content)
    if content["msgtype"] not in events.MEDIA:
        assert media is None
    else:  # a file message with a broken link: a file that cannot be had (and is said so)
        assert media == events.MediaFile("", "x.png"), media


def test_the_caption_is_the_body_only_when_it_differs_from_the_filename() -> None:
    assert events.caption_of({"body": "what is this?", "filename": "cat.png"}) == "what is this?"
    assert events.caption_of({"body": "cat.png", "filename": "cat.png"}) == ""
    assert events.caption_of({"body": "cat.png"}) == ""  # older clients: the body is the name
    quoted = {"body": "> <@a:b> q\n\nlook", "filename": "c.png"}
    assert events.caption_of({**quoted, **REPLY}) == "look"
    assert events.caption_of(quoted) == quoted["body"]


def test_an_edited_caption_is_the_edits_text_and_never_the_file_name() -> None:
    """A caption edit (MSC2530, Element X): `m.new_content` is the file message anew; its
    text is the new caption, "" once the caption is taken off (the body is the name)."""
    image = {"msgtype": "m.image", "filename": "cat.png", "url": MXC}
    replace_ = {"m.relates_to": {"rel_type": "m.replace", "event_id": "$q"}}

    def edit(body: str) -> dict[str, Any]:
        return {**image, "body": f"* {body}", "m.new_content": {**image, "body": body}, **replace_}

    assert events.edited_text(edit("what colour is it?")) == "what colour is it?"
    assert events.edited_text(edit("cat.png")) == ""
    bare = {"msgtype": "m.file", "body": "notes.txt", "url": MXC}  # no filename: no caption
    assert events.edited_text({**bare, "m.new_content": bare, **replace_}) == ""
    text = {"msgtype": "m.text", "body": "capital of Australia?"}
    assert events.edited_text({**text, "m.new_content": text, **replace_}) == text["body"]


def test_a_mention_in_a_caption_counts_and_the_file_name_does_not() -> None:
    content = {"msgtype": "m.image", "body": "helper.png", "url": MXC}
    assert events.mentions_user(content, BOT, ("Helper",))  # the body alone would say so
    assert not events.mentions_user(content, BOT, ("Helper",), text="")
    assert events.mentions_user(content, BOT, ("Helper",), text="Helper, what is this?")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Helper: what is 2+2?", "what is 2+2?"),
        (f"{BOT}: hi", "hi"),
        ("helper, please", "please"),
        ("What does Helper think?", "What does Helper think?"),
        ("Helperish: no", "Helperish: no"),
    ],
)
def test_strip_mention(body: str, expected: str) -> None:
    assert events.strip_mention(body, BOT, ("Helper",)) == expected


def test_every_name_the_bot_goes_by_addresses_it() -> None:
    """Its own name, and a character's that a room shows instead."""
    names = ("bot01e97", "Aurelia")
    assert events.mentions_user({"body": "Aurelia, how are you?"}, BOT, names)
    assert events.mentions_user({"body": "bot01e97: hi"}, BOT, names)
    assert not events.mentions_user({"body": "Aureliana is here"}, BOT, names)
    assert events.strip_mention("Aurelia, how are you?", BOT, names) == "how are you?"
    # The longer of two names that start alike is the one taken off.
    assert events.strip_mention("Aurelia Voss: hi", BOT, ("Aurelia", "Aurelia Voss")) == "hi"


@pytest.mark.parametrize(
    ("name", "body", "addressed"),
    [
        # Chinese and Japanese write no spaces and their own commas and colons.
        ("小助手", "小助手，你好", True),
        ("小助手", "小助手：你好", True),
        ("小助手", "请问小助手今天天气怎么样", True),
        ("アシスタント", "アシスタントさん、こんにちは", True),
        ("ボット", "ボットさん教えて", True),
        ("猫", "猫，你好", True),  # one character: only as an address at the start
        ("猫", "我的猫很可爱", False),
        ("Al", "Al：hi", True),
        # A name ending in an emoji ends there: "Robo🤖what" names it.
        ("Robo🤖", "hey Robo🤖what", True),
        ("🤖", "🤖: hello", True),
        ("Alice", "malice aforethought", False),  # spaced scripts keep their word edges
    ],
)
def test_names_in_scripts_without_spaces_address_the_bot(
    name: str, body: str, addressed: bool
) -> None:
    """A Chinese user types "小助手，你好": neither the full-width comma nor a name inside
    a run of text, where no word boundary ever comes, was taken for the bot's name."""
    assert events.mentions_user({"body": body}, BOT, (name,)) is addressed


def test_a_full_width_address_is_taken_off() -> None:
    assert events.strip_mention("小助手：你好", BOT, ("小助手",)) == "你好"
    assert events.strip_mention("Helper，hi", BOT, ("Helper",)) == "hi"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # French puts a space before the colon: the model was asked ": bonjour".
        ("Helper : bonjour", "bonjour"),
        ("Helper : !settings", "!settings"),
        ("Helper\u202f: !settings", "!settings"),  # a narrow no-break space, as in French
        # Element's pill is followed by &nbsp;: the name stayed in the text.
        ("Helper\u00a0: !settings", "!settings"),
        ("Helper\u00a0!settings", "!settings"),
        ("Helper\u3000：hi", "hi"),
        # A phone makes a dash of "-": the model got "– !settings".
        ("Helper – !settings", "!settings"),
        ("Helper — !settings", "!settings"),
        ("Helper—what is this?", "what is this?"),
        ("Helper - !settings", "!settings"),
        (f"{BOT} : hi", "hi"),
        # What already worked still does.
        ("Helper: !settings", "!settings"),
        ("Helper, !settings", "!settings"),
        ("Helper：！ｓｅｔｔｉｎｇｓ", "！ｓｅｔｔｉｎｇｓ"),
        ("Helper !settings", "!settings"),
        # No address: a smiley, a longer word, a list under the name, a mid-sentence name.
        ("Helper :)", ":)"),
        ("Helper-bot: hi", "Helper-bot: hi"),
        ("Helper\n- one\n- two", "Helper\n- one\n- two"),
        ("ask Helper : about it", "ask Helper : about it"),
    ],
)
def test_spaces_and_dashes_around_an_address_are_taken_off(body: str, expected: str) -> None:
    assert events.strip_mention(body, BOT, ("Helper",)) == expected


@pytest.mark.parametrize(
    ("body", "addressed"),
    [
        ("Al : salut", True),
        ("Al\u00a0: hi", True),
        ("Al – hi", True),
        ("Al :)", False),  # a smiley for someone, not an address
        ("Al hi", False),
    ],
)
def test_a_short_name_is_addressed_with_spaces_before_the_mark(body: str, addressed: bool) -> None:
    assert events.mentions_user({"body": body}, BOT, ("Al",)) is addressed


@pytest.mark.parametrize(
    ("body", "addressed"),
    [
        # A Japanese honorific straight after a Latin name: no reply at all.
        ("Helperさん、こんにちは", True),
        ("Helper様、教えてください", True),
        ("请问Helper今天天气怎么样", True),
        ("Helper님, 안녕하세요", True),
        ("Helperé, salut", False),  # a letter of the name's own script runs on
        ("Helperx: hi", False),
        ("Helper2: hi", False),
    ],
)
def test_a_latin_name_ends_where_another_script_starts(body: str, addressed: bool) -> None:
    assert events.mentions_user({"body": body}, BOT, ("Helper",)) is addressed


def test_an_honorific_and_its_address_are_taken_off() -> None:
    """As "Helper：" is: the model got "Helperさん、こんにちは" whole."""
    assert events.strip_mention("Helperさん、こんにちは", BOT, ("Helper",)) == "こんにちは"
    assert events.strip_mention("Helperさん、！settings", BOT, ("Helper",)) == "！settings"
    assert events.strip_mention("アシスタントさん：hi", BOT, ("アシスタント",)) == "hi"
    assert events.strip_mention("Helperさん hi", BOT, ("Helper",)) == "hi"
    assert events.mentions_user({"body": "Alさん、hi"}, BOT, ("Al",))
    # Not an address: "Helper's story".
    assert events.strip_mention("Helperさんの話", BOT, ("Helper",)) == "Helperさんの話"


def test_direct_room_is_two_people() -> None:
    assert events.is_direct_room(2) and events.is_direct_room(1)
    assert not events.is_direct_room(3)
    # One person so far in a room anyone may join or read: still a direct chat to answer
    # in, but no place for a key.
    assert events.is_private_room(2, "invite", "shared")
    assert events.is_private_room(2, "knock", "joined") and not events.is_private_room(
        3, "invite", "shared"
    )
    assert not events.is_private_room(2, "public", "shared")
    assert not events.is_private_room(2, "restricted", "shared")
    assert not events.is_private_room(2, "invite", "world_readable")


# --- access ------------------------------------------------------------------------
CREATE = {
    "type": "m.room.create",
    "state_key": "",
    "sender": "@alice:example.org",
    "content": {"room_version": "12", "additional_creators": ["@carol:example.org"]},
}


def test_room_v12_creators_are_admins_without_a_power_level() -> None:
    authority = authority_from_state([{"type": "m.room.name", "state_key": ""}, CREATE])
    assert authority == RoomAuthority("12", frozenset({"@alice:example.org", "@carol:example.org"}))
    for creator in authority.creators:
        assert is_room_admin(creator, 0, authority, 50)
    assert not is_room_admin("@bob:example.org", 0, authority, 50)
    assert is_room_admin("@bob:example.org", 50, authority, 50)
    assert not is_room_admin("@bob:example.org", 49, None, 50)


def test_creators_outrank_only_from_room_v12() -> None:
    old = RoomAuthority("10", frozenset({"@alice:example.org"}))
    assert not is_room_admin("@alice:example.org", 0, old, 50)  # demoted creator of v10
    assert [
        v for v in ("1", "9", "11", "12", "13", "org.matrix.hydra.11") if creators_outrank(v)
    ] == ["12", "13", "org.matrix.hydra.11"]
    assert authority_from_state([]) is None
    no_version = authority_from_state([{**CREATE, "content": {}}])
    assert no_version is not None and no_version.room_version == "1"


def test_inviters() -> None:
    assert inviter_allowed("@anyone:x.org", [])
    rules = ["@ops:corp.example", ":friends.example", "partner.example"]
    assert inviter_allowed("@ops:corp.example", rules)
    assert inviter_allowed("@zoe:friends.example", rules)
    assert inviter_allowed("@amy:partner.example", rules)
    assert not inviter_allowed("@dev:corp.example", rules)
    assert not inviter_allowed("@eve:evilfriends.example", rules)
    assert not inviter_allowed("@eve:friends.example.evil", rules)


# --- secrets -----------------------------------------------------------------------
def test_room_target_is_taken_out_of_the_command() -> None:
    assert split_target("!key set claude sk-1 room:!abc").text == "!key set claude sk-1"
    assert split_target("!key set claude sk-1 room:!abc").target == "!abc"
    assert split_target("!key set claude room:!abc:example.org sk-1").target == "!abc:example.org"
    assert split_target("!key set claude sk-1 room:#ops:example.org").target == "#ops:example.org"
    assert split_target("!model gpt-4o").target == ""
    # A channel name in a prompt is text, not a target.
    assert split_target("!system see #ops:example.org").target == ""
    with pytest.raises(CommandError):
        split_target("!key set claude sk-1 room:!a room:#b:c.d")
    assert split_target("!system you are in room:lobby").target == ""  # not meant as one


@pytest.mark.parametrize(
    "text",
    [
        "!key set custom tabby-0123456789 room:#ops",  # was read as part of the key
        "!key set custom room:#ops tabby-0123456789",
        "!proxy password room:! hunter22",
        "!key set custom tabby-0123456789 room:!abc room:#ops",  # one good, one not
    ],
)
def test_a_room_target_that_cannot_be_one_is_refused_as_such(text: str) -> None:
    with pytest.raises(CommandError) as err:
        split_target(text)
    assert "needs its server, as in room:#ops:example.org" in str(err.value)
    assert "tabby" not in str(err.value) and "hunter" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("!key set claude sk-abcdef", True),
        ("!key set claude sk-abcdef room:!r", True),
        ("!key sett claude sk-abcdef", True),  # mistyped: still holds a key
        ("!kye set claude sk-abcdef", True),
        ("!кеу set custom hunter2hunter2", True),  # Cyrillic look-alike letters
        ("!kеу set custom hunter2hunter2", True),  # some of them
        ("!нет и не было", False),  # Russian, not a look-alike of `set`
        ("!proxy set http://h:1/v1 hunter22", True),
        ("!proxy set http://h:1/v1", False),
        # Refused as an endpoint, but the password is in the room: redacted too.
        ("!proxy set http://user:hunter2pass@127.0.0.1:9/v1", True),
        ("!proxy set http://127.0.0.1:9/v1?api_key=hunter2pass", True),
        ("!proxy set http://h:1/v1#access_token=abc", True),
        ("!system read https://docs.example.org/page?id=3 first", False),
        ("!key clear claude", False),
        ("!key set", False),
        ("!key set custom", False),  # the key is asked for next
        # Matrix probe: the scope option alone was taken for a secret ("it is visible").
        ("!proxy password scope:server", False),
        ("!key set custom scope:channel", False),
        ("!proxy password scope:hunter2pass", True),
        ("!kye set custom", False),  # a typo of the command's name
        # Near misses of the commands' own words are no proof (review).
        ("!password monkey", True),
        ("!password master", True),
        ("!key sett custm", True),
        # A custom key or password in a word's place: it is in the room all the same.
        ("!key set hunter2hunter2", True),
        ("!key hunter2hunter2", True),
        ("!password hunter2hunter2", True),
        ("!ΚΕΥ set custom hunter2hunter2", True),  # Greek capitals
        ("!model gpt-4o", False),
        ("!system be nice to people", False),
        # A key pasted into a command that takes none is still a key in the room.
        ("!model sk-proj-Q7wErTyUiOpAsDfGhJkLz", True),
        ("!system be nice sk-ant-api03-Q7wErTyUiOpAsDf", True),
    ],
)
def test_which_commands_must_be_redacted(text: str, secret: bool) -> None:
    assert may_hold_secret(text, TABLE, "!") is secret


def test_a_long_command_line_is_judged_in_linear_time() -> None:
    """Every command line is judged as the sync hands it over, before anything else in
    any room: 60 KB built to make the URL and login looks backtrack (a run of letters,
    `$a` or `$a:` repeated, a query of `key` repeated) had held the loop seconds each."""
    hostile = ("a" * 60_000, "$a" * 30_000, "$a:" * 20_000, "http://h/?" + "key" * 20_000)
    started = time.perf_counter()
    for words in hostile:
        assert not may_hold_secret(f"!system {words}", TABLE, "!")
    assert time.perf_counter() - started < 2
    # Still found where they sit at the end of such a run.
    assert may_hold_secret("!system " + "$a" * 30_000 + ":pw@host", TABLE, "!")
    assert may_hold_secret("!system 1.-http://user:pw@host/", TABLE, "!")


def test_a_key_typed_in_the_wrong_place_is_scrubbed_from_the_reply() -> None:
    text = "!key set sk-live-abcdef openai"
    assert may_hold_secret(text, TABLE, "!")
    reply = "`sk-live-abcdef` is not a valid source. Choose one of: openai, claude."
    assert scrub_reply(reply, text, TABLE, "!") == (
        "`****` is not a valid source. Choose one of: openai, claude."
    )
    # What parsed as a plain value (a URL) stays; the password does not.
    text = "!proxy set http://host:1/v1 hunter22"
    reply = "Endpoint set to http://host:1/v1 (hunter22)"
    assert scrub_reply(reply, text, TABLE, "!") == "Endpoint set to http://host:1/v1 (****)"
    # A line that does not even split (two room targets) is scrubbed, not a crash: the
    # key's message was redacted and its sender got no answer at all.
    text = "!key set openai sk-live-abcdef room:!a room:!b"
    reply = "Name one room only (room:!id or room:#alias:server)."
    assert scrub_reply(reply, text, TABLE, "!") == reply
    assert scrub_reply("sk-live-abcdef?", text, TABLE, "!") == "****?"
    # Review: this had its own rule (the typed form only); a reply quoting the value
    # upper-cased or in hex (as an endpoint's error may) is scrubbed as everywhere else.
    text = "!proxy set http://host:1/v1 hunter22"
    for form in ("HUNTER22", b"hunter22".hex()):
        assert scrub_reply(f"refused: {form}.", text, TABLE, "!") == "refused: ****."
    # Fuzz probe: a word with `ß` in it made the scrubbing raise TypeError (its capital
    # is two letters), and the sender of the redacted command got no answer at all.
    text = "!proxy password Straße123"
    assert scrub_reply("refused: Straße123.", text, TABLE, "!") == "refused: ****."


def test_the_commands_own_option_words_stay_in_a_scrubbed_reply() -> None:
    """Matrix probe: `!key set custom <key> scope:server room:!g` in a direct chat was
    answered "leave out `****` to set it for this room": the scope option, quoted back,
    was taken for a secret. The key itself still goes."""
    text = "!key set custom hunter2hunter2 scope:server room:!g"
    reply = "There is no server here; leave out `scope:server` (hunter2hunter2)."
    assert scrub_reply(reply, text, TABLE, "!") == (
        "There is no server here; leave out `scope:server` (****)."
    )
    text = "!proxy set http://h:1/v1 hunter22 scope:channel bypass:on"
    for words in ("scope:channel", "scope:room"):
        assert scrub_reply(f"`{words}`", text.replace("scope:channel", words), TABLE, "!") == (
            f"`{words}`"
        )
    assert scrub_reply("`bypass:on`", "!connect bypass:on hunter22", TABLE, "!") == "`bypass:on`"
    # An option's name with a value that is none of its choices may be the secret.
    text = "!proxy password scope:hunter2pass"
    assert scrub_reply("`scope:hunter2pass`", text, TABLE, "!") == "`****`"


def test_nio_never_logs_the_events_it_finds_malformed() -> None:
    """nio's warning for a malformed event quotes it whole: a password typed in it."""
    quiet_nio()
    for name in ("nio.events.misc", "nio.responses"):
        assert not logging.getLogger(name).isEnabledFor(logging.WARNING)
    assert logging.getLogger("nio.events.misc").isEnabledFor(logging.ERROR)


# --- rendering ---------------------------------------------------------------------
def test_markdown_is_rendered_and_everything_else_escaped() -> None:
    html = markdown_to_html("**bold** *it* `a<b>` <img src=x onerror=alert(1)>")
    assert html == (
        "<strong>bold</strong> <em>it</em> <code>a&lt;b&gt;</code> "
        "&lt;img src=x onerror=alert(1)&gt;"
    )
    fence = markdown_to_html("look:\n```python\nif a < b:\n    pass\n```\ndone")
    assert '<pre><code class="language-python">if a &lt; b:\n    pass\n</code></pre>' in fence
    assert fence.startswith("look:") and fence.endswith("done")
    # An answer still streaming has an open fence: it renders as code anyway.
    assert markdown_to_html("```\nx = 1").startswith("<pre><code>x = 1")


def test_a_refused_value_with_backticks_renders_as_one_code_span() -> None:
    """What a reply quotes back (`quoted`) stays one span in Matrix's HTML."""
    for typed, code in [("@a`b:hs", "@a`b:hs"), ("`**x**`", "`**x**`")]:
        html = markdown_to_html(f"{quoted(typed)} is not a Matrix user id.")
        assert html == f"<code>{code}</code> is not a Matrix user id.", html


def test_a_backslash_keeps_punctuation_as_written() -> None:
    """CommonMark's escapes, as Discord reads them: a name the bot quotes (`literal`) and
    a model's `\\*` show as typed; in code a backslash is itself."""
    assert markdown_to_html(r"\[x\](https://e.org) \*\*b\*\* a\_b\_ \<@1\> \\") == (
        "[x](https://e.org) **b** a_b_ &lt;@1&gt; \\"
    )
    assert markdown_to_html(r"`a\*b` C:\Users") == r"<code>a\*b</code> C:\Users"
    assert markdown_to_html("\\> not a quote") == "&gt; not a quote"


def test_links_only_with_safe_schemes() -> None:
    assert markdown_to_html('[x](https://e.org/?a=1&b="2")') == (
        '<a href="https://e.org/?a=1&amp;b=&quot;2&quot;">x</a>'
    )
    assert "<a" not in markdown_to_html("[x](javascript:alert(1))")


def test_a_links_address_may_hold_balanced_parentheses() -> None:
    """CommonMark: an address holds balanced parentheses (a Wikipedia page's); it was cut
    at its first `)`, the link going to `…/Foo_(bar` and a stray `)` shown after it."""
    assert markdown_to_html("[Foo](https://en.wikipedia.org/wiki/Foo_(bar)) and") == (
        '<a href="https://en.wikipedia.org/wiki/Foo_(bar)">Foo</a> and'
    )
    assert markdown_to_html("see [a](https://e.org/(a)(b)).") == (
        'see <a href="https://e.org/(a)(b)">a</a>.'
    )
    assert markdown_to_html("([a](https://e.org))") == '(<a href="https://e.org">a</a>)'
    # Unbalanced or with a space inside: no link, written as it came.
    assert markdown_to_html("[a](https://e.org/x(y z)") == "[a](https://e.org/x(y z)"
    assert markdown_to_html("[a](https://e.org/x((y)))") == "[a](https://e.org/x((y)))"
    assert markdown_to_html("[x](javascript:alert(1))") == "[x](javascript:alert(1))"


async def test_a_line_of_brackets_renders_in_linear_time() -> None:
    """Review: a link was looked for from every `[` (and the address after every `](`)
    to the line's end: a page of 22,000 `[` (or `[a](`) took 2 to 3 s to render, and a
    page is rendered a few times each edit, as it is measured (page_size) and sent: an
    answer of 100,000 took 10 s an edit, the bot's loop held. Minutes without the rule
    (a link's text holds no `[`, its address no `](`), as the lines here are longer."""
    lines = ("[" * 200_000, "[a](" * 50_000, "[a" * 100_000, "[a](b](" * 30_000)
    parens = ("[a](x(" * 50_000, "[a](" + "(" * 200_000, "[a](x(y" * 30_000, "[a](b(c)" * 30_000)
    for line in lines + parens:
        assert markdown_to_html(line) == line
    recorder = Recorder()
    target = MatrixTarget(recorder, "!r", pace=RatePace())
    await PacedReply(target).finish("[" * 100_000 + " [docs](https://e.org/x)")
    shown = "".join(sent.get("body", "") for sent in recorder.sent)
    assert shown.replace(" ", "") == "[" * 100_000 + "[docs](https://e.org/x)"
    assert recorder.sent[-1]["formatted_body"].endswith('<a href="https://e.org/x">docs</a>')
    # As CommonMark reads them: the link is the last `[…](…)`; a `](` ends an address.
    assert markdown_to_html("[a [b](https://e.org)") == '[a <a href="https://e.org">b</a>'
    assert markdown_to_html("[a](https://e.org](x)") == "[a](https://e.org](x)"


def test_an_indent_is_kept_in_html_and_plain_indented_text_needs_none() -> None:
    """HTML folds the blanks that open a line: a nested list's items all showed at one
    depth once the answer held any Markdown. Plain text keeps them without any HTML."""
    assert markdown_to_html("**a**\n- b\n  - c\n\t- d") == (
        "<strong>a</strong><br>- b<br>&nbsp;&nbsp;- c<br>&nbsp;&nbsp;&nbsp;&nbsp;- d"
    )
    assert markdown_to_html("> x\n>   y") == "<blockquote>x<br>&nbsp;&nbsp;y</blockquote>"
    assert not needs_html("- b\n  - c <&>\n\t- d")


def test_emphasis_nests_and_shares_its_marks_as_commonmark_reads_them() -> None:
    """Review: a bold span could hold no `*`, so `**a *b* c**` showed its `**` raw around
    an italic, `***x***` showed as `*<strong>x</strong>*`, and `** a **` was bold."""
    cases = {
        "**bold *it* bold**": "<strong>bold <em>it</em> bold</strong>",
        "*it **b** it*": "<em>it <strong>b</strong> it</em>",
        "__a _b_ a__": "<strong>a <em>b</em> a</strong>",
        "***x*** and ___y___": "<em><strong>x</strong></em> and <em><strong>y</strong></em>",
        "***x** y*": "<em><strong>x</strong> y</em>",
        "*x **y***": "<em>x <strong>y</strong></em>",
        "*a**b**c*": "<em>a<strong>b</strong>c</em>",  # CommonMark's rule of three
        "~~a **b** c~~": "<del>a <strong>b</strong> c</del>",
        "**a ~~b~~**": "<strong>a <del>b</del></strong>",
        "**[a](https://e.io) `x`**": '<strong><a href="https://e.io">a</a> <code>x</code></strong>',
        "这是**很长**的句子": "这是<strong>很长</strong>的句子",
        "**Note:** it *is* so": "<strong>Note:</strong> it <em>is</em> so",
    }
    for text, html in cases.items():
        assert markdown_to_html(text) == html, text
    # Marks that lean on no word, `_` inside one, and `*` between digits stay as written.
    for text in ("** not bold **", "2 * 3 * 4", "2*3*4 = 24", "snake_case_name", "a__b__c", "**x"):
        assert markdown_to_html(text) == text and not needs_html(text), text
    assert markdown_to_html("`**x**` \\*y\\*") == "<code>**x**</code> *y*"


def test_a_bare_address_keeps_its_marks_as_text() -> None:
    """Review: the marks inside an address were paired as emphasis, so a link to Python's
    docs showed `__main__` bold in its middle, and a client linked only its start. Marks
    around an address still are emphasis."""
    for text in (
        "see https://docs.python.org/3/library/__main__.html",
        "https://docs.python.org/3/reference/datamodel.html#object.__init__.",
        "https://e.org/_private_/x/*a*/~~b~~ and http://e.org/x||y||",
    ):
        assert markdown_to_html(text) == text and not needs_html(text), text
    assert markdown_to_html("**https://e.org/__init__** or ||http://e.org/a_||, _x_") == (
        "<strong>https://e.org/__init__</strong> or "
        "<span data-mx-spoiler>http://e.org/a_</span>, <em>x</em>"
    )


def test_a_spoiler_as_discord_writes_it_is_a_matrix_spoiler() -> None:
    """Models write Discord's `||spoiler||` (and the bot hides reasoning so on Discord):
    it went to Matrix as text, the spoiler shown to all with its bars around it."""
    assert markdown_to_html("the killer is ||the butler||.") == (
        "the killer is <span data-mx-spoiler>the butler</span>."
    )
    assert markdown_to_html("||**who** `x`|| *and ||why||*") == (
        "<span data-mx-spoiler><strong>who</strong> <code>x</code></span> "
        "<em>and <span data-mx-spoiler>why</span></em>"
    )
    # Bars that lean on no word, inside one, or not two of them: a table, an `or`.
    for text in ("a || b || c", "x||y||z", "| a || b |", "|||x|||", "\\||x||", "`||x||`"):
        assert "<span" not in markdown_to_html(text), text


def test_headings_and_rules_are_drawn_as_such() -> None:
    """Models head their sections with `##` and part them with `---`: both went as text,
    the `#`s and dashes shown. A block ends its own line (no <br> after it)."""
    answer = "Intro.\n\n## Step **1** ##\nDo this.\n\n---\n###### six # not closed #x"
    assert markdown_to_html(answer) == (
        "Intro.<br><br><h2>Step <strong>1</strong></h2>Do this.<br><br><hr>"
        "<h6>six # not closed #x</h6>"
    )
    assert markdown_to_html("# <b>&</b>\n* * *\n___") == "<h1>&lt;b&gt;&amp;&lt;/b&gt;</h1><hr><hr>"
    assert markdown_to_html("> q\n# h") == "<blockquote>q</blockquote><br><h1>h</h1>"
    # No heading: no blank after the `#`s, seven of them, an escape, a code block's indent.
    for text in ("#hashtag", "####### seven", "    # indented", "--", "- -", "-*-"):
        assert not needs_html(text), text
    assert markdown_to_html("\\# not") == "# not"


_TAG_OF_HTML = re.compile(r"<(/?)(\w+)[^>]*>")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="*_~| a1.,", max_size=40))
def test_emphasis_tags_nest_and_only_marks_are_taken_away(text: str) -> None:
    html = markdown_to_html(text)
    if html == "<hr>":  # a line of three marks or more (`***`, `_ _ _`): a rule
        return
    if html.startswith("<pre><code"):  # `~~~` opens a code block (CommonMark's fence)
        assert re.fullmatch(r"\s*~~~+\s*[\w.]*\s*", text), (text, html)
        return
    open_tags: list[str] = []
    for tag in _TAG_OF_HTML.finditer(html):
        if tag[1]:
            assert open_tags and open_tags.pop() == tag[2], html
        else:
            assert tag[2] in ("em", "strong", "del", "span"), html
            open_tags.append(tag[2])
    assert not open_tags, html
    # What shows is the text with some of its marks taken away, nothing else.
    shown = unescape(_TAG_OF_HTML.sub("", html)).replace("\xa0", " ")  # an indent's
    at = 0
    for char in text:
        if at < len(shown) and shown[at] == char:
            at += 1
        else:
            assert char in "*_~|", (text, html)
    assert at == len(shown), (text, html)


async def test_a_line_of_emphasis_marks_renders_in_linear_time() -> None:
    """Each closing mark looks back for its opener: where none fits, one of its kind does
    not look again. Without that, openers of one mark and closers of another took
    minutes; an answer is rendered a few times at each paced edit. A line of more marks
    than MAX_MARKS (no prose: a model looping on them) shows them as text, unpaired."""
    under = MAX_MARKS // 4  # each piece below holds 4 marks
    for line in (
        "*a " * under + "a_ " * under + "**x**",
        "_a " * under + "a** " * (under // 2) + "**x**",
        "*_" * (MAX_MARKS // 2 - 2) + " **x**",
    ):
        html = markdown_to_html(line)
        assert "<strong>x</strong>" in html, html[-200:]
    lines = (
        "*a " * 40_000 + "a_ " * 40_000,
        "_a " * 40_000 + "a** " * 30_000,
        "*_" * 100_000,
        "*a**" * 50_000,
        "**" * 100_000,
        "a*** " * 40_000,
        "||a " * 40_000 + "a|| " * 10_000 + "|" * 100_000,
    )
    for line in lines:
        html = markdown_to_html(line)
        marks = str.maketrans("", "", "*_|")
        assert unescape(_TAG_OF_HTML.sub("", html)).translate(marks) == line.translate(marks)
    recorder = Recorder()
    target = MatrixTarget(recorder, "!r", pace=RatePace())
    await PacedReply(target).finish("*a " * 30_000 + "a_ " * 30_000 + "**done**")
    assert recorder.sent[-1]["formatted_body"].endswith("<strong>done</strong>")  # its page
    over = markdown_to_html("*_" * MAX_MARKS + " **x**")
    assert over.endswith(" **x**") and "<" not in over  # no prose: its marks are text


def test_plain_text_needs_no_html() -> None:
    assert not needs_html("just words\nand lines & more")
    assert needs_html("a **b**")
    assert message_content("just words") == {"msgtype": "m.text", "body": "just words"}
    rich = message_content("a **b**", "m.notice")
    assert rich["format"] == "org.matrix.custom.html" and rich["msgtype"] == "m.notice"


def test_reasoning_is_a_quote_before_the_answer() -> None:
    assert reasoning_as_quote("42", "") == "42"
    assert reasoning_as_quote("42", "think\nhard") == "> 💭 think\n> hard\n\n42"
    assert "<blockquote>" in markdown_to_html(reasoning_as_quote("42", "think"))


# --- sink content ------------------------------------------------------------------
def test_edit_replaces_with_new_content() -> None:
    content = edit_content("$first", "new **text**")
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$first"}
    assert content["body"] == "* new **text**"
    new = content["m.new_content"]
    assert new["body"] == "new **text**" and "<strong>text</strong>" in new["formatted_body"]
    assert "m.relates_to" not in new
    # Whom the message mentions is in its new content; the edit notifies nobody again.
    mentioning = edit_content("$first", "text", mention="@alice:x")
    assert mentioning["m.new_content"]["m.mentions"] == {"user_ids": ["@alice:x"]}
    assert mentioning["m.mentions"] == {} and content["m.new_content"]["m.mentions"] == {}


def test_reply_relation() -> None:
    assert reply_relation("", "") == {}
    assert reply_relation("", "$q") == {"m.in_reply_to": {"event_id": "$q"}}
    rel = reply_relation("$root", "$q")
    assert rel["rel_type"] == "m.thread" and rel["event_id"] == "$root"
    assert rel["m.in_reply_to"] == {"event_id": "$q"} and rel["is_falling_back"] is True


def test_edits_slow_down_for_a_minute_after_a_429() -> None:
    assert edit_interval(now=100.0, limited_at=-1e9) == EDIT_INTERVAL
    assert edit_interval(now=100.0, limited_at=90.0) == LIMITED_INTERVAL
    assert edit_interval(now=200.0, limited_at=90.0) == EDIT_INTERVAL
    assert LIMITED_INTERVAL >= 1 / 0.2  # Synapse's default sustained rc_message rate


# --- the sink over a recording sender (the homeserver's side is not ours) ----------
class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, room_id: str, content: dict[str, Any]) -> str:
        self.sent.append(content)
        return f"$e{len(self.sent)}"


async def test_answer_is_one_message_then_edits_and_the_last_edit_has_it_all() -> None:
    recorder = Recorder()
    now = [1000.0]
    pace = RatePace(clock=lambda: now[0])
    target = MatrixTarget(recorder, "!r", pace=pace, reply_to="$q", mention="@u:x")
    reply = PacedReply(target, render=reasoning_as_quote)
    await reply.update("Hello")
    await reply.update("Hello **wor")
    await reply.finish("Hello **world**")
    first, *edits = recorder.sent
    assert first["body"] == "Hello"
    assert first["m.relates_to"] == {"m.in_reply_to": {"event_id": "$q"}}
    assert first["m.mentions"] == {"user_ids": ["@u:x"]}
    assert edits and all(e["m.relates_to"]["event_id"] == "$e1" for e in edits)
    assert edits[-1]["m.new_content"]["formatted_body"] == "Hello <strong>world</strong>"


async def test_reasoning_streamed_a_line_a_piece_is_rendered_when_it_is_shown() -> None:
    """Review: each update of a streaming answer was rendered whole as it came, though
    edits go out every 2 s: shown reasoning (a quote in Matrix, `> ` before each line)
    written a line a piece, 100 KB of it, held the bot's loop 110 s in all. Minutes
    without the rule (an update is rendered when it goes out), as here."""
    recorder = Recorder()
    target = MatrixTarget(recorder, "!r", pace=RatePace())
    reply = PacedReply(target, render=reasoning_as_quote)
    thought = ""
    for _ in range(50_000):
        thought += "a\n"
        await reply.update("", thought)
    await reply.finish("42", thought)
    shown = [target.final_texts[event] for event in target.event_ids]
    assert shown == split_text(reasoning_as_quote("42", thought), MESSAGE_LIMIT, page_size)
    assert shown[0].startswith("> 💭 a\n> a\n") and shown[-1].endswith("> a\n\n42")


def test_the_final_edit_waits_only_when_the_server_pushed_back() -> None:
    now = [1000.0]
    pace = RatePace(clock=lambda: now[0])
    target = MatrixTarget(Recorder(), "!r", pace=pace)
    assert target.min_interval == EDIT_INTERVAL
    assert target.final_interval == 0.0
    pace.note_limited()
    assert target.min_interval == target.final_interval == LIMITED_INTERVAL
    now[0] += 61
    assert target.final_interval == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "这是一个**很长**的中文句子，没有空格。" * 3000,
        "👨‍👩‍👧‍👦👍🏽" * 6000,
        '<&>"' * 20000,  # every character an HTML entity, and escaped in JSON
        "- item `x`\n" * 8000,  # a list: markup around every line
        "        - **x**\n" * 6000,  # each blank of an indent a no-break space in HTML
        "`a` **b** _c_ " * 5000,  # tags longer than the marks they stand for
        "> q\n\nx\n" * 5000,  # a quote opened and closed on every other line
        "```python\n" + "x = '<&>'\n" * 6000 + "```",  # a fence closed and reopened
        "plain English words and sentences. " * 3000,
    ],
)
def test_every_page_of_an_answer_fits_an_encrypted_edit(text: str) -> None:
    """Synapse refuses events above 64 KiB: an edit holds its page twice, as text and as
    HTML; nio escapes non-ASCII in the JSON it encrypts, and the ciphertext is base64."""
    for page in split_text(text, MESSAGE_LIMIT, page_size):
        edit = json.dumps(edit_content("$" + "e" * 43, page))  # non-ASCII escaped, as nio
        encrypted = len(edit) * 4 / 3 + 1_500  # base64, and the envelope around it
        assert encrypted < 65_536, (len(page), encrypted)


def test_a_room_continues_another_only_when_both_say_so() -> None:
    """Matrix probe: an upgraded room lost its settings. Whoever creates a room may name
    any room as its predecessor; only the old room's admins can tombstone it."""
    create = {"room_version": "11", "predecessor": {"room_id": "!old:hs", "event_id": "$e"}}
    assert decide.predecessor("!new:hs", create) == "!old:hs"
    for odd in (
        None,
        {},
        {"predecessor": "!old:hs"},
        {"predecessor": {"room_id": 7}},
        {"predecessor": {"room_id": "#alias:hs"}},
        {"predecessor": {"room_id": "!new:hs"}},
    ):
        assert decide.predecessor("!new:hs", odd) is None, odd
    assert decide.replaced_by({"replacement_room": "!new:hs", "body": "moved"}, "!new:hs")
    for odd in (None, {}, {"replacement_room": "!other:hs"}, {"replacement_room": ["!new:hs"]}):
        assert not decide.replaced_by(odd, "!new:hs"), odd
    assert not decide.replaced_by({"replacement_room": ""}, "")


def test_a_link_to_a_person_in_an_answer_is_no_pill() -> None:
    """Matrix probe: `[alice](https://matrix.to/#/@alice:hs)` from a model became a link
    Element draws as alice's pill: a look-alike mention (m.mentions kept it silent)."""
    for url in (
        "https://matrix.to/#/@alice:hs",
        "HTTPS://MATRIX.TO/#/@alice:hs",
        "matrix:u/bob:hs",
    ):
        html = markdown_to_html(f"ask [alice]({url}) now")
        assert "<a" not in html and f"[alice]({url})" in html, html
    assert markdown_to_html("[docs](https://e.org/x)") == '<a href="https://e.org/x">docs</a>'


def test_a_link_whose_text_is_another_address_is_written_out() -> None:
    """A model's `[google.com](https://evil.example)` was a link showing one host and
    opening another (Matrix clients open it without a word; Discord refuses a URL as a
    link's text). Written out instead, where the client links the real address; text
    naming the link's own host, a domain it is in, or the file it links stays a link."""
    for text, url in (
        ("google.com", "https://evil.example/login"),
        ("https://google.com/login", "https://evil.example/login"),
        ("HTTPS://Google.com", "http://evil.example"),
        ("**paypal.com**", "https://evil.example"),
        ("g\u043e\u043egle.com", "https://evil.example"),  # Cyrillic о: not google.com
        ("google.com", "https://google.com.evil.example"),
        ("https://user@bank.example", "https://evil.example"),
        ("http://localhost", "http://evil.example"),
        ("README.md", "https://evil.example/x"),
        ("bank.example", "mailto:help@evil.example"),
        ("https://e.org", "http://[::1"),  # no host to compare: no link either
    ):
        html = markdown_to_html(f"see [{text}]({url}) now")
        assert "<a" not in html and html == f"see [{text}]({url}) now".replace("&", "&amp;"), html
    for text, url in (
        ("docs", "https://e.org/x"),
        ("the docs", "https://e.org/x"),
        ("docs.python.org", "https://docs.python.org/3/"),
        ("python.org", "https://docs.python.org/3/"),
        ("www.python.org", "https://python.org/"),
        ("https://e.org/a", "https://e.org/b"),
        ("README.md", "https://github.com/a/b/blob/main/README.md"),
        ("help@bank.example", "mailto:help@bank.example"),
        ("e.g.", "https://e.org/"),
        ("v1.2", "https://e.org/"),
    ):
        html = markdown_to_html(f"[{text}]({url})")
        assert html.startswith(f'<a href="{url}">'), (text, url, html)


# What a link's text may hold that shows as nothing, or as the address alone.
_HIDDEN_IN_LINKS = ("\\", "**", "__", "~~", "`", "\u200b", "\u00ad", "\u2060", "\u200e")


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(("google.com", "paypal.com/login", "https://bank.example/signin")),
    st.lists(st.tuples(st.integers(0, 40), st.sampled_from(_HIDDEN_IN_LINKS)), max_size=4),
)
@example("google.com", [(6, "\\")])  # `google\.com`: Matrix shows google.com
@example("paypal.com/login", [(0, "**"), (3, "**")])  # `**pay**pal.com/login`
@example("google.com", [(10, "\u200b")])  # a zero-width space after it
def test_a_disguised_address_as_a_links_text_is_written_out(
    address: str, inserted: list[tuple[int, str]]
) -> None:
    """Fuzz probe: the rule read the link's text as written, so an escape (`google\\.com`),
    bold around part of it or an invisible character made it no address, and the link
    showed google.com while opening another host."""
    text = address
    for at, mark in sorted(inserted, reverse=True):
        at = min(at, len(text))
        text = text[:at] + mark + text[at:]
    html = markdown_to_html(f"[{text}](https://evil.example/x)")
    shown = unescape(re.sub("<[^>]*>", "", html))
    shown = "".join(c for c in shown if unicodedata.category(c) != "Cf")
    assert not (html.startswith("<a") and shown == address), (text, html)


@pytest.mark.parametrize(
    "text",
    [
        "goo\u034fgle.com",  # a combining grapheme joiner (Mn, not Cf): shows nothing
        "google\ufe0f.com",  # a variation selector
        "pay\U000e0100pal.com/login",  # one of the supplement's
        "goo\u2800gle.com",  # the blank Braille cell (So), which the text table holds
        "google\u3002com",  # an ideographic full stop: IDNA's dot, google.com
        "bank\uff0eexample/signin",  # a fullwidth one
    ],
)
def test_an_address_behind_any_character_that_shows_nothing_is_written_out(text: str) -> None:
    """Review: the rule left out format characters (Cf) alone, so a combining grapheme
    joiner or a variation selector inside `google.com` (which show nothing, Mn) still
    made a link showing google.com and opening another host; so did `google。com`, which
    IDNA, and a browser, read as google.com."""
    html = markdown_to_html(f"[{text}](https://evil.example/x)")
    assert not html.startswith("<a"), html


def test_a_dotted_name_or_the_same_host_in_its_own_script_stays_a_link() -> None:
    """Every dotted word read as a host name: answers' `[Node.js](https://nodejs.org)`,
    `[os.path.join](https://docs.python.org/…)` or `[pandas.DataFrame](…)` were written
    out as markdown, as was `[bücher.de](https://xn--bcher-kva.de/)` (one host, two
    spellings). Only text ending in a top-level domain names an address."""
    for text, url in (
        ("Node.js", "https://nodejs.org"),
        ("Vue.js", "https://vuejs.org/"),
        ("`os.path.join`", "https://docs.python.org/3/library/os.path.html#os.path.join"),
        ("pandas.DataFrame", "https://pandas.pydata.org/docs/reference/frame.html"),
        ("console.log", "https://developer.mozilla.org/en-US/docs/Web/API/console/log"),
        ("index.html", "https://example.com/"),
        ("bücher.de", "https://xn--bcher-kva.de/"),
        ("xn--bcher-kva.de", "https://bücher.de/"),
        ("пример.рф", "https://xn--e1afmkfd.xn--p1ai/"),
    ):
        html = markdown_to_html(f"[{text}]({url})")
        assert html.startswith(f'<a href="{url}">'), (text, url, html)
    for text, url in (
        ("g\u043e\u043egle.com", "https://google.com"),  # Cyrillic о: another host
        ("пример.рф", "https://evil.example"),
        ("printer.local", "http://evil.example"),
        ("paypal.app", "https://evil.example"),
    ):
        html = markdown_to_html(f"[{text}]({url})")
        assert "<a" not in html, (text, url, html)


def test_a_link_whose_text_is_a_host_and_path_is_written_out() -> None:
    """`[paypal.com/login](https://evil.example)`, the usual disguise, went out as a link:
    only a bare host or a URL with its scheme counted as an address."""
    for text, url in (
        ("paypal.com/login", "https://evil.example"),
        ("www.paypal.com/signin?next=%2F", "https://evil.example/x"),
        ("bank.example:8443", "https://evil.example"),
    ):
        html = markdown_to_html(f"[{text}]({url})")
        assert "<a" not in html, (text, url, html)
    for text, url in (
        ("github.com/a/b", "https://github.com/a/b"),
        ("docs.python.org/3/library", "https://docs.python.org/3/library/"),
        ("src/main.py", "https://github.com/a/b/blob/main/src/main.py"),
    ):
        html = markdown_to_html(f"[{text}]({url})")
        assert html.startswith(f'<a href="{url}">'), (text, url, html)


def test_a_secret_in_a_refused_commands_reply_or_a_login_without_a_scheme_is_taken_out() -> None:
    """Hostile probe: `!proxy set hunter22pass http://…` (password and URL swapped) was
    deleted, and the refusal quoted the password back (`hunter22pass` needs http://…);
    `!proxy set user:pass@host:8080` was neither deleted nor scrubbed."""
    text = "!proxy set Hunter22pass http://10.0.0.5:3128/v1"
    assert may_hold_secret(text, TABLE, "!")
    refusal = "`Hunter22pass` needs http:// or https:// in front."
    assert scrub_reply(refusal, text, TABLE, "!", refused=True) == (
        "`****` needs http:// or https:// in front."
    )
    assert scrub_reply(refusal, text, TABLE, "!") == refusal  # a reply that took it
    for login in ("!proxy set user:Hunter22pass@proxyhost:8080", "!system bob:pw1234@h.example"):
        assert may_hold_secret(login, TABLE, "!"), login
    for plain in ("!system meet at 10:30@noon", "!system write to a@b.example", "!model gpt-4o"):
        assert not may_hold_secret(plain, TABLE, "!"), plain
