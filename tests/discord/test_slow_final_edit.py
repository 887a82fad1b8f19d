"""The end of an answer Discord is slow to take (its final edit, its buttons), with the real
discord.py client on the loopback fake: a rate limit is waited out (Discord says when),
a failure is given up after the answer's end patience (patience.END_PATIENCE, shortened)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest

from bot.conversation import patience
from bot.conversation.stream import SHOW_FAILED
from bot.core import Core
from bot.frontends.discord import sink
from bot.types import ChannelRef, Platform, TurnState
from tests.discord.fake_discord import FakeDiscord
from tests.discord.fake_openai import FakeOpenAI
from tests.discord.helpers import running

TOKEN = "loopback.bot.token-slowend-0123456789"
ANSWER = "The first part and its end."


def _by_bot(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.messages.values() if m["author"]["id"] == str(fake.bot_id)]


def _ref(fake: FakeDiscord) -> ChannelRef:
    return ChannelRef(Platform.DISCORD, str(fake.channel_id), str(fake.guild_id))


@pytest.fixture
def two_parts(endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint.script.chunks = ["The first part", " and its end."]
    endpoint.script.interval = 0.3
    monkeypatch.setattr(patience, "END_PATIENCE", 1.0)  # 15 s in production
    monkeypatch.setattr(sink, "RETRY_PAUSE", 0.05)


@pytest.mark.usefixtures("two_parts")
async def test_a_rate_limit_on_the_final_edit_is_waited_out_not_posted_again(
    core: Core,
) -> None:
    """Review of edit6: Discord asking the bot to wait past the end patience (a 429 whose
    Retry-After discord.py sleeps out) had the edit given up, and the answer posted again
    from where it stuck: its beginning twice. Discord said when: the edit lands then."""
    fake = FakeDiscord(TOKEN, rate_limit_edits=1, edit_retry_after=2.0)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> tell me")

            def shown() -> bool:
                return any(m["content"].endswith("its end.") for m in _by_bot(fake))

            await fake.wait_until(shown, 30)
    finally:
        await fake.stop()
    assert fake.limited == 1
    [answer] = _by_bot(fake)
    assert answer["content"] == ANSWER


@pytest.mark.usefixtures("two_parts")
async def test_a_final_edit_that_spent_the_rate_limit_is_not_taken_for_a_failed_one(
    core: Core,
) -> None:
    """An edit Discord made, saying its rate limit bucket is spent until a reset past the
    end patience: discord.py waits for the reset before the edit returns, and the edit,
    cut there, was taken for failed; the answer went out again under the one shown whole."""
    fake = FakeDiscord(TOKEN, edit_bucket_reset=2.0)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> tell me")

            await _settled(core, fake)
    finally:
        await fake.stop()
    [answer] = _by_bot(fake)
    assert answer["content"] == ANSWER


@pytest.mark.usefixtures("two_parts")
async def test_a_rate_limit_longer_than_its_patience_is_given_up_as_a_failure(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discord has asked for days: a wait past RATE_LIMIT_PATIENCE is not waited out; the
    edit is given up at the end patience and the answer goes out again in a new message."""
    monkeypatch.setattr(patience, "RATE_LIMIT_PATIENCE", 1.5)  # 60 s in production
    fake = FakeDiscord(TOKEN, rate_limit_edits=1, edit_retry_after=3.0)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> tell me")
            await fake.wait_until(lambda: len(_by_bot(fake)) == 2, 30)
            await fake.wait_until(lambda: "cc:regen:" in str(_by_bot(fake)[1]), 30)
    finally:
        await fake.stop()
    stuck, again = _by_bot(fake)
    assert stuck["content"] == "The first part"
    assert "here it is again from there on" in again["content"]
    assert again["content"].endswith(ANSWER)


@pytest.mark.usefixtures("two_parts")
async def test_a_pause_between_tries_of_an_edit_ends_with_the_patience(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of edit6: the pause between two tries of an edit Discord failed (RETRY_PAUSE)
    ran on past the answer's end patience, and held the conversation so much longer (2 s
    in production; here the pause is made far longer than the patience to show it)."""
    monkeypatch.setattr(sink, "RETRY_PAUSE", 60.0)
    fake = FakeDiscord(TOKEN, fail_edits=1000, edit_failure=503)  # discord.py: no retry
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> tell me")
            await fake.wait_until(lambda: len(_by_bot(fake)) == 2, 20)
    finally:
        await fake.stop()
    stuck, again = _by_bot(fake)
    assert stuck["content"] == "The first part"
    assert again["content"].endswith(ANSWER)


async def test_a_stop_while_an_answer_that_never_lands_is_shown_claims_nothing_kept(
    core: Core, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of edit6: a /stop while the end of an answer was being shown said it was
    "written in full and kept", also when Discord then failed every post of it, and the
    answer was stored as cut (never shown; its asker told by DM)."""
    endpoint.script.chunks = ["<", "thin"]  # held back until the stream ends
    monkeypatch.setattr(sink, "RETRY_PAUSE", 1.0)  # the four tries of its post take 3 s
    fake = FakeDiscord(TOKEN, drop_posts=1000)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> hi")
            await fake.wait_until(lambda: bool(fake.bot_calls("POST", "/channels/")), 30)
            await fake.slash("stop")
            await fake.wait_until(lambda: bool(fake.responses) and bool(fake.dms), 30)
    finally:
        await fake.stop()
    [stop] = fake.responses
    assert stop["data"]["content"] == (
        "Nothing to stop: the answer here has ended; the platform is slow to show its end "
        "in this channel."
    )
    [_, answer] = await core.store.history(_ref(fake), 5)
    assert answer.state is TurnState.STOPPED and answer.error == SHOW_FAILED


