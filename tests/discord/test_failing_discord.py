"""Discord failing the bot's calls (connections cut, a response lost on its way back), on
the loopback fake with the real discord.py client: an answer none of whose pages could be
posted, a slash command whose response did not get through."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import pytest

from bot.commands import Invocation
from bot.conversation import attachments
from bot.conversation.stream import SHOW_FAILED
from bot.core import Core, split_text
from bot.frontends.discord import sink
from bot.types import Actor, ChannelRef, ModelInfo, Platform, TurnState
from bot.types import files as file_rules
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import running
from tests.integration.test_characters import CARD
from tests.unit.characters.samples import png_with

TOKEN = "loopback.bot.token-failing-0123456789"


def _ref(fake: FakeDiscord) -> ChannelRef:
    return ChannelRef(Platform.DISCORD, str(fake.channel_id), str(fake.guild_id))


def _replies(fake: FakeDiscord) -> list[str]:
    """What the bot said to slash commands: what their responses show ("thinking…"
    replaced), then follow-ups."""
    said = [text for text in fake.originals.values() if text]
    return said + [str(f.get("content", "")) for f in fake.followups]


def _ran(caplog: pytest.LogCaptureFixture, command: str) -> int:
    return sum(f"ran {command} in" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fault", ["expired", "drop"])
async def test_suggestions_discord_did_not_take_are_a_line_in_the_log_not_a_traceback(
    core: Core, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    """discord.py sends the suggestions our completer returns, and logged a call that
    failed (Discord's "Unknown interaction" to suggestions past its 3 s, a connection
    cut) as an ERROR with its traceback, once per keystroke. Now one line at INFO."""
    caplog.set_level(logging.INFO)
    ref = _ref(FakeDiscord)
    config = await core.store.effective_config(ref)
    await core.store.cache_models(ref, config, [ModelInfo("m-large")])
    offered = [{"name": "m-large", "value": "m-large"}]
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with running(core, fake):
            assert await fake.autocomplete("model", manager=True, id="large") == offered
            fake.callback_faults = [fault]
            assert await fake.autocomplete("model", manager=True, id="larg") == []
            assert await fake.autocomplete("model", manager=True, id="la") == offered
    finally:
        await fake.stop()
    said = [r for r in caplog.records if "could not answer an autocompletion" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]
    assert said[0].getMessage().startswith("could not answer an autocompletion of /model: ")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize("lost", ["dropped", "answer lost"])
async def test_a_command_reply_whose_response_failed_still_reaches_the_user(
    core: Core, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture, lost: str
) -> None:
    """The response to a slash command cut on its way (not shown), or shown but its answer
    cut on the way back: the reply was lost (a reply's second page too, sent as a second
    response), and the command done without a word. Now each page is said once, and the
    command ran once."""
    caplog.set_level(logging.INFO, logger="bot")
    member = Actor(str(FakeDiscord.user_id), "bob")
    help_text = (await core.run_command(_ref(FakeDiscord), member, Invocation(("help",), {}))).text
    pages = split_text(help_text, 2000)
    assert len(pages) == 2
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with running(core, fake):
            if lost == "dropped":
                fake.drop_callbacks = 1
            else:
                fake.lose_callbacks = 1
            await fake.slash("help")
            await fake.wait_until(lambda: len(_replies(fake)) >= 2, 30)
            await fake.slash("settings")  # handled after the first reply's pages went
            await fake.wait_until(lambda: len(_replies(fake)) >= 3, 30)
    finally:
        await fake.stop()
    said = [s for s in _replies(fake) if not s.startswith("Source: custom")]
    assert said == pages
    assert _ran(caplog, "/help") == 2  # the one above, and the slash command's once


@pytest.mark.parametrize("lost", ["dropped", "answer lost"])
async def test_a_slow_command_whose_thinking_failed_runs_once_and_says_so(
    core: Core, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture, lost: str
) -> None:
    """ "Thinking…" (the deferral) of a slow command cut on its way: the command was
    cancelled halfway and "something went wrong" said; or shown, its answer lost: the
    reply went as a second response, refused, and "thinking…" stayed. Now the command
    runs once to its end and its reply is said once."""
    caplog.set_level(logging.INFO, logger="bot")
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with running(core, fake):
            if lost == "dropped":
                fake.drop_callbacks = 1
            else:
                fake.lose_callbacks = 1
            await fake.slash("connect", manager=True)
            await fake.wait_until(lambda: bool(_replies(fake)), 30)
            await fake.slash("settings")  # handled after the first reply went
            await fake.wait_until(lambda: len(_replies(fake)) >= 2, 30)
    finally:
        await fake.stop()
    said = [s for s in _replies(fake) if not s.startswith("Source: custom")]
    assert said == ["Status check: OK — 2 models available."]
    assert _ran(caplog, "/connect") == 1
    config = await core.store.effective_config(_ref(fake))
    assert config.status is not None and config.status.ok


@pytest.mark.parametrize(
    ("faults", "cut"),
    [
        (["lose", "drop"], 0),  # "thinking…" shown, its answer lost; the response cut
        (["lose"], 2),  # the same, and the reply's next two tries cut
        ([], 2),  # "thinking…" known; its reply and the next try cut
    ],
)
async def test_thinking_whose_reply_failed_on_the_network_is_replaced_by_it(
    core: Core,
    endpoint: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    faults: list[str],
    cut: int,
) -> None:
    """A slow command's "thinking…" shown, then its reply cut on the network: the response
    tried again met "already acknowledged" and took it for its own try shown, or the
    follow-up failed and was only logged. "Thinking…" stayed for good. Now the response
    is edited to show the reply (tried again until the network is back, a few times),
    and the command ran once."""
    monkeypatch.setattr(sink, "RETRY_PAUSE", 0.05)
    caplog.set_level(logging.INFO, logger="bot")
    fake = FakeDiscord(TOKEN, callback_faults=faults, drop_followups=cut)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.slash("connect", manager=True)
            await fake.wait_until(lambda: bool(_replies(fake)), 30)
    finally:
        await fake.stop()
    assert list(fake.originals.values()) == ["Status check: OK — 2 models available."]
    assert not fake.followups and fake.drop_followups == 0
    assert _ran(caplog, "/connect") == 1


async def test_an_answer_discord_would_not_take_is_marked_and_its_asker_told(
    core: Core,
    endpoint: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every post of an answer cut (Discord down for the channel): it was stored as a
    whole answer, the model asked on, and nobody told; the asker saw nothing. Now each
    post is tried again as an edit is, the answer stops at the first that never got
    through (stored as cut, not shown), and the asker hears so by DM."""
    monkeypatch.setattr(sink, "RETRY_PAUSE", 0.05)
    caplog.set_level(logging.INFO, logger="bot")
    endpoint.script.chunks = [f"w{i} " for i in range(20)]
    endpoint.script.interval = 0.05
    fake = FakeDiscord(TOKEN, drop_posts=1000)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> hi")
            await fake.wait_until(lambda: bool(fake.dms), 30)
    finally:
        await fake.stop()
    posts = fake.bot_calls("POST", f"/channels/{fake.channel_id}/messages")
    assert len(posts) == 2 * (sink.EDIT_RETRIES + 1)  # the first text's, then the end's
    [told] = fake.dms
    assert told["content"] == (
        "I could not post my answer to your message in #general on Loopback Guild: "
        "Discord failed each time I tried. /retry there asks again."
    )
    [_, answer] = await core.store.history(_ref(fake), 5)
    assert answer.state is TurnState.STOPPED and answer.error == SHOW_FAILED
    assert answer.content != endpoint.script.answer  # the model was not asked on for no one
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(fake.channel_id) in w and "could not be posted" in w for w in warned), warned


async def test_a_limits_refusal_discord_failed_to_show_does_not_silence_the_next(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    """A member past a limit is told once per 15 s (a flood would be told each time). A
    refusal Discord failed to show, in the channel and by DM, was counted as told all the
    same: the member's next message was ignored without a word. Now only a shown one
    keeps the next quiet."""
    caplog.set_level(logging.INFO, logger="bot")
    fake = FakeDiscord(TOKEN)
    await fake.start()
    try:
        async with running(core, fake):
            said = await fake.command_says(
                "limits", action="set", name="messages_per_user_minute", value="1"
            )
            assert "set to 1" in said, said
            await fake.user_says(f"<@{fake.bot_id}> one")
            await fake.wait_until(
                lambda: any("cc:regen:" in str(m["components"]) for m in fake.messages.values()),
                30,
            )
            fake.drop_posts, fake.refuse_dms = 1000, True
            await fake.user_says(f"<@{fake.bot_id}> two")
            for _ in range(600):  # the log says so once the DM failed too (no call after)
                if any("by DM either" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
            fake.drop_posts, fake.refuse_dms = 0, False
            await fake.user_says(f"<@{fake.bot_id}> three")
            await fake.wait_until(
                lambda: any("Limit reached" in str(m["content"]) for m in fake.messages.values()),
                40,
            )
    finally:
        await fake.stop()
    assert not fake.dms


async def test_a_post_shown_but_its_answer_lost_is_not_posted_twice(
    core: Core, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post that Discord made, its answer cut on the way back, is tried again with the
    same nonce: Discord gives back the message it made instead of a second one."""
    monkeypatch.setattr(sink, "RETRY_PAUSE", 0.05)
    endpoint.script.chunks = ["one answer"]
    fake = FakeDiscord(TOKEN, lose_posts=1)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> hi")
            await fake.wait_until(
                lambda: any("cc:regen:" in str(m["components"]) for m in fake.messages.values()),
                30,
            )
    finally:
        await fake.stop()
    [answer] = [m for m in fake.messages.values() if m["author"]["id"] == str(fake.bot_id)]
    assert answer["content"] == "one answer" and answer.get("message_reference")
    assert not fake.dms


async def test_an_answer_first_shown_at_its_end_that_never_lands_is_stored_as_cut(
    core: Core, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer whose text was held back to its end (it might have begun a `<think>`
    tag), whose one post Discord never took: its asker was told by DM that it could not
    be posted, but it was stored as a whole answer, shown. Now it is stored as cut, as
    one that stops at a post that never got through."""
    monkeypatch.setattr(sink, "RETRY_PAUSE", 0.05)
    endpoint.script.chunks = ["<", "thin"]  # held back until the stream ends
    fake = FakeDiscord(TOKEN, drop_posts=1000)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> hi")
            await fake.wait_until(lambda: bool(fake.dms), 30)
    finally:
        await fake.stop()
    posts = fake.bot_calls("POST", f"/channels/{fake.channel_id}/messages")
    assert len(posts) == sink.EDIT_RETRIES + 1  # the end's only: nothing went before
    assert "could not post my answer" in fake.dms[0]["content"]
    [_, answer] = await core.store.history(_ref(fake), 5)
    assert answer.content == "<thin"
    assert answer.state is TurnState.STOPPED and answer.error == SHOW_FAILED


async def test_a_greeting_discord_would_not_take_is_said_to_the_importer(
    core: Core, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/character import whose greeting Discord failed each time it was posted (a lost
    connection, a 5xx): only the log said so; the importer read "Character set" and the
    channel showed nothing. Now the importer is told privately, with the next step."""
    monkeypatch.setattr(sink, "RETRY_PAUSE", 0.05)
    image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
    fake = FakeDiscord(TOKEN, drop_posts=1000)
    await fake.start()
    try:
        async with running(core, fake):
            card = {"file": ("aurelia.png", "image/png", image)}
            await fake.slash("character", "import", manager=True, files=card)
            await fake.wait_until(lambda: "post the greeting" in str(fake.followups), 30)
    finally:
        await fake.stop()
    assert "Character set for this channel" in _replies(fake)[0]
    [told] = [f for f in fake.followups if "post the greeting" in f["content"]]
    assert told["content"] == (
        "I could not post the greeting here: Discord failed each time I tried. The "
        "conversation starts from it all the same; to show it, /reset and import the "
        "card again."
    )
    assert int(told.get("flags", 0)) & 64  # only the importer sees it
    posts = fake.bot_calls("POST", f"/channels/{fake.channel_id}/messages")
    assert len(posts) == sink.EDIT_RETRIES + 1


def _said(fake: FakeDiscord) -> list[str]:
    """What the bot posted in the channel."""
    return [m["content"] for m in fake.messages.values() if int(m["author"]["id"]) == fake.bot_id]


async def test_files_a_stalled_cdn_trickles_are_given_up_together_and_said(
    core: Core, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three files Discord's CDN sent a byte at a time: discord.py waits 5 minutes for
    each, the conversation (its next turn, /stop) with it, and one message's ten files held
    it 50. Now a message's downloads get DOWNLOAD_SECONDS together; the asker is told
    which file was too slow, nothing is sent or stored, and the conversation goes on."""
    monkeypatch.setattr(file_rules, "DOWNLOAD_SECONDS", 1.0)  # 120 s in production
    fake = FakeDiscord(TOKEN, cdn_trickle=0.5)  # 1 KB each half second: 50 s a file
    await fake.start()
    files = [(f"notes{i}.txt", "text/plain", b"line of notes\n" * 7_000) for i in range(3)]
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> read these", files=files)
            await fake.wait_until(lambda: bool(_said(fake)), 30)
            assert _said(fake) == [
                "Downloading notes0.txt took too long, so I stopped and sent nothing. Try "
                "again later."
            ]
            assert not endpoint.requests
            assert await core.store.history(_ref(fake), 5) == []
            fake.cdn_trickle = 0.0
            await fake.user_says(f"<@{fake.bot_id}> and now?", files=files[:1])
            await fake.wait_until(lambda: _said(fake)[-1].endswith("Hello there!"), 30)
    finally:
        await fake.stop()
    assert len(_said(fake)) == 2 and len(endpoint.requests) == 1


async def test_a_card_a_stalled_cdn_trickles_is_given_up_and_said(
    core: Core, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/character import of a card Discord's CDN sent a byte at a time: the command
    waited as long as discord.py waits for a file (5 minutes), "thinking…" all along,
    where a chat message's files get DOWNLOAD_SECONDS together. Now the import's file
    gets them too: the importer is told it took too long, and nothing is imported."""
    monkeypatch.setattr(file_rules, "DOWNLOAD_SECONDS", 1.0)  # 120 s in production
    image = png_with({"ccv3": base64.b64encode(json.dumps(CARD).encode()).decode()})
    fake = FakeDiscord(TOKEN, cdn_trickle=5.0)  # 1 KB each 5 s: 10 s for this card
    await fake.start()
    try:
        async with running(core, fake):
            card = {"file": ("aurelia.png", "image/png", image)}
            await fake.slash("character", "import", manager=True, files=card)
            await fake.wait_until(lambda: "took too long" in str(_replies(fake)), 30)
    finally:
        await fake.stop()
    assert _replies(fake) == [
        "Downloading aurelia.png took too long, so I stopped and imported nothing. Try again later."
    ]
    assert await core.store.character(_ref(fake)) is None
    assert not fake.webhooks and not _said(fake)  # no greeting


async def test_files_sent_in_many_channels_at_once_are_read_a_few_messages_at_a_time(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """Files in six channels at once were all downloaded and held at once (ten channels
    with two 20 MB files each held over 400 MB). Now at most MESSAGES_READ_AT_ONCE
    messages' files are read at a time; the others wait their turn and are answered.
    (Each by another member: one member's messages are read one at a time.)"""
    channels = attachments.MESSAGES_READ_AT_ONCE + 2
    fake = FakeDiscord(TOKEN, channels=channels, cdn_trickle=0.05)  # 1 KB each 50 ms
    await fake.start()
    notes = b"line of notes\n" * 1_000  # 14 KB: 0.7 s to serve
    try:
        async with running(core, fake):
            for n in range(channels):
                await fake.user_says(
                    f"<@{fake.bot_id}> read",
                    channel_id=fake.channel_id + n,
                    files=[(f"notes{n}.txt", "text/plain", notes)],
                    by=(fake.user_id + 100 + n, f"member{n}"),
                )

            def answered() -> bool:  # each to its end (a note that its file was cut first)
                said = _said(fake)
                return len(said) == channels and all(s.endswith("Hello there!") for s in said)

            await fake.wait_until(answered, 60)
    finally:
        await fake.stop()
    assert len(endpoint.requests) == channels
    # Several at once, never more than the cap (how many overlap depends on the machine).
    assert 1 < fake.cdn_most <= attachments.MESSAGES_READ_AT_ONCE, fake.cdn_most


async def test_one_member_trickling_files_in_many_channels_leaves_slots_for_the_others(
    core: Core, endpoint: FakeOpenAI
) -> None:
    """One member's files trickling in as many channels as messages' files are read at
    once took every slot for the 2 minutes a message's downloads may take, and every other
    member's files waited behind them. Now one member's messages are read one at a time:
    another member's file in another channel is read and answered meanwhile."""
    channels = attachments.MESSAGES_READ_AT_ONCE + 1
    fake = FakeDiscord(TOKEN, channels=channels, cdn_trickle=0.05)  # 1 KB each 50 ms
    await fake.start()
    slow = b"line of notes\n" * 150_000  # 2 MB: 100 s to serve, past the wait below
    hostile = (fake.user_id + 1, "mallory")
    try:
        async with running(core, fake):
            for n in range(attachments.MESSAGES_READ_AT_ONCE):
                await fake.user_says(
                    f"<@{fake.bot_id}> read",
                    channel_id=fake.channel_id + n,
                    files=[(f"slow{n}.txt", "text/plain", slow)],
                    by=hostile,
                )
            await fake.wait_until(lambda: bool(fake.downloads), 30)  # mallory's first
            await fake.user_says(
                f"<@{fake.bot_id}> read mine",
                channel_id=fake.channel_id + channels - 1,
                files=[("mine.txt", "text/plain", b"my notes\n")],
            )
            await fake.wait_until(lambda: any(s.endswith("Hello there!") for s in _said(fake)), 60)
            assert fake.cdn_open == 1  # mallory's first file, still trickling in
    finally:
        await fake.stop()
    assert _said(fake) == ["Hello there!"]
    [asked] = endpoint.requests
    assert "my notes" in json.dumps(asked)