@pytest.mark.usefixtures("two_parts")
async def test_a_stop_button_left_on_a_page_discord_would_not_edit_goes_when_pressed(
    core: Core,
) -> None:
    """Review of edit6: Discord failing an answer's edits left ⏹ on the page that stuck
    (taking it off is an edit too) while the answer went out again below; pressing it
    said "No answer is being written here." and left it there for good."""
    fake = FakeDiscord(TOKEN, fail_edits=1000, edit_failure=503)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> tell me")
            await _settled(core, fake)
            fake.fail_edits = 0  # Discord is back
            stuck, again = _by_bot(fake)
            [stop_id] = re.findall(r"cc:stop:\d+", repr(stuck["components"]))
            await fake.click(int(stuck["id"]), stop_id)
            await fake.wait_until(lambda: bool(fake.followups), 30)
    finally:
        await fake.stop()
    assert not stuck["components"], stuck["components"]  # the ⏹ is gone
    assert stuck["content"] == "The first part"  # its text stays as it was
    assert [f["content"] for f in fake.followups] == ["No answer is being written here."]
    assert again["content"].endswith(ANSWER)


@pytest.mark.usefixtures("two_parts")
async def test_an_answer_sent_again_discord_will_not_post_lets_the_channel_go(
    core: Core, endpoint: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """Review of repost10: an answer whose end was given up went out again in new messages
    with no patience at all; Discord refusing those too (a 429 asking an hour, which
    discord.py sleeps out) held the channel's conversation that hour. The posts of the
    answer sent again have a patience of their own: given up, the log says the answer
    could not be shown, the next question is answered, the answer is stored whole."""
    fake = FakeDiscord(TOKEN, fail_edits=1000, edit_failure=503, limit_posts_from=2)
    await fake.start()
    try:
        async with running(core, fake):
            with caplog.at_level(logging.WARNING, logger="bot.discord"):
                await fake.user_says(f"<@{fake.bot_id}> tell me")
                await fake.wait_until(lambda: fake.posts >= 2, 30)  # sent again: refused
                await fake.user_says(f"<@{fake.bot_id}> and then")
                await fake.wait_until(lambda: len(endpoint.requests) == 2, 30)
    finally:
        await fake.stop()
    [stuck] = _by_bot(fake)
    assert stuck["content"] == "The first part"
    [_, answer, *_] = await core.store.history(_ref(fake), 5)
    assert (answer.content, answer.state) == (ANSWER, TurnState.DONE)
    said = [r.getMessage() for r in caplog.records if "could not" in r.getMessage()]
    assert any("gave up after" in line for line in said), said
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("bot"))


@pytest.mark.usefixtures("two_parts")
async def test_a_rate_limit_said_only_in_its_body_is_waited_out_not_posted_again(
    core: Core,
) -> None:
    """Review of repost10: discord.py waits out what a 429's body says (retry_after); the
    wait was counted only when a Retry-After header said it too. A 429 without the header
    (a proxy in front of Discord may drop it) had the final edit given up while discord.py
    slept, and the answer posted again under it: its beginning twice."""
    fake = FakeDiscord(TOKEN, rate_limit_edits=1, edit_retry_after=2.0, retry_after_header=False)
    await fake.start()
    try:
        async with running(core, fake):
            await fake.user_says(f"<@{fake.bot_id}> tell me")
            await _settled(core, fake)
    finally:
        await fake.stop()
    assert fake.limited == 1
    [answer] = _by_bot(fake)
    assert answer["content"] == ANSWER


async def _settled(core: Core, fake: FakeDiscord) -> None:
    """The answer's buttons shown and the answer tied to the messages showing it."""
    await fake.wait_until(lambda: "cc:regen:" in str(_by_bot(fake)), 30)
    for _ in range(500):
        if await core.newest_answer_posts(_ref(fake)) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the answer was never tied to its messages")


@pytest.mark.usefixtures("two_parts")
async def test_the_log_of_an_edit_given_up_says_the_time_really_waited(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    """Review of typing10: an edit given up after a rate limit's wait was counted on top
    of the end patience said "gave up after 15 s" (END_PATIENCE as imported, whatever the
    patience was): the log now says what was waited, the patience and the wait asked."""
    fake = FakeDiscord(
        TOKEN,
        rate_limit_edits=1,
        edit_retry_after=2.0,
        limit_edits_first=True,
    )
    await fake.start()
    fake.edits_open.clear()  # then no edit is answered
    try:
        async with running(core, fake):
            with caplog.at_level(logging.WARNING, logger="bot.discord"):
                await fake.user_says(f"<@{fake.bot_id}> tell me")
                await fake.wait_until(lambda: len(_by_bot(fake)) == 2, 30)
    finally:
        await fake.stop()
    assert fake.limited == 1
    said = [r.getMessage() for r in caplog.records if "gave up after" in r.getMessage()]
    assert said, [r.getMessage() for r in caplog.records]
    waited = [float(re.findall(r"gave up after ([\d.]+) s", line)[0]) for line in said]
    assert all(2.0 < seconds <= 3.5 for seconds in waited), said  # 1 s patience + 2 s asked
